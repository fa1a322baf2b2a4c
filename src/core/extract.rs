//! Facts an agent needs, read out of what the buyer wrote, following the
//! support article: Whatnot order numbers, shipment (tracking) numbers, the
//! username and account e-mail, the product category (which picks the claim
//! window), the kind of problem, purchase and delivery dates, and the
//! language to answer in. Dutch and English wording alike.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;
use serde::Serialize;

use crate::config::Language;

/// What kind of help the buyer needs; decides what the ack asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueType {
    Damaged,
    Missing,
    Delayed,
    Account,
    General,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Damaged => "damaged",
            IssueType::Missing => "missing",
            IssueType::Delayed => "delayed",
            IssueType::Account => "account",
            IssueType::General => "general",
        }
    }
    pub fn from_str_opt(s: &str) -> Option<IssueType> {
        Some(match s {
            "damaged" => IssueType::Damaged,
            "missing" => IssueType::Missing,
            "delayed" => IssueType::Delayed,
            "account" => IssueType::Account,
            "general" => IssueType::General,
            _ => return None,
        })
    }
    /// Whether this kind of problem is about an order.
    pub fn is_order_issue(self) -> bool {
        matches!(
            self,
            IssueType::Damaged | IssueType::Missing | IssueType::Delayed
        )
    }
}

/// Product categories as far as claim windows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    SportsCards,
    Tcg,
    SneakersStreetwear,
    CoinsMoney,
    /// Any other named category: the 14-day window.
    Other,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SportsCards => "sports_cards",
            Category::Tcg => "tcg",
            Category::SneakersStreetwear => "sneakers_streetwear",
            Category::CoinsMoney => "coins_money",
            Category::Other => "other",
        }
    }
    pub fn from_str_opt(s: &str) -> Option<Category> {
        Some(match s {
            "sports_cards" => Category::SportsCards,
            "tcg" => Category::Tcg,
            "sneakers_streetwear" => Category::SneakersStreetwear,
            "coins_money" => Category::CoinsMoney,
            "other" => Category::Other,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub order_numbers: Vec<String>,
    pub shipment_numbers: Vec<String>,
    pub username: Option<String>,
    pub account_email: Option<String>,
    pub category: Option<Category>,
    pub issue_type: IssueType,
    pub purchase_date: Option<NaiveDate>,
    pub delivery_date: Option<NaiveDate>,
    pub language: Option<Language>,
}

/// Reads every fact from a subject and the buyer's own (new) text.
/// `today` is the day the mail arrived: dates without a year are taken to
/// be in the past year up to that day.
pub fn extract(subject: &str, text: &str, today: NaiveDate) -> Facts {
    let all = format!("{subject}\n{text}");
    // A date right behind one label is not read back for the other:
    // "bought on November 3 and it arrived damaged" has no delivery date.
    let delivered_on = dates_after_labels(&all, &DELIVERY_LABEL, today);
    let purchase = labelled_date(&all, &PURCHASE_LABEL, today, &delivered_on)
        .or_else(|| order_of_date(&all, today));
    let mut bought_on = dates_after_labels(&all, &PURCHASE_LABEL, today);
    bought_on.extend(purchase.map(|(s, e, _)| (s, e)));
    let delivery = labelled_date(&all, &DELIVERY_LABEL, today, &bought_on);
    Facts {
        order_numbers: order_numbers(&all),
        shipment_numbers: shipment_numbers(&all),
        username: username(&all),
        account_email: account_email(&all),
        category: category(&all),
        issue_type: issue_type(&all),
        purchase_date: purchase.map(|(_, _, d)| d),
        delivery_date: delivery.map(|(_, _, d)| d),
        language: language(&all),
    }
}

const ORDER_LEN: usize = 22;

fn push_unique(out: &mut Vec<String>, v: String) {
    if !out.contains(&v) {
        out.push(v);
    }
}

/// Whatnot order numbers (`dQzGdHsKxwaEyrQfCdcCs8`): exactly 22 letters and
/// digits with both cases present, standing alone. Tokens glued to `/`, `=`,
/// `@` and the like are parts of URLs, base64 or Message-IDs, not orders.
pub fn order_numbers(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i - start != ORDER_LEN {
            continue;
        }
        let before = start.checked_sub(1).map(|p| bytes[p]);
        let after = bytes.get(i).copied();
        let glued = |b: Option<u8>| {
            matches!(
                b,
                Some(
                    b'/' | b'='
                        | b'+'
                        | b'@'
                        | b'_'
                        | b'-'
                        | b'%'
                        | b'&'
                        | b'?'
                        | b'#'
                        | b':'
                        | b'\\'
                )
            )
        };
        let dotted_before = before == Some(b'.');
        let dotted_after =
            after == Some(b'.') && bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphanumeric());
        // "Bestelnummer: X", "Order #X", "Order ID: #X" and "Ordernr.#X"
        // are labels; "https:X", "cid:X" or "a#X" are not.
        let labelled_colon = matches!(before, Some(b':' | b'#')) && {
            let head = text[..start - 1].trim_end_matches([' ', ':', '#', '.']);
            head.rsplit(|c: char| !c.is_alphanumeric())
                .next()
                .is_some_and(|w| {
                    let w = w.to_lowercase();
                    w.contains("nummer")
                        || w.contains("number")
                        || w == "order"
                        || w == "bestelling"
                        || w.ends_with("nr")
                        || w == "no"
                        || w == "id"
                })
        };
        // "#X" starting a word, as buyers copy it from the app; a hashtag
        // only counts with a digit in it, as every order number has.
        let hash_word = before == Some(b'#')
            && start
                .checked_sub(2)
                .is_none_or(|p| matches!(bytes[p], b' ' | b'\t' | b'\n' | b'\r' | b'(' | b'['))
            && text[start..i].bytes().any(|b| b.is_ascii_digit());
        if (glued(before) && !labelled_colon && !hash_word)
            || glued(after)
            || dotted_before
            || dotted_after
        {
            continue;
        }
        let token = &text[start..i];
        let upper = token.bytes().any(|b| b.is_ascii_uppercase());
        let lower = token.bytes().any(|b| b.is_ascii_lowercase());
        if upper && lower && !an_example(&text[..start]) && !a_code(&text[..start]) {
            push_unique(&mut out, token.to_string());
        }
    }
    // Typed in groups behind its label: "Bestelnummer: dQzG dHsK xwaE
    // yrQf CdcC s8". Groups are joined while they add up to 22 exactly.
    for m in ORDER_LABEL.find_iter(text) {
        let mut joined = String::new();
        let mut groups = 0;
        for group in text[m.end()..].split(' ') {
            let group = group.trim_end_matches([',', '.', ';', ')']);
            if group.is_empty() || !group.bytes().all(|b| b.is_ascii_alphanumeric()) {
                break;
            }
            joined.push_str(group);
            groups += 1;
            if joined.len() >= ORDER_LEN {
                break;
            }
        }
        let upper = joined.bytes().any(|b| b.is_ascii_uppercase());
        let lower = joined.bytes().any(|b| b.is_ascii_lowercase());
        if groups > 1 && joined.len() == ORDER_LEN && upper && lower {
            push_unique(&mut out, joined);
        }
    }
    out
}

static ORDER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:bestelnummer|ordernummer|order\s*(?:number|nr\.?|no\.?|id)|ordernr\.?)(?:\s+is)?\s*[:#]?\s*#?")
        .expect("static regex")
});

/// Whether what comes next is given as an example: "(bijv. X)", "e.g.
/// X", "for example X", as in the list of what to send that buyers copy.
fn an_example(before: &str) -> bool {
    let mut from = before.len().saturating_sub(20);
    while !before.is_char_boundary(from) {
        from += 1;
    }
    let tail = before[from..].to_lowercase();
    [
        "bijv.",
        "bijvoorbeeld",
        "bv.",
        "e.g.",
        "for example",
        "for instance",
    ]
    .iter()
    .any(|w| tail.contains(w))
}

/// Whether what comes next is a discount or gift code, which has an order
/// number's shape: "promo code X", "kortingscode: X", "voucher 'X'". An
/// "order code" or "bestelcode" is the order number itself.
fn a_code(before: &str) -> bool {
    let head = before.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '\'' | '"' | '(' | '[' | '‘' | '“' | '=')
    });
    let mut words = head
        .rsplit(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase);
    let Some(last) = words.next() else {
        return false;
    };
    let ordered = |w: &str| w.starts_with("order") || w.starts_with("bestel");
    if last == "code" {
        return !words.next().is_some_and(|w| ordered(&w));
    }
    (last.ends_with("code") && !ordered(&last))
        || matches!(
            last.as_str(),
            "coupon"
                | "voucher"
                | "promo"
                | "giftcard"
                | "cadeaubon"
                | "cadeaukaart"
                | "tegoedbon"
                | "waardebon"
        )
}

static STRONG_SHIPMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)(?-u:\b)(
            3S[A-Z]{4}[0-9]{6,11}           # PostNL
          | 1Z[0-9A-Z]{16}                  # UPS
          | JJD[0-9]{10,22}                 # DHL Parcel / eCommerce
          | JVGL[0-9]{8,22}                 # DHL Parcel
          | (?:420[0-9]{5})?9[2-5][0-9]{18,20} # USPS
          | [A-Z]{2}[0-9]{9}(?:NL|US|DE|BE|GB) # postal (UPU S10)
        )(?-u:\b)",
    )
    .expect("static regex")
});

/// Numbers as carriers print them, in groups: UPS "1Z 999 AA1 01 2345
/// 6784", USPS "9400 1118 9922 3397 6239 10", postal S10 "AB 1234 5678
/// 9GB".
static UPS_GROUPED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)(?-u:\b)(?:
            1Z\ [0-9A-Z]{3}\ [0-9A-Z]{3}\ [0-9A-Z]{2}\ [0-9A-Z]{4}\ [0-9A-Z]{4}
          | 9[2-5][0-9]{2}(?:\ [0-9]{4}){4}\ [0-9]{2}
          | [A-Z]{2}\ [0-9]{4}\ [0-9]{4}\ [0-9]\ ?(?:NL|US|DE|BE|GB)
        )(?-u:\b)",
    )
    .expect("static regex")
});

static LABELLED_SHIPMENT: LazyLock<Regex> = LazyLock::new(|| {
    let label = r"(?:zendingsnummer|zending|track(?:ing)?(?:\s*(?:&|and|en)\s*trace)?(?:\s*(?:code|nummer|number|id))?|verzendnummer|barcode|shipment(?:\s*(?:number|no\.?|id))?|pakketnummer|parcel\s*(?:number|no\.?))";
    // The carrier's name is a label too: "DPD: ...", "DHL 1234567890",
    // and before one: "DPD zendingsnummer: ...".
    let carrier = r"(?:postnl|dhl|dpd|gls|ups|usps|royal\s*mail|bpost|fedex)";
    Regex::new(&format!(
        r"(?ix)(?:(?-u:\b){carrier}\s*{label}?|{label})
          \s*(?:is|:|=|\#|nr\.?|no\.?)?\s*:?\s*
          ([A-Z0-9]{{8,30}})(?-u:\b)"
    ))
    .expect("static regex")
});

/// Shipment (track & trace) numbers: PostNL, DHL, UPS, USPS, DPD, GLS and
/// postal S10 codes. Formats distinctive enough are found anywhere; bare
/// digit runs (DPD, GLS) only behind a label such as "Zendingsnummer:".
pub fn shipment_numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for m in STRONG_SHIPMENT.find_iter(text) {
        push_unique(&mut out, m.as_str().to_ascii_uppercase());
    }
    for m in UPS_GROUPED.find_iter(text) {
        push_unique(&mut out, m.as_str().replace(' ', "").to_ascii_uppercase());
    }
    for c in LABELLED_SHIPMENT.captures_iter(text) {
        let v = &c[1];
        let upper = v.to_ascii_uppercase();
        // A labelled value must look like a code, not a word.
        if v.bytes().filter(u8::is_ascii_digit).count() >= 6
            && !(v.len() == ORDER_LEN && v.bytes().any(|b| b.is_ascii_lowercase()))
        {
            push_unique(&mut out, upper);
        }
    }
    out
}

static USERNAME_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?-u:\b)(?:gebruikersnaam|username|user\s*name|whatnot[- ]naam|naam\s+op\s+whatnot)(?:\s+op\s+whatnot|\s+on\s+whatnot)?\s*(?::|(?-u:\b)is(?-u:\b)|=)\s*["'“‘]?@?([A-Za-z0-9_.]{2,30})"#)
        .expect("static regex")
});
/// "Gebruikersnaam | x" or "Whatnot username x" as a table row or a line
/// of its own.
static USERNAME_ROW: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^\s*(?:(?:my|mijn)\s+)?(?:whatnot[- ]?)?(?:gebruikersnaam|username|user\s*name)\s+@?([A-Za-z0-9_.]{2,30})\s*$")
        .expect("static regex")
});
static USERNAME_AT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s(\[])@([A-Za-z0-9_][A-Za-z0-9_.]{1,29})(?-u:\b)").expect("static regex")
});

/// Words after "Gebruikersnaam:" that start a sentence rather than name
/// the user: "Gebruikersnaam: ik weet hem niet", "Username: not sure".
const NOT_A_USERNAME: &[&str] = &[
    "is",
    "en",
    "and",
    "van",
    "of",
    "ik",
    "weet",
    "niet",
    "geen",
    "onbekend",
    "vergeten",
    "zie",
    "hieronder",
    "hierboven",
    "hetzelfde",
    "zelfde",
    "mijn",
    "heb",
    "het",
    "de",
    "nvt",
    "not",
    "no",
    "dont",
    "don",
    "unknown",
    "forgot",
    "none",
    "na",
    "see",
    "below",
    "above",
    "same",
    "my",
    "the",
    "idk",
];

/// The Whatnot username: "Gebruikersnaam: x", "username: x" or a bare "@x".
pub fn username(text: &str) -> Option<String> {
    let labelled = USERNAME_LABEL.captures_iter(text).find_map(|c| {
        let (label, value) = (c.get(0)?, c.get(1)?);
        // "Username:" left blank over "Account email: ...": the next
        // line is a label of its own, not the value.
        if text[label.start()..value.start()].contains('\n') {
            let rest = &text[value.end()..];
            if rest[..rest.find('\n').unwrap_or(rest.len())].contains(':') {
                return None;
            }
        }
        let u = value.as_str().trim_end_matches('.');
        (!NOT_A_USERNAME.contains(&u.to_lowercase().as_str())).then(|| u.to_string())
    });
    let row = || {
        USERNAME_ROW
            .captures(text)
            .map(|c| c[1].trim_end_matches('.').to_string())
    };
    labelled.or_else(row).or_else(|| {
        USERNAME_AT
            .captures_iter(text)
            .filter_map(|c| c.get(1))
            .find(|m| handle_is_the_buyers(text, m.start() - 1, m.end()))
            .map(|m| m.as_str().trim_end_matches('.').to_string())
    })
}

/// Words before a bare @handle that make it someone else's: the seller,
/// a shop, another platform.
const OTHERS_HANDLE: &[&str] = &[
    "from",
    "van",
    "bij",
    "by",
    "door",
    "via",
    "to",
    "aan",
    "naar",
    "at",
    "seller",
    "verkoper",
    "verkoopster",
    "shop",
    "winkel",
    "streamer",
    "stream",
    "instagram",
    "insta",
    "ig",
    "tiktok",
    "twitter",
    "x",
    "facebook",
    "youtube",
];
/// Words before it that make it the writer's own.
const OWN_HANDLE: &[&str] = &[
    "i'm",
    "im",
    "am",
    "ben",
    "my",
    "mijn",
    "me",
    "account",
    "username",
    "gebruikersnaam",
    "naam",
    "name",
    "handle",
    "this",
    "dit",
];

/// Whether the bare @handle from `at` to `end` names the buyer: on a line
/// of its own or behind a name ("Anna (@anna_b)"), or behind "I'm", "my
/// account", "ik ben", or followed by "on Whatnot"; never when a seller,
/// a shop or another platform is named just before it ("I bought from
/// @cardking_nl", "Instagram: @anna.sneaks").
fn handle_is_the_buyers(text: &str, at: usize, end: usize) -> bool {
    let before = &text[..at];
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let lead = line[sentence_start(line)..]
        .to_lowercase()
        .replace('\u{2019}', "'");
    let words: Vec<&str> = lead
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let near = &words[words.len().saturating_sub(4)..];
    // "my seller is @x": someone else's wins over the writer's own.
    if near.iter().any(|w| OTHERS_HANDLE.contains(w)) {
        return false;
    }
    let after = text[end..].trim_start().to_lowercase();
    words.len() <= 2
        || near.iter().any(|w| OWN_HANDLE.contains(w))
        || after.starts_with("on whatnot")
        || after.starts_with("op whatnot")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("static regex")
});

static EMAIL_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^\w-])e-?mail\s*(?::|=|(?-u:\b)is(?-u:\b))\s*<?\s*$")
        .expect("static regex")
});

/// The account's e-mail address, when stated on a line that says so.
pub fn account_email(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let l = line.to_lowercase();
        let labelled = l.contains("account")
            || l.contains("e-mailadres")
            || l.contains("emailadres")
            || l.contains("e-mail address")
            || l.contains("email address");
        if line.trim_start().starts_with('>') {
            return None;
        }
        let m = EMAIL.find(line)?;
        // "E-mail: x", "Mijn e-mail is x": the label right before it.
        let behind_label = EMAIL_LABEL.is_match(&line[..m.start()]);
        // "zijn e-mailadres is x", "the seller's email: x": someone else's.
        let lead = line[..m.start()].to_lowercase().replace('\u{2019}', "'");
        let words: Vec<&str> = lead
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .collect();
        let own = words.iter().any(|w| ["mijn", "my"].contains(w));
        let others = words.iter().any(|w| {
            [
                "zijn",
                "haar",
                "hun",
                "his",
                "her",
                "their",
                "verkoper",
                "verkoopster",
                "seller",
                "seller's",
                "shop",
                "winkel",
            ]
            .contains(w)
        });
        (labelled || behind_label)
            .then(|| m.as_str().to_ascii_lowercase())
            .filter(|_| own || !others)
    })
}

fn words_match(text: &str, re: &Regex) -> usize {
    re.find_iter(text).count()
}

static CAT_SPORTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(sportkaart(?:en|je|jes)?|sports?\s*cards?|voetbalplaatjes?|voetbalkaart(?:en)?|baseball\s*cards?|basketball\s*cards?|football\s*cards?|topps|panini|rookie\s*card)(?-u:\b)").expect("static regex")
});
static CAT_TCG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(tcg|pok[eé]mon(?:kaart(?:en)?)?|magic:?\s*the\s*gathering|mtg|yu-?gi-?oh!?|one\s*piece\s*(?:card|kaart)|lorcana|booster\s*(?:box|pack)s?|trading\s*card\s*game|ruilkaart(?:en)?)(?-u:\b)").expect("static regex")
});
static CAT_SNEAKERS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(sneakers?|streetwear|jordans?|yeezys?|air\s*max|dunks?|hoodie|supreme)(?-u:\b)")
        .expect("static regex")
});
static CAT_COINS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(munt(?:en|je|jes)?|(?:euro|zilver|goud|herdenkings|verzamel|wissel|\w+euro)munt(?:en|je|jes)?|coins?|bankbiljet(?:ten)?|banknotes?|bullion|zilveren\s*munt|gouden\s*munt|numismati\w*|(?:silver|gold|morgan|peace)\s+(?:dollars?|bars?|rounds?)|(?:zilver|goud)\s*(?:baar|baren|staaf|staven)|krugerrands?)(?-u:\b)")
        .expect("static regex")
});
static CAT_OTHER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(funko(?:\s*pops?)?|strips?|comics?|speelgoed|toys?|kleding|clothing|sieraden|jewelry|jewellery|horloges?|watches|vintage|antiek|antiques?|elektronica|electronics|boeken|books?|vinyl|lp'?s|elpees?|grammofoonpla\w*|beauty|make-?up|tassen|handbags?|lego|action\s*figures?|figuren|hot\s*wheels|diecast|modelauto'?s?|knuffels?|plush(?:ies)?)(?-u:\b)")
        .expect("static regex")
});

/// The product category, when the buyer names one.
pub fn category(text: &str) -> Option<Category> {
    let scores = [
        (Category::SportsCards, words_match(text, &CAT_SPORTS)),
        (Category::Tcg, words_match(text, &CAT_TCG)),
        (
            Category::SneakersStreetwear,
            words_match(text, &CAT_SNEAKERS),
        ),
        (Category::CoinsMoney, words_match(text, &CAT_COINS)),
        (Category::Other, words_match(text, &CAT_OTHER)),
    ];
    scores
        .iter()
        .filter(|(_, n)| *n > 0)
        // First of the highest: the specific categories win ties over Other.
        .fold(
            None,
            |best: Option<(Category, usize)>, &(c, n)| match best {
                Some((_, bn)) if bn >= n => best,
                _ => Some((c, n)),
            },
        )
        .map(|(c, _)| c)
}

static ISSUE_DAMAGED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(kaputt|besch(?:ä|ae)dig\w*|zerbrochen|zerkratzt|geknickt|zerdr(?:ü|ue)ckt|cass(?:é|ée|és|ées)?|endommag\w*|ab(?:î|i)m\w*|beschadigd\w*|beschadiging\w*|gebarsten|barst(?:je|jes|en)?|schade|kapot|gebroken|geknakt|geknikt|gekreukt|ingedeukt|gebogen|verbogen|geplet|waterschade|vochtschade|nat|doorweekt|soaked|water[-\s]damaged?|vouw\w*|gevouwen|kreuk\w*|crease[sd]?|folded|chipped|scuff(?:ed|s)?|shattered|bekrast|afgebroken|afgebrokkeld|vlek(?:ken)?|stain(?:ed|s)?|ripped|deuk(?:en)?|gescheurd|krassen|kras|damaged?|broken|cracked|dented|dent|bent|creased|scratch(?:ed|es)?|torn|crushed|smashed|defect(?:e|en|ive)?|(?:is|was|zijn|waren|kwam|kwamen|raakte|helemaal|compleet|totaal)\s+stuk|stuk\s+(?:aangekomen|geleverd|bezorgd|ontvangen|binnengekomen|gegaan)|stukgegaan|in\s+stukken)(?-u:\b)").expect("static regex")
});
static ISSUE_MISSING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(fehl(?:t|en|te|ten)|manqu\w*|nicht\s+im\s+paket|falsche[rns]?\s+(?:karte|artikel|gr(?:ö|oe)(?:ß|ss)e)|mauvaise?\s+(?:carte|article|taille)|ontbre\w*|mist(?:te)?|ontbrak|niet\s+in\s+(?:het|de)\s+(?:pakket|doos)|zat\s+niet\s+in|zat(?:en)?\s+er\s+niet\s+bij|niet\s+meegeleverd|was\s+not\s+in\s+(?:the\s+)?(?:package|parcel|box|order)|leeg\w*\s+(?:pakket|doos)|verkeerde?\s+(?:artikel|product|item|kaart|maat|kleur|versie|editie|set)|niet\s+wat\s+ik\s+(?:heb\s+)?(?:besteld|gekocht)|(?:ipv|i\.p\.v\.|in\s+plaats\s+van|instead\s+of)\s+(?:de\s+|the\s+)?\d+|zat(?:en)?\s+(?:er\s+)?(?:maar|slechts|alleen)\s+\d+|only\s+(?:got|received|had|came\s+with|contained)\s+\d+|andere?\s+(?:kaart|artikel|product|item|maat|kleur|doos|set)\s+(?:[^\s,.;!?]+\s+){0,2}?(?:gestuurd|gekregen|ontvangen|geleverd|verstuurd|opgestuurd)|(?:received|got|was\s+sent|sent\s+me)\s+(?:someone|somebody)\s+else'?s|(?:received|got|was\s+sent|sent\s+me)\s+(?:the\s+wrong|a\s+different)|iemand\s+anders'?\s+(?:pakket|bestelling)|nep|namaak|vervalst|fake|counterfeit|not\s+(?:authentic|genuine|real)|missing|not\s+included|wasn'?t\s+(?:in|included)|empty\s+(?:box|package)|wrong\s+(?:item|product|card|size|colou?r|version|edition|set)|not\s+what\s+i\s+(?:ordered|bought|paid\s+for))(?-u:\b)").expect("static regex")
});
static ISSUE_DELAYED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?ix)((?-u:\b)vertraag\w*
        # German and French: "noch nicht angekommen", "pas encore reçu"
        |(?-u:\b)(?:noch\s+)?nicht\s+(?:angekommen|erhalten|geliefert|zugestellt|da)(?-u:\b)
        |(?-u:\b)nie\s+angekommen(?-u:\b)|(?-u:\b)wo\s+bleibt(?-u:\b)
        |(?-u:\b)(?:pas|jamais)\s+(?:encore\s+)?(?:re(?:ç|c)u|arriv|livr)|(?-u:\b)toujours\s+pas(?-u:\b)
        |(?-u:\b)niet\s+(?:aangekomen|ontvangen|geleverd|bezorgd)|(?-u:\b)nog\s+(?:steeds\s+)?niet\s+(?:binnen|ontvangen|aangekomen|geleverd|bezorgd)|(?-u:\b)waar\s+blijft|(?-u:\b)waar\s+is\s+mijn\s+(?:pakket|bestelling)|(?-u:\b)nog\s+niet\s+verzonden|(?-u:\b)niet\s+verstuurd|(?-u:\b)(?:has|have)(?:n['’]?t|\s+not)\s+(?:yet\s+)?been\s+(?:shipped|sent|posted)|(?-u:\b)wacht\w*\s+(?:al\s+)?(?:nog\s+)?(?:steeds\s+)?(?:al\s+)?(?:\w+\s+){0,3}op\s+(?:mijn|de|het)\s+(?:pakket|bestelling|zending|levering)|(?-u:\b)wacht\w*\s+nog\s+steeds|(?-u:\b)nog\s+steeds\s+niet|(?-u:\b)nog\s+niets\s+(?:ontvangen|binnen)|(?-u:\b)delay\w*|(?-u:\b)not\s+(?:yet\s+)?(?:arrived|received|delivered|shipped)|(?-u:\b)has\s*n[o']t\s+(?:yet\s+)?(?:arrived|shipped|been\s+delivered)|(?-u:\b)hasn'?t\s+(?:arrived|shipped)|(?-u:\b)still\s+(?:waiting|hasn'?t|not)|(?-u:\b)where\s+is\s+my\s+(?:order|package|parcel)|(?-u:\b)late\s+(?:delivery|package)
        # "never arrived", "haven't received", "didn't get my order"
        |(?-u:\b)never\s+(?:arrived|came|showed\s+up|turned\s+up|reached\s+me|received|got|been\s+delivered|delivered|shipped|sent|posted|been\s+shipped|been\s+sent)(?-u:\b)
        |(?-u:\b)(?:have|has)(?:n['’]?t|\s+not)\s+(?:yet\s+|ever\s+)?(?:received|gotten|arrived|come|got\s+(?:my|the|it|them|anything)(?-u:\b))
        |(?-u:\b)did(?:n['’]?t|\s+not)\s+(?:yet\s+|ever\s+)?(?:receive|get|arrive|come)(?-u:\b)
        # "nooit aangekomen", "nog niet gekregen", "niets ontvangen"
        |(?-u:\b)nooit\s+(?:[^\s,.;!?]+\s+){0,2}?(?:aangekomen|ontvangen|geleverd|bezorgd|gekregen|binnengekomen|verzonden|verstuurd)(?-u:\b)
        # Tracking shows it delivered, the buyer has nothing.
        |(?-u:\b)(?:toont|staat\s+(?:op|als)|zegt|geeft\s+aan)\s+(?:dat\s+(?:het|hij|ze)\s+)?(?:is\s+)?(?:bezorgd|afgeleverd|geleverd)(?-u:\b)
        |(?-u:\b)(?:shows|says|showed|said|marked|shown|listed)\s+(?:it\s+)?(?:as\s+|was\s+|is\s+)?delivered(?-u:\b)
        |(?-u:\b)niet\s+gekregen(?-u:\b)
        |(?-u:\b)ni(?:ets|ks)\s+(?:ontvangen|gekregen|binnen)(?-u:\b)
        # "mijn pakket is kwijt", "the parcel got lost in the mail"
        |(?-u:\b)(?:pakket(?:je)?|bestelling|zending|doos|package|parcel|order|shipment|box)\s+(?:(?:is|was|got|has|have|been|seems|appears|to|be|probably|apparently|somehow|lijkt|raakte|helaas|blijkbaar|waarschijnlijk|door|de|postnl|dhl|ups|dpd|gls|usps|the|by)\s+){0,3}(?:kwijt(?:geraakt)?|zoek(?:geraakt)?|verloren|lost)(?-u:\b)
        |(?-u:\b)lost\s+in\s+(?:the\s+)?(?:mail|post|transit)(?-u:\b)
        # Sent elsewhere, back, or taken.
        |(?-u:\b)(?:verkeerde?\s+(?:adres|huis(?:nummer)?)|wrong\s+(?:address|house))(?-u:\b)
        |(?-u:\b)(?:retour\s+afzender|terug\s*gestuurd\s+naar\s+de\s+afzender|return(?:ed)?\s+to\s+(?:the\s+)?sender)(?-u:\b)
        |(?-u:\b)(?:gestolen|stolen)(?-u:\b)
        # Tracking that stands still.
        |(?-u:\b)staat\s+(?:al\s+)?(?:[^\s,.;!?]+\s+){0,3}?stil(?-u:\b)
        |(?-u:\b)stuck\s+in\s+(?:transit|the\s+mail|customs)(?-u:\b)
        |(?-u:\b)no\s+tracking\s+updates?(?-u:\b)
        |(?-u:\b)(?:tracking|track\s*(?:&|and)\s*trace)\s+(?:[^\s,.;!?]+\s+){0,3}?(?:niet\s+(?:meer\s+)?bijgewerkt|hasn'?t\s+(?:been\s+)?updated|not\s+(?:been\s+)?updated)(?-u:\b))"#).expect("static regex")
});
static ISSUE_ACCOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(konto|passwort|anmeld\w*|auszahlung\w*|compte|mot\s+de\s+passe|connexion|account|inlog\w*|log\s+in|login|wachtwoord|password|geblokkeerd|blocked|suspended|opgeschort|verifi\w+|tweestaps\w*|two-factor|2fa|gebruikersnaam\s+wijzigen|change\s+(?:my\s+)?username|uitbetaling\w*|payout)(?-u:\b)").expect("static regex")
});

static PAYOUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:uitbetaling\w*|uitbetaald|payouts?|paid\s+out)(?-u:\b)")
        .expect("static regex")
});

/// What follows "haven't received" when it is not the order: "a reply",
/// "my refund", "de bevestiging".
static NOT_THE_ORDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s+(?:(?:a|an|any|my|the|your|een|mijn|je|jullie|uw|de|het|geen|nog|yet)\s+){0,2}(?:repl(?:y|ies)|response|answer|refund|e-?mail|mail|message|money|payout|payment|code|confirmation|notification|update|antwoord|reactie|terugbetaling|geld|bericht|bevestiging|uitbetaling|betaling)(?:s|en)?(?-u:\b)").expect("static regex")
});

static PACKAGE_MISSING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:package|parcel|shipment|delivery|order)\s+(?:(?:is|was|went|has\s+(?:gone|been)|seems\s+to\s+be|appears\s+to\s+be)\s+)?missing(?-u:\b)").expect("static regex")
});
/// What follows "is missing" when an item is short: "a card", "two
/// cards", "the promo card".
static MISSING_WHAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s+(?:a|an|one|two|three|four|five|six|some|several|the|its|my|\d+|cards?|items?|products?|pieces?|parts?|contents?)(?-u:\b)").expect("static regex")
});

/// The kind of problem, from Dutch and English wording. Order problems win
/// over account words ("my account shows the order as delivered").
pub fn issue_type(text: &str) -> IssueType {
    let damaged = ISSUE_DAMAGED
        .find_iter(text)
        .filter(|m| !damage_denied(text, m.start(), m.end()))
        .count();
    // "My package is missing" is a package that never came (delayed);
    // "my package is missing a card" is an item short (missing).
    let gone: Vec<(usize, usize)> = PACKAGE_MISSING
        .find_iter(text)
        .filter(|m| !MISSING_WHAT.is_match(&text[m.end()..]))
        .map(|m| (m.start(), m.end()))
        .collect();
    let missing = ISSUE_MISSING
        .find_iter(text)
        .filter(|m| !gone.iter().any(|&(s, e)| s <= m.start() && m.end() <= e))
        .count();
    let delayed = ISSUE_DELAYED
        .find_iter(text)
        .filter(|m| !NOT_THE_ORDER.is_match(&text[m.end()..]))
        .count()
        + gone.len();
    // "My payout hasn't arrived": a seller's money, not a parcel.
    if damaged + missing == 0 && PAYOUT.is_match(text) {
        return IssueType::Account;
    }
    if damaged + missing + delayed > 0 {
        let best = damaged.max(missing).max(delayed);
        return if damaged == best {
            IssueType::Damaged
        } else if missing == best {
            IssueType::Missing
        } else {
            IssueType::Delayed
        };
    }
    if words_match(text, &ISSUE_ACCOUNT) > 0 {
        return IssueType::Account;
    }
    IssueType::General
}

/// A damage word that says there is none: "not damaged", "niet
/// beschadigd", "no damage", "geen schade", "wasn't damaged"; or the
/// idiom "ik ben er (echt) kapot van" (upset, not broken). Only the word right
/// before counts: "ik weet niet waarom de kaart beschadigd is" is damage.
fn damage_denied(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start]
        .trim_end()
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_lowercase()
        .replace('\u{2019}', "'");
    let denied = [
        "not", "niet", "no", "geen", "never", "nooit", "isn't", "wasn't", "weren't", "aren't",
        "isnt", "wasnt", "without", "zonder",
    ]
    .contains(&before.trim_matches(|c: char| !c.is_alphanumeric() && c != '\''));
    let upset = text[start..end].eq_ignore_ascii_case("kapot")
        && text[end..].split_whitespace().next().is_some_and(|w| {
            w.trim_end_matches([',', '.', '!'])
                .eq_ignore_ascii_case("van")
        })
        && text[..start]
            .split_whitespace()
            .rev()
            .take(2)
            .any(|w| w.eq_ignore_ascii_case("er"));
    denied || upset
}

static PURCHASE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:gekocht|kocht|kochten|besteld|bestelde|bestelden|gekauft|bestellt|achet(?:é|ée|és|ées)?|command(?:é|ée|és|ées)?|aangeschaft|betaald|gewonnen|aankoopdatum|datum\s+van\s+aankoop|bestelddatum|besteldatum|purchased|bought|ordered|paid|won\s+(?:(?:an?|the|this|my)\s+)?(?:auction|bid|lot|giveaway|break|it|them)|purchase\s+date|date\s+of\s+purchase|order\s+date)(?-u:\b)").expect("static regex")
});
static DELIVERY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?ix)(?-u:\b)(?:geleverd|afgeleverd|bezorgd|bezorgde|ontvangen|ontving|ontvingen|aangekomen|angekommen|geliefert|zugestellt|erhalten|reçue?s?|livr(?:é|ée|és|ées)?|arriv(?:é|ée|és|ées)?|binnengekomen|binnengekregen|leverdatum|bezorgdatum|delivered|received|arrived|showed\s+up|turned\s+up|got\s+(?:my|the|our)\s+(?:package|parcel|order|item|box|cards?)|delivery\s+date
        # Separable verbs: kwam (het pakket) aan, kreeg (het) (gisteren) binnen.
        |kwam(?:en)?\s+(?:[^\s,.;!?]+\s+){0,3}?aan|kreeg(?:en)?\s+(?:[^\s,.;!?]+\s+){0,4}?binnen)(?-u:\b)").expect("static regex")
});

static DATE_NUMERIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(?:(\d{4})-(\d{1,2})-(\d{1,2})|(\d{1,2})[-/.](\d{1,2})(?:[-/.](\d{2,4}))?)(?-u:\b)")
        .expect("static regex")
});
/// "12 november", "Nov 20th", "the 3rd of November", "3 nov. 2026". Only
/// month names (and their abbreviations) count as the word, so in
/// "zaterdag 31 oktober" the weekday is passed over rather than read as a
/// month.
static DATE_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    let mut words: Vec<String> = MONTHS
        .iter()
        .flat_map(|(nl, en, _)| [*nl, *en])
        .flat_map(|name| (3..=name.len()).map(move |n| name[..n].to_string()))
        // "maar" (but, only) is no way to write maart: "maar 2 kaarten".
        .filter(|w| w != "maar")
        .chain(["mrt".to_string()])
        .chain(OTHER_MONTHS.iter().map(|(name, _)| name.to_string()))
        .collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    words.dedup();
    let month = words.join("|");
    Regex::new(&format!(
        r"(?i)(?-u:\b)(?:(\d{{1,2}})(?:st|nd|rd|th|er|e|\.)?\s+(?:of\s+)?({month})\.?(?:,?\s+(\d{{4}}))?|({month})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?)(?-u:\b)"
    ))
    .expect("static regex")
});

/// "on the 20th", "op de 23e": a day of the month alone. Taken only when
/// a clause ends there ("on the 2nd card" counts cards).
static DAY_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:on|since|op|sinds)\s+(?:the|de)\s+(\d{1,2})(?:st|nd|rd|th|e|ste|de)(?-u:\b)")
        .expect("static regex")
});
static DAY_ONLY_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:\s*$|\s*[,.;:!?)]|\s+(?:and|but|en|maar|at|om|so|dus|i|ik|it|het|we|wij)(?-u:\b))")
        .expect("static regex")
});

/// The most recent day `day` of a month, up to today.
fn recent_day_of_month(day: u32, today: NaiveDate) -> Option<NaiveDate> {
    let mut month_start = today.with_day(1)?;
    for _ in 0..12 {
        if let Some(d) = month_start.with_day(day).filter(|d| *d <= today) {
            return Some(d);
        }
        month_start = (month_start - chrono::Duration::days(1)).with_day(1)?;
    }
    None
}

const MONTHS: [(&str, &str, u32); 12] = [
    ("januari", "january", 1),
    ("februari", "february", 2),
    ("maart", "march", 3),
    ("april", "april", 4),
    ("mei", "may", 5),
    ("juni", "june", 6),
    ("juli", "july", 7),
    ("augustus", "august", 8),
    ("september", "september", 9),
    ("oktober", "october", 10),
    ("november", "november", 11),
    ("december", "december", 12),
];

/// German and French names that neither Dutch nor English starts the
/// same way ("Januar" is a start of "januari"); German writes the day with
/// a dot: "am 14. November". Not "mars": "2 Mars bars".
const OTHER_MONTHS: [(&str, u32); 17] = [
    ("märz", 3),
    ("maerz", 3),
    ("mai", 5),
    ("dezember", 12),
    ("janvier", 1),
    ("février", 2),
    ("fevrier", 2),
    ("avril", 4),
    ("juin", 6),
    ("juillet", 7),
    ("août", 8),
    ("aout", 8),
    ("septembre", 9),
    ("octobre", 10),
    ("novembre", 11),
    ("décembre", 12),
    ("decembre", 12),
];

fn month_number(word: &str) -> Option<u32> {
    let w = word.to_lowercase();
    if let Some((_, n)) = OTHER_MONTHS.iter().find(|(name, _)| *name == w) {
        return Some(*n);
    }
    MONTHS.iter().find_map(|(nl, en, n)| {
        let prefix = w.len() >= 3 && (nl.starts_with(&w) || en.starts_with(&w));
        let mrt = w == "mrt" && *n == 3;
        (prefix || mrt || w == *nl || w == *en).then_some(*n)
    })
}

fn make_date(year: Option<i32>, month: u32, day: u32, today: NaiveDate) -> Option<NaiveDate> {
    match year {
        Some(y) => {
            let y = if y < 100 { 2000 + y } else { y };
            NaiveDate::from_ymd_opt(y, month, day)
        }
        None => {
            // No year: the most recent such day up to today.
            let this = NaiveDate::from_ymd_opt(today.year(), month, day)?;
            if this <= today {
                Some(this)
            } else {
                NaiveDate::from_ymd_opt(today.year() - 1, month, day)
            }
        }
    }
}

/// The first date in `s` with its byte position and length, day-first as
/// in Dutch and most of Europe.
fn first_date_at(s: &str, today: NaiveDate) -> Option<(usize, usize, NaiveDate)> {
    // "om 14.30 uur op 20-11-2026": a time is no date; try the next one.
    let numeric = DATE_NUMERIC.captures_iter(s).find_map(|c| {
        let m = c.get(0)?;
        let d = if let Some(y) = c.get(1) {
            make_date(
                y.as_str().parse().ok(),
                c[2].parse().ok()?,
                c[3].parse().ok()?,
                today,
            )
        } else {
            let year = c.get(6).and_then(|y| y.as_str().parse().ok());
            if price_or_count(s, m.start(), m.end(), year.is_none()) {
                return None;
            }
            let (a, b) = (c[4].parse().ok()?, c[5].parse().ok()?);
            let day_first = make_date(year, b, a, today);
            // "11/3" or "11/20/2026" as written in the US: with a slash,
            // either order, and the more recent reading when both are
            // dates. A misreading then never tells a buyer that their
            // claim window has closed.
            let month_first = m
                .as_str()
                .contains('/')
                .then(|| make_date(year, a, b, today))
                .flatten();
            [day_first, month_first]
                .into_iter()
                .flatten()
                .filter(|d| *d <= today)
                .max()
        }?;
        Some((m.start(), m.len(), d))
    });
    let words = DATE_WORDS.captures_iter(s).find_map(|c| {
        let m = c.get(0)?;
        let d = if let Some(day) = c.get(1) {
            let month = month_number(&c[2])?;
            let year = c.get(3).and_then(|y| y.as_str().parse().ok());
            make_date(year, month, day.as_str().parse().ok()?, today)
        } else {
            let month = month_number(c.get(4)?.as_str())?;
            let year = c.get(6).and_then(|y| y.as_str().parse().ok());
            // "bij Jan 3 boosters besteld": a name and a count, no date.
            if year.is_none() && COUNTED_AFTER.is_match(&s[m.end()..]) {
                return None;
            }
            make_date(year, month, c.get(5)?.as_str().parse().ok()?, today)
        }?;
        Some((m.start(), m.len(), d))
    });
    let phrase = RELATIVE.captures_iter(s).find_map(|c| {
        let m = c.get(0)?;
        let d = if let Some(n) = c.get(1) {
            let n = count_word(n.as_str())?;
            let unit = c[2].to_lowercase();
            let days = if unit.starts_with('w') { 7 * n } else { n };
            today - chrono::Duration::days(days)
        } else {
            let (weekday, last_week) = match (c.get(3), c.get(4), c.get(5)) {
                (Some(lead), Some(wd), _) => (wd, lead.as_str().to_lowercase().contains("week")),
                (None, None, Some(wd)) => (wd, true),
                _ => return None,
            };
            let wd = weekday_number(weekday.as_str())?;
            let today_wd = i64::from(today.weekday().num_days_from_monday());
            if last_week {
                // That day of the week before this one.
                today - chrono::Duration::days(today_wd + 7 - wd)
            } else {
                // The most recent such day before today.
                today - chrono::Duration::days((today_wd - wd - 1).rem_euclid(7) + 1)
            }
        };
        Some((m.start(), m.len(), d))
    });
    let relative = {
        let l = s.to_lowercase();
        [
            ("eergisteren", 2),
            ("eergister", 2),
            ("gisteren", 1),
            // gister, gisteravond, gistermiddag, gisterochtend
            ("gister", 1),
            ("yesterday", 1),
            ("last night", 1),
            ("vandaag", 0),
            ("vanochtend", 0),
            ("vanmorgen", 0),
            ("vanmiddag", 0),
            ("vanavond", 0),
            ("today", 0),
            ("this morning", 0),
            ("this afternoon", 0),
        ]
        .iter()
        .find_map(|(w, back)| {
            let at = l.find(w)?;
            // "eergisteren" also contains "gisteren": take the longer.
            Some((at, w.len(), today - chrono::Duration::days(*back)))
        })
    };
    let day_only = DAY_ONLY.captures_iter(s).find_map(|c| {
        let m = c.get(0)?;
        if !DAY_ONLY_END.is_match(&s[m.end()..]) {
            return None;
        }
        let d = recent_day_of_month(c[1].parse().ok()?, today)?;
        Some((m.start(), m.len(), d))
    });
    [numeric, words, phrase, relative, day_only]
        .into_iter()
        .flatten()
        .filter(|(_, _, d)| *d <= today)
        .min_by_key(|(at, _, _)| *at)
}

/// "3 weken geleden", "two days ago", "vorige week dinsdag", "dinsdag
/// vorige week", "afgelopen zaterdag", "last Tuesday".
static RELATIVE: LazyLock<Regex> = LazyLock::new(|| {
    let weekdays = "maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|monday|tuesday|wednesday|thursday|friday|saturday|sunday";
    Regex::new(&format!(
        r"(?i)(?-u:\b)(?:(\d{{1,2}}|een|één|twee|drie|vier|vijf|zes|zeven|acht|negen|tien|a|an|one|two|three|four|five|six|seven|eight|nine|ten)\s+(dagen|dag|days?|weken|weeks?)\s+(?:geleden|ago)|(vorige\s+week|afgelopen|vorige|last)\s+({weekdays})|({weekdays})\s+(?:vorige|afgelopen)\s+week)(?-u:\b)"
    ))
    .expect("static regex")
});

fn count_word(word: &str) -> Option<i64> {
    if let Ok(n) = word.parse() {
        return Some(n);
    }
    let w = word.to_lowercase();
    [
        ("een", 1),
        ("één", 1),
        ("a", 1),
        ("an", 1),
        ("one", 1),
        ("twee", 2),
        ("two", 2),
        ("drie", 3),
        ("three", 3),
        ("vier", 4),
        ("four", 4),
        ("vijf", 5),
        ("five", 5),
        ("zes", 6),
        ("six", 6),
        ("zeven", 7),
        ("seven", 7),
        ("acht", 8),
        ("eight", 8),
        ("negen", 9),
        ("nine", 9),
        ("tien", 10),
        ("ten", 10),
    ]
    .iter()
    .find(|(name, _)| *name == w)
    .map(|(_, n)| *n)
}

/// Monday 0 ... Sunday 6.
fn weekday_number(word: &str) -> Option<i64> {
    let w = word.to_lowercase();
    [
        ("maandag", "monday"),
        ("dinsdag", "tuesday"),
        ("woensdag", "wednesday"),
        ("donderdag", "thursday"),
        ("vrijdag", "friday"),
        ("zaterdag", "saturday"),
        ("zondag", "sunday"),
    ]
    .iter()
    .position(|(nl, en)| *nl == w || *en == w)
    .map(|i| i as i64)
}

/// Words that, just before a label, say it did not happen: "nog niet
/// geleverd", "hasn't arrived", "niets ontvangen", "never received", or
/// only was to happen: "supposed to be delivered", "expected delivery
/// date", "should have arrived".
const NEGATIONS: &[&str] = &[
    "niet",
    "not",
    "geen",
    "never",
    "nooit",
    "nog",
    "niets",
    "niks",
    "hasn't",
    "haven't",
    "hasnt",
    "havent",
    "didn't",
    "didnt",
    "wasn't",
    "wasnt",
    "isn't",
    "isnt",
    "weren't",
    "nothing",
    "nowhere",
    "supposed",
    "expected",
    "estimated",
    "scheduled",
    "should",
    "will",
    "would",
    "verwachte",
    "verwacht",
    "geplande",
];

/// Words right after a Dutch label that make it a plan: "zou op 10
/// november bezorgd worden", "had geleverd moeten worden".
const NOT_YET_AFTER: &[&str] = &["worden", "wordt", "moeten", "moest", "zou", "zal"];

/// Whether the label starting at `at` is negated by one of the three words
/// before it in its sentence, or made a plan by the word after it.
fn negated(text: &str, at: usize) -> bool {
    let before = &text[..at];
    let lead = before[sentence_start(before)..]
        .to_lowercase()
        .replace('\u{2019}', "'");
    let trim = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
            .to_string()
    };
    let negation = lead
        .split_whitespace()
        .rev()
        .take(3)
        .any(|w| NEGATIONS.contains(&trim(w).as_str()));
    let plan = text[at..]
        .split_whitespace()
        .nth(1)
        .is_some_and(|w| NOT_YET_AFTER.contains(&trim(&w.to_lowercase()).as_str()));
    negation || plan
}

/// "$12.10", "12.10 euro", "2/3 cards", "2/3 van de kaarten": a number
/// that reads like a date but is a price or a count.
fn price_or_count(s: &str, start: usize, end: usize, no_year: bool) -> bool {
    let before = s[..start].trim_end_matches(' ');
    let price = before.ends_with(['$', '\u{20ac}', '\u{a3}']) || PRICE_AFTER.is_match(&s[end..]);
    price || (no_year && COUNTED_AFTER.is_match(&s[end..]))
}

static PRICE_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(?:euro|eur|usd|dollars?|gbp|pounds?)(?-u:\b)").expect("static regex")
});
static COUNTED_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s+(?:of\s+|van\s+)?(?:the\s+|de\s+|my\s+|mijn\s+)?(?:cards?|kaart(?:en|jes)?|items?|stuks|packs?|pakjes|boosters?|products?|producten|pieces?)(?-u:\b)").expect("static regex")
});

static CONJUNCTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i),|(?-u:\b)(?:en|and|maar|but|und|aber|et)(?-u:\b)").expect("static regex")
});

/// The text after a label up to the end of its sentence (at most 60
/// bytes), or up to "en", "and", "maar", "but" (or German's "und",
/// "aber") when the clause after that has a label of its own: in "op 3
/// november besteld en op 20 november ontvangen" the second date is the
/// delivery's.
fn after_label(text: &str, end: usize) -> &str {
    let rest = &text[end..];
    let mut cut = sentence_end(rest).min(60);
    while !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    let rest = &rest[..cut];
    let next_clause = CONJUNCTION.find_iter(rest).find(|c| {
        let clause = &rest[c.end()..];
        [&*PURCHASE_LABEL, &*DELIVERY_LABEL].iter().any(|label| {
            label
                .find_iter(clause)
                .any(|m| !negated(text, end + c.end() + m.start()))
        })
    });
    match next_clause {
        Some(c) => &rest[..c.start()],
        None => rest,
    }
}

static ORDER_OF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:bestelling|order|aankoop|purchase)\s+(?:van|from|of|placed\s+on)\s+(?:(?:de|the|afgelopen|last|(?:maan|dins|woens|donder|vrij|zater|zon)dag|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\s+)?").expect("static regex")
});

/// "mijn bestelling van 2 november", "my order from Nov 2": a date right
/// behind an order names the day it was bought, where no verb says so.
fn order_of_date(text: &str, today: NaiveDate) -> Option<(usize, usize, NaiveDate)> {
    ORDER_OF.find_iter(text).find_map(|m| {
        let rest = &text[m.end()..];
        let (at, len, d) = first_date_at(rest, today)?;
        (at == 0).then_some((m.end(), m.end() + len, d))
    })
}

/// A date inside a label of a separable verb: "kreeg het gisteren binnen".
fn within_label(m: regex::Match<'_>, today: NaiveDate) -> Option<(usize, usize, NaiveDate)> {
    let (at, len, d) = first_date_at(m.as_str(), today)?;
    Some((m.start() + at, m.start() + at + len, d))
}

/// The spans (start, end) of the dates that directly follow a label, as in
/// "gekocht op 12 november" or "delivered on 2026-11-20".
fn dates_after_labels(text: &str, label: &Regex, today: NaiveDate) -> Vec<(usize, usize)> {
    label
        .find_iter(text)
        .filter(|m| !negated(text, m.start()))
        .filter_map(|m| match first_date_at(after_label(text, m.end()), today) {
            Some((at, len, _)) => Some((m.end() + at, m.end() + at + len)),
            None => within_label(m, today).map(|(s, e, _)| (s, e)),
        })
        .collect()
}

/// A date stated with a label in the same sentence: after it ("gekocht op
/// 12 november", "delivered on 2026-11-20"), or before it as Dutch puts
/// the verb last ("ik heb op 9 november besteld"). A negated label ("nog
/// niet geleverd", "hasn't arrived") says no date. A date in `taken`
/// belongs to another label ("bought on November 3 and it arrived
/// damaged") and is not taken from before this one. Returns the date with
/// its span in `text`.
fn labelled_date(
    text: &str,
    label: &Regex,
    today: NaiveDate,
    taken: &[(usize, usize)],
) -> Option<(usize, usize, NaiveDate)> {
    for m in label.find_iter(text) {
        if negated(text, m.start()) {
            continue;
        }
        if let Some((at, len, d)) = first_date_at(after_label(text, m.end()), today) {
            return Some((m.end() + at, m.end() + at + len, d));
        }
        if let Some(found) = within_label(m, today) {
            return Some(found);
        }
        // Verb last: the nearest date before the label in its sentence.
        let before = &text[..m.start()];
        let sentence_start = sentence_start(before);
        let mut from = before.len().saturating_sub(80).max(sentence_start);
        while !before.is_char_boundary(from) {
            from += 1;
        }
        let nearest = dates_at(&before[from..], today)
            .last()
            .map(|&(at, len, d)| (from + at, from + at + len, d));
        if let Some((s, e, d)) = nearest {
            if !taken.iter().any(|&(ts, te)| s < te && ts < e) {
                return Some((s, e, d));
            }
        }
    }
    None
}

/// Where the sentence holding the end of `before` starts.
fn sentence_start(before: &str) -> usize {
    let b = before.as_bytes();
    let mut i = b.len();
    while i > 0 {
        let c = b[i - 1];
        if c == b'\n' || c == b'!' || c == b'?' {
            return i;
        }
        // ". " before an upper-case letter ends a sentence; "4 nov. 2026"
        // and German's "am 14. November" do not.
        if c == b'.'
            && b.get(i).is_some_and(|x| *x == b' ')
            && b.get(i + 1).is_some_and(|x| x.is_ascii_uppercase())
            && !day_dot(before, i - 1)
        {
            return i;
        }
        i -= 1;
    }
    0
}

/// Whether the '.' at `dot` follows a day of the month and precedes a
/// month's name: "14. November", as German writes a date.
fn day_dot(s: &str, dot: usize) -> bool {
    let b = s.as_bytes();
    if dot == 0 || !b[dot - 1].is_ascii_digit() {
        return false;
    }
    let after = s.get(dot + 2..).unwrap_or("");
    let word = after
        .split(|c: char| !c.is_alphabetic())
        .next()
        .unwrap_or("");
    word.chars().count() >= 3 && month_number(word).is_some()
}

/// Where the sentence starting `rest` ends.
fn sentence_end(rest: &str) -> usize {
    let b = rest.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'\n' | b'!' | b'?' | b';' => return i,
            b'.' if b.get(i + 1) == Some(&b' ')
                && b.get(i + 2).is_some_and(|x| x.is_ascii_uppercase())
                && !day_dot(rest, i) =>
            {
                return i
            }
            _ => {}
        }
    }
    b.len()
}

/// Every date written in `s`, in order, with its byte position and length.
fn dates_at(s: &str, today: NaiveDate) -> Vec<(usize, usize, NaiveDate)> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < s.len() {
        match first_date_at(&s[at..], today) {
            Some((pos, len, d)) => {
                found.push((at + pos, len, d));
                at += pos + len.max(1);
                while at < s.len() && !s.is_char_boundary(at) {
                    at += 1;
                }
            }
            None => break,
        }
    }
    found
}

const NL_WORDS: &[&str] = &[
    "de",
    "het",
    "een",
    "ik",
    "je",
    "jij",
    "mijn",
    "niet",
    "is",
    "en",
    "van",
    "op",
    "met",
    "voor",
    "heb",
    "hebben",
    "bestelling",
    "pakket",
    "graag",
    "bedankt",
    "groet",
    "groeten",
    "hallo",
    "beste",
    "wanneer",
    "nog",
    "geen",
    "maar",
    "ontvangen",
    "kapot",
    "beschadigd",
    "waar",
    "dat",
    "wat",
    "zijn",
    "er",
    "ook",
    "hoi",
    "dag",
    "vriendelijke",
    "alvast",
    "mvg",
    // What short complaints say ("kaart kapot aangekomen, foto's
    // bijgevoegd"); no word English has too (not "box", "item", "bent").
    "kaart",
    "kaarten",
    "foto",
    "fotos",
    "verkeerde",
    "gekregen",
    "besteld",
    "gekocht",
    "verstuurd",
    "bijgevoegd",
    "ontbreekt",
    "aangekomen",
    "verkoper",
    "doos",
    "hij",
    "jullie",
    "uw",
    "heeft",
    "niets",
    "nooit",
    "deze",
    "dit",
    "om",
    "te",
    "aan",
    "bij",
    "moet",
    "moest",
];
const EN_WORDS: &[&str] = &[
    "the", "a", "an", "i", "you", "my", "not", "is", "and", "of", "on", "with", "for", "have",
    "has", "order", "package", "please", "thanks", "thank", "regards", "hello", "hi", "dear",
    "when", "still", "no", "but", "received", "broken", "damaged", "where", "that", "what", "are",
    "it", "was", "best", "cheers",
    // What short complaints say ("slab arrived cracked, photos attached");
    // no word Dutch has too (not "in", "we", "me", "help", "refund").
    "arrived", "photos", "photo", "pictures", "card", "cards", "wrong", "got", "should", "missing",
    "shipped", "yet", "your", "this", "from", "can", "be", "attached", "bought", "ordered",
    "never", "cracked", "seller", "sent", "nothing",
];

/// German and French words that neither Dutch nor English writes (not
/// "die", "den", "geld", "hat"; not "je", "pas", "les", "mes", "dans",
/// "mais", "mon", "pour"), to tell mail in those languages.
const OTHER_WORDS: &[&str] = &[
    // German
    "ich",
    "habe",
    "hab",
    "ist",
    "nicht",
    "und",
    "eine",
    "einen",
    "einem",
    "ein",
    "der",
    "das",
    "dem",
    "mit",
    "für",
    "bitte",
    "danke",
    "vielen",
    "dank",
    "paket",
    "bestellung",
    "karte",
    "karten",
    "kaputt",
    "beschädigt",
    "angekommen",
    "leider",
    "noch",
    "wurde",
    "sie",
    "es",
    "auf",
    "mir",
    "mich",
    "grüße",
    "grüßen",
    "gruß",
    "freundlichen",
    "sehr",
    "geehrte",
    "geehrter",
    "damen",
    "herren",
    "von",
    "aber",
    "oder",
    "schon",
    "keine",
    "kein",
    "heute",
    "gestern",
    "erhalten",
    "gekauft",
    "geliefert",
    "verkäufer",
    "wann",
    "warum",
    "auch",
    "dass",
    "guten",
    "können",
    "helfen",
    "ihr",
    "ihre",
    "meine",
    "mein",
    "meinen",
    "bestellt",
    "zurück",
    "nichts",
    "wir",
    "uns",
    // French
    "bonjour",
    "bonsoir",
    "merci",
    "cordialement",
    "madame",
    "monsieur",
    "ai",
    "reçu",
    "recu",
    "ma",
    "le",
    "la",
    "est",
    "une",
    "et",
    "que",
    "qui",
    "avec",
    "colis",
    "commande",
    "cassé",
    "cassée",
    "endommagé",
    "endommagée",
    "abîmé",
    "abîmée",
    "vendeur",
    "carte",
    "cartes",
    "vous",
    "nous",
    "été",
    "toujours",
    "depuis",
    "sur",
    "arrivé",
    "arrivée",
    "livré",
    "livrée",
    "plaît",
    "elle",
    "ou",
    "aucun",
    "jamais",
    "remboursement",
];

/// Dutch or English, by counting common words; `None` when neither shows.
/// Mail in another language (German, French) is answered in English, the
/// language a buyer who writes neither is likelier to read.
pub fn language(text: &str) -> Option<Language> {
    /// The word lists as sets, and their longest word.
    static WORDS: LazyLock<([HashSet<&str>; 3], usize)> = LazyLock::new(|| {
        let lists = [NL_WORDS, EN_WORDS, OTHER_WORDS];
        let longest = lists.iter().flat_map(|l| l.iter()).map(|w| w.len()).max();
        (
            lists.map(|list| list.iter().copied().collect()),
            longest.unwrap_or(0),
        )
    });
    let ([nl_words, en_words, other_words], longest) = &*WORDS;
    let (mut nl, mut en, mut other) = (0usize, 0usize, 0usize);
    let mut lower = String::new();
    for word in text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .take(400)
    {
        // No character lower-cases to fewer than a quarter of its bytes
        // (4 at most, 1 at least), so this one cannot be a listed word.
        if word.len() > 4 * longest {
            continue;
        }
        lower.clear();
        lower.extend(word.chars().flat_map(char::to_lowercase));
        nl += usize::from(nl_words.contains(lower.as_str()));
        en += usize::from(en_words.contains(lower.as_str()));
        other += usize::from(other_words.contains(lower.as_str()));
    }
    if other >= 2 && other > nl + en {
        return Some(Language::En);
    }
    // One listed word decides when the other language has none: "Thanks",
    // "Bedankt", "Wrong card received". Two are needed against one.
    match nl.cmp(&en) {
        _ if nl + en == 0 => None,
        std::cmp::Ordering::Greater => Some(Language::Nl),
        std::cmp::Ordering::Less => Some(Language::En),
        std::cmp::Ordering::Equal => None,
    }
}

/// Compiles this module's regexes now rather than on the first mail that
/// needs them (about 30 ms in all), e.g. on a thread of its own while the
/// daemon logs in. The language word lists too.
pub fn warm_up() {
    let all: [&LazyLock<Regex>; 33] = [
        &ORDER_LABEL,
        &STRONG_SHIPMENT,
        &UPS_GROUPED,
        &LABELLED_SHIPMENT,
        &USERNAME_LABEL,
        &USERNAME_ROW,
        &USERNAME_AT,
        &EMAIL,
        &EMAIL_LABEL,
        &CAT_SPORTS,
        &CAT_TCG,
        &CAT_SNEAKERS,
        &CAT_COINS,
        &CAT_OTHER,
        &ISSUE_DAMAGED,
        &ISSUE_MISSING,
        &ISSUE_DELAYED,
        &ISSUE_ACCOUNT,
        &PAYOUT,
        &NOT_THE_ORDER,
        &PACKAGE_MISSING,
        &MISSING_WHAT,
        &PURCHASE_LABEL,
        &DELIVERY_LABEL,
        &ORDER_OF,
        &DATE_NUMERIC,
        &DATE_WORDS,
        &RELATIVE,
        &DAY_ONLY,
        &DAY_ONLY_END,
        &PRICE_AFTER,
        &COUNTED_AFTER,
        &CONJUNCTION,
    ];
    for regex in all {
        LazyLock::force(regex);
    }
    language("");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every regex of the module is in `warm_up`'s list.
    #[test]
    fn warm_up_lists_every_regex() {
        crate::core::assert_warm_up_lists_every_regex(include_str!("extract.rs"), 20);
        warm_up();
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 25).unwrap()
    }

    #[test]
    fn finds_order_numbers_alone() {
        assert_eq!(
            order_numbers("Bestelnummer: dQzGdHsKxwaEyrQfCdcCs8."),
            vec!["dQzGdHsKxwaEyrQfCdcCs8"]
        );
        assert_eq!(
            order_numbers("Bestelnummer:dQzGdHsKxwaEyrQfCdcCs8"),
            vec!["dQzGdHsKxwaEyrQfCdcCs8"]
        );
        assert_eq!(
            order_numbers("Order #u8jzPde0IgxLd6GncfBAep"),
            vec!["u8jzPde0IgxLd6GncfBAep"]
        );
        assert!(order_numbers("page#u8jzPde0IgxLd6GncfBAep").is_empty());
        assert_eq!(
            order_numbers("order dQzGdHsKxwaEyrQfCdcCs8 and dQzGdHsKxwaEyrQfCdcCs8 again"),
            vec!["dQzGdHsKxwaEyrQfCdcCs8"]
        );
    }

    #[test]
    fn order_numbers_behind_id_and_hash() {
        let o = vec!["dQzGdHsKxwaEyrQfCdcCs8"];
        for text in [
            "Order ID: #dQzGdHsKxwaEyrQfCdcCs8",
            "Order ID:dQzGdHsKxwaEyrQfCdcCs8",
            "order id #dQzGdHsKxwaEyrQfCdcCs8",
            "Beschadigd #dQzGdHsKxwaEyrQfCdcCs8",
            "#dQzGdHsKxwaEyrQfCdcCs8",
            "Bestelling (#dQzGdHsKxwaEyrQfCdcCs8) is kapot",
            "Ordernr.#dQzGdHsKxwaEyrQfCdcCs8",
        ] {
            assert_eq!(order_numbers(text), o, "{text}");
        }
        for text in [
            "#1 fan of this seller",
            "#PokemonTradingCardGame on Instagram",
            "page#dQzGdHsKxwaEyrQfCdcCs8",
            "https://whatnot.test/#dQzGdHsKxwaEyrQfCdcCs8",
            "Ticket ID: #dQzGdHsKxwaEyrQfCdcCs8x",
        ] {
            assert!(order_numbers(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn ignores_urls_ids_and_tracking() {
        for text in [
            "https://whatnot.test/o/dQzGdHsKxwaEyrQfCdcCs8/x",
            "<dQzGdHsKxwaEyrQfCdcCs8@mail.gmail.com>",
            "?id=dQzGdHsKxwaEyrQfCdcCs8",
            "cid:dQzGdHsKxwaEyrQfCdcCs8",
            "3SABCD1234567890123456",
            "abcdefghijklmnopqrstuv",
            "dQzGdHsKxwaEyrQfCdcCs8x",
        ] {
            assert!(order_numbers(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn shipment_numbers_as_buyers_type_them() {
        for (text, want) in [
            ("DPD: 01234567890123", "01234567890123"),
            ("DHL 1234567890", "1234567890"),
            ("Verzonden met PostNL 3sabcd1234567", "3SABCD1234567"),
            ("USPS 9400 1118 9922 3397 6239 10", "9400111899223397623910"),
            ("Royal Mail AB 1234 5678 9GB", "AB123456789GB"),
        ] {
            assert_eq!(shipment_numbers(text), vec![want.to_string()], "{text}");
        }
        // A carrier's name before a number of days or a price is no label.
        assert!(shipment_numbers("DHL deed er 3 dagen over").is_empty());
        assert!(shipment_numbers("UPS charged 12.50").is_empty());
        assert!(shipment_numbers("3 groups 12345678 of cards").is_empty());
    }

    #[test]
    fn shipment_numbers_by_carrier() {
        assert_eq!(
            shipment_numbers("Track & trace: 3SABCD123456789"),
            vec!["3SABCD123456789"]
        );
        assert_eq!(
            shipment_numbers("UPS 1Z999AA10123456784 ok"),
            vec!["1Z999AA10123456784"]
        );
        assert_eq!(
            shipment_numbers("DHL JJD000390007880993487"),
            vec!["JJD000390007880993487"]
        );
        assert_eq!(
            shipment_numbers("USPS 9400111899223397623910"),
            vec!["9400111899223397623910"]
        );
        assert_eq!(
            shipment_numbers("Zendingsnummer: 05212345678901"),
            vec!["05212345678901"]
        );
        assert_eq!(
            shipment_numbers("tracking number is 12345678901"),
            vec!["12345678901"]
        );
        assert!(shipment_numbers("bel me op 0612345678 of order 20261124").is_empty());
        assert!(shipment_numbers("Bestelnummer dQzGdHsKxwaEyrQfCdcCs8").is_empty());
    }

    #[test]
    fn ups_numbers_written_in_groups() {
        assert_eq!(
            shipment_numbers("UPS 1Z 999 AA1 01 2345 6784 ok"),
            vec!["1Z999AA10123456784"]
        );
        assert_eq!(
            shipment_numbers("Tracking: 1Z 999 AA1 01 2345 6784\nand 1Z999AA10123456784"),
            vec!["1Z999AA10123456784"]
        );
        assert!(shipment_numbers("1Z 12 kaarten").is_empty());
    }

    #[test]
    fn usernames_and_account_email() {
        assert_eq!(
            username("Gebruikersnaam: kaartenkoning88").as_deref(),
            Some("kaartenkoning88")
        );
        assert_eq!(
            username("my username is @card_shark").as_deref(),
            Some("card_shark")
        );
        assert_eq!(
            username("My Whatnot username is \"sneakerhead99\" and").as_deref(),
            Some("sneakerhead99")
        );
        assert_eq!(
            username("Gebruikersnaam: ‘kaartenkoning’").as_deref(),
            Some("kaartenkoning")
        );
        assert_eq!(username("mail anna@buyer.test please"), None);
        assert_eq!(username("  - Je gebruikersnaam op Whatnot"), None);
        assert_eq!(
            username("Bestelnummer X\nGebruikersnaam disneyverzamelaar\n").as_deref(),
            Some("disneyverzamelaar")
        );
        assert_eq!(
            username("Gebruikersnaam op Whatnot: rubenv_cards").as_deref(),
            Some("rubenv_cards")
        );
        assert_eq!(
            username("Hi, I'm @sneakerhead_nl on Whatnot").as_deref(),
            Some("sneakerhead_nl")
        );
        assert_eq!(
            account_email("E-mailadres van mijn account: Anna.Vries@Gmail.com").as_deref(),
            Some("anna.vries@gmail.com")
        );
        assert_eq!(account_email("write to me at x@y.test"), None);
    }

    #[test]
    fn account_email_behind_an_email_label() {
        for text in [
            "E-mail: anna@buyer.nl",
            "Email: anna@buyer.nl",
            "email:anna@buyer.nl",
            "Mijn e-mail is anna@buyer.nl",
            "My email is <anna@buyer.nl>",
            "Naam: Anna\nE-mail: Anna@Buyer.nl\n",
        ] {
            assert_eq!(
                account_email(text).as_deref(),
                Some("anna@buyer.nl"),
                "{text}"
            );
        }
        for text in [
            "Ik heb de verkoper gemaild, zijn e-mailadres is info@kaartshop.nl",
            "The seller's email: info@shop.test",
            "Her email address is friend@buyer.test",
            "I sent an email to seller@shop.test yesterday",
            "> E-mail: anna@buyer.nl",
        ] {
            assert_eq!(account_email(text), None, "{text}");
        }
    }

    #[test]
    fn a_bare_handle_is_the_buyer_only_when_the_mail_says_so() {
        for text in [
            "I bought a Charizard from @cardking_nl and the corner is bent.",
            "Ik heb bij @kaartenbaas een kaart gekocht, hij is kapot.",
            "The seller @cardking_nl never shipped it.",
            "De verkoper (@kaartenbaas) reageert niet.",
            "Anna\nInstagram: @anna.sneaks",
            "Thanks to @whatnot for the quick help",
        ] {
            assert_eq!(username(text), None, "{text}");
        }
        for (text, user) in [
            ("Hi, I'm @sneakerhead_nl on Whatnot", "sneakerhead_nl"),
            ("Ik ben @pokepapa_nl op Whatnot.", "pokepapa_nl"),
            ("> And your username?\n@anna_b\n", "anna_b"),
            (
                "My account is @anna_b, the seller is @cardking_nl",
                "anna_b",
            ),
            ("Mijn naam op de app: @anna_b", "anna_b"),
            ("Groet,\nAnna (@anna_b)", "anna_b"),
        ] {
            assert_eq!(username(text).as_deref(), Some(user), "{text}");
        }
    }

    #[test]
    fn an_order_number_typed_in_groups() {
        assert_eq!(
            order_numbers("Mijn bestelnummer is dQzG dHsK xwaE yrQf CdcC s8."),
            vec!["dQzGdHsKxwaEyrQfCdcCs8".to_string()]
        );
        assert_eq!(
            order_numbers("Order number: dQzGdHs KxwaEyr QfCdcCs8, thanks"),
            vec!["dQzGdHsKxwaEyrQfCdcCs8".to_string()]
        );
        // Groups that do not add up to one, and words after a label, are not.
        assert!(order_numbers("Bestelnummer: dQzG dHsK xwaE").is_empty());
        assert!(order_numbers("Order number is not known to me yet sorry").is_empty());
    }

    #[test]
    fn promo_and_gift_codes_are_not_orders() {
        // Codes have the same shape as an order number; their label says
        // what they are.
        for text in [
            "I used the promo code WelcomeBack2026Promo12 at checkout",
            "Mijn kortingscode: ZomerKorting2026Bonus22 werkte niet",
            "Coupon code 'HolidayGiftCard2026xYz1' was not applied",
            "De cadeaucode (KerstCadeau2026Voucher1) is al gebruikt",
            "voucher: SpringVoucher2026AbCdE1",
        ] {
            assert!(order_numbers(text).is_empty(), "{text}");
        }
        // The order next to it still counts.
        assert_eq!(
            order_numbers(
                "Order dQzGdHsKxwaEyrQfCdcCs8, promo code WelcomeBack2026Promo12 not applied"
            ),
            vec!["dQzGdHsKxwaEyrQfCdcCs8".to_string()]
        );
        // "Order code" is how some buyers name the order number.
        assert_eq!(
            order_numbers("Ordercode: dQzGdHsKxwaEyrQfCdcCs8"),
            vec!["dQzGdHsKxwaEyrQfCdcCs8".to_string()]
        );
    }

    #[test]
    fn a_form_left_blank_fills_in_nothing() {
        // The buyer copied the list of what to send and left lines empty.
        assert_eq!(username("Username:\nAccount email: anna@buyer.test"), None);
        assert_eq!(
            username("Gebruikersnaam:\nE-mailadres: anna@buyer.test\n"),
            None
        );
        assert!(order_numbers("Bestelnummer (bijv. dQzGdHsKxwaEyrQfCdcCs8):\n").is_empty());
        assert!(order_numbers("Order number (e.g. dQzGdHsKxwaEyrQfCdcCs8): ").is_empty());
        assert_eq!(
            order_numbers(
                "Je bestelnummer (bijvoorbeeld dQzGdHsKxwaEyrQfCdcCs8)\nDat is jgVvVqE1SkHbn88HxjSI6b"
            ),
            vec!["jgVvVqE1SkHbn88HxjSI6b".to_string()]
        );
        // A value on the line under its label still counts.
        assert_eq!(
            username("Gebruikersnaam:\nannab\n").as_deref(),
            Some("annab")
        );
        assert_eq!(
            username("Username: annab, E-mail: anna@buyer.test").as_deref(),
            Some("annab")
        );
    }

    #[test]
    fn username_placeholders_are_no_username() {
        for text in [
            "Gebruikersnaam: ik weet hem niet",
            "Gebruikersnaam: weet ik niet meer",
            "Gebruikersnaam: geen idee",
            "Gebruikersnaam: zie hieronder",
            "Username: not sure",
            "Username: don't know",
            "Username: unknown",
            "Username: same as my email",
        ] {
            assert_eq!(username(text), None, "{text}");
        }
        assert_eq!(
            username("Gebruikersnaam: ik weet hem niet, maar ik ben @annakaart").as_deref(),
            Some("annakaart")
        );
        assert_eq!(
            username("Gebruikersnaam: ikea_fan").as_deref(),
            Some("ikea_fan")
        );
    }

    #[test]
    fn username_behind_whatnot_name_labels() {
        for text in [
            "Naam op Whatnot: annakaart",
            "Mijn naam op Whatnot is annakaart",
            "Whatnot username annakaart",
            "My Whatnot username annakaart",
            "Whatnot-gebruikersnaam: annakaart",
        ] {
            assert_eq!(username(text).as_deref(), Some("annakaart"), "{text}");
        }
        for text in [
            "Naam: Anna de Vries",
            "Whatnot username annakaart is wrong in the app",
        ] {
            assert_eq!(username(text), None, "{text}");
        }
    }

    #[test]
    fn categories_pick_the_claim_window() {
        assert_eq!(category("een Pokémon booster box"), Some(Category::Tcg));
        assert_eq!(
            category("Topps Chrome rookie card"),
            Some(Category::SportsCards)
        );
        assert_eq!(
            category("Jordan 1 sneakers maat 43"),
            Some(Category::SneakersStreetwear)
        );
        assert_eq!(
            category("een zilveren munt uit 1921"),
            Some(Category::CoinsMoney)
        );
        assert_eq!(category("a Funko Pop figure"), Some(Category::Other));
        assert_eq!(category("mijn bestelling"), None);
        // "LP" alone is a card's grade (lightly played), not a record: a
        // card must keep its 7-day window.
        assert_eq!(
            category("Listed as near mint but it arrived LP at best."),
            None
        );
        assert_eq!(category("two vinyl LPs"), Some(Category::Other));
        // Coins and money by more of their names: 7 days, not 14.
        for text in [
            "The Morgan silver dollar has a scratch.",
            "De euromunten set is beschadigd.",
            "Een herdenkingsmunt van 2 euro.",
            "The gold bar arrived scratched.",
            "Mijn zilverbaar van 1 ounce.",
            "A Krugerrand in a capsule.",
        ] {
            assert_eq!(category(text), Some(Category::CoinsMoney), "{text}");
        }
        assert_eq!(
            category("Mijn Hot Wheels auto is kapot."),
            Some(Category::Other)
        );
        assert_eq!(category("Ik heb dat gemunt."), None);
    }

    #[test]
    fn issue_types_as_buyers_put_them() {
        for (text, want) in [
            ("De slab is gebarsten.", IssueType::Damaged),
            ("Er zit een beschadiging op de hoek.", IssueType::Damaged),
            ("De Pikachu zat er niet bij.", IssueType::Missing),
            ("The promo card was not in the package.", IssueType::Missing),
            (
                "De verkoper heeft mijn bestelling nog niet verstuurd.",
                IssueType::Delayed,
            ),
            ("My order hasn't been shipped yet.", IssueType::Delayed),
            // What was not damaged is no damage.
            (
                "The box was not damaged, but the card is missing.",
                IssueType::Missing,
            ),
            (
                "De doos was niet beschadigd, maar er ontbreekt een kaart.",
                IssueType::Missing,
            ),
            (
                "No damage to the box, but one card wasn't included.",
                IssueType::Missing,
            ),
            // "Kapot van" is being upset, not a broken parcel.
            (
                "Ik ben er kapot van, mijn pakket is nog steeds niet aangekomen.",
                IssueType::Delayed,
            ),
            ("De kaart is kapot van de verzending.", IssueType::Damaged),
            // A negation further back says nothing of the damage.
            (
                "Ik weet niet waarom de kaart beschadigd is.",
                IssueType::Damaged,
            ),
            (
                "Ik kreeg mijn pakketje gisteren binnen maar de kaart was gebogen.",
                IssueType::Damaged,
            ),
            (
                "De hoes is verbogen en er zit waterschade op.",
                IssueType::Damaged,
            ),
            (
                "De doos kwam gisteren helemaal nat aan.",
                IssueType::Damaged,
            ),
            ("The box was soaked.", IssueType::Damaged),
            // A wrong item or size is an item short of what was bought.
            (
                "Ze zijn op 19 november geleverd, maar het is de verkeerde maat.",
                IssueType::Missing,
            ),
            ("I got the wrong size.", IssueType::Missing),
            ("Dit is niet wat ik besteld heb.", IssueType::Missing),
            ("This is not what I ordered.", IssueType::Missing),
            // Never sent, or shown as delivered but not there.
            (
                "The seller never shipped my item, I paid on November 2nd.",
                IssueType::Delayed,
            ),
            ("De verkoper heeft het nooit verzonden.", IssueType::Delayed),
            (
                "Track & trace: 3SABCD1234567 toont bezorgd, maar ik heb niks.",
                IssueType::Delayed,
            ),
            (
                "Tracking says delivered but there is nothing at my door.",
                IssueType::Delayed,
            ),
            // Fewer than bought, another item, a fake: not what should
            // have come.
            (
                "Ik heb een Topps Chrome box gekocht maar er zaten maar 11 packs in ipv 12.",
                IssueType::Missing,
            ),
            ("I only got 3 cards instead of 5.", IssueType::Missing),
            (
                "De verkoper heeft een andere kaart gestuurd dan in de stream werd getoond.",
                IssueType::Missing,
            ),
            (
                "I received someone else's order, a Funko Pop instead of my Pokemon cards.",
                IssueType::Missing,
            ),
            (
                "The Jordan 4s I bought are fake, the stitching is off.",
                IssueType::Missing,
            ),
            ("Ik denk dat de kaart namaak is.", IssueType::Missing),
            // Tracking that stands still.
            (
                "Het zendingsnummer is CD123456789NL en het pakket staat al 5 dagen stil.",
                IssueType::Delayed,
            ),
            ("My package is stuck in transit.", IssueType::Delayed),
            // A seller's payout is the account's, not a parcel's.
            (
                "My payout hasn't arrived in my bank account.",
                IssueType::Account,
            ),
            (
                "Mijn uitbetaling is nog steeds niet binnen.",
                IssueType::Account,
            ),
            // Marks on the item.
            ("De kaart heeft een vouw in het midden.", IssueType::Damaged),
            ("The card has a crease.", IssueType::Damaged),
            ("The slab case is chipped and scuffed.", IssueType::Damaged),
            ("The figure arrived shattered.", IssueType::Damaged),
            (
                "De kaart is bekrast en de hoek is afgebroken.",
                IssueType::Damaged,
            ),
            ("Er zit een vlek op de kaart.", IssueType::Damaged),
            // Never reached the buyer.
            (
                "The package was delivered to the wrong address.",
                IssueType::Delayed,
            ),
            (
                "Mijn pakket is bij het verkeerde adres bezorgd.",
                IssueType::Delayed,
            ),
            ("Het pakket is retour afzender gegaan.", IssueType::Delayed),
            ("The parcel was returned to sender.", IssueType::Delayed),
            ("Mijn pakket is gestolen van de stoep.", IssueType::Delayed),
        ] {
            assert_eq!(issue_type(text), want, "{text}");
        }
    }

    #[test]
    fn issue_types_in_both_languages() {
        assert_eq!(
            issue_type("Mijn kaart is geknakt aangekomen"),
            IssueType::Damaged
        );
        assert_eq!(issue_type("The box arrived crushed"), IssueType::Damaged);
        assert_eq!(
            issue_type("Er ontbreekt een kaart in het pakket"),
            IssueType::Missing
        );
        assert_eq!(issue_type("One card was missing"), IssueType::Missing);
        assert_eq!(
            issue_type("Mijn pakket is nog steeds niet aangekomen"),
            IssueType::Delayed
        );
        assert_eq!(
            issue_type("Where is my order? It has not arrived"),
            IssueType::Delayed
        );
        assert_eq!(
            issue_type("Ik kan niet inloggen, wachtwoord vergeten"),
            IssueType::Account
        );
        assert_eq!(issue_type("Hoe werkt een giveaway?"), IssueType::General);
    }

    #[test]
    fn never_arrived_lost_and_broken_wording() {
        for text in [
            "My package never arrived",
            "I haven't received my order yet",
            "I still haven\u{2019}t received my order",
            "I didn't receive my order",
            "I did not get my order",
            "I ordered Pokémon cards on November 3 but haven't received them",
            "My parcel is lost",
            "I think the package got lost in the mail",
            "Mijn pakket is nooit aangekomen",
            "Ik heb mijn bestelling nog niet gekregen",
            "Ik heb op 3 november besteld maar niets ontvangen",
            "Mijn pakket is kwijt",
            "Het pakket is door PostNL kwijtgeraakt",
            "My order seems to be lost",
            "I haven't got my order yet",
        ] {
            assert_eq!(issue_type(text), IssueType::Delayed, "{text}");
        }
        for text in [
            "Mijn kaart is stuk aangekomen",
            "De doos was helemaal stuk",
            "De kaart is defect",
            "The card arrived defective",
            "The console is defective",
        ] {
            assert_eq!(issue_type(text), IssueType::Damaged, "{text}");
        }
        for text in [
            "Ik stuur een stukje tekst over de verkoper",
            "Hoeveel kost het per stuk?",
            "Ik ben mijn wachtwoord kwijt",
            "I lost my password",
            "I haven't received a reply to my question",
            "Ik heb een stuk of vijf vragen over veilingen",
            "In order to not get lost in the app, where is the help page?",
            "I haven't got a clue how giveaways work",
        ] {
            assert_ne!(issue_type(text), IssueType::Delayed, "{text}");
            assert_ne!(issue_type(text), IssueType::Damaged, "{text}");
        }
    }

    #[test]
    fn a_missing_package_is_a_delayed_one() {
        for text in [
            "My package is missing",
            "The parcel went missing after it left the seller",
            "Our order has been missing for two weeks",
            "Package missing\nHello, my package is missing.",
        ] {
            assert_eq!(issue_type(text), IssueType::Delayed, "{text}");
        }
        for text in [
            "My order is missing a card",
            "My order was missing two cards",
            "The package is missing the promo card",
            "One card was missing",
            "Order missing items",
        ] {
            assert_eq!(issue_type(text), IssueType::Missing, "{text}");
        }
    }

    #[test]
    fn dates_behind_labels() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let f = extract(
            "",
            "Ik heb het gekocht op 12 november en het is geleverd op 20-11-2026.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 12));
        assert_eq!(f.delivery_date, d(2026, 11, 20));
        let f = extract(
            "",
            "Purchased on November 3, 2026. Delivered on 2026-11-21.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        assert_eq!(f.delivery_date, d(2026, 11, 21));
        let f = extract("", "Besteld op 28 december, nog niet ontvangen", today());
        assert_eq!(f.purchase_date, d(2025, 12, 28));
        assert_eq!(f.delivery_date, None);
        let f = extract("", "Gisteren ontvangen", today());
        assert_eq!(f.delivery_date, d(2026, 11, 24), "Dutch puts the verb last");
        let f = extract(
            "",
            "Nog niet geleverd. Ik heb hem gekocht op 4 november 2026.",
            today(),
        );
        assert_eq!(f.delivery_date, None);
        assert_eq!(f.purchase_date, d(2026, 11, 4));
        let f = extract("", "Ik heb op 9 november een kaart besteld.", today());
        assert_eq!(f.purchase_date, d(2026, 11, 9));
        let f = extract("", "ontvangen gisteren", today());
        assert_eq!(f.delivery_date, d(2026, 11, 24));
        // The simple past as well as the participle.
        let f = extract(
            "",
            "De munt die ik op 16-11-2026 kocht, is met een diepe kras aangekomen.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 16));
        assert_eq!(f.delivery_date, None);
        let f = extract("", "Ik bestelde op 3 november een booster box.", today());
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        let f = extract(
            "",
            "Ik ontving het pakket op 20 november, de doos was nat.",
            today(),
        );
        assert_eq!(f.delivery_date, d(2026, 11, 20));
    }

    #[test]
    fn not_received_gives_no_delivery_date() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        for text in [
            "I bought a Pokémon booster box on November 3 and it hasn't arrived.",
            "I bought a Pokémon booster box on November 3, it hasn\u{2019}t arrived.",
            "I ordered Pokémon cards on November 3 but haven't received them.",
            "I ordered it on November 3 and I didn't receive anything.",
            "I ordered it on November 3 and never received it.",
            "Ik heb op 3 november Pokémon kaarten besteld maar niets ontvangen.",
            "Ik heb op 3 november besteld en nog niks ontvangen.",
            "Op 3 november besteld, nooit aangekomen.",
        ] {
            let f = extract("", text, today());
            assert_eq!(f.purchase_date, d(2026, 11, 3), "{text}");
            assert_eq!(f.delivery_date, None, "{text}");
        }
    }

    #[test]
    fn purchase_date_is_not_also_the_delivery_date() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let f = extract(
            "",
            "Mijn Pokémon booster box (besteld op 10 november) is beschadigd aangekomen.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 10));
        assert_eq!(f.delivery_date, None);
        let f = extract(
            "",
            "I bought it on November 3 and it arrived damaged.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        assert_eq!(f.delivery_date, None);
        // A date of its own before the verb is still the delivery date.
        let f = extract(
            "",
            "Besteld op 3 november. Ik heb het op 20 november ontvangen.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        assert_eq!(f.delivery_date, d(2026, 11, 20));
        let f = extract("", "Delivered on November 20, I ordered it.", today());
        assert_eq!(f.delivery_date, d(2026, 11, 20));
        assert_eq!(f.purchase_date, None);
    }

    #[test]
    fn dates_after_a_weekday_or_a_time() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let purchase = |t: &str| extract("", t, today()).purchase_date;
        assert_eq!(
            purchase("Ik heb het op zaterdag 31 oktober gekocht."),
            d(2026, 10, 31)
        );
        assert_eq!(
            purchase("Ik heb het gekocht op zaterdag 31 oktober."),
            d(2026, 10, 31)
        );
        assert_eq!(
            purchase("Ik heb op maandag 2 november besteld."),
            d(2026, 11, 2)
        );
        assert_eq!(
            purchase("I ordered it on Tuesday 3 November."),
            d(2026, 11, 3)
        );
        assert_eq!(
            purchase("Ordered on Tuesday, November 3, 2026."),
            d(2026, 11, 3)
        );
        assert_eq!(purchase("Besteld op wo 4 nov."), d(2026, 11, 4));
        assert_eq!(
            extract("", "Ontvangen om 14.30 uur op 20-11-2026.", today()).delivery_date,
            d(2026, 11, 20)
        );
        // Words that are not months give no date.
        assert_eq!(purchase("Ik heb 3 stuks besteld."), None);
        assert_eq!(purchase("Ik heb 3 kaarten besteld."), None);
    }

    #[test]
    fn a_date_in_the_next_clause_belongs_to_its_own_verb() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        for text in [
            "Ik heb op 3 november besteld en op 20 november ontvangen.",
            "Ik heb het op 3 november besteld en het is op 20 november bezorgd.",
            "Op 3 november besteld maar pas op 20 november geleverd.",
        ] {
            let f = extract("", text, today());
            assert_eq!(f.purchase_date, d(2026, 11, 3), "{text}");
            assert_eq!(f.delivery_date, d(2026, 11, 20), "{text}");
        }
        let f = extract("", "Ik heb het gekocht en betaald op 3 november.", today());
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        let f = extract(
            "",
            "Besteld op 3 november en nog steeds niet ontvangen.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        assert_eq!(f.delivery_date, None);
        let f = extract(
            "",
            "I ordered it on November 3 and on November 20 it arrived damaged.",
            today(),
        );
        assert_eq!(f.purchase_date, d(2026, 11, 3));
        assert_eq!(f.delivery_date, d(2026, 11, 20));
    }

    #[test]
    fn english_date_forms() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let purchase = |t: &str| extract("", t, today()).purchase_date;
        assert_eq!(
            purchase("Purchased on the 3rd of November."),
            d(2026, 11, 3)
        );
        assert_eq!(purchase("Ordered on 11/20/2026."), d(2026, 11, 20));
        // With a slash, day first or month first, whichever is the more
        // recent: a misreading never closes a claim window.
        assert_eq!(purchase("Ordered on 11/03/2026."), d(2026, 11, 3));
        assert_eq!(purchase("Besteld op 3/11/2026."), d(2026, 11, 3));
        assert_eq!(purchase("I ordered a booster box on 11/3."), d(2026, 11, 3));
        assert_eq!(purchase("I ordered it on 11/20."), d(2026, 11, 20));
        assert_eq!(purchase("Besteld op 3-11."), d(2026, 11, 3));
        // A time is not a US date.
        assert_eq!(purchase("Besteld om 12.30 uur."), None);
    }

    #[test]
    fn relative_dates() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let purchase = |t: &str| extract("", t, today()).purchase_date;
        let delivery = |t: &str| extract("", t, today()).delivery_date;
        // today() is Wednesday 25 November 2026.
        assert_eq!(purchase("Vorige week dinsdag besteld."), d(2026, 11, 17));
        assert_eq!(
            purchase("Ik heb dinsdag vorige week besteld."),
            d(2026, 11, 17)
        );
        assert_eq!(purchase("3 weken geleden besteld."), d(2026, 11, 4));
        assert_eq!(purchase("I ordered it last Tuesday."), d(2026, 11, 24));
        assert_eq!(purchase("I ordered it 10 days ago."), d(2026, 11, 15));
        assert_eq!(purchase("Ordered two weeks ago."), d(2026, 11, 11));
        assert_eq!(delivery("Twee dagen geleden ontvangen."), d(2026, 11, 23));
        assert_eq!(delivery("Afgelopen zaterdag ontvangen."), d(2026, 11, 21));
        // A week without a day names no date.
        assert_eq!(purchase("Vorige week besteld."), None);
        // A day of the month alone: the most recent such day.
        assert_eq!(
            delivery("My order arrived on the 20th but one card is missing."),
            d(2026, 11, 20)
        );
        assert_eq!(purchase("I ordered it on the 28th."), d(2026, 10, 28));
        assert_eq!(
            delivery("Op de 23e ontvangen, de doos was nat."),
            d(2026, 11, 23)
        );
        assert_eq!(
            purchase("Besteld op de 2de, nog niks binnen."),
            d(2026, 11, 2)
        );
        assert_eq!(
            delivery("It arrived on the 20th of November."),
            d(2026, 11, 20)
        );
        // An ordinal that counts something is no day.
        assert_eq!(delivery("It arrived, but on the 2nd card a scratch."), None);
        assert_eq!(delivery("Delivered on the 31st."), d(2026, 10, 31));
        // Parts of a day, and spoken Dutch.
        assert_eq!(delivery("Ik heb het gister ontvangen."), d(2026, 11, 24));
        assert_eq!(
            delivery("Gisteravond bezorgd, doos kapot."),
            d(2026, 11, 24)
        );
        assert_eq!(purchase("Eergister besteld."), d(2026, 11, 23));
        assert_eq!(delivery("Vanochtend ontvangen."), d(2026, 11, 25));
        assert_eq!(delivery("It arrived last night, crushed."), d(2026, 11, 24));
        assert_eq!(delivery("It was delivered this morning."), d(2026, 11, 25));
    }

    #[test]
    fn dates_as_buyers_also_write_them() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        let dates = |t: &str| {
            let f = extract("", t, today());
            (f.purchase_date, f.delivery_date)
        };
        // today() is Wednesday 25 November 2026.
        // Separable verbs: "kwam ... aan", "kreeg ... binnen".
        assert_eq!(
            dates("Afgelopen vrijdag heb ik een funko pop gekocht tijdens een live show, vandaag kwam hij aan en de doos is kapot."),
            (d(2026, 11, 20), d(2026, 11, 25))
        );
        assert_eq!(
            dates("Ik kreeg mijn pakketje gisteren binnen maar de kaart was gebogen."),
            (None, d(2026, 11, 24))
        );
        assert_eq!(
            dates("Het pakket kwam op 21 november aan, de munt zat los."),
            (None, d(2026, 11, 21))
        );
        // Won in an auction, paid: the purchase.
        assert_eq!(
            dates(
                "I won an auction on Nov 15 and the package showed up today with the slab cracked."
            ),
            (d(2026, 11, 15), d(2026, 11, 25))
        );
        assert_eq!(
            dates("Ik heb de sneakers op 10 november gewonnen in een veiling en ze zijn op 19 november geleverd."),
            (d(2026, 11, 10), d(2026, 11, 19))
        );
        assert_eq!(
            dates("Ik heb €45 betaald op 12-11 en heb nog niks ontvangen."),
            (d(2026, 11, 12), None)
        );
        assert_eq!(
            dates("The seller never shipped my item, I paid on November 2nd."),
            (d(2026, 11, 2), None)
        );
        assert_eq!(
            dates("Got my package on 11/21, the box was crushed."),
            (None, d(2026, 11, 21))
        );
        // "Won't" is no "won".
        assert_eq!(
            dates("It won't arrive before 30 november, they say."),
            (None, None)
        );
    }

    #[test]
    fn prices_and_counts_are_no_dates() {
        let f = extract(
            "",
            "I bought a Pokemon card for $12.10 and it arrived damaged.",
            today(),
        );
        assert_eq!(f.purchase_date, None);
        assert_eq!(f.delivery_date, None);
        let f = extract(
            "",
            "Gekocht voor \u{20ac} 12.10, kapot aangekomen.",
            today(),
        );
        assert_eq!(f.purchase_date, None);
        let f = extract("", "I only received 2/3 cards.", today());
        assert_eq!(f.delivery_date, None);
        let f = extract("", "Ik heb maar 2/3 van de kaarten ontvangen.", today());
        assert_eq!(f.delivery_date, None);
        let f = extract("", "Ik heb maar 2 kaarten ontvangen.", today());
        assert_eq!(f.delivery_date, None);
        let f = extract("", "Ik heb bij Jan 3 boosters besteld.", today());
        assert_eq!(f.purchase_date, None);
        let f = extract("", "Ordered on Jan 3, nothing came.", today());
        assert_eq!(f.purchase_date, NaiveDate::from_ymd_opt(2026, 1, 3));
    }

    #[test]
    fn a_delivery_that_was_only_expected_has_no_date() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        for text in [
            "It was supposed to be delivered on November 10 but it has not arrived yet. I ordered it on November 5.",
            "Expected delivery date: November 10. I ordered it on November 5.",
            "It should have arrived on November 10. I ordered it on November 5.",
            "Het pakket zou op 10 november bezorgd worden. Ik heb het op 5 november besteld.",
            "Het had op 10 november geleverd moeten worden. Besteld op 5 november.",
        ] {
            let f = extract("", text, today());
            assert_eq!(f.delivery_date, None, "{text}");
            assert_eq!(f.purchase_date, d(2026, 11, 5), "{text}");
        }
    }

    #[test]
    fn tells_dutch_from_english() {
        assert_eq!(
            language("Hallo, mijn pakket is beschadigd aangekomen. Groeten, Anna"),
            Some(Language::Nl)
        );
        assert_eq!(
            language("Hi, my package arrived damaged and the box was open. Thanks"),
            Some(Language::En)
        );
        assert_eq!(language("dQzGdHsKxwaEyrQfCdcCs8"), None);
    }

    #[test]
    fn short_mails_get_their_own_language() {
        for en in [
            "Slab arrived cracked, photos attached. Order dQzGdHsKxwaEyrQfCdcCs8",
            "Wrong card received. Should be Charizard, got Pikachu.",
            "Still nothing. Where is it?",
            "Thanks",
        ] {
            assert_eq!(language(en), Some(Language::En), "{en}");
        }
        for nl in [
            "Kaart kapot aangekomen, foto's bijgevoegd. dQzGdHsKxwaEyrQfCdcCs8",
            "Verkeerde kaart gekregen. Moest een Charizard zijn.",
            "Bedankt",
        ] {
            assert_eq!(language(nl), Some(Language::Nl), "{nl}");
        }
        // A word both languages have decides nothing on its own.
        assert_eq!(language("Pikachu is dQzGdHsKxwaEyrQfCdcCs8"), None);
    }

    #[test]
    fn other_languages_are_answered_in_english() {
        for other in [
            "Hallo, ich habe eine Karte gekauft und sie ist kaputt angekommen. Mit freundlichen Grüßen, Jonas",
            "Guten Tag, mein Paket ist noch nicht da. Können Sie mir bitte helfen? Danke",
            "Bonjour, j'ai reçu ma commande mais la carte est abîmée. Merci, Claire",
            "Bonjour, mon colis n'est toujours pas arrivé. Cordialement",
        ] {
            assert_eq!(language(other), Some(Language::En), "{other}");
        }
        // Dutch that shares a word or two with German or French stays Dutch.
        for nl in [
            "Hallo, die kaart is kapot aangekomen. Ik heb hem bij de verkoper gekocht.",
            "Mijn bestelling is nog niet binnen, kunnen jullie even kijken? Groeten, Sam",
        ] {
            assert_eq!(language(nl), Some(Language::Nl), "{nl}");
        }
    }

    #[test]
    fn german_and_french_problems() {
        for (text, want) in [
            ("Die Karte ist kaputt angekommen.", IssueType::Damaged),
            ("Die Hülle ist beschädigt.", IssueType::Damaged),
            ("La carte est arrivée cassée.", IssueType::Damaged),
            ("Le coin est abîmé.", IssueType::Damaged),
            ("Im Paket fehlt eine Karte.", IssueType::Missing),
            ("Il manque une carte dans le colis.", IssueType::Missing),
            ("Mein Paket ist noch nicht angekommen.", IssueType::Delayed),
            ("Je n'ai toujours pas reçu mon colis.", IssueType::Delayed),
            ("Mon colis n'est pas arrivé.", IssueType::Delayed),
            (
                "Ich kann mich nicht anmelden, Passwort vergessen.",
                IssueType::Account,
            ),
        ] {
            assert_eq!(issue_type(text), want, "{text}");
        }
        // Not a break: a cassette, a ray.
        assert_eq!(issue_type("A cassette of cards."), IssueType::General);
    }

    #[test]
    fn an_order_of_a_date_is_a_purchase_date() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        for (text, bought, delivered) in [
            (
                "Mijn bestelling van 2 november is nog niet binnen.",
                d(2026, 11, 2),
                None,
            ),
            (
                "Mijn bestelling van zaterdag 31 oktober is op 5 november beschadigd aangekomen.",
                d(2026, 10, 31),
                d(2026, 11, 5),
            ),
            (
                "My order from November 2 arrived damaged.",
                d(2026, 11, 2),
                None,
            ),
            ("The order of 3 Nov never showed up.", d(2026, 11, 3), None),
            // German says it with its own verbs, and its own months.
            (
                "Ich habe sie am 3. Dezember gekauft und am 5. Dezember erhalten.",
                d(2025, 12, 3),
                d(2025, 12, 5),
            ),
            (
                "Gekauft am 14. März, die Ecke ist geknickt.",
                d(2026, 3, 14),
                None,
            ),
            // French too.
            (
                "J'ai acheté la carte le 14 novembre et je l'ai reçue le 20 novembre.",
                d(2026, 11, 14),
                d(2026, 11, 20),
            ),
            (
                "Commandé le 1er août, livré le 3 août.",
                d(2026, 8, 1),
                d(2026, 8, 3),
            ),
            ("Il est arrivé le 2 décembre.", None, d(2025, 12, 2)),
            // A chocolate bar is no month.
            ("Ik kreeg 2 Mars repen in plaats van kaarten.", None, None),
            (
                "Ich habe die Karte am 14.11.2026 gekauft, sie ist am 20.11.2026 angekommen.",
                d(2026, 11, 14),
                d(2026, 11, 20),
            ),
            // Not an order's date: who it came from, or a date further on.
            (
                "Mijn bestelling van @kaartenbaas is op 20 november aangekomen.",
                None,
                d(2026, 11, 20),
            ),
            (
                "My order from the seller, placed a week ago, arrived 20 November.",
                None,
                d(2026, 11, 20),
            ),
        ] {
            let f = extract("", text, today());
            assert_eq!(
                (f.purchase_date, f.delivery_date),
                (bought, delivered),
                "{text}"
            );
        }
    }
}
