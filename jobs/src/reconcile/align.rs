//! Which input record each output record is a copy of: matching one output partition to
//! the input partition it copies, by content and in order.
//!
//! A record's content is its key, value, headers (in order) and timestamp, hashed to a
//! 128-bit [`Fingerprint`]. The job writes input partition `p` to output partition `p` in
//! offset order, so the output is runs of consecutive input records: one run for a clean
//! copy, a run that starts again further back after an at-least-once restart (the
//! re-copied records), a run that starts late when the output's prefix was deleted.
//!
//! The [`Matcher`] follows the current run while the next output record is a copy of the
//! next input record. Where a run starts (the first output record, after a jump, after an
//! output record that matches nothing), it looks at every input record with the same
//! fingerprint near the current position and near the position the output offset
//! suggests, and picks the one from which the most of the next [`LOOKAHEAD`] output
//! records match consecutive input records. So records that legitimately occur twice in
//! the input (same key, value, headers and timestamp) are matched by multiplicity and
//! order, not called duplicates; only a repeated block longer than [`LOOKAHEAD`] records
//! can leave two explanations equally good, and then the counts are right but the offsets
//! reported may be those of the other occurrence.
//!
//! Memory: 40 bytes per input record of the partition being matched (fingerprint 16,
//! offset 8, timestamp 8, copy count 4, position in the fingerprint order 4) plus
//! [`LOOKAHEAD`] output records; the output is streamed.

use std::cmp::Reverse;
use std::collections::VecDeque;

use xxhash_rust::xxh3::Xxh3;

/// 128-bit XXH3 of a record's key, value, headers and timestamp.
pub type Fingerprint = u128;

/// How many output records the matcher looks ahead where a run starts.
pub const LOOKAHEAD: usize = 256;

/// Candidates considered on each side of a position where a run starts.
const NEAR: usize = 4;

/// Timestamp stored for a record without one.
const NO_TIMESTAMP: i64 = i64::MIN;

/// The fingerprint of a record's content. Every field is tagged and length-prefixed, so
/// a null differs from an empty value and bytes cannot move between fields.
pub fn fingerprint<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    timestamp: Option<i64>,
) -> Fingerprint {
    fn field(hasher: &mut Xxh3, bytes: Option<&[u8]>) {
        match bytes {
            None => hasher.update(&[0]),
            Some(b) => {
                hasher.update(&[1]);
                hasher.update(&(b.len() as u64).to_le_bytes());
                hasher.update(b);
            }
        }
    }
    let mut hasher = Xxh3::new();
    field(&mut hasher, key);
    field(&mut hasher, value);
    for (name, value) in headers {
        hasher.update(&[2]);
        field(&mut hasher, Some(name.as_bytes()));
        field(&mut hasher, value);
    }
    hasher.update(&[3]);
    field(&mut hasher, timestamp.map(i64::to_le_bytes).as_ref().map(<[u8; 8]>::as_slice));
    hasher.digest128()
}

/// The input records of one partition in offset order, as the matcher needs them.
#[derive(Debug, Default)]
pub struct InputIndex {
    offsets: Vec<i64>,
    fingerprints: Vec<Fingerprint>,
    timestamps: Vec<i64>,
    /// Positions sorted by (fingerprint, position): the candidates of a fingerprint are one slice.
    by_fingerprint: Vec<u32>,
}

impl InputIndex {
    /// An empty index with room for `records` records (so its vectors never grow past them).
    pub fn with_capacity(records: usize) -> InputIndex {
        InputIndex {
            offsets: Vec::with_capacity(records),
            fingerprints: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
            by_fingerprint: Vec::new(),
        }
    }

    /// Adds the next input record; offsets must increase. Returns false, adding nothing,
    /// once the index holds `u32::MAX` records.
    pub fn push(&mut self, offset: i64, fingerprint: Fingerprint, timestamp: Option<i64>) -> bool {
        if self.offsets.len() >= u32::MAX as usize {
            return false;
        }
        self.offsets.push(offset);
        self.fingerprints.push(fingerprint);
        self.timestamps.push(timestamp.unwrap_or(NO_TIMESTAMP));
        true
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The smallest timestamp held, if any record has one.
    pub fn min_timestamp(&self) -> Option<i64> {
        self.timestamps.iter().copied().filter(|t| *t != NO_TIMESTAMP).min()
    }

    /// Sorts the fingerprint order; the index is ready for a [`Matcher`].
    fn seal(&mut self) {
        let fingerprints = &self.fingerprints;
        // `push` keeps the length within u32.
        let mut order: Vec<u32> = (0..u32::try_from(fingerprints.len()).unwrap_or(u32::MAX)).collect();
        order.sort_unstable_by_key(|&i| (fingerprints[i as usize], i));
        self.by_fingerprint = order;
    }

    /// Positions of the records with `fingerprint`, ascending.
    fn candidates(&self, fingerprint: Fingerprint) -> &[u32] {
        let fps = &self.fingerprints;
        let start = self.by_fingerprint.partition_point(|&i| fps[i as usize] < fingerprint);
        let end = start + self.by_fingerprint[start..].partition_point(|&i| fps[i as usize] == fingerprint);
        &self.by_fingerprint[start..end]
    }
}

/// One output record as the matcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputRecord {
    /// Offset in the output partition.
    pub offset: i64,
    /// Its content's fingerprint.
    pub fingerprint: Fingerprint,
    /// Its timestamp.
    pub timestamp: Option<i64>,
}

/// Matches the output records of one partition, in output order, to the input records.
#[derive(Debug)]
pub struct Matcher {
    input: InputIndex,
    copies: Vec<u32>,
    /// Position of the input record the current run copies next.
    next: usize,
    /// Whether the last output record continued or started a run.
    in_run: bool,
    /// Input offset minus output offset at the last match: where the output offset says
    /// a record's original is, when a run starts (0 at first: a fresh output topic copied
    /// from the input's start holds input offset `o` at output offset `o`).
    delta: i64,
    ahead: VecDeque<OutputRecord>,
    unexpected: Vec<OutputRecord>,
}

/// An input record with the number of output records that are copies of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Input offset.
    pub offset: i64,
    /// Input timestamp.
    pub timestamp: Option<i64>,
    /// Output records matched to it.
    pub copies: u32,
}

impl Matcher {
    /// A matcher over the input records of `input`.
    pub fn new(mut input: InputIndex) -> Matcher {
        input.seal();
        let copies = vec![0; input.len()];
        Matcher { input, copies, next: 0, in_run: false, delta: 0, ahead: VecDeque::with_capacity(LOOKAHEAD), unexpected: Vec::new() }
    }

    /// Takes the next output record; decides the oldest one once [`LOOKAHEAD`] are waiting.
    pub fn push(&mut self, record: OutputRecord) {
        self.ahead.push_back(record);
        if self.ahead.len() >= LOOKAHEAD {
            self.decide_front();
        }
    }

    /// Output records decided to be copies of no input record since the last call.
    pub fn drain_unexpected(&mut self) -> std::vec::Drain<'_, OutputRecord> {
        self.unexpected.drain(..)
    }

    /// Decides the waiting output records; returns the unexpected ones among them and
    /// every input record with its number of copies, in offset order.
    pub fn finish(mut self) -> (Vec<OutputRecord>, impl Iterator<Item = Copied>) {
        while !self.ahead.is_empty() {
            self.decide_front();
        }
        let Matcher { input, copies, unexpected, .. } = self;
        let copied = input.offsets.into_iter().zip(input.timestamps).zip(copies).map(|((offset, ts), copies)| Copied {
            offset,
            timestamp: (ts != NO_TIMESTAMP).then_some(ts),
            copies,
        });
        (unexpected, copied)
    }

    fn decide_front(&mut self) {
        let Some(front) = self.ahead.front().copied() else { return };
        let follows = self.in_run && self.input.fingerprints.get(self.next) == Some(&front.fingerprint);
        let chosen = if follows { Some(self.next) } else { self.choose(front) };
        self.ahead.pop_front();
        match chosen {
            Some(i) => {
                self.copies[i] = self.copies[i].saturating_add(1);
                self.next = i + 1;
                self.in_run = true;
                self.delta = self.input.offsets[i] - front.offset;
            }
            None => {
                self.unexpected.push(front);
                self.in_run = false;
            }
        }
    }

    /// Where a run starts: the candidate from which the most waiting output records match
    /// consecutive input records; ties go to the one nearest the offset hint, then the first.
    fn choose(&self, front: OutputRecord) -> Option<usize> {
        let all = self.input.candidates(front.fingerprint);
        match all {
            [] => return None,
            [only] => return Some(*only as usize),
            _ => {}
        }
        let hint = front.offset.saturating_add(self.delta);
        let hint_pos = self.input.offsets.partition_point(|&o| o < hint);
        let mut picks: Vec<u32> = near(all, self.next).iter().chain(near(all, hint_pos)).copied().collect();
        picks.sort_unstable();
        picks.dedup();
        picks
            .into_iter()
            .map(|p| p as usize)
            .max_by_key(|&p| (self.run_length(p), Reverse(self.input.offsets[p].abs_diff(hint)), Reverse(p)))
    }

    /// How many of the waiting output records match the input records from position `start` on.
    fn run_length(&self, start: usize) -> usize {
        let fps = self.input.fingerprints.get(start..).unwrap_or_default();
        fps.iter().zip(&self.ahead).take_while(|(fp, out)| **fp == out.fingerprint).count()
    }
}

/// The candidates (ascending positions) up to [`NEAR`] on each side of position `pos`.
fn near(all: &[u32], pos: usize) -> &[u32] {
    let split = all.partition_point(|&p| (p as usize) < pos);
    &all[split.saturating_sub(NEAR)..(split + NEAR).min(all.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input records with the given contents (a letter each) at offsets 0, 1, ...
    fn input(contents: &str) -> InputIndex {
        let mut index = InputIndex::default();
        for (offset, c) in contents.chars().enumerate() {
            assert!(index.push(offset as i64, fp(c), Some(1_000 + offset as i64)));
        }
        index
    }

    fn fp(c: char) -> Fingerprint {
        fingerprint(None, Some(c.to_string().as_bytes()), [], None)
    }

    /// Matches output contents at output offsets `first..` and returns the copies per
    /// input offset and the unexpected output offsets.
    fn run(inputs: &str, outputs: &str, first: i64) -> (Vec<u32>, Vec<i64>) {
        let mut matcher = Matcher::new(input(inputs));
        for (i, c) in outputs.chars().enumerate() {
            matcher.push(OutputRecord { offset: first + i as i64, fingerprint: fp(c), timestamp: None });
        }
        let (unexpected, copied) = matcher.finish();
        (copied.map(|c| c.copies).collect(), unexpected.iter().map(|r| r.offset).collect())
    }

    #[test]
    fn a_clean_copy_matches_each_record_once() {
        assert_eq!(run("abcdef", "abcdef", 0), (vec![1; 6], vec![]));
    }

    #[test]
    fn identical_records_in_the_input_are_not_duplicates() {
        assert_eq!(run("aaab", "aaab", 0), (vec![1, 1, 1, 1], vec![]));
        assert_eq!(run("abab", "abab", 0), (vec![1, 1, 1, 1], vec![]));
    }

    #[test]
    fn a_deleted_prefix_is_missing_even_when_its_records_recur_later() {
        // Output offsets 0 and 1 were deleted; what is left copies input 2 and 3.
        assert_eq!(run("abac", "ac", 2), (vec![0, 0, 1, 1], vec![]));
        // The remaining "ab" is as good a match at 0 as at 2: the output offsets decide.
        assert_eq!(run("abab", "ab", 2), (vec![0, 0, 1, 1], vec![]));
        assert_eq!(run("abcdef", "def", 3), (vec![0, 0, 0, 1, 1, 1], vec![]));
    }

    #[test]
    fn a_restart_that_copies_a_range_again_makes_exactly_those_duplicates() {
        // Copied 0..=4, crashed, restarted at the committed offset 2.
        assert_eq!(run("abcdefgh", "abcdecdefgh", 0), (vec![1, 1, 2, 2, 2, 1, 1, 1], vec![]));
    }

    #[test]
    fn a_restart_over_repeated_content_picks_the_run_that_continues() {
        // "ab" occurs at 0 and 3; the restart re-copies from offset 3 ("abd"), not 0.
        assert_eq!(run("abcabd", "abcabdabd", 0), (vec![1, 1, 1, 2, 2, 2], vec![]));
        // Copied 0..=4, restarted from offset 0: "abcabd" continues only there.
        assert_eq!(run("abcabd", "abcababcabd", 0), (vec![2, 2, 2, 2, 2, 1], vec![]));
        // Identical records, the last two produced once more.
        assert_eq!(run("aab", "aabab", 0), (vec![1, 2, 2], vec![]));
    }

    #[test]
    fn records_produced_twice_are_duplicates_wherever_they_land() {
        // The last two records once more at the end, then the first one.
        assert_eq!(run("abcdef", "abcdefefa", 0), (vec![2, 1, 1, 1, 2, 2], vec![]));
        // One in the middle, one missing.
        assert_eq!(run("abcdef", "abcaef", 0), (vec![2, 1, 1, 0, 1, 1], vec![]));
    }

    #[test]
    fn output_records_that_copy_nothing_are_unexpected_and_do_not_break_the_run() {
        assert_eq!(run("abcd", "abxcyd", 10), (vec![1, 1, 1, 1], vec![12, 14]));
    }

    #[test]
    fn an_interleaving_of_two_runs_is_matched_record_by_record() {
        // A gap, then the gap's records later (out of order) — each input record once.
        assert_eq!(run("abcdef", "abefcd", 0), (vec![1; 6], vec![]));
    }

    #[test]
    fn null_and_empty_fields_differ_and_headers_count_in_order() {
        let base = fingerprint(Some(b"k"), Some(b""), [("h", Some(&b"1"[..])), ("g", None)], Some(5));
        assert_ne!(base, fingerprint(Some(b"k"), None, [("h", Some(&b"1"[..])), ("g", None)], Some(5)));
        assert_ne!(base, fingerprint(Some(b"k"), Some(b""), [("g", None), ("h", Some(&b"1"[..]))], Some(5)));
        assert_ne!(base, fingerprint(Some(b"k"), Some(b""), [("h", Some(&b"1"[..])), ("g", None)], Some(6)));
        assert_ne!(base, fingerprint(Some(b"k"), Some(b""), [("h", Some(&b"1"[..])), ("g", None)], None));
        assert_ne!(fingerprint(Some(b"ab"), Some(b""), [], None), fingerprint(Some(b"a"), Some(b"b"), [], None));
        assert_eq!(base, fingerprint(Some(b"k"), Some(b""), [("h", Some(&b"1"[..])), ("g", None)], Some(5)));
    }

    #[test]
    fn long_runs_beyond_the_lookahead_still_match_once() {
        let contents: String = (0..3 * LOOKAHEAD).map(|i| char::from_u32(0x4e00 + i as u32).unwrap_or('?')).collect();
        let (copies, unexpected) = run(&contents, &contents, 0);
        assert!(copies.iter().all(|&c| c == 1) && unexpected.is_empty());
    }
}
