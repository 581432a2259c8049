//! The one error type of the engine crate.

use std::fmt;

/// Who is at fault for an error, and whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The user's configuration or input: fix it, do not retry.
    User,
    /// An external service (Kafka, OpenSearch): retrying with backoff may help.
    External,
    /// A bug or invariant violation inside tidewatch: report it.
    Internal,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::User => "user",
            Fault::External => "external",
            Fault::Internal => "internal",
        })
    }
}

/// Errors raised by the engine's runtime and connectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A configuration value is missing, unknown or malformed; `key` names it.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The offending key, as written in the config file (e.g. `job.epoch_interval`).
        key: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// The config file could not be read or parsed as TOML.
    #[error("config file {path}: {message}")]
    ConfigFile {
        /// Path of the file.
        path: String,
        /// The reader's or parser's message.
        message: String,
    },
    /// A Kafka cluster could not be reached or answered with an error.
    #[error("Kafka at {brokers}: {context}: {source}{hint}")]
    Kafka {
        /// The bootstrap servers that were tried.
        brokers: String,
        /// What tidewatch was doing.
        context: String,
        /// librdkafka's error.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
        /// How to fix it, if known (starts with a separator).
        hint: String,
    },
    /// The brokers refused the client's login, or TLS with them failed: the settings
    /// `fix` names are wrong, and retrying cannot help.
    #[error("Kafka at {brokers}: {failure} ({security}): {reason}; check {fix}")]
    KafkaSecurity {
        /// The bootstrap servers that were tried.
        brokers: String,
        /// What failed, e.g. "the brokers refused the login".
        failure: String,
        /// The client's protocol, SASL mechanism and user (never a secret).
        security: String,
        /// librdkafka's reason, naming the broker.
        reason: String,
        /// The config keys to fix.
        fix: String,
    },
    /// A topic the job needs does not exist.
    #[error("topic `{topic}` does not exist on {brokers} (create it, e.g. `scripts/kafka.sh create-topic {topic} 2`)")]
    MissingTopic {
        /// The topic name.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
    },
    /// A record could not be delivered to the output topic after librdkafka's own retries.
    #[error("delivery to {topic}[{partition}] failed for good: {reason}; the epoch's offsets were not committed")]
    Delivery {
        /// Output topic.
        topic: String,
        /// Output partition.
        partition: i32,
        /// librdkafka's reason.
        reason: String,
    },
    /// The timely runtime failed to start or a worker failed.
    #[error("dataflow runtime: {0}")]
    Runtime(String),
    /// Another process of a multi-process job went away ([`crate::peers`]).
    #[error("lost process {process} of the job, at {address}: {cause}; the job cannot go on without it: restart all its processes (the same -n and -h), which read again what was not committed")]
    PeerLost {
        /// Index of the lost process (`-p`).
        process: usize,
        /// Its address in the host list.
        address: String,
        /// What its connection did.
        cause: String,
    },
}

impl EngineError {
    /// Who is at fault, and so whether a retry can help.
    pub fn fault(&self) -> Fault {
        match self {
            EngineError::Config { .. } | EngineError::ConfigFile { .. } | EngineError::MissingTopic { .. } | EngineError::KafkaSecurity { .. } => {
                Fault::User
            }
            EngineError::Kafka { .. } | EngineError::Delivery { .. } | EngineError::PeerLost { .. } => Fault::External,
            EngineError::Runtime(_) => Fault::Internal,
        }
    }

    /// Wraps a librdkafka error with the brokers and the action that failed, and a hint
    /// on how to start a broker when none answered.
    pub fn kafka(brokers: &str, context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        // librdkafka checks some settings only together, when a client is created: a user error.
        if let rdkafka::error::KafkaError::ClientCreation(message) = &source {
            return EngineError::Config { key: "kafka".to_owned(), message: format!("librdkafka refuses the settings: {message}") };
        }
        let text = source.to_string();
        let unreachable = text.contains("BrokerTransportFailure")
            || text.contains("AllBrokersDown")
            || text.contains("timed out")
            || text.contains("TimedOut");
        let hint = if unreachable {
            format!("; is a broker running at {brokers}? For a local one run `scripts/kafka.sh start`")
        } else {
            String::new()
        };
        EngineError::Kafka { brokers: brokers.to_owned(), context: context.into(), source: Box::new(source), hint }
    }
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
