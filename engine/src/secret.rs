//! Secrets in the config: written in place, or read from an environment variable or a
//! file when the config is loaded, so that they need not be on the command line or in
//! the config file; `Debug` never shows them.
//!
//! ```toml
//! [kafka]
//! "sasl.password" = { env = "KAFKA_PASSWORD" }          # the variable's value
//! "ssl.key.password" = { file = "/run/secrets/key-pw" }  # the file's content, less one final newline
//! [opensearch]
//! password = { file = "/run/secrets/opensearch" }
//! ```

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer};

/// A secret value. `Debug` prints `"<redacted>"`; [`Secret::expose`] hands out the text
/// where a client needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret with the value `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What `Debug` shows in place of a secret.
pub const REDACTED: &str = "\"<redacted>\"";

/// The spellings a secret may take in the config file.
pub const SECRET_FORMS: &str = "a string, { env = \"VARIABLE\" } or { file = \"PATH\" }";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        match value {
            toml::Value::String(text) => Ok(Secret(text)),
            toml::Value::Table(table) => read_source(&table).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!("expected {SECRET_FORMS}, got a {}", other.type_str()))),
        }
    }
}

/// Reads the secret a `{ env = "…" }` or `{ file = "…" }` table names; the error says
/// what was wrong (the caller adds the key).
pub fn read_source(table: &toml::Table) -> Result<Secret, String> {
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    match (keys.as_slice(), table.get("env"), table.get("file")) {
        (["env"], Some(toml::Value::String(name)), _) => from_env(name),
        (["file"], _, Some(toml::Value::String(path))) => from_file(Path::new(path)),
        _ => Err(format!("expected {SECRET_FORMS}, got a table with the keys {keys:?}")),
    }
}

fn from_env(name: &str) -> Result<Secret, String> {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => Ok(Secret(text)),
        Ok(_) => Err(format!("the environment variable {name} is empty")),
        Err(std::env::VarError::NotPresent) => Err(format!("the environment variable {name} is not set")),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("the environment variable {name} is not valid UTF-8")),
    }
}

fn from_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
    // One final newline is the file's, not the secret's (`echo secret > file`).
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if text.is_empty() {
        return Err(format!("the secret file {} is empty", path.display()));
    }
    Ok(Secret(text.to_owned()))
}

/// Whether a librdkafka key holds a secret (its value is never shown): passwords,
/// passphrases, client secrets, private keys and the OAUTHBEARER config.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passphrase", "secret"].iter().any(|word| key.contains(word))
        || key.ends_with("key.pem")
        || key == "ssl_key"
        || key == "sasl.oauthbearer.config"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Secret, String> {
        #[derive(Debug, Deserialize)]
        struct File {
            #[allow(dead_code)]
            password: Secret,
        }
        toml::from_str::<File>(text).map(|f| f.password).map_err(|e| e.to_string())
    }

    #[test]
    fn a_secret_comes_from_the_file_text_an_environment_variable_or_a_file() {
        assert_eq!(parse("password = \"p1\"").expect("literal").expose(), "p1");
        let variable = format!("TIDEWATCH_SECRET_TEST_{}", std::process::id());
        // Tests of this module are the only readers of this variable.
        std::env::set_var(&variable, "p2");
        assert_eq!(parse(&format!("password = {{ env = \"{variable}\" }}")).expect("env").expose(), "p2");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "p3\n").expect("write");
        assert_eq!(parse(&format!("password = {{ file = \"{}\" }}", path.display())).expect("file").expose(), "p3");
    }

    #[test]
    fn a_missing_source_says_which_and_what_was_expected() {
        let text = parse("password = { env = \"TIDEWATCH_NO_SUCH_VARIABLE\" }").expect_err("unset");
        assert!(text.contains("TIDEWATCH_NO_SUCH_VARIABLE is not set"), "{text}");
        let text = parse("password = { file = \"/nonexistent/tidewatch\" }").expect_err("no file");
        assert!(text.contains("/nonexistent/tidewatch"), "{text}");
        let text = parse("password = { vault = \"x\" }").expect_err("unknown source");
        assert!(text.contains("env") && text.contains("file") && text.contains("vault"), "{text}");
        let text = parse("password = 5").expect_err("number");
        assert!(text.contains("integer"), "{text}");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let shown = format!("{:?}", Some(Secret::new("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(is_secret_key("sasl.password") && is_secret_key("ssl.key.password") && is_secret_key("sasl.oauthbearer.client.secret"));
        assert!(is_secret_key("ssl.key.pem") && !is_secret_key("ssl.ca.location") && !is_secret_key("sasl.username"));
    }
}
