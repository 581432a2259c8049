//! `FlowGate`: the source of a worker reads only while its sink has fewer than
//! `job.max_in_flight` records handed to librdkafka and not yet acknowledged.
//!
//! It bounds the memory a worker holds (records are produced without a copy, so every
//! unacknowledged record keeps its fetched bytes alive), and it keeps librdkafka's
//! producer queue short: a queue that outgrows what the idempotent producer may have in
//! flight (5 requests per partition) makes librdkafka's broker thread spin until an
//! acknowledgement arrives, taking a core from the copy and the broker. The sink opens
//! the gate again when half of the limit is acknowledged, and wakes the source; no timer
//! is involved.

use std::cell::{Cell, RefCell};

use timely::scheduling::Activator;

/// The flow gate of one worker, shared by its source and its sink.
#[derive(Debug)]
pub struct FlowGate {
    limit: u64,
    in_flight: Cell<u64>,
    /// Whether the source stopped reading at the limit (and waits to be woken).
    waiting: Cell<bool>,
    source: RefCell<Option<Activator>>,
}

impl FlowGate {
    /// A gate that closes at `limit` unacknowledged records (at least 1).
    pub fn new(limit: usize) -> FlowGate {
        FlowGate { limit: (limit as u64).max(1), in_flight: Cell::new(0), waiting: Cell::new(false), source: RefCell::new(None) }
    }

    /// How the sink wakes the source when the gate opens again.
    pub(crate) fn set_source(&self, activator: Activator) {
        *self.source.borrow_mut() = Some(activator);
    }

    /// Whether the source may read now; if not, it is woken when it may (once half of
    /// the limit is acknowledged).
    pub(crate) fn may_read(&self) -> bool {
        if !self.waiting.get() && self.in_flight.get() >= self.limit {
            self.waiting.set(true);
        }
        !self.waiting.get()
    }

    /// The sink's count of records handed to librdkafka and not yet acknowledged (or failed).
    pub(crate) fn set_in_flight(&self, n: u64) {
        self.in_flight.set(n);
        if self.waiting.get() && n <= self.limit / 2 {
            self.waiting.set(false);
            if let Some(source) = self.source.borrow().as_ref() {
                source.activate();
            }
        }
    }

    /// Records in flight, as last reported by the sink.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }
}

#[cfg(test)]
mod tests {
    use super::FlowGate;

    #[test]
    fn the_gate_closes_at_the_limit_and_opens_at_half() {
        let gate = FlowGate::new(100);
        assert!(gate.may_read());
        gate.set_in_flight(100);
        assert!(!gate.may_read());
        gate.set_in_flight(51);
        assert!(!gate.may_read(), "still above the limit's half: closed");
        assert!(gate.waiting.get());
        gate.set_in_flight(50);
        assert!(!gate.waiting.get(), "opened at half the limit");
        assert!(gate.may_read());
        assert_eq!(gate.in_flight(), 50);
    }
}
