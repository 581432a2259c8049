//! The observation protocol: an observer is any dataflow over the record stream that
//! emits keyed figures, `((observer, metric, labels), diff)` per epoch
//! ([`MetricKey`], built with [`tidewatch_engine::counts`]). It declares its metrics
//! ([`MetricSpec`]) and how a window reads them ([`MetricKind`]); the stats document,
//! `/metrics`, OpenSearch and the alert rules read every figure generically, so a new
//! observer is one file, one test and one registration line ([`crate::builtin`]).
//!
//! ```
//! use differential_dataflow::VecCollection;
//! use tidewatch_engine::counts::{CountKeys, MetricKey};
//! use tidewatch_engine::RecordStream;
//! use tidewatch_operators::protocol::{DataflowObserver, MetricKind, MetricSpec, ObserverContext};
//!
//! /// Records with a null key, per partition and window.
//! #[derive(Debug)]
//! struct NullKeys;
//!
//! impl DataflowObserver for NullKeys {
//!     fn name(&self) -> &str { "null_keys" }
//!     fn metrics(&self) -> Vec<MetricSpec> {
//!         vec![MetricSpec::new("records", MetricKind::Count, &["partition"], "Records with a null key")]
//!     }
//!     fn observe<'scope>(&self, records: RecordStream<'scope>, _: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize> {
//!         records.count_each("NullKeys", |record, tally| {
//!             if record.key.is_none() {
//!                 tally.add(MetricKey::new("null_keys", "records").label("partition", record.partition), 1);
//!             }
//!         })
//!     }
//! }
//! # let _ = NullKeys;
//! ```

use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidewatch_engine::budget::{CopyClock, Sampler};
use tidewatch_engine::counts::MetricKey;
use tidewatch_engine::RecordStream;

/// How a window reads a metric's updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Summed over the window's epochs (records counted in the window); `/metrics` also
    /// keeps a running total.
    Count,
    /// A level: the sum of all its updates up to the window's end (an observer reports a
    /// change of the level as `new − old`).
    Gauge,
    /// A level that is a time in ms since the Unix epoch; outputs show its age at the
    /// window's end, in seconds (absent while the level is 0: nothing seen yet).
    Age,
}

/// One metric an observer declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// The metric's name within the observer.
    pub name: String,
    /// How a window reads it.
    pub kind: MetricKind,
    /// Its label names, in order.
    pub labels: Vec<String>,
    /// One line for `/metrics` and the docs.
    pub help: String,
}

impl MetricSpec {
    /// A metric `name` of `kind` with labels `labels`.
    pub fn new(name: &str, kind: MetricKind, labels: &[&str], help: &str) -> MetricSpec {
        MetricSpec { name: name.to_owned(), kind, labels: labels.iter().map(|l| (*l).to_owned()).collect(), help: help.to_owned() }
    }
}

/// What an observer may use while it builds its dataflow on a worker.
#[derive(Debug, Clone)]
pub struct ObserverContext {
    /// The observation window (ms).
    pub window_ms: u64,
    /// Settings of the `[observe.settings]` table, by `<observer>.<key>`.
    pub settings: BTreeMap<String, String>,
    copy_clock: Rc<CopyClock>,
    budget: f64,
}

impl ObserverContext {
    /// The context of one worker, whose copy path keeps `copy_clock`.
    pub fn new(window_ms: u64, settings: BTreeMap<String, String>, copy_clock: Rc<CopyClock>, budget: f64) -> ObserverContext {
        ObserverContext { window_ms: window_ms.max(1), settings, copy_clock, budget }
    }

    /// A sampler that holds a branch to the job's observation budget (`observe.budget`).
    pub fn sampler(&self) -> Sampler {
        Sampler::new(Rc::clone(&self.copy_clock), self.budget)
    }

    /// The setting `<observer>.<key>`, or `default`.
    pub fn setting(&self, observer: &str, key: &str, default: &str) -> String {
        self.settings.get(&format!("{observer}.{key}")).cloned().unwrap_or_else(|| default.to_owned())
    }
}

/// An observer on the protocol: a dataflow from the record stream to keyed figures.
pub trait DataflowObserver: Send + Sync + 'static {
    /// Its name: the first part of its metrics' keys.
    fn name(&self) -> &str;
    /// The metrics it emits.
    fn metrics(&self) -> Vec<MetricSpec>;
    /// Builds its dataflow on one worker: updates `(key, epoch, diff)` of its figures.
    fn observe<'scope>(&self, records: RecordStream<'scope>, context: &ObserverContext) -> VecCollection<'scope, u64, MetricKey, isize>;
}

/// The declared metrics of `observers`, by `<observer>.<metric>`.
pub fn specs(observers: &[std::sync::Arc<dyn DataflowObserver>]) -> BTreeMap<String, MetricSpec> {
    observers.iter().flat_map(|o| o.metrics().into_iter().map(move |m| (format!("{}.{}", o.name(), m.name), m))).collect()
}

/// A top-level string field of a JSON object value, read without building the value
/// and, unless the string holds escapes, without allocating (`None` when the value is
/// not an object, or the field is absent or not a string).
pub fn top_level_str<'a>(value: &'a [u8], field: &str) -> Option<std::borrow::Cow<'a, str>> {
    use serde::de::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(value);
    de.deserialize_map(scan::Find(field)).ok().flatten()
}

/// The visitors of [`top_level_str`].
mod scan {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;


    /// Whether a key equals the field, compared in place.
    struct IsKey<'f>(&'f str);
    impl<'de> DeserializeSeed<'de> for IsKey<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for IsKey<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }

    /// A string, borrowed when it can be.
    struct Text;
    impl<'de> DeserializeSeed<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    pub(super) struct Find<'f>(pub(super) &'f str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            // The first occurrence counts; the rest is skipped (the parser checks it is JSON).
            let mut found = None;
            while let Some(is_key) = map.next_key_seed(IsKey(self.0))? {
                if is_key && found.is_none() {
                    found = Some(map.next_value_seed(Text)?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found.flatten())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::top_level_str;

    #[test]
    fn top_level_strings_are_found_without_building_the_value() {
        let v = br#"{"a":{"user_id":"inner"},"user_id":"u-1","n":[1,2,{"x":null}]}"#;
        assert_eq!(top_level_str(v, "user_id").as_deref(), Some("u-1"));
        assert_eq!(top_level_str(br#"{"user_id":"a\"b"}"#, "user_id").as_deref(), Some("a\"b"));
        for (value, why) in [
            (&v[..], "absent"),
            (&br#"{"user_id":7}"#[..], "a number"),
            (&br#"{"user_id":null}"#[..], "null"),
            (&br#"{"user_id":{"a":1}}"#[..], "an object"),
            (&br#"[1,2]"#[..], "not an object"),
            (&b"{oops"[..], "not JSON"),
        ] {
            let field = if why == "absent" { "missing" } else { "user_id" };
            assert_eq!(top_level_str(value, field), None, "{why}");
        }
    }
}
