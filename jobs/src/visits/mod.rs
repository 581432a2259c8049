//! Generator of website visits shaped like the reference dataset (`docs/visits.md`),
//! with configurable faults, partition skew and rates, and an exact summary of what it
//! wrote.
//!
//! - [`VisitGenerator`] makes the records: deterministic from the seed, fast (JSON
//!   written by hand into reused buffers), with a running [`GeneratorSummary`].
//! - [`GeneratorConfig`] and [`FaultMix`] say what to make.
//! - [`produce_into`] writes them to Kafka; [`GenerateArgs`] and [`run`] are the
//!   `generate` command; [`produce_until`] is the demo's producer thread.

mod config;
mod generator;
mod produce;
mod schema;
mod summary;
#[cfg(test)]
mod tests;

pub use config::{default_start_time, ConfigError, FaultMix, GeneratorConfig, DEFAULT_IMPORTANT_FIELDS};
pub use generator::{GeneratedRecord, RecordRef, VisitGenerator, BROWSERS, DEVICE_TYPES, NETWORK_TYPES, PAGES, REFERRALS};
pub use produce::{produce_into, produce_until, run, run_until, GenerateArgs, NeverStop, ProduceReport, ProduceSettings, StopFlag};
pub use summary::{FaultCounts, FieldCounts, GeneratorSummary};
