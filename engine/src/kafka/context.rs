//! The client context of the engine's consumers, and the authentication and TLS failures
//! it records.
//!
//! librdkafka retries a refused login or a failed TLS handshake on its own, forever: the
//! client reports it once through the error callback, and requests meanwhile just time
//! out. The context keeps the first such report, so the partition plan can fail at once
//! with what went wrong and which config key fixes it ([`crate::kafka::plan`]).

use std::sync::OnceLock;

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::error::EngineError;
use crate::kafka::stats::StatsReporter;

/// Context of the engine's consumers: end-of-partition events are expected (the
/// source asks for them), every other client-level error is logged with its reason, and
/// the first authentication or TLS failure is kept ([`QuietEofContext::security_failure`]).
/// A source's consumer also hands its librdkafka statistics to the process's board.
#[derive(Debug, Default, Clone)]
pub struct QuietEofContext {
    stats: Option<StatsReporter>,
    security: ClientSecurity,
    failure: OnceLock<SecurityFailure>,
}

impl QuietEofContext {
    /// A context whose statistics go to `reporter`.
    pub fn with_stats(reporter: StatsReporter) -> QuietEofContext {
        QuietEofContext { stats: Some(reporter), ..QuietEofContext::default() }
    }

    /// This context, for a client of `kafka` (its failures name the client's protocol,
    /// mechanism and user).
    #[must_use]
    pub fn securing(self, kafka: &KafkaConfig) -> QuietEofContext {
        QuietEofContext { security: ClientSecurity::of(kafka), ..self }
    }

    /// The first authentication or TLS failure the client reported, as the error to stop
    /// with; `None` while there was none. Reports reach the context only while the client
    /// is polled.
    pub fn security_failure(&self, brokers: &str) -> Option<EngineError> {
        self.failure.get().map(|failure| failure.error(brokers, &self.security))
    }
}

impl ClientContext for QuietEofContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(reporter) = &self.stats {
            reporter.report_json(statistics);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match &error {
            KafkaError::PartitionEOF(_) => tracing::trace!(%reason, "end of partition"),
            KafkaError::Global(code) if *code == RDKafkaErrorCode::PartitionEOF => {
                tracing::trace!(%reason, "end of partition")
            }
            _ => {
                if let Some(failure) = SecurityFailure::of(&error, reason) {
                    let _ = self.failure.set(failure);
                }
                tracing::warn!(%error, %reason, "Kafka client error")
            }
        }
    }
}

impl ConsumerContext for QuietEofContext {}

/// How a client talks to the brokers, for messages: `security.protocol`,
/// `sasl.mechanism` and `sasl.username` as the consumer sees them (never a secret).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientSecurity {
    protocol: Option<String>,
    mechanism: Option<String>,
    username: Option<String>,
}

impl ClientSecurity {
    /// The consumer side of `kafka`.
    pub fn of(kafka: &KafkaConfig) -> ClientSecurity {
        let get = |key: &str| kafka.consumer.get(key).or_else(|| kafka.common.get(key)).cloned();
        ClientSecurity {
            protocol: get("security.protocol"),
            mechanism: get("sasl.mechanism").or_else(|| get("sasl.mechanisms")),
            username: get("sasl.username"),
        }
    }
}

impl std::fmt::Display for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = self.protocol.as_deref().unwrap_or("plaintext");
        write!(f, "security.protocol {protocol}")?;
        if protocol.to_ascii_lowercase().starts_with("sasl") {
            // librdkafka's default mechanism is GSSAPI.
            write!(f, ", SASL mechanism {}", self.mechanism.as_deref().unwrap_or("GSSAPI"))?;
            if let Some(user) = &self.username {
                write!(f, " as user `{user}`")?;
            }
        }
        Ok(())
    }
}

/// What failed: the login or the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Authentication,
    Tls,
}

/// An authentication or TLS failure librdkafka reported, with its reason (which names
/// the broker, e.g. `sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecurityFailure {
    kind: FailureKind,
    reason: String,
}

impl SecurityFailure {
    /// The failure an error callback reports, if it is one.
    fn of(error: &KafkaError, reason: &str) -> Option<SecurityFailure> {
        let kind = match error.rdkafka_error_code()? {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => FailureKind::Authentication,
            RDKafkaErrorCode::SSL => FailureKind::Tls,
            _ => return None,
        };
        Some(SecurityFailure { kind, reason: reason.to_owned() })
    }

    fn error(&self, brokers: &str, security: &ClientSecurity) -> EngineError {
        let (failure, fix) = match self.kind {
            FailureKind::Authentication => (
                "the brokers refused the login",
                "kafka.\"sasl.username\" and kafka.\"sasl.password\" (and kafka.\"sasl.mechanism\" if the listener offers another mechanism)",
            ),
            FailureKind::Tls if self.reason.contains("verify") || self.reason.contains("certificate") => (
                "the broker's TLS certificate is not trusted",
                "kafka.\"ssl.ca.location\": the CA file that signed the broker's certificate (for scripts/kafka.sh, the one `status` prints)",
            ),
            FailureKind::Tls => (
                "the TLS handshake failed",
                "kafka.\"security.protocol\" and kafka.\"bootstrap.servers\" (does this listener speak TLS?), and kafka.\"ssl.ca.location\"",
            ),
        };
        EngineError::KafkaSecurity {
            brokers: brokers.to_owned(),
            failure: failure.to_owned(),
            security: security.to_string(),
            reason: self.reason.clone(),
            fix: fix.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_names_the_mechanism_the_user_and_the_keys_to_fix() {
        let mut kafka = KafkaConfig::default();
        kafka.set("security.protocol", "SASL_SSL");
        kafka.set("sasl.mechanism", "SCRAM-SHA-512");
        kafka.set("sasl.username", "alice");
        kafka.set("sasl.password", "hunter2");
        let context = QuietEofContext::default().securing(&kafka);
        assert!(context.security_failure("b:1").is_none());
        context.error(KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), "b:1: connection refused");
        assert!(context.security_failure("b:1").is_none(), "a transport error is no security failure");
        context.error(KafkaError::Global(RDKafkaErrorCode::Authentication), "sasl_ssl://b:1/bootstrap: SASL authentication error");
        let text = context.security_failure("b:1").expect("recorded").to_string();
        for part in ["b:1", "SCRAM-SHA-512", "`alice`", "kafka.\"sasl.password\"", "SASL authentication error"] {
            assert!(text.contains(part), "`{part}` missing from: {text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_untrusted_certificate_names_ssl_ca_location() {
        let context = QuietEofContext::default();
        context.error(KafkaError::Global(RDKafkaErrorCode::SSL), "ssl://b:1/bootstrap: SSL handshake failed: certificate verify failed");
        let text = context.security_failure("b:1").expect("recorded").to_string();
        assert!(text.contains("kafka.\"ssl.ca.location\"") && text.contains("certificate verify failed"), "{text}");
    }
}
