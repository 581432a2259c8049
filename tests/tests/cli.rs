//! The `tidewatch` binary as a user meets it: bad config is rejected naming the key, a
//! missing broker is a clear error (not a hang), and SIGTERM on the real broker finishes
//! the epoch, flushes, commits and exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;
use tidewatch_tests::{
    assert_copied_exactly, committed, corpus, create_topics, end_offsets, produce, read_all, real_brokers, require_broker,
    tidewatch_bin, unique_topic,
};

fn run_and_capture(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(tidewatch_bin()?)
        .args(args)
        .args(["--metrics-addr", "", "--out"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn unknown_config_key_is_rejected_by_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("job.toml");
    std::fs::write(&path, "[job]\ninput_topic = \"a\"\noutput_topic = \"b\"\nepoch_intervall = \"1s\"\n")?;
    let (ok, stderr) = run_and_capture(&["run", "--config", path.to_str().unwrap_or_default()])?;
    assert!(!ok, "must fail");
    assert!(stderr.contains("epoch_intervall"), "stderr: {stderr}");
    Ok(())
}

#[test]
fn bad_duration_names_the_key_and_what_was_expected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("job.toml");
    std::fs::write(&path, "[job]\nepoch_interval = \"fast\"\n")?;
    let (ok, stderr) = run_and_capture(&["run", "--config", path.to_str().unwrap_or_default()])?;
    assert!(!ok, "must fail");
    assert!(stderr.contains("job.epoch_interval") && stderr.contains("expected a duration"), "stderr: {stderr}");
    Ok(())
}

#[test]
fn unknown_librdkafka_key_is_rejected_by_name() -> anyhow::Result<()> {
    let (ok, stderr) = run_and_capture(&["run", "-X", "fetch.wait.maximum.ms=5"])?;
    assert!(!ok, "must fail");
    assert!(stderr.contains("kafka.fetch.wait.maximum.ms"), "stderr: {stderr}");
    Ok(())
}

#[test]
fn unreachable_kafka_is_a_clear_error_naming_the_brokers() -> anyhow::Result<()> {
    let started = Instant::now();
    // A port nothing listens on.
    let port = tidewatch_tests::free_ports(1)?[0];
    let brokers = format!("127.0.0.1:{port}");
    let (ok, stderr) = run_and_capture(&["run", "--brokers", &brokers, "-X", "socket.connection.setup.timeout.ms=2000"])?;
    assert!(!ok, "must fail");
    assert!(stderr.contains(&brokers) && stderr.contains("scripts/kafka.sh start"), "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    Ok(())
}

#[test]
fn real_broker_sigterm_flushes_commits_and_exits_zero() -> anyhow::Result<()> {
    let brokers = real_brokers();
    require_broker(&brokers)?;
    let (input, output, group) = (unique_topic("sig-in"), unique_topic("sig-out"), unique_topic("sig"));
    create_topics(&brokers, &[&input, &output], 2)?;
    let records = corpus(5_000, 2, false);
    produce(&brokers, &input, &records)?;

    let out_dir = tempfile::tempdir()?;
    let mut child = Command::new(tidewatch_bin()?)
        .args(["run", "--brokers", &brokers, "--input", &input, "--output", &output, "--group", &group, "--epoch", "200ms", "-w", "2"])
        .args(["--metrics-addr", "", "--out"])
        .arg(out_dir.path())
        .stdin(Stdio::null())
        .spawn()?;
    // Wait until everything is copied, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copied: i64 = end_offsets(&brokers, &output, 2)?.values().sum();
        if copied >= records.len() as i64 {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("only {copied} of {} records copied after 60 s", records.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let status = child.wait()?;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert_copied_exactly(&records, &read_all(&brokers, &output)?);
    let ends = end_offsets(&brokers, &input, 2)?;
    let got = committed(&brokers, &group, &input, 2)?;
    for (p, end) in ends {
        assert_eq!(got[&p], Some(end), "committed offset of partition {p}");
    }
    Ok(())
}
