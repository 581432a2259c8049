//! [`ProfileBuilder`]: profiles record values from the shared parse ([`crate::parse`]).
//!
//! In the job, the builder reads the events of each record the parse read whole
//! ([`ProfileBuilder::observe_view`]); alone, it parses values itself with the same
//! parser ([`ProfileBuilder::observe`]). The values of a record are applied only once the
//! whole value has parsed, so a record that turns out to be malformed half-way is counted
//! as unparseable and leaves no trace in the fields.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::field::{FieldProfile, TimeRange};
use super::sketch::ValueType;
use super::timestamp::parse_rfc3339_ms;
use super::{Overview, PartialProfile, ProfileConfig};
use crate::parse::{Event, Names, Parser, RecordKind, RecordView, Tape, Watches};

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

/// Profiles record values (JSON) of one window, in one pass; see the module docs.
#[derive(Debug)]
pub struct ProfileBuilder {
    /// Per field of the window: its path and profile.
    names: Vec<Box<str>>,
    fields: Vec<FieldProfile>,
    /// The window's field of each id of the parse's current generation (1 + index; 0: not
    /// yet looked up), and that generation.
    slot_of: Vec<u32>,
    generation: u64,
    /// The window's field by path, to find a field again under a new generation of ids.
    by_name: HashMap<Box<str>, u32>,
    max_fields: usize,
    counters: usize,
    overview: Overview,
    /// For [`ProfileBuilder::observe`]: a parser and its scratch.
    own: Option<Box<(Parser, Tape)>>,
}

impl ProfileBuilder {
    /// An empty builder for `config` (its `top_k` and `max_fields`).
    pub fn new(config: &ProfileConfig) -> ProfileBuilder {
        ProfileBuilder {
            names: Vec::new(),
            fields: Vec::new(),
            slot_of: Vec::new(),
            generation: 0,
            by_name: HashMap::new(),
            max_fields: config.max_fields.max(1),
            counters: counters_for(config.top_k),
            overview: Overview::default(),
            own: None,
        }
    }

    /// Records observed so far.
    pub fn records(&self) -> u64 {
        self.overview.records
    }

    /// Counts a record the observation budget left out of the profile.
    pub fn skip(&mut self) {
        self.overview.skipped += 1;
    }

    /// Profiles one record value, parsing it: `None` is a tombstone, bytes that are not
    /// JSON (or not UTF-8) are counted as unparseable, JSON that is not an object as
    /// `not_object`.
    pub fn observe(&mut self, value: Option<&[u8]>) {
        let max_fields = self.max_fields;
        let mut own = self.own.take().unwrap_or_else(|| Box::new((Parser::new(&Watches::default(), Some(max_fields)), Tape::default())));
        let (parser, tape) = &mut *own;
        tape.clear();
        parser.parse_into(value, true, tape);
        let (kind, events, text) = tape.first();
        let (names, generation) = (parser.names(), parser.generation());
        self.apply(kind, events, text, names, generation);
        self.own = Some(own);
    }

    /// Profiles one record from the shared parse (read whole: see [`crate::parse`]);
    /// a record the parse did not read whole is counted as skipped.
    pub fn observe_view(&mut self, view: &RecordView<'_>) {
        if !view.is_full() {
            self.skip();
            return;
        }
        let (events, text, names, generation) = view.events();
        self.apply(view.kind(), events, text, names, generation);
    }

    /// Counts a record of `kind` and applies its events.
    fn apply(&mut self, kind: RecordKind, events: &[Event], text: &str, names: &Names, generation: u64) {
        self.overview.records += 1;
        match kind {
            RecordKind::Tombstone => self.overview.tombstones += 1,
            RecordKind::Unparseable => self.overview.unparseable += 1,
            RecordKind::NotObject => self.overview.not_object += 1,
            RecordKind::Object => {
                self.overview.objects += 1;
                if generation != self.generation {
                    self.slot_of.clear();
                    self.generation = generation;
                }
                for event in events {
                    self.apply_event(*event, text, names);
                }
            }
        }
    }

    /// The window's field of schema id `id`, added when new and there is room.
    #[inline]
    fn field_of(&mut self, id: u32, names: &Names) -> Option<&mut FieldProfile> {
        let id = id as usize;
        if id >= self.slot_of.len() {
            self.slot_of.resize(id + 1, 0);
        }
        let slot = match self.slot_of[id] {
            0 => {
                let names = names.borrow();
                let name = names.get(id)?;
                let slot = match self.by_name.get(name) {
                    Some(slot) => *slot,
                    None if self.fields.len() < self.max_fields => {
                        let slot = u32::try_from(self.fields.len()).ok()?;
                        self.fields.push(FieldProfile::new(self.counters));
                        self.names.push(name.clone());
                        self.by_name.insert(name.clone(), slot);
                        slot
                    }
                    None => return None,
                };
                self.slot_of[id] = slot + 1;
                slot
            }
            n => n - 1,
        };
        self.fields.get_mut(slot as usize)
    }

    /// Applies one event of a record that parsed.
    fn apply_event(&mut self, event: Event, text: &str, names: &Names) {
        let (id, value_type) = match event {
            Event::Null(id) => (id, ValueType::Null),
            Event::Bool(id, _) => (id, ValueType::Bool),
            Event::Int(id, _) | Event::UInt(id, _) => (id, ValueType::Integer),
            Event::Float(id, _) => (id, ValueType::Float),
            Event::Str(id, ..) => (id, ValueType::String),
            Event::Array(id, _) => (id, ValueType::Array),
            Event::Object(id, ..) => (id, ValueType::Object),
            Event::Dropped => {
                self.overview.dropped_values += 1;
                return;
            }
            Event::TooDeep => {
                self.overview.too_deep += 1;
                return;
            }
        };
        let Some(field) = self.field_of(id, names) else {
            self.overview.dropped_values += 1;
            return;
        };
        field.present += 1;
        field.types.add(value_type);
        match event {
            Event::Bool(_, b) => {
                let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&[u8::from(b)], SEED_BOOL);
                if !field.frequent.insert(hash, ValueType::Bool, |s| s.push_str(if b { "true" } else { "false" })) {
                    field.distinct.insert(hash);
                }
            }
            Event::Int(_, n) => add_integer(field, i128::from(n)),
            Event::UInt(_, n) => add_integer(field, i128::from(n)),
            Event::Float(_, x) => {
                field.add_number(x);
                let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&x.to_bits().to_le_bytes(), SEED_FLOAT);
                if !field.frequent.insert(hash, ValueType::Float, |s| {
                    let _ = write!(s, "{x}");
                }) {
                    field.distinct.insert(hash);
                }
            }
            Event::Str(_, start, end) => add_string(field, text.get(start as usize..end as usize).unwrap_or("")),
            Event::Array(_, true) => field.empty_array += 1,
            Event::Object(_, true, _) => field.empty_object += 1,
            _ => {}
        }
    }

    /// The profile of the records observed: the overview and every field that occurred.
    pub fn finish(self) -> PartialProfile {
        let ProfileBuilder { names, fields, overview, .. } = self;
        let fields: BTreeMap<String, FieldProfile> =
            names.into_iter().zip(fields).filter(|(_, f)| f.present > 0).map(|(name, f)| (name.into_string(), f)).collect();
        PartialProfile { overview, fields }
    }
}

/// Adds an integer value to a field's profile.
fn add_integer(field: &mut FieldProfile, n: i128) {
    field.add_number(n as f64);
    let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), SEED_INTEGER);
    if !field.frequent.insert(hash, ValueType::Integer, |s| {
        let _ = write!(s, "{n}");
    }) {
        field.distinct.insert(hash);
    }
}

/// Adds a string value to a field's profile.
fn add_string(field: &mut FieldProfile, s: &str) {
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

