//! HTML mail to readable text, for mail that has no real text part
//! (Outlook's HTML-only mail, "open this in HTML" stubs). Block elements and
//! table cells become line breaks and spaces, so a table row "Bestelnummer |
//! X" stays two words; style, script and head are dropped; entities decoded.

/// Elements whose content is never text for a reader.
const SKIP: &[&str] = &["style", "script", "head", "title", "xml", "o:p"];
/// Elements that start a new line.
const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "hr",
    "pre",
    "section",
    "article",
    "header",
    "footer",
];

pub fn to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut skipping: Option<String> = None;
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        if skipping.is_none() {
            push_text(&mut out, &rest[..lt]);
        }
        let after = &rest[lt + 1..];
        // Comments (Outlook's conditional ones included) vanish whole.
        if let Some(body) = after.strip_prefix("!--") {
            rest = match body.find("-->") {
                Some(end) => &body[end + 3..],
                None => "",
            };
            continue;
        }
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(skip) = &skipping {
            if closing && name == *skip {
                skipping = None;
            }
            continue;
        }
        if !closing && SKIP.contains(&name.as_str()) && !tag.ends_with('/') {
            skipping = Some(name);
            continue;
        }
        if BLOCK.contains(&name.as_str()) {
            out.push('\n');
        } else if name == "td" || name == "th" {
            out.push(' ');
        }
    }
    if skipping.is_none() {
        push_text(&mut out, rest);
    }
    tidy(&out)
}

fn push_text(out: &mut String, raw: &str) {
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&collapse(&rest[..amp]));
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|e| *e <= 10);
        match end.and_then(|e| entity(&after[..e]).map(|c| (e, c))) {
            Some((e, c)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(&collapse(rest));
}

/// Source line breaks and runs of spaces are one space in HTML.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "euro" => '€',
        "eacute" => 'é',
        "euml" => 'ë',
        "iuml" => 'ï',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "egrave" => 'è',
        "agrave" => 'à',
        "ccedil" => 'ç',
        "hellip" => '…',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        _ => {
            let n = name.strip_prefix('#')?;
            let code = match n.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(code)?
        }
    })
}

/// Trims each line, joins runs of spaces and drops runs of blank lines.
fn tidy(s: &str) -> String {
    let joined: Vec<String> = s
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let mut out: Vec<&str> = Vec::new();
    for line in joined.iter().map(String::as_str) {
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_blocks_and_entities() {
        let h = "<html><head><style>p{x}</style></head><body><p class=MsoNormal>Hallo&nbsp;daar<o:p></o:p></p>\
                 <table><tr><td>Bestelnummer</td><td>GKFSufrdZSlB5er8bOfZqf</td></tr>\
                 <tr><td>Gebruikersnaam</td><td>disney</td></tr></table><!--[if mso]>x<![endif]-->\
                 <div>caf&eacute; &amp; &#8364;5</div></body></html>";
        assert_eq!(
            to_text(h),
            "Hallo daar\n\nBestelnummer GKFSufrdZSlB5er8bOfZqf\n\nGebruikersnaam disney\n\ncafé & €5"
        );
    }

    #[test]
    fn broken_html_does_not_panic() {
        for h in [
            "<",
            "<p",
            "&",
            "&#xZZ;",
            "<!--",
            "<style>never closed",
            "a<b>c</b",
        ] {
            let _ = to_text(h);
        }
    }
}
