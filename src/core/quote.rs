//! Separates what the buyer wrote now from the quoted history and signature
//! below (or, in top-posting clients, around) it. The full body is always
//! kept too; this only decides what an agent sees first and what facts are
//! read from.

use std::sync::LazyLock;

use regex::Regex;

/// Lines that start quoted history in the clients buyers use.
static HISTORY_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
            # Gmail / Apple Mail / Thunderbird / Yahoo, Dutch and English.
            # Every client's Dutch attribution names the time and ends in a
            # colon; without them, Op de site schreef de verkoper ... or
            # Op 14.11 om 10.00 schreef de verkoper dat ... is buyer text.
            op\s.{0,80}?\d{1,2}[:.]\d{2}.{0,80}?\s(?:schreef|heeft\s.{0,160}?geschreven)(?-u:\b).*:\s*$
          | on\s.{3,120}?\s(?:wrote|writes)\s*:?\s*$
          | am\s.{3,120}?\sschrieb(?-u:\b).*:\s*$
          # Outlook separators
          | -{2,}\s*(?:oorspronkelijk\s+bericht|original\s+message|origineel\s+bericht)\s*-{2,}\s*$
          | _{10,}\s*$
        )",
    )
    .expect("static regex")
});

/// A forward: what follows is what the buyer sends us, not history.
static FORWARD_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
            -{2,}\s*(?:doorgestuurd\s+bericht|forwarded\s+message|weitergeleitete\s+nachricht)\s*-{2,}\s*$
          | (?:begin\s+forwarded\s+message|begin\s+doorgestuurd\s+bericht|doorgestuurd\s+bericht)\s*:\s*$
        )",
    )
    .expect("static regex")
});

/// Outlook's header block: "From:"/"Van:" followed within a few lines by
/// "Sent:"/"Verzonden:"/"Date:"/"Datum:".
static OUTLOOK_FROM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*\*?(?:from|van|de)\s*:\*?\s*\S").expect("static regex"));
static OUTLOOK_SENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*\*?(?:sent|verzonden|date|datum|envoyé|gesendet)\s*:\*?\s*\S")
        .expect("static regex")
});
/// Every client's header block names the subject too; a buyer's own
/// "Van: de verkoper / Datum: 12 november" does not.
static OUTLOOK_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*\*?(?:subject|onderwerp|objet|betreff)\s*:").expect("static regex")
});

/// Sign-offs that end the new text: "-- " signatures and mobile footers.
static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^\s*(?:
            --\s*$
          | (?:verstuurd|verzonden)\s+(?:vanaf|met|via)\s+(?:mijn\s+)?(?:iphone|ipad|android|samsung|galaxy|outlook|mobiel|smartphone).*$
          | sent\s+(?:from|with|via)\s+(?:my\s+)?(?:iphone|ipad|android|samsung|galaxy|outlook|mobile|smartphone).*$
          | (?:get|download)\s+outlook\s+for\s+(?:ios|android).*$
          | outlook\s+voor\s+(?:ios|android)\s+downloaden.*$
        )",
    )
    .expect("static regex")
});

/// Whether a subject marks a forward: its first prefix is `FW:`, `Fwd:`,
/// `Doorst:` (Outlook in Dutch), `WG:` or `TR:`. "RE: FW: ..." is a reply.
/// Outlook marks the forwarded mail with the same block it puts above
/// quoted history, so only the subject tells the two apart.
pub fn is_forward(subject: &str) -> bool {
    let Some((prefix, _)) = subject.trim_start().split_once(':') else {
        return false;
    };
    ["fw", "fwd", "doorst", "wg", "tr"]
        .iter()
        .any(|p| prefix.trim_end().eq_ignore_ascii_case(p))
}

/// The part of `body` the sender wrote now. Falls back to the whole body
/// when stripping would leave nothing (e.g. a bare forward).
pub fn new_text(body: &str) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if FORWARD_START.is_match(line) {
            // Everything of a forward matters, the forwarded part most.
            return body.trim().to_string();
        }
        if HISTORY_START.is_match(line) || SIGNATURE.is_match(line) {
            end = i;
            break;
        }
        // "Op di 24 nov 2026 om 10:12 schreef Anna <" wrapped onto two lines
        // (Dutch, English or German).
        if i + 1 < lines.len() {
            let joined = format!("{} {}", line.trim_end(), lines[i + 1].trim_start());
            let lower = line.trim_start().to_lowercase();
            if ["op ", "on ", "am "].iter().any(|p| lower.starts_with(p))
                && HISTORY_START.is_match(&joined)
            {
                end = i;
                break;
            }
        }
        if OUTLOOK_FROM.is_match(line)
            && lines[i + 1..lines.len().min(i + 5)]
                .iter()
                .any(|l| OUTLOOK_SENT.is_match(l))
            && lines[i + 1..lines.len().min(i + 9)]
                .iter()
                .any(|l| OUTLOOK_SUBJECT.is_match(l))
        {
            end = i;
            break;
        }
        if line.trim_start().starts_with('>') {
            // A block of "> " quotes ends the new text unless new text
            // follows it (interleaved replies keep their answers).
            let rest_is_quote_or_blank = lines[i..].iter().all(|l| {
                l.trim().is_empty() || l.trim_start().starts_with('>') || SIGNATURE.is_match(l)
            });
            if rest_is_quote_or_blank {
                end = i;
                break;
            }
        }
    }
    let kept: Vec<&str> = lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with('>'))
        .copied()
        .collect();
    let text = kept.join("\n").trim().to_string();
    if !text.is_empty() {
        return text;
    }
    // The history marker came first: an interleaved reply ("> question",
    // answer, ...). Keep the answers: every line that is neither quote nor
    // attribution, up to a signature.
    let mut answers = Vec::new();
    for line in &lines {
        if SIGNATURE.is_match(line) {
            break;
        }
        let t = line.trim_start();
        if t.starts_with('>') || HISTORY_START.is_match(line) {
            continue;
        }
        answers.push(*line);
    }
    let text = answers.join("\n");
    let text = collapse_blank_lines(text.trim());
    if text.is_empty() {
        body.trim().to_string()
    } else {
        text
    }
}

fn collapse_blank_lines(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() && out.last().is_some_and(|l| l.trim().is_empty()) {
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

/// Compiles this module's regexes now rather than on the first mail that
/// needs them (about 30 ms in all), e.g. on a thread of its own while the
/// daemon logs in.
pub fn warm_up() {
    let all: [&LazyLock<Regex>; 6] = [
        &HISTORY_START,
        &FORWARD_START,
        &OUTLOOK_FROM,
        &OUTLOOK_SENT,
        &OUTLOOK_SUBJECT,
        &SIGNATURE,
    ];
    for regex in all {
        LazyLock::force(regex);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every regex of the module is in `warm_up`'s list.
    #[test]
    fn warm_up_lists_every_regex() {
        crate::core::assert_warm_up_lists_every_regex(include_str!("quote.rs"), 4);
        warm_up();
    }

    #[test]
    fn gmail_dutch_and_english() {
        let nl = "Hier is de foto.\n\nOp di 24 nov 2026 om 10:12 schreef Whatnot Support <support@example.test>:\n> Bedankt\n";
        assert_eq!(new_text(nl), "Hier is de foto.");
        let en = "Photo attached.\n\nOn Tue, Nov 24, 2026 at 10:12 AM Whatnot Support <support@example.test> wrote:\n> Thanks\n";
        assert_eq!(new_text(en), "Photo attached.");
        let wrapped = "Zie bijlage.\n\nOp di 24 nov 2026 om 10:12 schreef Whatnot Support <\nsupport@example.test>:\n> x";
        assert_eq!(new_text(wrapped), "Zie bijlage.");
    }

    #[test]
    fn outlook_blocks() {
        let a = "Graag snel antwoord.\n\n-----Oorspronkelijk bericht-----\nVan: Whatnot Support\nOnderwerp: x";
        assert_eq!(new_text(a), "Graag snel antwoord.");
        let b = "See below.\r\n\r\nFrom: Whatnot Support <support@example.test>\r\nSent: Tuesday, November 24, 2026 10:12 AM\r\nTo: Bob\r\nSubject: x";
        assert_eq!(new_text(b), "See below.");
        let c = "Ok.\n\n________________________________\nVan: Whatnot Support\nVerzonden: dinsdag 24 november 2026 10:12";
        assert_eq!(new_text(c), "Ok.");
    }

    #[test]
    fn signatures_and_mobile_footers() {
        assert_eq!(
            new_text("Dank je!\n\nVerstuurd vanaf mijn iPhone\n\n> oud"),
            "Dank je!"
        );
        assert_eq!(new_text("Thanks\n-- \nBob Smith\nAcme"), "Thanks");
        assert_eq!(new_text("Thanks\n\nSent from my iPhone"), "Thanks");
    }

    #[test]
    fn interleaved_answers_are_kept() {
        let t =
            "> What is your order number?\ndQzGdHsKxwaEyrQfCdcCs8\n> And your username?\n@anna\n";
        assert_eq!(new_text(t), "dQzGdHsKxwaEyrQfCdcCs8\n@anna");
    }

    #[test]
    fn attribution_first_then_answers() {
        let t = "Op 25-11-2026 om 14:02 schreef Whatnot Support:\n> Je bestelnummer (bijvoorbeeld dQzGdHsKxwaEyrQfCdcCs8)\n\nDat is jgVvVqE1SkHbn88HxjSI6b\n\n> Met vriendelijke groet,\n";
        assert_eq!(new_text(t), "Dat is jgVvVqE1SkHbn88HxjSI6b");
        let apple = "Nog een detail.\n\nOp 25 nov 2026 om 14:02 heeft Whatnot Support <support@example.test> het volgende geschreven:\n\n> x";
        assert_eq!(new_text(apple), "Nog een detail.");
    }

    #[test]
    fn a_buyer_sentence_starting_op_with_schreef_is_not_history() {
        let t = "Hallo,\n\nOp de site schreef de verkoper dat de kaart mint was, maar hij is beschadigd aangekomen.\nBestelnummer: jgVvVqE1SkHbn88HxjSI6b\n";
        assert_eq!(new_text(t), t.trim());
        let t = "Op 20 november schreef ik jullie al over mijn pakket.\nHet is er nog steeds niet.";
        assert_eq!(new_text(t), t);
        let t =
            "Op 20 november 2026 schreef ik jullie al het volgende:\nHet is er nog steeds niet.";
        assert_eq!(new_text(t), t);
        // Clients' attributions all name a time (Yahoo, Thunderbird).
        let yahoo = "Prima.\n\nOp woensdag 25 november 2026 14:03:12 CET schreef Whatnot Support <support@example.test>:\n> x";
        assert_eq!(new_text(yahoo), "Prima.");
        let tb = "Prima.\n\nOp 25-11-2026 14:03, Whatnot Support schreef:\n> x";
        assert_eq!(new_text(tb), "Prima.");
    }

    #[test]
    fn a_buyer_sentence_with_a_time_and_schreef_is_not_history() {
        let t =
            "Hallo,\n\nOp 14.11 om 10.00 uur schreef de verkoper dat mijn pakket verzonden was.\n\
                 Het is nog steeds niet aangekomen.\nBestelnummer: fJBd0Kh8oOOL8dKLzdocJ2";
        assert_eq!(new_text(t), t);
        let t = "Op 12 november om 20:15 heb ik besteld, de verkoper schreef dat het snel kwam.\n\
                 Gebruikersnaam @kees";
        assert_eq!(new_text(t), t);
    }

    #[test]
    fn the_buyers_own_van_and_datum_lines_are_not_a_header_block() {
        let t = "Hallo,\n\nVan: de verkoper @kaartenkoning\nDatum: 12 november gekocht\n\
                 Bestelnummer: fJBd0Kh8oOOL8dKLzdocJ2\nHet pakket is nooit gekomen.";
        assert_eq!(new_text(t), t);
        // Outlook's block names the subject.
        let r = "Prima, dank.\n\nVan: Whatnot Support <support@example.test>\n\
                 Datum: dinsdag 24 november 2026 10:12\nAan: Anna <anna@buyer.test>\n\
                 Onderwerp: [WN-000001] Ontvangen\n\nHallo Anna,";
        assert_eq!(new_text(r), "Prima, dank.");
    }

    #[test]
    fn a_wrapped_german_attribution_ends_the_new_text() {
        let t = "Danke.\n\nAm Di., 24. Nov. 2026 um 10:12 Uhr schrieb Whatnot Support <\n\
                 support@example.test>:\n> Hallo";
        assert_eq!(new_text(t), "Danke.");
    }

    #[test]
    fn forwards_are_told_by_their_subject() {
        for s in [
            "FW: Je bestelling",
            "Fwd: Shipped",
            "Doorst: x",
            "WG: y",
            "fw : z",
        ] {
            assert!(is_forward(s), "{s}");
        }
        for s in [
            "RE: FW: Je bestelling",
            "Fwiw: x",
            "Forward thinking",
            "Aw: x",
            "",
        ] {
            assert!(!is_forward(s), "{s}");
        }
    }

    #[test]
    fn forwards_are_kept_whole() {
        let f = "Zie hieronder.\n\n---------- Forwarded message ---------\nVan: Verkoper\nDate: ma 23 nov\n\nTrack: 3SMUNT7766554433";
        assert!(new_text(f).contains("3SMUNT7766554433"));
    }

    #[test]
    fn nothing_but_quote_keeps_the_body() {
        assert_eq!(new_text("> only a quote"), "> only a quote");
        assert_eq!(new_text(""), "");
    }
}
