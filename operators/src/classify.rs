//! How a record's JSON value reads for quality: for each watched field path, whether it
//! is present, missing, null, `""`, `[]` or `{}` ([`FieldKind`]); for the record, whether
//! it parsed and is an object ([`RecordKind`]). The kinds come from the parse the
//! observers share ([`crate::parse`]).

pub use crate::parse::{FieldKind, FieldPathError, RecordKind};
use crate::parse::{FieldRef, FieldValue, Parser, Tape, Watches};

/// A set of watched field paths (`page`, `context.user.login`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSet {
    paths: Vec<String>,
}

impl FieldSet {
    /// Checks dotted paths; an empty path or segment, or a path listed twice, is an error.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<FieldSet, FieldPathError> {
        let watches = Watches::default();
        let mut names: Vec<String> = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            watches.watch(path)?;
            if names.iter().any(|n| n == path) {
                return Err(FieldPathError { path: path.to_owned(), reason: "listed twice" });
            }
            names.push(path.to_owned());
        }
        Ok(FieldSet { paths: names })
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

    /// Watches every path in `watches`: the [`FieldRef`] of each, in order.
    pub fn watch(&self, watches: &Watches) -> Vec<FieldRef> {
        self.paths.iter().filter_map(|p| watches.watch(p).ok()).collect()
    }

    /// Classifies one `value` on its own, writing each field's kind into `kinds` (resized
    /// to [`Self::len`]), with the job's parser ([`crate::parse`]); the job itself reads
    /// the kinds from the parse its observers share.
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
        let watches = Watches::default();
        self.watch(&watches);
        let mut parser = Parser::new(&watches, Some(0));
        let mut tape = Tape::default();
        let (kind, values) = parser.parse_one(value, &mut tape);
        kinds.clear();
        kinds.extend(values.map(|v| v.map_or(FieldKind::Missing, FieldValue::kind)));
        kinds.resize(self.paths.len(), FieldKind::Missing);
        kind
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
