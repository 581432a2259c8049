//! Secured clusters, against real services of the tests' own: a Kafka broker with a
//! SASL_SSL listener (SCRAM-SHA-512, a throwaway CA; `TIDEWATCH_KAFKA_SECURITY=sasl_ssl
//! scripts/kafka.sh`) and nginx terminating TLS with basic auth in front of the OpenSearch
//! node (`scripts/tls-proxy.sh`). The passthrough over SASL_SSL is byte-exact; a wrong
//! password or an untrusted CA fails within seconds, naming the broker, the mechanism and
//! the key to fix, and commits nothing; secrets read from the environment and from files
//! never show in the log (at debug level), `/metrics`, the stats file or the documents.
//!
//! The broker's PLAINTEXT listener (loopback, the broker's own) serves the tests' setup
//! and checks; the job is only ever given the SASL_SSL listener.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;
use tidewatch_engine::opensearch::{OpenSearchConfig, OpenSearchSink};
use tidewatch_engine::{Cluster, JobConfig, JobControl, Secret};
use tidewatch_jobs::config::FileConfig;
use tidewatch_jobs::observer::run_observed;
use tidewatch_jobs::outputs::{read_ndjson, OutputConfig};
use tidewatch_operators::observers::ObserveConfig;
use tidewatch_tests::exposition::scrape;
use tidewatch_tests::process::{wait_for, RunningJob};
use tidewatch_tests::secured::{unrelated_ca, SecuredBroker, TlsProxy};
use tidewatch_tests::{
    assert_copied_exactly, committed, corpus, create_topics, end_offsets, free_ports, opensearch_url, produce, read_all, require_opensearch,
    tidewatch_bin, unique_topic,
};

const PARTITIONS: i32 = 3;

/// The input, output and group of one scenario, the input holding `records` records.
fn topics(broker: &SecuredBroker, name: &str, records: usize) -> anyhow::Result<(String, String, String, Vec<tidewatch_engine::Record>)> {
    let (input, output, group) = (unique_topic(&format!("{name}-in")), unique_topic(&format!("{name}-out")), unique_topic(name));
    create_topics(&broker.plain(), &[&input, &output], PARTITIONS)?;
    let records = corpus(records, PARTITIONS, false);
    produce(&broker.plain(), &input, &records)?;
    Ok((input, output, group, records))
}

fn job(input: &str, output: &str, group: &str) -> JobConfig {
    JobConfig {
        input_topic: input.to_owned(),
        output_topic: output.to_owned(),
        group_id: group.to_owned(),
        epoch_interval: Duration::from_millis(100),
        until_end: true,
        ..JobConfig::default()
    }
}

/// One broker for every Kafka scenario (a start costs half a minute), run in turn.
#[test]
fn real_sasl_ssl_broker() -> anyhow::Result<()> {
    let broker = SecuredBroker::start()?;
    let status = broker.status()?;
    ensure!(
        status.contains(&broker.sasl_ssl()) && status.contains(&broker.ca_file().display().to_string()),
        "kafka.sh status names the SASL_SSL listener and the CA file: {status}"
    );
    passthrough_is_byte_exact(&broker).context("passthrough over SASL_SSL")?;
    wrong_password_fails_fast_and_commits_nothing(&broker).context("wrong password")?;
    untrusted_ca_fails_fast_and_commits_nothing(&broker).context("untrusted CA")?;
    secrets_never_show(&broker).context("secrets from the environment and files")?;
    Ok(())
}

fn passthrough_is_byte_exact(broker: &SecuredBroker) -> anyhow::Result<()> {
    let (input, output, group, records) = topics(broker, "sasl-copy", 3_000)?;
    let dir = tempfile::tempdir()?;
    let file = FileConfig {
        job: job(&input, &output, &group),
        kafka: broker.client(&broker.password()?, &broker.ca_file())?,
        observe: ObserveConfig { window: Duration::from_millis(500), ..ObserveConfig::default() },
        output: OutputConfig { dir: dir.path().to_owned(), metrics_addr: String::new(), ..OutputConfig::default() },
        opensearch: OpenSearchConfig::default(),
        profile: Default::default(),
    };
    let summary = run_observed(file, &Cluster::default(), JobControl::new())?;
    assert_eq!(summary.records_delivered, records.len() as u64);
    assert_copied_exactly(&records, &read_all(&broker.plain(), &output)?);
    let ends = end_offsets(&broker.plain(), &input, PARTITIONS)?;
    let got = committed(&broker.plain(), &group, &input, PARTITIONS)?;
    for (p, end) in ends {
        assert_eq!(got[&p], Some(end), "committed offset of partition {p}");
    }
    Ok(())
}

/// Runs `tidewatch run` on `config` (a TOML file's text) to its end: exit status, stderr
/// and how long it took.
fn run_binary(dir: &Path, config: &str, env: &[(&str, &str)]) -> anyhow::Result<(std::process::ExitStatus, String, Duration)> {
    let path = dir.join("job.toml");
    std::fs::write(&path, config)?;
    let bin = tidewatch_bin()?;
    let started = Instant::now();
    let out = std::process::Command::new(bin)
        .args(["run", "--until-end", "--metrics-addr", "", "--out"])
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok((out.status, String::from_utf8_lossy(&out.stderr).into_owned(), started.elapsed()))
}

/// The `[job]` and `[kafka]` tables of a SASL_SSL job, the password (or its source) as
/// `password`, trusting `ca_file`.
fn toml_config(broker: &SecuredBroker, input: &str, output: &str, group: &str, password: &str, ca_file: &Path) -> anyhow::Result<String> {
    let mut text = format!("[job]\ninput_topic = \"{input}\"\noutput_topic = \"{output}\"\ngroup_id = \"{group}\"\nepoch_interval = \"100ms\"\n[kafka]\n");
    for (key, value) in broker.client_keys(ca_file)? {
        text.push_str(&format!("\"{key}\" = \"{value}\"\n"));
    }
    text.push_str(&format!("\"sasl.password\" = {password}\n"));
    Ok(text)
}

/// A job that must fail before it copies anything: non-zero exit within seconds, an
/// error naming the broker and `expected`, and no committed offset.
fn assert_fails_fast(broker: &SecuredBroker, name: &str, password: &str, ca_file: &Path, expected: &[&str]) -> anyhow::Result<()> {
    let (input, output, group, _) = topics(broker, name, 300)?;
    let dir = tempfile::tempdir()?;
    let config = toml_config(broker, &input, &output, &group, password, ca_file)?;
    let (status, stderr, took) = run_binary(dir.path(), &config, &[])?;
    eprintln!("{name}: exit {status} after {took:?}");
    ensure!(!status.success(), "the job succeeded: {stderr}");
    ensure!(took < Duration::from_secs(6), "the job took {took:?} to fail (a metadata timeout is 10 s): {stderr}");
    let error = stderr.lines().find(|l| l.contains("tidewatch: error")).with_context(|| format!("no error line in: {stderr}"))?;
    for part in [broker.sasl_ssl().as_str()].iter().chain(expected) {
        ensure!(error.contains(part), "the error does not name `{part}`: {error}");
    }
    let got = committed(&broker.plain(), &group, &input, PARTITIONS)?;
    ensure!(got.values().all(Option::is_none), "offsets were committed: {got:?}");
    ensure!(end_offsets(&broker.plain(), &output, PARTITIONS)?.values().all(|e| *e == 0), "records reached the output");
    Ok(())
}

fn wrong_password_fails_fast_and_commits_nothing(broker: &SecuredBroker) -> anyhow::Result<()> {
    assert_fails_fast(broker, "sasl-badpw", "\"not-the-password\"", &broker.ca_file(), &["SCRAM-SHA-512", "kafka.\"sasl.password\"", "Authentication failed"])
}

fn untrusted_ca_fails_fast_and_commits_nothing(broker: &SecuredBroker) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let other = unrelated_ca(dir.path())?;
    let password = format!("\"{}\"", broker.password()?);
    assert_fails_fast(broker, "sasl-badca", &password, &other, &["SASL_SSL", "kafka.\"ssl.ca.location\"", "certificate verify failed"])
}

/// The job as a child process with the Kafka password from an environment variable and
/// the OpenSearch password from a file, logging at debug level (librdkafka's security and
/// config debug too): neither password shows in its log, `/metrics`, stats.ndjson or the
/// documents it indexed, which are read back through the proxy.
fn secrets_never_show(broker: &SecuredBroker) -> anyhow::Result<()> {
    let upstream = opensearch_url();
    require_opensearch(&upstream)?;
    let proxy = TlsProxy::start(&upstream)?;
    let (input, output, group, records) = topics(broker, "sasl-secrets", 2_000)?;
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", free_ports(1)?[0]);
    let index = unique_topic("secured-stats");
    let mut config = toml_config(broker, &input, &output, &group, "{ env = \"TIDEWATCH_TEST_KAFKA_PASSWORD\" }", &broker.ca_file())?;
    config.push_str("\"debug\" = \"security,conf,generic\"\n[observe]\nwindow = \"500ms\"\n");
    config.push_str(&format!("[output]\ndir = \"{}\"\nmetrics_addr = \"{metrics}\"\n", dir.path().display()));
    config.push_str(&format!(
        "[opensearch]\nurl = \"{}\"\nusername = \"{}\"\npassword = {{ file = \"{}\" }}\nca_file = \"{}\"\nstats_index = \"{index}\"\nalerts_index = \"{index}-alerts\"\nprofiles_index = \"{index}-profiles\"\n",
        proxy.url(),
        proxy.username(),
        proxy.password_file().display(),
        proxy.ca_file().display()
    ));
    let path = dir.path().join("job.toml");
    std::fs::write(&path, &config)?;
    let secrets = [broker.password()?, proxy.password()?];
    ensure!(!config.contains(&secrets[0]) && !config.contains(&secrets[1]), "the config file holds no secret");

    let env = [("TIDEWATCH_TEST_KAFKA_PASSWORD", secrets[0].as_str()), ("RUST_LOG", "debug")];
    let mut job = RunningJob::start_with_env(dir.path(), &["-c", &path.display().to_string()], &env)?;
    let expected = records.len() as i64;
    wait_for("the copy over SASL_SSL", Duration::from_secs(60), || {
        job.check_running()?;
        Ok((end_offsets(&broker.plain(), &output, PARTITIONS)?.values().sum::<i64>() >= expected).then_some(()))
    })?;
    let exposition = wait_for("/metrics", Duration::from_secs(10), || Ok(scrape(&metrics).ok()))?;
    std::thread::sleep(Duration::from_secs(2));
    let status = job.stop()?;
    ensure!(status.success(), "the job ended with {status}: {}", job.log_tail());

    let log = std::fs::read_to_string(dir.path().join("tidewatch.log"))?;
    ensure!(log.contains("SASL") || log.contains("sasl"), "the debug log shows the SASL exchange (else it proves little)");
    let stats = std::fs::read_to_string(dir.path().join("stats.ndjson"))?;
    let expected_docs: Vec<Value> = read_ndjson(&dir.path().join("stats.ndjson"))?;
    ensure!(!expected_docs.is_empty(), "the job wrote stats documents");
    let docs = wait_for("the stats documents through the proxy", Duration::from_secs(30), || {
        let docs = proxy.docs(&index, "window_start_ms")?;
        Ok((docs.len() == expected_docs.len()).then_some(docs))
    })?;
    assert_eq!(docs, expected_docs, "the documents read back through the proxy are the stats file's");
    let documents = serde_json::to_string(&docs)?;
    for (place, text) in [("the log", &log), ("/metrics", &exposition), ("stats.ndjson", &stats), ("the documents", &documents)] {
        for (i, secret) in secrets.iter().enumerate() {
            ensure!(!text.contains(secret.as_str()), "secret {i} shows in {place}");
        }
    }
    Ok(())
}

/// The OpenSearch sink behind the TLS proxy: the right login indexes documents; a wrong
/// password, or a CA that did not sign the proxy's certificate, fails at start naming the
/// key and the URL.
#[test]
fn real_opensearch_behind_tls_proxy_checks_login_and_certificate() -> anyhow::Result<()> {
    let upstream = opensearch_url();
    require_opensearch(&upstream)?;
    let proxy = TlsProxy::start(&upstream)?;
    let index = unique_topic("proxied");
    let config = OpenSearchConfig {
        url: proxy.url(),
        username: Some(proxy.username().to_owned()),
        password: Some(Secret::new(proxy.password()?)),
        ca_file: Some(proxy.ca_file()),
        stats_index: index.clone(),
        alerts_index: format!("{index}-alerts"),
        profiles_index: format!("{index}-profiles"),
        ..OpenSearchConfig::default()
    };

    let sink = OpenSearchSink::start(&config, serde_json::json!({}))?;
    for i in 0..3 {
        sink.stats(format!("d{i}"), serde_json::json!({ "n": i }));
    }
    let counters = Arc::clone(&sink.counters);
    sink.finish();
    assert_eq!(counters.indexed.load(std::sync::atomic::Ordering::Relaxed), 3);
    let docs = proxy.docs(&index, "n")?;
    assert_eq!(docs, [serde_json::json!({ "n": 0 }), serde_json::json!({ "n": 1 }), serde_json::json!({ "n": 2 })]);

    let wrong = OpenSearchConfig { password: Some(Secret::new("not-the-password")), ..config.clone() };
    let text = start_error(&wrong)?;
    ensure!(text.contains("opensearch.password") && text.contains(&proxy.url()) && text.contains("401"), "{text}");
    ensure!(!text.contains("not-the-password"), "{text}");

    let dir = tempfile::tempdir()?;
    let untrusted = OpenSearchConfig { ca_file: Some(unrelated_ca(dir.path())?), ..config.clone() };
    let text = start_error(&untrusted)?;
    ensure!(text.contains("opensearch.ca_file") && text.contains(&proxy.url()), "{text}");
    let system_cas = OpenSearchConfig { ca_file: None, ..config };
    let text = start_error(&system_cas)?;
    ensure!(text.contains("opensearch.ca_file"), "{text}");
    Ok(())
}

/// The error of a sink start that must fail, within seconds.
fn start_error(config: &OpenSearchConfig) -> anyhow::Result<String> {
    let started = Instant::now();
    match OpenSearchSink::start(config, serde_json::json!({})) {
        Ok(sink) => {
            sink.finish();
            bail!("the sink started")
        }
        Err(error) => {
            ensure!(started.elapsed() < Duration::from_secs(6), "took {:?} to fail", started.elapsed());
            Ok(error.to_string())
        }
    }
}
