//! The serde path of the parse: a streaming visitor (no `serde_json::Value`) that writes
//! the same events as the fast scanner, for the records that scanner gives up on.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::schema::{Event, Schema, MAX_DEPTH};

/// Parses `text` with serde, pushing its events; `Ok(true)` for an object, `Ok(false)`
/// for other JSON, `Err` when it is not JSON. `full`: as for the fast scanner.
pub(crate) fn walk(text: &str, schema: &mut Schema, events: &mut Vec<Event>, out: &mut String, full: bool) -> Result<bool, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut walk = Walk { schema, events, text: out, full };
    RootSeed { walk: &mut walk }.deserialize(&mut de).and_then(|is_object| de.end().map(|()| is_object))
}

/// The state a record's parse writes into.
struct Walk<'b> {
    schema: &'b mut Schema,
    events: &'b mut Vec<Event>,
    text: &'b mut String,
    full: bool,
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
    while let Some(child) = map.next_key_seed(KeySeed { schema: &mut *walk.schema, parent, intern: walk.full })? {
        empty = false;
        match child {
            Some(field) => map.next_value_seed(ValueSeed { walk: &mut *walk, field, depth: depth + 1 })?,
            None => {
                map.next_value_seed(Check { depth: depth + 1 })?;
                if walk.full {
                    walk.events.push(Event::Dropped);
                }
            }
        }
    }
    Ok(empty)
}

/// Reads an object key and interns it under `parent`.
struct KeySeed<'s> {
    schema: &'s mut Schema,
    parent: Option<u32>,
    intern: bool,
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
        Ok(self.schema.child(self.parent, key, self.intern))
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
        self.walk.events.push(Event::Int(self.field, n));
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.walk.events.push(i64::try_from(n).map_or(Event::UInt(self.field, n), |n| Event::Int(self.field, n)));
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
        let children = u32::try_from(self.walk.events.len()).map_err(|_| serde::de::Error::custom("record too large"))?;
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
        self.walk.events.push(Event::Object(self.field, empty, children));
        Ok(())
    }
}


/// Reads a value nobody asked for as the walk reads one that is asked for (strings
/// unescaped, numbers converted, objects descended to [`MAX_DEPTH`], arrays skipped),
/// keeping nothing: so whether a record parses does not depend on which fields are read.
struct Check {
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while map.next_key::<IgnoredKey>()?.is_some() {
            map.next_value_seed(Check { depth: self.depth + 1 })?;
        }
        Ok(())
    }
}

/// A key, unescaped as the walk's keys are, and dropped.
struct IgnoredKey;

impl<'de> Deserialize<'de> for IgnoredKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IgnoredKey, D::Error> {
        d.deserialize_str(KeyCheck)
    }
}

struct KeyCheck;

impl<'de> Visitor<'de> for KeyCheck {
    type Value = IgnoredKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<IgnoredKey, E> {
        Ok(IgnoredKey)
    }
}
