//! The few raw librdkafka calls the copy path needs and rust-rdkafka does not offer:
//! batched consumption from one queue that a worker's partitions feed, fetched messages
//! kept alive while their bytes are read, produce without a copy, and queue wake-ups.
//!
//! Every `unsafe` block of the engine's Kafka path is here, each with the librdkafka
//! contract it relies on.

#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::os::raw::c_int;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Called by a librdkafka thread when a queue turns non-empty.
type WakeFn = Box<dyn Fn() + Send + Sync>;

/// A librdkafka queue handle, destroyed (after its wake-up is disabled) on drop.
pub(crate) struct Queue {
    ptr: NonNull<rd::rd_kafka_queue_t>,
    /// The wake-up's closure; librdkafka holds a pointer to it while it is enabled.
    wake: Option<Box<WakeFn>>,
}

// SAFETY: librdkafka's queue handles may be used from any thread (its queues are locked).
unsafe impl Send for Queue {}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("wakes", &self.wake.is_some()).finish_non_exhaustive()
    }
}

impl Queue {
    /// A new, empty queue of `client`.
    pub(crate) fn new<C: ClientContext>(client: &Client<C>) -> Option<Queue> {
        // SAFETY: the client pointer is valid while `client` lives; the queue keeps its own reference.
        let ptr = unsafe { rd::rd_kafka_queue_new(client.native_ptr()) };
        NonNull::new(ptr).map(|ptr| Queue { ptr, wake: None })
    }

    /// The client's main queue (a producer's delivery reports and errors).
    pub(crate) fn main<C: ClientContext>(client: &Client<C>) -> Option<Queue> {
        // SAFETY: as in `new`.
        let ptr = unsafe { rd::rd_kafka_queue_get_main(client.native_ptr()) };
        NonNull::new(ptr).map(|ptr| Queue { ptr, wake: None })
    }

    /// The fetch queue of one partition of a consumer.
    pub(crate) fn partition<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> Option<Queue> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: `topic` is a valid C string for the call; librdkafka copies what it keeps.
        let ptr = unsafe { rd::rd_kafka_queue_get_partition(client.native_ptr(), topic.as_ptr(), partition) };
        NonNull::new(ptr).map(|ptr| Queue { ptr, wake: None })
    }

    /// Sends everything that arrives on this queue to `to` instead. librdkafka keeps a
    /// forward the application set even when the partition is (re)assigned.
    pub(crate) fn forward_to(&self, to: &Queue) {
        // SAFETY: both handles are valid; librdkafka references the destination while forwarding.
        unsafe { rd::rd_kafka_queue_forward(self.ptr.as_ptr(), to.ptr.as_ptr()) }
    }

    /// How many elements wait on the queue (and the queues forwarded to it).
    pub(crate) fn len(&self) -> usize {
        // SAFETY: a valid handle.
        unsafe { rd::rd_kafka_queue_length(self.ptr.as_ptr()) }
    }

    /// Calls `wake` from a librdkafka thread whenever an element lands on this queue while
    /// it was empty.
    pub(crate) fn wake_on_nonempty(&mut self, wake: impl Fn() + Send + Sync + 'static) {
        self.disable_wake();
        let boxed: Box<WakeFn> = Box::new(Box::new(wake));
        let opaque = (&*boxed as *const WakeFn).cast_mut().cast::<c_void>();
        // SAFETY: `opaque` points into `boxed`, which lives until `disable_wake` has
        // unregistered it (librdkafka calls back under the queue's lock, which enabling and
        // disabling take too, so no call is in flight once disabling returns).
        unsafe { rd::rd_kafka_queue_cb_event_enable(self.ptr.as_ptr(), Some(call_wake), opaque) };
        self.wake = Some(boxed);
    }

    fn disable_wake(&mut self) {
        if self.wake.is_some() {
            // SAFETY: a valid handle; `None` unregisters the callback.
            unsafe { rd::rd_kafka_queue_cb_event_enable(self.ptr.as_ptr(), None, ptr::null_mut()) };
            self.wake = None;
        }
    }

    /// Takes up to `max` messages (and per-partition events such as end of partition)
    /// that are ready, without waiting, into a batch that owns them.
    pub(crate) fn consume_batch(&self, max: usize, keep_alive: &Arc<dyn Send + Sync>) -> Option<Fetched> {
        let mut messages: Vec<*mut rd::rd_kafka_message_t> = Vec::with_capacity(max);
        // SAFETY: the array has room for `max` pointers; librdkafka writes `n <= max` of
        // them and hands their ownership to us (each is destroyed once, by `Fetched`).
        let n = unsafe { rd::rd_kafka_consume_batch_queue(self.ptr.as_ptr(), 0, messages.as_mut_ptr(), max) };
        let n = usize::try_from(n).ok().filter(|n| *n > 0)?;
        // SAFETY: librdkafka initialised the first `n` elements.
        unsafe { messages.set_len(n.min(max)) };
        Some(Fetched { messages, _client: Arc::clone(keep_alive) })
    }
}

unsafe extern "C" fn call_wake(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `WakeFn` registered by `wake_on_nonempty`, alive while registered.
    let wake = unsafe { &*opaque.cast::<WakeFn>() };
    wake();
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.disable_wake();
        // SAFETY: the handle is valid and dropped once.
        unsafe { rd::rd_kafka_queue_destroy(self.ptr.as_ptr()) }
    }
}

/// Messages taken from a consumer in one batch, destroyed together when the last record
/// that borrows their bytes is dropped (after its copy is acknowledged). They keep their
/// client alive.
pub struct Fetched {
    messages: Vec<*mut rd::rd_kafka_message_t>,
    _client: Arc<dyn Send + Sync>,
}

// SAFETY: a consumed message is immutable once returned to the application, and
// `rd_kafka_message_destroy` may be called from any thread (it drops reference counts).
unsafe impl Send for Fetched {}
// SAFETY: only shared reads of immutable messages happen through `&Fetched`.
unsafe impl Sync for Fetched {}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched").field("messages", &self.messages.len()).finish_non_exhaustive()
    }
}

/// One message of a [`Fetched`] batch, read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchedMessage<'a> {
    message: &'a rd::rd_kafka_message_t,
}

impl Fetched {
    /// How many messages (and events) the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The `i`-th message.
    pub(crate) fn get(&self, i: usize) -> Option<FetchedMessage<'_>> {
        // SAFETY: every pointer is a live message until `self` drops.
        self.messages.get(i).map(|m| FetchedMessage { message: unsafe { &**m } })
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        for message in self.messages.drain(..) {
            // SAFETY: each message was handed to us by `consume_batch` and is destroyed once.
            unsafe { rd::rd_kafka_message_destroy(message) }
        }
    }
}

impl<'a> FetchedMessage<'a> {
    /// The error this element carries (`None` for a record).
    pub(crate) fn error(&self) -> Option<RDKafkaErrorCode> {
        let err = self.message.err;
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| err.into())
    }

    pub(crate) fn partition(&self) -> i32 {
        self.message.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.message.offset
    }

    /// The key, borrowed from librdkafka's fetch buffer.
    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: `key`/`key_len` describe bytes owned by the message, alive while it is.
        bytes(self.message.key.cast(), self.message.key_len)
    }

    /// The value, borrowed from librdkafka's fetch buffer.
    pub(crate) fn payload(&self) -> Option<&'a [u8]> {
        bytes(self.message.payload.cast(), self.message.len)
    }

    /// The timestamp in milliseconds, if the message has one.
    pub(crate) fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message; `kind` is written by librdkafka.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0).then_some(ts)
    }

    /// Whether the message certainly has no headers, known without asking librdkafka
    /// (which allocates a parser for every message to find out).
    ///
    /// A message with a partition leader epoch comes from a v2 record batch (librdkafka
    /// leaves older message sets at -1), where a record's value is followed, in the same
    /// contiguous buffer (a response is read into one), by the varint count of its
    /// headers: a zero byte means none. Only a value of at least one byte points into that
    /// buffer (librdkafka points an empty one at a static empty string).
    fn has_no_headers(&self) -> bool {
        let value = self.message.payload.cast::<u8>();
        // SAFETY: a live message.
        if value.is_null() || self.message.len == 0 || unsafe { rd::rd_kafka_message_leader_epoch(self.message) } < 0 {
            return false;
        }
        // SAFETY: in a v2 record the header count follows the value within the record, in
        // the fetch (or decompression) buffer the value points into.
        unsafe { *value.add(self.message.len) == 0 }
    }

    /// The headers, copied, in their order.
    pub(crate) fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        if self.has_no_headers() {
            return Vec::new();
        }
        let mut headers: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: a live message; the headers stay owned by it.
        let err = unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0.. {
            let (mut name, mut value, mut size) = (ptr::null(), ptr::null(), 0usize);
            // SAFETY: librdkafka writes a NUL-terminated name and a value of `size` bytes
            // (or NULL) owned by the headers, or answers an error past the last one.
            let err = unsafe { rd::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: as above.
            let key = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            out.push((key, bytes(value.cast(), size).map(<[u8]>::to_vec)));
        }
        out
    }
}

/// The bytes at `ptr`, or `None` for a null pointer (a null key or value).
fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: callers pass a pointer and length librdkafka gave for bytes it owns for `'a`.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The high watermark of `partition` that librdkafka cached from its last fetch response
/// for this consumer: no request, so it pairs with the position read at the same
/// instant. `None` until a fetch response arrived.
pub(crate) fn cached_high_watermark<C: ClientContext>(client: &Client<C>, topic: &std::ffi::CStr, partition: i32) -> Option<i64> {
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: a valid client and C string, and two out-parameters that live for the call.
    let err = unsafe { rd::rd_kafka_get_watermark_offsets(client.native_ptr(), topic.as_ptr(), partition, &mut low, &mut high) };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// A producer's handle on its output topic, so a send needs no lookup by name.
pub(crate) struct Topic {
    ptr: NonNull<rd::rd_kafka_topic_t>,
}

// SAFETY: topic handles are reference counted and usable from any thread.
unsafe impl Send for Topic {}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic").finish_non_exhaustive()
    }
}

impl Topic {
    /// The handle of `topic` for `client`; it must be dropped before the client.
    pub(crate) fn new<C: ClientContext>(client: &Client<C>, topic: &str) -> Option<Topic> {
        let name = CString::new(topic).ok()?;
        // SAFETY: a valid client and C string; NULL conf takes the client's defaults.
        let ptr = unsafe { rd::rd_kafka_topic_new(client.native_ptr(), name.as_ptr(), ptr::null_mut()) };
        NonNull::new(ptr).map(|ptr| Topic { ptr })
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        // SAFETY: a valid handle, released once.
        unsafe { rd::rd_kafka_topic_destroy(self.ptr.as_ptr()) }
    }
}

/// What one record hands to [`produce`]: every byte borrowed, so nothing is copied here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Milliseconds; `None` lets librdkafka stamp the send time.
    pub timestamp: Option<i64>,
    pub headers: &'a [(String, Option<Vec<u8>>)],
    /// Handed back with the delivery report.
    pub opaque: usize,
}

/// Enqueues one message on `client` for `topic` **without copying** its key and value:
/// the caller keeps those bytes alive until the message's delivery report has been
/// served (librdkafka reads them until then). Headers, when any, are copied.
pub(crate) fn produce<C: ClientContext>(client: &Client<C>, topic: &Topic, out: Outgoing<'_>) -> Result<(), RDKafkaErrorCode> {
    use rd::rd_kafka_vtype_t::*;
    let (value, value_len) = out.value.map_or((ptr::null_mut(), 0), |v| (v.as_ptr().cast_mut().cast::<c_void>(), v.len()));
    let (key, key_len) = out.key.map_or((ptr::null_mut(), 0), |k| (k.as_ptr().cast_mut().cast::<c_void>(), k.len()));
    let headers = if out.headers.is_empty() { ptr::null_mut() } else { new_headers(out.headers) };
    // SAFETY: the topic handle belongs to this client; key and value outlive the message
    // (the caller's contract above); with no F_COPY/F_FREE flag librdkafka neither copies
    // nor frees them. The headers object passes to librdkafka on success only.
    let err = unsafe {
        rd::rd_kafka_producev(
            client.native_ptr(),
            RD_KAFKA_VTYPE_RKT,
            topic.ptr.as_ptr(),
            RD_KAFKA_VTYPE_PARTITION,
            out.partition,
            RD_KAFKA_VTYPE_MSGFLAGS,
            0 as c_int,
            RD_KAFKA_VTYPE_VALUE,
            value,
            value_len,
            RD_KAFKA_VTYPE_KEY,
            key,
            key_len,
            RD_KAFKA_VTYPE_OPAQUE,
            out.opaque as *mut c_void,
            RD_KAFKA_VTYPE_TIMESTAMP,
            out.timestamp.unwrap_or(0),
            RD_KAFKA_VTYPE_HEADERS,
            headers,
            RD_KAFKA_VTYPE_END,
        )
    };
    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    if !headers.is_null() {
        // SAFETY: librdkafka did not take the headers.
        unsafe { rd::rd_kafka_headers_destroy(headers) }
    }
    Err(err.into())
}

fn new_headers(headers: &[(String, Option<Vec<u8>>)]) -> *mut rd::rd_kafka_headers_t {
    // SAFETY: a fresh headers object; `rd_kafka_header_add` copies name and value.
    unsafe {
        let hdrs = rd::rd_kafka_headers_new(headers.len());
        for (name, value) in headers {
            let (ptr, len) = value.as_deref().map_or((ptr::null(), 0), |v| (v.as_ptr().cast::<c_void>(), v.len()));
            rd::rd_kafka_header_add(hdrs, name.as_ptr().cast(), name.len() as isize, ptr, len as isize);
        }
        hdrs
    }
}
