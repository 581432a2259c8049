//! One parse of each record value, shared by every observer.
//!
//! The [`ParseRecords::parse_records`] operator parses each record's value once, on the
//! worker that read it, into a [`ParsedBatch`]: per record, its [`RecordKind`] and its
//! values as events over interned field paths. Quality, value rules, record observers,
//! the protocol's observers and the dataset profile all read that batch through a
//! [`RecordView`]; none of them scans the bytes again.
//!
//! What is read depends on who asks:
//! - the fields observers **watch** ([`Watches::watch`], registered while the dataflow is
//!   built): every record, found in O(1) through a [`FieldRef`];
//! - **every** field, for the records the dataset profile takes (all of them, or those
//!   its sampler takes under the observation budget).
//!
//! The value is read by a strict byte scanner for the common case (`fast.rs`) and, when
//! that gives up, by a streaming serde visitor (`walk.rs`), which decides; neither builds
//! a `serde_json::Value`. Only [`RecordView::json`], for an observer that wants the whole
//! value as a tree, parses again.
//!
//! ```
//! use tidewatch_engine::Record;
//! use tidewatch_operators::parse::{FieldKind, FieldValue, Parser, RecordKind, Watches};
//!
//! let watches = Watches::default();
//! let page = watches.watch("page").unwrap();
//! let login = watches.watch("context.user.login").unwrap();
//! let mut parser = Parser::new(&watches, None);
//! let record = |v: &[u8]| Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(v.into()), headers: vec![] };
//! let batch = parser.batch(vec![record(br#"{"page":"","context":{"user":{"login":"jo"}}}"#), record(b"{oops")], |_| false);
//! let views: Vec<_> = batch.views().collect();
//! assert_eq!(views[0].kind(), RecordKind::Object);
//! assert_eq!(views[0].get(page).map(FieldValue::kind), Some(FieldKind::EmptyString));
//! assert_eq!(views[0].get(login), Some(FieldValue::Str("jo")));
//! assert_eq!(views[1].kind(), RecordKind::Unparseable);
//! ```

mod fast;
mod kinds;
mod schema;
mod walk;

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use serde_json::Value;
use tidewatch_engine::budget::Sampler;
use tidewatch_engine::{Record, RecordStream};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::Stream;

use fast::{scan, Scan};
pub use kinds::{FieldKind, FieldPathError, RecordKind};
pub(crate) use schema::{Event, Names};
use schema::Schema;
pub use schema::MAX_DEPTH;

/// The parsed records of a worker: one [`ParsedBatch`] per batch of the record stream,
/// shared (not copied) by every observer reading it.
pub type ParsedStream<'scope> = Stream<'scope, u64, Vec<Rc<ParsedBatch>>>;

/// Fields interned per worker when the profile reads every field (beyond it, the schema
/// starts again from the watched fields).
const DEFAULT_FULL_FIELDS: usize = 4_096;

/// A watched field: its position among the watched paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldRef(u16);

impl FieldRef {
    /// Its position among the watched paths.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The watched field paths of a worker's dataflow, registered while it is built.
#[derive(Debug, Clone, Default)]
pub struct Watches(Rc<RefCell<Vec<Box<str>>>>);

impl Watches {
    /// Watches `path` (dotted, `context.user.login`); the same path twice is one field.
    pub fn watch(&self, path: &str) -> Result<FieldRef, FieldPathError> {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(FieldPathError { path: path.to_owned(), reason: "expected dot-separated non-empty names" });
        }
        let mut paths = self.0.borrow_mut();
        let at = match paths.iter().position(|p| &**p == path) {
            Some(at) => at,
            None => {
                paths.push(path.into());
                paths.len() - 1
            }
        };
        u16::try_from(at).map(FieldRef).map_err(|_| FieldPathError { path: path.to_owned(), reason: "too many watched fields" })
    }

    /// The watched paths so far, by [`FieldRef::index`].
    pub fn paths(&self) -> Vec<Box<str>> {
        self.0.borrow().clone()
    }
}

/// A value of a field as parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer (within ±2¹²⁷).
    Int(i128),
    /// Any other number.
    Float(f64),
    /// A string, unescaped.
    Str(&'a str),
    /// An array, and whether it is empty.
    Array {
        /// `[]`.
        empty: bool,
    },
    /// An object, and whether it is empty.
    Object {
        /// `{}`.
        empty: bool,
    },
}

impl<'a> FieldValue<'a> {
    /// How the field reads for quality (never [`FieldKind::Missing`]: that is no value).
    pub fn kind(self) -> FieldKind {
        match self {
            FieldValue::Null => FieldKind::Null,
            FieldValue::Str("") => FieldKind::EmptyString,
            FieldValue::Array { empty: true } => FieldKind::EmptyArray,
            FieldValue::Object { empty: true } => FieldKind::EmptyObject,
            _ => FieldKind::Present,
        }
    }

    /// The string, if it is one.
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if it is one.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            FieldValue::Int(n) => Some(n as f64),
            FieldValue::Float(x) => Some(x),
            _ => None,
        }
    }

    /// A string, number or bool as text (numbers as JSON writes them).
    pub fn text(self) -> Option<Cow<'a, str>> {
        match self {
            FieldValue::Str(s) => Some(Cow::Borrowed(s)),
            FieldValue::Int(n) => Some(Cow::Owned(n.to_string())),
            FieldValue::Float(x) => serde_json::Number::from_f64(x).map(|n| Cow::Owned(n.to_string())),
            FieldValue::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            _ => None,
        }
    }

    fn of_event(event: Event, text: &'a str) -> Option<FieldValue<'a>> {
        Some(match event {
            Event::Null(_) => FieldValue::Null,
            Event::Bool(_, b) => FieldValue::Bool(b),
            Event::Int(_, n) => FieldValue::Int(i128::from(n)),
            Event::UInt(_, n) => FieldValue::Int(i128::from(n)),
            Event::Float(_, x) => FieldValue::Float(x),
            Event::Str(_, a, b) => FieldValue::Str(text.get(a as usize..b as usize).unwrap_or("")),
            Event::Array(_, empty) => FieldValue::Array { empty },
            Event::Object(_, empty, _) => FieldValue::Object { empty },
            Event::Dropped | Event::TooDeep => return None,
        })
    }

    fn of_json(value: &'a Value) -> FieldValue<'a> {
        match value {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => FieldValue::Int(i128::from(i)),
                (_, Some(u)) => FieldValue::Int(i128::from(u)),
                _ => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => FieldValue::Str(s),
            Value::Array(a) => FieldValue::Array { empty: a.is_empty() },
            Value::Object(o) => FieldValue::Object { empty: o.is_empty() },
        }
    }
}

/// One record's parse within its batch.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    kind: RecordKind,
    /// Its events, a range of the batch's.
    events: (u32, u32),
    /// Whether every field was read (the profile takes it).
    full: bool,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed { kind: RecordKind::Tombstone, events: (0, 0), full: false }
    }
}

/// The parses of several values: events and string text in two buffers, so a batch of
/// records allocates a few vectors, not a few per record. Reuse one with
/// [`Parser::parse_one`].
#[derive(Debug, Default)]
pub struct Tape {
    parsed: Vec<Parsed>,
    events: Vec<Event>,
    text: String,
    /// Per parse and watched field: 1 + the index of its value's event, or 0.
    slots: Vec<u32>,
}

impl Tape {
    /// The first parse: its kind, events and text (a tombstone when there is none).
    pub(crate) fn first(&self) -> (RecordKind, &[Event], &str) {
        let parsed = self.parsed.first().copied().unwrap_or_default();
        let events = self.events.get(parsed.events.0 as usize..parsed.events.1 as usize).unwrap_or(&[]);
        (parsed.kind, events, &self.text)
    }

    pub(crate) fn clear(&mut self) {
        self.parsed.clear();
        self.events.clear();
        self.text.clear();
        self.slots.clear();
    }
}

/// One worker's parser: its interned field paths, the watched fields first.
#[derive(Debug)]
pub struct Parser {
    schema: Schema,
    watched: Rc<[Box<str>]>,
    /// Per watched field, the schema ids of its path from the root.
    chains: Vec<Vec<u32>>,
    /// Per id of a watched path (a record's scratch): 1 + the index of its last event.
    last: Vec<u32>,
    full_fields: usize,
    generation: u64,
}

impl Parser {
    /// A parser for the fields of `watches`, reading every field, up to `full_fields`
    /// (default 4 096) interned, for the records asked to ([`Parser::batch`]).
    pub fn new(watches: &Watches, full_fields: Option<usize>) -> Parser {
        let watched: Rc<[Box<str>]> = watches.paths().into();
        let full_fields = full_fields.unwrap_or(DEFAULT_FULL_FIELDS);
        let mut parser = Parser { schema: Schema::new(0), watched, chains: Vec::new(), last: Vec::new(), full_fields, generation: 0 };
        parser.reset();
        parser
    }

    /// Starts the schema again from the watched fields (a new generation of ids).
    fn reset(&mut self) {
        let segments: usize = self.watched.iter().map(|p| p.split('.').count()).sum();
        self.schema = Schema::new(segments + self.full_fields.max(1));
        self.chains.clear();
        for path in self.watched.iter() {
            let mut id = None;
            let mut chain = Vec::new();
            for segment in path.split('.') {
                id = self.schema.child(id, segment, true);
                chain.extend(id);
            }
            self.chains.push(chain);
        }
        self.last = vec![0; self.schema.field_count()];
        self.generation += 1;
    }

    /// Parses `records`, every field of those `full` picks, into a batch.
    pub fn batch(&mut self, records: Vec<Record>, mut full: impl FnMut(&Record) -> bool) -> ParsedBatch {
        let mut tape = self.begin(records.len());
        for (at, record) in records.iter().enumerate() {
            self.parse_at(at, record.value.as_deref(), full(record), &mut tape);
        }
        self.seal(records, tape)
    }

    /// A tape for `records` parses, the schema started again first if it is full.
    fn begin(&mut self, records: usize) -> Tape {
        if self.schema.is_full() {
            self.reset();
        }
        let mut tape = Tape::default();
        tape.parsed.resize(records, Parsed::default());
        tape
    }

    /// The batch of `records` and their parses.
    fn seal(&self, records: Vec<Record>, tape: Tape) -> ParsedBatch {
        ParsedBatch { records, tape, watched: Rc::clone(&self.watched), names: Rc::clone(self.schema.names()), generation: self.generation }
    }

    /// [`Parser::batch`] with the profile's sampler: the records it takes are read whole,
    /// and that reading is charged to it.
    pub fn batch_sampled(&mut self, records: Vec<Record>, sampler: &mut Sampler) -> ParsedBatch {
        let mut tape = self.begin(records.len());
        let taken: Vec<bool> = records.iter().map(|_| sampler.take()).collect();
        sampler.timed(|_| {
            for (at, record) in records.iter().enumerate().filter(|(at, _)| taken[*at]) {
                self.parse_at(at, record.value.as_deref(), true, &mut tape);
            }
        });
        for (at, record) in records.iter().enumerate().filter(|(at, _)| !taken[*at]) {
            self.parse_at(at, record.value.as_deref(), false, &mut tape);
        }
        self.seal(records, tape)
    }

    /// Parses one value onto the end of `tape`.
    pub(crate) fn parse_into(&mut self, value: Option<&[u8]>, full: bool, tape: &mut Tape) {
        let at = tape.parsed.len();
        tape.parsed.push(Parsed::default());
        self.parse_at(at, value, full, tape);
    }

    /// Parses one value into parse `at` of `tape` (its events and text appended).
    fn parse_at(&mut self, at: usize, value: Option<&[u8]>, full: bool, tape: &mut Tape) {
        let width = self.watched.len();
        if tape.slots.len() < (at + 1) * width {
            tape.slots.resize((at + 1) * width, 0);
        }
        let (start, text_start) = (tape.events.len(), tape.text.len());
        let kind = self.read(value, full, &mut tape.events, &mut tape.text);
        if kind != RecordKind::Object {
            tape.events.truncate(start);
            tape.text.truncate(text_start);
        }
        let end = tape.events.len();
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        tape.parsed[at] = Parsed { kind, events: (clamp(start), clamp(end)), full };
        self.last.iter_mut().for_each(|l| *l = 0);
        for (index, event) in tape.events[start..end].iter().enumerate() {
            if let Some(last) = event_id(event).and_then(|id| self.last.get_mut(id as usize)) {
                *last = clamp(start + index + 1);
            }
        }
        let slots = &mut tape.slots[at * width..(at + 1) * width];
        for (slot, chain) in slots.iter_mut().zip(&self.chains) {
            *slot = last_value(chain, &self.last, &tape.events);
        }
    }

    /// Reads one value's events; what kind of record it is.
    fn read(&mut self, value: Option<&[u8]>, full: bool, events: &mut Vec<Event>, text: &mut String) -> RecordKind {
        let Some(bytes) = value else { return RecordKind::Tombstone };
        // JSON is UTF-8 text; serde_json does not check the bytes of strings it skips.
        let Ok(value) = std::str::from_utf8(bytes) else { return RecordKind::Unparseable };
        let (event_start, text_start) = (events.len(), text.len());
        match scan(value, &mut self.schema, events, text, full) {
            Scan::Object => return RecordKind::Object,
            Scan::NotObject => return RecordKind::NotObject,
            Scan::GiveUp => {
                events.truncate(event_start);
                text.truncate(text_start);
            }
        }
        match walk::walk(value, &mut self.schema, events, text, full) {
            Ok(true) => RecordKind::Object,
            Ok(false) => RecordKind::NotObject,
            Err(_) => RecordKind::Unparseable,
        }
    }

    /// Parses one value on its own: its kind, and each watched field's value.
    pub fn parse_one<'t>(&mut self, value: Option<&[u8]>, tape: &'t mut Tape) -> (RecordKind, impl Iterator<Item = Option<FieldValue<'t>>> + 't) {
        tape.clear();
        self.parse_into(value, false, tape);
        let kind = tape.parsed.first().map_or(RecordKind::Tombstone, |p| p.kind);
        let values = tape.slots.iter().map(|slot| slot.checked_sub(1).and_then(|e| tape.events.get(e as usize)).and_then(|e| FieldValue::of_event(*e, &tape.text)));
        (kind, values)
    }

    /// The generation of the schema's ids (it changes when the schema starts again).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The names of the current generation's ids.
    pub(crate) fn names(&self) -> &Names {
        self.schema.names()
    }
}

/// 1 + the index of the event of the field at the end of `chain` (ids from the root) as
/// the last occurrence of each of its parents holds it, or 0: a key given twice counts
/// once, the last time, with all it holds (as `serde_json::Value` and JavaScript read it).
fn last_value(chain: &[u32], last: &[u32], events: &[Event]) -> u32 {
    let at = |id: &u32| last.get(*id as usize).copied().unwrap_or(0);
    let Some(leaf) = chain.last() else { return 0 };
    for pair in chain.windows(2) {
        let (parent, child) = (at(&pair[0]), at(&pair[1]));
        let Some(Event::Object(_, _, children)) = parent.checked_sub(1).and_then(|p| events.get(p as usize)) else { return 0 };
        if child == 0 || child - 1 < *children || child >= parent {
            return 0;
        }
    }
    at(leaf)
}

/// The field id of an event, if it has one.
fn event_id(event: &Event) -> Option<u32> {
    match *event {
        Event::Null(id) | Event::Bool(id, _) | Event::Int(id, _) | Event::UInt(id, _) | Event::Float(id, _) | Event::Str(id, ..) | Event::Array(id, _) | Event::Object(id, ..) => Some(id),
        Event::Dropped | Event::TooDeep => None,
    }
}

/// A batch of records with their parses.
#[derive(Debug)]
pub struct ParsedBatch {
    records: Vec<Record>,
    tape: Tape,
    watched: Rc<[Box<str>]>,
    names: Names,
    generation: u64,
}

impl ParsedBatch {
    /// The records.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A view of each record, in order.
    pub fn views(&self) -> impl Iterator<Item = RecordView<'_>> + '_ {
        (0..self.records.len()).map(move |at| RecordView { batch: self, at, json: OnceCell::new() })
    }
}

/// A record as an observer sees it: the raw record and its shared parse.
#[derive(Debug)]
pub struct RecordView<'a> {
    batch: &'a ParsedBatch,
    at: usize,
    json: OnceCell<Option<Value>>,
}

impl<'a> RecordView<'a> {
    /// The record, bytes and all.
    pub fn record(&self) -> &'a Record {
        &self.batch.records[self.at]
    }

    /// What kind of value it holds.
    pub fn kind(&self) -> RecordKind {
        self.parsed().kind
    }

    fn parsed(&self) -> Parsed {
        self.batch.tape.parsed.get(self.at).copied().unwrap_or_default()
    }

    /// A watched field's value (`None`: missing, or the record is not an object).
    pub fn get(&self, field: FieldRef) -> Option<FieldValue<'a>> {
        let width = self.batch.watched.len();
        let slot = *self.batch.tape.slots.get(self.at * width + field.index())?;
        let event = *self.batch.tape.events.get(slot.checked_sub(1)? as usize)?;
        FieldValue::of_event(event, &self.batch.tape.text)
    }

    /// The value at a dotted path: from the shared parse when the path is watched, else
    /// from [`RecordView::json`] (a second parse: watch the fields you read).
    pub fn field(&self, path: &str) -> Option<FieldValue<'_>> {
        match self.batch.watched.iter().position(|p| &**p == path) {
            Some(index) => self.get(FieldRef(u16::try_from(index).ok()?)),
            None => path.split('.').try_fold(self.json()?, |value, key| value.get(key)).map(FieldValue::of_json),
        }
    }

    /// The value parsed as a `serde_json::Value` (`None` for a null value or one that does
    /// not parse) — parsed again, at most once per view, for observers that want the tree.
    pub fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| self.record().value.as_deref().and_then(|v| serde_json::from_slice(v).ok())).as_ref()
    }

    /// Whether every field was read (the profile took it).
    pub(crate) fn is_full(&self) -> bool {
        self.parsed().full
    }

    /// Its events, the text they point into, the names of their ids and the generation
    /// of those ids.
    pub(crate) fn events(&self) -> (&'a [Event], &'a str, &'a Names, u64) {
        let (a, b) = self.parsed().events;
        let events = self.batch.tape.events.get(a as usize..b as usize).unwrap_or(&[]);
        (events, &self.batch.tape.text, &self.batch.names, self.batch.generation)
    }
}

/// What the profile asks of the parse.
#[derive(Debug)]
pub enum FullParse {
    /// No record is read whole (no profile).
    Never,
    /// Every record is (the profile, without a budget).
    Always,
    /// The records the profile's sampler takes.
    Sampled(Rc<RefCell<Sampler>>),
}

/// The parsed records of a worker, and the fields watched in them.
#[derive(Clone)]
pub struct ParsedRecords<'scope> {
    stream: ParsedStream<'scope>,
    watches: Watches,
}

impl<'scope> ParsedRecords<'scope> {
    /// Watches `path` in every record (while the dataflow is built; see [`Watches`]).
    pub fn watch(&self, path: &str) -> Result<FieldRef, FieldPathError> {
        self.watches.watch(path)
    }

    /// The registry of watched fields, to hand to [`crate::classify::FieldSet::watch`].
    pub fn watch_handle(&self) -> Watches {
        self.watches.clone()
    }

    /// The stream of parsed batches.
    pub fn stream(&self) -> ParsedStream<'scope> {
        self.stream.clone()
    }
}

impl std::fmt::Debug for ParsedRecords<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedRecords").field("watches", &self.watches).finish_non_exhaustive()
    }
}

/// Parses a record stream once for all its observers.
pub trait ParseRecords<'scope> {
    /// Each batch of records with its parse: the fields watched (by the time the dataflow
    /// starts running), and every field of the records `full` asks for.
    fn parse_records(self, full: FullParse) -> ParsedRecords<'scope>;
}

impl<'scope> ParseRecords<'scope> for RecordStream<'scope> {
    fn parse_records(self, full: FullParse) -> ParsedRecords<'scope> {
        let watches = Watches::default();
        let stream = parse_stream(self, watches.clone(), full);
        ParsedRecords { stream, watches }
    }
}

fn parse_stream(records: RecordStream<'_>, watches: Watches, full: FullParse) -> ParsedStream<'_> {
    let mut parser: Option<Parser> = None;
    let mut last_epoch = None;
    records.unary::<CapacityContainerBuilder<Vec<Rc<ParsedBatch>>>, _, _, _>(Pipeline, "ParseRecords", move |_, _| {
        move |input, output| {
            input.for_each(|time, data| {
                let Some(&epoch) = time.least() else { return };
                // Every observer has registered its fields by the first batch.
                let parser = parser.get_or_insert_with(|| Parser::new(&watches, None));
                let records = std::mem::take(data);
                let batch = match &full {
                    FullParse::Never => parser.batch(records, |_| false),
                    FullParse::Always => parser.batch(records, |_| true),
                    FullParse::Sampled(sampler) => {
                        let mut sampler = sampler.borrow_mut();
                        if last_epoch.replace(epoch).is_some_and(|e| e != epoch) {
                            sampler.next_epoch();
                        }
                        parser.batch_sampled(records, &mut sampler)
                    }
                };
                output.session(&time).give(Rc::new(batch));
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::schema::Schema;
    use super::*;

    fn record(value: &[u8]) -> Record {
        Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(value.into()), headers: vec![] }
    }

    const RECORDS: [&[u8]; 24] = [
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

    /// The fast scanner and the serde path agree on every record the scanner decides.
    #[test]
    fn the_fast_path_agrees_with_the_serde_path() {
        for value in RECORDS {
            let Ok(text) = std::str::from_utf8(value) else { continue };
            let (mut fast_schema, mut slow_schema) = (Schema::new(64), Schema::new(64));
            let (mut fast_events, mut slow_events) = (Vec::new(), Vec::new());
            let (mut fast_text, mut slow_text) = (String::new(), String::new());
            let scanned = scan(text, &mut fast_schema, &mut fast_events, &mut fast_text, true);
            let walked = walk::walk(text, &mut slow_schema, &mut slow_events, &mut slow_text, true);
            let shown = String::from_utf8_lossy(value);
            match scanned {
                Scan::GiveUp => continue,
                Scan::Object => assert!(matches!(walked, Ok(true)), "{shown}"),
                Scan::NotObject => assert!(matches!(walked, Ok(false)), "{shown}"),
            }
            assert_eq!(fast_events, slow_events, "{shown}");
            assert_eq!(fast_text, slow_text, "{shown}");
            assert_eq!(*fast_schema.names().borrow(), *slow_schema.names().borrow(), "{shown}");
        }
    }

    /// A watched field reads the same whether the record is read whole or not, and
    /// whatever the schema learnt from earlier records.
    #[test]
    fn watched_fields_read_the_same_read_whole_or_not() {
        let watches = Watches::default();
        let fields: Vec<FieldRef> = ["a", "c.f", "c.d", "b"].iter().map(|p| watches.watch(p).expect("path")).collect();
        let mut parser = Parser::new(&watches, Some(8));
        for value in RECORDS {
            let whole = parser.batch(vec![record(value)], |_| true);
            let watched = parser.batch(vec![record(value)], |_| false);
            let (whole, watched) = (whole.views().next().expect("a view"), watched.views().next().expect("a view"));
            assert_eq!(whole.kind(), watched.kind(), "{}", String::from_utf8_lossy(value));
            for field in &fields {
                assert_eq!(whole.get(*field), watched.get(*field), "{}", String::from_utf8_lossy(value));
            }
        }
    }

    /// When the schema is full it starts again; the watched fields keep their place.
    #[test]
    fn a_full_schema_starts_again_and_keeps_the_watched_fields() {
        let watches = Watches::default();
        let page = watches.watch("page").expect("path");
        let mut parser = Parser::new(&watches, Some(4));
        let first = parser.generation();
        for n in 0..20 {
            let value = format!(r#"{{"k{n}":1,"page":"p{n}"}}"#);
            let batch = parser.batch(vec![record(value.as_bytes())], |_| true);
            let view = batch.views().next().expect("a view");
            assert_eq!(view.get(page).and_then(FieldValue::as_str), Some(format!("p{n}").as_str()));
        }
        assert!(parser.generation() > first, "the schema started again");
    }

    /// An event is two words: a batch of records holds a few of them per field.
    #[test]
    fn an_event_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Event>(), 16);
    }

    /// A key given twice counts the last time, with all it holds.
    #[test]
    fn the_last_of_a_repeated_key_holds() {
        let watches = Watches::default();
        let (a, ab) = (watches.watch("a").expect("path"), watches.watch("a.b").expect("path"));
        let mut parser = Parser::new(&watches, None);
        for (value, want_a, want_ab) in [
            (&br#"{"a":{"b":1},"a":[]}"#[..], Some(FieldValue::Array { empty: true }), None),
            (br#"{"a":{"b":1},"a":{"c":2}}"#, Some(FieldValue::Object { empty: false }), None),
            (br#"{"a":{"b":1},"a":{"b":"x"}}"#, Some(FieldValue::Object { empty: false }), Some(FieldValue::Str("x"))),
            (br#"{"a":{"b":1,"b":null}}"#, Some(FieldValue::Object { empty: false }), Some(FieldValue::Null)),
            (br#"{"a":{"b":"kA"},"a":{"c":{"b":3}}}"#, Some(FieldValue::Object { empty: false }), None),
        ] {
            for full in [false, true] {
                let batch = parser.batch(vec![record(value)], |_| full);
                let view = batch.views().next().expect("a view");
                let shown = String::from_utf8_lossy(value);
                assert_eq!((view.get(a), view.get(ab)), (want_a, want_ab), "{shown} (read whole: {full})");
            }
        }
    }

    /// A field nobody watched is still read, from the value parsed again.
    #[test]
    fn a_field_not_watched_is_read_from_a_second_parse() {
        let watches = Watches::default();
        watches.watch("a").expect("path");
        let mut parser = Parser::new(&watches, None);
        let batch = parser.batch(vec![record(br#"{"a":{"b":[]},"z":"zed"}"#)], |_| false);
        let view = batch.views().next().expect("a view");
        assert_eq!(view.field("a"), Some(FieldValue::Object { empty: false }));
        assert_eq!(view.field("z"), Some(FieldValue::Str("zed")));
        assert_eq!(view.field("a.b"), Some(FieldValue::Array { empty: true }));
        assert_eq!(view.field("nope"), None);
        assert!(!view.is_full());
    }
}
