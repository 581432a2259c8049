//! Observation never stalls the copy: each worker's copy path keeps a clock of the time
//! its source and sink spend, and each observer branch that may sample (the dataset
//! profile, record observers) keeps a [`Sampler`]. A branch may spend at most `budget` ×
//! the copy's time per epoch (`observe.budget`, default 1.0: as long as the copy; it
//! aims at a quarter of that, so a busy worker loses little of its rate); over
//! it, the branch looks at 1 record in k, k adapting every epoch, and says so in its
//! outputs. Quality counts, lag and reconciliation never sample.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Time one worker's copy path (source and sink operators) spent, shared with its samplers.
#[derive(Debug, Default)]
pub struct CopyClock {
    spent_ns: Cell<u64>,
}

impl CopyClock {
    /// Adds time the copy path spent.
    pub fn charge(&self, spent: Duration) {
        self.spent_ns.set(self.spent_ns.get().saturating_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX)));
    }

    /// Time spent so far.
    pub fn spent(&self) -> Duration {
        Duration::from_nanos(self.spent_ns.get())
    }
}

/// The share of its budget a sampling branch aims at, and the band it may drift in
/// before the rate changes: well below the budget, so that even a worker with no idle
/// time loses little of its copy rate to a slow observer.
const TARGET: f64 = 0.25;
const HIGH: f64 = 0.4;
const LOW: f64 = 0.1;

/// The least a branch spends before it is judged within an epoch.
const MIN_PERIOD: Duration = Duration::from_millis(2);

/// The most a sampler skips: 1 record in this many is still observed.
pub const MAX_SAMPLE_EVERY: u64 = 1 << 16;

/// Decides which records one observer branch of one worker looks at, so the branch stays
/// within its budget of the copy's time (it aims at a quarter of it, and judges itself at
/// every epoch boundary, and sooner once it spends beyond 40 % of it).
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use tidewatch_engine::budget::{CopyClock, Sampler};
///
/// let copy = Rc::new(CopyClock::default());
/// let mut sampler = Sampler::new(Rc::clone(&copy), 1.0);
/// assert!((0..10).all(|_| sampler.take()), "within budget: every record");
/// // The branch took 10 ms while the copy took 1 ms: 10× over its budget.
/// sampler.charge(Duration::from_millis(10));
/// copy.charge(Duration::from_millis(1));
/// sampler.next_epoch();
/// assert!(sampler.every() >= 10);
/// let taken = (0..1000).filter(|_| sampler.take()).count();
/// assert!(taken <= 100);
/// assert_eq!(sampler.seen(), 1010);
/// ```
#[derive(Debug)]
pub struct Sampler {
    copy: Rc<CopyClock>,
    /// The branch's share of the copy's time it may spend (0: no budget, observe all).
    budget: f64,
    /// Observe 1 record in `every`.
    every: u64,
    countdown: u64,
    /// Time the branch spent since the last epoch boundary.
    spent: Duration,
    /// The copy clock at the last epoch boundary.
    copy_mark: Duration,
    seen: u64,
    observed: u64,
}

impl Sampler {
    /// A sampler whose branch may spend `budget` × the copy's time (0: unbounded).
    pub fn new(copy: Rc<CopyClock>, budget: f64) -> Sampler {
        let copy_mark = copy.spent();
        Sampler { copy, budget: budget.max(0.0), every: 1, countdown: 1, spent: Duration::ZERO, copy_mark, seen: 0, observed: 0 }
    }

    /// Whether the branch observes the next record (counted either way).
    pub fn take(&mut self) -> bool {
        self.seen += 1;
        if self.countdown <= 1 {
            self.countdown = self.every;
            self.observed += 1;
            true
        } else {
            self.countdown -= 1;
            false
        }
    }

    /// Adds time the branch spent observing; a branch already over its budget in this
    /// epoch samples more at once rather than at the epoch's end.
    pub fn charge(&mut self, spent: Duration) {
        self.spent += spent;
        if self.ratio().is_some_and(|r| r > HIGH) && self.spent >= MIN_PERIOD {
            self.adapt();
        }
    }

    /// Runs `work` and charges its time to the branch.
    pub fn timed<R>(&mut self, work: impl FnOnce(&mut Self) -> R) -> R {
        let started = Instant::now();
        let result = work(self);
        self.charge(started.elapsed());
        result
    }

    /// At an epoch boundary: sets how many records to skip from the branch's cost since
    /// the last adjustment, against the copy's time meanwhile, aiming at a quarter of the
    /// budget; back towards every record while the branch is cheap.
    pub fn next_epoch(&mut self) {
        self.adapt();
    }

    /// The branch's time over its budget of the copy's time since the last adjustment.
    fn ratio(&self) -> Option<f64> {
        let copy = self.copy.spent().saturating_sub(self.copy_mark);
        (self.budget > 0.0 && !copy.is_zero()).then(|| self.spent.as_secs_f64() / (copy.as_secs_f64() * self.budget))
    }

    fn adapt(&mut self) {
        let ratio = self.ratio();
        self.spent = Duration::ZERO;
        self.copy_mark = self.copy.spent();
        let Some(ratio) = ratio else { return };
        // Aim at half the budget, so the branch stays within it while its cost varies:
        // at `ratio` of the budget, observe `ratio / TARGET` times fewer (or more).
        let every = if !(LOW..=HIGH).contains(&ratio) { (self.every as f64 * ratio / TARGET).ceil() } else { self.every as f64 };
        self.every = (every as u64).clamp(1, MAX_SAMPLE_EVERY);
        self.countdown = self.countdown.min(self.every);
    }

    /// The current rate: 1 record observed in `every()`.
    pub fn every(&self) -> u64 {
        self.every
    }

    /// Records the branch was offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Records it observed so far.
    pub fn observed(&self) -> u64 {
        self.observed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_branch_over_budget_samples_and_returns_to_every_record_when_cheap_again() {
        let copy = Rc::new(CopyClock::default());
        let mut s = Sampler::new(Rc::clone(&copy), 1.0);
        s.charge(Duration::from_millis(50));
        copy.charge(Duration::from_millis(10));
        s.next_epoch();
        assert!(s.every() >= 5, "5× over: at least 1 in 5, got {}", s.every());
        let k = s.every();
        // Now the branch is cheap: k shrinks epoch by epoch down to 1.
        for _ in 0..20 {
            s.charge(Duration::from_micros(10));
            copy.charge(Duration::from_millis(10));
            s.next_epoch();
        }
        assert_eq!(s.every(), 1, "from {k} back to every record");
    }

    #[test]
    fn no_budget_never_samples() {
        let copy = Rc::new(CopyClock::default());
        let mut s = Sampler::new(Rc::clone(&copy), 0.0);
        s.charge(Duration::from_secs(1));
        copy.charge(Duration::from_millis(1));
        s.next_epoch();
        assert_eq!(s.every(), 1);
        assert!((0..100).all(|_| s.take()));
        assert_eq!((s.seen(), s.observed()), (100, 100));
    }

    #[test]
    fn the_rate_is_bounded() {
        let copy = Rc::new(CopyClock::default());
        let mut s = Sampler::new(Rc::clone(&copy), 1.0);
        for _ in 0..10 {
            s.charge(Duration::from_secs(100));
            copy.charge(Duration::from_nanos(1));
            s.next_epoch();
        }
        assert_eq!(s.every(), MAX_SAMPLE_EVERY);
    }
}
