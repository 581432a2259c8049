//! A strict reader of the Prometheus text exposition format (and of OpenMetrics text,
//! which tidewatch serves), and a plain HTTP scrape, for the tests of `/metrics` and of
//! the broker's JMX exporter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (with its `_total`, `_count`, ... suffix).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "".
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A parsed exposition: the samples in order and the declared type of each family.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample, in the order served.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each metric family.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// The samples named `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The samples named `name` whose labels include every `(label, value)` of `with`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.series(name)
            .filter(move |s| with.iter().all(|(k, v)| s.label(k) == *v))
    }

    /// The sum of the samples `matching(name, with)`, `None` when there is none.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let total = self
            .matching(name, with)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    /// Every sample name.
    pub fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

/// Parses `name{label="value",...} value [timestamp]`.
pub fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(is_name(name, true), "bad metric name {name:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"").context("a label without =\"")?;
            ensure!(
                is_name(label, false) && !labels.contains_key(label),
                "bad or repeated label name {label:?}"
            );
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().context("an unterminated label value")? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().context("an unterminated escape")?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => bail!("bad escape \\{c}"),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_owned(), value);
            inside = &after[end + 1..];
            if let Some(next) = inside.strip_prefix(',') {
                inside = next;
            } else {
                ensure!(
                    inside.starts_with('}'),
                    "labels must be separated by commas"
                );
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .context("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().context("no value")?;
    if let Some(timestamp) = parts.next() {
        ensure!(
            timestamp.parse::<f64>().is_ok(),
            "bad timestamp {timestamp:?}"
        );
    }
    ensure!(
        parts.next().is_none(),
        "more than a value and a timestamp in {rest:?}"
    );
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .with_context(|| format!("value {v:?} is not a float"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample belongs to, among the declared ones.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    [
        "_total", "_count", "_sum", "_bucket", "_created", "_info", "_gcount", "_gsum",
    ]
    .iter()
    .filter_map(|suffix| name.strip_suffix(suffix))
    .find(|family| types.contains_key(*family))
}

/// Parses a whole exposition strictly: only `# HELP`, `# TYPE`, `# UNIT` and a final
/// `# EOF` comments; a known type per family, declared once and before its samples; no
/// sample (name and labels) twice; counters never negative.
pub fn parse(text: &str) -> anyhow::Result<Exposition> {
    let mut out = Exposition::default();
    let mut seen: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        ensure!(!eof, "content after # EOF at {}", at());
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("EOF") => eof = true,
                Some("HELP" | "UNIT") => ensure!(
                    words.next().is_some_and(|w| is_name(w, true)),
                    "a comment without a metric name at {}",
                    at()
                ),
                Some("TYPE") => {
                    let family = words.next().filter(|w| is_name(w, true)).with_context(at)?;
                    let kind = words.next().with_context(at)?;
                    ensure!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "untyped",
                            "unknown",
                            "info",
                            "stateset",
                            "gaugehistogram"
                        ]
                        .contains(&kind),
                        "unknown type {kind:?} at {}",
                        at()
                    );
                    ensure!(
                        out.types
                            .insert(family.to_owned(), kind.to_owned())
                            .is_none(),
                        "family {family} declared twice at {}",
                        at()
                    );
                }
                _ => bail!("an unexpected comment at {}", at()),
            }
            continue;
        }
        let sample = parse_sample(line).with_context(at)?;
        let family = family_of(&sample.name, &out.types)
            .with_context(|| format!("a sample without a # TYPE before it at {}", at()))?;
        if out.types.get(family).map(String::as_str) == Some("counter") {
            ensure!(sample.value >= 0.0, "a negative counter at {}", at());
        }
        let key = (
            sample.name.clone(),
            sample.labels.clone().into_iter().collect(),
        );
        ensure!(seen.insert(key), "a sample served twice at {}", at());
        out.samples.push(sample);
    }
    Ok(out)
}

/// `GET http://addr/metrics` (HTTP/1.0); fails unless the answer is 200.
pub fn scrape(addr: &str) -> anyhow::Result<String> {
    let socket: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let response = String::from_utf8(response)
        .with_context(|| format!("GET /metrics from {addr}: not UTF-8"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET /metrics from {addr}: no header end"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    ensure!(status == "200", "GET /metrics from {addr}: {head}");
    Ok(body.to_owned())
}

/// Scrapes and parses.
pub fn scrape_parsed(addr: &str) -> anyhow::Result<(String, Exposition)> {
    let text = scrape(addr)?;
    let parsed = parse(&text).with_context(|| format!("the exposition served by {addr}"))?;
    Ok((text, parsed))
}

/// The address of the broker's JMX exporter: `TIDEWATCH_KAFKA_JMX`, else 127.0.0.1 and
/// `TIDEWATCH_KAFKA_JMX_PORT` (5556, as scripts/kafka.sh).
pub fn broker_exporter() -> String {
    std::env::var("TIDEWATCH_KAFKA_JMX").unwrap_or_else(|_| {
        format!(
            "127.0.0.1:{}",
            std::env::var("TIDEWATCH_KAFKA_JMX_PORT").unwrap_or_else(|_| "5556".to_owned())
        )
    })
}

/// Fails with instructions when the broker's JMX exporter does not answer.
pub fn require_broker_exporter(addr: &str) -> anyhow::Result<()> {
    scrape(addr).map(drop).with_context(|| {
        format!(
            "the broker's JMX exporter does not answer at {addr}: start the broker with `scripts/kafka.sh start` \
             (a broker started before the exporter was added must be restarted: `scripts/kafka.sh stop && scripts/kafka.sh start`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parse_accepts_both_formats_and_rejects_garbage() {
        let open_metrics = "# HELP x_total things\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"\\\\\"} 2.5\n# TYPE y gauge\ny NaN\n# EOF\n";
        let parsed = parse(open_metrics).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(parsed.samples.len(), 2);
        assert_eq!(parsed.samples[0].label("b"), "q\"\\");
        assert_eq!(parsed.sum("x_total", &[("a", "1")]), Some(2.5));
        let text_004 = "# HELP jvm_gc_collection_seconds Time spent\n# TYPE jvm_gc_collection_seconds summary\n\
                        jvm_gc_collection_seconds_count{gc=\"G1 Young Generation\"} 8\njvm_gc_collection_seconds_sum{gc=\"G1 Young Generation\"} 0.084\n\
                        # TYPE m gauge\nm 5.36870912E8\nm{a=\"b\"} +Inf 1700000000000\n";
        let parsed = parse(text_004).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            parsed.sum("jvm_gc_collection_seconds_count", &[]),
            Some(8.0)
        );
        for bad in [
            "x 1\n",                                 // no TYPE
            "# TYPE x gauge\nx{a=\"1\" 2\n",         // unterminated labels
            "# TYPE x gauge\nx 1 2 3\n",             // extra fields
            "# TYPE x gauge\nx abc\n",               // not a float
            "# TYPE x gauge\nx 1\nx 2\n",            // served twice
            "# TYPE x counter\nx_total -1\n",        // negative counter
            "# TYPE x gauge\n# TYPE x gauge\n",      // declared twice
            "# TYPE x gauge\n# EOF\nx 1\n",          // after EOF
            "# random\n",                            // unexpected comment
            "# TYPE x gauge\nx{a=\"1\"b=\"2\"} 1\n", // no comma
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
