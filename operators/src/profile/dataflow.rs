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
use tidewatch_engine::budget::Sampler;
use tidewatch_engine::RecordStream;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::field::FieldProfile;
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

/// Whether every time of `frontier` is at or beyond `end` (the window before it is final).
fn passed(frontier: &[u64], end: u64) -> bool {
    frontier.iter().all(|t| *t >= end)
}

/// Keeps, per window, the capability of its earliest time.
fn keep_earliest(slot: &mut Capability<u64>, candidate: Capability<u64>) {
    if candidate.time() < slot.time() {
        *slot = candidate;
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

    /// [`ProfileWindows::profile_windows`], profiling the records `sampler` takes (its
    /// time charged to it); the others are counted as skipped in the overview.
    fn profile_windows_within(self, config: Arc<ProfileConfig>, window_ms: u64, sampler: Option<Sampler>) -> Stream<'scope, u64, Vec<WindowProfile>>;
}

impl<'scope> ProfileWindows<'scope> for RecordStream<'scope> {
    fn profile_windows(self, config: Arc<ProfileConfig>, window_ms: u64) -> Stream<'scope, u64, Vec<WindowProfile>> {
        self.profile_windows_within(config, window_ms, None)
    }

    fn profile_windows_within(self, config: Arc<ProfileConfig>, window_ms: u64, mut sampler: Option<Sampler>) -> Stream<'scope, u64, Vec<WindowProfile>> {
        let window_ms = window_ms.max(1);
        let builder_config = Arc::clone(&config);
        let pieces = self.unary_frontier::<CapacityContainerBuilder<Vec<(u64, Piece)>>, _, _, _>(Pipeline, "ProfilePartial", move |_capability, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, ProfileBuilder)> = BTreeMap::new();
            let mut last_epoch = None;
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each(|capability, data| {
                    let Some(&epoch) = capability.least() else { return };
                    let start = epoch - epoch % window_ms;
                    let (_, builder) = pending.entry(start).or_insert_with(|| (capability.delayed(&epoch, port), ProfileBuilder::new(&builder_config)));
                    let Some(sampler) = sampler.as_mut() else {
                        data.iter().for_each(|record| builder.observe(record.value.as_deref()));
                        return;
                    };
                    if last_epoch.replace(epoch).is_some_and(|e| e != epoch) {
                        sampler.next_epoch();
                    }
                    sampler.timed(|sampler| {
                        for record in data.iter() {
                            if sampler.take() {
                                builder.observe(record.value.as_deref());
                            } else {
                                builder.skip();
                            }
                        }
                    });
                });
                while let Some(entry) = pending.first_entry() {
                    if !passed(&frontier.frontier(), entry.key() + window_ms) {
                        break;
                    }
                    let (start, (capability, builder)) = entry.remove_entry();
                    let partial = builder.finish();
                    let mut session = output.session(&capability);
                    session.give((start, Piece::Overview(partial.overview)));
                    for (name, field) in partial.fields {
                        session.give((start, Piece::Field(name, Box::new(field))));
                    }
                }
            }
        });

        let merged = pieces.unary_frontier::<CapacityContainerBuilder<Vec<(u64, Piece)>>, _, _, _>(
            Exchange::new(|(_, piece): &(u64, Piece)| piece.route()),
            "ProfileMerge",
            move |_capability, _info| {
                let mut pending: BTreeMap<u64, (Capability<u64>, PartialProfile)> = BTreeMap::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|capability, data| {
                        let Some(&time) = capability.least() else { return };
                        let cap = capability.delayed(&time, port);
                        for (start, piece) in data.drain(..) {
                            let (slot, partial) = pending.entry(start).or_insert_with(|| (cap.clone(), PartialProfile::default()));
                            keep_earliest(slot, cap.clone());
                            absorb(partial, piece);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if !passed(&frontier.frontier(), entry.key() + window_ms) {
                            break;
                        }
                        let (start, (capability, partial)) = entry.remove_entry();
                        let mut session = output.session(&capability);
                        if partial.overview != Overview::default() {
                            session.give((start, Piece::Overview(partial.overview)));
                        }
                        for (name, field) in partial.fields {
                            session.give((start, Piece::Field(name, Box::new(field))));
                        }
                    }
                }
            },
        );

        merged.unary_frontier::<CapacityContainerBuilder<Vec<WindowProfile>>, _, _, _>(
            Exchange::new(|_: &(u64, Piece)| 0),
            "ProfileAssemble",
            move |_capability, _info| {
                let mut pending: BTreeMap<u64, (Capability<u64>, PartialProfile)> = BTreeMap::new();
                let mut previous: Option<BTreeMap<String, ValueType>> = None;
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each(|capability, data| {
                        let Some(&time) = capability.least() else { return };
                        let cap = capability.delayed(&time, port);
                        for (start, piece) in data.drain(..) {
                            let (slot, partial) = pending.entry(start).or_insert_with(|| (cap.clone(), PartialProfile::default()));
                            keep_earliest(slot, cap.clone());
                            absorb(partial, piece);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if !passed(&frontier.frontier(), entry.key() + window_ms) {
                            break;
                        }
                        let (start, (capability, partial)) = entry.remove_entry();
                        let mut profile = WindowProfile::new(start, start + window_ms, partial, &config);
                        let types = profile.dominant_types();
                        if let Some(before) = &previous {
                            profile.drift = report::drift(before, &types);
                        }
                        previous = Some(types);
                        tracing::debug!(
                            window_start_ms = start,
                            records = profile.overview.records,
                            fields = profile.summary.len(),
                            "window profile assembled"
                        );
                        output.session(&capability).give(profile);
                    }
                }
            },
        )
    }
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
