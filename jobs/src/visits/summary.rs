//! What the generator wrote: records per partition, faults injected and, per important
//! field, how many records carry it invalid and how. The figures are exactly what an
//! independent parse of the written records finds, so a job observing the topic can be
//! checked against them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::schema::Kind;

/// How many parseable records hold one field invalid, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FieldCounts {
    /// All of the below.
    pub invalid: u64,
    /// The key is absent (or a parent object is absent, `null` or not an object).
    pub missing: u64,
    /// `null`.
    pub null: u64,
    /// `""`.
    pub empty_string: u64,
    /// `[]`.
    pub empty_array: u64,
    /// `{}`.
    pub empty_object: u64,
}

impl FieldCounts {
    /// Counts one record where the field reads as `kind`.
    pub(crate) fn add(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Valid => return,
            Kind::Missing => &mut self.missing,
            Kind::Null => &mut self.null,
            Kind::EmptyString => &mut self.empty_string,
            Kind::EmptyArray => &mut self.empty_array,
            Kind::EmptyObject => &mut self.empty_object,
        };
        *slot += 1;
        self.invalid += 1;
    }

    /// `null` or `""`: what the reference job calls an empty field.
    pub fn null_or_empty(&self) -> u64 {
        self.null + self.empty_string
    }
}

/// How many records received each fault. Duplicated records count twice here as in the
/// topic; a record may carry several faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCounts {
    /// Records with a non-empty subset of the top-level fields nulled.
    pub nulled: u64,
    /// Records with an important field set to `""`.
    pub empty_string: u64,
    /// Records with a top-level key removed.
    pub missing_key: u64,
    /// Records with a field inside `context` nulled.
    pub nested_null: u64,
    /// Records cut short (not valid JSON).
    pub truncated: u64,
    /// Records with a byte that is not UTF-8.
    pub non_utf8: u64,
    /// Extra copies: records emitted a second time right after the original.
    pub duplicates: u64,
    /// Records whose `event_time` was shifted back by the late delay.
    pub late: u64,
}

/// Everything the generator emitted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorSummary {
    /// The generator's seed.
    pub seed: u64,
    /// Records emitted, duplicates included.
    pub records: u64,
    /// Bytes of all values.
    pub value_bytes: u64,
    /// Records per partition, indexed by partition.
    pub per_partition: Vec<u64>,
    /// Records whose value does not parse as JSON (truncated or not UTF-8). They are
    /// counted nowhere in `fields`.
    pub unparseable: u64,
    /// Per important field (dotted path): parseable records holding it invalid.
    pub fields: BTreeMap<String, FieldCounts>,
    /// Faults injected.
    pub faults: FaultCounts,
}

impl GeneratorSummary {
    /// Pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain structs and string-keyed maps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the summary as pretty JSON to `path`, or to stdout when `path` is `-`.
    pub fn write_to(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = self.to_json_pretty();
        text.push('\n');
        if path.as_os_str() == "-" {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing the summary to stdout")
        } else {
            std::fs::write(path, text).with_context(|| format!("writing the summary to {}", path.display()))
        }
    }

    /// Reads a summary written by [`write_to`](Self::write_to).
    pub fn read_from(path: &Path) -> anyhow::Result<GeneratorSummary> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing the summary {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut summary = GeneratorSummary { seed: 3, records: 10, per_partition: vec![7, 3], ..GeneratorSummary::default() };
        let mut counts = FieldCounts::default();
        counts.add(Kind::Null);
        counts.add(Kind::EmptyString);
        counts.add(Kind::Valid);
        summary.fields.insert("page".to_owned(), counts);
        summary.faults.nulled = 1;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("summary.json");
        summary.write_to(&path).expect("written");
        let back = GeneratorSummary::read_from(&path).expect("read back");
        assert_eq!(back, summary);
        assert_eq!(back.fields["page"].invalid, 2);
        assert_eq!(back.fields["page"].null_or_empty(), 2);
    }
}
