//! How a record and its fields read: the kinds the parse tells apart.

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

/// A field path that cannot be watched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field path `{path}`: {reason}")]
pub struct FieldPathError {
    /// The path as given.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}
