//! The observation protocol's core: per-window folds and keyed counts.
//!
//! Every observer of tidewatch reduces records to a few figures per epoch or window. The
//! timely part of that — capabilities held per window, released once the frontier has
//! passed the window's end — lives here, once, and observers are written as closures:
//!
//! - [`FoldWindows::fold_windows`] folds each worker's records of a window into a state of
//!   the caller's choice and emits what the state yields once the window is complete.
//!   Sketch-valued observations (the dataset profile's partial summaries) use it with a
//!   mergeable summary as the state: fold, exchange, merge, each a `fold_windows`.
//! - [`CountKeys`] builds keyed counts on it, from easy to general, as timely's `inspect`
//!   → `inspect_batch` → `inspect_core`: [`CountKeys::count_by`] (one key per record),
//!   [`CountKeys::count_each`] (any keys and counts per record), [`CountKeys::count_core`]
//!   (any state per epoch, flushed to keyed counts). Each worker pre-aggregates per epoch
//!   and emits the epoch's counts once it is complete, as a differential collection with
//!   the count as the difference (`isize`, 64 bits here): downstream, an arrangement of it
//!   holds one update per key and epoch, compacted as epochs pass.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::Hash;

use differential_dataflow::{AsCollection, Data, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// The key of one figure of the observation protocol: `(observer, metric, labels)`,
/// e.g. `("freshness", "event_time_age_seconds", [("partition", "0")])`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct MetricKey {
    /// The observer's name.
    pub observer: String,
    /// The metric's name within the observer.
    pub metric: String,
    /// Labels, in the order the observer declared them.
    pub labels: Vec<(String, String)>,
}

impl MetricKey {
    /// The key of an unlabelled metric.
    pub fn new(observer: &str, metric: &str) -> MetricKey {
        MetricKey { observer: observer.to_owned(), metric: metric.to_owned(), labels: Vec::new() }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, name: &str, value: impl std::fmt::Display) -> MetricKey {
        self.labels.push((name.to_owned(), value.to_string()));
        self
    }

    /// `<observer>.<metric>`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.observer, self.metric)
    }

    /// The dotted path of the figure in documents: `<observer>.<metric>` and
    /// `.<label>.<value>` per label (dots within a value become `_`), so a document store
    /// that reads dots as nesting (OpenSearch) keeps one object per observer and metric.
    pub fn path(&self) -> String {
        let mut path = self.name();
        for (name, value) in &self.labels {
            path.push('.');
            path.push_str(name);
            path.push('.');
            path.push_str(&value.replace('.', "_"));
        }
        path
    }
}

/// Folds records into per-window states.
pub trait FoldWindows<'scope, D> {
    /// Per window of `window_ms` epochs' time (windows start at multiples of it; 1: per
    /// epoch), folds the records each worker receives through `pact` into a state made by
    /// `init(window_start)`; `fold` sees each batch with its epoch. Once the frontier has
    /// passed the window's end, `emit(window_start, state, out)` turns the state into
    /// output, given at the earliest epoch of the window that held records. Windows
    /// without records emit nothing.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::channels::pact::Pipeline;
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Extract}};
    /// use tidewatch_engine::counts::FoldWindows;
    ///
    /// // The longest word per window of 10 time units.
    /// let captured = timely::example(|scope| {
    ///     vec!["tide", "a", "watch"]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .fold_windows("Longest", Pipeline, 10, |_start| "", |longest, _epoch, words: &mut Vec<&'static str>| {
    ///             for w in words.iter() {
    ///                 if w.len() > longest.len() { *longest = w }
    ///             }
    ///         }, |start, longest, out| out.push((start, longest)))
    ///         .capture()
    /// });
    /// assert_eq!(captured.extract(), vec![(0, vec![(0, "watch")])]);
    /// ```
    fn fold_windows<P, S, O, I, F, E>(self, name: &str, pact: P, window_ms: u64, init: I, fold: F, emit: E) -> Stream<'scope, u64, Vec<O>>
    where
        P: ParallelizationContract<u64, Vec<D>>,
        S: 'static,
        O: Clone + 'static,
        I: FnMut(u64) -> S + 'static,
        F: FnMut(&mut S, u64, &mut Vec<D>) + 'static,
        E: FnMut(u64, S, &mut Vec<O>) + 'static;
}

impl<'scope, D: 'static> FoldWindows<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn fold_windows<P, S, O, I, F, E>(self, name: &str, pact: P, window_ms: u64, mut init: I, mut fold: F, mut emit: E) -> Stream<'scope, u64, Vec<O>>
    where
        P: ParallelizationContract<u64, Vec<D>>,
        S: 'static,
        O: Clone + 'static,
        I: FnMut(u64) -> S + 'static,
        F: FnMut(&mut S, u64, &mut Vec<D>) + 'static,
        E: FnMut(u64, S, &mut Vec<O>) + 'static,
    {
        let window_ms = window_ms.max(1);
        self.unary_frontier::<CapacityContainerBuilder<Vec<O>>, _, _, _>(pact, name, move |_capability, _info| {
            // Per window start: the capability of its earliest epoch, and its state.
            let mut pending: BTreeMap<u64, (Capability<u64>, S)> = BTreeMap::new();
            let mut out = Vec::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each(|capability, data| {
                    let Some(&epoch) = capability.least() else { return };
                    let start = epoch - epoch % window_ms;
                    let (held, state) = pending.entry(start).or_insert_with(|| (capability.delayed(&epoch, port), init(start)));
                    if epoch < *held.time() {
                        *held = capability.delayed(&epoch, port);
                    }
                    fold(state, epoch, data);
                });
                while let Some(entry) = pending.first_entry() {
                    let end = entry.key().saturating_add(window_ms);
                    if frontier.frontier().iter().any(|t| *t < end) {
                        break;
                    }
                    let (start, (capability, state)) = entry.remove_entry();
                    emit(start, state, &mut out);
                    if !out.is_empty() {
                        output.session(&capability).give_iterator(out.drain(..));
                    }
                }
            }
        })
    }
}

/// Counts added under keys during one epoch of one worker; consolidated before they leave.
#[derive(Debug)]
pub struct Tally<K> {
    counts: HashMap<K, isize>,
}

impl<K: Hash + Eq> Default for Tally<K> {
    fn default() -> Self {
        Tally { counts: HashMap::new() }
    }
}

impl<K: Hash + Eq> Tally<K> {
    /// Adds `n` to the count of `key`.
    pub fn add(&mut self, key: K, n: isize) {
        *self.counts.entry(key).or_insert(0) += n;
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn drain_into(&mut self, epoch: u64, out: &mut Vec<(K, u64, isize)>) {
        out.extend(self.counts.drain().filter(|(_, n)| *n != 0).map(|(k, n)| (k, epoch, n)));
    }
}

/// Keyed counts of a stream's records, per epoch, as a differential collection.
pub trait CountKeys<'scope, D> {
    /// Counts each record once under `key(record)`.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Extract}};
    /// use tidewatch_engine::counts::CountKeys;
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![3_u32, 4, 5, 6, 7].to_stream(scope).container::<Vec<_>>().count_by("Parity", |n| n % 2 == 0).inner.capture()
    /// });
    /// let mut counts: Vec<_> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// counts.sort();
    /// assert_eq!(counts, vec![(false, 0, 3), (true, 0, 2)]);
    /// ```
    fn count_by<K, F>(self, name: &str, key: F) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        F: FnMut(&D) -> K + 'static;

    /// Adds any counts under any keys for each record: `each(record, tally)`.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Extract}};
    /// use tidewatch_engine::counts::CountKeys;
    ///
    /// // Letters per word, and words.
    /// let captured = timely::example(|scope| {
    ///     vec!["tide", "watch"].to_stream(scope).container::<Vec<_>>().count_each("Letters", |word, tally| {
    ///         tally.add("letters", word.len() as isize);
    ///         tally.add("words", 1);
    ///     }).inner.capture()
    /// });
    /// let mut counts: Vec<_> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// counts.sort();
    /// assert_eq!(counts, vec![("letters", 0, 9), ("words", 0, 2)]);
    /// ```
    fn count_each<K, F>(self, name: &str, each: F) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        F: FnMut(&D, &mut Tally<K>) + 'static;

    /// The general form: per worker and epoch, a state made by `init` folds the epoch's
    /// batches (`fold(state, epoch, batch)`, e.g. into a vector of slots, cheaper than a
    /// key per record); once the epoch is complete `flush(state, tally)` turns it into
    /// keyed counts.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{ToStream, capture::{Capture, Extract}};
    /// use tidewatch_engine::counts::CountKeys;
    ///
    /// // Small and large numbers, counted in two slots.
    /// let captured = timely::example(|scope| {
    ///     vec![1_u32, 50, 2, 700].to_stream(scope).container::<Vec<_>>().count_core(
    ///         "Sizes",
    ///         || [0_isize; 2],
    ///         |slots, _epoch, batch: &mut Vec<u32>| batch.iter().for_each(|n| slots[usize::from(*n >= 10)] += 1),
    ///         |slots, tally| {
    ///             tally.add("small", slots[0]);
    ///             tally.add("large", slots[1]);
    ///         },
    ///     ).inner.capture()
    /// });
    /// let mut counts: Vec<_> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
    /// counts.sort();
    /// assert_eq!(counts, vec![("large", 0, 2), ("small", 0, 2)]);
    /// ```
    fn count_core<K, S, I, F, L>(self, name: &str, init: I, fold: F, flush: L) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        S: 'static,
        I: FnMut() -> S + 'static,
        F: FnMut(&mut S, u64, &mut Vec<D>) + 'static,
        L: FnMut(S, &mut Tally<K>) + 'static;
}

impl<'scope, D: 'static> CountKeys<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn count_by<K, F>(self, name: &str, mut key: F) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        F: FnMut(&D) -> K + 'static,
    {
        self.count_each(name, move |record, tally| tally.add(key(record), 1))
    }

    fn count_each<K, F>(self, name: &str, mut each: F) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        F: FnMut(&D, &mut Tally<K>) + 'static,
    {
        self.count_core(name, Tally::default, move |tally, _epoch, batch| batch.iter().for_each(|d| each(d, tally)), |mine, tally| {
            for (k, n) in mine.counts {
                tally.add(k, n);
            }
        })
    }

    fn count_core<K, S, I, F, L>(self, name: &str, mut init: I, fold: F, mut flush: L) -> VecCollection<'scope, u64, K, isize>
    where
        K: Data + Hash,
        S: 'static,
        I: FnMut() -> S + 'static,
        F: FnMut(&mut S, u64, &mut Vec<D>) + 'static,
        L: FnMut(S, &mut Tally<K>) + 'static,
    {
        let mut tally = Tally::default();
        self.fold_windows(name, Pipeline, 1, move |_| init(), fold, move |epoch, state, out| {
            flush(state, &mut tally);
            tally.drain_into(epoch, out);
        })
        .as_collection()
    }
}

/// Consolidates keyed counts in an arrangement whose trace is compacted as the frontier
/// passes, so it holds about one update per key and live epoch however long the job
/// runs; `held(n)` hears how many updates it holds after each change. Returns the
/// consolidated counts.
pub fn arrange_compacted<'scope, K>(counts: VecCollection<'scope, u64, K, isize>, name: &str, mut held: impl FnMut(u64) + 'static) -> VecCollection<'scope, u64, K, isize>
where
    K: differential_dataflow::ExchangeData + differential_dataflow::Hashable,
{
    use differential_dataflow::trace::implementations::spine_fueled::SpineBatch as _;
    use differential_dataflow::trace::TraceReader;
    let arranged = counts.arrange_by_self_named(name);
    let mut trace = arranged.trace.clone();
    arranged.stream.clone().sink(Pipeline, &format!("{name}Compaction"), move |(input, frontier)| {
        input.for_each(|_, data| data.clear());
        trace.set_logical_compaction(frontier.frontier());
        trace.set_physical_compaction(frontier.frontier());
        let mut size = 0u64;
        trace.map_spans(|span| size += span.inner.as_ref().map_or(0, |batch| batch.len() as u64));
        held(size);
    });
    arranged.as_collection(|key, _| key.clone())
}

/// The state a [`close_windows`] clock folds its updates into.
pub trait WindowState {
    /// What one closed window yields.
    type Output;
    /// Takes one update `(data, time, diff)`.
    fn absorb(&mut self, data: Self::Data, time: u64, diff: isize);
    /// The updates' data type.
    type Data;
    /// The start of the earliest window holding updates not yet closed, if any.
    fn earliest(&self) -> Option<u64>;
    /// The latest time of an update taken so far (0: none).
    fn latest(&self) -> u64;
    /// Closes the window starting at `start`.
    fn close(&mut self, start: u64) -> Self::Output;
}

/// Most empty windows a [`close_windows`] clock reports in a row before it skips ahead.
pub const MAX_EMPTY_WINDOWS: u64 = 1_000;

/// Gathers a stream of updates `(data, time, diff)` on worker 0 into `state` and, each
/// time the frontier passes the end of a window of `window_ms`, closes that window — also
/// windows without updates, from the first real epoch on (so a reader sees every window,
/// empty or not). A gap of more than [`MAX_EMPTY_WINDOWS`] empty windows (the job was
/// suspended, or the clock jumped) is skipped with a warning. The other workers hold
/// nothing.
pub fn close_windows<'scope, W>(updates: Stream<'scope, u64, Vec<(W::Data, u64, isize)>>, name: &str, window_ms: u64, mut state: W) -> Stream<'scope, u64, Vec<W::Output>>
where
    W: WindowState + 'static,
    W::Data: timely::ExchangeData,
    W::Output: Clone + 'static,
{
    use timely::dataflow::channels::pact::Exchange;
    let window_ms = window_ms.max(1);
    let worker = updates.scope().index();
    updates.unary_frontier::<CapacityContainerBuilder<Vec<W::Output>>, _, _, _>(Exchange::new(|_: &(W::Data, u64, isize)| 0), name, move |capability, _info| {
        let mut capability: Option<Capability<u64>> = (worker == 0).then_some(capability);
        let mut next_window: Option<u64> = None;
        move |(input, frontier), output| {
            input.for_each(|_, data| data.drain(..).for_each(|(d, t, r)| state.absorb(d, t, r)));
            let Some(cap) = capability.as_mut() else { return };
            let bound = frontier.frontier().first().copied();
            // The first window starts at the first real epoch (the sources start at 0).
            if next_window.is_none() {
                let first = match bound {
                    Some(t) if t > 0 => Some(t),
                    None if state.latest() > 0 => Some(state.latest()),
                    _ => None,
                };
                next_window = first.map(|t| {
                    let start = t - t % window_ms;
                    state.earliest().map_or(start, |d| d.min(start))
                });
            }
            if let (Some(start), Some(t)) = (next_window, bound) {
                let behind = t.saturating_sub(start) / window_ms;
                if behind > MAX_EMPTY_WINDOWS && state.earliest().is_none_or(|e| e >= t) {
                    let resume = t - t % window_ms;
                    tracing::warn!(from = start, to = resume, "skipping {behind} empty windows");
                    next_window = Some(resume);
                }
            }
            while let Some(start) = next_window {
                let complete = match bound {
                    Some(t) => t >= start + window_ms,
                    None => start <= state.latest(),
                };
                if !complete {
                    break;
                }
                output.session(&*cap).give(state.close(start));
                next_window = Some(start + window_ms);
            }
            match bound {
                Some(t) if t > *cap.time() => cap.downgrade(&t),
                Some(_) => {}
                None => capability = None,
            }
        }
    })
}

