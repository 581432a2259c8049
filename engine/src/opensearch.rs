//! `OpenSearchSink`: ships observation documents to OpenSearch with bulk requests, from
//! a thread of its own, so no worker ever waits on it.
//!
//! Delivery semantics: best effort within a bound. Documents wait in a buffer of at most
//! `buffer` documents while OpenSearch is away or refuses them (connection errors, 429,
//! 5xx: retried with backoff up to 30 s between attempts); when the buffer is full the
//! oldest document is dropped and counted. Documents OpenSearch rejects for good (a 4xx
//! other than 429, e.g. a mapping conflict) are counted and logged, not retried. The
//! passthrough never waits for any of this.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use opensearch::auth::Credentials;
use opensearch::cert::{Certificate, CertificateValidation};
use opensearch::http::request::JsonBody;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::indices::IndicesPutIndexTemplateParts;
use opensearch::{BulkParts, OpenSearch};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{EngineError, Result};
use crate::secret::Secret;

/// The `[opensearch]` table of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenSearchConfig {
    /// Base URL, e.g. `http://127.0.0.1:9200`; empty: no OpenSearch output.
    pub url: String,
    /// Basic-auth user (with `password`).
    pub username: Option<String>,
    /// Basic-auth password: a string, `{ env = "VARIABLE" }` or `{ file = "PATH" }`
    /// ([`crate::secret`]); `Debug` shows it redacted.
    pub password: Option<Secret>,
    /// PEM file of the CA that signed the server's certificate (an `https://` URL whose
    /// certificate the system's CAs do not vouch for); the host name is checked too.
    pub ca_file: Option<PathBuf>,
    /// Accept any TLS certificate (self-signed development clusters).
    pub insecure_tls: bool,
    /// Index of the stats documents (empty: the job's default).
    pub stats_index: String,
    /// Index of the alert transitions (empty: the job's default).
    pub alerts_index: String,
    /// Index of the profile summaries (empty: the job's default).
    pub profiles_index: String,
    /// Most documents held while OpenSearch is away; older ones are dropped beyond it.
    pub buffer: usize,
    /// Most documents in one bulk request.
    pub batch: usize,
}

impl Default for OpenSearchConfig {
    fn default() -> Self {
        OpenSearchConfig {
            url: String::new(),
            username: None,
            password: None,
            ca_file: None,
            insecure_tls: false,
            stats_index: String::new(),
            alerts_index: String::new(),
            profiles_index: String::new(),
            buffer: 10_000,
            batch: 500,
        }
    }
}

/// Figures of the sink, for `/metrics`.
#[derive(Debug, Default)]
pub struct OpenSearchCounters {
    /// Documents OpenSearch indexed.
    pub indexed: AtomicU64,
    /// Documents dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Documents OpenSearch rejected for good.
    pub rejected: AtomicU64,
    /// Bulk requests that failed and were retried.
    pub retries: AtomicU64,
    /// Documents waiting in the buffer.
    pub buffered: AtomicU64,
}

/// A document bound for an index.
#[derive(Debug, Clone)]
struct Pending {
    index: String,
    /// The document's id: a retried bulk (its reply lost to an outage) overwrites rather
    /// than duplicates it.
    id: String,
    doc: Value,
}

/// The running sink. Dropping it (or [`OpenSearchSink::finish`]) flushes what it can.
#[derive(Debug)]
pub struct OpenSearchSink {
    sender: Option<Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
    /// The sink's figures.
    pub counters: Arc<OpenSearchCounters>,
    config: OpenSearchConfig,
}

/// The longest wait between two attempts while OpenSearch is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long [`OpenSearchSink::finish`] keeps trying to flush.
const FINISH_WITHIN: Duration = Duration::from_secs(30);

impl OpenSearchSink {
    /// Starts the sink thread. Fails only on a bad configuration; an unreachable
    /// OpenSearch is retried in the background.
    /// `mappings` is the index template's `mappings` body for the observation indices (the
    /// engine knows no document's fields).
    pub fn start(config: &OpenSearchConfig, mappings: Value) -> Result<OpenSearchSink> {
        let bad = |key: &str, message: String| EngineError::Config { key: format!("opensearch.{key}"), message };
        let url = opensearch::http::Url::parse(&config.url).map_err(|e| bad("url", format!("expected a URL such as http://127.0.0.1:9200, got `{}` ({e})", config.url)))?;
        for (key, index) in [("stats_index", &config.stats_index), ("alerts_index", &config.alerts_index), ("profiles_index", &config.profiles_index)] {
            if index.is_empty() {
                return Err(bad(key, "expected an index name".to_owned()));
            }
        }
        if config.buffer == 0 || config.batch == 0 {
            return Err(bad("buffer", "buffer and batch must be at least 1".to_owned()));
        }
        let client = client(config, url)?;
        check_access(&client, config)?;
        let counters = Arc::new(OpenSearchCounters::default());
        // The channel only hands documents to the sink thread; the bound that matters is the thread's buffer.
        let (sender, receiver) = bounded(config.buffer.max(1024));
        let shipper = Shipper { client, config: config.clone(), counters: Arc::clone(&counters), buffer: VecDeque::new(), mappings };
        let thread = std::thread::Builder::new()
            .name("tidewatch-opensearch".to_owned())
            .spawn(move || shipper.run(&receiver))
            .map_err(|e| EngineError::Runtime(format!("spawning the OpenSearch sink: {e}")))?;
        tracing::info!(url = %config.url, stats = %config.stats_index, "shipping observations to OpenSearch");
        Ok(OpenSearchSink { sender: Some(sender), thread: Some(thread), counters, config: config.clone() })
    }

    /// Queues a stats document under the id `id`.
    pub fn stats(&self, id: String, doc: Value) {
        self.send(&self.config.stats_index.clone(), id, doc);
    }

    /// Queues an alert transition under the id `id`.
    pub fn alert(&self, id: String, doc: Value) {
        self.send(&self.config.alerts_index.clone(), id, doc);
    }

    /// Queues a document for `index` under the id `id` (one id per document, so shipping
    /// again after an outage never duplicates it); never blocks (a full hand-off channel
    /// counts a drop).
    pub fn send(&self, index: &str, id: String, doc: Value) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Pending { index: index.to_owned(), id, doc }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops taking documents and waits (at most 30 s) for the buffer to be shipped.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the OpenSearch sink thread panicked");
            }
        }
    }
}

impl Drop for OpenSearchSink {
    fn drop(&mut self) {
        self.close();
    }
}

/// The client of `config`: its login and how it checks the server's certificate.
fn client(config: &OpenSearchConfig, url: opensearch::http::Url) -> Result<OpenSearch> {
    let bad = |key: &str, message: String| EngineError::Config { key: format!("opensearch.{key}"), message };
    let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(Duration::from_secs(10));
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => builder = builder.auth(Credentials::Basic(user.clone(), password.expose().to_owned())),
        (None, None) => {}
        _ => return Err(bad("username", "username and password go together".to_owned())),
    }
    match (&config.ca_file, config.insecure_tls) {
        (Some(_), true) => return Err(bad("insecure_tls", "cannot go with opensearch.ca_file (which checks the certificate)".to_owned())),
        (Some(path), false) => {
            let pem = std::fs::read(path).map_err(|e| bad("ca_file", format!("cannot read {}: {e}", path.display())))?;
            let ca = Certificate::from_pem(&pem).map_err(|e| bad("ca_file", format!("expected a PEM certificate in {}: {e}", path.display())))?;
            builder = builder.cert_validation(CertificateValidation::Full(ca));
        }
        (None, true) => builder = builder.cert_validation(CertificateValidation::None),
        (None, false) => {}
    }
    let transport = builder.build().map_err(|e| bad("url", e.to_string()))?;
    Ok(OpenSearch::new(transport))
}

/// How long [`check_access`] waits for OpenSearch.
const CHECK_WITHIN: Duration = Duration::from_secs(5);

/// One request before the sink starts, so that a refused login or an untrusted
/// certificate fails the job at once, naming the key to fix. OpenSearch being away (or
/// slow) is no error here: the sink keeps its documents until it is back.
fn check_access(client: &OpenSearch, config: &OpenSearchConfig) -> Result<()> {
    // On a thread of its own: the caller may be inside a runtime, where none can block.
    let reply = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok::<_, std::io::Error>(runtime.block_on(async { tokio::time::timeout(CHECK_WITHIN, client.ping().send()).await }))
            })
            .join()
    });
    let reply = match reply {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(EngineError::Runtime(format!("starting a runtime to reach OpenSearch: {e}"))),
        Err(_) => return Err(EngineError::Runtime("the OpenSearch access check panicked".to_owned())),
    };
    let url = &config.url;
    match reply {
        Ok(Ok(response)) if response.status_code().as_u16() == 401 => Err(match &config.username {
            Some(user) => EngineError::Config {
                key: "opensearch.password".to_owned(),
                message: format!("OpenSearch at {url} refused the login of user `{user}` (HTTP 401): check opensearch.username and opensearch.password"),
            },
            None => EngineError::Config {
                key: "opensearch.username".to_owned(),
                message: format!("OpenSearch at {url} asks for a login (HTTP 401): set opensearch.username and opensearch.password"),
            },
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => {
            let chain = error_chain(&error);
            if chain.contains("certificate") || chain.contains("Certificate") {
                return Err(EngineError::Config {
                    key: "opensearch.ca_file".to_owned(),
                    message: format!(
                        "TLS with OpenSearch at {url} failed: {chain}; set opensearch.ca_file to the PEM file of the CA that signed its certificate"
                    ),
                });
            }
            tracing::warn!(%url, error = %chain, "OpenSearch does not answer yet; its documents wait in the sink's buffer");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(%url, within = ?CHECK_WITHIN, "OpenSearch did not answer; its documents wait in the sink's buffer");
            Ok(())
        }
    }
}

/// An error and its sources, joined by `: ` (the reason of a TLS failure is a few levels down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// The sink thread's state.
struct Shipper {
    client: OpenSearch,
    config: OpenSearchConfig,
    counters: Arc<OpenSearchCounters>,
    buffer: VecDeque<Pending>,
    /// The index template's mappings.
    mappings: Value,
}

/// What one bulk attempt came to.
enum Outcome {
    /// Sent; the documents to retry (refused with 429 or 5xx), if any.
    Sent(Vec<Pending>),
    /// OpenSearch could not be reached or failed as a whole: keep everything, back off.
    Unavailable(String),
}

impl Shipper {
    fn run(mut self, receiver: &Receiver<Pending>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start the OpenSearch sink's runtime; observations will not reach OpenSearch");
                return;
            }
        };
        let mut template_ready = false;
        let mut backoff = Duration::from_millis(250);
        let mut next_attempt = Instant::now();
        let mut closing_since: Option<Instant> = None;
        loop {
            // Take what arrived; wait a little when there is nothing to do.
            let wait = if self.buffer.is_empty() { Duration::from_millis(200) } else { next_attempt.saturating_duration_since(Instant::now()).min(Duration::from_millis(200)) };
            match receiver.recv_timeout(wait) {
                Ok(pending) => self.push(pending),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    closing_since.get_or_insert_with(Instant::now);
                }
            }
            while let Ok(pending) = receiver.try_recv() {
                self.push(pending);
            }
            let closing = closing_since.is_some_and(|since| since.elapsed() > FINISH_WITHIN);
            if closing_since.is_some() && (self.buffer.is_empty() || closing) {
                if !self.buffer.is_empty() {
                    tracing::warn!(documents = self.buffer.len(), "OpenSearch still unreachable at shutdown; dropping the buffered documents");
                    self.counters.dropped.fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
                }
                return;
            }
            if self.buffer.is_empty() || Instant::now() < next_attempt {
                continue;
            }
            if !template_ready {
                match runtime.block_on(self.install_template()) {
                    Ok(()) => template_ready = true,
                    Err(reason) => {
                        self.back_off(&mut backoff, &mut next_attempt, &reason);
                        continue;
                    }
                }
            }
            let batch: Vec<Pending> = self.buffer.drain(..self.buffer.len().min(self.config.batch)).collect();
            match runtime.block_on(self.bulk(&batch)) {
                Outcome::Sent(retry) => {
                    backoff = Duration::from_millis(250);
                    if !retry.is_empty() {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        next_attempt = Instant::now() + backoff;
                    }
                    for pending in retry.into_iter().rev() {
                        self.buffer.push_front(pending);
                    }
                }
                Outcome::Unavailable(reason) => {
                    for pending in batch.into_iter().rev() {
                        self.buffer.push_front(pending);
                    }
                    self.back_off(&mut backoff, &mut next_attempt, &reason);
                }
            }
            self.counters.buffered.store(self.buffer.len() as u64, Ordering::Relaxed);
        }
    }

    fn push(&mut self, pending: Pending) {
        if self.buffer.len() >= self.config.buffer {
            self.buffer.pop_front();
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, buffer = self.config.buffer, "OpenSearch buffer full: dropping the oldest observation documents");
            }
        }
        self.buffer.push_back(pending);
        self.counters.buffered.store(self.buffer.len() as u64, Ordering::Relaxed);
    }

    fn back_off(&self, backoff: &mut Duration, next_attempt: &mut Instant, reason: &str) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(url = %self.config.url, %reason, retry_in = ?*backoff, buffered = self.buffer.len(), "OpenSearch unavailable; keeping documents");
        *next_attempt = Instant::now() + *backoff;
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }

    /// Installs the index template of the observation indices, with the mappings the
    /// sink was started with.
    async fn install_template(&self) -> std::result::Result<(), String> {
        let patterns = [&self.config.stats_index, &self.config.alerts_index, &self.config.profiles_index];
        let body = json!({
            "index_patterns": patterns,
            "priority": 100,
            "template": {
                "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
                "mappings": self.mappings,
            }
        });
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name("tidewatch-observations"))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status_code();
        if status.is_success() {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(format!("installing the index template: HTTP {status}: {text}"))
        }
    }

    async fn bulk(&self, batch: &[Pending]) -> Outcome {
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(batch.len() * 2);
        for pending in batch {
            body.push(json!({ "index": { "_index": pending.index, "_id": pending.id } }).into());
            body.push(pending.doc.clone().into());
        }
        let response = match self.client.bulk(BulkParts::None).body(body).send().await {
            Ok(response) => response,
            Err(error) => return Outcome::Unavailable(error.to_string()),
        };
        let status = response.status_code();
        if status.as_u16() == 429 || status.is_server_error() {
            return Outcome::Unavailable(format!("HTTP {status}"));
        }
        let reply: Value = match response.json().await {
            Ok(reply) => reply,
            Err(error) => return Outcome::Unavailable(format!("unreadable bulk reply: {error}")),
        };
        if !status.is_success() {
            self.counters.rejected.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::error!(%status, %reply, "OpenSearch rejected a bulk request; its documents are dropped");
            return Outcome::Sent(Vec::new());
        }
        let items = reply.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut retry = Vec::new();
        let mut indexed = 0u64;
        for (pending, item) in batch.iter().zip(items.iter()) {
            let code = item.get("index").and_then(|i| i.get("status")).and_then(Value::as_u64).unwrap_or(0);
            match code {
                200..=299 => indexed += 1,
                429 | 500..=599 => retry.push(pending.clone()),
                _ => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(index = %pending.index, status = code, error = %item, "OpenSearch rejected a document");
                }
            }
        }
        self.counters.indexed.fetch_add(indexed, Ordering::Relaxed);
        Outcome::Sent(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_names_the_key() {
        let config = OpenSearchConfig { url: "not a url".into(), ..OpenSearchConfig::default() };
        let text = OpenSearchSink::start(&config, Value::Null).expect_err("bad url").to_string();
        assert!(text.contains("opensearch.url"), "{text}");
    }

    #[test]
    fn a_missing_index_name_names_the_key() {
        let config = OpenSearchConfig { url: "http://127.0.0.1:9200".into(), stats_index: "s".into(), alerts_index: "a".into(), ..OpenSearchConfig::default() };
        let text = OpenSearchSink::start(&config, Value::Null).expect_err("no profiles index").to_string();
        assert!(text.contains("opensearch.profiles_index"), "{text}");
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_it() {
        let config = OpenSearchConfig { url: "http://127.0.0.1:1".into(), buffer: 3, ..OpenSearchConfig::default() };
        let client = OpenSearch::new(
            TransportBuilder::new(SingleNodeConnectionPool::new(opensearch::http::Url::parse(&config.url).expect("url"))).build().expect("transport"),
        );
        let mut shipper = Shipper { client, config, counters: Arc::default(), buffer: VecDeque::new(), mappings: Value::Null };
        for i in 0..5 {
            shipper.push(Pending { index: "i".into(), id: i.to_string(), doc: json!(i) });
        }
        assert_eq!(shipper.counters.dropped.load(Ordering::Relaxed), 2);
        let kept: Vec<Value> = shipper.buffer.iter().map(|p| p.doc.clone()).collect();
        assert_eq!(kept, [json!(2), json!(3), json!(4)]);
    }
}
