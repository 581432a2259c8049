//! The job's HTTP server (axum on a thread of its own): `/metrics` always; on the
//! process that shows the dashboard also `/` (the page), `/dashboard.js`, `/api/state`
//! (JSON), `/api/events` (server-sent events, a fresh rendering each second) and
//! `/profiles/…` (the profile reports). With an access token, every request must carry
//! it: `Authorization: Bearer <token>`, the `token` query parameter (which also sets a
//! cookie, so the page's links and event stream work), or that cookie.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use super::{page, Board};

/// How often the event stream sends a fresh rendering.
const UPDATE: Duration = Duration::from_secs(1);
/// The cookie that carries the token after a request had it in its query.
const COOKIE: &str = "tidewatch_token";

/// What the server serves.
#[derive(Debug)]
pub(crate) struct Served {
    /// The Prometheus figures of this process.
    pub(crate) registry: Arc<Registry>,
    /// The dashboard, on the process that shows it.
    pub(crate) board: Option<Arc<Board>>,
    /// Where the dashboard is, said by the processes that do not show it.
    pub(crate) elsewhere: Option<String>,
    /// The access token every request must carry (none on a loopback address).
    pub(crate) token: Option<String>,
}

/// The running server; stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `served` on `listener` (already bound, so a bad address fails at start).
pub(crate) fn start(listener: TcpListener, served: Served) -> std::io::Result<Server> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = router(Arc::new(served));
    let thread = std::thread::Builder::new().name("tidewatch-http".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => return tracing::error!(%error, "the HTTP server cannot use its socket"),
            };
            let serve = std::pin::pin!(std::future::IntoFuture::into_future(axum::serve(listener, router)));
            // Ends on shutdown even while event streams are open (dropping the runtime
            // drops their connections).
            if let futures_util::future::Either::Left((Err(error), _)) = futures_util::future::select(serve, stopped).await {
                tracing::error!(%error, "the HTTP server failed");
            }
        });
    })?;
    Ok(Server { shutdown: Some(shutdown), thread: Some(thread) })
}

fn router(served: Arc<Served>) -> Router {
    let mut router = Router::new().route("/metrics", get(metrics));
    router = if served.board.is_some() {
        router
            .route("/", get(dashboard))
            .route("/dashboard.js", get(script))
            .route("/api/state", get(state))
            .route("/api/events", get(events))
            .route("/profiles/", get(profiles_index))
            .route("/profiles/{file}", get(profile))
    } else {
        router.route("/", get(elsewhere))
    };
    router.layer(middleware::from_fn_with_state(Arc::clone(&served), authorize)).with_state(served)
}

/// Compares without returning early, so the time taken tells nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries, and whether it came in the query.
fn carried(request: &Request) -> Option<(String, bool)> {
    let headers = request.headers();
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Some((token.trim().to_owned(), false));
    }
    let query = request.uri().query().unwrap_or("").split('&').find_map(|pair| pair.strip_prefix("token="));
    if let Some(token) = query {
        return Some((token.to_owned(), true));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('=')))
        .map(|token| (token.to_owned(), false))
}

async fn authorize(State(served): State<Arc<Served>>, request: Request, next: Next) -> Response {
    let Some(token) = &served.token else { return next.run(request).await };
    match carried(&request) {
        Some((given, in_query)) if same(&given, token) => {
            let mut response = next.run(request).await;
            if in_query {
                if let Ok(cookie) = HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")) {
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                }
            }
            response
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "tidewatch: this endpoint needs the access token (output.dashboard_token): `Authorization: Bearer <token>` or `?token=<token>`\n",
        )
            .into_response(),
    }
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &served.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the metrics failed: {error}\n")).into_response(),
    }
}

async fn elsewhere(State(served): State<Arc<Served>>) -> Response {
    let place = served.elsewhere.as_deref().unwrap_or("process 0 of the job");
    (StatusCode::NOT_FOUND, format!("this process serves /metrics; the job's dashboard is served by {place}\n")).into_response()
}

fn not_found(text: &'static str) -> Response {
    (StatusCode::NOT_FOUND, text).into_response()
}

/// The dashboard page: only its own script runs (nothing inline, nothing from elsewhere).
async fn dashboard(State(served): State<Arc<Served>>) -> Response {
    let Some(board) = served.board.as_deref() else { return not_found("no dashboard here\n") };
    let html = page::render_page(&board.snapshot());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], page::SCRIPT).into_response()
}

async fn state(State(served): State<Arc<Served>>) -> Response {
    let Some(board) = served.board.as_deref() else { return not_found("no dashboard here\n") };
    match serde_json::to_string(&board.snapshot()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("serializing the state failed: {error}\n")).into_response(),
    }
}

/// A fresh rendering of the page's live part every second, as long as the page is open.
async fn events(State(served): State<Arc<Served>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut tick = tokio::time::interval(UPDATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((served, tick), |(served, mut tick)| async move {
        tick.tick().await;
        let html = served.board.as_ref().map_or_else(String::new, |b| page::render_live(&b.snapshot()));
        // SSE data lines end at a line break; the rendering needs none.
        let html = html.replace(['\r', '\n'], " ");
        Some((Ok(Event::default().event("live").data(html)), (served, tick)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A file of the profiles directory: `profile-….html` / `.json` or `index.html`.
fn profile_file(served: &Served, file: &str) -> Response {
    let Some(dir) = served.board.as_deref().and_then(Board::profiles_dir) else { return not_found("this job writes no profiles\n") };
    let safe = !file.starts_with('.') && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => return not_found("not a profile report\n"),
    };
    if !safe {
        return not_found("not a profile report\n");
    }
    match std::fs::read(dir.join(file)) {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response(),
        Err(_) => not_found("no such profile report (yet)\n"),
    }
}

async fn profiles_index(State(served): State<Arc<Served>>) -> Response {
    profile_file(&served, "index.html")
}

async fn profile(State(served): State<Arc<Served>>, Path(file): Path<String>) -> Response {
    profile_file(&served, &file)
}
