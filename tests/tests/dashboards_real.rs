//! The Grafana dashboards and the Prometheus rules of `deploy/` name only series that
//! exist: `deploy/check-dashboard-metrics.py` run against real scrapes of a running
//! `tidewatch run` (against the real broker, with an alert rule that fires at once so
//! that every figure is served) and of the real broker's JMX exporter.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use tidewatch_tests::exposition::{broker_exporter, require_broker_exporter, scrape_parsed};
use tidewatch_tests::process::{wait_for, RunningJob};
use tidewatch_tests::{
    corpus, create_topics, free_ports, produce, real_brokers, require_broker, unique_topic,
};

const WAIT: Duration = Duration::from_secs(90);

/// Figures a scrape of the job must hold before the check means anything: they appear
/// with the first window, alert, delivery and librdkafka statistics.
const JOB_SERIES: &[&str] = &[
    "tidewatch_lag_offsets",
    "tidewatch_partition_status",
    "tidewatch_alert_firing",
    "tidewatch_delivery_latency_seconds",
    "tidewatch_rdkafka_consumer_lag_offsets",
    "tidewatch_rdkafka_partition_acked_messages_total",
    "process_resident_memory_bytes",
];

#[test]
fn dashboards_and_rules_name_only_series_of_real_scrapes() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let exporter = broker_exporter();
    require_broker_exporter(&exporter)?;
    let (input, output, group) = (
        unique_topic("dash-in"),
        unique_topic("dash-out"),
        unique_topic("dash"),
    );
    create_topics(&brokers, &[&input, &output], 2)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("job.toml");
    std::fs::write(
        &config,
        "[[observe.alerts]]\nname = \"records_seen\"\nmetric = \"all_events\"\nop = \">=\"\nthreshold = 0\nfor = \"0s\"\n",
    )?;
    let metrics = format!("127.0.0.1:{}", free_ports(1)?[0]);
    let out = dir.path().join("out");
    let mut job = RunningJob::start(
        dir.path(),
        &[
            "--config",
            config.to_str().context("a UTF-8 temporary directory")?,
            "--brokers",
            &brokers,
            "--input",
            &input,
            "--output",
            &output,
            "--group",
            &group,
            "--metrics-addr",
            &metrics,
            "--epoch",
            "100ms",
            "--window",
            "500ms",
            "-X",
            "statistics.interval.ms=200",
            "--out",
            out.to_str().context("a UTF-8 temporary directory")?,
        ],
    )?;
    produce(&brokers, &input, &corpus(500, 2, false))?;

    let job_scrape = wait_for(
        "the job serves every figure the dashboards draw",
        WAIT,
        || {
            job.check_running()?;
            let Ok((text, parsed)) = scrape_parsed(&metrics) else {
                return Ok(None);
            };
            Ok(JOB_SERIES
                .iter()
                .all(|name| parsed.series(name).next().is_some())
                .then_some(text))
        },
    )
    .with_context(|| format!("job log:\n{}", job.log_tail()))?;
    // The job's consumers fetched the input topic: the broker has bytes out for it.
    let broker_scrape = wait_for("the exporter shows the job's fetches", WAIT, || {
        let (text, parsed) = scrape_parsed(&exporter)?;
        Ok((parsed
            .sum("kafka_topic_bytes_out_total", &[("topic", &input)])
            .unwrap_or(0.0)
            > 0.0)
            .then_some(text))
    })?;

    let job_file = dir.path().join("tidewatch-scrape.txt");
    let broker_file = dir.path().join("kafka-scrape.txt");
    std::fs::write(&job_file, job_scrape)?;
    std::fs::write(&broker_file, broker_scrape)?;
    let checker =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/check-dashboard-metrics.py");
    let run = Command::new("python3")
        .arg(&checker)
        .arg(&job_file)
        .arg(&broker_file)
        .output()
        .context("running python3 (Debian: apt-get install -y python3)")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{report}");
    ensure!(
        run.status.success(),
        "{} found problems:\n{report}",
        checker.display()
    );
    for dashboard in [
        "tidewatch-observer.json",
        "tidewatch-job.json",
        "kafka-broker.json",
        "tidewatch-rules.yml",
        "kafka-rules.yml",
    ] {
        ensure!(
            report.contains(dashboard),
            "the check did not read {dashboard}:\n{report}"
        );
    }
    let status = job.stop()?;
    ensure!(
        status.success(),
        "tidewatch exited with {status}; its log:\n{}",
        job.log_tail()
    );
    Ok(())
}
