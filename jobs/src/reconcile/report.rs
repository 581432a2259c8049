//! What `tidewatch reconcile` reports: counts per partition and per record-timestamp
//! window, the offsets behind them, and the table a person reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::align::{Copied, OutputRecord};

/// Counts of one partition, one window of one partition, or of everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Input records below the group's committed offset: the job consumed them, so the
    /// output must hold each once.
    pub expected: u64,
    /// Output records that are copies of expected records (`expected - missing + extra_copies`).
    pub found: u64,
    /// Expected records with no copy in the output.
    pub missing: u64,
    /// Input records with more than one copy in the output (in flight ones too).
    pub duplicated: u64,
    /// Copies beyond the first of the duplicated records.
    pub extra_copies: u64,
    /// Output records that are a copy of no input record in the range.
    pub unexpected: u64,
    /// Input records at or past the committed offset: not yet due in the output.
    pub in_flight: u64,
    /// In-flight records already copied (once or more).
    pub in_flight_copied: u64,
    /// Output records left unchecked: older than every input record read (copies of
    /// records the input no longer holds), or outside `--from`/`--to`.
    pub outside: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        let Counts { expected, found, missing, duplicated, extra_copies, unexpected, in_flight, in_flight_copied, outside } = other;
        self.expected += expected;
        self.found += found;
        self.missing += missing;
        self.duplicated += duplicated;
        self.extra_copies += extra_copies;
        self.unexpected += unexpected;
        self.in_flight += in_flight;
        self.in_flight_copied += in_flight_copied;
        self.outside += outside;
    }

    /// Whether nothing is missing, duplicated or unexpected.
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Consecutive offsets, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First offset.
    pub from: i64,
    /// Last offset.
    pub to: i64,
    /// Copies beyond the first of each record in the span (duplicated spans only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<u32>,
}

/// Offsets gathered into spans: consecutive records (by position, so offsets a
/// compacted or transactional topic skips do not split a span) with the same `extra`.
#[derive(Debug, Default)]
struct Spans {
    spans: Vec<Span>,
    /// The position after the last span's last record.
    next: u64,
}

impl Spans {
    fn add(&mut self, position: u64, offset: i64, extra: Option<u32>) {
        match self.spans.last_mut() {
            Some(last) if self.next == position && last.extra == extra => last.to = offset,
            _ => self.spans.push(Span { from: offset, to: offset, extra }),
        }
        self.next = position + 1;
    }
}

/// One window of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    /// Window start, ms since the Unix epoch; `None` for records without a timestamp.
    pub start_ms: Option<i64>,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One partition: the ranges compared, the counts, the offsets behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// Partition number (the same in input and output).
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed, nothing expected).
    pub committed: Option<i64>,
    /// Input offsets read, `[from, to)`.
    pub input: [i64; 2],
    /// Output offsets read, `[from, to)`.
    pub output: [i64; 2],
    /// The partition's counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Input offsets of the missing records.
    pub missing_offsets: Vec<Span>,
    /// Input offsets of the duplicated records, with their extra copies.
    pub duplicated_offsets: Vec<Span>,
    /// Output offsets of the unexpected records.
    pub unexpected_offsets: Vec<Span>,
    /// Counts per record-timestamp window, oldest first.
    pub windows: Vec<WindowCounts>,
}

/// What is reported of which records: window length and the timestamp range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Window length in ms (at least 1).
    pub window_ms: i64,
    /// Only records with a timestamp at or after this (ms).
    pub from_ms: Option<i64>,
    /// Only records with a timestamp before this (ms).
    pub to_ms: Option<i64>,
}

impl Scope {
    fn contains(&self, ts: Option<i64>) -> bool {
        match ts {
            Some(t) => self.from_ms.is_none_or(|f| t >= f) && self.to_ms.is_none_or(|e| t < e),
            None => self.from_ms.is_none() && self.to_ms.is_none(),
        }
    }

    fn window(&self, ts: Option<i64>) -> Option<i64> {
        ts.map(|t| t.div_euclid(self.window_ms) * self.window_ms)
    }
}

/// Builds one partition's report while its output is matched.
#[derive(Debug)]
pub struct Tally {
    scope: Scope,
    /// Unmatched output records older than this are `outside`, not unexpected.
    floor_ms: Option<i64>,
    windows: BTreeMap<Option<i64>, Counts>,
    unexpected: Spans,
}

impl Tally {
    /// A tally for `scope`; output records older than `floor_ms` that match nothing are
    /// counted `outside` (the input no longer holds their originals).
    pub fn new(scope: Scope, floor_ms: Option<i64>) -> Tally {
        Tally { scope, floor_ms, windows: BTreeMap::new(), unexpected: Spans::default() }
    }

    /// Counts an output record that is a copy of no input record.
    pub fn unexpected(&mut self, record: &OutputRecord) {
        let older = record.timestamp.zip(self.floor_ms).is_some_and(|(t, floor)| t < floor);
        let counts = self.windows.entry(self.scope.window(record.timestamp)).or_default();
        if older || !self.scope.contains(record.timestamp) {
            counts.outside += 1;
            return;
        }
        counts.unexpected += 1;
        // Output offsets: a span is consecutive offsets (a transaction marker splits it).
        self.unexpected.add(u64::try_from(record.offset).unwrap_or_default(), record.offset, None);
    }

    /// Counts the input records with their copies (offset order) and closes the report.
    pub fn finish(mut self, partition: i32, committed: Option<i64>, input: [i64; 2], output: [i64; 2], copied: impl Iterator<Item = Copied>) -> PartitionReport {
        let (mut missing, mut duplicated) = (Spans::default(), Spans::default());
        for (position, record) in copied.enumerate() {
            if !self.scope.contains(record.timestamp) {
                continue;
            }
            let position = position as u64;
            let counts = self.windows.entry(self.scope.window(record.timestamp)).or_default();
            let copies = u64::from(record.copies);
            if committed.is_some_and(|c| record.offset < c) {
                counts.expected += 1;
                counts.found += copies;
                if copies == 0 {
                    counts.missing += 1;
                    missing.add(position, record.offset, None);
                }
            } else {
                counts.in_flight += 1;
                counts.in_flight_copied += u64::from(copies > 0);
            }
            if copies > 1 {
                counts.duplicated += 1;
                counts.extra_copies += copies - 1;
                duplicated.add(position, record.offset, Some(record.copies - 1));
            }
        }
        let mut counts = Counts::default();
        self.windows.values().for_each(|w| counts.add(w));
        PartitionReport {
            partition,
            committed,
            input,
            output,
            counts,
            missing_offsets: missing.spans,
            duplicated_offsets: duplicated.spans,
            unexpected_offsets: self.unexpected.spans,
            windows: self.windows.into_iter().map(|(start_ms, counts)| WindowCounts { start_ms, counts }).collect(),
        }
    }
}

/// The whole reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Input topic.
    pub input_topic: String,
    /// Output topic.
    pub output_topic: String,
    /// Consumer group whose committed offsets say what was consumed.
    pub group_id: String,
    /// `read_committed` or `read_uncommitted`.
    pub isolation: String,
    /// Window length, ms.
    pub window_ms: i64,
    /// `--from`, ms.
    pub from_ms: Option<i64>,
    /// `--to`, ms.
    pub to_ms: Option<i64>,
    /// Whether nothing is missing, duplicated or unexpected (exit code 0).
    pub clean: bool,
    /// Sums over the partitions.
    pub totals: Counts,
    /// Per partition, in partition order.
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    /// The report of `partitions`.
    pub fn new(header: Report, partitions: Vec<PartitionReport>) -> Report {
        let mut totals = Counts::default();
        partitions.iter().for_each(|p| totals.add(&p.counts));
        Report { clean: totals.clean(), totals, partitions, ..header }
    }
}

/// Offset spans listed per partition in the table (all of them are in `--json`).
const SPANS_SHOWN: usize = 8;

/// The report as a table: one row per partition and the totals, then the offsets of
/// every problem, then the windows (all of them with `all_windows`, else those with a problem).
pub fn render(report: &Report, all_windows: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reconcile {} -> {} (group {}, {}, windows of {} ms)",
        report.input_topic, report.output_topic, report.group_id, report.isolation, report.window_ms
    );
    let _ = writeln!(out, "{:<10} {:>12} {}", "partition", "committed", COLUMNS);
    for p in &report.partitions {
        let committed = p.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let _ = writeln!(out, "{:<10} {committed:>12} {}", p.partition, row(&p.counts));
    }
    let _ = writeln!(out, "{:<10} {:>12} {}", "total", "", row(&report.totals));
    for p in &report.partitions {
        spans_line(&mut out, p.partition, "missing input offsets", &p.missing_offsets);
        spans_line(&mut out, p.partition, "duplicated input offsets", &p.duplicated_offsets);
        spans_line(&mut out, p.partition, "unexpected output offsets", &p.unexpected_offsets);
    }
    let rows: Vec<(i32, &WindowCounts)> = report
        .partitions
        .iter()
        .flat_map(|p| p.windows.iter().map(move |w| (p.partition, w)))
        .filter(|(_, w)| all_windows || !w.counts.clean())
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(out, "{:<24} {:>9} {COLUMNS}", "window", "partition");
        for (partition, w) in rows {
            let start = w.start_ms.and_then(chrono::DateTime::from_timestamp_millis);
            let start = start.map_or_else(|| "no timestamp".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            let _ = writeln!(out, "{start:<24} {partition:>9} {}", row(&w.counts));
        }
    }
    let _ = writeln!(out, "{}", if report.clean { "result: clean" } else { "result: DISCREPANCIES (exit code 1)" });
    out
}

const COLUMNS: &str = "  expected     found   missing duplicated    extra unexpected in_flight  copied   outside";

fn row(c: &Counts) -> String {
    format!(
        "{:>10} {:>9} {:>9} {:>10} {:>8} {:>10} {:>9} {:>7} {:>9}",
        c.expected, c.found, c.missing, c.duplicated, c.extra_copies, c.unexpected, c.in_flight, c.in_flight_copied, c.outside
    )
}

fn spans_line(out: &mut String, partition: i32, what: &str, spans: &[Span]) {
    if spans.is_empty() {
        return;
    }
    let shown: Vec<String> = spans
        .iter()
        .take(SPANS_SHOWN)
        .map(|s| {
            let range = if s.from == s.to { s.from.to_string() } else { format!("{}-{}", s.from, s.to) };
            match s.extra {
                Some(extra) => format!("{range} (+{extra})"),
                None => range,
            }
        })
        .collect();
    let more = spans.len().saturating_sub(SPANS_SHOWN);
    let tail = if more > 0 { format!(", and {more} more spans (see --json)") } else { String::new() };
    let _ = writeln!(out, "partition {partition}: {what}: {}{tail}", shown.join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(offsets: std::ops::Range<i64>, copies: &[u32]) -> Vec<Copied> {
        offsets.zip(copies).map(|(offset, &copies)| Copied { offset, timestamp: Some(offset * 100), copies }).collect()
    }

    #[test]
    fn counts_split_expected_and_in_flight_at_the_committed_offset() {
        let scope = Scope { window_ms: 300, from_ms: None, to_ms: None };
        let mut tally = Tally::new(scope, None);
        tally.unexpected(&OutputRecord { offset: 9, fingerprint: 0, timestamp: Some(50) });
        let report = tally.finish(0, Some(4), [0, 6], [0, 10], copied(0..6, &[0, 0, 1, 3, 2, 0]).into_iter());
        let c = report.counts;
        assert_eq!((c.expected, c.found, c.missing, c.duplicated, c.extra_copies), (4, 4, 2, 2, 3));
        assert_eq!((c.unexpected, c.in_flight, c.in_flight_copied), (1, 2, 1));
        assert_eq!(report.missing_offsets, vec![Span { from: 0, to: 1, extra: None }]);
        assert_eq!(report.duplicated_offsets, vec![Span { from: 3, to: 3, extra: Some(2) }, Span { from: 4, to: 4, extra: Some(1) }]);
        assert_eq!(report.unexpected_offsets, vec![Span { from: 9, to: 9, extra: None }]);
        // Windows of 300 ms: offsets 0..=2 (and the unexpected record at 50 ms), 3..=5.
        let starts: Vec<_> = report.windows.iter().map(|w| (w.start_ms, w.counts.expected, w.counts.unexpected)).collect();
        assert_eq!(starts, vec![(Some(0), 3, 1), (Some(300), 1, 0)]);
    }

    #[test]
    fn records_outside_the_scope_are_not_reported() {
        let scope = Scope { window_ms: 1000, from_ms: Some(200), to_ms: Some(400) };
        let mut tally = Tally::new(scope, Some(100));
        tally.unexpected(&OutputRecord { offset: 0, fingerprint: 0, timestamp: Some(50) });
        tally.unexpected(&OutputRecord { offset: 1, fingerprint: 0, timestamp: Some(250) });
        let report = tally.finish(1, Some(10), [0, 6], [0, 2], copied(0..6, &[0; 6]).into_iter());
        assert_eq!((report.counts.expected, report.counts.missing, report.counts.unexpected, report.counts.outside), (2, 2, 1, 1));
        assert_eq!(report.missing_offsets, vec![Span { from: 2, to: 3, extra: None }]);
    }

    #[test]
    fn the_table_names_every_problem() {
        let scope = Scope { window_ms: 1000, from_ms: None, to_ms: None };
        let part = Tally::new(scope, None).finish(3, Some(3), [0, 3], [0, 2], copied(0..3, &[1, 0, 2]).into_iter());
        let header = Report {
            input_topic: "in".into(),
            output_topic: "out".into(),
            group_id: "g".into(),
            isolation: "read_uncommitted".into(),
            window_ms: 1000,
            from_ms: None,
            to_ms: None,
            clean: true,
            totals: Counts::default(),
            partitions: Vec::new(),
        };
        let report = Report::new(header, vec![part]);
        assert!(!report.clean);
        let text = render(&report, false);
        assert!(text.contains("partition 3: missing input offsets: 1"), "{text}");
        assert!(text.contains("partition 3: duplicated input offsets: 2 (+1)"), "{text}");
        assert!(text.contains("1970-01-01T00:00:00.000Z"), "{text}");
        assert!(text.contains("DISCREPANCIES"), "{text}");
    }
}
