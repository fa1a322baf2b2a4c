//! A realistic store of 1,000,000 messages in 250,000 tickets, generated
//! from a fixed seed straight into SQLite: the schema comes from
//! `Store::open` (so it is whatever the migrations make), then every row is
//! written in one transaction with the sync and journal off, and WAL is
//! switched back on at the end. Two years of tickets; each has the buyer's
//! first mail and our ack, follow-ups from the buyer and agent replies
//! (three in every four tickets' worth on average, ten tickets with exactly
//! 50 messages), attachments, facts with 22-character order numbers, outbox
//! rows and the full-text rows `ingest` and `reply` write. Kept under
//! target/bench-data between runs, keyed by the schema and this generator.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::mailgen::{ticket_text, FIRST_EN, FIRST_NL, LAST_EN, LAST_NL, PRODUCTS};
use crate::util::Rng;
use crate::Ctx;

pub const TICKETS: usize = 250_000;
pub const MESSAGES: usize = 1_000_000;
/// Tickets with exactly 50 messages, for the ticket view.
pub const HEAVY: usize = 10;
const HEAVY_SIZE: usize = 50;
const SEED: u64 = 20_251_125;
/// Bump when the generated rows change, so cached stores are rebuilt.
const GEN_VERSION: u32 = 1;
/// The newest ticket is from about here (2025-11-24); the oldest two years earlier.
const END: i64 = 1_764_000_000;
const SPAN: i64 = 730 * 86_400;

/// Words for the full-text figures: in a large share of messages, and in
/// a handful each.
pub const COMMON_WORDS: [&str; 3] = ["pakket", "package", "bestelling"];
pub const RARE_WORDS: [&str; 12] = [
    "kwartelkoning",
    "zeppelinkaart",
    "ijsvogelzegel",
    "marsepeinmunt",
    "lighthousefoil",
    "quokkasleeve",
    "narwhalbinder",
    "tamarindtin",
    "kabeljauwhoes",
    "pelikaanpin",
    "axolotlslab",
    "zebravinyl",
];

/// A generated store, ready to open.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    pub data_dir: PathBuf,
    pub heavy: Vec<i64>,
    pub db_bytes: u64,
    /// Set when this run generated it (else it came from the cache).
    pub generated_in: Option<Duration>,
}

fn cache_key(repo: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    GEN_VERSION.hash(&mut h);
    (TICKETS, MESSAGES, SEED).hash(&mut h);
    let mut sql: Vec<PathBuf> = std::fs::read_dir(repo.join("src/store"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                .collect()
        })
        .unwrap_or_default();
    sql.sort();
    for p in sql {
        std::fs::read(&p).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// The cached store, or a freshly generated one.
pub fn ensure(ctx: &mut Ctx) -> Result<StoreInfo> {
    if let Some(s) = &ctx.store {
        return Ok(s.clone());
    }
    let dir = ctx
        .cache
        .join(format!("store-1m-{:016x}", cache_key(&ctx.repo)));
    let stamp = dir.join("generated.txt");
    let mut generated_in = None;
    if ctx.fresh_store || !stamp.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        ctx.progress(&format!(
            "generating the {MESSAGES}-message / {TICKETS}-ticket store in {} (cached for later runs)",
            dir.display()
        ));
        let t = Instant::now();
        generate(&dir, &|what| ctx.progress(what))?;
        let took = t.elapsed();
        std::fs::write(
            &stamp,
            format!(
                "seed {SEED}, generator v{GEN_VERSION}, took {:.1} s\n",
                took.as_secs_f64()
            ),
        )?;
        generated_in = Some(took);
    } else {
        ctx.progress(&format!("using the cached store {}", dir.display()));
    }
    let heavy = heavy_tickets();
    let db_bytes = ["ticketd.sqlite3", "ticketd.sqlite3-wal"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum();
    let info = StoreInfo {
        data_dir: dir,
        heavy,
        db_bytes,
        generated_in,
    };
    ctx.store = Some(info.clone());
    Ok(info)
}

/// The tickets with exactly 50 messages.
pub fn heavy_tickets() -> Vec<i64> {
    (1..=HEAVY as i64).map(|k| k * 24_000 + 777).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Opener,
    Ack,
    Buyer,
    Agent,
}

struct Plan {
    created: i64,
    dutch: bool,
    issue: u8,
    buyer: u32,
    subject: String,
    opener_text: String,
    opener_id: String,
    last: i64,
    responded: Option<i64>,
}

fn name_of(rng: &mut Rng, dutch: bool) -> String {
    if dutch {
        format!("{} {}", rng.pick(FIRST_NL), rng.pick(LAST_NL))
    } else {
        format!("{} {}", rng.pick(FIRST_EN), rng.pick(LAST_EN))
    }
}

fn buyer_address(b: u32) -> String {
    format!("buyer{b}@buyer.test")
}

fn sha_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn token(t: i64) -> String {
    format!("WN-{t:06}")
}

/// Writes the store into `dir` (which must not exist yet).
pub fn generate(dir: &Path, progress: &dyn Fn(&str)) -> Result<()> {
    // The schema exactly as ticketd makes it.
    drop(ticketd::store::Store::open(dir).context("creating the schema with Store::open")?);
    let db = dir.join("ticketd.sqlite3");
    let mut conn = Connection::open(&db)?;
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;

    // Who writes when: every event of every ticket, then sorted by time so
    // message ids grow with time and a ticket's messages are spread out as
    // they are in a real store.
    let heavy = heavy_tickets();
    let mut rng = Rng::new(SEED);
    let mut followups = vec![0u16; TICKETS + 1];
    for &h in &heavy {
        followups[h as usize] = (HEAVY_SIZE - 2) as u16;
    }
    let spare = MESSAGES - 2 * TICKETS - HEAVY * (HEAVY_SIZE - 2);
    let mut placed = 0;
    while placed < spare {
        let t = rng.range(1, TICKETS as u64) as usize;
        if heavy.contains(&(t as i64)) {
            continue;
        }
        followups[t] += 1;
        placed += 1;
    }
    let mut plans: Vec<Plan> = Vec::with_capacity(TICKETS + 1);
    plans.push(Plan {
        created: 0,
        dutch: true,
        issue: 0,
        buyer: 0,
        subject: String::new(),
        opener_text: String::new(),
        opener_id: String::new(),
        last: 0,
        responded: None,
    });
    let mut events: Vec<(i64, u32, Ev, u16)> = Vec::with_capacity(MESSAGES);
    let step = SPAN / TICKETS as i64;
    for (t, &extra) in followups.iter().enumerate().skip(1) {
        let mut r = Rng::for_item(SEED, t as u64);
        let created = END - SPAN + (t as i64 - 1) * step + r.below(step as u64) as i64;
        let dutch = r.chance(0.6);
        let issue = r.below(5) as u8;
        let buyer = ((t as u64 * 7919) % 180_000) as u32;
        events.push((created, t as u32, Ev::Opener, 0));
        events.push((created + 1 + r.below(3) as i64, t as u32, Ev::Ack, 1));
        let heavy_ticket = heavy.contains(&(t as i64));
        let mut last = created + 1;
        let mut responded = None;
        let mut at = created;
        for k in 0..extra {
            let gap = if heavy_ticket {
                r.range(600, 2 * 86_400) as i64
            } else {
                // Mostly within hours, some after days.
                (-(1.0 - r.f64()).ln() * 86_400.0).min(30.0 * 86_400.0) as i64 + 60
            };
            at += gap;
            let ev = if r.chance(0.35) { Ev::Agent } else { Ev::Buyer };
            if ev == Ev::Agent && responded.is_none() {
                responded = Some(at);
            }
            events.push((at, t as u32, ev, k + 2));
            last = at;
        }
        plans.push(Plan {
            created,
            dutch,
            issue,
            buyer,
            subject: String::new(),
            opener_text: String::new(),
            opener_id: String::new(),
            last,
            responded,
        });
    }
    events.sort_unstable();
    progress(&format!("  planned {} messages", events.len()));

    let tx = conn.transaction()?;
    {
        let mut ins_ticket = tx.prepare(
            "INSERT INTO tickets (id, status, subject, requester, requester_name, language, created_at,
             updated_at, due_at, issue_type, category, closed_at, responded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut ins_part =
            tx.prepare("INSERT OR IGNORE INTO participants (ticket_id, address) VALUES (?1, ?2)")?;
        let issues = ["damaged", "missing", "delayed", "account", "general"];
        let categories = [
            "sports_cards",
            "tcg",
            "sneakers_streetwear",
            "coins_money",
            "other",
        ];
        for (t, p) in plans.iter_mut().enumerate().skip(1) {
            let mut r = Rng::for_item(SEED ^ 0x5151, t as u64);
            let name = name_of(&mut r, p.dutch);
            let order = r.alnum(22);
            let product = r.pick(PRODUCTS).to_string();
            let (subject, body) = ticket_text(
                &mut r,
                p.dutch,
                u64::from(p.issue),
                &name,
                &order,
                &product,
                0,
            );
            p.subject = subject;
            p.opener_text = body;
            p.opener_id = format!("{t}.{:x}.opener@buyer.test", r.next_u64() % 0xffff_ffff);
            let closed = p.last < END - 14 * 86_400 && r.chance(0.95);
            let category = r.chance(0.5).then(|| *r.pick(&categories));
            ins_ticket.execute(params![
                t as i64,
                if closed { "closed" } else { "open" },
                p.subject,
                buyer_address(p.buyer),
                name,
                if p.dutch { "nl" } else { "en" },
                p.created,
                p.last,
                p.created + 48 * 3600,
                issues[p.issue as usize],
                category,
                closed.then_some(p.last + 86_400),
                p.responded,
            ])?;
            ins_part.execute(params![t as i64, buyer_address(p.buyer)])?;
            if r.chance(0.1) {
                ins_part.execute(params![t as i64, format!("partner{t}@buyer.test")])?;
            }
        }
        progress(&format!("  {TICKETS} tickets written"));

        let mut ins_msg = tx.prepare(
            "INSERT INTO messages (id, ticket_id, message_id, direction, kind, from_addr, from_name,
             subject, date_header, received_at, in_reply_to, refs, text_body, new_text, html_body,
             issue_type, raw_sha256, raw_size, language, mailbox, uid, problems, ack_skip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                     ?19, ?20, ?21, NULL, ?22)",
        )?;
        let mut ins_fts =
            tx.prepare("INSERT INTO messages_fts (rowid, subject, body) VALUES (?1, ?2, ?3)")?;
        let mut ins_att = tx.prepare(
            "INSERT INTO attachments (message, sha256, filename, content_type, size, content_id)
             VALUES (?1, ?2, ?3, 'image/jpeg', ?4, NULL)",
        )?;
        let mut ins_fact = tx.prepare(
            "INSERT OR IGNORE INTO facts (ticket_id, message, kind, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut ins_out = tx.prepare(
            "INSERT INTO outbox (ticket_id, cause, message_id, envelope_from, envelope_to, raw, status,
             attempts, created_at, next_attempt_at, sent_at)
             VALUES (?1, ?2, ?3, 'support@example.test', ?4, ?5, 'sent', 1, ?6, ?6, ?6)",
        )?;
        let mut uid = 0i64;
        let mut opener_row = vec![0i64; TICKETS + 1];
        let mut last_id: Vec<String> = vec![String::new(); TICKETS + 1];
        let started = Instant::now();
        for (n, &(at, t, ev, seq)) in events.iter().enumerate() {
            let id = n as i64 + 1;
            let ti = t as i64;
            let p = &plans[t as usize];
            let mut r = Rng::for_item(SEED ^ 0xa5a5, id as u64);
            let lang = if p.dutch { "nl" } else { "en" };
            let requester = buyer_address(p.buyer);
            let rare = r.chance(0.0004).then(|| *r.pick(&RARE_WORDS));
            match ev {
                Ev::Opener | Ev::Buyer => {
                    uid += 1;
                    let (message_id, subject, new_text, text_body, reply_to) = if ev == Ev::Opener {
                        let mut text = p.opener_text.clone();
                        if let Some(w) = rare {
                            text.push_str(&format!("PS: het gaat om de {w}.\n"));
                        }
                        (
                            p.opener_id.clone(),
                            p.subject.clone(),
                            text.clone(),
                            text,
                            None,
                        )
                    } else {
                        let mut new = follow_up(&mut r, p.dutch);
                        if let Some(w) = rare {
                            new.push_str(&format!("\nHet gaat om de {w}.\n"));
                        }
                        let quoted: String =
                            p.opener_text.lines().map(|l| format!("> {l}\n")).collect();
                        let body =
                            format!("{new}\nOp {} schreef Whatnot Support:\n{quoted}", at - 3600);
                        (
                            format!("{t}.{seq}.{:x}@buyer.test", r.next_u64() % 0xffff_ffff),
                            format!("Re: [{}] {}", token(ti), p.subject),
                            new,
                            body,
                            Some(last_id[t as usize].clone()),
                        )
                    };
                    let photos = if r.chance(0.2) {
                        r.range(1, 5) as usize
                    } else {
                        0
                    };
                    let names: Vec<String> = (0..photos)
                        .map(|k| format!("IMG_{}.jpg", 1000 + r.below(9000) + k as u64))
                        .collect();
                    let sizes: Vec<i64> = (0..photos)
                        .map(|_| r.log_uniform(100_000, 2_000_000) as i64)
                        .collect();
                    let html = r.chance(0.3).then(|| html_of(&new_text));
                    let raw_size = text_body.len() as i64
                        + html.as_ref().map_or(0, |h| h.len() as i64)
                        + sizes.iter().sum::<i64>() * 137 / 100
                        + 1800;
                    let ack_skip = (ev == Ev::Buyer).then_some("follow-up on an existing ticket");
                    ins_msg.execute(params![
                        id,
                        ti,
                        message_id,
                        "in",
                        "human",
                        requester,
                        name_for(p, ti),
                        subject,
                        at - 5,
                        at,
                        reply_to,
                        reply_to,
                        text_body,
                        new_text,
                        html,
                        ["damaged", "missing", "delayed", "account", "general"][p.issue as usize],
                        sha_hex(&message_id),
                        raw_size,
                        lang,
                        "INBOX",
                        uid,
                        ack_skip,
                    ])?;
                    let mut fts_body = new_text.clone();
                    for nm in &names {
                        fts_body.push('\n');
                        fts_body.push_str(nm);
                    }
                    ins_fts.execute(params![id, subject, fts_body])?;
                    for (nm, size) in names.iter().zip(&sizes) {
                        ins_att.execute(params![
                            id,
                            sha_hex(&format!("{message_id}/{nm}")),
                            nm,
                            size
                        ])?;
                    }
                    for o in
                        ticketd::core::extract::order_numbers(&format!("{subject}\n{new_text}"))
                    {
                        ins_fact.execute(params![ti, id, "order", o])?;
                    }
                    if ev == Ev::Opener {
                        opener_row[t as usize] = id;
                        facts_of_opener(&mut ins_fact, ti, id, &new_text, p)?;
                    }
                    last_id[t as usize] = message_id;
                }
                Ev::Ack => {
                    let message_id = format!(
                        "{}.{:032x}@example.test",
                        token(ti).to_lowercase(),
                        r.next_u64()
                    );
                    let (subject, text, html) = ack_text(ti, p);
                    let raw = ack_raw(
                        &message_id,
                        &requester,
                        &subject,
                        &text,
                        &html,
                        &p.opener_id,
                    );
                    ins_msg.execute(params![
                        id,
                        ti,
                        message_id,
                        "out",
                        "ack",
                        "support@example.test",
                        "Whatnot Support",
                        subject,
                        Option::<i64>::None,
                        at,
                        p.opener_id,
                        Option::<String>::None,
                        text,
                        text,
                        html,
                        Option::<String>::None,
                        "",
                        raw.len() as i64,
                        lang,
                        Option::<String>::None,
                        Option::<i64>::None,
                        Option::<String>::None,
                    ])?;
                    ins_out.execute(params![
                        ti,
                        opener_row[t as usize],
                        message_id,
                        requester,
                        raw,
                        at
                    ])?;
                    last_id[t as usize] = message_id;
                }
                Ev::Agent => {
                    let message_id = format!(
                        "{}.{:032x}@example.test",
                        token(ti).to_lowercase(),
                        r.next_u64()
                    );
                    let subject = format!("[{}] {} - Whatnot Support", token(ti), p.subject);
                    let mut text = agent_text(&mut r, p.dutch);
                    if let Some(w) = rare {
                        text.push_str(&format!("\n(ref: {w})\n"));
                    }
                    let raw = ack_raw(
                        &message_id,
                        &requester,
                        &subject,
                        &text,
                        "",
                        &last_id[t as usize],
                    );
                    ins_msg.execute(params![
                        id,
                        ti,
                        message_id,
                        "out",
                        "agent",
                        "support@example.test",
                        "sanne (Whatnot Support)",
                        subject,
                        Option::<i64>::None,
                        at,
                        last_id[t as usize],
                        Option::<String>::None,
                        text,
                        text,
                        Option::<String>::None,
                        Option::<String>::None,
                        "",
                        raw.len() as i64,
                        Option::<String>::None,
                        Option::<String>::None,
                        Option::<i64>::None,
                        Option::<String>::None,
                    ])?;
                    ins_fts.execute(params![id, subject, text])?;
                    ins_out.execute(params![
                        ti,
                        Option::<i64>::None,
                        message_id,
                        requester,
                        raw,
                        at
                    ])?;
                    last_id[t as usize] = message_id;
                }
            }
            if (n + 1) % 100_000 == 0 {
                progress(&format!(
                    "  {} messages written ({:.0}/s)",
                    n + 1,
                    (n + 1) as f64 / started.elapsed().as_secs_f64()
                ));
            }
        }
    }
    progress("  committing");
    tx.commit()?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let n: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    if n as usize != MESSAGES {
        bail!("generated {n} messages instead of {MESSAGES}");
    }
    Ok(())
}

fn name_for(p: &Plan, t: i64) -> String {
    let mut r = Rng::for_item(SEED ^ 0x5151, t as u64);
    let _ = p;
    name_of(&mut r, p.dutch)
}

fn facts_of_opener(
    ins: &mut rusqlite::Statement<'_>,
    t: i64,
    id: i64,
    text: &str,
    p: &Plan,
) -> Result<()> {
    for line in text.lines() {
        let value = |prefix: &str| line.strip_prefix(prefix).map(|v| v.trim().to_string());
        if let Some(v) = value("Zendingsnummer: ").or_else(|| value("Tracking number: ")) {
            ins.execute(params![t, id, "shipment", v])?;
        }
        if let Some(v) = value("Gebruikersnaam: ").or_else(|| value("Username: ")) {
            ins.execute(params![t, id, "username", v])?;
        }
    }
    if p.issue == 2 {
        let d = chrono::DateTime::from_timestamp(p.created - 10 * 86_400, 0)
            .map(|d| d.date_naive().to_string())
            .unwrap_or_default();
        ins.execute(params![t, id, "purchase_date", d])?;
    }
    Ok(())
}

fn follow_up(r: &mut Rng, dutch: bool) -> String {
    let s = if dutch {
        *r.pick(&[
            "Hoi,\n\nHebben jullie al nieuws over mijn pakket? Ik wacht nog steeds op een reactie.\n\nGroet",
            "Hallo,\n\nHierbij de foto's van de schade aan het pakket en de doos, zoals gevraagd.\n\nGroeten",
            "Beste Whatnot Support,\n\nDe verkoper reageert niet op mijn berichten. Kunnen jullie helpen?\n\nMvg",
            "Hallo,\n\nHet pakket is inmiddels bezorgd, maar de doos was open en er ontbreekt een kaart.\n\nGroet",
            "Dank jullie wel, dan wacht ik de terugbetaling af.\n\nGroetjes",
        ])
    } else {
        *r.pick(&[
            "Hi,\n\nAny update on my package? I'm still waiting to hear back.\n\nThanks",
            "Hello,\n\nAttached are the photos of the damaged package and the box, as you asked.\n\nBest",
            "Hi Whatnot Support,\n\nThe seller is not answering my messages. Can you help?\n\nRegards",
            "Hello,\n\nThe package arrived at last, but the box was open and one card is missing.\n\nCheers",
            "Thank you, I'll wait for the refund then.\n\nBest regards",
        ])
    };
    s.to_string()
}

fn agent_text(r: &mut Rng, dutch: bool) -> String {
    let s = if dutch {
        *r.pick(&[
            "Hallo,\n\nBedankt voor je geduld. We hebben de verkoper gevraagd om binnen 2 dagen te reageren op je claim. Zodra we meer weten, hoor je van ons.\n\nMet vriendelijke groet,\nSanne\nWhatnot Support",
            "Hallo,\n\nWe hebben de foto's ontvangen en je claim goedgekeurd. De terugbetaling staat binnen 5 werkdagen op je rekening.\n\nMet vriendelijke groet,\nDaan\nWhatnot Support",
            "Hallo,\n\nKun je ons nog een foto sturen van het verzendlabel op de doos? Dan kunnen we je bestelling verder onderzoeken.\n\nGroet,\nIris\nWhatnot Support",
        ])
    } else {
        *r.pick(&[
            "Hi,\n\nThanks for your patience. We asked the seller to respond to your claim within 2 days and will update you as soon as we hear back.\n\nKind regards,\nSanne\nWhatnot Support",
            "Hi,\n\nWe received the photos and approved your claim. The refund will reach your account within 5 business days.\n\nKind regards,\nDaan\nWhatnot Support",
            "Hi,\n\nCould you send us one more photo of the shipping label on the box? Then we can look into your order further.\n\nBest,\nIris\nWhatnot Support",
        ])
    };
    s.to_string()
}

fn ack_text(t: i64, p: &Plan) -> (String, String, String) {
    let tok = token(t);
    let (subject, text) = if p.dutch {
        (
            format!("[{tok}] We hebben je verzoek ontvangen - Whatnot Support"),
            format!("Hallo,\n\nBedankt voor je bericht. We hebben je verzoek ontvangen onder ticketnummer {tok}.\n\nJe ontvangt binnen 48 uur een reactie van Whatnot Support.\n\nOm je sneller te helpen, hebben we nog nodig:\n- foto's van alle schade (voorkant, achterkant, bovenkant, onderkant, zijkanten)\n- een foto van de doos met het verzendlabel\n- een foto van hoe het product verpakt was\n\nWil je iets toevoegen, zoals foto's of extra informatie? Beantwoord dan deze e-mail en laat [{tok}] in het onderwerp staan.\n\nMet vriendelijke groet,\nWhatnot Support\n\nDit is een automatisch bericht als bevestiging van je verzoek \"{}\".\n", p.subject),
        )
    } else {
        (
            format!("[{tok}] We have received your request - Whatnot Support"),
            format!("Hello,\n\nThank you for your message. We have received your request as ticket {tok}.\n\nWhatnot Support will reply within 48 hours.\n\nTo help you faster, we still need:\n- photos of all damage (front, back, top, bottom, sides)\n- a photo of the box with its shipping label\n- a photo of how the item was packed\n\nWant to add something, like photos or more details? Reply to this e-mail and keep [{tok}] in the subject.\n\nKind regards,\nWhatnot Support\n\nThis is an automatic confirmation of your request \"{}\".\n", p.subject),
        )
    };
    let html = html_of(&text);
    (subject, text, html)
}

fn html_of(text: &str) -> String {
    let mut h = String::from(
        "<!DOCTYPE html><html><body style=\"font-family:Arial,sans-serif;font-size:14px\">\n",
    );
    for para in text.split("\n\n") {
        h.push_str("<p>");
        h.push_str(
            &para
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('\n', "<br>\n"),
        );
        h.push_str("</p>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn ack_raw(
    id: &str,
    to: &str,
    subject: &str,
    text: &str,
    html: &str,
    in_reply_to: &str,
) -> Vec<u8> {
    let mut m = format!(
        "From: \"Whatnot Support\" <support@example.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nIn-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n\
         Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\nPrecedence: auto_reply\r\n\
         MIME-Version: 1.0\r\nDate: Tue, 25 Nov 2025 10:00:00 +0000\r\n"
    );
    if html.is_empty() {
        m.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        m.push_str(&text.replace('\n', "\r\n"));
    } else {
        m.push_str("Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        m.push_str(&text.replace('\n', "\r\n"));
        m.push_str("\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        m.push_str(&html.replace('\n', "\r\n"));
        m.push_str("\r\n--b1--\r\n");
    }
    m.into_bytes()
}
