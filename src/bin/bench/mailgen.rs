//! Realistic support mail, generated from a seed: short replies with quoted
//! history, HTML mails as Outlook and Gmail write them, photo mails (JPEG
//! parts of random bytes, base64), a few 20 MB video mails and some
//! auto-replies, in Dutch and English, with order and shipment numbers
//! where buyers put them. Written straight into a maildir the way Dovecot's
//! LMTP stores delivered mail (LF line endings, `,S=,W=` sizes in the name,
//! owned by `mail`), which is about a thousand times faster than APPEND.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{base64_lines, Rng};

/// Which message mix to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The mix of issue 8: 20% photo mails with 1–5 photos of 100 KB–2 MB
    /// (log-uniform), one 20 MB video mail in every 333.
    Full,
    /// The same kinds in the same shares, but photo mails carry 1–2 photos of
    /// 10–50 KB and there are no 20 MB mails: for the 50k size.
    Light,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Full => "full mix",
            Mix::Light => "light mix",
        }
    }
}

/// What ended up in the maildir.
#[derive(Debug, Clone, Default)]
pub struct Filled {
    pub count: usize,
    /// Bytes on disk (LF line endings).
    pub disk_bytes: u64,
    /// Bytes an IMAP client receives (CRLF line endings): RFC822.SIZE summed.
    pub imap_bytes: u64,
    pub largest: u64,
    pub photo_mails: usize,
    pub photos: usize,
    pub big_mails: usize,
    pub replies: usize,
    pub html_mails: usize,
    pub plain_mails: usize,
    pub auto_replies: usize,
    pub elapsed: Duration,
}

impl Filled {
    /// Counts one generated message of `kind` in the mix statistics.
    pub fn count_kind(&mut self, kind: Kind) {
        match kind {
            Kind::Reply => self.replies += 1,
            Kind::Html => self.html_mails += 1,
            Kind::Plain => self.plain_mails += 1,
            Kind::Photo(n) => {
                self.photo_mails += 1;
                self.photos += n;
            }
            Kind::Big => self.big_mails += 1,
            Kind::AutoReply => self.auto_replies += 1,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} messages, {:.0} MB over IMAP (largest {:.1} MB): {} short replies, {} HTML, {} plain, \
             {} photo mails ({} photos), {} 20 MB video mails, {} auto-replies",
            self.count,
            self.imap_bytes as f64 / 1e6,
            self.largest as f64 / 1e6,
            self.replies,
            self.html_mails,
            self.plain_mails,
            self.photo_mails,
            self.photos,
            self.big_mails,
            self.auto_replies
        )
    }
}

pub const FIRST_NL: &[&str] = &[
    "Anna", "Daan", "Sanne", "Jeroen", "Fleur", "Bram", "Lotte", "Sem", "Eva", "Thijs", "Noor",
    "Ruben", "Iris", "Joris", "Mila",
];
pub const LAST_NL: &[&str] = &[
    "de Vries",
    "Jansen",
    "van den Berg",
    "Bakker",
    "Visser",
    "Smit",
    "Meijer",
    "de Boer",
    "Mulder",
    "de Groot",
    "Bos",
    "Vos",
    "Peters",
    "Hendriks",
    "van Dijk",
];
pub const FIRST_EN: &[&str] = &[
    "James", "Emma", "Oliver", "Sophia", "Liam", "Ava", "Noah", "Mia", "Lucas", "Chloe", "Ethan",
    "Grace",
];
pub const LAST_EN: &[&str] = &[
    "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Walker", "Wright",
    "Clarke", "Hughes", "Green",
];
pub const PRODUCTS: &[&str] = &[
    "Pokémon booster box",
    "Panini voetbalplaatjes",
    "Topps Chrome hobby box",
    "Air Jordan 1 Retro High",
    "Nike Dunk Low",
    "zilveren munt uit 1921",
    "One Piece TCG starter deck",
    "Funko Pop vinyl figure",
    "Yu-Gi-Oh! collector tin",
    "vintage Levi's jacket",
    "Magic: The Gathering bundle",
    "graded PSA 10 card",
];

/// One support thread's first mail, so follow-ups can refer to it.
#[derive(Debug, Clone)]
struct Opener {
    message_id: String,
    from: String,
    name: String,
    subject: String,
    dutch: bool,
    order: String,
    text: String,
}

/// Generates the messages of one mailbox in order; follow-ups refer to
/// earlier openers, so ticketd threads them as it would real mail.
pub struct MailboxGen {
    mix: Mix,
    seed: u64,
    next: usize,
    openers: Vec<Opener>,
}

/// What kind of mail a generated message is (for the mix statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reply,
    Html,
    Plain,
    Photo(usize),
    Big,
    AutoReply,
}

impl MailboxGen {
    pub fn new(mix: Mix, seed: u64) -> MailboxGen {
        MailboxGen {
            mix,
            seed,
            next: 0,
            openers: Vec::new(),
        }
    }

    /// The next message's raw bytes (LF line endings) and kind.
    pub fn next_message(&mut self) -> (Vec<u8>, Kind) {
        let i = self.next;
        self.next += 1;
        let mut rng = Rng::for_item(self.seed, i as u64);
        let r = rng.f64();
        let have_thread = !self.openers.is_empty();
        let kind = if self.mix == Mix::Full && i % 333 == 166 {
            Kind::Big
        } else if r < 0.20 {
            let n = match self.mix {
                Mix::Full => rng.range(1, 5),
                Mix::Light => rng.range(1, 2),
            } as usize;
            Kind::Photo(n)
        } else if r < 0.45 && have_thread {
            Kind::Reply
        } else if r < 0.47 && have_thread {
            Kind::AutoReply
        } else if r < 0.72 {
            Kind::Html
        } else {
            Kind::Plain
        };
        let raw = match kind {
            Kind::Reply => self.reply(i, &mut rng),
            Kind::AutoReply => self.auto_reply(i, &mut rng),
            Kind::Html => self.new_ticket(i, &mut rng, true, &[]),
            Kind::Plain => self.new_ticket(i, &mut rng, false, &[]),
            Kind::Photo(n) => {
                let (lo, hi) = match self.mix {
                    Mix::Full => (100_000, 2_000_000),
                    Mix::Light => (10_000, 50_000),
                };
                let parts: Vec<Part> = (0..n)
                    .map(|k| {
                        let size = rng_size(&mut rng, lo, hi);
                        Part::photo(&mut rng, size, k)
                    })
                    .collect();
                if have_thread && rng.chance(0.4) {
                    self.photo_follow_up(i, &mut rng, &parts)
                } else {
                    let html = rng.chance(0.5);
                    self.new_ticket(i, &mut rng, html, &parts)
                }
            }
            Kind::Big => {
                // An unboxing video: ~14.6 MB that base64 makes ~20 MB.
                let video = Part::video(&mut rng, 14_600_000);
                self.new_ticket(i, &mut rng, true, &[video])
            }
        };
        (raw, kind)
    }

    fn person(rng: &mut Rng, dutch: bool, i: usize) -> (String, String) {
        let (first, last) = if dutch {
            (rng.pick(FIRST_NL), rng.pick(LAST_NL))
        } else {
            (rng.pick(FIRST_EN), rng.pick(LAST_EN))
        };
        let local = format!("{}.{}{}", first, last.replace(' ', ""), i).to_lowercase();
        (format!("{first} {last}"), format!("{local}@buyer.test"))
    }

    fn new_ticket(&mut self, i: usize, rng: &mut Rng, html: bool, parts: &[Part]) -> Vec<u8> {
        let dutch = rng.chance(0.6);
        let (name, from) = Self::person(rng, dutch, i);
        let order = rng.alnum(22);
        let product = rng.pick(PRODUCTS).to_string();
        let issue = rng.below(5);
        let (subject, body) = ticket_text(rng, dutch, issue, &name, &order, &product, parts.len());
        let message_id = format!(
            "{}.{}.{}@buyer.test",
            self.seed,
            i,
            rng.next_u64() % 100_000
        );
        self.openers.push(Opener {
            message_id: message_id.clone(),
            from: from.clone(),
            name: name.clone(),
            subject: subject.clone(),
            dutch,
            order,
            text: body.clone(),
        });
        let mut h = Headers::new(&from, &name, &subject, &message_id, i);
        if html {
            h.line("X-Mailer: Microsoft Outlook 16.0");
        }
        let mut out = h.finish();
        write_body(&mut out, rng, &body, html, parts);
        out
    }

    fn recent_opener(&self, rng: &mut Rng) -> Opener {
        let n = self.openers.len();
        let window = n.min(500) as u64;
        self.openers[n - 1 - rng.below(window) as usize].clone()
    }

    fn reply(&mut self, i: usize, rng: &mut Rng) -> Vec<u8> {
        let o = self.recent_opener(rng);
        let new = if o.dutch {
            rng.pick(&[
                "Hoi,\n\nHebben jullie al nieuws over mijn pakket? Ik wacht nog steeds.\n\nGroet,\n",
                "Hallo,\n\nBedankt voor jullie snelle reactie. Hierbij nog het bestelnummer: ",
                "Beste,\n\nIk heb de foto's gisteren al gestuurd, zijn die aangekomen?\n\nMvg,\n",
                "Hallo,\n\nHet pakket is inmiddels bezorgd, maar de doos was open.\n\n",
            ])
        } else {
            rng.pick(&[
                "Hi,\n\nAny update on this? I still haven't heard back.\n\nThanks,\n",
                "Hello,\n\nThanks for the quick answer. Here is the order number again: ",
                "Hi,\n\nI sent the photos yesterday, did you receive them?\n\nBest,\n",
                "Hello,\n\nThe parcel finally arrived but the box was open.\n\n",
            ])
        };
        let mut text = new.to_string();
        if text.ends_with(": ") {
            text.push_str(&o.order);
            text.push_str("\n\n");
        }
        text.push_str(&o.name);
        text.push_str("\n\n");
        text.push_str(&quote(&o, rng));
        let subject = format!("Re: {}", o.subject);
        let message_id = format!(
            "{}.{}.r{}@buyer.test",
            self.seed,
            i,
            rng.next_u64() % 100_000
        );
        let mut h = Headers::new(&o.from, &o.name, &subject, &message_id, i);
        h.line(&format!("In-Reply-To: <{}>", o.message_id));
        h.line(&format!("References: <{}>", o.message_id));
        let mut out = h.finish();
        write_body(&mut out, rng, &text, false, &[]);
        out
    }

    fn photo_follow_up(&mut self, i: usize, rng: &mut Rng, parts: &[Part]) -> Vec<u8> {
        let o = self.recent_opener(rng);
        let mut text = if o.dutch {
            format!(
                "Hallo,\n\nHierbij de foto's van de schade en van de doos, zoals gevraagd.\nBestelnummer: {}\n\nGroeten,\n{}\n\n",
                o.order, o.name
            )
        } else {
            format!(
                "Hi,\n\nAttached are the photos of the damage and the box, as requested.\nOrder number: {}\n\nRegards,\n{}\n\n",
                o.order, o.name
            )
        };
        text.push_str(&quote(&o, rng));
        let subject = format!("Re: {}", o.subject);
        let message_id = format!(
            "{}.{}.p{}@buyer.test",
            self.seed,
            i,
            rng.next_u64() % 100_000
        );
        let mut h = Headers::new(&o.from, &o.name, &subject, &message_id, i);
        h.line(&format!("In-Reply-To: <{}>", o.message_id));
        h.line(&format!("References: <{}>", o.message_id));
        let mut out = h.finish();
        let html = rng.chance(0.5);
        write_body(&mut out, rng, &text, html, parts);
        out
    }

    fn auto_reply(&mut self, i: usize, rng: &mut Rng) -> Vec<u8> {
        let o = self.recent_opener(rng);
        let subject = if o.dutch {
            format!("Automatisch antwoord: {}", o.subject)
        } else {
            format!("Automatic reply: {}", o.subject)
        };
        let message_id = format!(
            "{}.{}.a{}@buyer.test",
            self.seed,
            i,
            rng.next_u64() % 100_000
        );
        let mut h = Headers::new(&o.from, &o.name, &subject, &message_id, i);
        h.line("Auto-Submitted: auto-replied");
        h.line("X-Auto-Response-Suppress: All");
        h.line(&format!("In-Reply-To: <{}>", o.message_id));
        let mut out = h.finish();
        let text = if o.dutch {
            "Ik ben tot en met maandag afwezig en lees mijn e-mail niet.\n"
        } else {
            "I am out of the office until Monday with limited access to e-mail.\n"
        };
        write_body(&mut out, rng, text, false, &[]);
        out
    }
}

fn rng_size(rng: &mut Rng, lo: u64, hi: u64) -> usize {
    rng.log_uniform(lo, hi) as usize
}

/// The buyer's text of a new ticket: subject and body.
pub fn ticket_text(
    rng: &mut Rng,
    dutch: bool,
    issue: u64,
    name: &str,
    order: &str,
    product: &str,
    photos: usize,
) -> (String, String) {
    let shipment = format!(
        "3S{}{}",
        rng.alnum(4).to_uppercase(),
        rng.range(100_000_000, 999_999_999)
    );
    let (subject, middle) = if dutch {
        match issue {
            0 => (
                format!("Pakket beschadigd aangekomen - {product}"),
                format!("Mijn pakket met de {product} is vandaag beschadigd aangekomen. De doos was aan de zijkant ingedeukt en het product zelf heeft een flinke kras op de voorkant. Ik heb het verkocht als nieuw gekocht in een live show."),
            ),
            1 => (
                "Item ontbreekt in mijn bestelling".to_string(),
                format!("Ik heb mijn bestelling ontvangen, maar de {product} zat er niet in. In de doos zat alleen opvulmateriaal. Kunnen jullie uitzoeken waar het gebleven is?"),
            ),
            2 => (
                format!("Bestelling nog niet ontvangen ({order})"),
                format!("Ik heb op 3 november de {product} gekocht maar het pakket is nog steeds niet bezorgd. Volgens track & trace staat het al een week stil in het sorteercentrum."),
            ),
            3 => (
                "Kan niet inloggen op mijn account".to_string(),
                "Sinds gisteren kan ik niet meer inloggen op mijn Whatnot account. Ik krijg steeds de melding dat mijn wachtwoord onjuist is, ook na het resetten.".to_string(),
            ),
            _ => (
                "Vraag over verzendkosten".to_string(),
                format!("Ik heb een vraag over de verzendkosten van de {product}. Waarom betaal ik twee keer verzendkosten als ik bij dezelfde verkoper koop?"),
            ),
        }
    } else {
        match issue {
            0 => (
                format!("Package arrived damaged - {product}"),
                format!("My package with the {product} arrived damaged today. The box was crushed on one side and the item itself has a deep scratch on the front. It was sold as brand new in a live show."),
            ),
            1 => (
                "Item missing from my order".to_string(),
                format!("I received my order but the {product} was not in the box. There was only packing material inside. Could you find out what happened?"),
            ),
            2 => (
                format!("Order not received yet ({order})"),
                format!("I bought the {product} on November 3rd but the parcel still has not been delivered. Tracking says it has been stuck at the sorting centre for a week."),
            ),
            3 => (
                "Cannot log in to my account".to_string(),
                "Since yesterday I can no longer log in to my Whatnot account. It keeps saying my password is wrong, even after a reset.".to_string(),
            ),
            _ => (
                "Question about shipping costs".to_string(),
                format!("I have a question about the shipping costs of the {product}. Why do I pay shipping twice when I buy from the same seller?"),
            ),
        }
    };
    let mut body = String::with_capacity(1200);
    body.push_str(if dutch {
        "Hallo Whatnot Support,\n\n"
    } else {
        "Hello Whatnot Support,\n\n"
    });
    body.push_str(&middle);
    body.push_str("\n\n");
    if issue < 3 || rng.chance(0.3) {
        if dutch {
            body.push_str(&format!("Bestelnummer: {order}\n"));
            if rng.chance(0.5) {
                body.push_str(&format!("Zendingsnummer: {shipment}\n"));
            }
            body.push_str(&format!(
                "Gebruikersnaam: @{}\n",
                name.replace(' ', "").to_lowercase()
            ));
        } else {
            body.push_str(&format!("Order number: {order}\n"));
            if rng.chance(0.5) {
                body.push_str(&format!("Tracking number: {shipment}\n"));
            }
            body.push_str(&format!(
                "Username: @{}\n",
                name.replace(' ', "").to_lowercase()
            ));
        }
    }
    if photos > 0 {
        body.push_str(if dutch {
            "\nIn de bijlage zitten foto's van het product en de verpakking.\n"
        } else {
            "\nI attached photos of the item and the packaging.\n"
        });
    }
    body.push_str(if dutch {
        "\nMet vriendelijke groet,\n"
    } else {
        "\nKind regards,\n"
    });
    body.push_str(name);
    body.push('\n');
    if rng.chance(0.3) {
        body.push_str("\n--\nVerstuurd vanaf mijn iPhone\n");
    }
    (subject, body)
}

/// The quoted history a mail client appends to a reply.
fn quote(o: &Opener, rng: &mut Rng) -> String {
    let mut q = if o.dutch {
        format!(
            "Op di 25 nov 2025 om 1{}:0{} schreef {} <{}>:\n",
            rng.below(10),
            rng.below(10),
            o.name,
            o.from
        )
    } else {
        format!(
            "On Tue, Nov 25, 2025 at 1{}:0{} PM {} <{}> wrote:\n",
            rng.below(10),
            rng.below(10),
            o.name,
            o.from
        )
    };
    for line in o.text.lines() {
        q.push_str("> ");
        q.push_str(line);
        q.push('\n');
    }
    q
}

struct Headers {
    out: String,
}

impl Headers {
    /// The header as Dovecot stores a mail that came through Postfix and
    /// LMTP: Return-Path, Delivered-To and two Received lines first.
    fn new(from: &str, name: &str, subject: &str, message_id: &str, i: usize) -> Headers {
        let minute = i % 60;
        let hour = 8 + (i / 60) % 12;
        let date = format!("Tue, 25 Nov 2025 {hour:02}:{minute:02}:{:02} +0100", i % 53);
        let mut out = String::with_capacity(1024);
        out.push_str(&format!(
            "Return-Path: <{from}>\nDelivered-To: support@example.test\n\
             Received: from mx.example.test\n\tby tdbench with LMTP id q{i:08x}\n\tfor <support@example.test>; {date}\n\
             Received: from [192.0.2.{}] (client.buyer.test [127.0.0.1])\n\tby mx.example.test (Postfix) with ESMTP id B{i:010X}\n\tfor <support@example.test>; {date}\n",
            i % 250 + 1
        ));
        out.push_str(&format!(
            "From: {name} <{from}>\nTo: Whatnot Support <support@example.test>\nSubject: {subject}\n\
             Date: {date}\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n"
        ));
        Headers { out }
    }

    fn line(&mut self, l: &str) {
        self.out.push_str(l);
        self.out.push('\n');
    }

    fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

/// An attachment: a content type, a file name and random bytes.
pub struct Part {
    pub content_type: &'static str,
    pub filename: String,
    pub data: Vec<u8>,
}

impl Part {
    fn photo(rng: &mut Rng, size: usize, k: usize) -> Part {
        let mut data = vec![0u8; size.max(16)];
        rng.fill(&mut data);
        data[..4].copy_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
        Part {
            content_type: "image/jpeg",
            filename: format!("IMG_{:04}.jpg", 1000 + rng.below(9000) as usize + k),
            data,
        }
    }

    fn video(rng: &mut Rng, size: usize) -> Part {
        let mut data = vec![0u8; size];
        rng.fill(&mut data);
        Part {
            content_type: "video/quicktime",
            filename: format!("IMG_{:04}.MOV", 1000 + rng.below(9000)),
            data,
        }
    }
}

/// Writes the MIME structure after the header: text/plain alone, or
/// text + HTML alternatives, inside multipart/mixed when there are parts.
pub fn write_body(out: &mut Vec<u8>, rng: &mut Rng, text: &str, html: bool, parts: &[Part]) {
    let boundary = |tag: &str, rng: &mut Rng| format!("----=_{tag}_{:016x}", rng.next_u64());
    let mixed = (!parts.is_empty()).then(|| boundary("Mixed", rng));
    if let Some(b) = &mixed {
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{b}\"\n\nThis is a multi-part message in MIME format.\n\n--{b}\n").as_bytes(),
        );
    }
    if html {
        let alt = boundary("Alt", rng);
        out.extend_from_slice(
            format!("Content-Type: multipart/alternative; boundary=\"{alt}\"\n\n--{alt}\n")
                .as_bytes(),
        );
        text_part(out, text);
        out.extend_from_slice(format!("\n--{alt}\n").as_bytes());
        out.extend_from_slice(
            b"Content-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n",
        );
        quoted_printable(&html_version(text), out);
        out.extend_from_slice(format!("\n--{alt}--\n").as_bytes());
    } else {
        text_part(out, text);
    }
    if let Some(b) = &mixed {
        for p in parts {
            out.extend_from_slice(
                format!(
                    "\n--{b}\nContent-Type: {}; name=\"{}\"\nContent-Disposition: attachment; filename=\"{}\"\nContent-Transfer-Encoding: base64\n\n",
                    p.content_type, p.filename, p.filename
                )
                .as_bytes(),
            );
            base64_lines(&p.data, out);
        }
        out.extend_from_slice(format!("\n--{b}--\n").as_bytes());
    }
}

fn text_part(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(
        b"Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: 8bit\n\n",
    );
    out.extend_from_slice(text.as_bytes());
}

/// The HTML a desktop client makes of a short text: a style block, one
/// paragraph per line, the usual wrapper divs.
fn html_version(text: &str) -> String {
    let mut h = String::with_capacity(text.len() * 3 + 2500);
    h.push_str("<html xmlns:v=\"urn:schemas-microsoft-com:vml\" xmlns:o=\"urn:schemas-microsoft-com:office:office\"><head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n<meta name=\"Generator\" content=\"Microsoft Word 15 (filtered medium)\">\n<style><!--\n@font-face {font-family:\"Cambria Math\"; panose-1:2 4 5 3 5 4 6 3 2 4;}\n@font-face {font-family:Calibri; panose-1:2 15 5 2 2 2 4 3 2 4;}\np.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt; font-family:\"Calibri\",sans-serif;}\na:link, span.MsoHyperlink {mso-style-priority:99; color:#0563C1; text-decoration:underline;}\nspan.EmailStyle17 {mso-style-type:personal-compose; font-family:\"Calibri\",sans-serif; color:windowtext;}\n.MsoChpDefault {mso-style-type:export-only; font-family:\"Calibri\",sans-serif;}\n@page WordSection1 {size:612.0pt 792.0pt; margin:72.0pt 72.0pt 72.0pt 72.0pt;}\ndiv.WordSection1 {page:WordSection1;}\n--></style>\n</head><body lang=\"NL\" link=\"#0563C1\" vlink=\"#954F72\" style=\"word-wrap:break-word\"><div class=\"WordSection1\">\n");
    for line in text.lines() {
        if line.is_empty() {
            h.push_str("<p class=\"MsoNormal\"><o:p>&nbsp;</o:p></p>\n");
        } else {
            h.push_str("<p class=\"MsoNormal\"><span style=\"font-size:11.0pt\">");
            for c in line.chars() {
                match c {
                    '<' => h.push_str("&lt;"),
                    '>' => h.push_str("&gt;"),
                    '&' => h.push_str("&amp;"),
                    c => h.push(c),
                }
            }
            h.push_str("<o:p></o:p></span></p>\n");
        }
    }
    h.push_str("</div></body></html>\n");
    h
}

/// Quoted-printable with soft line breaks at 76 columns.
pub fn quoted_printable(s: &str, out: &mut Vec<u8>) {
    for line in s.lines() {
        let mut col = 0;
        for &b in line.as_bytes() {
            let enc: Vec<u8> = if b == b'=' || b >= 0x7f || (b < 0x20 && b != b'\t') {
                format!("={b:02X}").into_bytes()
            } else {
                vec![b]
            };
            if col + enc.len() > 75 {
                out.extend_from_slice(b"=\n");
                col = 0;
            }
            col += enc.len();
            out.extend_from_slice(&enc);
        }
        out.push(b'\n');
    }
}

/// A buyer's new-ticket mail for the time-to-acknowledge scenario (sent over
/// SMTP, so any line ending will do).
pub fn buyer_mail(from: &str, name: &str, message_id: &str, seed: u64, i: usize) -> Vec<u8> {
    let mut rng = Rng::for_item(seed, i as u64);
    let dutch = rng.chance(0.6);
    let order = rng.alnum(22);
    let product = rng.pick(PRODUCTS).to_string();
    let issue = rng.below(5);
    let (subject, body) = ticket_text(&mut rng, dutch, issue, name, &order, &product, 0);
    let mut out = format!(
        "From: {name} <{from}>\nTo: Whatnot Support <support@example.test>\nSubject: {subject}\n\
         Date: {}\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes();
    write_body(&mut out, &mut rng, &body, false, &[]);
    out
}

/// Writes messages into `maildir/new` (via `tmp/`, as the maildir protocol
/// wants) and gives them to the `mail` user, with names that keep delivery
/// order and carry the `,S=,W=` sizes Dovecot's LMTP writes.
pub struct MaildirWriter<'a> {
    maildir: &'a Path,
    owner: (u32, u32),
    /// Timestamp of the first message; one second apart after it.
    first: i64,
    pid: u32,
}

impl<'a> MaildirWriter<'a> {
    /// Creates `new/`, `cur/` and `tmp/` for a mailbox of `count` messages.
    pub fn new(maildir: &'a Path, owner: (u32, u32), count: usize) -> io::Result<Self> {
        for sub in ["new", "cur", "tmp"] {
            let d = maildir.join(sub);
            fs::create_dir_all(&d)?;
            chown(&d, Some(owner.0), Some(owner.1))?;
        }
        Ok(MaildirWriter {
            maildir,
            owner,
            first: chrono::Utc::now().timestamp() - count as i64,
            pid: std::process::id(),
        })
    }

    /// Writes message `i` (LF line endings); returns its size on disk and
    /// over IMAP (CRLF, RFC822.SIZE).
    pub fn write(&self, i: usize, raw: &[u8]) -> io::Result<(u64, u64)> {
        let size = raw.len() as u64;
        let vsize = size + raw.iter().filter(|&&b| b == b'\n').count() as u64;
        // Delivery order is name order for Dovecot: keep names increasing.
        let base = format!(
            "{}.M{}P{}Q{i}.tdbench,S={size},W={vsize}",
            self.first + i as i64,
            i % 1_000_000,
            self.pid
        );
        let tmp = self.maildir.join("tmp").join(&base);
        let mut f = fs::File::create(&tmp)?;
        f.write_all(raw)?;
        drop(f);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        chown(&tmp, Some(self.owner.0), Some(self.owner.1))?;
        fs::rename(&tmp, self.maildir.join("new").join(&base))?;
        Ok((size, vsize))
    }
}

/// Writes `count` messages of `mix` into `maildir/new`.
pub fn fill_maildir(
    maildir: &Path,
    mix: Mix,
    count: usize,
    seed: u64,
    owner: (u32, u32),
    progress: &dyn Fn(usize),
) -> io::Result<Filled> {
    let started = Instant::now();
    let writer = MaildirWriter::new(maildir, owner, count)?;
    let mut filled = Filled::default();
    let mut generator = MailboxGen::new(mix, seed);
    for i in 0..count {
        let (raw, kind) = generator.next_message();
        let (size, vsize) = writer.write(i, &raw)?;
        filled.count += 1;
        filled.disk_bytes += size;
        filled.imap_bytes += vsize;
        filled.largest = filled.largest.max(vsize);
        filled.count_kind(kind);
        if (i + 1) % 1000 == 0 {
            progress(i + 1);
        }
    }
    filled.elapsed = started.elapsed();
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_mail_parses_with_its_parts() {
        let mut g = MailboxGen::new(Mix::Light, 1);
        let mut kinds = Vec::new();
        for _ in 0..300 {
            let (raw, kind) = g.next_message();
            let msg = ticketd::core::parse::parse(&raw);
            assert!(msg.problems.is_empty(), "{:?}", msg.problems);
            assert!(msg.from_address.is_some());
            if let Kind::Photo(n) = kind {
                assert_eq!(msg.attachments.len(), n);
                assert!(msg
                    .attachments
                    .iter()
                    .all(|a| a.data.starts_with(&[0xFF, 0xD8])));
            }
            kinds.push(kind);
        }
        assert!(kinds.contains(&Kind::Reply));
        assert!(kinds.contains(&Kind::Html));
        assert!(kinds.iter().any(|k| matches!(k, Kind::Photo(_))));
    }

    #[test]
    fn the_same_seed_gives_the_same_mailbox() {
        let a: Vec<Vec<u8>> = {
            let mut g = MailboxGen::new(Mix::Light, 9);
            (0..50).map(|_| g.next_message().0).collect()
        };
        let mut g = MailboxGen::new(Mix::Light, 9);
        let b: Vec<Vec<u8>> = (0..50).map(|_| g.next_message().0).collect();
        assert_eq!(a, b);
    }
}
