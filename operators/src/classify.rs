//! Classifies a record's JSON value in one pass: for each configured field path, whether
//! it is present, missing, null, `""`, `[]` or `{}`; for the record, whether it parsed
//! and is an object. Nothing is allocated for fields that are not watched.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// How one field of a record reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A value that is none of the empty kinds below.
    Present,
    /// The key is absent, or a parent is absent, `null` or not an object.
    Missing,
    /// `null`.
    Null,
    /// `""`.
    EmptyString,
    /// `[]`.
    EmptyArray,
    /// `{}`.
    EmptyObject,
}

impl FieldKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FieldKind; 6] =
        [FieldKind::Present, FieldKind::Missing, FieldKind::Null, FieldKind::EmptyString, FieldKind::EmptyArray, FieldKind::EmptyObject];

    /// Whether the field is empty in any way (what `invalid_<field>` counts).
    pub fn is_invalid(self) -> bool {
        self != FieldKind::Present
    }

    /// The kind's name in documents and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Present => "present",
            FieldKind::Missing => "missing",
            FieldKind::Null => "null",
            FieldKind::EmptyString => "empty_string",
            FieldKind::EmptyArray => "empty_array",
            FieldKind::EmptyObject => "empty_object",
        }
    }
}

/// How a whole record reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A JSON object: its fields are classified.
    Object,
    /// Valid JSON that is not an object (its fields count as missing).
    NotObject,
    /// Not valid JSON, or not UTF-8 (its fields are not counted).
    Unparseable,
    /// A null value (a tombstone; its fields are not counted).
    Tombstone,
}

impl RecordKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RecordKind; 4] = [RecordKind::Object, RecordKind::NotObject, RecordKind::Unparseable, RecordKind::Tombstone];

    /// The kind's name in documents and metrics.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Object => "object",
            RecordKind::NotObject => "not_object",
            RecordKind::Unparseable => "unparseable",
            RecordKind::Tombstone => "tombstone",
        }
    }
}

/// A set of watched field paths (`page`, `context.user.login`), compiled into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSet {
    paths: Vec<String>,
    root: Node,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// Index of the field this node is, if it is one.
    field: Option<usize>,
    children: Vec<(String, Node)>,
}

/// A field path that cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field path `{path}`: {reason}")]
pub struct FieldPathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FieldSet {
    /// Compiles dotted paths; an empty path or segment is an error.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<FieldSet, FieldPathError> {
        let mut root = Node::default();
        let mut names = Vec::with_capacity(paths.len());
        for (index, path) in paths.iter().enumerate() {
            let path = path.as_ref();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(FieldPathError { path: path.to_owned(), reason: "expected dot-separated non-empty names" });
            }
            if names.iter().any(|n: &String| n == path) {
                return Err(FieldPathError { path: path.to_owned(), reason: "listed twice" });
            }
            let mut node = &mut root;
            for segment in path.split('.') {
                let at = match node.children.iter().position(|(name, _)| name == segment) {
                    Some(at) => at,
                    None => {
                        node.children.push((segment.to_owned(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.field = Some(index);
            names.push(path.to_owned());
        }
        Ok(FieldSet { paths: names, root })
    }

    /// The watched paths, in the order given (a field's index is its position here).
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Number of watched fields.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no field is watched.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Classifies `value`, writing each field's kind into `kinds` (resized to [`Self::len`]).
    ///
    /// # Examples
    /// ```
    /// use tidewatch_operators::classify::{FieldKind, FieldSet, RecordKind};
    /// let fields = FieldSet::new(&["page", "user_id", "context.user.login"]).unwrap();
    /// let mut kinds = Vec::new();
    /// let record = br#"{"page":"","user_id":null,"context":{"user":{"login":"jo"}}}"#;
    /// assert_eq!(fields.classify(Some(record), &mut kinds), RecordKind::Object);
    /// assert_eq!(kinds, [FieldKind::EmptyString, FieldKind::Null, FieldKind::Present]);
    /// assert_eq!(fields.classify(Some(b"{\"page\":"), &mut kinds), RecordKind::Unparseable);
    /// ```
    pub fn classify(&self, value: Option<&[u8]>, kinds: &mut Vec<FieldKind>) -> RecordKind {
        kinds.clear();
        kinds.resize(self.paths.len(), FieldKind::Missing);
        let Some(bytes) = value else { return RecordKind::Tombstone };
        // JSON is UTF-8 text; serde_json does not check the bytes of strings it skips.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return RecordKind::Unparseable;
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let outcome = RootSeed { node: &self.root, kinds: kinds.as_mut_slice() }.deserialize(&mut de);
        match outcome.and_then(|is_object| de.end().map(|()| is_object)) {
            Ok(true) => RecordKind::Object,
            Ok(false) => {
                kinds.iter_mut().for_each(|k| *k = FieldKind::Missing);
                RecordKind::NotObject
            }
            Err(_) => {
                kinds.iter_mut().for_each(|k| *k = FieldKind::Missing);
                RecordKind::Unparseable
            }
        }
    }
}

/// Reads any value; for an object, walks `node`'s children. Returns whether it was an object.
struct RootSeed<'a, 'k> {
    node: &'a Node,
    kinds: &'k mut [FieldKind],
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(ValueVisitor { node: self.node, kinds: self.kinds }).map(|kind| matches!(kind, Shape::Object | Shape::EmptyObject))
    }
}

/// The shape of one JSON value, enough to tell the kinds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Null,
    EmptyString,
    EmptyArray,
    EmptyObject,
    Object,
    Other,
}

impl Shape {
    fn kind(self) -> FieldKind {
        match self {
            Shape::Null => FieldKind::Null,
            Shape::EmptyString => FieldKind::EmptyString,
            Shape::EmptyArray => FieldKind::EmptyArray,
            Shape::EmptyObject => FieldKind::EmptyObject,
            Shape::Object | Shape::Other => FieldKind::Present,
        }
    }
}

/// Visits one value; if it is an object, classifies the watched children of `node`.
struct ValueVisitor<'a, 'k> {
    node: &'a Node,
    kinds: &'k mut [FieldKind],
}

impl<'de> Visitor<'de> for ValueVisitor<'_, '_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Shape, E> {
        Ok(if s.is_empty() { Shape::EmptyString } else { Shape::Other })
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Shape, E> {
        self.visit_str(s)
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Shape, E> {
        self.visit_str(&s)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut empty = true;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            empty = false;
        }
        Ok(if empty { Shape::EmptyArray } else { Shape::Other })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut empty = true;
        while let Some(child) = map.next_key_seed(KeySeed { node: self.node })? {
            empty = false;
            match child {
                Some(node) => {
                    let shape = map.next_value_seed(ChildSeed { node, kinds: &mut *self.kinds })?;
                    if let Some(index) = node.field {
                        if let Some(slot) = self.kinds.get_mut(index) {
                            *slot = shape.kind();
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(if empty { Shape::EmptyObject } else { Shape::Object })
    }
}

/// Reads a child value: walks it when the child has watched children of its own.
struct ChildSeed<'a, 'k> {
    node: &'a Node,
    kinds: &'k mut [FieldKind],
}

impl<'de> DeserializeSeed<'de> for ChildSeed<'_, '_> {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(ValueVisitor { node: self.node, kinds: self.kinds })
    }
}

/// Reads a key and finds the watched child of that name, without allocating.
struct KeySeed<'a> {
    node: &'a Node,
}

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.node.children.iter().find(|(name, _)| name == key).map(|(_, node)| node))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        self.visit_str(key)
    }
    fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Self::Value, E> {
        self.visit_str(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::{FieldKind as K, FieldSet, RecordKind as R};

    fn run(paths: &[&str], value: &[u8]) -> (R, Vec<K>) {
        let set = FieldSet::new(paths).expect("paths");
        let mut kinds = Vec::new();
        let kind = set.classify(Some(value), &mut kinds);
        (kind, kinds)
    }

    #[test]
    fn tells_every_kind_apart() {
        let (r, k) = run(&["a", "b", "c", "d", "e", "f"], br#"{"a":1,"c":null,"d":"","e":[],"f":{}}"#);
        assert_eq!(r, R::Object);
        assert_eq!(k, [K::Present, K::Missing, K::Null, K::EmptyString, K::EmptyArray, K::EmptyObject]);
    }

    #[test]
    fn nested_paths_and_missing_parents() {
        let p = ["context.user.login", "context.referral", "context"];
        assert_eq!(run(&p, br#"{"context":{"user":{"login":"x"},"referral":null}}"#).1, [K::Present, K::Null, K::Present]);
        assert_eq!(run(&p, br#"{"context":null}"#).1, [K::Missing, K::Missing, K::Null]);
        assert_eq!(run(&p, br#"{"context":{"user":"str"}}"#).1, [K::Missing, K::Missing, K::Present]);
        assert_eq!(run(&p, br#"{"context":{}}"#).1, [K::Missing, K::Missing, K::EmptyObject]);
    }

    #[test]
    fn an_empty_object_is_an_object_with_every_field_missing() {
        for value in [&b"{}"[..], b" {\n\t} ", b"\r{\r}"] {
            assert_eq!(run(&["a", "b.c"], value), (R::Object, vec![K::Missing, K::Missing]), "{value:?}");
        }
    }

    #[test]
    fn whole_record_classes() {
        assert_eq!(run(&["a"], b"[1,2]"), (R::NotObject, vec![K::Missing]));
        assert_eq!(run(&["a"], b"{\"a\":1"), (R::Unparseable, vec![K::Missing]));
        assert_eq!(run(&["a"], b"{\"a\":\"\xff\"}").0, R::Unparseable);
        // Bad bytes in a field nobody watches still make the record unparseable.
        assert_eq!(run(&["a"], b"{\"a\":1,\"b\":\"\xc3\x28\"}").0, R::Unparseable);
        assert_eq!(run(&["a"], b"{\"a\":1} trailing").0, R::Unparseable);
        assert_eq!(run(&["a"], b"").0, R::Unparseable);
        let set = FieldSet::new(&["a"]).expect("paths");
        assert_eq!(set.classify(None, &mut Vec::new()), R::Tombstone);
    }

    #[test]
    fn deep_nesting_is_classified_without_recursion() {
        let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(run(&["a"], arrays.as_bytes()).0, R::NotObject);
        let objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(run(&["a", "b"], objects.as_bytes()), (R::Object, vec![K::Present, K::Missing]));
        let truncated = "{\"a\":".repeat(10_000);
        assert_eq!(run(&["a"], truncated.as_bytes()).0, R::Unparseable);
    }

    #[test]
    fn escaped_keys_match() {
        assert_eq!(run(&["page"], br#"{"p\u0061ge":""}"#).1, [K::EmptyString]);
    }

    #[test]
    fn bad_paths_are_rejected() {
        assert!(FieldSet::new(&["a..b"]).is_err());
        assert!(FieldSet::new(&[""]).is_err());
        assert!(FieldSet::new(&["a", "a"]).is_err());
    }
}
