//! The `/metrics` endpoint: a small HTTP/1.1 responder on its own thread.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Answers `GET /metrics` with the registry in the OpenMetrics text format.
pub(super) fn serve(listener: TcpListener, registry: &Registry) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(error) = answer(stream, registry) {
                    tracing::debug!(%error, "metrics request failed");
                }
            }
            Err(error) => tracing::warn!(%error, "metrics endpoint accept failed"),
        }
    }
}

fn answer(mut stream: TcpStream, registry: &Registry) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = if request_line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        let mut body = String::new();
        encode(&mut body, registry)?;
        ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "tidewatch serves /metrics\n".to_owned())
    };
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    Ok(())
}

