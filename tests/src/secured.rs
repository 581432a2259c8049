//! Secured services of a test's own: a Kafka broker with a SASL_SSL listener
//! (`TIDEWATCH_KAFKA_SECURITY=sasl_ssl scripts/kafka.sh`) and nginx terminating TLS with
//! basic auth in front of an HTTP server (`scripts/tls-proxy.sh`), each on free ports and
//! a temporary state dir, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use tidewatch_engine::KafkaConfig;

/// Runs `scripts/<script> ARGS` with `env`; fails with its output.
fn script(script: &str, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("scripts/{script} {args:?} failed ({}): {text}", out.status);
    }
    Ok(text)
}

/// A broker with a SASL_SSL listener (SCRAM-SHA-512) beside its loopback PLAINTEXT one.
#[derive(Debug)]
pub struct SecuredBroker {
    env: Vec<(&'static str, String)>,
    port: u16,
    sasl_port: u16,
    state: tempfile::TempDir,
}

impl SecuredBroker {
    /// Starts a fresh one on free ports.
    pub fn start() -> anyhow::Result<SecuredBroker> {
        let ports = crate::free_ports(3)?;
        let state = tempfile::tempdir()?;
        let env = vec![
            ("TIDEWATCH_KAFKA_SECURITY", "sasl_ssl".to_owned()),
            ("TIDEWATCH_KAFKA_PORT", ports[0].to_string()),
            ("TIDEWATCH_KAFKA_CONTROLLER_PORT", ports[1].to_string()),
            ("TIDEWATCH_KAFKA_SASL_SSL_PORT", ports[2].to_string()),
            ("TIDEWATCH_KAFKA_JMX_PORT", "off".to_owned()),
            ("TIDEWATCH_STATE_DIR", state.path().display().to_string()),
        ];
        let broker = SecuredBroker { env, port: ports[0], sasl_port: ports[2], state };
        script("kafka.sh", &["start"], &broker.env)?;
        Ok(broker)
    }

    /// The loopback PLAINTEXT listener (the broker's own, and the tests' setup and checks).
    pub fn plain(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The SASL_SSL listener.
    pub fn sasl_ssl(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_port)
    }

    fn security_dir(&self) -> PathBuf {
        self.state.path().join(format!("kafka-{}", self.port)).join("security")
    }

    /// The CA that signed the broker's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.security_dir().join("ca.pem")
    }

    /// The file holding the SCRAM user's password.
    pub fn password_file(&self) -> PathBuf {
        self.security_dir().join("sasl.password")
    }

    /// The SCRAM user's password.
    pub fn password(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.password_file()).context("reading the broker's password file")
    }

    /// The SCRAM user.
    pub fn username(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.security_dir().join("sasl.username")).context("reading the broker's user file")
    }

    /// What `scripts/kafka.sh status` prints.
    pub fn status(&self) -> anyhow::Result<String> {
        script("kafka.sh", &["status"], &self.env)
    }

    /// A client config for the SASL_SSL listener, logging in with `password` and trusting `ca_file`.
    pub fn client(&self, password: &str, ca_file: &Path) -> anyhow::Result<KafkaConfig> {
        let mut kafka = KafkaConfig::default();
        for (key, value) in self.client_keys(ca_file)? {
            kafka.set(key, value);
        }
        kafka.set("sasl.password", password);
        Ok(kafka)
    }

    /// The `[kafka]` keys of a SASL_SSL client but the password.
    pub fn client_keys(&self, ca_file: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(vec![
            ("bootstrap.servers", self.sasl_ssl()),
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", self.username()?),
            ("ssl.ca.location", ca_file.display().to_string()),
        ])
    }
}

impl Drop for SecuredBroker {
    fn drop(&mut self) {
        if let Err(error) = script("kafka.sh", &["stop"], &self.env) {
            eprintln!("stopping the test's secured broker: {error:#}");
        }
    }
}

/// nginx terminating TLS with basic auth in front of a plain-HTTP `upstream`.
#[derive(Debug)]
pub struct TlsProxy {
    env: Vec<(&'static str, String)>,
    port: u16,
    state: tempfile::TempDir,
}

impl TlsProxy {
    /// Starts one on a free port (fails with how to install nginx when it is missing).
    pub fn start(upstream: &str) -> anyhow::Result<TlsProxy> {
        let port = crate::free_ports(1)?[0];
        let state = tempfile::tempdir()?;
        let env = vec![
            ("TIDEWATCH_PROXY_PORT", port.to_string()),
            ("TIDEWATCH_PROXY_UPSTREAM", upstream.to_owned()),
            ("TIDEWATCH_STATE_DIR", state.path().display().to_string()),
        ];
        let proxy = TlsProxy { env, port, state };
        script("tls-proxy.sh", &["start"], &proxy.env)?;
        Ok(proxy)
    }

    /// Its `https://` URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join(format!("tls-proxy-{}", self.port))
    }

    /// The CA that signed its certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("tls/ca.pem")
    }

    /// The file holding the basic-auth password.
    pub fn password_file(&self) -> PathBuf {
        self.dir().join("password")
    }

    /// The basic-auth user.
    pub fn username(&self) -> &'static str {
        "tidewatch"
    }

    /// The basic-auth password.
    pub fn password(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.password_file()).context("reading the proxy's password file")
    }

    /// One request through the proxy with the right login (curl, the password handed
    /// over on its stdin): the HTTP status and the body as JSON (`Null` when empty).
    pub fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
        use std::io::Write as _;
        let mut child = Command::new("curl")
            .args(["-sS", "-K", "-", "-X", method, "-H", "Content-Type: application/json", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.ca_file())
            .arg(format!("{}{path}", self.url()))
            .args(body.map(|b| vec!["--data-binary".to_owned(), b.to_string()]).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running curl")?;
        let login = format!("user = \"{}:{}\"\n", self.username(), self.password()?);
        child.stdin.take().context("curl's stdin")?.write_all(login.as_bytes())?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').context("no status from curl")?;
        if !out.status.success() {
            bail!("curl {method} {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let status: u16 = status.trim().parse().context("curl's status")?;
        let value = if body.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))? };
        Ok((status, value))
    }

    /// Every document of `index` through the proxy, sorted by `field`, as their `_source`.
    pub fn docs(&self, index: &str, sort_field: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        self.request("POST", &format!("/{index}/_refresh"), None)?;
        let query = serde_json::json!({ "size": 10000, "sort": [{ sort_field: "asc" }], "query": { "match_all": {} } });
        let (status, reply) = self.request("POST", &format!("/{index}/_search"), Some(&query))?;
        if status != 200 {
            bail!("searching {index} through the proxy: HTTP {status}: {reply}");
        }
        Ok(reply["hits"]["hits"].as_array().map(|hits| hits.iter().map(|h| h["_source"].clone()).collect()).unwrap_or_default())
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Err(error) = script("tls-proxy.sh", &["stop"], &self.env) {
            eprintln!("stopping the test's TLS proxy: {error:#}");
        }
    }
}

/// A CA of its own (PEM certificate in `dir`), which signed nothing the tests talk to.
pub fn unrelated_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    let (cert, key) = (dir.join("unrelated-ca.pem"), dir.join("unrelated-ca.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=unrelated CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!("openssl could not make a CA: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(cert)
}
