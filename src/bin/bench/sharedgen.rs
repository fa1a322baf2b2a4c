//! A shared mailbox, generated from a seed: one support mail in ten (the
//! full mix of `mailgen`, addressed to the support address) among the mail
//! the rest of the company gets in the same inbox: newsletters with a
//! List-Id (long HTML, some with inline images), invoices with a PDF of
//! 100 KB–2 MB, colleagues' threads (quoted history, a third with office
//! files of 100 KB–2 MB), short notifications, and one 20 MB mail in every
//! 333 as in the full mix. The other mail goes to the shared mailbox's
//! other addresses (info@, finance@, team@, ...), never to the support
//! address, never with "Whatnot Support" in the subject and never in a
//! support thread: `[intake] addresses = [support]` must take exactly the
//! support mail. The support mail is written a second time into a mailbox
//! of its own, to time filing it alone.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::mailgen::{
    quoted_printable, write_body, Filled, MailboxGen, MaildirWriter, Mix, Part, FIRST_EN, FIRST_NL,
    LAST_EN, LAST_NL,
};
use crate::util::{base64_lines, Rng};

/// What one unrelated message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    Newsletter { images: usize },
    Invoice,
    Colleague { files: usize },
    Notification,
    Big,
}

/// What ended up in the shared mailbox (and the support-only one).
#[derive(Debug, Clone, Default)]
pub struct SharedFilled {
    pub count: usize,
    /// Bytes an IMAP client receives for the whole shared mailbox.
    pub imap_bytes: u64,
    pub disk_bytes: u64,
    pub largest: u64,
    /// The support mail (the same messages in both mailboxes).
    pub support: Filled,
    /// Message-IDs of the support mail, as ticketd stores them.
    pub support_ids: Vec<String>,
    pub other_bytes: u64,
    pub newsletters: usize,
    pub inline_images: usize,
    pub invoices: usize,
    pub colleague_mails: usize,
    pub office_files: usize,
    pub notifications: usize,
    pub big_mails: usize,
    pub elapsed: Duration,
}

impl SharedFilled {
    pub fn others(&self) -> usize {
        self.count - self.support.count
    }

    pub fn describe(&self) -> String {
        format!(
            "{} messages, {:.0} MB over IMAP (largest {:.1} MB): {} support mails ({:.0} MB: {} photo mails, \
             {} replies, {} auto-replies), {} others ({:.0} MB): {} newsletters ({} inline images), \
             {} invoices with a PDF, {} colleagues' mails ({} office files), {} notifications, \
             {} 20 MB mails",
            self.count,
            self.imap_bytes as f64 / 1e6,
            self.largest as f64 / 1e6,
            self.support.count,
            self.support.imap_bytes as f64 / 1e6,
            self.support.photo_mails,
            self.support.replies,
            self.support.auto_replies,
            self.others(),
            self.other_bytes as f64 / 1e6,
            self.newsletters,
            self.inline_images,
            self.invoices,
            self.colleague_mails,
            self.office_files,
            self.notifications,
            self.big_mails
        )
    }
}

/// Writes `count` messages into `shared` (every tenth, at seeded places,
/// support mail) and the same support mail alone into `alone`.
pub fn fill_shared(
    shared: &Path,
    alone: &Path,
    count: usize,
    seed: u64,
    owner: (u32, u32),
) -> io::Result<SharedFilled> {
    let started = Instant::now();
    let n_support = count / 10;
    // Which places hold support mail: a seeded partial shuffle.
    let mut places: Vec<usize> = (0..count).collect();
    let mut rng = Rng::new(seed);
    for k in 0..n_support {
        let j = k + rng.below((count - k) as u64) as usize;
        places.swap(k, j);
    }
    let mut is_support = vec![false; count];
    for &p in &places[..n_support] {
        is_support[p] = true;
    }

    let all = MaildirWriter::new(shared, owner, count)?;
    let only = MaildirWriter::new(alone, owner, n_support)?;
    let mut support_gen = MailboxGen::new(Mix::Full, seed);
    let mut other_gen = OtherGen::new(seed ^ 0x5eed);
    let mut f = SharedFilled::default();
    for (i, &support) in is_support.iter().enumerate() {
        let raw = if support {
            let (raw, kind) = support_gen.next_message();
            let (size, vsize) = only.write(f.support.count, &raw)?;
            f.support.count += 1;
            f.support.disk_bytes += size;
            f.support.imap_bytes += vsize;
            f.support.largest = f.support.largest.max(vsize);
            f.support.count_kind(kind);
            f.support_ids.push(message_id_of(&raw).unwrap_or_default());
            raw
        } else {
            let (raw, kind) = other_gen.next_message();
            match kind {
                Other::Newsletter { images } => {
                    f.newsletters += 1;
                    f.inline_images += images;
                }
                Other::Invoice => f.invoices += 1,
                Other::Colleague { files } => {
                    f.colleague_mails += 1;
                    f.office_files += files;
                }
                Other::Notification => f.notifications += 1,
                Other::Big => f.big_mails += 1,
            }
            raw
        };
        let (size, vsize) = all.write(i, &raw)?;
        f.count += 1;
        f.disk_bytes += size;
        f.imap_bytes += vsize;
        f.largest = f.largest.max(vsize);
        if !support {
            f.other_bytes += vsize;
        }
    }
    f.support.elapsed = started.elapsed();
    f.elapsed = started.elapsed();
    Ok(f)
}

/// The Message-ID of a generated mail, without the angle brackets.
fn message_id_of(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(8192)]);
    let line = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))?;
    let v = line["message-id:".len()..].trim();
    Some(v.trim_start_matches('<').trim_end_matches('>').to_string())
}

/// The shared mailbox's addresses other than support.
const ALIASES: &[&str] = &[
    "info@example.test",
    "team@example.test",
    "sales@example.test",
    "inkoop@example.test",
    "marketing@example.test",
];

struct Newsletter {
    name: &'static str,
    from: &'static str,
    list: &'static str,
    topics: &'static [&'static str],
}

const NEWSLETTERS: &[Newsletter] = &[
    Newsletter {
        name: "RetailVakblad",
        from: "nieuwsbrief@retailvakblad.test",
        list: "weekly.retailvakblad.test",
        topics: &[
            "Black Friday: wat werkte dit jaar",
            "Retourstromen slimmer inrichten",
            "Live shopping groeit door in de Benelux",
            "Nieuwe regels voor pakketbezorging",
        ],
    },
    Newsletter {
        name: "Card Distributor Europe",
        from: "updates@carddistri.test",
        list: "dealers.carddistri.test",
        topics: &[
            "New allocations: Scarlet & Violet booster boxes",
            "Pre-order window for the spring sets",
            "Price changes on sealed product",
            "Dealer event dates announced",
        ],
    },
    Newsletter {
        name: "Pakketdienst Zakelijk",
        from: "zakelijk@pakketdienst.test",
        list: "zakelijk.pakketdienst.test",
        topics: &[
            "Extra ophaalmomenten in december",
            "Tarieven 2026 voor zakelijke klanten",
            "Verzendlabels nu ook via de API",
        ],
    },
    Newsletter {
        name: "Shop Platform Partners",
        from: "news@shopplatform.test",
        list: "partners.shopplatform.test",
        topics: &[
            "Your monthly seller insights",
            "Product update: faster checkout",
            "Webinar: growing repeat buyers",
        ],
    },
];

const VENDORS: &[(&str, &str, &str)] = &[
    (
        "Verpakkingen BV",
        "facturen@verpakkingen.test",
        "finance@example.test",
    ),
    (
        "Kantoorhuis",
        "billing@kantoorhuis.test",
        "finance@example.test",
    ),
    (
        "Hosting Noord",
        "invoices@hostingnoord.test",
        "finance@example.test",
    ),
    (
        "TCG Groothandel",
        "administratie@tcggroothandel.test",
        "inkoop@example.test",
    ),
    (
        "Pakketdienst",
        "facturatie@pakketdienst.test",
        "finance@example.test",
    ),
];

const TOPICS_NL: &[&str] = &[
    "Planning voorraad Q1",
    "Inkoop boosters januari",
    "Notulen weekoverleg",
    "Offerte verpakkingsmateriaal",
    "Vakantierooster december",
    "Voorstel nieuw retourbeleid",
    "Cijfers live shows november",
    "Nieuwe medewerker magazijn",
];
const TOPICS_EN: &[&str] = &[
    "Stock planning for Q1",
    "Sealed product allocation",
    "Weekly meeting notes",
    "Shipping rates comparison",
    "Holiday schedule",
    "Live show numbers November",
];
const FILES: &[(&str, &str)] = &[
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    ("application/pdf", "pdf"),
];
const WORDS: &[&str] = &[
    "de",
    "het",
    "een",
    "voor",
    "met",
    "nieuwe",
    "klanten",
    "verzending",
    "week",
    "prijs",
    "aanbod",
    "markt",
    "verkoop",
    "online",
    "winkel",
    "levering",
    "groei",
    "seizoen",
    "the",
    "and",
    "sellers",
    "buyers",
    "shipping",
    "orders",
    "update",
    "growth",
    "season",
    "market",
    "collectors",
    "sealed",
    "product",
    "dealers",
    "price",
    "stock",
    "event",
];

/// A colleague's thread, for replies.
struct Thread {
    message_id: String,
    subject: String,
    from: String,
    name: String,
    to: &'static str,
    text: String,
    dutch: bool,
}

/// Generates the unrelated mail in order.
struct OtherGen {
    seed: u64,
    next: usize,
    threads: Vec<Thread>,
}

impl OtherGen {
    fn new(seed: u64) -> OtherGen {
        OtherGen {
            seed,
            next: 0,
            threads: Vec::new(),
        }
    }

    fn next_message(&mut self) -> (Vec<u8>, Other) {
        let i = self.next;
        self.next += 1;
        let mut rng = Rng::for_item(self.seed, i as u64);
        let r = rng.f64();
        if i % 333 == 166 {
            return (self.big(i, &mut rng), Other::Big);
        }
        if r < 0.30 {
            let images = if rng.chance(0.4) {
                rng.range(1, 3) as usize
            } else {
                0
            };
            (
                self.newsletter(i, &mut rng, images),
                Other::Newsletter { images },
            )
        } else if r < 0.50 {
            (self.invoice(i, &mut rng), Other::Invoice)
        } else if r < 0.88 {
            let files = if rng.chance(0.35) {
                rng.range(1, 3) as usize
            } else {
                0
            };
            let raw = self.colleague_files(i, &mut rng, files);
            (raw, Other::Colleague { files })
        } else {
            (self.notification(i, &mut rng), Other::Notification)
        }
    }

    fn message_id(&self, i: usize, rng: &mut Rng, domain: &str) -> String {
        format!(
            "{}.{i}.o{}@{domain}",
            self.seed % 100_000,
            rng.next_u64() % 1_000_000
        )
    }

    fn newsletter(&mut self, i: usize, rng: &mut Rng, images: usize) -> Vec<u8> {
        let n = rng.pick(NEWSLETTERS);
        let topic = rng.pick(n.topics);
        let week = 40 + i % 12;
        let subject = format!("{} week {week}: {topic}", n.name);
        let domain = n.from.split('@').nth(1).unwrap_or("news.test");
        let id = self.message_id(i, rng, domain);
        let to = *rng.pick(&ALIASES[..3]);
        let mut out = header(
            i,
            &Addr {
                name: n.name,
                address: n.from,
            },
            to,
            None,
            &subject,
            &id,
        );
        out.push_str(&format!(
            "List-Id: {} <{}>\nList-Unsubscribe: <https://{domain}/u/{:x}>, <mailto:unsubscribe@{domain}>\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\nPrecedence: bulk\n\
             Feedback-ID: {week}:{}:newsletter\n",
            n.name,
            n.list,
            rng.next_u64(),
            n.list
        ));
        let mut out = out.into_bytes();
        // Long HTML: 8–30 article blocks with text and linked pictures.
        let blocks = rng.range(8, 30) as usize;
        let mut html = String::with_capacity(blocks * 3000);
        html.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><style>body{margin:0;background:#f2f2f2} .c{max-width:640px;margin:0 auto;background:#fff} h2{font-family:Arial,sans-serif;color:#222} p{font-family:Georgia,serif;color:#444;line-height:1.5} .btn{display:inline-block;padding:10px 18px;background:#0a66c2;color:#fff;text-decoration:none}</style></head><body><table class=\"c\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\">\n");
        let mut plain = String::new();
        for b in 0..blocks {
            let title = format!("{} ({})", rng.pick(n.topics), b + 1);
            let para = words_between(rng, 120, 400);
            html.push_str(&format!(
                "<tr><td style=\"padding:24px\"><img src=\"https://{domain}/img/{:x}.jpg\" width=\"592\" alt=\"\" style=\"display:block;width:100%\"><h2>{title}</h2><p>{para}</p><a class=\"btn\" href=\"https://{domain}/r/{:x}?utm_source=newsletter&amp;utm_medium=email\">Lees meer</a></td></tr>\n",
                rng.next_u64(),
                rng.next_u64()
            ));
            plain.push_str(&format!(
                "{title}\n\n{para}\n\nhttps://{domain}/r/{:x}\n\n",
                rng.next_u64()
            ));
        }
        html.push_str("<tr><td style=\"padding:24px;font-size:12px;color:#888\">Je ontvangt deze e-mail omdat je bent ingeschreven. <a href=\"https://unsubscribe.test/\">Uitschrijven</a></td></tr></table></body></html>\n");
        let rel = format!("----=_Rel_{:016x}", rng.next_u64());
        let alt = format!("----=_Alt_{:016x}", rng.next_u64());
        if images > 0 {
            out.extend_from_slice(
                format!("Content-Type: multipart/related; boundary=\"{rel}\"\n\n--{rel}\n")
                    .as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "Content-Type: multipart/alternative; boundary=\"{alt}\"\n\n--{alt}\n\
                 Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n"
            )
            .as_bytes(),
        );
        quoted_printable(&plain, &mut out);
        out.extend_from_slice(
            format!(
                "\n--{alt}\nContent-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: quoted-printable\n\n"
            )
            .as_bytes(),
        );
        quoted_printable(&html, &mut out);
        out.extend_from_slice(format!("\n--{alt}--\n").as_bytes());
        if images > 0 {
            for k in 0..images {
                let size = rng.log_uniform(30_000, 300_000) as usize;
                let mut data = vec![0u8; size];
                rng.fill(&mut data);
                data[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
                out.extend_from_slice(
                    format!(
                        "\n--{rel}\nContent-Type: image/png; name=\"banner{k}.png\"\nContent-Transfer-Encoding: base64\n\
                         Content-ID: <banner{k}.{i}@{domain}>\nContent-Disposition: inline; filename=\"banner{k}.png\"\n\n"
                    )
                    .as_bytes(),
                );
                base64_lines(&data, &mut out);
            }
            out.extend_from_slice(format!("\n--{rel}--\n").as_bytes());
        }
        out
    }

    fn invoice(&mut self, i: usize, rng: &mut Rng) -> Vec<u8> {
        let (vendor, from, to) = *rng.pick(VENDORS);
        let number = format!("2025-{:05}", rng.range(1000, 99_999));
        let subject = format!("Factuur {number} van {vendor}");
        let domain = from.split('@').nth(1).unwrap_or("vendor.test");
        let id = self.message_id(i, rng, domain);
        let out = header(
            i,
            &Addr {
                name: vendor,
                address: from,
            },
            to,
            None,
            &subject,
            &id,
        );
        let mut out = out.into_bytes();
        let amount = rng.range(40, 9_000);
        let text = format!(
            "Geachte klant,\n\nIn de bijlage vindt u factuur {number} voor een bedrag van EUR {amount},{:02}.\n\
             Wij verzoeken u het bedrag binnen 30 dagen over te maken onder vermelding van het factuurnummer.\n\n\
             Met vriendelijke groet,\n\nAfdeling debiteuren\n{vendor}\n",
            rng.below(100)
        );
        let size = rng.log_uniform(100_000, 2_000_000) as usize;
        let mut data = vec![0u8; size];
        rng.fill(&mut data);
        data[..9].copy_from_slice(b"%PDF-1.7\n");
        let pdf = Part {
            content_type: "application/pdf",
            filename: format!("Factuur_{number}.pdf"),
            data,
        };
        let html = rng.chance(0.3);
        write_body(&mut out, rng, &text, html, &[pdf]);
        out
    }

    fn colleague_files(&mut self, i: usize, rng: &mut Rng, files: usize) -> Vec<u8> {
        let parts: Vec<Part> = (0..files)
            .map(|k| {
                let (ct, ext) = *rng.pick(FILES);
                let size = rng.log_uniform(100_000, 2_000_000) as usize;
                let mut data = vec![0u8; size];
                rng.fill(&mut data);
                data[..4].copy_from_slice(if ext == "pdf" { b"%PDF" } else { b"PK\x03\x04" });
                Part {
                    content_type: ct,
                    filename: format!("document_{}_{k}.{ext}", 100 + rng.below(900)),
                    data,
                }
            })
            .collect();
        self.colleague_mail(i, rng, &parts)
    }

    /// A colleague sends round the recording of a live show: ~14.6 MB
    /// that base64 makes ~20 MB, as the full mix's video mails.
    fn big(&mut self, i: usize, rng: &mut Rng) -> Vec<u8> {
        let mut data = vec![0u8; 14_600_000];
        rng.fill(&mut data);
        let video = Part {
            content_type: "video/mp4",
            filename: "opname_live_show.mp4".to_string(),
            data,
        };
        self.colleague_mail(i, rng, &[video])
    }

    /// A new thread among colleagues, or a reply in a recent one.
    fn colleague_mail(&mut self, i: usize, rng: &mut Rng, parts: &[Part]) -> Vec<u8> {
        let reply = !self.threads.is_empty() && rng.chance(0.55);
        let dutch = rng.chance(0.7);
        let (first, last) = if dutch {
            (*rng.pick(FIRST_NL), *rng.pick(LAST_NL))
        } else {
            (*rng.pick(FIRST_EN), *rng.pick(LAST_EN))
        };
        let name = format!("{first} {last}");
        let from = format!("{}.{}@example.test", first, last.replace(' ', "")).to_lowercase();
        let id = self.message_id(i, rng, "example.test");
        let html = rng.chance(0.5);
        let (subject, to, text, refs) = if reply {
            let n = self.threads.len();
            let t = &self.threads[n - 1 - rng.below(n.min(60) as u64) as usize];
            let mut text = if t.dutch {
                format!(
                    "Hoi {},\n\n{}\n\nGroet,\n{first}\n\nOp 25 nov 2025 schreef {} <{}>:\n",
                    t.name.split(' ').next().unwrap_or(""),
                    words_between(rng, 20, 80),
                    t.name,
                    t.from
                )
            } else {
                format!(
                    "Hi {},\n\n{}\n\nThanks,\n{first}\n\nOn Tue, 25 Nov 2025, {} <{}> wrote:\n",
                    t.name.split(' ').next().unwrap_or(""),
                    words_between(rng, 20, 80),
                    t.name,
                    t.from
                )
            };
            for l in t.text.lines() {
                text.push_str("> ");
                text.push_str(l);
                text.push('\n');
            }
            let subject = if t.subject.starts_with("Re: ") {
                t.subject.clone()
            } else {
                format!("Re: {}", t.subject)
            };
            (subject, t.to, text, Some(t.message_id.clone()))
        } else {
            let topic = if dutch {
                *rng.pick(TOPICS_NL)
            } else {
                *rng.pick(TOPICS_EN)
            };
            let text = if dutch {
                format!(
                    "Hoi allemaal,\n\n{}\n\n{}\n\nGroet,\n{name}\n",
                    words_between(rng, 40, 160),
                    words_between(rng, 20, 100)
                )
            } else {
                format!(
                    "Hi all,\n\n{}\n\n{}\n\nBest,\n{name}\n",
                    words_between(rng, 40, 160),
                    words_between(rng, 20, 100)
                )
            };
            (topic.to_string(), *rng.pick(ALIASES), text, None)
        };
        let mut h = header(
            i,
            &Addr {
                name: &name,
                address: &from,
            },
            to,
            Some(*rng.pick(&["jan.bakker@example.test", "sanne.visser@example.test"])),
            &subject,
            &id,
        );
        if let Some(r) = &refs {
            h.push_str(&format!("In-Reply-To: <{r}>\nReferences: <{r}>\n"));
        }
        if html {
            h.push_str("X-Mailer: Microsoft Outlook 16.0\n");
        }
        let mut out = h.into_bytes();
        write_body(&mut out, rng, &text, html, parts);
        self.threads.push(Thread {
            message_id: id,
            subject,
            from,
            name,
            to,
            text: text.lines().take(12).collect::<Vec<_>>().join("\n"),
            dutch,
        });
        out
    }

    fn notification(&mut self, i: usize, rng: &mut Rng) -> Vec<u8> {
        let (name, from, to, subject, text) = match rng.below(3) {
            0 => (
                "Agenda",
                "calendar-noreply@example.test",
                "team@example.test",
                format!(
                    "Uitnodiging: Weekoverleg @ di {} dec 10:00",
                    1 + rng.below(28)
                ),
                "Je bent uitgenodigd voor het weekoverleg.\nWaar: vergaderruimte 2\n".to_string(),
            ),
            1 => (
                "Monitoring",
                "alerts@monitoring.test",
                "info@example.test",
                format!(
                    "[OK] webshop response time back to normal ({} ms)",
                    rng.range(80, 400)
                ),
                "The check 'webshop' is OK again after 3 minutes.\n".to_string(),
            ),
            _ => (
                "Bank",
                "noreply@bank.test",
                "finance@example.test",
                "Er staat een nieuw rekeningafschrift voor u klaar".to_string(),
                "Log in op uw zakelijke omgeving om het afschrift te bekijken.\n".to_string(),
            ),
        };
        let domain = from.split('@').nth(1).unwrap_or("example.test");
        let id = self.message_id(i, rng, domain);
        let mut out = header(
            i,
            &Addr {
                name,
                address: from,
            },
            to,
            None,
            &subject,
            &id,
        )
        .into_bytes();
        write_body(&mut out, rng, &text, false, &[]);
        out
    }
}

/// Between `lo` and `hi` words of filler text.
fn words_between(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let n = rng.range(lo, hi) as usize;
    words(rng, n)
}

/// `n` words of filler text with a full stop every dozen or so.
fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n * 8);
    for k in 0..n {
        let w = *rng.pick(WORDS);
        if k > 0 {
            s.push(' ');
        }
        s.push_str(w);
        if k % 13 == 12 {
            s.push('.');
        }
    }
    s.push('.');
    s
}

struct Addr<'a> {
    name: &'a str,
    address: &'a str,
}

/// The header as Dovecot stores a mail delivered through Postfix and LMTP
/// to one of the shared mailbox's addresses (never the support address).
fn header(
    i: usize,
    from: &Addr<'_>,
    to: &str,
    cc: Option<&str>,
    subject: &str,
    message_id: &str,
) -> String {
    let minute = i % 60;
    let hour = 8 + (i / 60) % 12;
    let date = format!("Tue, 25 Nov 2025 {hour:02}:{minute:02}:{:02} +0100", i % 53);
    let mut out = String::with_capacity(1024);
    out.push_str(&format!(
        "Return-Path: <{a}>\nDelivered-To: {to}\n\
         Received: from mx.example.test\n\tby tdbench with LMTP id o{i:08x}\n\tfor <{to}>; {date}\n\
         Received: from smtp.sender.test (smtp.sender.test [127.0.0.1])\n\tby mx.example.test (Postfix) with ESMTPS id C{i:010X}\n\tfor <{to}>; {date}\n\
         From: {n} <{a}>\nTo: {to}\n",
        a = from.address,
        n = from.name,
    ));
    if let Some(cc) = cc {
        out.push_str(&format!("Cc: {cc}\n"));
    }
    out.push_str(&format!(
        "Subject: {subject}\nDate: {date}\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_mail_parses_and_is_never_support_mail() {
        let mut g = OtherGen::new(3);
        for _ in 0..200 {
            let (raw, kind) = g.next_message();
            if kind == Other::Big {
                continue;
            }
            let msg = ticketd::core::parse::parse(&raw);
            assert!(msg.problems.is_empty(), "{:?}", msg.problems);
            assert!(msg.from_address.is_some());
            let text = String::from_utf8_lossy(&raw).to_lowercase();
            assert!(!text.contains("support@example.test"));
            assert!(!msg.subject.to_lowercase().contains("whatnot support"));
            if let Other::Newsletter { .. } = kind {
                assert!(text.contains("\nlist-id: "));
            }
            if kind == Other::Invoice {
                assert_eq!(msg.attachments.len(), 1);
                assert!(msg.attachments[0].data.starts_with(b"%PDF"));
            }
        }
    }

    /// No ticket is known: threads can only be followed within one pass.
    struct NoTickets;
    impl ticketd::core::thread::ThreadLookup for NoTickets {
        fn ticket_of_message(&self, _: &[String]) -> Option<i64> {
            None
        }
        fn is_participant(&self, _: i64, _: &str) -> Option<bool> {
            None
        }
    }

    /// The rules as ticketd reads `[intake] addresses = [support]`, and
    /// what they decide for each message in order.
    fn selected(messages: &[Vec<u8>]) -> Vec<bool> {
        use ticketd::core::intake::{select, IntakeRules};
        let rules = IntakeRules {
            addresses: vec![crate::child::SUPPORT.to_string()],
            subject_contains: vec!["whatnot support".into()],
            thread_replies: true,
        };
        let mut seen = std::collections::HashSet::new();
        messages
            .iter()
            .map(|raw| {
                let end = raw
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map_or(raw.len(), |p| p + 2);
                let headers = &raw[..end];
                let msg = ticketd::core::parse::parse(headers);
                let d = select(headers, &msg, &rules, "WN", &NoTickets, &seen);
                if d.is_selected() {
                    seen.insert(msg.dedupe_key.clone());
                }
                d.is_selected()
            })
            .collect()
    }

    #[test]
    fn intake_takes_the_support_mail_and_nothing_else() {
        let mut support = MailboxGen::new(Mix::Light, 11);
        let mut other = OtherGen::new(12);
        let mut messages = Vec::new();
        let mut is_support = Vec::new();
        for i in 0..300 {
            let s = i % 10 == 3;
            messages.push(if s {
                support.next_message().0
            } else {
                other.next_message().0
            });
            is_support.push(s);
        }
        assert_eq!(selected(&messages), is_support);
    }

    #[test]
    fn message_ids_come_out_without_brackets() {
        let raw = b"From: a@b.test\nMessage-ID: <x.1@buyer.test>\nSubject: s\n\nbody\n";
        assert_eq!(message_id_of(raw).as_deref(), Some("x.1@buyer.test"));
    }
}
