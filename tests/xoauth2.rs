//! SASL XOAUTH2, as Google Workspace and Microsoft 365 want it, against the
//! rig's real Dovecot (IMAP) and Postfix (SMTP AUTH through Dovecot's
//! SASL). Dovecot checks each token at the rig's tokeninfo port, which this
//! test serves the way an identity provider's tokeninfo endpoint answers:
//! the token's user for a token it issued, an error for any other.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ticketd::rig::MailRig;

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "ya29.a0AfB_byC-rig-issued-token";

/// Answers `GET /tokeninfo?access_token=T` until the test ends: 200 with
/// the support user's e-mail for `TOKEN`, 400 otherwise. Every token asked
/// about is kept, in order.
fn serve_tokeninfo(port: u16) -> Arc<Mutex<Vec<String>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let token = request
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.split_once("access_token="))
                .map(|(_, t)| t.to_string())
                .unwrap_or_default();
            seen.lock().unwrap().push(token.clone());
            let (status, body) = if token == TOKEN {
                (
                    "200 OK",
                    format!("{{\"email\":\"{SUPPORT}\",\"expires_in\":3599}}"),
                )
            } else {
                (
                    "400 Bad Request",
                    "{\"error_description\":\"Invalid Value\"}".to_string(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    asked
}

/// The setup's config with XOAUTH2 for IMAP and SMTP (implicit TLS with
/// the rig's CA), the token printed by a command at every login.
fn use_xoauth2(rig: &MailRig, s: &Setup, token_file: &Path) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    let command = format!("password_command = \"cat {}\"", token_file.display());
    let imap_password = format!(
        "password_file = \"{}\"",
        s.dir.path().join("password").display()
    );
    assert!(text.contains(&imap_password), "{text}");
    let text = text
        .replacen(&imap_password, &format!("{command}\nauth = \"xoauth2\""), 1)
        .replacen(
            &format!("port = {}\ntls = \"none\"\n", rig.smtp_port()),
            &format!(
                "port = {}\ntls = \"implicit\"\nca_file = \"{}\"\nusername = \"{SUPPORT}\"\n\
                 {command}\nauth = \"xoauth2\"\n",
                rig.smtps_port(),
                rig.ca_file().display()
            ),
            1,
        );
    assert!(text.contains("tls = \"implicit\""), "{text}");
    std::fs::write(&s.config, text).unwrap();
}

#[test]
fn xoauth2_logs_in_to_imap_and_smtp_with_a_fresh_token() {
    let rig = MailRig::start().unwrap();
    let asked = serve_tokeninfo(rig.tokeninfo_port());
    let s = setup(&rig, Imap::Plain, None);
    let token_file = s.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    use_xoauth2(&rig, &s, &token_file);

    let buyer = "oauth-buyer@buyer.test";
    let mail = buyer_mail(
        buyer,
        "Koper",
        "Pakket beschadigd",
        "oauth1@buyer.test",
        "Mijn kaart is geknakt aangekomen.",
        "",
    );
    rig.send(buyer, &[SUPPORT], &mail).unwrap();
    rig.wait_for_mail(SUPPORT, 1, WAIT).unwrap();

    let out = ticketd(&s.config, &["poll", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(!log.contains(TOKEN), "a token in the log:\n{log}");
    assert_eq!(export(&s.config).len(), 1, "{log}");
    // The ack went out over SMTP, logged in with the token.
    rig.wait_for_mail(buyer, 1, WAIT).unwrap();
    let ack = String::from_utf8_lossy(&rig.maildir_messages(buyer)[0]).into_owned();
    assert!(ack.contains("[WN-000001]"), "{ack}");
    // Dovecot asked about the token for the IMAP login and Postfix's.
    let asked_now = asked.lock().unwrap().clone();
    assert!(
        asked_now.len() >= 2 && asked_now.iter().all(|t| t == TOKEN),
        "{asked_now:?}"
    );

    // A token the provider does not know is a refused login, said plainly.
    std::fs::write(&token_file, "ya29.expired\n").unwrap();
    let out = ticketd(&s.config, &["poll", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("IMAP login as support@example.test was refused"),
        "{err}"
    );
    assert!(!err.contains("ya29.expired"), "{err}");
}
