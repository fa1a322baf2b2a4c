//! The agents' web page end to end: `ticketd web` runs as a child process on
//! a free loopback port against a store filled by `ticketd ingest` with mail
//! written here (a buyer's photo with a PDF and a HEIC beside it, and an HTML
//! mail carrying a script and a tracking pixel). `agents_page_over_http`
//! checks what a plain HTTP client sees: login, sessions, CSRF, headers,
//! attachments and sanitized mail. `browser_finds_ticket_sees_photo_and_replies`
//! does what an agent does, in headless Chromium driven over WebDriver, and
//! leaves screenshots in target/web-screenshots/ for a person to look at.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const AGENT: &str = "anna";
const PASSWORD: &str = "correct horse battery staple";
/// The photo mail's order number; the HTML mail has another.
const ORDER: &str = "Kq7ZpR2mXw9LtB4nVc8sHd";
const HTML_ORDER: &str = "7TgWq2LmPz4XcVb8NnRs1K";
/// A real 120x80 JPEG, so a browser can decode it.
const JPEG_B64: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/4gHYSUNDX1BST0ZJTEUAAQEAAAHIAAAAAAQwAABtbnRyUkdCIFhZWiAH4AABAAEAAAAAAABhY3NwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAA9tYAAQAAAADTLQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAlkZXNjAAAA8AAAACRyWFlaAAABFAAAABRnWFlaAAABKAAAABRiWFlaAAABPAAAABR3dHB0AAABUAAAABRyVFJDAAABZAAAAChnVFJDAAABZAAAAChiVFJDAAABZAAAAChjcHJ0AAABjAAAADxtbHVjAAAAAAAAAAEAAAAMZW5VUwAAAAgAAAAcAHMAUgBHAEJYWVogAAAAAAAAb6IAADj1AAADkFhZWiAAAAAAAABimQAAt4UAABjaWFlaIAAAAAAAACSgAAAPhAAAts9YWVogAAAAAAAA9tYAAQAAAADTLXBhcmEAAAAAAAQAAAACZmYAAPKnAAANWQAAE9AAAApbAAAAAAAAAABtbHVjAAAAAAAAAAEAAAAMZW5VUwAAACAAAAAcAEcAbwBvAGcAbABlACAASQBuAGMALgAgADIAMAAxADb/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdBRkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT0//wAARCABQAHgDASIAAhEBAxEB/8QAGgAAAwADAQAAAAAAAAAAAAAAAAECAwQFBv/EAC8QAAICAgECAwYFBQAAAAAAAAABAgMEBREhMQYSQRMUYXGRwURRgYKhMjRzksL/xAAYAQEAAwEAAAAAAAAAAAAAAAADAgQFBv/EABwRAQEBAQACAwAAAAAAAAAAAAEAAhEDMRIhIv/aAAwDAQACEQMRAD8A7TJYMTMHJaqyZLG2Sx8kawyWwZLHyRrDJY2yWPkjWTEwZLHyRrDJY2Sx8kayZLGyWx8kawwJYDBGt2GS2Nks5TJbKwyWNktj5I1kyWNksfJGsmJgxMbJGsmyWNksfJGsmxMGSx8kawyWNksfJGsmAmAwRrdhsljZLOUyW0t3vDH4r9n3M+tzbNnO6nKx63XFd0nx37dTX8L/AIr9n3NTI3+bJShH2dfpzGPX+WXsPMlV0d02/oK405ewqg+Ywmor5JyNXW6rOo2ld1tHlrjJtvzxfo/iZfCrbeW2+W/J/wBGnqszKs3FVdmTdKDk+Yym2uzJ5PoovetsbHFWb4ljRJ8RcU5fJLkvY7aOsyfc8PGqUa0vNyvz6mPY5SwvE0L5f0KKUvk1wZNjqY7PJ97w8qlxml5uX+XTnoIFGnaU03a6ncY1ca7IuMpLjo+vHX9TZ0e3yNjkW13wqioR5XkTXr8Wae6ycfE1NesosVk+im0+yXX+WYvCP97f/j+5Pn57Ro2e5y8q2/XezpUJWezTSfPSXT1+Bu511Ph3EpqxaK53Wc8zmu/Hdv6nns2br2t84943ya/2PRZ9NPiLEotxciuF0O8JPtz3T+gvxDnfVDtMFR4h1Ntk6IVZVXKUor145+jPItnroOjw9p7q53wsyreWoxfrxwv0R49ljwHvnqPbDATAthEt2GS2DJZymS2VhksbZLHyRrJiYMlj5I1hksbJY+SNZMljZLY+SNYZLBibHyRrJksbJY+SJYYEsBgoLdhksbJZymS2VkxMGJjZI1k2Sxslj5I1k2JgyWPkjWGSxslj5I1kyWNksfJGsMlsbJY+SNZMBMBgjW//2Q==";
const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
/// A photo inside a mail attached whole.
const BOX_PNG: &[u8] = b"\x89PNG\r\n\x1a\n a dented box";
const HEIC: &[u8] = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic not really an image";

fn jpeg() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(JPEG_B64)
        .unwrap()
}

/// The page's link to the attachment with these bytes (the first, when
/// several rows have them): `/attachments/SHA256?id=ROW`.
fn link_to(html: &str, sha: &str) -> String {
    let start = format!("\"/attachments/{sha}?id=");
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no link to {sha} in {html}"));
    let rest = &html[at + 1..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn b64_lines(bytes: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn photo_mail() -> String {
    format!(
        "From: Lotte de Vries <lotte@buyer.test>\r\n\
         To: support@example.test\r\n\
         Subject: Kaart beschadigd aangekomen\r\n\
         Date: Mon, 04 May 2026 10:00:00 +0200\r\n\
         Message-ID: <photo-1@buyer.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hallo,\r\n\
         \r\n\
         Mijn kaart is beschadigd aangekomen. Bestelnummer: {ORDER}\r\n\
         De foto en de bon zitten erbij.\r\n\
         \r\n\
         Groet, Lotte\r\n\
         --b1\r\n\
         Content-Type: image/jpeg; name=\"IMG_0001.jpg\"\r\n\
         Content-Disposition: attachment; filename=\"IMG_0001.jpg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {jpeg}\r\n\
         --b1\r\n\
         Content-Type: application/pdf; name=\"receipt.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"receipt.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {pdf}\r\n\
         --b1\r\n\
         Content-Type: image/heic; name=\"IMG_0002.HEIC\"\r\n\
         Content-Disposition: attachment; filename=\"IMG_0002.HEIC\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {heic}\r\n\
         --b1--\r\n",
        jpeg = b64_lines(&jpeg()),
        pdf = b64_lines(PDF),
        heic = b64_lines(HEIC),
    )
}

fn html_mail() -> String {
    format!(
        "From: Sam Carter <sam@buyer.test>\r\n\
         To: support@example.test\r\n\
         Subject: Where is my order?\r\n\
         Date: Mon, 04 May 2026 11:00:00 +0200\r\n\
         Message-ID: <html-1@buyer.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
         \r\n\
         --b2\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hi, my order {HTML_ORDER} has not arrived yet. Can you check?\r\n\
         --b2\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         \r\n\
         <html><body><p>Hi, my order <b>{HTML_ORDER}</b> has not arrived yet.</p>\
         <script>alert('xss')</script>\
         <img src=\"http://tracker.example/open.gif\" alt=\"tracking pixel\">\
         <p onclick=\"steal()\">Thanks, Sam</p></body></html>\r\n\
         --b2--\r\n"
    )
}

fn ticketd(config: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ticketd {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ticketd web` on its own store and port; SIGTERM (by PID) on drop.
struct Web {
    child: Option<Child>,
    base: String,
    log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Web {
    fn start() -> Web {
        Web::start_with(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"))
    }

    fn start_with(templates: &Path) -> Web {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ticketd.toml");
        // hash-password needs no config, so the file can be written after.
        let hash = ticketd(&config, &["hash-password"], Some(&format!("{PASSWORD}\n")));
        let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        std::fs::write(
            &config,
            format!(
                r#"
# Replies are queued; nothing listens on port 9, and only `run` would send.
[smtp]
host = "127.0.0.1"
port = 9
tls = "none"
from_address = "support@example.test"

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
                data = dir.path().join("data").display(),
                templates = templates.display(),
            ),
        )
        .unwrap();
        let photo = dir.path().join("photo.eml");
        let html = dir.path().join("html.eml");
        std::fs::write(&photo, photo_mail()).unwrap();
        std::fs::write(&html, html_mail()).unwrap();
        let out = ticketd(
            &config,
            &["ingest", photo.to_str().unwrap(), html.to_str().unwrap()],
            None,
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(said.contains("new ticket WN-000001"), "{said}");
        assert!(said.contains("new ticket WN-000002"), "{said}");
        // The HTML mail's ticket has waited too long.
        ticketd::store::Store::open(&dir.path().join("data"))
            .unwrap()
            .conn()
            .execute(
                "UPDATE tickets SET due_at = CAST(strftime('%s', 'now') AS INTEGER) - 5 * 3600 - 60 WHERE id = 2",
                [],
            )
            .unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_ticketd"))
            .arg("--config")
            .arg(&config)
            .arg("web")
            .env("TICKETD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on ".len()..];
                    let end = rest["http://".len()..]
                        .find('/')
                        .map(|e| e + "http://".len())
                        .unwrap_or(rest.len());
                    let _ = tx.send(rest[..end].to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut web = Web {
            child: Some(child),
            base: String::new(),
            log,
            dir,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => web.base = base,
            Err(_) => panic!("`ticketd web` did not start; log:\n{}", web.log()),
        }
        web
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("ticketd.toml")
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid)
            .status()
            .unwrap()
            .success());
    }

    /// A session for AGENT, as the login form gives it.
    fn log_in(&self, http: &Http) -> Result<String, Reply> {
        self.log_in_with(http, PASSWORD)
    }

    fn log_in_with(&self, http: &Http, password: &str) -> Result<String, Reply> {
        self.log_in_from(http, password, None)
            .map(|(session, _)| session)
    }

    /// Logs in from a browser that holds `device` (the cookie a login
    /// there set before, if any); returns the session cookie and the
    /// device cookie set now, if one was.
    fn log_in_from(
        &self,
        http: &Http,
        password: &str,
        device: Option<&str>,
    ) -> Result<(String, Option<String>), Reply> {
        let page = http.get("/login", None);
        let (login_cookie, _) = page.cookie("ticketd_login").unwrap();
        let mut cookies = format!("ticketd_login={login_cookie}");
        if let Some(d) = device {
            cookies.push_str(&format!("; {d}"));
        }
        let r = http.post(
            "/login",
            Some(&cookies),
            &[],
            &[
                ("csrf", &csrf_in(&page.text())),
                ("agent", AGENT),
                ("password", password),
            ],
        );
        let device = r
            .cookie("ticketd_device")
            .map(|(token, _)| format!("ticketd_device={token}"));
        match r.cookie("ticketd_session") {
            Some((token, _)) => Ok((format!("ticketd_session={token}"), device)),
            None => Err(r),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Polls until `ok`, for what a signal sets going.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response, read whole.
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
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The body, with minijinja's escaped `/` put back so URLs read plainly
    /// (this turns no text into markup).
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).replace("&#x2f;", "/")
    }
    /// `name=value` of the cookie this response sets, with its attributes.
    fn cookie(&self, name: &str) -> Option<(String, String)> {
        self.all("set-cookie").into_iter().find_map(|c| {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| (v.to_string(), attrs.to_string()))
        })
    }
}

/// No cookie jar and no redirects followed: each step says what it sends.
struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(base: &str) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Http {
            agent,
            base: base.to_string(),
        }
    }

    fn read(res: ureq::http::Response<ureq::Body>) -> Reply {
        let (parts, mut body) = res.into_parts();
        Reply {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.read_to_vec().unwrap(),
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.get_with(path, cookie, &[])
    }

    fn get_with(&self, path: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::read(req.call().unwrap())
    }

    fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::read(req.send_form(form.iter().copied()).unwrap())
    }
}

/// The hidden CSRF field of the first form on a page.
fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a csrf field") + marker.len();
    html[start..start + 64].to_string()
}

fn sha256(bytes: &[u8]) -> String {
    ticketd::core::parse::sha256_hex(bytes)
}

fn assert_safe_headers(r: &Reply, what: &str) {
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{what}: CSP {csp:?}");
    assert!(
        !csp.contains("script-src"),
        "{what}: CSP allows script: {csp:?}"
    );
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

#[test]
fn password_guessing_is_slowed_down() {
    let web = Web::start();
    let http = Http::new(&web.base);
    for _ in 0..5 {
        let r = web.log_in_with(&http, "guess").unwrap_err();
        assert_eq!(r.status, 401, "{}", r.text());
    }
    // Now even the right password has to wait; the password is not checked.
    let r = web.log_in(&http).unwrap_err();
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("Too many failed logins"), "{}", r.text());
    // The log line is written by the server's logger, which may trail
    // the response a little.
    let logged = Instant::now();
    while !web.log().contains("too many failed attempts") {
        assert!(
            logged.elapsed() < Duration::from_secs(5),
            "no log line; log:\n{}",
            web.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1100).saturating_sub(logged.elapsed()));
    let cookie = web.log_in(&http).unwrap_or_else(|r| panic!("{}", r.text()));
    assert_eq!(http.get("/", Some(&cookie)).status, 200);
    // The success cleared the name: a wrong password is a plain 401 again.
    assert_eq!(web.log_in_with(&http, "guess").unwrap_err().status, 401);
}

/// A guesser who keeps an agent's name throttled (one wrong password each
/// time the wait ends) does not lock the agent out of the browser they
/// logged in from before: that browser's device cookie has a throttle of
/// its own.
#[test]
fn a_throttled_name_still_logs_in_from_a_known_browser() {
    let web = Web::start();
    let http = Http::new(&web.base);
    let (_, device) = web
        .log_in_from(&http, PASSWORD, None)
        .unwrap_or_else(|r| panic!("{}", r.text()));
    let device = device.expect("a login sets a device cookie");
    for _ in 0..6 {
        let _ = web.log_in_with(&http, "guess");
    }
    assert_eq!(web.log_in(&http).unwrap_err().status, 429);
    let (session, again) = web
        .log_in_from(&http, PASSWORD, Some(&device))
        .unwrap_or_else(|r| panic!("the known browser was locked out too: {}", r.status));
    assert_eq!(http.get("/", Some(&session)).status, 200);
    assert!(again.is_none(), "a known browser keeps its device cookie");
    // The guesser's name stays throttled; a made-up device cookie is a
    // stranger's browser.
    assert_eq!(web.log_in(&http).unwrap_err().status, 429);
    let fake = format!("ticketd_device={}", "ab".repeat(32));
    assert_eq!(
        web.log_in_from(&http, PASSWORD, Some(&fake))
            .unwrap_err()
            .status,
        429
    );
}

#[test]
fn sighup_reloads_the_agents_and_the_pages() {
    let templates = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        templates.path(),
    );
    let web = Web::start_with(templates.path());
    let http = Http::new(&web.base);
    let cookie = web.log_in(&http).unwrap_or_else(|r| panic!("{}", r.text()));
    assert_eq!(http.get("/", Some(&cookie)).status, 200);

    // A broken template: logged, and the running pages kept.
    let login_html = templates.path().join("web/login.html");
    let original = std::fs::read_to_string(&login_html).unwrap();
    std::fs::write(&login_html, format!("{original}{{% if %}}")).unwrap();
    web.signal("HUP");
    eventually("the failed reload is logged", || {
        web.log().contains("web: reload failed")
    });
    assert_eq!(http.get("/login", None).status, 200);
    assert_eq!(http.get("/", Some(&cookie)).status, 200);

    // An edited page shows; the agent, taken out of the config, is logged
    // out and can no longer log in.
    std::fs::write(
        &login_html,
        original.replace("</form>", "</form><p>Nieuw: reload-marker</p>"),
    )
    .unwrap();
    let config = std::fs::read_to_string(web.config()).unwrap();
    let agent_at = config.find("[[web.agents]]").unwrap();
    std::fs::write(
        web.config(),
        format!(
            "{}[[web.agents]]\nname = \"someone-else\"\npassword_hash = {}",
            &config[..agent_at],
            config[agent_at..]
                .lines()
                .find(|l| l.starts_with("password_hash"))
                .and_then(|l| l.split_once(" = "))
                .map(|(_, v)| v.to_string())
                .unwrap()
        ),
    )
    .unwrap();
    web.signal("HUP");
    eventually("the edited login page is served", || {
        http.get("/login", None).text().contains("reload-marker")
    });
    let r = http.get("/", Some(&cookie));
    assert_eq!(r.status, 303, "a removed agent's session ends");
    assert!(web.log_in(&http).is_err());
    assert!(web.log().contains("web: agents and templates reloaded"));
}

#[test]
fn a_new_password_ends_the_sessions_of_the_old_one() {
    let web = Web::start();
    let http = Http::new(&web.base);
    let old = web.log_in(&http).unwrap_or_else(|r| panic!("{}", r.text()));
    assert_eq!(http.get("/", Some(&old)).status, 200);

    // The operator rotates the agent's password (a stolen cookie must die
    // with the old one) and reloads.
    let new_password = "a-new-test-password";
    let hash = ticketd(
        &web.config(),
        &["hash-password"],
        Some(&format!("{new_password}\n")),
    );
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
    let config = std::fs::read_to_string(web.config()).unwrap();
    let line = config
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .unwrap()
        .to_string();
    std::fs::write(
        web.config(),
        config.replace(&line, &format!("password_hash = \"{hash}\"")),
    )
    .unwrap();
    web.signal("HUP");
    eventually("the reload is logged", || {
        web.log().contains("web: agents and templates reloaded")
    });
    assert_eq!(
        http.get("/", Some(&old)).status,
        303,
        "the old session ends"
    );
    assert!(web.log_in(&http).is_err(), "the old password is refused");
    let new = web
        .log_in_with(&http, new_password)
        .unwrap_or_else(|r| panic!("{}", r.text()));
    assert_eq!(http.get("/", Some(&new)).status, 200);
}

#[test]
fn the_same_bytes_under_another_name_download_under_that_name() {
    let web = Web::start();
    let http = Http::new(&web.base);
    let cookie = web.log_in(&http).unwrap_or_else(|r| panic!("{}", r.text()));
    // Another buyer sends the very photo of WN-000001, under a name and a
    // type of their own.
    let mail = web.dir.path().join("same-photo.eml");
    std::fs::write(
        &mail,
        format!(
            "From: Noor Bakker <noor@buyer.test>\r\nTo: support@example.test\r\n\
             Subject: Foto van de schade\r\nMessage-ID: <same-photo@buyer.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"n\"\r\n\r\n\
             --n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZie de foto.\r\n\
             --n\r\nContent-Type: application/octet-stream; name=\"voorkant-doos.jpeg\"\r\n\
             Content-Disposition: attachment; filename=\"voorkant-doos.jpeg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--n--\r\n",
            b64_lines(&jpeg())
        ),
    )
    .unwrap();
    let out = ticketd(&web.config(), &["ingest", mail.to_str().unwrap()], None);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("new ticket WN-000003"), "{said}");

    let sha = sha256(&jpeg());
    let first = link_to(&http.get("/tickets/WN-000001", Some(&cookie)).text(), &sha);
    let second = link_to(&http.get("/tickets/WN-000003", Some(&cookie)).text(), &sha);
    assert_ne!(first, second);
    for (url, name, kind) in [
        (&first, "IMG_0001.jpg", "inline"),
        (&second, "voorkant-doos.jpeg", "attachment"),
    ] {
        let r = http.get(url, Some(&cookie));
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(r.body, jpeg());
        let disposition = r.header("content-disposition").unwrap();
        assert!(
            disposition.starts_with(kind) && disposition.contains(&format!("filename=\"{name}\"")),
            "{url}: {disposition}"
        );
    }
    // A row of other bytes names no attachment of these.
    let pdf_row = link_to(
        &http.get("/tickets/WN-000001", Some(&cookie)).text(),
        &sha256(PDF),
    );
    let id = pdf_row.rsplit('=').next().unwrap();
    let r = http.get(&format!("/attachments/{sha}?id={id}"), Some(&cookie));
    assert_eq!(r.status, 404);
}

#[test]
fn agents_page_over_http() {
    let web = Web::start();
    let http = Http::new(&web.base);

    // Nothing without a session: pages go to the login page, POSTs are refused.
    let r = http.get("/", None);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    assert_safe_headers(&r, "redirect");
    let jpeg_sha = sha256(&jpeg());
    let r = http.get(&format!("/attachments/{jpeg_sha}"), None);
    assert_eq!(r.status, 303, "attachments need a session too");
    let r = http.post("/tickets/WN-000001/close", None, &[], &[("csrf", "x")]);
    assert_eq!(r.status, 403);

    // The login page: its own CSRF cookie, strict and HttpOnly.
    let page = http.get("/login", None);
    assert_eq!(page.status, 200);
    assert_safe_headers(&page, "login page");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let (login_cookie, attrs) = page.cookie("ticketd_login").unwrap();
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"),
        "{attrs}"
    );
    // Secure where the browser takes it: on loopback (a secure context
    // even over http), and behind an HTTPS proxy that says so; not over
    // plain http to another host, where it would end every login.
    assert!(attrs.contains("Secure"), "{attrs}");
    let proxied = [
        ("Host", "desk.example.test"),
        ("X-Forwarded-Proto", "https"),
    ];
    let (_, attrs) = http
        .get_with("/login", None, &proxied)
        .cookie("ticketd_login")
        .unwrap();
    assert!(attrs.contains("Secure"), "{attrs}");
    let (_, attrs) = http
        .get_with("/login", None, &[("Host", "10.0.0.5:8025")])
        .cookie("ticketd_login")
        .unwrap();
    assert!(!attrs.contains("Secure"), "{attrs}");
    let login_cookie = format!("ticketd_login={login_cookie}");
    let login_csrf = csrf_in(&page.text());

    // Wrong password and unknown agent get the same answer and no session.
    let wrong = http.post(
        "/login",
        Some(&login_cookie),
        &[],
        &[
            ("csrf", &login_csrf),
            ("agent", AGENT),
            ("password", "guess"),
        ],
    );
    let unknown = http.post(
        "/login",
        Some(&login_cookie),
        &[],
        &[
            ("csrf", &login_csrf),
            ("agent", "mallory"),
            ("password", PASSWORD),
        ],
    );
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, 401);
        assert!(r.text().contains("Unknown agent or wrong password."));
        assert!(r.cookie("ticketd_session").is_none());
    }
    // The right password without the login form's token is refused too.
    let r = http.post(
        "/login",
        None,
        &[],
        &[
            ("csrf", &login_csrf),
            ("agent", AGENT),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(r.cookie("ticketd_session").is_none());
    let log = web.log();
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains("guess") && !log.contains(PASSWORD), "{log}");

    // Logged in: the session cookie is HttpOnly and SameSite=Strict.
    let r = http.post(
        "/login",
        Some(&login_cookie),
        &[],
        &[
            ("csrf", &login_csrf),
            ("agent", AGENT),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let (token, attrs) = r.cookie("ticketd_session").unwrap();
    assert_eq!(token.len(), 64, "256 random bits, hex");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"),
        "{attrs}"
    );
    assert!(attrs.contains("Max-Age="), "sessions expire: {attrs}");
    let cookie = format!("ticketd_session={token}");
    // Only the token's hash is stored.
    let store = ticketd::store::Store::open(&web.data_dir()).unwrap();
    let stored: String = store
        .conn()
        .query_row("SELECT token_sha256 FROM web_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, sha256(token.as_bytes()));

    // The queue lists both open tickets, the overdue one first and marked.
    let queue = http.get("/", Some(&cookie));
    assert_eq!(queue.status, 200);
    assert_safe_headers(&queue, "queue");
    let text = queue.text();
    let first = text
        .find("/tickets/WN-000001")
        .expect("WN-000001 in the queue");
    let second = text
        .find("/tickets/WN-000002")
        .expect("WN-000002 in the queue");
    assert!(second < first, "due first: {text}");
    assert!(text.contains("1 overdue"), "{text}");
    assert!(text.contains("<tr class=\"overdue\">"), "{text}");
    assert!(text.contains("overdue by 5 h "), "{text}");
    assert!(text.contains("1 d 23 h left"), "{text}");

    // Search by order number finds exactly its ticket.
    let r = http.get(&format!("/search?q={ORDER}"), Some(&cookie));
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("href=\"/tickets/WN-000001\""), "{text}");
    assert!(!text.contains("href=\"/tickets/WN-000002\""), "{text}");
    // Search input is data, never markup.
    let r = http.get("/search?q=%3Cscript%3Ex%3C%2Fscript%3E", Some(&cookie));
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("<script>x"), "{}", r.text());

    // The ticket page: facts, the photo inline, the others as downloads.
    let page = http.get("/tickets/WN-000001", Some(&cookie));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains(ORDER), "{html}");
    let jpeg_url = link_to(&html, &jpeg_sha);
    assert!(html.contains(&format!("<img src=\"{jpeg_url}\"")), "{html}");
    let pdf_sha = sha256(PDF);
    let heic_sha = sha256(HEIC);
    let pdf_url = link_to(&html, &pdf_sha);
    let heic_url = link_to(&html, &heic_sha);
    assert!(
        html.contains(&format!("href=\"{pdf_url}\" download")),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"{heic_url}\" download")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("src=\"{heic_url}\"")),
        "HEIC is not shown inline"
    );
    assert!(!html.contains("<script"), "the page runs no script");
    let csrf = csrf_in(&html);
    assert_ne!(csrf, login_csrf);

    // Attachments: the JPEG inline as what it is, everything else a download.
    let r = http.get(&jpeg_url, Some(&cookie));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("inline"));
    assert_eq!(r.body, jpeg());
    assert_safe_headers(&r, "jpeg");
    // Kept by the browser, but asked for again each time, so a logged-out
    // browser on a shared desk shows no photo from its cache.
    let cache = r.header("cache-control").unwrap();
    assert!(
        cache.contains("no-cache") && !cache.contains("immutable"),
        "{cache}"
    );
    let etag = format!("\"{jpeg_sha}\"");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let again = [("If-None-Match", etag.as_str())];
    let r = http.get_with(&jpeg_url, Some(&cookie), &again);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    for (url, name) in [(&pdf_url, "receipt.pdf"), (&heic_url, "IMG_0002.HEIC")] {
        let r = http.get(url, Some(&cookie));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let disposition = r.header("content-disposition").unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert!(
            disposition.contains(&format!("filename=\"{name}\"")),
            "{disposition}"
        );
        assert_safe_headers(&r, name);
    }
    // Only digests the attachments table knows are served.
    let raw_sha = ticketd::core::parse::raw_name(photo_mail().as_bytes());
    for path in [
        format!("/attachments/{}", "0".repeat(64)),
        format!("/attachments/{raw_sha}"),
        "/attachments/..%2F..%2Fticketd.sqlite3".to_string(),
        format!("/attachments/{}", jpeg_sha.to_uppercase()),
    ] {
        let r = http.get(&path, Some(&cookie));
        assert_eq!(r.status, 404, "{path}");
    }

    // Close and reopen: refused without the CSRF token, done with it.
    let r = http.post(
        "/tickets/WN-000001/close",
        Some(&cookie),
        &[],
        &[("x", "1")],
    );
    assert_eq!(r.status, 403);
    let r = http.post(
        "/tickets/WN-000001/close",
        Some(&cookie),
        &[],
        &[("csrf", &"0".repeat(64))],
    );
    assert_eq!(r.status, 403);
    let r = http.post(
        "/tickets/WN-000001/close",
        Some(&cookie),
        &[("Sec-Fetch-Site", "cross-site")],
        &[("csrf", &csrf)],
    );
    assert_eq!(
        r.status, 403,
        "a cross-site POST is refused even with the token"
    );
    let status = |web: &Web| -> String {
        ticketd::store::Store::open(&web.data_dir())
            .unwrap()
            .conn()
            .query_row("SELECT status FROM tickets WHERE id = 1", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(status(&web), "open");
    let r = http.post(
        "/tickets/WN-000001/close",
        Some(&cookie),
        &[],
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(status(&web), "closed");
    let page = http
        .get("/tickets/WN-000001?done=closed", Some(&cookie))
        .text();
    assert!(page.contains("Ticket closed.") && page.contains("/tickets/WN-000001/reopen"));
    let r = http.post(
        "/tickets/WN-000001/reopen",
        Some(&cookie),
        &[],
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(status(&web), "open");

    // The HTML mail: only in a sandboxed frame, sanitized, loading nothing.
    let page = http.get("/tickets/WN-000002", Some(&cookie)).text();
    assert!(
        !page.contains("tracker.example") && !page.contains("alert("),
        "{page}"
    );
    let frame_at = page.find("<iframe").expect("an iframe for the HTML part");
    let frame = &page[frame_at..frame_at + page[frame_at..].find('>').unwrap()];
    assert!(frame.contains("sandbox=\"\""), "{frame}");
    assert!(!frame.contains("allow-scripts"), "{frame}");
    let src_at = frame.find("src=\"").unwrap() + 5;
    let src = frame[src_at..src_at + frame[src_at..].find('"').unwrap()].replace("&amp;", "&");
    let r = http.get(&src, Some(&cookie));
    assert_eq!(r.status, 200, "{src}");
    let body = r.text();
    assert!(body.contains(HTML_ORDER), "{body}");
    assert!(
        !body.contains("<script") && !body.contains("alert("),
        "{body}"
    );
    assert!(!body.contains("tracker.example"), "{body}");
    assert!(!body.contains("onclick"), "{body}");

    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("sandbox") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("img-src"),
        "the mail frame loads no images: {csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    // Sam forwards the shop's mail as an attachment: its text is on the
    // page under Sam's, escaped like everything else, and its photo with
    // Sam's files.
    let forward = web.dir.path().join("forward.eml");
    std::fs::write(
        &forward,
        format!(
            "From: Sam Carter <sam@buyer.test>\r\nTo: support@example.test\r\n\
         Subject: Fwd: your order has shipped\r\nMessage-ID: <fwd-1@buyer.test>\r\n\
         In-Reply-To: <html-1@buyer.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n\
         --f\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the shop's mail.\r\n\
         --f\r\nContent-Type: message/rfc822\r\n\r\n\
         From: Card Shop <orders@shop.test>\r\nSubject: Shipped <b>today</b>\r\n\
         Date: Tue, 05 May 2026 09:30:00 +0200\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: text/plain\r\n\r\n\
         Your parcel is on its way, tracking 3SKAHU0099887766.\r\n\
         --s\r\nContent-Type: image/png; name=\"box.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--s--\r\n--f--\r\n",
            b64_lines(BOX_PNG)
        ),
    )
    .unwrap();
    let out = ticketd(&web.config(), &["ingest", forward.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = http.get("/tickets/WN-000002", Some(&cookie)).text();
    let attached = page
        .find("Mail attached to this message")
        .expect("the attached mail on the page");
    let shown = &page[attached..];
    for want in [
        "From: Card Shop &lt;orders@shop.test&gt;",
        "Subject: Shipped &lt;b&gt;today&lt;/b&gt;\n\nYour parcel",
        "Your parcel is on its way, tracking 3SKAHU0099887766.",
    ] {
        assert!(shown.contains(want), "{want} in {shown}");
    }
    let box_url = link_to(&page, &sha256(BOX_PNG));
    assert!(page.contains(&format!("src=\"{box_url}\"")), "{page}");
    let r = http.get(&box_url, Some(&cookie));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BOX_PNG);

    // A reply goes into the thread and the outbox.
    let r = http.post(
        "/tickets/WN-000001/reply",
        Some(&cookie),
        &[],
        &[("body", "Hoi Lotte,\r\n\r\nWe bekijken de foto.")],
    );
    assert_eq!(r.status, 403, "a reply needs the token too");
    let r = http.post(
        "/tickets/WN-000001/reply",
        Some(&cookie),
        &[],
        &[
            ("csrf", &csrf),
            ("body", "Hoi Lotte,\r\n\r\nWe bekijken de foto."),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let page = http
        .get("/tickets/WN-000001?done=replied", Some(&cookie))
        .text();
    assert!(page.contains("We bekijken de foto."), "{page}");
    let queued: i64 = ticketd::store::Store::open(&web.data_dir())
        .unwrap()
        .conn()
        .query_row(
            "SELECT count(*) FROM outbox WHERE ticket_id = 1 AND raw LIKE '%We bekijken de foto.%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 1);

    // Logging out ends the session for good.
    let r = http.post("/logout", Some(&cookie), &[], &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let r = http.get("/", Some(&cookie));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let r = http.get_with(&jpeg_url, Some(&cookie), &again);
    assert_eq!(
        r.status, 303,
        "a cached photo is not confirmed after logout"
    );
}

// ---------------------------------------------------------------------------
// The browser.

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver as a child process, stopped by its PID on drop.
struct ChromeDriver {
    child: Child,
    url: String,
    http: ureq::Agent,
}

impl ChromeDriver {
    fn start(log: &Path) -> ChromeDriver {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http,
        };
        let start = Instant::now();
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.url))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return driver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let res = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, body) => self
                .http
                .post(&url)
                .content_type("application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let text = res.unwrap().body_mut().read_to_string().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {method} {path}: {text}"
        );
        v["value"].clone()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser<'d> {
    driver: &'d ChromeDriver,
    session: String,
    shots: PathBuf,
}

impl Browser<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }
    fn go(&self, url: &str) {
        self.driver
            .send("POST", &self.path("/url"), Some(json!({ "url": url })));
    }
    fn find(&self, css: &str) -> String {
        let v = self.driver.send(
            "POST",
            &self.path("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }
    fn click(&self, css: &str) {
        let id = self.find(css);
        self.driver
            .send("POST", &self.path(&format!("/element/{id}/click")), None);
    }
    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.driver.send(
            "POST",
            &self.path(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        );
    }
    fn script(&self, js: &str) -> Value {
        self.driver.send(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({ "script": js, "args": [] })),
        )
    }
    fn url(&self) -> String {
        self.driver
            .send("GET", &self.path("/url"), None)
            .as_str()
            .unwrap()
            .to_string()
    }
    fn source(&self) -> String {
        self.driver
            .send("GET", &self.path("/source"), None)
            .as_str()
            .unwrap()
            .to_string()
    }
    fn screenshot(&self, name: &str) {
        let png = self.driver.send("GET", &self.path("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(name), bytes).unwrap();
    }
    /// The URL once `ok` accepts it (a click on a submit button may return
    /// before the POST and its redirect are done), or after 20 s the URL
    /// as it is, for the caller's assertion to show.
    fn url_when(&self, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let url = self.url();
            let ready = self.script("return document.readyState;") == json!("complete");
            if (ok(&url) && ready) || start.elapsed() > Duration::from_secs(20) {
                return url;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn wait_for(&self, what: &str, js: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.script(js);
            if v != Value::Null && v != json!(false) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser<'_> {
    /// Ends the session, which quits Chromium, even when a step failed.
    fn drop(&mut self) {
        let _ = self
            .driver
            .http
            .delete(format!("{}/session/{}", self.driver.url, self.session))
            .call();
    }
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn browser_finds_ticket_sees_photo_and_replies() {
    assert!(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "the browser test needs Debian's chromium and chromium-driver: run `bash scripts/setup.sh` as root"
    );
    let web = Web::start();
    let profile = web.dir.path().join("chromium-profile");
    let driver = ChromeDriver::start(&web.dir.path().join("chromedriver.log"));
    let caps = json!({
        "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000",
                ],
            },
        }},
    });
    let session = driver.send("POST", "/session", Some(caps));
    let browser = Browser {
        driver: &driver,
        session: session["sessionId"].as_str().unwrap().to_string(),
        shots: screenshots_dir(),
    };

    // Any page sends an agent without a session to the login form.
    browser.go(&format!("{}/", web.base));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.type_into("input[name=agent]", AGENT);
    browser.type_into("input[name=password]", PASSWORD);
    browser.screenshot("01-login.png");
    browser.click("section.login button[type=submit]");
    let home = format!("{}/", web.base);
    assert_eq!(
        browser.url_when(|u| u == home),
        home,
        "{}\n{}",
        browser.source(),
        web.log()
    );
    assert!(browser.source().contains("WN-000001"));
    browser.screenshot("02-queue.png");

    // Search the order number from the header box.
    browser.type_into("header input[name=q]", ORDER);
    browser.click("header form.search button");
    let url = browser.url_when(|u| u.contains("/search?q="));
    assert!(url.contains("/search?q="), "{url}");
    browser.screenshot("03-search.png");
    browser.click("a[href='/tickets/WN-000001']");
    let url = browser.url_when(|u| u.ends_with("/tickets/WN-000001"));
    assert!(url.ends_with("/tickets/WN-000001"), "{url}");

    // The photo is there and decoded.
    let width = browser.wait_for(
        "the photo to load",
        "const img = document.querySelector('img.photo');
         return img && img.complete && img.naturalWidth > 0 ? img.naturalWidth : null;",
    );
    assert_eq!(width, json!(120), "the JPEG is 120 px wide");
    browser.screenshot("04-ticket.png");

    // Reply from the form.
    browser.type_into(
        "#reply-body",
        "Hoi Lotte,\nDank voor de foto. We zoeken het uit.\nWhatnot Support",
    );
    browser.click("#send-reply");
    // The POST answers with a redirect; the click may return before the
    // browser has followed it.
    browser.wait_for(
        "the redirect after the reply",
        "return location.href.includes('done=replied') && document.readyState === 'complete';",
    );
    let page = browser.source();
    assert!(page.contains("Reply queued"), "{page}");
    assert!(page.contains("We zoeken het uit."), "{page}");
    browser.script("window.scrollTo(0, document.body.scrollHeight); return true;");
    browser.screenshot("05-replied.png");

    // The HTML mail shows in its sandbox: the frame's document is not ours
    // to reach, and nothing in it ran.
    browser.go(&format!("{}/tickets/WN-000002", web.base));
    browser.script("document.querySelector('details').open = true; return true;");
    let reachable = browser.script(
        "const f = document.querySelector('iframe.mail');
         try { return f.contentDocument !== null; } catch (e) { return false; }",
    );
    assert_eq!(reachable, json!(false), "the mail frame is a sandbox");
    std::thread::sleep(Duration::from_millis(300));
    browser.screenshot("06-html-mail.png");

    drop(browser);
    drop(driver);
    eprintln!("screenshots in {}", screenshots_dir().display());
}
