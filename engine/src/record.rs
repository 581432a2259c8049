//! The record that flows through a tidewatch dataflow: one Kafka message, owned.

use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

pub use crate::bytes::Bytes;

/// One Kafka message as read by the source: where it came from and every byte it carried.
///
/// The passthrough writes `key`, `value`, `headers` and `timestamp` back unchanged, so a
/// `None` key or value stays a null (not an empty byte string) and header order is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Partition in the input topic (and in the output topic).
    pub partition: i32,
    /// Offset in the input partition.
    pub offset: i64,
    /// The message timestamp in milliseconds since the Unix epoch, if it had one.
    pub timestamp: Option<i64>,
    /// The message key; `None` for a null key.
    pub key: Option<Bytes>,
    /// The message value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in their original order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies a message borrowed from librdkafka into an owned record.
    pub fn from_message<M: Message>(message: &M) -> Record {
        let headers = message
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(Bytes::from),
            value: message.payload().map(Bytes::from),
            headers,
        }
    }

    /// Bytes of key, value and headers: what the record weighs on the wire, roughly.
    pub fn size_bytes(&self) -> usize {
        self.key.as_deref().map_or(0, <[u8]>::len)
            + self.value.as_deref().map_or(0, <[u8]>::len)
            + self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>()
    }
}

/// A timely stream of records at processing-time epochs (`u64` milliseconds).
pub type RecordStream<'scope> = timely::dataflow::Stream<'scope, u64, Vec<Record>>;
