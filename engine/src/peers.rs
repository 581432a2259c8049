//! Losing a peer process of a multi-process job (`-n` > 1).
//!
//! When a peer's connection breaks — the process was killed, or exited on an error of its
//! own — timely's network threads panic ("timely communication error: reading data:
//! socket closed"), and the panic cascades: every worker panics on the poisoned queues
//! ("MergeQueue poisoned."), and so does the thread that joins them, each with its
//! backtrace, and the process dies with code 101. A job cannot go on without all its
//! processes (its dataflow spans them), but that should read as one error.
//!
//! [`PeerWatch`] does that: a panic hook, installed once, recognises the network threads'
//! panic (`timely:recv-<p>` / `timely:send-<p>`, whose number is the remote process) and
//! fails every watched job of this process with [`EngineError::PeerLost`], naming the
//! process and its address from the host list. The workers, which check for a failure
//! between steps, abandon their dataflows; the cascade's panics (the poisoned queues, the
//! join of the network threads) print nothing once a peer is known lost. Any other panic
//! goes to the hook that was installed before.
//!
//! The bound: a killed process's kernel closes its sockets, so the survivors read the end
//! of the stream at once and stop within a second or two (`tests/tests/hosts_apart_netns.rs`).
//! A host that vanishes without closing its connections (power loss, a cut link) is only
//! noticed when TCP gives up on it; timely's connections have no heartbeat of their own.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};

use crate::control::JobControl;
use crate::error::EngineError;

/// A job whose peers are watched.
struct Watched {
    id: u64,
    control: Weak<JobControl>,
    addresses: Vec<String>,
    lost: Arc<AtomicBool>,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

thread_local! {
    /// Set while this thread joins timely's threads, whose join panics when one of them did.
    static JOINING: Cell<bool> = const { Cell::new(false) };
}

/// Watches the peers of one multi-process job until dropped.
#[derive(Debug)]
pub struct PeerWatch {
    id: u64,
    lost: Arc<AtomicBool>,
}

impl PeerWatch {
    /// Starts watching: a lost peer fails `control` with [`EngineError::PeerLost`].
    /// `addresses` are the processes' addresses, in process order (the `-h` host list).
    pub fn start(control: &Arc<JobControl>, addresses: Vec<String>) -> PeerWatch {
        HOOK.call_once(install_hook);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let lost = Arc::new(AtomicBool::new(false));
        let watched = Watched { id, control: Arc::downgrade(control), addresses, lost: Arc::clone(&lost) };
        WATCHED.lock().unwrap_or_else(PoisonError::into_inner).push(watched);
        PeerWatch { id, lost }
    }

    /// Whether a peer of this job was lost.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Runs `join` (the join of timely's threads). If it panics because a peer was lost,
    /// returns `None` quietly; any other panic goes on unwinding.
    pub fn join_quietly<T>(&self, join: impl FnOnce() -> T) -> Option<T> {
        JOINING.with(|j| j.set(true));
        let result = std::panic::catch_unwind(AssertUnwindSafe(join));
        JOINING.with(|j| j.set(false));
        match result {
            Ok(value) => Some(value),
            Err(_) if self.lost() => None,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for PeerWatch {
    fn drop(&mut self) {
        WATCHED.lock().unwrap_or_else(PoisonError::into_inner).retain(|w| w.id != self.id);
    }
}

/// What a panic is, for the hook.
#[derive(Debug, PartialEq, Eq)]
enum Panic {
    /// A network thread lost its connection to process `remote`.
    Network { remote: usize, cause: String },
    /// A panic that follows a lost connection (a poisoned queue, a join).
    Cascade,
    /// Anything else.
    Other,
}

fn classify(thread: Option<&str>, message: &str, joining: bool) -> Panic {
    let thread = thread.unwrap_or("");
    let remote = thread.strip_prefix("timely:recv-").or_else(|| thread.strip_prefix("timely:send-")).and_then(|n| n.parse().ok());
    if let (Some(remote), Some(cause)) = (remote, message.strip_prefix("timely communication error: ")) {
        return Panic::Network { remote, cause: cause.to_owned() };
    }
    let poisoned = thread.starts_with("timely:work-") && message.starts_with("MergeQueue poisoned");
    let join = joining && (message.starts_with("Send thread panic") || message.starts_with("Recv thread panic") || message.starts_with("Worker panic"));
    if poisoned || join {
        Panic::Cascade
    } else {
        Panic::Other
    }
}

fn message_of(payload: &dyn Any) -> &str {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("")
}

fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let thread = std::thread::current();
        let joining = JOINING.with(Cell::get);
        let quiet = match classify(thread.name(), message_of(info.payload()), joining) {
            Panic::Network { remote, cause } => peer_lost(remote, &cause),
            Panic::Cascade => any_lost(),
            Panic::Other => false,
        };
        if !quiet {
            previous(info);
        }
    }));
}

/// Fails every watched job that has a process `remote`; true if there was one.
fn peer_lost(remote: usize, cause: &str) -> bool {
    let watched = WATCHED.lock().unwrap_or_else(PoisonError::into_inner);
    let mut any = false;
    for job in watched.iter().filter(|w| remote < w.addresses.len()) {
        any = true;
        // The receive and the send thread both panic: one error per job.
        if job.lost.swap(true, Ordering::AcqRel) {
            continue;
        }
        if let Some(control) = job.control.upgrade() {
            control.fail(EngineError::PeerLost { process: remote, address: job.addresses[remote].clone(), cause: describe(cause) });
        }
    }
    any
}

fn any_lost() -> bool {
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|w| w.lost.load(Ordering::Acquire))
}

/// timely's cause in words: "reading data: socket closed" is a connection closed.
fn describe(cause: &str) -> String {
    if cause.ends_with("socket closed") || cause.contains("reset by peer") || cause.contains("Broken pipe") {
        format!("its connection closed ({cause}): the process exited or its host is gone")
    } else {
        format!("its connection failed ({cause})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_threads_name_the_remote_process() {
        let got = classify(Some("timely:recv-3"), "timely communication error: reading data: socket closed", false);
        assert_eq!(got, Panic::Network { remote: 3, cause: "reading data: socket closed".to_owned() });
        let got = classify(Some("timely:send-0"), "timely communication error: flushing writer: Broken pipe (os error 32)", false);
        assert_eq!(got, Panic::Network { remote: 0, cause: "flushing writer: Broken pipe (os error 32)".to_owned() });
    }

    #[test]
    fn only_the_cascade_is_quietened() {
        assert_eq!(classify(Some("timely:work-1"), "MergeQueue poisoned.", false), Panic::Cascade);
        assert_eq!(classify(Some("main"), "Recv thread panic: Any { .. }", true), Panic::Cascade);
        // The same message outside a join, or another panic on a worker, is not.
        assert_eq!(classify(Some("main"), "Recv thread panic: Any { .. }", false), Panic::Other);
        assert_eq!(classify(Some("timely:work-1"), "index out of bounds", false), Panic::Other);
        assert_eq!(classify(Some("timely:recv-1"), "Clean shutdown followed by data.", false), Panic::Other);
        assert_eq!(classify(None, "timely communication error: x", false), Panic::Other);
    }

    #[test]
    fn a_lost_peer_fails_the_job_once_naming_its_address() {
        let control = JobControl::new();
        let watch = PeerWatch::start(&control, vec!["10.0.0.1:2101".to_owned(), "10.0.0.2:2101".to_owned()]);
        peer_lost(7, "reading data: socket closed");
        assert!(!watch.lost(), "this job has no process 7");
        assert!(peer_lost(1, "reading data: socket closed"));
        assert!(peer_lost(1, "flushing writer: Broken pipe (os error 32)"));
        assert!(watch.lost());
        let error = control.take_failure().expect("the job failed").to_string();
        assert!(error.contains("process 1") && error.contains("10.0.0.2:2101") && error.contains("restart all"), "{error}");
        assert!(error.contains("socket closed"), "the first cause is kept: {error}");
        drop(watch);
        assert!(!WATCHED.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|w| w.addresses[0] == "10.0.0.1:2101"));
    }
}
