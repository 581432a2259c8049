//! `Bytes`: the key or value of a record, shared and never copied on the copy path.
//!
//! A record read by the source borrows its bytes from the messages librdkafka fetched
//! (one reference-counted batch of them); the sink hands those same bytes to the producer
//! without a copy, and the observers read them too. The batch is destroyed when the last
//! record that borrows from it is dropped, which on the copy path is once its copy is
//! acknowledged. Bytes made by a program (tests, generators) own a heap buffer instead.

#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kafka::native::Fetched;

/// Who keeps the bytes alive.
#[derive(Debug)]
enum Owner {
    Heap(#[allow(dead_code)] Box<[u8]>),
    Fetched(#[allow(dead_code)] Fetched),
}

/// Bytes of a key or value: cloning copies no payload, and a record read from Kafka
/// shares librdkafka's fetched buffer.
#[derive(Clone)]
pub struct Bytes {
    ptr: NonNull<u8>,
    len: usize,
    /// Keeps the bytes alive; `None` only for an empty slice, which needs no memory.
    #[allow(dead_code)]
    owner: Option<Arc<Owner>>,
}

// SAFETY: the bytes behind `ptr` are immutable for the life of `owner`, and both owners
// are `Send + Sync` (a heap box; fetched messages, see `Fetched`).
unsafe impl Send for Bytes {}
// SAFETY: as above; `&Bytes` gives shared reads only.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// A shared owner for many slices of one fetched batch; see [`FetchedBytes::slice`].
    pub(crate) fn share(batch: Fetched) -> FetchedBytes {
        FetchedBytes { owner: Arc::new(Owner::Fetched(batch)) }
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A fetched batch shared by the records read from it.
#[derive(Debug)]
pub(crate) struct FetchedBytes {
    owner: Arc<Owner>,
}

impl FetchedBytes {
    /// The batch, to read its messages.
    pub(crate) fn batch(&self) -> &Fetched {
        match &*self.owner {
            Owner::Fetched(batch) => batch,
            Owner::Heap(_) => unreachable!("FetchedBytes holds a fetched batch"),
        }
    }

    /// The key of the batch's `i`-th message, sharing the batch.
    pub(crate) fn key(&self, i: usize) -> Option<Bytes> {
        self.batch().get(i)?.key().map(|s| self.slice(s))
    }

    /// The value of the batch's `i`-th message, sharing the batch.
    pub(crate) fn value(&self, i: usize) -> Option<Bytes> {
        self.batch().get(i)?.payload().map(|s| self.slice(s))
    }

    /// `slice`, which points into the batch's messages, as `Bytes` that keep the batch alive.
    fn slice(&self, slice: &[u8]) -> Bytes {
        Bytes { ptr: non_null(slice), len: slice.len(), owner: Some(Arc::clone(&self.owner)) }
    }
}

fn non_null(slice: &[u8]) -> NonNull<u8> {
    NonNull::new(slice.as_ptr().cast_mut()).unwrap_or(NonNull::dangling())
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` describe bytes kept alive and unchanged by `owner` (or an
        // empty slice at a dangling, aligned pointer).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::borrow::Borrow<[u8]> for Bytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Bytes {
        Bytes::from(bytes.into_boxed_slice())
    }
}

impl From<Box<[u8]>> for Bytes {
    fn from(bytes: Box<[u8]>) -> Bytes {
        if bytes.is_empty() {
            return Bytes { ptr: NonNull::dangling(), len: 0, owner: None };
        }
        let ptr = non_null(&bytes);
        let len = bytes.len();
        Bytes { ptr, len, owner: Some(Arc::new(Owner::Heap(bytes))) }
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Bytes {
        Bytes::from(bytes.to_vec())
    }
}

impl From<&str> for Bytes {
    fn from(text: &str) -> Bytes {
        Bytes::from(text.as_bytes())
    }
}

impl From<Arc<[u8]>> for Bytes {
    fn from(bytes: Arc<[u8]>) -> Bytes {
        Bytes::from(&bytes[..])
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl std::hash::Hash for Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl PartialOrd for Bytes {
    fn partial_cmp(&self, other: &Bytes) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bytes {
    fn cmp(&self, other: &Bytes) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Serialized as the sequence of its bytes, as `Arc<[u8]>` and `Vec<u8>` are.
impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
        Vec::<u8>::deserialize(d).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn owned_bytes_read_back_compare_and_round_trip() {
        let b = Bytes::from(&b"visit"[..]);
        assert_eq!(&*b, b"visit");
        assert_eq!(b.len(), 5);
        assert_eq!(b.clone(), Bytes::from(b"visit".to_vec()));
        assert!(Bytes::from(Vec::new()).is_empty());
        let json = serde_json::to_string(&b).expect("serialize");
        assert_eq!(json, "[118,105,115,105,116]");
        let back: Bytes = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, b);
        assert_eq!(format!("{:?}", Bytes::from(&[1u8, 2][..])), "[1, 2]");
    }
}
