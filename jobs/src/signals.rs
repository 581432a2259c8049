//! SIGINT and SIGTERM: the first asks the job to finish its epoch, flush, commit and
//! exit 0; a second one exits at once.

use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tidewatch_engine::JobControl;

/// Installs the handlers for the job behind `control`.
pub fn stop_on_signals(control: &Arc<JobControl>) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let control = Arc::clone(control);
    std::thread::Builder::new().name("tidewatch-signals".to_owned()).spawn(move || {
        for signal in signals.forever() {
            if control.stop_requested() {
                tracing::warn!(signal, "second signal: exiting without a final commit");
                std::process::exit(130);
            }
            tracing::info!(signal, "stopping: finishing the epoch, flushing, committing");
            control.request_stop();
        }
    })?;
    Ok(())
}
