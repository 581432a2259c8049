//! `tidewatch run` as a child process of a test: started with its log in a file, checked
//! for an early exit, stopped with SIGTERM (the job finishes its epoch, flushes and
//! commits) and killed on drop if still running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};

/// A running `tidewatch run`.
#[derive(Debug)]
pub struct RunningJob {
    child: Child,
    log: PathBuf,
}

impl RunningJob {
    /// Starts `tidewatch run ARGS`, its stderr going to `dir/tidewatch.log`.
    pub fn start(dir: &Path, args: &[&str]) -> anyhow::Result<RunningJob> {
        RunningJob::start_with_env(dir, args, &[])
    }

    /// [`RunningJob::start`] with the variables `env` set for the job.
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<RunningJob> {
        let log = dir.join("tidewatch.log");
        let child = Command::new(crate::tidewatch_bin()?)
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning tidewatch run")?;
        Ok(RunningJob { child, log })
    }

    /// The last 30 lines of the job's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Fails with the log when the job has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "tidewatch exited early with {status}; its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Sends SIGTERM and waits (at most a minute) for the job to end.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        ensure!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "tidewatch did not stop within 60 s of SIGTERM; its log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Calls `probe` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
