//! The `tidewatch` command line, as a library: `tidewatch`'s own `main` is
//! `Tidewatch::new().main()`, and a crate of your own registers its observers and gets
//! the same commands (`run` with its config file, `-X`, `-w -n -p -h` and every output,
//! `demo`, `generate`, `reconcile`):
//!
//! ```no_run
//! use std::sync::Arc;
//! use tidewatch_jobs::cli::Tidewatch;
//! use tidewatch_operators::builtin::freshness::Freshness;
//!
//! fn main() -> std::process::ExitCode {
//!     Tidewatch::new().observer(Arc::new(Freshness)).main()
//! }
//! ```
//!
//! Delivery semantics of `tidewatch run`: at-least-once by default. Input offsets are
//! committed only after every record of their epoch, on every worker, is acknowledged by
//! the output broker; a crash replays the uncommitted epochs. With `--exactly-once`
//! (`job.guarantee = "exactly-once"`) each epoch is one Kafka transaction holding its
//! records and offsets, so `read_committed` readers see each input record once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tidewatch_engine::JobControl;
use tidewatch_operators::custom::ObserverFactory;
use tidewatch_operators::observers::ObserverMetrics;
use tidewatch_operators::protocol::DataflowObserver;
use tracing_subscriber::EnvFilter;

use crate::config::{ClusterFlags, JobFlags};
use crate::demo::{run_demo, DemoArgs};
use crate::observer::{run_observed_core, Own};
use crate::reconcile::ReconcileArgs;
use crate::signals::stop_on_signals;
use crate::visits::GenerateArgs;

#[derive(Debug, Parser)]
#[command(name = "tidewatch", version, about = "Copy a Kafka topic and observe the stream online.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the observer job against a Kafka cluster.
    #[command(disable_help_flag = true)]
    Run {
        #[command(flatten)]
        job: JobFlags,
        #[command(flatten)]
        cluster: ClusterFlags,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
    },
    /// Run the job on an embedded mock cluster with a built-in visits producer (no services needed).
    Demo(DemoArgs),
    /// Produce reference-shaped website visits to a topic.
    Generate(GenerateArgs),
    /// Read the output topic back and check it against what the job consumed: missing,
    /// duplicated and unexpected records per partition and window. Exit code 0: clean;
    /// 1: discrepancies; 2: the check could not run.
    Reconcile(ReconcileArgs),
}

/// The `tidewatch` command line with the observers of your own that `run` attaches.
#[derive(Debug, Default)]
pub struct Tidewatch {
    own: Own,
}

impl Tidewatch {
    /// The command line with the built-in observers only.
    pub fn new() -> Tidewatch {
        Tidewatch::default()
    }

    /// Adds an observer on the observation protocol ([`tidewatch_operators::protocol`]).
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn DataflowObserver>) -> Tidewatch {
        self.own.dataflow.push(observer);
        self
    }

    /// Adds a record observer ([`tidewatch_operators::custom`]).
    #[must_use]
    pub fn record_observer(mut self, observer: Arc<dyn ObserverFactory>) -> Tidewatch {
        self.own.record.push(observer);
        self
    }

    /// Parses the process's arguments, runs the command and returns its exit code.
    pub fn main(self) -> ExitCode {
        let cli = Cli::parse();
        // The demo's live progress line is its output; keep the log to warnings there unless asked.
        let default_filter = if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info,librdkafka=warn" };
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
            .with_writer(std::io::stderr)
            .init();
        // `reconcile` exits as diff does: 1 for differences found, 2 when it could not check.
        let failure = if matches!(cli.command, Command::Reconcile(_)) { ExitCode::from(2) } else { ExitCode::FAILURE };
        match run(cli, self.own) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("tidewatch: error: {error:#}");
                failure
            }
        }
    }
}

fn run(cli: Cli, own: Own) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { job, cluster, help: _ } => {
            let file = job.resolve()?;
            let control = JobControl::new();
            stop_on_signals(&control)?;
            let summary = run_observed_core(file, &cluster.cluster(), control, Arc::new(ObserverMetrics::default()), own, |_| {}).context("the job failed")?;
            tracing::info!(
                records_in = summary.records_in,
                records_delivered = summary.records_delivered,
                bytes_in = summary.bytes_in,
                "job finished"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let control = JobControl::new();
            stop_on_signals(&control)?;
            let summary = run_demo(&args, control)?;
            let delivered = summary.job.records_delivered;
            #[allow(clippy::print_stdout)] // the demo's closing report is its output
            {
                println!("demo: produced {} visits to `visits`, copied {delivered} to `processed_visits`", summary.produced);
                println!("demo: read {} records ({} bytes) in total", summary.job.records_in, summary.job.bytes_in);
                let profiles = args.profiles.clone().unwrap_or_else(|| args.out.join("profiles"));
                println!("demo: profile reports in {}", profiles.join("index.html").display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            crate::visits::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile(args) => {
            let clean = crate::reconcile::run(&args).context("reconcile failed")?;
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
