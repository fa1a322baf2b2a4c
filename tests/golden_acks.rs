//! Golden acknowledgements: each buyer mail in tests/golden/acks/ is read,
//! its facts extracted, and the ack rendered in Dutch and in English; the
//! subject, text and HTML must match the files beside it line by line.
//! After a deliberate template change, `TICKETD_UPDATE_GOLDEN=1` rewrites
//! them; review the diff before committing.

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use ticketd::ack::{AckContext, AckTemplates};
use ticketd::config::{Config, Language};
use ticketd::core::{extract, parse, quote};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/acks")
}

fn config() -> Config {
    let text = format!(
        "[store]\ndata_dir = \"/nonexistent\"\n[tickets]\ntemplates_dir = \"{}\"\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates")
            .display()
    );
    Config::parse(&text, Path::new("/etc/ticketd/ticketd.toml")).unwrap()
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> Option<String> {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        if e.get(i) != a.get(i) {
            return Some(format!(
                "line {}:\n  expected: {:?}\n  actual:   {:?}",
                i + 1,
                e.get(i).copied().unwrap_or("<end>"),
                a.get(i).copied().unwrap_or("<end>")
            ));
        }
    }
    None
}

#[test]
fn acks_match_their_golden_files_in_both_languages() {
    let config = config();
    let templates = AckTemplates::load(&config.tickets.templates_dir).unwrap();
    let update = std::env::var_os("TICKETD_UPDATE_GOLDEN").is_some();
    // Received Wednesday 25 November 2026, 14:03 in Amsterdam.
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 25, 13, 3, 0)
        .unwrap();
    let today = now.with_timezone(&config.tickets.time_zone).date_naive();
    let mut failures = Vec::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "golden cases missing");
    for eml in &cases {
        let raw = std::fs::read(eml).unwrap();
        let msg = parse::parse(&raw);
        let new_text = quote::new_text(&msg.text);
        let facts = extract::extract(&msg.subject, &new_text, today);
        for lang in [Language::Nl, Language::En] {
            let ctx = AckContext::for_message(
                "WN-000123",
                lang,
                &config.tickets,
                now,
                &msg,
                &new_text,
                &facts,
            );
            let ack = templates.render(lang, &ctx).unwrap();
            let rendered = [
                ("txt", format!("Subject: {}\n\n{}", ack.subject, ack.text)),
                ("html", ack.html.clone()),
            ];
            for (ext, actual) in rendered {
                let golden = eml.with_extension(format!("{}.{ext}", lang.code()));
                if update {
                    std::fs::write(&golden, &actual).unwrap();
                    continue;
                }
                let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                    panic!(
                        "{} is missing; run with TICKETD_UPDATE_GOLDEN=1",
                        golden.display()
                    )
                });
                if let Some(diff) = first_difference(&expected, &actual) {
                    failures.push(format!("{}: {diff}", golden.display()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn what_each_case_asks_for() {
    // The golden files are reviewed by eye; these are the facts they must show.
    let read = |name: &str, lang: &str| {
        std::fs::read_to_string(dir().join(format!("{name}.{lang}.txt"))).unwrap()
    };
    let bare = read("damaged-bare", "nl");
    for ask in [
        "bestelnummer",
        "zendingsnummer",
        "e-mailadres",
        "gebruikersnaam",
        "beschadigingen",
        "doos",
        "verpakt",
        "verschillen",
    ] {
        assert!(
            bare.to_lowercase().contains(ask),
            "damaged-bare.nl asks for {ask}"
        );
    }
    assert!(
        bare.contains("binnen 48 uur")
            && bare.contains("uiterlijk vrijdag 27 november 2026 om 14:03 (CET)")
    );
    let complete = read("damaged-complete", "nl");
    assert!(
        !complete.contains("hebben we nog nodig"),
        "nothing is asked again"
    );
    // Delivered 20 Nov, purchase date unknown: 27 Nov is the latest day,
    // not a promise (30 days after purchase could come first).
    assert!(
        complete.contains("7 dagen na levering of 30 dagen na aankoop")
            && complete.contains("in elk geval uiterlijk 27 november 2026"),
        "TCG: the window, and 7 days after delivery on 20 Nov at the latest"
    );
    // Bought 10 Nov, damaged on arrival (day unknown): 7 days after the
    // delivery may end before 30 days after the purchase, so 10 Dec is
    // only the latest day.
    // Outlook's winmail.dat with the same photos inside: nothing is asked
    // again either.
    for lang in ["nl", "en"] {
        assert_eq!(
            read("damaged-photos-in-winmail-dat", lang),
            read("damaged-complete", lang),
            "photos in winmail.dat count ({lang})"
        );
    }
    let bought = read("damaged-bought-only", "en");
    assert!(
        bought.contains("whichever comes first; by 10 December 2026 at the latest"),
        "{bought}"
    );
    // The category alone (coins): the window in words, no date.
    let coin = read("damaged-coin-no-dates", "nl");
    assert!(
        coin.contains("binnen 7 dagen na levering of 30 dagen na aankoop (wat het eerst komt)")
            && !coin.contains("uiterlijk 2"),
        "{coin}"
    );
    let passed = read("delayed-deadline-passed", "en");
    assert!(
        passed.contains("had to reach us by 31 October 2026"),
        "sneakers: 30 days after purchase on 1 Oct"
    );
    assert!(!passed.contains("we still need"));
    let not_arrived = read("delayed-not-arrived", "en");
    assert!(
        not_arrived.contains("must reach us by 3 December 2026")
            && !not_arrived.contains("has passed"),
        "TCG bought 3 Nov, not delivered: 30 days after purchase, nothing has passed"
    );
    let delayed = read("delayed-bare", "en");
    assert!(
        delayed.contains("The date of purchase")
            && delayed.contains("Your order number (for example dQzGdHsKxwaEyrQfCdcCs8)")
    );
    let missing = read("missing-bare", "en");
    assert!(
        missing.contains("Photos of the product you received")
            && missing.contains("should have received")
    );
    let account = read("account", "en");
    assert!(account.contains("As much detail") && !account.contains("order number"));
    for name in [
        "damaged-bare",
        "damaged-complete",
        "missing-bare",
        "delayed-bare",
        "delayed-deadline-passed",
        "delayed-not-arrived",
        "damaged-bought-only",
        "damaged-coin-no-dates",
        "account",
        "general",
    ] {
        for lang in ["nl", "en"] {
            let t = read(name, lang);
            assert!(
                t.starts_with("Subject: [WN-000123] ")
                    && t.lines().next().unwrap().ends_with("- Whatnot Support"),
                "{name}.{lang}"
            );
            assert!(
                t.contains("[WN-000123]") && (t.contains("48 uur") || t.contains("48 hours")),
                "{name}.{lang}"
            );
            assert!(
                !t.to_lowercase().contains("refund") && !t.to_lowercase().contains("terugbetal"),
                "{name}.{lang}: no promise beyond 48 h"
            );
        }
    }
}
