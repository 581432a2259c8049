//! A real browser for the tests: Debian's headless Chromium (`/usr/bin/chromium`, or
//! `$TIDEWATCH_CHROMIUM`) driven over the DevTools protocol (a websocket, JSON commands
//! and events), and a small HTTP/1.1 client for the endpoints themselves.
//!
//! The page's console messages, uncaught exceptions, failed loads and HTTP errors are
//! collected as [`Trouble`] for the test to check.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The browser binary, or an error saying how to install it.
pub fn chromium_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("TIDEWATCH_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.exists() {
        bail!(
            "{} is missing: install Debian's chromium (`apt-get install -y chromium`; the test command \
             scripts/test.sh installs it when missing), or point TIDEWATCH_CHROMIUM at a Chromium binary",
            path.display()
        );
    }
    Ok(path)
}

/// Something the page did that a clean page does not: a console message of level
/// warning or error, an uncaught exception, a failed load, an HTTP error status.
#[derive(Debug, Clone)]
pub struct Trouble(pub String);

/// A headless Chromium with one page, ended when dropped.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// What went wrong on the page so far.
    pub troubles: Vec<Trouble>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium with a fresh profile and a `width`×`height` page, its console,
    /// runtime and network watched.
    pub fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let path = chromium_path()?;
        let profile = tempfile::tempdir()?;
        let log = profile.path().join("stderr");
        let child = Command::new(&path)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"])
            .args(["--disable-sync", "--hide-scrollbars", "--remote-debugging-port=0", "--remote-allow-origins=*"])
            .arg(format!("--user-data-dir={}", profile.path().join("data").display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let url = devtools_url(&log)?;
        let (host, rest) = url.strip_prefix("ws://").and_then(|u| u.split_once('/')).with_context(|| format!("odd DevTools URL {url}"))?;
        let stream = TcpStream::connect(host).with_context(|| format!("connecting to DevTools at {host}"))?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        let (socket, _) = tungstenite::client(format!("ws://{host}/{rest}"), stream).map_err(|e| anyhow::anyhow!("DevTools handshake: {e}"))?;
        // From now on a read waits at most 100 ms, so events are read between commands.
        socket.get_ref().set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut browser = Browser { child, socket, session: String::new(), next_id: 0, troubles: Vec::new(), _profile: profile };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let target = target["targetId"].as_str().context("no targetId")?.to_owned();
        let attached = browser.call(None, "Target.attachToTarget", json!({ "targetId": target, "flatten": true }))?;
        browser.session = attached["sessionId"].as_str().context("no sessionId")?.to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable", "Network.enable"] {
            browser.command(domain, json!({}))?;
        }
        browser.command("Emulation.setDeviceMetricsOverride", json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }))?;
        Ok(browser)
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(message.to_string())).with_context(|| format!("sending {method}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            ensure!(Instant::now() < deadline, "DevTools did not answer {method} within {COMMAND_TIMEOUT:?}");
            let Some(message) = self.receive()? else { continue };
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    bail!("{method} failed: {error}");
                }
                return Ok(message["result"].clone());
            }
            self.note(&message);
        }
    }

    /// Sends a command to the page and returns its result.
    pub fn command(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// One message, or none within the socket's read timeout.
    fn receive(&mut self) -> anyhow::Result<Option<Value>> {
        match self.socket.read() {
            Ok(Message::Text(text)) => Ok(Some(serde_json::from_str(text.as_str())?)),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => bail!("DevTools connection: {e}"),
        }
    }

    /// Keeps what an event says went wrong.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        let trouble = match event["method"].as_str().unwrap_or_default() {
            "Runtime.exceptionThrown" => Some(format!("exception: {}", params["exceptionDetails"])),
            "Runtime.consoleAPICalled" => Some(format!("console.{}: {}", params["type"].as_str().unwrap_or("?"), params["args"])),
            "Log.entryAdded" => Some(format!("log {}: {}", params["entry"]["level"], params["entry"]["text"])),
            "Network.loadingFailed" => Some(format!("failed load: {} ({})", params["errorText"], params["type"])),
            "Network.responseReceived" if params["response"]["status"].as_u64().is_some_and(|s| s >= 400) => {
                Some(format!("HTTP {} for {}", params["response"]["status"], params["response"]["url"]))
            }
            _ => None,
        };
        if let Some(trouble) = trouble {
            self.troubles.push(Trouble(trouble));
        }
    }

    /// Reads events for `time` (console messages, failed loads, …).
    pub fn idle(&mut self, time: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + time;
        while Instant::now() < until {
            if let Some(event) = self.receive()? {
                self.note(&event);
            }
        }
        Ok(())
    }

    /// Opens `url` and waits for its load event.
    pub fn open(&mut self, url: &str) -> anyhow::Result<()> {
        let navigated = self.command("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = navigated.get("errorText") {
            bail!("opening {url}: {error}");
        }
        self.wait_for("document.readyState === 'complete'", Duration::from_secs(30))
    }

    /// The value of a script expression evaluated in the page (JSON-serialisable).
    pub fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self.command("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }))?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("evaluating {expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is true in the page.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression)? == Value::Bool(true) {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "`{expression}` not true within {timeout:?}");
            self.idle(Duration::from_millis(250))?;
        }
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, png: &Path) -> anyhow::Result<()> {
        let shot = self.command("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().context("no screenshot data")?)?;
        ensure!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000, "the screenshot is not a PNG of a page");
        std::fs::write(png, bytes).with_context(|| format!("writing {}", png.display()))
    }
}

/// Waits for Chromium's `DevTools listening on ws://…` line in its log.
fn devtools_url(log: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("DevTools listening on ") {
            let rest = &text[at + "DevTools listening on ".len()..];
            if let Some(end) = rest.find(char::is_whitespace) {
                return Ok(rest[..end].to_owned());
            }
        }
        ensure!(Instant::now() < deadline, "chromium printed no DevTools address within 30 s; its log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header lines, as sent.
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

/// `GET http://addr<path>` with extra header lines (HTTP/1.1, `Connection: close`).
pub fn http_get(addr: &str, path: &str, headers: &[&str]) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("reading GET {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("GET {path}: no header end"))?;
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).with_context(|| format!("GET {path}: no status in {head}"))?;
    let headers: Vec<String> = lines.map(str::to_owned).collect();
    let chunked = headers.iter().any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Ok(Answer { status, headers, body })
}

/// The body of a chunked transfer.
fn dechunk(mut text: &str) -> anyhow::Result<String> {
    let mut body = String::new();
    loop {
        let (size, rest) = text.split_once("\r\n").context("a chunk without a size line")?;
        let size = usize::from_str_radix(size.trim(), 16).context("a chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(rest.get(..size).context("a short chunk")?);
        text = rest.get(size + 2..).context("a chunk without its line end")?;
    }
}
