//! [`VisitGenerator`]: deterministic, fast generation of reference-shaped visit
//! records with injected faults, and the running [`GeneratorSummary`] of them.
//!
//! Shape (see `docs/visits.md`): a pool of concurrently open visits; each record
//! refreshes the visit whose next refresh comes first, so `event_time` never goes
//! backwards (except for late events). A visit lives for 5–500 refreshes, each moving
//! its clock 1–5 minutes forward (one in twenty: 1–30 seconds) and picking a new page;
//! its user and `context` stay the same. `connected_since` is present for about a third
//! of the visits.
//!
//! Determinism: two ChaCha8 streams seeded from the seed, one for the visits and the
//! partitions, one for the faults (so the same seed gives the same visits whatever the
//! fault mix); UUIDs come from these streams and the clock starts at the configured
//! start time, never at `now()`.
//!
//! Speed: the JSON is written by hand into a reused buffer; a visit's `context` is
//! rendered once when the visit opens, so a record without nested faults costs a few
//! copies and the formatting of one timestamp.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::Write as _;

use rand::distributions::{Bernoulli, Distribution as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use super::config::{ConfigError, GeneratorConfig, DEFAULT_IMPORTANT_FIELDS};
use super::schema::{self, Kind, Mode, Modes, Natural, Node, NESTED, NODE_COUNT, TOP_LEVEL};
use super::summary::{FieldCounts, GeneratorSummary};

/// `page` values.
pub const PAGES: [&str; 46] = [
    "index",
    "contact",
    "home",
    "main",
    "about",
    "categories",
    "category_1",
    "category_2",
    "category_3",
    "category_4",
    "category_5",
    "category_6",
    "category_7",
    "category_8",
    "category_9",
    "category_10",
    "category_11",
    "category_12",
    "category_13",
    "category_14",
    "category_15",
    "category_16",
    "category_17",
    "category_18",
    "category_19",
    "category_20",
    "page_1",
    "page_2",
    "page_3",
    "page_4",
    "page_5",
    "page_6",
    "page_7",
    "page_8",
    "page_9",
    "page_10",
    "page_11",
    "page_12",
    "page_13",
    "page_14",
    "page_15",
    "page_16",
    "page_17",
    "page_18",
    "page_19",
    "page_20",
];

/// `context.referral` values, one draw in nine being `null`.
pub const REFERRALS: [Option<&str>; 9] = [
    Some("Google Search"),
    Some("Twitter"),
    Some("Facebook"),
    Some("LinkedIn"),
    Some("YouTube"),
    Some("Medium"),
    Some("Google Ads"),
    Some("StackOverflow"),
    None,
];

/// `context.technical.browser` values.
pub const BROWSERS: [&str; 3] = ["Chrome", "Firefox", "Safari"];
/// `context.technical.network_type` values.
pub const NETWORK_TYPES: [&str; 4] = ["5G", "4G", "Wi-Fi", "LAN"];
/// `context.technical.device_type` values.
pub const DEVICE_TYPES: [&str; 5] = ["PC", "MacBook", "iPad", "Smartphone", "iPhone"];

const SURNAMES: [&str; 32] = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
];

/// Bytes written over an alphanumeric byte to make a record non-UTF-8 (Latin-1 é and ü,
/// and 0xFF): none can start a valid UTF-8 sequence followed by ASCII.
const NON_UTF8: [u8; 3] = [0xE9, 0xFC, 0xFF];

/// One record, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// Partition to produce to.
    pub partition: i32,
    /// Kafka key: `visit_id`, or a random UUID when the record has no non-empty `visit_id`.
    pub key: Option<Vec<u8>>,
    /// Kafka value: the JSON document (or its unparseable corruption).
    pub value: Option<Vec<u8>>,
    /// The record's event time in milliseconds since the epoch (late events: shifted
    /// back), also when `event_time` itself was nulled or removed.
    pub timestamp_ms: i64,
}

/// One record borrowing the generator's buffers; valid until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Partition to produce to.
    pub partition: i32,
    /// Kafka key (see [`GeneratedRecord::key`]).
    pub key: Option<&'a [u8]>,
    /// Kafka value.
    pub value: Option<&'a [u8]>,
    /// Event time in milliseconds since the epoch (see [`GeneratedRecord::timestamp_ms`]).
    pub timestamp_ms: i64,
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> GeneratedRecord {
        GeneratedRecord {
            partition: self.partition,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// An open visit: everything but `event_time` and `page` stays the same across its refreshes.
#[derive(Debug, Default)]
struct Visit {
    visit_id: String,
    user_id: String,
    keep_private: bool,
    referral: Option<&'static str>,
    ad_id: Option<u8>,
    ip: [u8; 4],
    login: String,
    /// Unix seconds of the midnight the user connected first.
    connected_since: Option<i64>,
    browser: &'static str,
    /// Tenths: 203 is "20.3".
    browser_version: u16,
    network_type: &'static str,
    device_type: &'static str,
    /// Tenths.
    device_version: u16,
    /// Unix seconds of the next refresh.
    time: i64,
    /// Refreshes left.
    remaining: u32,
    /// `context` with every field natural.
    context_json: Vec<u8>,
}

impl Visit {
    fn natural(&self) -> Natural {
        Natural {
            referral_null: self.referral.is_none(),
            ad_id_null: self.ad_id.is_none(),
            connected_since_absent: self.connected_since.is_none(),
        }
    }
}

/// How a value was made unparseable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corruption {
    Truncated,
    NonUtf8,
}

/// The faults of the current record and how its important fields read: what the
/// summary counts, again for its duplicate.
#[derive(Debug, Default)]
struct Outcome {
    partition: usize,
    timestamp_ms: i64,
    nulled: bool,
    empty_string: bool,
    missing_key: bool,
    nested_null: bool,
    late: bool,
    corruption: Option<Corruption>,
    /// Per important field, in the order of `VisitGenerator::important`.
    kinds: Vec<Kind>,
}

/// Bernoulli draws of the faults with a non-zero share.
#[derive(Debug)]
struct FaultDraws {
    null: Option<Bernoulli>,
    empty_string: Option<Bernoulli>,
    missing_key: Option<Bernoulli>,
    nested_null: Option<Bernoulli>,
    unparseable: Option<Bernoulli>,
    duplicate: Option<Bernoulli>,
    late: Option<Bernoulli>,
}

fn draw(share: f64) -> Option<Bernoulli> {
    if share > 0.0 {
        Bernoulli::new(share).ok()
    } else {
        None
    }
}

fn hit(draw: &Option<Bernoulli>, rng: &mut ChaCha8Rng) -> bool {
    draw.as_ref().is_some_and(|d| d.sample(rng))
}

/// The deterministic generator of visit records.
///
/// ```
/// use tidewatch_jobs::visits::{GeneratorConfig, VisitGenerator};
/// let mut generator = VisitGenerator::new(GeneratorConfig { seed: 7, ..GeneratorConfig::default() });
/// let record = generator.next_record();
/// assert!(record.value.is_some());
/// assert_eq!(generator.summary().records, 1);
/// ```
#[derive(Debug)]
pub struct VisitGenerator {
    cfg: GeneratorConfig,
    /// Visits, pages and partitions.
    rng: ChaCha8Rng,
    /// Faults and the UUID keys of records without a visit id.
    fault_rng: ChaCha8Rng,
    faults: FaultDraws,
    visits: Vec<Visit>,
    /// (next refresh time, visit slot), earliest first.
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    visits_opened: u64,
    /// Cumulative partition weights; empty: uniform.
    cumulative_weights: Vec<u64>,
    /// Important fields and the node chain each names (`None`: not in the shape).
    important: Vec<(String, Option<Vec<Node>>)>,
    /// Fields the empty-string fault picks from.
    empty_targets: Vec<Node>,
    late_secs: i64,
    /// Day number (since the epoch) of the start time.
    start_day: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    outcome: Outcome,
    pending_duplicate: bool,
    summary: GeneratorSummary,
}

impl VisitGenerator {
    /// A generator for `cfg`; an invalid setting is brought into range (see
    /// [`GeneratorConfig::sanitized`]) with a warning.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let cfg = match cfg.validate() {
            Ok(()) => cfg,
            Err(error) => {
                tracing::warn!(%error, "invalid generator configuration: bringing it into range");
                cfg.sanitized()
            }
        };
        Self::build(cfg)
    }

    /// A generator for `cfg`, or why `cfg` is invalid.
    pub fn try_new(cfg: GeneratorConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self::build(cfg))
    }

    fn build(cfg: GeneratorConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut fault_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        fault_rng.set_stream(1);
        let f = cfg.faults;
        let faults = FaultDraws {
            null: draw(f.null),
            empty_string: draw(f.empty_string),
            missing_key: draw(f.missing_key),
            nested_null: draw(f.nested_null),
            unparseable: draw(f.unparseable),
            duplicate: draw(f.duplicate),
            late: draw(f.late),
        };
        let cumulative_weights = if cfg.partition_weights.is_empty() {
            Vec::new()
        } else {
            cfg.partition_weights
                .iter()
                .scan(0u64, |sum, w| {
                    *sum += u64::from(*w);
                    Some(*sum)
                })
                .collect()
        };
        let mut important: Vec<(String, Option<Vec<Node>>)> = Vec::new();
        for path in &cfg.important_fields {
            if important.iter().any(|(p, _)| p == path) {
                continue;
            }
            let chain = schema::resolve(path);
            if chain.is_none() {
                tracing::warn!(path, "important field is not part of a visit record: it will read as missing");
            }
            important.push((path.clone(), chain));
        }
        let mut empty_targets: Vec<Node> = Vec::new();
        let resolved = important.iter().filter_map(|(_, chain)| chain.as_ref()).filter_map(|c| c.last().copied());
        for node in resolved {
            if !empty_targets.contains(&node) {
                empty_targets.push(node);
            }
        }
        if empty_targets.is_empty() {
            empty_targets = DEFAULT_IMPORTANT_FIELDS.iter().filter_map(|p| schema::resolve(p)?.last().copied()).collect();
        }
        let summary = GeneratorSummary {
            seed: cfg.seed,
            per_partition: vec![0; cfg.partitions as usize],
            fields: important.iter().map(|(p, _)| (p.clone(), FieldCounts::default())).collect(),
            ..GeneratorSummary::default()
        };
        let start_secs = cfg.start_time.timestamp();
        let mut generator = VisitGenerator {
            late_secs: i64::try_from(cfg.late_delay.as_secs()).unwrap_or(i64::MAX),
            start_day: start_secs.div_euclid(86_400),
            rng,
            fault_rng,
            faults,
            visits: Vec::new(),
            queue: BinaryHeap::new(),
            visits_opened: 0,
            cumulative_weights,
            important,
            empty_targets,
            key: Vec::with_capacity(64),
            value: Vec::with_capacity(1024),
            outcome: Outcome::default(),
            pending_duplicate: false,
            summary,
            cfg,
        };
        generator.open_initial_visits(start_secs);
        generator
    }

    /// Opens the pool of concurrent visits, staggered over the first five minutes.
    fn open_initial_visits(&mut self, start_secs: i64) {
        let n = self.cfg.concurrent_visits.max(1);
        self.visits.clear();
        self.queue.clear();
        for slot in 0..n {
            let mut visit = Visit::default();
            let time = start_secs + self.rng.gen_range(0..300);
            self.open_visit(&mut visit, time);
            self.queue.push(Reverse((visit.time, slot as u32)));
            self.visits.push(visit);
        }
    }

    /// Fills `visit` with a new visit whose first refresh is at `time`.
    fn open_visit(&mut self, visit: &mut Visit, time: i64) {
        self.visits_opened += 1;
        let rng = &mut self.rng;
        let user: u32 = rng.gen_range(100_000_000..1_000_000_000);
        let prefix: u32 = rng.gen_range(100_000..1_000_000);
        visit.visit_id.clear();
        let _ = write!(visit.visit_id, "{prefix}{user}_{}", self.visits_opened);
        let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        let mut uuid_text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        visit.user_id.clear();
        let _ = write!(visit.user_id, "{user}_{}", uuid.hyphenated().encode_lower(&mut uuid_text));
        visit.keep_private = rng.gen_bool(0.5);
        visit.referral = REFERRALS[rng.gen_range(0..REFERRALS.len())];
        // "ad 1".."ad 5", null in 3 draws of 8.
        let ad = rng.gen_range(0u8..8);
        visit.ad_id = (ad >= 3).then(|| ad - 2);
        visit.ip = [rng.gen_range(1..=223), rng.gen(), rng.gen(), rng.gen_range(1..=254)];
        visit.login.clear();
        visit.login.push(char::from(b'a' + rng.gen_range(0..26u8)));
        visit.login.push_str(SURNAMES[rng.gen_range(0..SURNAMES.len())]);
        if rng.gen_ratio(1, 3) {
            let _ = write!(visit.login, "{}", rng.gen_range(1..100u32));
        }
        visit.connected_since = rng.gen_ratio(1, 3).then(|| (self.start_day - rng.gen_range(1..=1095)) * 86_400);
        visit.browser = BROWSERS[rng.gen_range(0..BROWSERS.len())];
        visit.browser_version = rng.gen_range(200..=259);
        visit.network_type = NETWORK_TYPES[rng.gen_range(0..NETWORK_TYPES.len())];
        visit.device_type = DEVICE_TYPES[rng.gen_range(0..DEVICE_TYPES.len())];
        visit.device_version = rng.gen_range(10..=60);
        visit.time = time;
        visit.remaining = rng.gen_range(5..=500);
        let mut context = std::mem::take(&mut visit.context_json);
        context.clear();
        let view = View { visit, event_secs: time, page: "", cached_context: false };
        write_natural(&mut context, Node::Context, &[Mode::Natural; NODE_COUNT], &view);
        visit.context_json = context;
    }

    /// The configuration in use (after sanitizing).
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Number of partitions records go to.
    pub fn partitions(&self) -> u32 {
        self.cfg.partitions
    }

    /// Everything emitted so far.
    pub fn summary(&self) -> &GeneratorSummary {
        &self.summary
    }

    /// The final summary.
    pub fn into_summary(self) -> GeneratorSummary {
        self.summary
    }

    /// The next record, owning its bytes.
    pub fn next_record(&mut self) -> GeneratedRecord {
        self.next_borrowed().to_owned()
    }

    /// The next record, borrowing the generator's buffers (no allocation).
    pub fn next_borrowed(&mut self) -> RecordRef<'_> {
        if self.pending_duplicate {
            self.pending_duplicate = false;
            self.summary.faults.duplicates += 1;
        } else {
            self.generate();
            self.pending_duplicate = hit(&self.faults.duplicate, &mut self.fault_rng);
        }
        self.account();
        RecordRef {
            partition: self.outcome.partition as i32,
            key: Some(&self.key),
            value: Some(&self.value),
            timestamp_ms: self.outcome.timestamp_ms,
        }
    }

    fn choose_partition(&mut self) -> usize {
        let partitions = self.cfg.partitions.max(1);
        match self.cumulative_weights.last() {
            Some(&total) if total > 0 => {
                let x = self.rng.gen_range(0..total);
                self.cumulative_weights.iter().position(|c| x < *c).unwrap_or(0)
            }
            _ => self.rng.gen_range(0..partitions) as usize,
        }
    }

    /// Writes the next fresh record into the buffers and `self.outcome`.
    ///
    /// Draws from `self.rng` (partition, page, then the visit's next step) and from
    /// `self.fault_rng` (faults, a UUID key, the corruption) in a fixed order: the
    /// output depends on it.
    fn generate(&mut self) {
        let slot = match self.queue.peek() {
            Some(Reverse((_, slot))) => *slot as usize,
            None => {
                // Never empty by construction; reopen the pool rather than fail.
                let start = self.cfg.start_time.timestamp();
                self.open_initial_visits(start);
                return self.generate();
            }
        };
        let partition = self.choose_partition();
        let page = PAGES[self.rng.gen_range(0..PAGES.len())];
        self.outcome.partition = partition;
        let modes = self.draw_faults();

        let time = self.visits[slot].time;
        let event_secs = if self.outcome.late { time.saturating_sub(self.late_secs) } else { time };
        self.outcome.timestamp_ms = event_secs.saturating_mul(1000);

        self.write_record_key(slot, &modes);
        self.write_value(slot, event_secs, page, &modes);
        self.corrupt_value();
        self.classify_important(slot, &modes);
        self.advance_visit(slot);
    }

    /// Draws the faults of the next record into `self.outcome` and returns the mode of
    /// every node they imply (the corruption is drawn here, applied by
    /// [`Self::corrupt_value`]).
    fn draw_faults(&mut self) -> Modes {
        let frng = &mut self.fault_rng;
        let mut modes: Modes = [Mode::Natural; NODE_COUNT];
        let o = &mut self.outcome;
        o.nulled = hit(&self.faults.null, frng);
        if o.nulled {
            let mask: u8 = frng.gen_range(1..64);
            for (i, node) in TOP_LEVEL.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    modes[node.index()] = Mode::Null;
                }
            }
        }
        o.empty_string = hit(&self.faults.empty_string, frng);
        if o.empty_string {
            let node = self.empty_targets[frng.gen_range(0..self.empty_targets.len())];
            modes[node.index()] = Mode::Empty;
        }
        o.missing_key = hit(&self.faults.missing_key, frng);
        if o.missing_key {
            modes[TOP_LEVEL[frng.gen_range(0..TOP_LEVEL.len())].index()] = Mode::Missing;
        }
        o.nested_null = hit(&self.faults.nested_null, frng);
        if o.nested_null {
            modes[NESTED[frng.gen_range(0..NESTED.len())].index()] = Mode::Null;
        }
        o.late = hit(&self.faults.late, frng);
        o.corruption = if hit(&self.faults.unparseable, frng) {
            Some(if frng.gen_bool(0.5) { Corruption::Truncated } else { Corruption::NonUtf8 })
        } else {
            None
        };
        modes
    }

    /// Writes the Kafka key into `self.key`: the visit id of the visit in `slot`, or a
    /// random UUID when `visit_id` is faulted.
    fn write_record_key(&mut self, slot: usize, modes: &Modes) {
        self.key.clear();
        if modes[Node::VisitId.index()] == Mode::Natural {
            self.key.extend_from_slice(self.visits[slot].visit_id.as_bytes());
        } else {
            let uuid = uuid::Builder::from_random_bytes(self.fault_rng.gen()).into_uuid();
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            self.key.extend_from_slice(uuid.hyphenated().encode_lower(&mut text).as_bytes());
        }
    }

    /// Writes the JSON document of the visit in `slot` into `self.value`, each node as
    /// `modes` says.
    fn write_value(&mut self, slot: usize, event_secs: i64, page: &str, modes: &Modes) {
        self.value.clear();
        let cached_context = modes[Node::Context.index() + 1..].iter().all(|m| *m == Mode::Natural);
        let view = View { visit: &self.visits[slot], event_secs, page, cached_context };
        self.value.push(b'{');
        let mut first = true;
        for node in TOP_LEVEL {
            write_node(&mut self.value, &mut first, node, modes, &view);
        }
        self.value.push(b'}');
    }

    /// Makes `self.value` unparseable as `self.outcome.corruption` says, if at all.
    fn corrupt_value(&mut self) {
        let frng = &mut self.fault_rng;
        match self.outcome.corruption {
            Some(Corruption::Truncated) => {
                let cut = frng.gen_range(1..self.value.len());
                self.value.truncate(cut);
            }
            Some(Corruption::NonUtf8) => {
                let alnum = self.value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
                let nth = frng.gen_range(0..alnum.max(1));
                let byte = NON_UTF8[frng.gen_range(0..NON_UTF8.len())];
                if let Some(b) = self.value.iter_mut().filter(|b| b.is_ascii_alphanumeric()).nth(nth) {
                    *b = byte;
                }
            }
            None => {}
        }
    }

    /// Records in `self.outcome.kinds` how each important field reads in the record of
    /// the visit in `slot` written with `modes`.
    fn classify_important(&mut self, slot: usize, modes: &Modes) {
        let natural = self.visits[slot].natural();
        let kinds = &mut self.outcome.kinds;
        kinds.clear();
        for (_, chain) in &self.important {
            kinds.push(chain.as_deref().map_or(Kind::Missing, |c| schema::classify(c, modes, natural)));
        }
    }

    /// Moves the visit in `slot` on to its next refresh, or replaces it with a new visit
    /// when it has none left, and requeues it.
    fn advance_visit(&mut self, slot: usize) {
        let now = self.visits[slot].time;
        let visit = &mut self.visits[slot];
        visit.remaining = visit.remaining.saturating_sub(1);
        if visit.remaining == 0 {
            let mut visit = std::mem::take(&mut self.visits[slot]);
            let start = now + self.rng.gen_range(0..=60);
            self.open_visit(&mut visit, start);
            self.visits[slot] = visit;
        } else {
            let step = if self.rng.gen_ratio(1, 20) { self.rng.gen_range(1..=30) } else { self.rng.gen_range(60..=300) };
            self.visits[slot].time = now + step;
        }
        if let Some(mut top) = self.queue.peek_mut() {
            *top = Reverse((self.visits[slot].time, slot as u32));
        }
    }

    /// Adds the current record (fresh or duplicate) to the summary.
    fn account(&mut self) {
        let o = &self.outcome;
        let s = &mut self.summary;
        s.records += 1;
        s.value_bytes += self.value.len() as u64;
        if let Some(n) = s.per_partition.get_mut(o.partition) {
            *n += 1;
        }
        let f = &mut s.faults;
        f.nulled += u64::from(o.nulled);
        f.empty_string += u64::from(o.empty_string);
        f.missing_key += u64::from(o.missing_key);
        f.nested_null += u64::from(o.nested_null);
        f.late += u64::from(o.late);
        match o.corruption {
            Some(corruption) => {
                s.unparseable += 1;
                match corruption {
                    Corruption::Truncated => f.truncated += 1,
                    Corruption::NonUtf8 => f.non_utf8 += 1,
                }
            }
            None => {
                for ((path, _), kind) in self.important.iter().zip(&o.kinds) {
                    if *kind != Kind::Valid {
                        if let Some(counts) = s.fields.get_mut(path) {
                            counts.add(*kind);
                        }
                    }
                }
            }
        }
    }
}

impl Iterator for VisitGenerator {
    type Item = GeneratedRecord;

    /// Never ends.
    fn next(&mut self) -> Option<GeneratedRecord> {
        Some(self.next_record())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

/// What a record is written from.
struct View<'a> {
    visit: &'a Visit,
    event_secs: i64,
    page: &'a str,
    /// `context` may be copied from `visit.context_json` (no nested field is faulted).
    cached_context: bool,
}

fn write_key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes `"name":value` for `node` as its mode says (nothing when it is absent).
fn write_node(out: &mut Vec<u8>, first: &mut bool, node: Node, modes: &Modes, view: &View<'_>) {
    match modes[node.index()] {
        Mode::Missing => {}
        Mode::Null => {
            write_key(out, first, node.name());
            out.extend_from_slice(b"null");
        }
        Mode::Empty => {
            write_key(out, first, node.name());
            out.extend_from_slice(b"\"\"");
        }
        Mode::Natural => {
            if node == Node::ConnectedSince && view.visit.connected_since.is_none() {
                return;
            }
            write_key(out, first, node.name());
            write_natural(out, node, modes, view);
        }
    }
}

/// Generated values contain no `"`, `\` or control characters: no escaping needed.
fn write_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(!s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn write_tenths(out: &mut Vec<u8>, tenths: u16) {
    let _ = write!(out, "\"{}.{}\"", tenths / 10, tenths % 10);
}

/// Writes the generated value of `node`.
fn write_natural(out: &mut Vec<u8>, node: Node, modes: &Modes, view: &View<'_>) {
    let v = view.visit;
    match node {
        Node::VisitId => write_str(out, &v.visit_id),
        Node::EventTime => {
            out.push(b'"');
            write_rfc3339(out, view.event_secs);
            out.push(b'"');
        }
        Node::UserId => write_str(out, &v.user_id),
        Node::KeepPrivate => out.extend_from_slice(if v.keep_private { b"true" } else { b"false" }),
        Node::Page => write_str(out, view.page),
        Node::Context if view.cached_context => out.extend_from_slice(&v.context_json),
        Node::Context | Node::User | Node::Technical => {
            out.push(b'{');
            let mut first = true;
            for child in node.children() {
                write_node(out, &mut first, *child, modes, view);
            }
            out.push(b'}');
        }
        Node::Referral => match v.referral {
            Some(r) => write_str(out, r),
            None => out.extend_from_slice(b"null"),
        },
        Node::AdId => match v.ad_id {
            Some(n) => {
                let _ = write!(out, "\"ad {n}\"");
            }
            None => out.extend_from_slice(b"null"),
        },
        Node::Ip => {
            let [a, b, c, d] = v.ip;
            let _ = write!(out, "\"{a}.{b}.{c}.{d}\"");
        }
        Node::Login => write_str(out, &v.login),
        Node::ConnectedSince => match v.connected_since {
            Some(secs) => {
                out.push(b'"');
                write_rfc3339(out, secs);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        },
        Node::Browser => write_str(out, v.browser),
        Node::BrowserVersion => write_tenths(out, v.browser_version),
        Node::NetworkType => write_str(out, v.network_type),
        Node::DeviceType => write_str(out, v.device_type),
        Node::DeviceVersion => write_tenths(out, v.device_version),
    }
}

/// Year, month, day of a day number since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push2(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// Writes `YYYY-MM-DDTHH:MM:SS+00:00` for Unix seconds `secs`.
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, secs: i64) {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400) as u32;
    if (0..=9999).contains(&year) {
        let y = year as u32;
        push2(out, y / 100);
        push2(out, y % 100);
    } else {
        let _ = write!(out, "{year:04}");
    }
    out.push(b'-');
    push2(out, month);
    out.push(b'-');
    push2(out, day);
    out.push(b'T');
    push2(out, tod / 3600);
    out.push(b':');
    push2(out, tod / 60 % 60);
    out.push(b':');
    push2(out, tod % 60);
    out.extend_from_slice(b"+00:00");
}
