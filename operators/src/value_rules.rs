//! Value rules, an observer built only with the [`crate::custom`] API: per rule, how many
//! records break it. Rules come from `[[observe.rules]]` tables:
//!
//! ```toml
//! [[observe.rules]]
//! name = "page_pattern"
//! field = "page"
//! regex = "^(index|contact|home|main|about|categories|category_[0-9]+|page_[0-9]+)$"
//!
//! [[observe.rules]]
//! name = "browser_known"
//! field = "context.technical.browser"
//! allowed = ["Chrome", "Firefox", "Safari"]
//!
//! [[observe.rules]]
//! name = "version_range"
//! field = "context.technical.browser_version"
//! min = 20.0
//! max = 26.0
//!
//! [[observe.rules]]
//! name = "fresh_events"
//! field = "event_time"
//! max_age = "1h"            # RFC 3339 timestamps older than this (or in the future by more) break it
//! ```
//!
//! A record breaks a rule when the field is present and its value does not satisfy the
//! check (a missing or null field is the quality observer's business, not a violation
//! here); a value of the wrong type (a number for a regex, a string that is not a number
//! for a range) breaks it too. Each rule reports `value_rules.<name>` (violations) and
//! `value_rules.<name>_checked` (records where the field was present), and the stats
//! document lists a few violating records (`samples`: partition and offset) per window.

use std::time::Duration;

use serde::Deserialize;

use tidewatch_engine::config::deserialize_optional_duration;

use crate::custom::{Counts, FieldValue, ObserverFactory, RecordObserver, RecordView};

/// One rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRule {
    /// Name, unique among the rules.
    pub name: String,
    /// Dotted path of the checked field.
    pub field: String,
    /// The string value must match this regular expression.
    pub regex: Option<String>,
    /// The value (string, number or bool, compared as text) must be one of these.
    pub allowed: Option<Vec<String>>,
    /// The numeric value must be at least this.
    pub min: Option<f64>,
    /// The numeric value must be at most this.
    pub max: Option<f64>,
    /// The RFC 3339 timestamp must be at most this old (and at most this far in the future).
    #[serde(default, deserialize_with = "deserialize_optional_duration")]
    pub max_age: Option<Duration>,
}

/// A rule that cannot be used; names the key.
#[derive(Debug, thiserror::Error)]
#[error("config key `observe.rules.{rule}`: {message}")]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
enum Check {
    Regex(regex::Regex),
    Allowed(Vec<String>),
    Range(Option<f64>, Option<f64>),
    Fresh(Duration),
}

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    field: String,
    check: Check,
}

/// The value-rules observer.
#[derive(Debug, Clone)]
pub struct ValueRules {
    rules: Vec<Compiled>,
}

impl ValueRules {
    /// Compiles the rules; each must have exactly one kind of check.
    pub fn new(rules: &[ValueRule]) -> Result<ValueRules, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let err = |message: String| RuleError { rule: rule.name.clone(), message };
            if compiled.iter().any(|c: &Compiled| c.name == rule.name) {
                return Err(err("listed twice".to_owned()));
            }
            let kinds = [rule.regex.is_some(), rule.allowed.is_some(), rule.min.is_some() || rule.max.is_some(), rule.max_age.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(err("expected exactly one check: regex, allowed, min/max or max_age".to_owned()));
            }
            let check = if let Some(pattern) = &rule.regex {
                Check::Regex(regex::Regex::new(pattern).map_err(|e| err(format!("regex: {e}")))?)
            } else if let Some(allowed) = &rule.allowed {
                Check::Allowed(allowed.clone())
            } else if let Some(age) = rule.max_age {
                Check::Fresh(age)
            } else {
                Check::Range(rule.min, rule.max)
            };
            compiled.push(Compiled { name: rule.name.clone(), field: rule.field.clone(), check });
        }
        Ok(ValueRules { rules: compiled })
    }
}

/// Whether `value` satisfies `check` at `now_ms`.
fn holds(check: &Check, value: FieldValue<'_>, now_ms: i64) -> bool {
    match check {
        Check::Regex(re) => value.as_str().is_some_and(|s| re.is_match(s)),
        Check::Allowed(allowed) => value.text().is_some_and(|t| allowed.iter().any(|a| *a == *t)),
        Check::Range(min, max) => {
            let number = value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse::<f64>().ok()));
            number.is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m))
        }
        Check::Fresh(age) => value
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|t| (now_ms - t.timestamp_millis()).unsigned_abs() <= age.as_millis() as u64),
    }
}

#[derive(Debug)]
struct OnWorker {
    rules: Vec<Compiled>,
    violations: Vec<i64>,
    checked: Vec<i64>,
    /// The first violations of the epoch per rule: partition and offset.
    samples: Vec<Vec<(i32, i64)>>,
}

/// Samples kept per rule and epoch.
const SAMPLES: usize = 3;

impl RecordObserver for OnWorker {
    fn observe(&mut self, record: &RecordView<'_>) {
        let now = chrono::Utc::now().timestamp_millis();
        for (i, rule) in self.rules.iter().enumerate() {
            match record.field(&rule.field) {
                None | Some(FieldValue::Null) => {}
                Some(value) => {
                    self.checked[i] += 1;
                    if !holds(&rule.check, value, now) {
                        self.violations[i] += 1;
                        if self.samples[i].len() < SAMPLES {
                            self.samples[i].push((record.record().partition, record.record().offset));
                        }
                    }
                }
            }
        }
    }

    fn flush(&mut self, counts: &mut Counts<'_>) {
        for (i, rule) in self.rules.iter().enumerate() {
            counts.add(&rule.name, std::mem::take(&mut self.violations[i]));
            for (partition, offset) in self.samples[i].drain(..) {
                counts.sample(&rule.name, partition, offset);
            }
            counts.add(&format!("{}_checked", rule.name), std::mem::take(&mut self.checked[i]));
        }
    }
}

impl ObserverFactory for ValueRules {
    fn name(&self) -> &str {
        "value_rules"
    }

    fn metrics(&self) -> Vec<String> {
        self.rules.iter().flat_map(|r| [r.name.clone(), format!("{}_checked", r.name)]).collect()
    }

    fn create(&self, _worker: usize) -> Box<dyn RecordObserver> {
        let n = self.rules.len();
        Box::new(OnWorker { rules: self.rules.clone(), violations: vec![0; n], checked: vec![0; n], samples: vec![Vec::new(); n] })
    }

    /// Always exact: value rules are quality counts.
    fn exact(&self) -> bool {
        true
    }

    fn fields(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.field.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custom::run_observer;
    use tidewatch_engine::Record;

    fn record(value: &str) -> Record {
        Record { partition: 0, offset: 0, timestamp: None, key: None, value: Some(value.as_bytes().into()), headers: vec![] }
    }

    fn rules() -> Vec<ValueRule> {
        let base = ValueRule { name: String::new(), field: String::new(), regex: None, allowed: None, min: None, max: None, max_age: None };
        vec![
            ValueRule { name: "page".into(), field: "page".into(), regex: Some("^(home|page_[0-9]+)$".into()), ..base.clone() },
            ValueRule { name: "browser".into(), field: "c.browser".into(), allowed: Some(vec!["Chrome".into(), "Safari".into()]), ..base.clone() },
            ValueRule { name: "version".into(), field: "c.version".into(), min: Some(20.0), max: Some(26.0), ..base.clone() },
            ValueRule { name: "fresh".into(), field: "t".into(), max_age: Some(Duration::from_secs(3600)), ..base },
        ]
    }

    #[test]
    fn counts_equal_a_hand_count() {
        let now = chrono::Utc::now();
        let fresh = now.to_rfc3339();
        let stale = (now - chrono::Duration::hours(3)).to_rfc3339();
        let records = vec![
            // page ok, browser ok, version ok, fresh ok
            record(&format!(r#"{{"page":"home","c":{{"browser":"Chrome","version":"21.5"}},"t":"{fresh}"}}"#)),
            // page bad, browser bad, version bad (too high), stale
            record(&format!(r#"{{"page":"blog","c":{{"browser":"Lynx","version":30}},"t":"{stale}"}}"#)),
            // page wrong type, version not a number, timestamp unparseable
            record(r#"{"page":7,"c":{"version":"abc"},"t":"yesterday"}"#),
            // nothing present or all null: nothing checked
            record(r#"{"page":null,"c":null}"#),
            record("not json"),
        ];
        let totals = run_observer(ValueRules::new(&rules()).expect("rules"), records);
        let get = |k: &str| totals[&format!("value_rules.{k}")];
        assert_eq!((get("page"), get("page_checked")), (2, 3));
        assert_eq!((get("browser"), get("browser_checked")), (1, 2));
        assert_eq!((get("version"), get("version_checked")), (2, 3));
        assert_eq!((get("fresh"), get("fresh_checked")), (2, 3));
    }

    #[test]
    fn a_rule_needs_exactly_one_check_and_a_valid_regex() {
        let mut bad = rules();
        bad[0].allowed = Some(vec![]);
        assert!(ValueRules::new(&bad).expect_err("two checks").to_string().contains("observe.rules.page"));
        let mut bad = rules();
        bad[0].regex = Some("(".into());
        assert!(ValueRules::new(&bad).expect_err("bad regex").to_string().contains("regex"));
    }
}
