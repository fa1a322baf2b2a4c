//! The agents' web page for the search figures (issue 6): `ticketd web` as
//! a child process on a loopback port against the 1M-message store, an
//! agent configured with a hash from `ticketd hash-password`, a login by
//! the form (GET /login for its CSRF token and cookie, POST /login for the
//! session cookie), then GET /search over one kept-alive connection, as a
//! browser does. The HTTP client is written by hand on std's TcpStream
//! (HTTP/1.1, Content-Length or chunked bodies): nothing between the bench
//! and the server but the socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::child::{Launch, Ticketd, SUPPORT};
use crate::Ctx;

const AGENT: &str = "bench";
const PASSWORD: &str = "bench-agent-password-2025";

/// A running `ticketd web` with a logged-in agent.
pub struct WebPage {
    /// Kept so the child is stopped (by its PID) when this is dropped.
    child: Ticketd,
    pub addr: SocketAddr,
    http: Http,
    cookie: String,
    pub started_in: Duration,
}

impl WebPage {
    /// Starts `ticketd web` on `data_dir` and logs in.
    pub fn start(ctx: &Ctx, data_dir: &Path) -> Result<WebPage> {
        let dir = crate::fresh_dir(&ctx.work, "web-conf")?;
        let config = dir.join("ticketd.toml");
        let hash = hash_password(&ctx.ticketd, &config)?;
        std::fs::write(
            &config,
            format!(
                r#"# Written by the ticketd benchmark: the agents' page on the 1M store.
[smtp]
host = "127.0.0.1"
port = {sink}
tls = "none"
from_address = "{SUPPORT}"

[store]
data_dir = "{data}"

[tickets]
templates_dir = "{templates}"

[web]
listen = "127.0.0.1:0"

[[web.agents]]
name = "{AGENT}"
password_hash = "{hash}"
"#,
                sink = ctx.sink.port,
                data = data_dir.display(),
                templates = ctx.templates.display(),
            ),
        )?;
        let mut child = Ticketd::start(&Launch {
            binary: &ctx.ticketd,
            config: &config,
            args: &["web"],
            notify: None,
            keep: |l| l.contains("listening on http://"),
            perf: None,
        })?;
        let addr = loop {
            if let Some((_, line)) = child.line_with("listening on http://") {
                let rest = &line[line.find("http://").unwrap_or(0) + "http://".len()..];
                let end = rest.find('/').unwrap_or(rest.len());
                break rest[..end]
                    .parse::<SocketAddr>()
                    .with_context(|| format!("no address in {line:?}"))?;
            }
            if let Some(status) = child.try_wait() {
                bail!(
                    "`ticketd web` exited ({status}) before listening:\n{}",
                    child.log_dump()
                );
            }
            if child.started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "`ticketd web` did not listen within 2 minutes:\n{}",
                    child.log_dump()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let started_in = child.started.elapsed();
        let mut http = Http::connect(addr)?;
        let cookie = login(&mut http)?;
        Ok(WebPage {
            child,
            addr,
            http,
            cookie,
            started_in,
        })
    }

    /// GET `path` with the agent's session; the body of a 200 answer.
    pub fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        let r = self.http.request("GET", path, Some(&self.cookie), None)?;
        if r.status != 200 {
            bail!("GET {path}: HTTP {}", r.status);
        }
        Ok(r.body)
    }

    /// Logs out (so the cached store keeps no live session) and stops the
    /// server.
    pub fn stop(mut self) -> Result<()> {
        let page = self.get("/")?;
        let csrf = csrf_in(&page)?;
        let r = self.http.request(
            "POST",
            "/logout",
            Some(&self.cookie),
            Some(&format!("csrf={}", url_encode(&csrf))),
        )?;
        if r.status != 303 {
            bail!("POST /logout: HTTP {}", r.status);
        }
        self.child.stop(Duration::from_secs(10));
        Ok(())
    }
}

fn hash_password(binary: &Path, config: &Path) -> Result<String> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ticketd hash-password")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !hash.starts_with("$argon2") {
        bail!(
            "ticketd hash-password failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(hash)
}

/// The login form's way in: its CSRF token and cookie, then the password.
/// Returns the `Cookie` header value of the session.
fn login(http: &mut Http) -> Result<String> {
    let page = http.request("GET", "/login", None, None)?;
    if page.status != 200 {
        bail!("GET /login: HTTP {}", page.status);
    }
    let login_cookie = page
        .cookie("ticketd_login")
        .context("GET /login set no ticketd_login cookie")?;
    let csrf = csrf_in(&page.body)?;
    let form = format!(
        "csrf={}&agent={}&password={}",
        url_encode(&csrf),
        url_encode(AGENT),
        url_encode(PASSWORD)
    );
    let r = http.request(
        "POST",
        "/login",
        Some(&format!("ticketd_login={login_cookie}")),
        Some(&form),
    )?;
    if r.status != 303 {
        bail!(
            "POST /login: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let token = r
        .cookie("ticketd_session")
        .context("the login set no session cookie")?;
    Ok(format!("ticketd_session={token}"))
}

/// The hidden CSRF field of the first form on a page.
fn csrf_in(html: &[u8]) -> Result<String> {
    let html = String::from_utf8_lossy(html);
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).context("no csrf field on the page")? + marker.len();
    let len = html[start..].find('"').context("unterminated csrf field")?;
    Ok(html[start..start + len].to_string())
}

/// Percent-encoding for a query string or a form field.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP/1.1 response, read whole.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the cookie `name` this response sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, c)| {
                let pair = c.split(';').next()?;
                let (k, v) = pair.split_once('=')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
    }
}

/// A kept-alive HTTP/1.1 connection; reconnects when the server closes.
struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Result<Http> {
        let mut h = Http { addr, conn: None };
        h.open()?;
        Ok(h)
    }

    fn open(&mut self) -> Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.conn = Some(BufReader::with_capacity(64 * 1024, s));
        }
        self.conn.as_mut().context("no connection")
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> Result<Reply> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ticketd-bench\r\n\
             Accept: text/html\r\nConnection: keep-alive\r\n",
            self.addr
        );
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let Some(body) = form {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(body) = form {
            req.push_str(body);
        }
        let conn = self.open()?;
        conn.get_mut().write_all(req.as_bytes())?;
        let reply = read_reply(conn).with_context(|| format!("{method} {path}"))?;
        if reply
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = None;
        }
        Ok(reply)
    }
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("the server closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("the connection closed inside the header");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = reply.body.len();
            reply.body.resize(at + size, 0);
            r.read_exact(&mut reply.body[at..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = reply.header("content-length") {
        let n: usize = n.parse().context("bad Content-Length")?;
        reply.body.resize(n, 0);
        r.read_exact(&mut reply.body)?;
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        r.read_to_end(&mut reply.body)?;
    }
    Ok(reply)
}

/// Times `n` GETs of `path(i)`; checks each page with `check(i, body)`.
pub fn time_gets(
    page: &mut WebPage,
    n: usize,
    path: impl Fn(usize) -> String,
    mut check: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = path(i);
        let t = Instant::now();
        let body = page.get(&p)?;
        out.push(t.elapsed());
        check(i, &body).with_context(|| format!("GET {p}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(url_encode("Kq7Zp-R_2.~"), "Kq7Zp-R_2.~");
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn csrf_field_is_found() {
        let html = b"<form><input type=\"hidden\" name=\"csrf\" value=\"abc123\"></form>";
        assert_eq!(csrf_in(html).unwrap(), "abc123");
        assert!(csrf_in(b"<p>no form</p>").is_err());
    }
}
