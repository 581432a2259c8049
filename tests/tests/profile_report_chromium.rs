//! The profile report in a real browser: Debian's headless Chromium (`/usr/bin/chromium`,
//! or `$TIDEWATCH_CHROMIUM`) opens the HTML report of a profile over generated visits
//! with faults and hostile field names and values, logs no console message (no script
//! error, no failed load), shows a section for every field, runs no script that came
//! from the data, and takes a screenshot kept as a test artifact
//! (`<target>/test-artifacts/profile-report.png`, path printed).
//!
//! Needs chromium: `apt-get install -y chromium` (the test command `scripts/test.sh`
//! installs it when missing). Without it the tests fail, saying so.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::json;
use tidewatch_jobs::visits::{FaultMix, GeneratorConfig, VisitGenerator};
use tidewatch_operators::profile::{render_html, ProfileBuilder, ProfileConfig, WindowProfile};

/// How long one Chromium run may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Window of the screenshot.
const WINDOW: &str = "1280,2400";
/// What the hostile values do when a browser runs them: mark the document. The report
/// must show them as text, so this attribute must never appear in the rendered DOM.
const PWNED_ATTRIBUTE: &str = "data-tidewatch-pwned=\"";

/// Debian's headless Chromium.
#[derive(Debug)]
struct Chromium {
    path: PathBuf,
}

/// What one page load left: the DOM after its scripts ran and every console message.
#[derive(Debug)]
struct Rendered {
    dom: String,
    console: Vec<String>,
}

impl Chromium {
    /// The browser, or an error saying how to install it.
    fn find() -> anyhow::Result<Chromium> {
        let path = std::env::var_os("TIDEWATCH_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        if !path.exists() {
            bail!(
                "{} is missing: install Debian's chromium (`apt-get install -y chromium`; the test command \
                 scripts/test.sh installs it when missing), or point TIDEWATCH_CHROMIUM at a Chromium binary",
                path.display()
            );
        }
        Ok(Chromium { path })
    }

    /// Runs Chromium headless on `page` with `extra` flags and a fresh profile directory;
    /// returns (stdout, stderr).
    fn run(&self, page: &Path, extra: &[&str]) -> anyhow::Result<(String, String)> {
        let dir = tempfile::tempdir()?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile)?;
        let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let url = format!("file://{}", page.canonicalize().with_context(|| format!("{}", page.display()))?.display());
        let mut child = Command::new(&self.path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .with_context(|| format!("starting {}", self.path.display()))?;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not finish {url} within {TIMEOUT:?}", self.path.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = String::from_utf8_lossy(&std::fs::read(&out_path)?).into_owned();
        let stderr = String::from_utf8_lossy(&std::fs::read(&err_path)?).into_owned();
        ensure!(status.success(), "{} exited with {status} on {url}; stderr ends:\n{}", self.path.display(), tail(&stderr, 20));
        Ok((stdout, stderr))
    }

    /// Loads `page`, dumps its DOM once loaded, and collects the console messages that
    /// Chromium logs to stderr (`...:INFO:CONSOLE:12] "message", source: ...`): uncaught
    /// exceptions, `console.*` calls and failed resource loads all show there.
    fn render(&self, page: &Path) -> anyhow::Result<Rendered> {
        let (dom, stderr) = self.run(page, &["--enable-logging=stderr", "--v=1", "--dump-dom"])?;
        ensure!(dom.contains("</html>"), "chromium dumped no DOM for {}; stderr ends:\n{}", page.display(), tail(&stderr, 20));
        let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
        Ok(Rendered { dom, console })
    }

    /// Writes a PNG screenshot of `page` to `png`.
    fn screenshot(&self, page: &Path, png: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(png);
        self.run(page, &["--hide-scrollbars", &format!("--window-size={WINDOW}"), &format!("--screenshot={}", png.display())])?;
        let bytes = std::fs::read(png).with_context(|| format!("chromium wrote no screenshot at {}", png.display()))?;
        ensure!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000, "{} is not a PNG of a page", png.display());
        Ok(())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `<target>/test-artifacts/`, created: kept after the test for a reader to open.
fn artifacts_dir() -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("CARGO_TARGET_TMPDIR has no parent")?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Generated visits with every kind of fault.
const VISITS: u64 = 3_000;
/// A field whose name is itself a script.
const HOSTILE_NAME: &str = "<script>document.documentElement.setAttribute('data-tidewatch-pwned','name')</script>";
/// A field name with quotes and non-ASCII text.
const QUOTED_NAME: &str = "naïve \"quoted\" 'field' 日本語 ✓";
/// A nested field name that tries to close the heading it is shown in.
const CLOSING_NAME: &str = "</code></h2><img src=x onerror=\"document.documentElement.setAttribute('data-tidewatch-pwned','nested')\">";

/// The records: generated visits with faults (nulls, empty strings, missing keys, nested
/// nulls, unparseable values, duplicates, late events), a few tombstones, and records
/// whose field names and values are hostile HTML, quoted or non-ASCII.
fn records() -> Vec<Option<Vec<u8>>> {
    let faults = FaultMix { null: 0.1, empty_string: 0.05, missing_key: 0.05, nested_null: 0.05, unparseable: 0.01, duplicate: 0.01, late: 0.01 };
    let mut generator = VisitGenerator::new(GeneratorConfig { seed: 5, faults, ..GeneratorConfig::default() });
    let mut records: Vec<Option<Vec<u8>>> = (0..VISITS).map(|_| generator.next_record().value).collect();
    records.extend([None, None, None]);
    for (i, value) in HOSTILE_VALUES.iter().cycle().take(40).enumerate() {
        let record = json!({
            HOSTILE_NAME: i,
            QUOTED_NAME: "ünïcödé \"value\" 'single' — 中文",
            "comment": value,
            "page": value,
            "context": { CLOSING_NAME: value, "technical": { "browser": "<b>bold</b>" } },
        });
        records.push(Some(serde_json::to_vec(&record).expect("serializes")));
    }
    records
}

/// Reverses the DOM serialisation of text (`&amp;`, `&lt;`, `&gt;`, `&nbsp;`).
fn unescape_text(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u{a0}").replace("&amp;", "&")
}

/// How a DOM dump shows `text` in element content.
fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\u{a0}', "&nbsp;")
}

/// The field name of every field section of the rendered report
/// (`<section class="card field" id="f3"><h2><code>NAME</code>`), in order.
fn field_sections(dom: &str) -> anyhow::Result<Vec<String>> {
    const OPEN: &str = "<section class=\"card field\" id=\"f";
    let mut names = Vec::new();
    for (at, _) in dom.match_indices(OPEN) {
        let rest = &dom[at..];
        let start = rest.find("<h2><code>").context("a field section without <h2><code>")? + "<h2><code>".len();
        let end = rest[start..].find("</code>").context("a field name without </code>")?;
        names.push(unescape_text(&rest[start..start + end]));
    }
    Ok(names)
}

/// The report of a profile over visits with faults and hostile names and values opens
/// in headless Chromium without a console message, shows a section for every field of
/// the profile (hostile names as text), runs no script from the data, loads nothing
/// from elsewhere, and its screenshot is kept at `<target>/test-artifacts/profile-report.png`.
#[test]
fn profile_report_renders_in_chromium_with_every_field_and_no_console_errors() -> anyhow::Result<()> {
    let chromium = Chromium::find()?;
    let config = ProfileConfig::default();

    // A previous window where `user_id` was a number, so the report shows drift too.
    let mut previous = ProfileBuilder::new(&config);
    previous.observe(Some(br#"{"user_id": 17, "retired_field": true}"#));
    let previous = WindowProfile::new(1_704_067_140_000, 1_704_067_200_000, previous.finish(), &config);

    let mut builder = ProfileBuilder::new(&config);
    let records = records();
    for value in &records {
        builder.observe(value.as_deref());
    }
    let mut profile = WindowProfile::new(1_704_067_200_000, 1_704_067_260_000, builder.finish(), &config);
    profile.set_drift(Some(&previous));

    // What the report must show: the profile has the hostile fields and the faults.
    for name in [HOSTILE_NAME, QUOTED_NAME, "comment", "page", "context.technical.browser"] {
        ensure!(profile.summary.contains_key(name), "the profile has no field {name:?}: {:?}", profile.summary.keys());
    }
    ensure!(profile.summary.keys().any(|k| k.ends_with(CLOSING_NAME)), "no nested hostile field in {:?}", profile.summary.keys());
    ensure!(profile.overview.unparseable > 0 && profile.overview.tombstones == 3, "faults missing: {:?}", profile.overview);
    ensure!(!profile.drift.is_empty(), "no drift against the previous window");
    let fields: Vec<String> = profile.summary.keys().cloned().collect();

    let html = render_html(&profile);
    // Self-contained: nothing is fetched from elsewhere (the browser would log a failed
    // load only when offline).
    for remote in ["src=\"http", "src=\"//", "href=\"http", "href=\"//", "url(http", "url(//", "@import"] {
        ensure!(!html.contains(remote), "the report refers to a remote resource ({remote})");
    }
    let artifacts = artifacts_dir()?;
    let page = artifacts.join("profile-report.html");
    std::fs::write(&page, &html)?;

    let rendered = chromium.render(&page)?;
    ensure!(rendered.console.is_empty(), "the report logged to the console:\n{}", rendered.console.join("\n"));

    // Every field has its section, in the profile's order, named as in the profile.
    let sections = field_sections(&rendered.dom)?;
    ensure!(sections == fields, "field sections {sections:?}\ndiffer from the profile's fields {fields:?}");
    // No script from the data ran, and none is in the document: the hostile values
    // are there as text.
    ensure!(!rendered.dom.contains(PWNED_ATTRIBUTE), "a script from the data ran");
    ensure!(!rendered.dom.to_ascii_lowercase().contains("<script"), "the rendered report holds a <script> element");
    ensure!(!rendered.dom.contains("<img") && !rendered.dom.contains("<svg onload"), "a hostile value became an element");
    for value in HOSTILE_VALUES.iter().chain([&HOSTILE_NAME, &QUOTED_NAME]) {
        ensure!(rendered.dom.contains(&escape_text(value)), "the report does not show {value:?} as text");
    }

    let png = artifacts.join("profile-report.png");
    chromium.screenshot(&page, &png)?;
    // Straight to stderr, past the test harness's capture: the path shows in every run.
    writeln!(std::io::stderr(), "profile report screenshot: {} (report: {})", png.display(), page.display())?;
    Ok(())
}

/// The harness itself can fail: a page with a script error, one with a `console.error`,
/// and one that runs a hostile value's script are each caught. Guards the report test
/// against a Chromium whose log format changed (which would make it pass silently).
#[test]
fn chromium_harness_catches_script_errors_and_executed_data() -> anyhow::Result<()> {
    let chromium = Chromium::find()?;
    let dir = tempfile::tempdir()?;
    let page = |name: &str, body: &str| -> anyhow::Result<PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{body}</body></html>"))?;
        Ok(path)
    };

    let quiet = chromium.render(&page("quiet.html", "<h1>quiet</h1><script>document.title = 'fine';</script>")?)?;
    assert_eq!(quiet.console, Vec::<String>::new(), "a quiet page logged");
    assert!(!quiet.dom.contains(PWNED_ATTRIBUTE));

    let thrown = chromium.render(&page("thrown.html", "<script>undefinedFunction();</script>")?)?;
    assert!(thrown.console.iter().any(|l| l.contains("undefinedFunction")), "uncaught error not seen: {:?}", thrown.console);

    let logged = chromium.render(&page("logged.html", "<script>console.error('deliberate');</script>")?)?;
    assert!(logged.console.iter().any(|l| l.contains("deliberate")), "console.error not seen: {:?}", logged.console);

    let injected = chromium.render(&page("injected.html", HOSTILE_VALUES[1])?)?;
    assert!(injected.dom.contains(PWNED_ATTRIBUTE), "an executed hostile value not seen in the DOM:\n{}", injected.dom);
    Ok(())
}

/// Values that run a script when a report pastes them into its HTML unescaped.
const HOSTILE_VALUES: [&str; 4] = [
    "<script>document.documentElement.setAttribute('data-tidewatch-pwned','script')</script>",
    "<img src=x onerror=\"document.documentElement.setAttribute('data-tidewatch-pwned','img')\">",
    "\"><svg onload=\"document.documentElement.setAttribute('data-tidewatch-pwned','attr')\">",
    "'--></style></script><img src=x onerror=document.documentElement.setAttribute('data-tidewatch-pwned','break')>",
];
