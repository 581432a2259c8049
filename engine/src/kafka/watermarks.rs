//! The watermark monitor: one side thread per process fetches the input topic's high
//! watermarks every interval, so no worker ever waits on a metadata request.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaConfig;
use crate::control::JobControl;
use crate::error::{EngineError, Result};
use crate::kafka::plan::REQUEST_TIMEOUT;

/// Starts the monitor thread; it ends when the job's stop flag is set.
pub fn spawn_watermark_monitor(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: Vec<i32>,
    interval: Duration,
    control: Arc<JobControl>,
) -> Result<JoinHandle<()>> {
    let brokers = kafka.brokers().to_owned();
    let consumer: BaseConsumer = kafka
        .metadata_config()?
        .create()
        .map_err(|e| EngineError::kafka(&brokers, "creating the watermark monitor", e))?;
    let topic = topic.to_owned();
    let fetch_round = move |consumer: &BaseConsumer, control: &JobControl| {
        let mut fetched = Vec::with_capacity(partitions.len());
        for &p in &partitions {
            match consumer.fetch_watermarks(&topic, p, REQUEST_TIMEOUT) {
                Ok(w) => fetched.push((p, w)),
                Err(error) => tracing::warn!(%topic, partition = p, %error, "watermark fetch failed; lag is stale"),
            }
        }
        control.metrics.set_watermarks(fetched);
    };
    // The first round before the job starts, so lag is known from its first window even
    // when the whole input is copied within it.
    fetch_round(&consumer, &control);
    std::thread::Builder::new()
        .name("tidewatch-watermarks".to_owned())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            while !control.stop_requested() {
                if Instant::now() >= next {
                    next = Instant::now() + interval;
                    fetch_round(&consumer, &control);
                }
                std::thread::sleep(Duration::from_millis(20).min(interval));
            }
        })
        .map_err(|e| EngineError::Runtime(format!("spawning the watermark monitor: {e}")))
}
