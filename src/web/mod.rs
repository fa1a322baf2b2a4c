//! `ticketd web`: the agents' page. Server-rendered HTML from the
//! operator-editable templates in `<templates_dir>/web/`, over the same read
//! views the CLI uses. Everything that makes it safe to open a stranger's
//! mail in a browser lives here: login and sessions (`auth`), CSRF checks on
//! every POST, a strict Content-Security-Policy on every response, mail
//! HTML only ever sanitized and inside a sandboxed frame, and attachments
//! served by validated sha256 only (`files`).

mod auth;
mod files;
mod pages;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::config::{Config, WebConfig};
use crate::daemon::Shutdown;
use crate::reply::ReplyError;
use crate::store::{Store, StoreError};

/// The page templates, all under `<templates_dir>/web/`.
pub const TEMPLATE_NAMES: &[&str] = &[
    "layout.html",
    "login.html",
    "queue.html",
    "search.html",
    "ticket.html",
    "message.html",
];

/// Every response gets this unless a route sets a stricter one of its own.
/// No script source at all: the page needs none, and mail can bring none.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; img-src 'self'; \
    style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; \
    frame-src 'self'; base-uri 'none'";

/// How many SQLite connections are kept open between requests.
const POOLED_CONNECTIONS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("no [web] section in the config: add one with at least one [[web.agents]] entry")]
    NoConfig,
    #[error("web templates directory {0} does not exist; set [tickets] templates_dir to the folder holding web/")]
    NoTemplates(PathBuf),
    #[error("web template {name}: {message}")]
    Template { name: String, message: String },
    #[error(
        "the password_hash of agent `{agent}` is not a valid argon2 PHC string ({message}); \
         make one with `ticketd hash-password`"
    )]
    BadHash { agent: String, message: String },
    #[error("the password is empty")]
    EmptyPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    // What a request did wrong; shown to the agent, not logged as a fault.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_)
            | WebError::Store(StoreError::NotFound(_))
            | WebError::Reply(ReplyError::NoTicket(_)) => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Reply(ReplyError::NoSmtp) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::BadRequest(_) | WebError::Reply(ReplyError::Empty) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            error!(error = %self, "web: request failed");
            "Something went wrong on the server; the log has the details.".to_string()
        } else {
            self.to_string()
        };
        // A plain page that needs no template: the templates may be what broke.
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title></head>\
             <body><h1>{code}</h1><p>{message}</p><p><a href=\"/\">Back to the queue</a></p></body></html>",
            code = status.as_u16(),
            message = escape_html(&message),
        );
        (status, Html(body)).into_response()
    }
}

pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a
/// value placed in a URL query.
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Hashes a password for `[[web.agents]] password_hash`: argon2id with the
/// crate's default cost and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    auth::hash_password(password)
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App(Arc<AppInner>);

pub(crate) struct AppInner {
    config: Config,
    /// The agents and the templates: what a reload (SIGHUP) replaces.
    live: RwLock<Arc<Live>>,
    pool: Mutex<Vec<Store>>,
    /// Verified against when the agent name is unknown, so an unknown name
    /// costs the same time as a wrong password.
    dummy_hash: String,
    /// argon2 needs ~19 MiB and real CPU per check; a flood of logins
    /// waits here instead of exhausting memory.
    login_slots: tokio::sync::Semaphore,
    login_throttle: auth::Throttle,
}

pub(crate) struct Live {
    pub(crate) web: WebConfig,
    templates: Environment<'static>,
}

impl AppInner {
    /// The agents and templates in force.
    pub(crate) fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(live) => Arc::clone(&live),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

fn template_error(name: &str, e: minijinja::Error) -> WebError {
    let location = match (e.name(), e.line()) {
        (Some(file), Some(line)) => format!(" (at {file} line {line})"),
        _ => String::new(),
    };
    WebError::Template {
        name: name.to_string(),
        message: format!("{e}{location}"),
    }
}

fn load_templates(config: &Config) -> Result<Environment<'static>, WebError> {
    let dir = config.tickets.templates_dir.join("web");
    if !dir.is_dir() {
        return Err(WebError::NoTemplates(dir));
    }
    let mut env = Environment::new();
    env.set_loader(minijinja::path_loader(dir));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Compile every template now so a broken one stops start-up with its
    // file and line instead of failing the first agent who opens the page.
    for name in TEMPLATE_NAMES {
        env.get_template(name)
            .map_err(|e| template_error(name, e))?;
    }
    Ok(env)
}

impl App {
    fn load(config: &Config) -> Result<App, WebError> {
        let web = config.web.clone().ok_or(WebError::NoConfig)?;
        auth::check_hashes(&web)?;
        let templates = load_templates(config)?;
        let store = Store::open(&config.data_dir)?;
        auth::prepare_sessions(store.conn(), chrono::Utc::now().timestamp())?;
        let dummy_hash = auth::hash_password(&auth::random_token()?)?;
        Ok(App(Arc::new(AppInner {
            config: config.clone(),
            live: RwLock::new(Arc::new(Live { web, templates })),
            pool: Mutex::new(vec![store]),
            dummy_hash,
            login_slots: tokio::sync::Semaphore::new(2),
            login_throttle: auth::Throttle::default(),
        })))
    }

    /// Reads the config file's `[web]` section and the templates again, as
    /// `ticketd run` does on SIGHUP: agents added or removed (a removed
    /// agent's sessions end with it) and edited pages take effect without
    /// a restart. A broken config or template is logged and the running
    /// one kept; the listen address needs a restart.
    pub(crate) fn reload(&self, config_path: &Path) {
        let load = || -> Result<Live, String> {
            let new = Config::load(config_path).map_err(|e| e.to_string())?;
            let web = new
                .web
                .clone()
                .ok_or_else(|| WebError::NoConfig.to_string())?;
            auth::check_hashes(&web).map_err(|e| e.to_string())?;
            let templates = load_templates(&new).map_err(|e| e.to_string())?;
            Ok(Live { web, templates })
        };
        match load() {
            Ok(live) => {
                if live.web.listen != self.live().web.listen {
                    warn!("web: [web] listen changed: restart ticketd to use it");
                }
                let agents = live.web.agents.len();
                if let Ok(mut current) = self.live.write() {
                    *current = Arc::new(live);
                }
                info!(agents, "web: agents and templates reloaded");
            }
            Err(e) => {
                error!(error = %e, "web: reload failed; keeping the running agents and templates")
            }
        }
    }

    /// Runs blocking database work on a pooled connection, off the async
    /// threads.
    pub(crate) async fn db<T, F>(&self, work: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store, &AppInner) -> Result<T, WebError> + Send + 'static,
    {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = app.pool.lock().ok().and_then(|mut p| p.pop());
            let mut store = match pooled {
                Some(s) => s,
                None => Store::open(&app.config.data_dir)?,
            };
            let result = work(&mut store, &app);
            if let Ok(mut pool) = app.pool.lock() {
                if pool.len() < POOLED_CONNECTIONS {
                    pool.push(store);
                }
            }
            result
        })
        .await
        .map_err(|e| WebError::Task(e.to_string()))?
    }

    pub(crate) fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, WebError> {
        let live = self.live();
        let tmpl = live
            .templates
            .get_template(name)
            .map_err(|e| template_error(name, e))?;
        tmpl.render(ctx).map_err(|e| template_error(name, e))
    }

    pub(crate) fn page(&self, name: &str, ctx: impl Serialize) -> Result<Response, WebError> {
        Ok(Html(self.render(name, ctx)?).into_response())
    }
}

/// Headers every response carries. A route may set a stricter CSP or frame
/// policy of its own (the sandboxed mail frame does); the rest is fixed.
/// Whether the browser will keep a Secure cookie from this answer: it
/// came through an HTTPS reverse proxy that says so, or the browser
/// addressed a loopback host (a secure context even over plain http).
/// Over plain http to any other host a Secure cookie would be dropped and
/// no one could log in.
fn secure_context(headers: &axum::http::HeaderMap) -> bool {
    let value = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let forwarded_https = value(header::HeaderName::from_static("x-forwarded-proto"))
        .is_some_and(|p| p.trim() == "https")
        || value(header::FORWARDED).is_some_and(|f| f.contains("proto=https"));
    let host = value(header::HOST).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    forwarded_https || loopback
}

async fn security_headers(req: Request, next: Next) -> Response {
    let secure = secure_context(req.headers());
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if secure {
        // Cookies go back only over HTTPS (or to loopback): an agent who
        // types the bare host name does not send the session in the clear.
        let cookies: Vec<HeaderValue> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .filter_map(|c| HeaderValue::from_str(&format!("{c}; Secure")).ok())
            .collect();
        h.remove(header::SET_COOKIE);
        for c in cookies {
            h.append(header::SET_COOKIE, c);
        }
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn not_found() -> WebError {
    WebError::NotFound("There is no such page.".into())
}

fn router(app: App) -> Router {
    let agents_only = Router::new()
        .route("/", get(pages::queue))
        .route("/search", get(pages::search))
        .route("/tickets/{ticket}", get(pages::ticket))
        .route("/tickets/{ticket}/close", post(pages::close))
        .route("/tickets/{ticket}/reopen", post(pages::reopen))
        .route("/tickets/{ticket}/reply", post(pages::reply))
        .route("/attachments/{sha256}", get(files::attachment))
        .route("/message.html", get(files::message_html))
        .route("/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_agent,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .merge(agents_only)
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// `ticketd web`: serves the agents' page until `shutdown`. Each change of
/// `reload` (SIGHUP) reloads the agents and templates from `config_path`.
pub async fn serve(
    config: &Config,
    config_path: &Path,
    shutdown: Shutdown,
    mut reload: tokio::sync::watch::Receiver<u64>,
) -> Result<(), WebError> {
    let app = App::load(config)?;
    let reloader = {
        let (app, path, stop) = (app.clone(), config_path.to_path_buf(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = reload.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let app = app.clone();
                        let path = path.clone();
                        // Reading files and checking hashes: off the async threads.
                        let _ = tokio::task::spawn_blocking(move || app.reload(&path)).await;
                    }
                    _ = stop.wait() => break,
                }
            }
        })
    };
    let web = app.live().web.clone();
    let addr = web.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| WebError::Bind { addr, source })?;
    if !local.ip().is_loopback() {
        warn!(
            addr = %local,
            "web: listening beyond loopback; put it behind an HTTPS reverse proxy"
        );
        if web.proxy_user_header.is_some() {
            warn!("web: proxy_user_header is trusted from anyone who can reach this address");
        }
    }
    info!(addr = %local, "web: listening on http://{local}/");
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(WebError::Serve);
    reloader.abort();
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_encodes() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_encode("<a b@c.d>"), "%3Ca%20b%40c.d%3E");
    }
}
