//! Alert rules over the stats documents: "max_lag > 15 for 5m" and the like, with the
//! states inactive → pending → firing → resolved, evaluated in the dataflow at each
//! window's end.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidewatch_engine::config::{deserialize_duration, serialize_duration};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::Stream;

use crate::stats::{rfc3339, StatsDoc};

/// How a rule compares the metric with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    /// `>`
    #[serde(rename = ">")]
    Above,
    /// `>=`
    #[serde(rename = ">=")]
    AtLeast,
    /// `<`
    #[serde(rename = "<")]
    Below,
    /// `<=`
    #[serde(rename = "<=")]
    AtMost,
    /// `==`
    #[serde(rename = "==")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
        }
    }
}

/// One alert rule, as written in the `[[alerts]]` tables of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Name, unique among the rules.
    pub name: String,
    /// A figure of the stats document ([`StatsDoc::metric`]), e.g. `max_lag`.
    pub metric: String,
    /// How the figure is compared.
    pub op: Comparison,
    /// The threshold.
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (`"5m"`, `"0s"`).
    #[serde(rename = "for", deserialize_with = "deserialize_duration", serialize_with = "serialize_duration")]
    pub for_: Duration,
}

impl AlertRule {
    /// The reference demo's rule: the largest lag over partitions above 15 offsets for 5 minutes.
    pub fn reference_lag() -> AlertRule {
        AlertRule { name: "lag_high".to_owned(), metric: "max_lag".to_owned(), op: Comparison::Above, threshold: 15.0, for_: Duration::from_secs(300) }
    }
}

/// The state an alert moved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's duration.
    Pending,
    /// The condition has held for the rule's duration.
    Firing,
    /// The condition stopped holding after the alert fired.
    Resolved,
    /// The condition stopped holding before the alert fired.
    Inactive,
}

/// One alert transition: a document of its own, and a log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// When the transition happened (the window's end), RFC 3339.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// The rule's name.
    pub rule: String,
    /// The rule's metric.
    pub metric: String,
    /// The state entered.
    pub state: AlertState,
    /// The metric's value at the transition (absent when the metric was unknown).
    pub value: Option<f64>,
    /// The rule's threshold.
    pub threshold: f64,
    /// Since when the condition held (RFC 3339), for pending and firing.
    pub since: Option<String>,
}

/// Evaluates rules over stats documents in window order.
#[derive(Debug, Clone)]
pub struct AlertEvaluator {
    rules: Vec<AlertRule>,
    /// Per rule: since when the condition holds (ms), and whether it fired.
    states: BTreeMap<String, (u64, bool)>,
}

impl AlertEvaluator {
    /// An evaluator of `rules`, all inactive.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        AlertEvaluator { rules, states: BTreeMap::new() }
    }

    /// Feeds one window's document; returns the transitions it caused.
    pub fn evaluate(&mut self, doc: &StatsDoc) -> Vec<AlertEvent> {
        let at = doc.window_end_ms;
        let mut events = Vec::new();
        for rule in &self.rules {
            let value = doc.metric(&rule.metric);
            let holds = value.is_some_and(|v| rule.op.holds(v, rule.threshold));
            let event = |state, since: Option<u64>| AlertEvent {
                timestamp: rfc3339(at),
                rule: rule.name.clone(),
                metric: rule.metric.clone(),
                state,
                value,
                threshold: rule.threshold,
                since: since.map(rfc3339),
            };
            match (self.states.get(&rule.name).copied(), holds) {
                (None, true) => {
                    // The condition is taken to hold since the start of the window that showed it.
                    let since = doc.window_start_ms;
                    if Duration::from_millis(at - since) >= rule.for_ {
                        self.states.insert(rule.name.clone(), (since, true));
                        events.push(event(AlertState::Pending, Some(since)));
                        events.push(event(AlertState::Firing, Some(since)));
                    } else {
                        self.states.insert(rule.name.clone(), (since, false));
                        events.push(event(AlertState::Pending, Some(since)));
                    }
                }
                (Some((since, false)), true) => {
                    if Duration::from_millis(at.saturating_sub(since)) >= rule.for_ {
                        self.states.insert(rule.name.clone(), (since, true));
                        events.push(event(AlertState::Firing, Some(since)));
                    }
                }
                (Some((_, true)), true) | (None, false) => {}
                (Some((_, fired)), false) => {
                    self.states.remove(&rule.name);
                    events.push(event(if fired { AlertState::Resolved } else { AlertState::Inactive }, None));
                }
            }
        }
        for e in &events {
            tracing::info!(rule = %e.rule, state = ?e.state, value = ?e.value, threshold = e.threshold, at = %e.timestamp, "alert");
        }
        events
    }
}

/// Evaluates alert rules over a stream of stats documents.
pub trait EvaluateAlerts<'scope> {
    /// The transitions of `rules` as the documents arrive (one per transition).
    fn alerts(self, rules: Vec<AlertRule>) -> Stream<'scope, u64, Vec<AlertEvent>>;
}

impl<'scope> EvaluateAlerts<'scope> for Stream<'scope, u64, Vec<StatsDoc>> {
    fn alerts(self, rules: Vec<AlertRule>) -> Stream<'scope, u64, Vec<AlertEvent>> {
        // The documents come from worker 0's stats windows, one window after another.
        let mut evaluator = AlertEvaluator::new(rules);
        self.flat_map(move |doc| evaluator.evaluate(&doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn doc(end_s: u64, max_lag: Option<i64>) -> StatsDoc {
        StatsDoc {
            timestamp: String::new(),
            window_start_ms: (end_s - 10) * 1000,
            window_end_ms: end_s * 1000,
            all_events: 0,
            invalid: BTreeMap::new(),
            quality: BTreeMap::new(),
            unparseable: 0,
            not_object: 0,
            tombstones: 0,
            lag_per_partition: BTreeMap::new(),
            lag_seconds_per_partition: BTreeMap::new(),
            status_per_partition: BTreeMap::new(),
            max_lag,
            max_lag_seconds: None,
            records_in: 0,
            records_delivered: 0,
            observers: BTreeMap::new(),
            samples: BTreeMap::new(),
            sampling: BTreeMap::new(),
            metrics: BTreeMap::new(),
            figures: Vec::new(),
        }
    }

    #[test]
    fn pending_then_firing_then_resolved_one_event_each() {
        let rule = AlertRule { for_: Duration::from_secs(30), ..AlertRule::reference_lag() };
        let mut eval = AlertEvaluator::new(vec![rule]);
        let states = |events: Vec<AlertEvent>| events.into_iter().map(|e| e.state).collect::<Vec<_>>();
        assert!(eval.evaluate(&doc(10, Some(3))).is_empty());
        assert_eq!(states(eval.evaluate(&doc(20, Some(20)))), [AlertState::Pending]);
        assert!(eval.evaluate(&doc(30, Some(25))).is_empty());
        assert_eq!(states(eval.evaluate(&doc(40, Some(30)))), [AlertState::Firing]);
        assert!(eval.evaluate(&doc(50, Some(30))).is_empty());
        assert_eq!(states(eval.evaluate(&doc(60, Some(0)))), [AlertState::Resolved]);
        assert!(eval.evaluate(&doc(70, Some(0))).is_empty());
    }

    #[test]
    fn short_spike_goes_back_to_inactive_and_unknown_lag_does_not_hold() {
        let mut eval = AlertEvaluator::new(vec![AlertRule::reference_lag()]);
        assert_eq!(eval.evaluate(&doc(10, Some(99)))[0].state, AlertState::Pending);
        assert_eq!(eval.evaluate(&doc(20, None))[0].state, AlertState::Inactive);
    }

    #[test]
    fn rules_parse_from_toml() {
        #[derive(Deserialize)]
        struct File {
            alerts: Vec<AlertRule>,
        }
        let file: File = toml::from_str("[[alerts]]\nname = \"x\"\nmetric = \"max_lag\"\nop = \">\"\nthreshold = 15\nfor = \"5m\"\n").expect("parses");
        assert_eq!(file.alerts[0], AlertRule::reference_lag().clone_with_name("x"));
    }

    impl AlertRule {
        fn clone_with_name(&self, name: &str) -> AlertRule {
            AlertRule { name: name.to_owned(), ..self.clone() }
        }
    }
}
