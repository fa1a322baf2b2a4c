//! The acknowledgement a buyer gets for a new ticket: rendered from the
//! operator-editable templates in templates/<lang>/, then built into a
//! complete RFC 5322 message whose Message-ID is fixed before it is queued.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::config::{Language, TicketsConfig};
use crate::core::extract::{Category, Facts, IssueType};
use crate::core::parse::InboundMessage;
use crate::core::policy::{self, Known, Missing};

/// Which mail a template set is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// The acknowledgement of a new ticket.
    New,
    /// The short "added to your ticket" note (`ack_followups = true`).
    Followup,
}

impl AckKind {
    fn prefix(self) -> &'static str {
        match self {
            AckKind::New => "ack",
            AckKind::Followup => "followup",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("templates directory {0} does not exist; set [tickets] templates_dir to the folder holding nl/ and en/")]
    NoTemplates(PathBuf),
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("cannot build the acknowledgement mail: {0}")]
    Build(String),
}

fn template_error(name: &str, e: minijinja::Error) -> AckError {
    let location = match (e.name(), e.line()) {
        (Some(file), Some(line)) => format!(" (at {file} line {line})"),
        _ => String::new(),
    };
    AckError::Template {
        name: name.to_string(),
        message: format!("{e}{location}"),
    }
}

/// What the templates may use. Adding a field is safe; renaming one breaks
/// operators' edited templates, so don't.
#[derive(Debug, Clone, Serialize)]
pub struct AckContext {
    /// `WN-000123`
    pub ticket: String,
    pub language: &'static str,
    pub response_hours: u32,
    /// The due time written out for the buyer, in the configured time zone.
    pub due: String,
    pub buyer_name: Option<String>,
    /// The buyer's own subject, for reference in the body.
    pub original_subject: String,
    /// damaged, missing, delayed, account or general.
    pub issue_type: &'static str,
    /// What is still missing, in order (see `policy::Missing`).
    pub missing: Vec<Missing>,
    pub order_numbers: Vec<String>,
    /// The last day for a refund claim, written out, when it can be known.
    pub claim_deadline: Option<String>,
    pub claim_deadline_passed: bool,
    /// The claim window in words ("7 days after delivery or 30 days after
    /// purchase, whichever comes first"), when the category is known. The
    /// templates give it when the dates known do not fix a deadline.
    pub claim_window: Option<String>,
    /// The last day the known dates allow when they do not fix the
    /// deadline: it may come sooner ("at the latest").
    pub claim_latest: Option<String>,
}

impl AckContext {
    /// What the ack for a buyer's first message says: the facts read from
    /// it decide what is still missing and whether a claim deadline is
    /// known. `now` is when the message was received.
    pub fn for_message(
        ticket: &str,
        lang: Language,
        cfg: &TicketsConfig,
        now: DateTime<Utc>,
        msg: &InboundMessage,
        new_text: &str,
        facts: &Facts,
    ) -> AckContext {
        let photos = msg.attachments.iter().filter(|a| a.is_photo()).count();
        let words = new_text.split_whitespace().count();
        let known = Known::from_facts(facts, photos, words);
        let today = now.with_timezone(&cfg.time_zone).date_naive();
        let deadline =
            policy::claim_deadline(facts.category, facts.purchase_date, facts.delivery_date);
        // A date is only promised when the known dates fix it: with the
        // purchase date alone, the delivery's window may end sooner (unless
        // the order never came); with the delivery date alone, the
        // purchase's may. A bound already behind us has passed either way.
        let passed = deadline.is_some_and(|d| d < today);
        let fixed = match (facts.purchase_date, facts.delivery_date) {
            (Some(_), Some(_)) => true,
            (Some(_), None) => facts.issue_type == IssueType::Delayed,
            _ => false,
        };
        let (deadline, latest) = if fixed || passed {
            (deadline, None)
        } else {
            (None, deadline)
        };
        AckContext {
            ticket: ticket.to_string(),
            language: lang.code(),
            response_hours: cfg.response_hours,
            due: format_due(
                policy::response_due(now, cfg.response_hours),
                cfg.time_zone,
                lang,
            ),
            buyer_name: msg.from_name.clone(),
            original_subject: msg.subject.clone(),
            issue_type: facts.issue_type.as_str(),
            missing: policy::missing_info(facts.issue_type, &known),
            order_numbers: facts.order_numbers.clone(),
            claim_deadline: deadline.map(|d| format_date(d, lang)),
            claim_deadline_passed: passed,
            claim_window: facts.category.map(|c| claim_window(c, lang)),
            claim_latest: latest.map(|d| format_date(d, lang)),
        }
    }

    /// A context with every optional part filled, to check templates.
    fn samples() -> Vec<(Language, AckContext)> {
        let mut out = Vec::new();
        for lang in [Language::Nl, Language::En] {
            for (missing, deadline, passed) in [
                (vec![], None, false),
                (
                    vec![
                        Missing::OrderNumber,
                        Missing::ShipmentNumber,
                        Missing::AccountEmail,
                        Missing::Username,
                        Missing::PhotosDamage,
                        Missing::PhotosBox,
                        Missing::PhotosPacking,
                        Missing::DifferenceDescription,
                        Missing::PhotosReceived,
                        Missing::ExpectedProductDescription,
                        Missing::PurchaseDate,
                        Missing::Details,
                    ],
                    Some("1 december 2026".to_string()),
                    false,
                ),
                (
                    vec![Missing::Details],
                    Some("1 november 2026".to_string()),
                    true,
                ),
            ] {
                out.push((
                    lang,
                    AckContext {
                        ticket: "WN-000001".into(),
                        language: lang.code(),
                        response_hours: 48,
                        due: "-".into(),
                        buyer_name: Some("Sample".into()),
                        original_subject: "Sample".into(),
                        issue_type: "damaged",
                        missing,
                        order_numbers: vec![],
                        claim_deadline: deadline.clone(),
                        claim_deadline_passed: passed,
                        claim_window: Some(claim_window(Category::Tcg, lang)),
                        claim_latest: deadline.clone(),
                    },
                ));
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedAck {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Templates loaded from disk at run time, so operators edit them without
/// rebuilding.
pub struct AckTemplates {
    env: Environment<'static>,
    dir: PathBuf,
}

impl AckTemplates {
    /// Loads and compiles every template and renders a sample of each, so a
    /// broken template is reported at start-up with its file and line.
    pub fn load(dir: &Path) -> Result<AckTemplates, AckError> {
        if !dir.is_dir() {
            return Err(AckError::NoTemplates(dir.to_path_buf()));
        }
        let root = dir.to_path_buf();
        let mut env = Environment::new();
        env.set_loader(minijinja::path_loader(root.clone()));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let templates = AckTemplates { env, dir: root };
        for (lang, sample) in AckContext::samples() {
            templates.render_kind(AckKind::New, lang, &sample)?;
            templates.render_kind(AckKind::Followup, lang, &sample)?;
        }
        Ok(templates)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn render(&self, lang: Language, ctx: &AckContext) -> Result<RenderedAck, AckError> {
        self.render_kind(AckKind::New, lang, ctx)
    }

    pub fn render_kind(
        &self,
        kind: AckKind,
        lang: Language,
        ctx: &AckContext,
    ) -> Result<RenderedAck, AckError> {
        let render = |file: &str| -> Result<String, AckError> {
            let name = format!("{}/{}{}", lang.code(), kind.prefix(), file);
            let tmpl = self
                .env
                .get_template(&name)
                .map_err(|e| template_error(&name, e))?;
            tmpl.render(ctx).map_err(|e| template_error(&name, e))
        };
        let subject = render("_subject.txt")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(RenderedAck {
            subject,
            text: render(".txt")?,
            html: render(".html")?,
        })
    }
}

const NL_DAYS: [&str; 7] = [
    "maandag",
    "dinsdag",
    "woensdag",
    "donderdag",
    "vrijdag",
    "zaterdag",
    "zondag",
];
const EN_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const NL_MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// "donderdag 26 november 2026 om 14:03" / "Thursday 26 November 2026 at 14:03",
/// in the given time zone, with the zone's abbreviation so no one guesses.
/// The claim window of a category in words, in the buyer's language.
pub fn claim_window(category: Category, lang: Language) -> String {
    let days = policy::delivery_window_days(category);
    let purchase = policy::PURCHASE_WINDOW_DAYS;
    match lang {
        Language::Nl => {
            format!("{days} dagen na levering of {purchase} dagen na aankoop (wat het eerst komt)")
        }
        Language::En => format!(
            "{days} days after delivery or {purchase} days after purchase, whichever comes first"
        ),
    }
}

pub fn format_due(due: DateTime<Utc>, tz: chrono_tz::Tz, lang: Language) -> String {
    let local = due.with_timezone(&tz);
    let day = local.weekday().num_days_from_monday() as usize;
    let month = local.month0() as usize;
    let zone = local.format("%Z");
    match lang {
        Language::Nl => format!(
            "{} {} {} {} om {:02}:{:02} ({zone})",
            NL_DAYS[day],
            local.day(),
            NL_MONTHS[month],
            local.year(),
            local.hour(),
            local.minute()
        ),
        Language::En => format!(
            "{} {} {} {} at {:02}:{:02} ({zone})",
            EN_DAYS[day],
            local.day(),
            EN_MONTHS[month],
            local.year(),
            local.hour(),
            local.minute()
        ),
    }
}

/// "1 december 2026" / "1 December 2026".
pub fn format_date(date: chrono::NaiveDate, lang: Language) -> String {
    let month = date.month0() as usize;
    match lang {
        Language::Nl => format!("{} {} {}", date.day(), NL_MONTHS[month], date.year()),
        Language::En => format!("{} {} {}", date.day(), EN_MONTHS[month], date.year()),
    }
}

/// Everything needed to turn a rendered ack into a mail.
pub struct AckEnvelope<'a> {
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to_name: Option<&'a str>,
    pub to_address: &'a str,
    /// The buyer's Message-ID (without brackets), if it had one.
    pub in_reply_to: Option<&'a str>,
    /// The buyer's References chain, oldest first (without brackets).
    pub references: &'a [String],
    /// Our Message-ID for this mail (without brackets).
    pub message_id: &'a str,
    /// Marks the mail as sent by a machine (RFC 3834): true for acks, false
    /// for an agent's reply.
    pub automatic: bool,
}

/// A fresh Message-ID in our own domain.
pub fn new_message_id(ticket_token: &str, from_address: &str) -> String {
    let domain = from_address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or("ticketd.invalid");
    format!(
        "{}.{}@{}",
        ticket_token.to_ascii_lowercase(),
        uuid::Uuid::new_v4().simple(),
        domain
    )
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// `text` for a header: control characters (CR, LF, NUL, ...) as spaces,
/// runs of white space as one.
fn header_text(text: &str) -> String {
    text.split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the complete message. Loop safety lives here: every ack says it
/// is automatic (RFC 3834) and asks Exchange and vacation responders not to
/// answer it.
pub fn build_mail(ack: &RenderedAck, env: &AckEnvelope<'_>) -> Result<Vec<u8>, AckError> {
    let build = |e: &dyn std::fmt::Display| AckError::Build(e.to_string());
    let from_address: lettre::Address = env.from_address.parse().map_err(|e| build(&e))?;
    let to_address: lettre::Address = env.to_address.parse().map_err(|e| build(&e))?;
    // Given, not derived from the headers: lettre cannot read a quoted
    // local part (`"jan de boer"@kpnmail.nl`) back from its own To header.
    let envelope =
        lettre::address::Envelope::new(Some(from_address.clone()), vec![to_address.clone()])
            .map_err(|e| build(&e))?;
    let from = Mailbox::new(Some(env.from_name.to_string()), from_address);
    // The buyer's display name and subject may hold control characters,
    // which lettre cannot write into a header (its formatting fails, and
    // with it the whole mail): they become spaces.
    let to = Mailbox::new(
        env.to_name.map(header_text).filter(|n| !n.is_empty()),
        to_address,
    );
    let mut builder = Message::builder()
        .envelope(envelope)
        .from(from)
        .to(to)
        .subject(header_text(&ack.subject))
        .message_id(Some(format!("<{}>", env.message_id)));
    if env.automatic {
        builder = builder
            .raw_header(raw_header("Auto-Submitted", "auto-replied"))
            .raw_header(raw_header("X-Auto-Response-Suppress", "All"))
            .raw_header(raw_header("Precedence", "auto_reply"));
    }
    if let Some(parent) = env.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
        // lettre keeps only the last References value: build the chain once.
        let mut chain: Vec<&str> = env.references.iter().map(String::as_str).collect();
        if !chain.contains(&parent) {
            chain.push(parent);
        }
        let refs = chain
            .iter()
            .map(|id| format!("<{id}>"))
            .collect::<Vec<_>>()
            .join(" ");
        builder = builder.references(refs);
    }
    let message = if ack.html.is_empty() {
        builder.singlepart(lettre::message::SinglePart::plain(ack.text.clone()))
    } else {
        builder.multipart(MultiPart::alternative_plain_html(
            ack.text.clone(),
            ack.html.clone(),
        ))
    }
    .map_err(|e| build(&e))?;
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn due_dates_read_naturally() {
        let due = Utc.with_ymd_and_hms(2026, 11, 26, 13, 3, 0).unwrap();
        let tz = chrono_tz::Europe::Amsterdam;
        assert_eq!(
            format_due(due, tz, Language::Nl),
            "donderdag 26 november 2026 om 14:03 (CET)"
        );
        assert_eq!(
            format_due(due, tz, Language::En),
            "Thursday 26 November 2026 at 14:03 (CET)"
        );
    }

    #[test]
    fn a_quoted_local_part_is_addressed_as_written() {
        let ack = RenderedAck {
            subject: "[WN-000001] Ontvangen".into(),
            text: "tekst".into(),
            html: String::new(),
        };
        for name in [None, Some("Jan")] {
            let raw = build_mail(
                &ack,
                &AckEnvelope {
                    from_name: "Whatnot Support",
                    from_address: "support@example.test",
                    to_name: name,
                    to_address: "\"jan de boer\"@kpnmail.nl",
                    in_reply_to: None,
                    references: &[],
                    message_id: "wn-000001.q@example.test",
                    automatic: true,
                },
            )
            .unwrap();
            let parsed = crate::core::parse::parse(&raw);
            assert_eq!(parsed.to, vec!["\"jan de boer\"@kpnmail.nl"], "{name:?}");
        }
    }

    #[test]
    fn mail_carries_loop_guards_and_threading() {
        let ack = RenderedAck {
            subject: "[WN-000001] We hebben je verzoek ontvangen - Whatnot Support".into(),
            text: "tekst".into(),
            html: "<p>tekst</p>".into(),
        };
        let raw = build_mail(
            &ack,
            &AckEnvelope {
                from_name: "Whatnot Support",
                from_address: "support@example.test",
                to_name: Some("Anna"),
                to_address: "anna@buyer.test",
                in_reply_to: Some("b2@buyer.test"),
                references: &["b1@buyer.test".to_string()],
                message_id: "wn-000001.x@example.test",
                automatic: true,
            },
        )
        .unwrap();
        let parsed = crate::core::parse::parse(&raw);
        assert_eq!(
            parsed.message_id.as_deref(),
            Some("wn-000001.x@example.test")
        );
        assert_eq!(parsed.in_reply_to, vec!["b2@buyer.test"]);
        assert_eq!(parsed.references, vec!["b1@buyer.test", "b2@buyer.test"]);
        assert_eq!(
            parsed.machine.auto_submitted.as_deref(),
            Some("auto-replied")
        );
        assert_eq!(parsed.subject, ack.subject);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Whatnot Support"));
        assert!(text.contains("X-Auto-Response-Suppress: All"));
    }

    /// A buyer's display name (and subject) with control characters in it
    /// made lettre's header formatting fail, which `to_string` turns into
    /// a panic.
    #[test]
    fn control_characters_from_the_buyer_do_not_break_the_mail() {
        let ack = RenderedAck {
            subject: "[WN-000001] Re: kaart\0 \r\nBcc: x@evil.test".into(),
            text: "tekst".into(),
            html: "<p>tekst</p>".into(),
        };
        for name in ["Anna\0\r", "\0", "An\u{7f}na \"de\" Vries\n"] {
            let raw = build_mail(
                &ack,
                &AckEnvelope {
                    from_name: "Whatnot Support",
                    from_address: "support@example.test",
                    to_name: Some(name),
                    to_address: "anna@buyer.test",
                    in_reply_to: Some("b2@buyer.test\r\nBcc: y@evil.test"),
                    references: &["b1@buyer.test>\r\nBcc: z@evil.test".to_string()],
                    message_id: "wn-000001.x@example.test",
                    automatic: true,
                },
            )
            .unwrap();
            let parsed = crate::core::parse::parse(&raw);
            assert_eq!(parsed.from_address.as_deref(), Some("support@example.test"));
            let text = String::from_utf8_lossy(&raw);
            assert!(!text.contains('\0') && !text.contains("\nBcc:"), "{text}");
        }
    }
}
