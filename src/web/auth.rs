//! Who is asking. Agents log in with a password checked against the argon2
//! hashes in the config, or arrive with a name set by a trusted reverse
//! proxy; either way they get a session: a random 256-bit token in an
//! HttpOnly, SameSite=Strict cookie, kept in SQLite only as its sha256 (a
//! copy of the database logs no one in), with its own CSRF token that every
//! POST must send back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{App, AppInner, WebError};
use crate::config::WebConfig;

const SESSION_COOKIE: &str = "ticketd_session";
/// Holds the login form's CSRF token until the agent has a session.
const LOGIN_COOKIE: &str = "ticketd_login";
const SESSION_SECONDS: i64 = 12 * 3600;
/// Set on the login page of a browser an agent logged in from: that
/// browser's attempts for that agent are throttled on their own, so a
/// guesser who keeps the agent's name throttled does not lock them out.
const DEVICE_COOKIE: &str = "ticketd_device";
const DEVICE_SECONDS: i64 = 90 * 24 * 3600;
const LOGIN_FORM_SECONDS: i64 = 3600;
const LOGIN_FAILED: &str = "Unknown agent or wrong password.";

/// Failed logins in a row a name gets before it has to wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts for one name.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Failures this old are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Names tracked at once; past this the stalest are forgotten.
const TRACKED_NAMES: usize = 4096;

/// Password guessing, slowed down per agent name: after `FREE_FAILURES`
/// wrong passwords in a row, each further attempt for that name has to
/// wait 1, 2, 4 ... seconds (at most `MAX_WAIT`) after the last failure,
/// and is answered 429 without checking the password. A correct password
/// clears the name. Names are tracked as typed, known or not, so the
/// answers say nothing about which agents exist. A guesser can make a real
/// agent wait at most `MAX_WAIT` on a new browser, and not at all on one
/// the agent logged in from before (its device cookie is throttled on its
/// own: OWASP's device cookies).
#[derive(Default)]
pub(crate) struct Throttle {
    failures: std::sync::Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    fn key(name: &str) -> String {
        name.trim().to_lowercase()
    }

    /// How long `name` still has to wait before its next attempt.
    pub(crate) fn wait(&self, name: &str, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = failures.get(&Self::key(name))?;
        let since = now.saturating_duration_since(*last);
        if since >= FORGET_AFTER || *count < FREE_FAILURES {
            return None;
        }
        let wait = Duration::from_secs(1u64 << (count - FREE_FAILURES).min(6)).min(MAX_WAIT);
        wait.checked_sub(since).filter(|w| !w.is_zero())
    }

    pub(crate) fn failed(&self, name: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key(name);
        if !failures.contains_key(&key) && failures.len() >= TRACKED_NAMES {
            failures.retain(|_, (_, last)| now.saturating_duration_since(*last) < FORGET_AFTER);
            if failures.len() >= TRACKED_NAMES {
                // The stalest name not held up yet goes first: failing
                // thousands of made-up names once each must not make a
                // throttled name the stalest and clear it.
                if let Some(stalest) = failures
                    .iter()
                    .min_by_key(|(_, (count, last))| (*count >= FREE_FAILURES, *last))
                    .map(|(k, _)| k.clone())
                {
                    failures.remove(&stalest);
                }
            }
        }
        let entry = failures.entry(key).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), now);
    }

    pub(crate) fn succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Self::key(name));
    }
}

/// The logged-in agent, put in the request by `require_agent`.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub agent: String,
    pub csrf: String,
    token_sha256: String,
}

impl Session {
    /// A POST is accepted only with this session's CSRF token.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), WebError> {
        match sent {
            Some(t) if constant_time_eq(t.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(csrf_refused()),
        }
    }
}

pub(crate) fn csrf_refused() -> WebError {
    WebError::Forbidden(
        "This form has expired or did not come from this page; reload the page and try again."
            .into(),
    )
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| WebError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

fn token_sha256(token: &str) -> String {
    crate::core::parse::sha256_hex(token.as_bytes())
}

pub(crate) fn hash_password(password: &str) -> Result<String, WebError> {
    if password.is_empty() {
        return Err(WebError::EmptyPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| WebError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| WebError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Hash(e.to_string()))
}

/// Every configured hash must parse, or start-up stops naming the agent.
pub(crate) fn check_hashes(web: &WebConfig) -> Result<(), WebError> {
    for agent in &web.agents {
        PasswordHash::new(&agent.password_hash).map_err(|e| WebError::BadHash {
            agent: agent.name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// argon2 takes the algorithm and cost from the stored hash itself.
fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Creates the session table if needed and drops expired sessions.
pub(crate) fn prepare_sessions(conn: &Connection, now: i64) -> Result<(), WebError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS web_sessions (
             token_sha256 TEXT PRIMARY KEY,
             agent        TEXT NOT NULL,
             kind         TEXT NOT NULL CHECK (kind IN ('password', 'proxy')),
             csrf         TEXT NOT NULL,
             created_at   INTEGER NOT NULL,
             expires_at   INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS web_sessions_expiry ON web_sessions(expires_at);
         CREATE TABLE IF NOT EXISTS web_devices (
             token_sha256 TEXT PRIMARY KEY,
             agent        TEXT NOT NULL,
             expires_at   INTEGER NOT NULL
         );",
    )?;
    conn.execute("DELETE FROM web_devices WHERE expires_at <= ?1", [now])?;
    // Which password a password session was opened with (a digest of its
    // hash): a new password ends the sessions of the old. Sessions from
    // before this column have none and end once.
    let has_credential: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('web_sessions') WHERE name = 'credential')",
        [],
        |r| r.get(0),
    )?;
    if !has_credential {
        conn.execute_batch(
            "ALTER TABLE web_sessions ADD COLUMN credential TEXT NOT NULL DEFAULT ''",
        )?;
    }
    conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [now])?;
    Ok(())
}

/// What a password session remembers of the password it was opened with:
/// a digest of the configured argon2 hash (whose salt changes with every
/// new password), never the hash itself.
fn credential_of(password_hash: &str) -> String {
    token_sha256(password_hash)
}

/// Returns the session and its (secret) token.
fn create_session(
    conn: &Connection,
    agent: &str,
    kind: &str,
    credential: &str,
    now: i64,
) -> Result<(Session, String), WebError> {
    let token = random_token()?;
    let session = Session {
        agent: agent.to_string(),
        csrf: random_token()?,
        token_sha256: token_sha256(&token),
    };
    conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?1", [now])?;
    conn.execute(
        "INSERT INTO web_sessions (token_sha256, agent, kind, csrf, created_at, expires_at,
         credential) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            session.token_sha256,
            session.agent,
            kind,
            session.csrf,
            now,
            now + SESSION_SECONDS,
            credential
        ],
    )?;
    Ok((session, token))
}

/// The live session for `token`, if it still fits the config: a password
/// session's agent must still be configured with the same password, a
/// proxy session's name must still be what the proxy says.
fn find_session(
    conn: &Connection,
    app: &AppInner,
    token: &str,
    proxy_agent: Option<&str>,
    now: i64,
) -> Result<Option<Session>, WebError> {
    let hash = token_sha256(token);
    let row: Option<(String, String, String, String)> = conn
        .query_row(
            "SELECT agent, kind, csrf, credential FROM web_sessions
             WHERE token_sha256 = ?1 AND expires_at > ?2",
            params![hash, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((agent, kind, csrf, credential)) = row else {
        return Ok(None);
    };
    let valid = match (kind.as_str(), proxy_agent) {
        // The proxy's word wins over an older password session.
        (_, Some(name)) => agent == name && kind == "proxy",
        ("password", None) => app.live().web.agents.iter().any(|a| {
            a.name == agent
                && constant_time_eq(
                    credential_of(&a.password_hash).as_bytes(),
                    credential.as_bytes(),
                )
        }),
        _ => false,
    };
    Ok(valid.then_some(Session {
        agent,
        csrf,
        token_sha256: hash,
    }))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

fn proxy_agent(app: &App, headers: &HeaderMap) -> Option<String> {
    let live = app.live();
    let name = live.web.proxy_user_header.as_deref()?;
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Browsers say where a request comes from (Sec-Fetch-Site); a POST from
/// another site is refused even before its CSRF token is looked at. (Origin
/// is no help: with `Referrer-Policy: no-referrer` it is "null" even for our
/// own forms.)
fn same_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_none_or(|v| matches!(v.as_bytes(), b"same-origin" | b"none"))
}

/// Lets a request through only with a live session (made on the fly for a
/// name the reverse proxy vouches for); GETs without one go to the login
/// page, anything else is refused.
pub(crate) async fn require_agent(
    State(app): State<App>,
    mut req: Request,
    next: Next,
) -> Response {
    let safe_method = matches!(*req.method(), Method::GET | Method::HEAD);
    if !safe_method && !same_origin(req.headers()) {
        return csrf_refused().into_response();
    }
    let token = cookie(req.headers(), SESSION_COOKIE).map(str::to_string);
    let proxy = proxy_agent(&app, req.headers());
    let now = chrono::Utc::now().timestamp();
    let looked_up = app
        .db(move |store, app| {
            let conn = store.conn();
            if let Some(token) = &token {
                if let Some(s) = find_session(conn, app, token, proxy.as_deref(), now)? {
                    return Ok(Some((s, None)));
                }
            }
            match &proxy {
                Some(name) => {
                    let (s, token) = create_session(conn, name, "proxy", "", now)?;
                    info!(agent = %name, "web: session for the agent named by the proxy");
                    Ok(Some((s, Some(token))))
                }
                None => Ok(None),
            }
        })
        .await;
    match looked_up {
        Ok(Some((session, new_token))) => {
            req.extensions_mut().insert(session);
            let mut res = next.run(req).await;
            if let Some(c) =
                new_token.and_then(|t| set_cookie(SESSION_COOKIE, &t, "/", SESSION_SECONDS))
            {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        Ok(None) if safe_method => Redirect::to("/login").into_response(),
        Ok(None) => WebError::Forbidden("Log in first.".into()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize)]
struct LoginPage<'a> {
    agent: Option<&'a str>,
    csrf: &'a str,
    error: Option<&'a str>,
    name: &'a str,
    password_login: bool,
}

fn login_form(app: &App, status: StatusCode, error: Option<&str>, name: &str) -> Response {
    let result = random_token().and_then(|csrf| {
        let html = app.render(
            "login.html",
            LoginPage {
                agent: None,
                csrf: &csrf,
                error,
                name,
                password_login: !app.live().web.agents.is_empty(),
            },
        )?;
        Ok((csrf, html))
    });
    match result {
        Ok((csrf, html)) => {
            let mut res = (status, axum::response::Html(html)).into_response();
            if let Some(c) = set_cookie(LOGIN_COOKIE, &csrf, "/login", LOGIN_FORM_SECONDS) {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn login_page(State(app): State<App>, headers: HeaderMap) -> Response {
    if proxy_agent(&app, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    login_form(&app, StatusCode::OK, None, "")
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    password: String,
    csrf: Option<String>,
}

pub(crate) async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE);
    let form = match (form, expected) {
        (Ok(Form(f)), Some(expected))
            if same_origin(&headers)
                && f.csrf
                    .as_deref()
                    .is_some_and(|c| constant_time_eq(c.as_bytes(), expected.as_bytes())) =>
        {
            f
        }
        _ => {
            return login_form(
                &app,
                StatusCode::FORBIDDEN,
                Some("The login form expired; please try again."),
                "",
            )
        }
    };
    let name = form.agent.trim().to_string();
    let hash = app
        .live()
        .web
        .agents
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.password_hash.clone());
    let known = hash.is_some();
    // An unknown name is checked against a dummy hash, so it takes as long
    // as a wrong password and the answer is the same.
    let hash = hash.unwrap_or_else(|| app.dummy_hash.clone());
    let hash_used = hash.clone();
    let password = form.password;
    // A browser the agent logged in from before has a throttle of its own.
    let device = match cookie(&headers, DEVICE_COOKIE).map(token_sha256) {
        Some(device) => {
            let (agent, now) = (name.clone(), chrono::Utc::now().timestamp());
            let probe = device.clone();
            let known = app
                .db(move |store, _| {
                    Ok(store.conn().query_row(
                        "SELECT EXISTS (SELECT 1 FROM web_devices
                         WHERE token_sha256 = ?1 AND agent = ?2 AND expires_at > ?3)",
                        params![probe, agent, now],
                        |r| r.get::<_, bool>(0),
                    )?)
                })
                .await
                .unwrap_or(false);
            known.then_some(device)
        }
        None => None,
    };
    let throttled = match &device {
        Some(d) => format!("device {d}"),
        None => name.clone(),
    };
    let permit = app.login_slots.acquire().await;
    // Checked with the permit in hand, so attempts queued behind it meet
    // the failures recorded meanwhile.
    if let Some(wait) = app.login_throttle.wait(&throttled, Instant::now()) {
        drop(permit);
        let seconds = wait.as_secs().max(1);
        warn!(agent = ?name, peer = %peer.ip(), seconds, "web: login refused: too many failed attempts for this name");
        let message = format!(
            "Too many failed logins for this name; try again in {seconds} second{}.",
            if seconds == 1 { "" } else { "s" }
        );
        let mut res = login_form(&app, StatusCode::TOO_MANY_REQUESTS, Some(&message), &name);
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let verified = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    if !(known && verified) {
        app.login_throttle.failed(&throttled, Instant::now());
        drop(permit);
        warn!(agent = ?name, peer = %peer.ip(), "web: login failed");
        return login_form(&app, StatusCode::UNAUTHORIZED, Some(LOGIN_FAILED), &name);
    }
    app.login_throttle.succeeded(&throttled);
    drop(permit);
    let now = chrono::Utc::now().timestamp();
    let agent = name.clone();
    let credential = credential_of(&hash_used);
    let new_device = device.is_none();
    let created = app
        .db(move |store, _| {
            let conn = store.conn();
            let (session, token) = create_session(conn, &agent, "password", &credential, now)?;
            let device = if new_device {
                let device = random_token()?;
                conn.execute(
                    "INSERT INTO web_devices (token_sha256, agent, expires_at) VALUES (?1, ?2, ?3)",
                    params![token_sha256(&device), agent, now + DEVICE_SECONDS],
                )?;
                Some(device)
            } else {
                None
            };
            Ok((session, token, device))
        })
        .await;
    match created {
        Ok((_, token, device)) => {
            info!(agent = %name, peer = %peer.ip(), "web: agent logged in");
            let mut res = Redirect::to("/").into_response();
            let h = res.headers_mut();
            if let Some(c) = set_cookie(SESSION_COOKIE, &token, "/", SESSION_SECONDS) {
                h.append(header::SET_COOKIE, c);
            }
            if let Some(c) = set_cookie(LOGIN_COOKIE, "", "/login", 0) {
                h.append(header::SET_COOKIE, c);
            }
            let device =
                device.and_then(|d| set_cookie(DEVICE_COOKIE, &d, "/login", DEVICE_SECONDS));
            if let Some(c) = device {
                h.append(header::SET_COOKIE, c);
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub csrf: Option<String>,
}

pub(crate) async fn logout(
    State(app): State<App>,
    Extension(session): Extension<Session>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, WebError> {
    let sent = form.ok().and_then(|Form(f)| f.csrf);
    session.check_csrf(sent.as_deref())?;
    let hash = session.token_sha256.clone();
    app.db(move |store, _| {
        store
            .conn()
            .execute("DELETE FROM web_sessions WHERE token_sha256 = ?1", [hash])?;
        Ok(())
    })
    .await?;
    info!(agent = %session.agent, "web: agent logged out");
    let mut res = Redirect::to("/login").into_response();
    if let Some(c) = set_cookie(SESSION_COOKIE, "", "/", 0) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_many_other_names_does_not_clear_a_throttled_one() {
        let t = Throttle::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES + 1 {
            t.failed("anna", start);
        }
        assert!(t.wait("anna", start).is_some());
        for i in 0..2 * TRACKED_NAMES {
            t.failed(
                &format!("junk{i}"),
                start + Duration::from_millis(1 + i as u64),
            );
        }
        let failures = t.failures.lock().unwrap();
        assert!(
            failures.contains_key("anna"),
            "the throttled name was dropped"
        );
        assert!(failures.len() <= TRACKED_NAMES);
    }

    #[test]
    fn guessing_waits_longer_and_longer_and_a_success_clears_it() {
        let t = Throttle::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.wait("Anna", start), None);
            t.failed("Anna", start);
        }
        // Names are compared as typed, trimmed and in any case.
        assert_eq!(t.wait(" anna", start), Some(Duration::from_secs(1)));
        assert_eq!(t.wait("Bob", start), None, "other names are not held up");
        assert_eq!(t.wait("Anna", at(1)), None);
        t.failed("Anna", at(1));
        assert_eq!(t.wait("Anna", at(1)), Some(Duration::from_secs(2)));
        let mut now = 1;
        for _ in 0..20 {
            now += 100;
            t.failed("Anna", at(now));
        }
        assert_eq!(t.wait("Anna", at(now)), Some(MAX_WAIT), "capped");
        assert_eq!(t.wait("Anna", at(now + 60)), None);
        assert_eq!(t.wait("Anna", at(now) + FORGET_AFTER), None);
        t.succeeded("ANNA");
        t.failed("Anna", at(now + 61));
        assert_eq!(t.wait("Anna", at(now + 61)), None, "cleared by the success");
    }

    #[test]
    fn the_throttle_tracks_a_bounded_number_of_names() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..TRACKED_NAMES + 100 {
            t.failed(&format!("guess-{i}"), now);
        }
        assert_eq!(t.failures.lock().unwrap().len(), TRACKED_NAMES);
    }

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salts are random");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "correct hors"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(matches!(hash_password(""), Err(WebError::EmptyPassword)));
    }

    #[test]
    fn cookies_are_found_only_when_well_formed() {
        let token = "ab".repeat(32);
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {SESSION_COOKIE}={token}")).unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some(token.as_str()));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("ticketd_session=../../etc/passwd"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), None);
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!same_origin(&h));
    }
}
