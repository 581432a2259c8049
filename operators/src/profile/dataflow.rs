//! The profile operator: partial profiles per worker and window, merged by field on the
//! worker the field name hashes to, assembled on worker 0 once the window's frontier has
//! passed.
//!
//! ```text
//! records ─ProfilePartial─► (window, piece) ─exchange by field─► ProfileMerge ─► all to worker 0 ─► ProfileAssemble ─► WindowProfile
//! ```
//! A piece is a field's partial profile or the window's whole-record counts, so the
//! heavy merging of sketches is spread over the workers by field, and worker 0 only
//! gathers one merged profile per field.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;

use tidewatch_engine::budget::Sampler;
use tidewatch_engine::counts::FoldWindows;
use tidewatch_engine::RecordStream;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::Stream;

use super::field::FieldProfile;
use crate::parse::{FullParse, ParseRecords, ParsedBatch, ParsedStream};
use super::{report, Overview, PartialProfile, ProfileBuilder, ProfileConfig, ValueType, WindowProfile};

/// A part of a window's partial profile, as workers exchange it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Piece {
    /// The whole-record counts.
    Overview(Overview),
    /// One field's profile.
    Field(String, Box<FieldProfile>),
}

impl Piece {
    /// The worker hash of the piece: by field name; the overview goes to worker 0.
    fn route(&self) -> u64 {
        match self {
            Piece::Overview(_) => 0,
            Piece::Field(name, _) => xxhash_rust::xxh3::xxh3_64(name.as_bytes()),
        }
    }
}

/// Profiles a record stream per window.
pub trait ProfileWindows<'scope> {
    /// Per window of `window_ms` (windows start at multiples of it), the [`WindowProfile`]
    /// of the records of all workers, emitted on worker 0 once the frontier has passed
    /// the window's end; windows without records are skipped. Drift is measured against
    /// the previous profile emitted.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Event}};
    /// use tidewatch_engine::Record;
    /// use tidewatch_operators::profile::{dataflow::ProfileWindows, ProfileConfig};
    ///
    /// let record = |v: &[u8]| Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(v.into()), headers: vec![] };
    /// let captured = timely::example(move |scope| {
    ///     vec![record(br#"{"page":"home"}"#), record(br#"{"page":7}"#), record(b"{oops")]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .profile_windows(Arc::new(ProfileConfig::default()), 60_000)
    ///         .capture()
    /// });
    /// let profiles: Vec<_> = captured
    ///     .try_iter()
    ///     .flat_map(|event| if let Event::Messages(_, data) = event { data } else { Vec::new() })
    ///     .collect();
    /// assert_eq!(profiles.len(), 1);
    /// assert_eq!(profiles[0].overview.records, 3);
    /// assert_eq!(profiles[0].summary["page"].types["integer"], 1);
    /// ```
    fn profile_windows(self, config: Arc<ProfileConfig>, window_ms: u64) -> Stream<'scope, u64, Vec<WindowProfile>>;
}

impl<'scope> ProfileWindows<'scope> for RecordStream<'scope> {
    fn profile_windows(self, config: Arc<ProfileConfig>, window_ms: u64) -> Stream<'scope, u64, Vec<WindowProfile>> {
        self.parse_records(FullParse::Always).stream().profile_windows(config, window_ms)
    }
}

impl<'scope> ProfileWindows<'scope> for ParsedStream<'scope> {
    /// Profiles the records the parse read whole ([`FullParse`]); the others count as
    /// skipped. With the profile's sampler, the time it takes is charged to it.
    fn profile_windows(self, config: Arc<ProfileConfig>, window_ms: u64) -> Stream<'scope, u64, Vec<WindowProfile>> {
        profile_parsed(self, config, window_ms, None)
    }
}

/// [`ProfileWindows::profile_windows`] of parsed records, the time of the profile charged
/// to `sampler` when there is one.
pub fn profile_parsed<'scope>(records: ParsedStream<'scope>, config: Arc<ProfileConfig>, window_ms: u64, sampler: Option<Rc<RefCell<Sampler>>>) -> Stream<'scope, u64, Vec<WindowProfile>> {
    let window_ms = window_ms.max(1);
    let builder_config = Arc::clone(&config);
    let pieces = records.fold_windows(
        "ProfilePartial",
        Pipeline,
        window_ms,
        move |_start| ProfileBuilder::new(&builder_config),
        move |builder, _epoch, batches: &mut Vec<Rc<ParsedBatch>>| {
            let started = sampler.as_ref().map(|_| std::time::Instant::now());
            for batch in batches.iter() {
                batch.views().for_each(|view| builder.observe_view(&view));
            }
            if let (Some(sampler), Some(started)) = (&sampler, started) {
                sampler.borrow_mut().charge(started.elapsed());
            }
        },
        |start, builder, out| pieces_of(start, builder.finish(), out),
    );
    // Each field's partials meet on the worker its name hashes to, and are merged there.
    let merged = pieces.fold_windows(
        "ProfileMerge",
        Exchange::new(|(_, piece): &(u64, Piece)| piece.route()),
        window_ms,
        |_start| PartialProfile::default(),
        |partial, _epoch, pieces: &mut Vec<(u64, Piece)>| pieces.drain(..).for_each(|(_, piece)| absorb(partial, piece)),
        pieces_of,
    );
    // Worker 0 assembles the window's profile.
    let mut previous: Option<BTreeMap<String, ValueType>> = None;
    merged.fold_windows(
        "ProfileAssemble",
        Exchange::new(|_: &(u64, Piece)| 0),
        window_ms,
        |_start| PartialProfile::default(),
        |partial, _epoch, pieces: &mut Vec<(u64, Piece)>| pieces.drain(..).for_each(|(_, piece)| absorb(partial, piece)),
        move |start, partial, out| {
            let mut profile = WindowProfile::new(start, start + window_ms, partial, &config);
            let types = profile.dominant_types();
            if let Some(before) = &previous {
                profile.drift = report::drift(before, &types);
            }
            previous = Some(types);
            tracing::debug!(window_start_ms = start, records = profile.overview.records, fields = profile.summary.len(), "window profile assembled");
            out.push(profile);
        },
    )
}

/// A window's partial profile as pieces: its overview (unless empty) and one per field.
fn pieces_of(start: u64, partial: PartialProfile, out: &mut Vec<(u64, Piece)>) {
    if partial.overview != Overview::default() {
        out.push((start, Piece::Overview(partial.overview)));
    }
    out.extend(partial.fields.into_iter().map(|(name, field)| (start, Piece::Field(name, Box::new(field)))));
}

/// Adds a piece to a window's partial profile.
fn absorb(partial: &mut PartialProfile, piece: Piece) {
    match piece {
        Piece::Overview(o) => partial.merge(&PartialProfile { overview: o, fields: BTreeMap::new() }),
        Piece::Field(name, field) => match partial.fields.get_mut(&name) {
            Some(mine) => mine.merge(&field),
            None => {
                partial.fields.insert(name, *field);
            }
        },
    }
}
