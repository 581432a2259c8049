//! [`ProfileBuilder`]: profiles raw record values in one pass.
//!
//! Each value is parsed once, by a strict byte scanner for the common case
//! (`fast.rs`) or, when that gives up, a streaming serde visitor (no
//! `serde_json::Value` either way).
//! Field paths are interned in a tree of keys (`schema.rs`), so a record whose keys
//! were seen before allocates nothing. The values of a record are buffered as events
//! and applied only once the whole value has parsed, so a record that turns out to be
//! malformed half-way is counted as unparseable and leaves no trace in the fields.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fast::{scan, Scan};
use super::field::{FieldProfile, TimeRange};
use super::schema::{Event, Schema, MAX_DEPTH};
use super::sketch::ValueType;
use super::timestamp::parse_rfc3339_ms;
use super::{Overview, PartialProfile, ProfileConfig};

/// Longest text kept for a frequent value (the value is counted by its full hash).
const MAX_VALUE_TEXT: usize = 256;

/// Hash seeds, one per type, so `"1"` and `1` are different values.
const SEED_STRING: u64 = 1;
const SEED_INTEGER: u64 = 2;
const SEED_FLOAT: u64 = 3;
const SEED_BOOL: u64 = 4;

/// Frequent-value counters kept per field for a `top_k`.
pub(crate) fn counters_for(top_k: usize) -> usize {
    top_k.saturating_mul(10).max(100)
}

/// Profiles raw record values (JSON) of one window, in one pass; see the module docs.
#[derive(Debug)]
pub struct ProfileBuilder {
    schema: Schema,
    fields: Vec<FieldProfile>,
    counters: usize,
    overview: Overview,
    events: Vec<Event>,
    text: String,
}

impl ProfileBuilder {
    /// An empty builder for `config` (its `top_k` and `max_fields`).
    pub fn new(config: &ProfileConfig) -> ProfileBuilder {
        ProfileBuilder {
            schema: Schema::new(config.max_fields.max(1)),
            fields: Vec::new(),
            counters: counters_for(config.top_k),
            overview: Overview::default(),
            events: Vec::new(),
            text: String::new(),
        }
    }

    /// Records observed so far.
    pub fn records(&self) -> u64 {
        self.overview.records
    }

    /// Profiles one record value: `None` is a tombstone, bytes that are not JSON (or not
    /// UTF-8) are counted as unparseable, JSON that is not an object as `not_object`.
    /// Counts a record the observation budget left out of the profile.
    pub fn skip(&mut self) {
        self.overview.skipped += 1;
    }

    pub fn observe(&mut self, value: Option<&[u8]>) {
        self.observe_inner(value, true);
    }

    /// [`Self::observe`] without the fast scanner (to compare the two).
    #[cfg(test)]
    pub(crate) fn observe_with_serde(&mut self, value: Option<&[u8]>) {
        self.observe_inner(value, false);
    }

    fn observe_inner(&mut self, value: Option<&[u8]>, fast: bool) {
        self.overview.records += 1;
        let Some(bytes) = value else {
            self.overview.tombstones += 1;
            return;
        };
        // JSON is UTF-8 text; serde_json does not check the bytes of strings it skips.
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.overview.unparseable += 1;
            return;
        };
        self.events.clear();
        self.text.clear();
        if fast {
            match scan(text, &mut self.schema, &mut self.events, &mut self.text) {
                Scan::Object => {
                    self.overview.objects += 1;
                    self.apply();
                    return;
                }
                Scan::NotObject => {
                    self.overview.not_object += 1;
                    return;
                }
                Scan::GiveUp => {
                    self.events.clear();
                    self.text.clear();
                }
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let mut walk = Walk { schema: &mut self.schema, events: &mut self.events, text: &mut self.text };
        let parsed = RootSeed { walk: &mut walk }.deserialize(&mut de).and_then(|is_object| de.end().map(|()| is_object));
        match parsed {
            Ok(true) => {
                self.overview.objects += 1;
                self.apply();
            }
            Ok(false) => self.overview.not_object += 1,
            Err(_) => self.overview.unparseable += 1,
        }
    }

    /// Applies the buffered events of a record that parsed.
    fn apply(&mut self) {
        while self.fields.len() < self.schema.field_count() {
            self.fields.push(FieldProfile::new(self.counters));
        }
        for event in self.events.drain(..) {
            let (id, value_type) = match event {
                Event::Null(id) => (id, ValueType::Null),
                Event::Bool(id, _) => (id, ValueType::Bool),
                Event::Int(id, _) => (id, ValueType::Integer),
                Event::Float(id, _) => (id, ValueType::Float),
                Event::Str(id, ..) => (id, ValueType::String),
                Event::Array(id, _) => (id, ValueType::Array),
                Event::Object(id, _) => (id, ValueType::Object),
                Event::Dropped => {
                    self.overview.dropped_values += 1;
                    continue;
                }
                Event::TooDeep => {
                    self.overview.too_deep += 1;
                    continue;
                }
            };
            let Some(field) = self.fields.get_mut(id as usize) else { continue };
            field.present += 1;
            field.types.add(value_type);
            match event {
                Event::Bool(_, b) => {
                    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&[u8::from(b)], SEED_BOOL);
                    if !field.frequent.insert(hash, ValueType::Bool, |s| s.push_str(if b { "true" } else { "false" })) {
                        field.distinct.insert(hash);
                    }
                }
                Event::Int(_, n) => {
                    field.add_number(n as f64);
                    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), SEED_INTEGER);
                    if !field.frequent.insert(hash, ValueType::Integer, |s| {
                        let _ = write!(s, "{n}");
                    }) {
                        field.distinct.insert(hash);
                    }
                }
                Event::Float(_, x) => {
                    field.add_number(x);
                    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&x.to_bits().to_le_bytes(), SEED_FLOAT);
                    if !field.frequent.insert(hash, ValueType::Float, |s| {
                        let _ = write!(s, "{x}");
                    }) {
                        field.distinct.insert(hash);
                    }
                }
                Event::Str(_, start, end) => {
                    let s = self.text.get(start as usize..end as usize).unwrap_or("");
                    if s.is_empty() {
                        field.empty_string += 1;
                    }
                    let chars = if s.is_ascii() { s.len() } else { s.chars().count() };
                    field.lengths.add(chars as u64);
                    if s.len() >= 20 {
                        if let Some(ms) = parse_rfc3339_ms(s) {
                            TimeRange::add(&mut field.timestamps, ms);
                        }
                    }
                    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(s.as_bytes(), SEED_STRING);
                    if !field.frequent.insert(hash, ValueType::String, |out| out.push_str(truncate(s, MAX_VALUE_TEXT))) {
                        field.distinct.insert(hash);
                    }
                }
                Event::Array(_, true) => field.empty_array += 1,
                Event::Object(_, true) => field.empty_object += 1,
                _ => {}
            }
        }
    }

    /// The profile of the records observed: the overview and every field that occurred.
    pub fn finish(self) -> PartialProfile {
        let ProfileBuilder { schema, fields, overview, .. } = self;
        let fields: BTreeMap<String, FieldProfile> =
            schema.into_names().into_iter().zip(fields).filter(|(_, f)| f.present > 0).map(|(name, f)| (name.into_string(), f)).collect();
        PartialProfile { overview, fields }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The state a record's parse writes into.
struct Walk<'b> {
    schema: &'b mut Schema,
    events: &'b mut Vec<Event>,
    text: &'b mut String,
}

/// Reads the record's value; walks it when it is an object. Returns whether it was one.
struct RootSeed<'w, 'b> {
    walk: &'w mut Walk<'b>,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(RootVisitor { walk: self.walk })
    }
}

struct RootVisitor<'w, 'b> {
    walk: &'w mut Walk<'b>,
}

impl<'de> Visitor<'de> for RootVisitor<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        walk_map(self.walk, None, 0, map)?;
        Ok(true)
    }
}

/// Walks the entries of an object whose field is `parent` (the root when `None`) at
/// `depth`; returns whether it was empty.
fn walk_map<'de, A: MapAccess<'de>>(walk: &mut Walk<'_>, parent: Option<u32>, depth: u32, mut map: A) -> Result<bool, A::Error> {
    let mut empty = true;
    while let Some(child) = map.next_key_seed(KeySeed { schema: &mut *walk.schema, parent })? {
        empty = false;
        match child {
            Some(field) => map.next_value_seed(ValueSeed { walk: &mut *walk, field, depth: depth + 1 })?,
            None => {
                map.next_value::<IgnoredAny>()?;
                walk.events.push(Event::Dropped);
            }
        }
    }
    Ok(empty)
}

/// Reads an object key and interns it under `parent`.
struct KeySeed<'s> {
    schema: &'s mut Schema,
    parent: Option<u32>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<u32>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<u32>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<u32>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<u32>, E> {
        Ok(self.schema.child(self.parent, key))
    }
}

/// Reads the value of field `field`, at nesting `depth` (1 for top-level fields).
struct ValueSeed<'w, 'b> {
    walk: &'w mut Walk<'b>,
    field: u32,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.walk.events.push(Event::Null(self.field));
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.walk.events.push(Event::Bool(self.field, b));
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        self.walk.events.push(Event::Int(self.field, i128::from(n)));
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.walk.events.push(Event::Int(self.field, i128::from(n)));
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        self.walk.events.push(Event::Float(self.field, x));
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        let text = &mut *self.walk.text;
        let start = u32::try_from(text.len()).map_err(|_| E::custom("record too large"))?;
        text.push_str(s);
        let end = u32::try_from(text.len()).map_err(|_| E::custom("record too large"))?;
        self.walk.events.push(Event::Str(self.field, start, end));
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut empty = true;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            empty = false;
        }
        self.walk.events.push(Event::Array(self.field, empty));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let empty = if self.depth >= MAX_DEPTH {
            let mut empty = true;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                empty = false;
            }
            if !empty {
                self.walk.events.push(Event::TooDeep);
            }
            empty
        } else {
            walk_map(self.walk, Some(self.field), self.depth, map)?
        };
        self.walk.events.push(Event::Object(self.field, empty));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{ProfileBuilder, ProfileConfig};

    /// The fast path and the serde path agree on every record, fast or not.
    #[test]
    fn agrees_with_the_serde_path() {
        let records: [&[u8]; 24] = [
            br#"{"a":1,"b":"x","c":{"d":[1,{"e":2}],"f":{}},"g":null,"h":true,"i":false,"j":[]}"#,
            br#" { "a" : -12 , "b" : "" } "#,
            br#"{"a":1.5}"#,
            br#"{"a":-0}"#,
            br#"{"a":0}"#,
            br#"{"a":01}"#,
            br#"{"a":1e3}"#,
            br#"{"a":123456789012345678901}"#,
            br#"{"a":"esc\"aped"}"#,
            br#"{"k\u0041":1}"#,
            br#"{"a":1,}"#,
            br#"{"a":[1,]}"#,
            br#"{"a" 1}"#,
            br#"{"a":tru}"#,
            br#"[1,2,{"a":3}]"#,
            br#""s""#,
            br#"12"#,
            br#"-"#,
            br#"{"a":1}{"#,
            b"{\"a\":\"tab\there\"}",
            b"{\"a\":\"caf\xc3\xa9\"}",
            br#"{"a":{"b":{"c":{"d":1}}},"a":2}"#,
            br#"{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
            b"",
        ];
        for record in records {
            let config = ProfileConfig::default();
            let mut fast = ProfileBuilder::new(&config);
            fast.observe(Some(record));
            let mut slow = ProfileBuilder::new(&config);
            slow.observe_with_serde(Some(record));
            let (fast, slow) = (fast.finish(), slow.finish());
            let shown = String::from_utf8_lossy(record);
            assert_eq!(fast.overview, slow.overview, "{shown}");
            assert_eq!(fast.fields.keys().collect::<Vec<_>>(), slow.fields.keys().collect::<Vec<_>>(), "{shown}");
            for (name, f) in &fast.fields {
                let s = &slow.fields[name];
                assert_eq!(
                    (f.present, f.types, f.empty(), f.numeric, &f.lengths, f.timestamps),
                    (s.present, s.types, s.empty(), s.numeric, &s.lengths, s.timestamps),
                    "{shown}"
                );
                assert_eq!((f.frequent.sorted(), f.distinct.estimate()), (s.frequent.sorted(), s.distinct.estimate()), "{shown}");
            }
        }
    }
}
