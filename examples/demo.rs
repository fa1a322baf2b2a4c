//! The demo behind the README's first command: starts a private Dovecot and
//! Postfix, runs `ticketd run` against them, lets a few buyers write in (and
//! one vacation responder, which must not be answered), then shows the
//! tickets and the acknowledgements each buyer received.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ticketd::core::parse::parse;
use ticketd::rig::{MailRig, RIG_PASSWORD};

const SUPPORT: &str = "support@example.test";

fn mail(from: &str, name: &str, subject: &str, id: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {name} <{from}>\r\nTo: Whatnot Support <{SUPPORT}>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nDate: {date}\r\nMIME-Version: 1.0\r\n{extra}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        date = chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

fn wait_for(rig: &MailRig, user: &str, n: usize, daemon_log: &Path) -> Result<()> {
    rig.wait_for_mail(user, n, Duration::from_secs(30))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\n--- ticketd log ---\n{}",
                std::fs::read_to_string(daemon_log).unwrap_or_default()
            )
        })
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() -> Result<()> {
    let bin = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release/ticketd".into()),
    );
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo build --release)",
            bin.display()
        );
    }
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");

    println!("== Starting a private Dovecot (IMAP) and Postfix (SMTP) on loopback");
    let rig = MailRig::start().context("starting the mail rig")?;
    let dir = rig.dir().join("demo");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("imap-password"), RIG_PASSWORD)?;
    let config = dir.join("ticketd.toml");
    std::fs::write(
        &config,
        format!(
            r#"[imap]
host = "localhost"
port = {imap}
tls = "starttls"
username = "{SUPPORT}"
password_file = "imap-password"
ca_file = "{ca}"

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from_address = "{SUPPORT}"

[store]
data_dir = "data"

[tickets]
templates_dir = "{templates}"
"#,
            imap = rig.imap_port(),
            ca = rig.ca_file().display(),
            smtp = rig.smtp_port(),
            templates = templates.display(),
        ),
    )?;
    println!(
        "   IMAP 127.0.0.1:{} (STARTTLS), SMTP 127.0.0.1:{}",
        rig.imap_port(),
        rig.smtp_port()
    );
    println!("   config: {}", config.display());

    println!("\n== Starting `ticketd run`");
    let log = dir.join("ticketd.log");
    let mut daemon = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting ticketd")?;
    std::thread::sleep(Duration::from_millis(500));

    println!("\n== Buyers write in");
    let anna = "anna@buyer.test";
    let bob = "bob@shop.test";
    rig.send(anna, &[SUPPORT], &mail(anna, "Anna de Vries", "Pakket beschadigd aangekomen", "anna-1@buyer.test",
        "Hallo,\r\n\r\nMijn bestelling is vandaag aangekomen maar de doos was ingedeukt en de kaart is geknakt.\r\n\
         Bestelnummer: dQzGdHsKxwaEyrQfCdcCs8\r\n\r\nGroeten,\r\nAnna", ""))?;
    println!("   anna@buyer.test: \"Pakket beschadigd aangekomen\" (Dutch, with her order number)");
    rig.send(bob, &[SUPPORT], &mail(bob, "Bob Smith", "Where is my order?", "bob-1@shop.test",
        "Hi,\r\n\r\nI bought a pair of sneakers last week and the package still has not arrived.\r\n\r\nThanks,\r\nBob", ""))?;
    println!("   bob@shop.test:   \"Where is my order?\" (English, no order number)");
    rig.send(
        "carla@buyer.test",
        &[SUPPORT],
        &mail(
            "carla@buyer.test",
            "Carla",
            "Automatisch antwoord: afwezig",
            "carla-ooo@buyer.test",
            "Ik ben tot 1 december afwezig.",
            "Auto-Submitted: auto-replied\r\n",
        ),
    )?;
    println!("   carla@buyer.test: an out-of-office auto-reply (must not be answered)");

    wait_for(&rig, anna, 1, &log)?;
    wait_for(&rig, bob, 1, &log)?;
    let anna_ack = parse(&rig.maildir_messages(anna)[0]);
    let ack_id = anna_ack.message_id.clone().unwrap_or_default();
    rig.send(anna, &[SUPPORT], &mail(anna, "Anna de Vries", &format!("Re: {}", anna_ack.subject), "anna-2@buyer.test",
        "Hier zijn de foto's van de doos en de kaart.\r\n\r\nOp wo 25 nov 2026 om 10:12 schreef Whatnot Support <support@example.test>:\r\n> Bedankt voor je bericht.",
        &format!("In-Reply-To: <{ack_id}>\r\nReferences: <anna-1@buyer.test> <{ack_id}>\r\n")))?;
    println!("   anna@buyer.test: replies to her acknowledgement");
    // The reply is filed within a second by IDLE; give it that second.
    std::thread::sleep(Duration::from_millis(1500));

    println!("\n== What the buyers received");
    for user in [anna, bob, "carla@buyer.test"] {
        let inbox = rig.maildir_messages(user);
        println!("\n-- mailbox of {user}: {} message(s)", inbox.len());
        for raw in inbox {
            let m = parse(&raw);
            println!(
                "   {}",
                String::from_utf8_lossy(&raw)
                    .lines()
                    .find(|l| l.starts_with("From:"))
                    .unwrap_or("From: (none)")
            );
            println!("   Subject: {}", m.subject);
            for line in m.text.lines() {
                println!("   | {line}");
            }
        }
    }

    println!("\n== The tickets");
    for t in ["WN-000001", "WN-000002"] {
        println!();
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["show", t])
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["search", "dQzGdHsKxwaEyrQfCdcCs8"])
        .output()?;
    println!(
        "\n== ticketd search dQzGdHsKxwaEyrQfCdcCs8\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    if std::env::var_os("TICKETD_DEMO_EXIT").is_some() {
        stop(&mut daemon);
        return Ok(());
    }
    println!(
        "ticketd is running (pid {}) against the private mail servers in {}.\n\
         Try: {} --config {} search beschadigd\n\
         Press Ctrl-C to stop ticketd and the mail servers.",
        daemon.id(),
        rig.dir().display(),
        bin.display(),
        config.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Ctrl-C, or SIGTERM/SIGHUP (a `timeout`, a closed terminal): the
    // same clean stop, so no mail server is left behind.
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
            _ = hup.recv() => Ok(()),
        }
    })?;
    println!("\nstopping ticketd and the mail servers");
    stop(&mut daemon);
    Ok(())
}
