//! The tidewatch engine: processing-time epochs on timely dataflow, a Kafka source and
//! sink with frontier-driven offset commits, the job runtime and its configuration.
//!
//! This is the only crate that touches raw timely builders and rdkafka handles; the
//! observation operators build on the record stream it hands out ([`runtime::Observe`]).

pub mod assign;
pub mod budget;
mod bytes;
pub mod config;
pub mod counts;
pub mod control;
pub mod epoch;
pub mod error;
pub mod kafka;
pub mod opensearch;
pub mod peers;
pub mod record;
pub mod runtime;
pub mod secret;

pub use config::{Guarantee, CONSUMER_DEFAULTS, PRODUCER_DEFAULTS, JobConfig, KafkaConfig, StartFrom};
pub use control::{JobControl, JobMetrics};
pub use error::{EngineError, Fault, Result};
pub use record::{Bytes, Record, RecordStream};
pub use secret::Secret;
pub use runtime::{run_job, Cluster, NoObservers, Observe, ObserveInputs, RunSummary, Waits, WorkerContext};
