//! Facts an agent needs, read out of what the buyer wrote: Whatnot order
//! numbers and the language to answer in.

use crate::config::Language;

const ORDER_LEN: usize = 22;

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
                Some(b'/' | b'=' | b'+' | b'@' | b'_' | b'-' | b'%' | b'&' | b'?')
            )
        };
        let dotted_before = before == Some(b'.');
        let dotted_after =
            after == Some(b'.') && bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphanumeric());
        if glued(before) || glued(after) || dotted_before || dotted_after {
            continue;
        }
        let token = &text[start..i];
        let upper = token.bytes().any(|b| b.is_ascii_uppercase());
        let lower = token.bytes().any(|b| b.is_ascii_lowercase());
        if upper && lower && !out.iter().any(|o| o == token) {
            out.push(token.to_string());
        }
    }
    out
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
];
const EN_WORDS: &[&str] = &[
    "the", "a", "an", "i", "you", "my", "not", "is", "and", "of", "on", "with", "for", "have",
    "has", "order", "package", "please", "thanks", "thank", "regards", "hello", "hi", "dear",
    "when", "still", "no", "but", "received", "broken", "damaged", "where", "that", "what", "are",
    "it", "was",
];

/// Dutch or English, by counting common words; `None` when neither shows.
pub fn language(text: &str) -> Option<Language> {
    let (mut nl, mut en) = (0usize, 0usize);
    for word in text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .take(400)
    {
        let w = word.to_lowercase();
        nl += usize::from(NL_WORDS.contains(&w.as_str()));
        en += usize::from(EN_WORDS.contains(&w.as_str()));
    }
    match nl.cmp(&en) {
        _ if nl + en < 2 => None,
        std::cmp::Ordering::Greater => Some(Language::Nl),
        std::cmp::Ordering::Less => Some(Language::En),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_order_numbers_alone() {
        assert_eq!(
            order_numbers("Bestelnummer: dQzGdHsKxwaEyrQfCdcCs8."),
            vec!["dQzGdHsKxwaEyrQfCdcCs8"]
        );
        assert_eq!(
            order_numbers("order dQzGdHsKxwaEyrQfCdcCs8 and dQzGdHsKxwaEyrQfCdcCs8 again"),
            vec!["dQzGdHsKxwaEyrQfCdcCs8"]
        );
    }

    #[test]
    fn ignores_urls_ids_and_tracking() {
        for text in [
            "https://whatnot.test/o/dQzGdHsKxwaEyrQfCdcCs8/x",
            "<dQzGdHsKxwaEyrQfCdcCs8@mail.gmail.com>",
            "?id=dQzGdHsKxwaEyrQfCdcCs8",
            "3SABCD1234567890123456",
            "abcdefghijklmnopqrstuv",
            "dQzGdHsKxwaEyrQfCdcCs8x",
        ] {
            assert!(order_numbers(text).is_empty(), "{text}");
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
}
