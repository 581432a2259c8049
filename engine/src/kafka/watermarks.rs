//! The watermark monitor: one side thread per process fetches the input topic's high
//! watermarks every interval, so no worker ever waits on a metadata request, and hands
//! each round to the dataflow through a [`WatermarkFeed`]: [`watermark_stream`] is the
//! operator that turns the rounds into a differential stream.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::scheduling::SyncActivator;

use crate::config::KafkaConfig;
use crate::control::JobControl;
use crate::error::{EngineError, Result};
use crate::epoch::{epoch_of, now_ms};
use crate::kafka::discovery::Discovery;
use crate::kafka::plan::REQUEST_TIMEOUT;
use crate::kafka::source::ProgressStream;

/// One round of high watermarks: the epoch at whose end they were fetched, and
/// `(partition, high)` for each partition that answered.
pub type Round = (u64, Vec<(i32, i64)>);

/// Hands the monitor's rounds to the operators that subscribed, and wakes them.
#[derive(Default)]
pub struct WatermarkFeed {
    subscribers: Mutex<Vec<(Sender<Round>, SyncActivator)>>,
    /// The latest round, for a subscriber that comes after it.
    last: Mutex<Option<Round>>,
}

impl std::fmt::Debug for WatermarkFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkFeed").finish_non_exhaustive()
    }
}

impl WatermarkFeed {
    /// Sends `round` to every subscriber and wakes it; forgets those that went away.
    fn publish(&self, round: Round) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(round.clone());
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).retain(|(sender, activator)| sender.send(round.clone()).is_ok() && activator.activate().is_ok());
    }

    /// Ends the feed: subscribers see their channel closed once they have read it.
    fn close(&self) {
        for (_, activator) in self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = activator.activate();
        }
    }

    /// A channel of the rounds from now on, the latest one first; `activator` is woken
    /// at each.
    fn subscribe(&self, activator: SyncActivator) -> Receiver<Round> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        if let Some(last) = self.last.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            let _ = sender.send(last);
        }
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push((sender, activator));
        receiver
    }
}

/// Differential updates `((partition, high), epoch, ±1)` of the input's high watermarks.
pub type WatermarkStream<'scope> = Stream<'scope, u64, Vec<((i32, i64), u64, isize)>>;

/// The monitor's watermarks as differential updates `((partition, high), epoch, ±1)`,
/// emitted on worker 0 (every process's monitor sees every partition), each round at the
/// epoch at whose end it was fetched, so it pairs with the positions the sources log at
/// that epoch's close. The operator holds back the epoch whose round is due (a fetch
/// takes milliseconds), but never more than `slack` behind the sources' `progress`, so
/// an unreachable broker delays lag, not the stats; it sleeps until the monitor wakes
/// it, and ends when the sources' progress ends or the monitor stops.
pub fn watermark_stream<'scope>(progress: &ProgressStream<'scope>, feed: &Arc<WatermarkFeed>, epoch_ms: u64) -> WatermarkStream<'scope> {
    let feed = Arc::clone(feed);
    let emits = progress.scope().index() == 0;
    let worker = progress.scope().worker().clone();
    let epoch_ms = epoch_ms.max(1);
    let slack = (2 * epoch_ms).max(SLACK_MS);
    progress.clone().unary_frontier::<CapacityContainerBuilder<Vec<((i32, i64), u64, isize)>>, _, _, _>(Pipeline, "Watermarks", move |capability, info| {
        let rounds = emits.then(|| feed.subscribe(worker.sync_activator_for(Rc::clone(&info.address).to_vec())));
        let mut capability = emits.then_some(capability);
        let mut current: BTreeMap<i32, i64> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|_, data| data.clear());
            let (Some(cap), Some(rounds)) = (capability.as_mut(), rounds.as_ref()) else { return };
            let Some(&sources_at) = frontier.frontier().first() else {
                capability = None;
                return;
            };
            loop {
                let (epoch, round) = match rounds.try_recv() {
                    Ok(round) => round,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        capability = None;
                        return;
                    }
                };
                if epoch > *cap.time() {
                    cap.downgrade(&epoch);
                }
                let time = *cap.time();
                let mut session = output.session(&*cap);
                for (partition, high) in round {
                    match current.insert(partition, high) {
                        Some(before) if before == high => {}
                        Some(before) => {
                            session.give(((partition, before), time, -1));
                            session.give(((partition, high), time, 1));
                        }
                        None => session.give(((partition, high), time, 1)),
                    }
                }
                drop(session);
                // The next round is due at the end of the next epoch.
                cap.downgrade(&(time + epoch_ms));
            }
            let floor = sources_at.saturating_sub(slack);
            if floor > *cap.time() {
                cap.downgrade(&floor);
            }
        }
    })
}

/// The most the watermarks hold the stats back behind the sources when a round is late.
const SLACK_MS: u64 = 1_000;

/// Starts the monitor thread; it ends when the job's stop flag is set. With `discovery`,
/// the same thread looks for partitions added to the input topic (and fetches their
/// watermarks from then on); a new partition the output topic lacks fails the job.
pub fn spawn_watermark_monitor(
    kafka: &KafkaConfig,
    topic: &str,
    mut partitions: Vec<i32>,
    interval: Duration,
    control: Arc<JobControl>,
    discovery: Option<Discovery>,
) -> Result<(JoinHandle<()>, Arc<WatermarkFeed>)> {
    let feed = Arc::new(WatermarkFeed::default());
    let publish = Arc::clone(&feed);
    let brokers = kafka.brokers().to_owned();
    let consumer: BaseConsumer = kafka
        .metadata_config()?
        .create()
        .map_err(|e| EngineError::kafka(&brokers, "creating the watermark monitor", e))?;
    let topic = topic.to_owned();
    let fetch_round = move |consumer: &BaseConsumer, partitions: &[i32], control: &JobControl, feed: &WatermarkFeed, epoch: u64| {
        let mut fetched = Vec::with_capacity(partitions.len());
        for &p in partitions {
            match consumer.fetch_watermarks(&topic, p, REQUEST_TIMEOUT) {
                Ok(w) => fetched.push((p, w)),
                Err(error) => tracing::warn!(%topic, partition = p, %error, "watermark fetch failed; lag is stale"),
            }
        }
        feed.publish((epoch, fetched.iter().map(|(p, (_, high))| (*p, *high)).collect()));
        control.metrics.set_watermarks(fetched);
    };
    // The first round before the job starts, so lag is known from its first window even
    // when the whole input is copied within it.
    fetch_round(&consumer, &partitions, &control, &feed, 0);
    let epoch_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX).max(1);
    let monitor = std::thread::Builder::new()
        .name("tidewatch-watermarks".to_owned())
        .spawn(move || {
            // Each round right after an epoch's end, tagged with that epoch, so it pairs
            // with the positions the sources log as they close it.
            let mut next = epoch_of(now_ms(), epoch_ms) + epoch_ms;
            let mut look_at = discovery.as_ref().map(|d| Instant::now() + d.interval);
            while !control.stop_requested() {
                if let (Some(d), Some(at)) = (discovery.as_ref(), look_at) {
                    if Instant::now() >= at {
                        match d.look(&mut partitions) {
                            Ok(()) => {}
                            // An output without the new partition: what was read is
                            // delivered and committed, the new partition is not read.
                            Err(error @ EngineError::Config { .. }) => control.stop_with_error(error),
                            Err(error) => tracing::warn!(%error, "looking for new partitions failed; trying again at the next interval"),
                        }
                        look_at = Some(Instant::now() + d.interval);
                    }
                }
                let now = now_ms();
                if now >= next {
                    fetch_round(&consumer, &partitions, &control, &publish, next - epoch_ms);
                    next = epoch_of(now_ms(), epoch_ms) + epoch_ms;
                } else {
                    std::thread::sleep(Duration::from_millis((next - now).min(20)));
                }
            }
            publish.close();
        })
        .map_err(|e| EngineError::Runtime(format!("spawning the watermark monitor: {e}")))?;
    Ok((monitor, feed))
}
