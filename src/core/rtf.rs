//! The text of a rich-text (RTF) body, as Outlook keeps it inside
//! `winmail.dat` when a mail carries no text part of its own.
//!
//! Outlook writes two kinds: RTF that wraps the mail's HTML (`\fromhtml1`,
//! [MS-OXRTFEX]: the HTML is in `\*\htmltag` groups and in the text outside
//! `\htmlrtf` runs), and plain rich text. The first gives back its HTML,
//! read as the HTML part of any mail is; the second its text, paragraph by
//! paragraph. Fonts, colours, pictures, fields' instructions and the other
//! destinations that are not text are left out; `\'hh` bytes are read in the
//! document's code page (`\ansicpg`), `\uN` as the character it names.
//!
//! [MS-OXRTFEX]: https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxrtfex

/// Destinations that hold no text of the body.
const SKIPPED: [&str; 32] = [
    "fonttbl",
    "colortbl",
    "stylesheet",
    "info",
    "pict",
    "object",
    "themedata",
    "colorschememapping",
    "datastore",
    "latentstyles",
    "listtable",
    "listoverridetable",
    "rsidtbl",
    "generator",
    "xmlnstbl",
    "header",
    "headerl",
    "headerr",
    "headerf",
    "footer",
    "footerl",
    "footerr",
    "footerf",
    "fldinst",
    "filetbl",
    "revtbl",
    "pgdsctbl",
    "userprops",
    "nonshppict",
    "shpinst",
    "mmathPr",
    "mhtmltag",
];

#[derive(Clone)]
struct Group {
    skip: bool,
    /// Characters a reader without Unicode takes after `\uN`.
    uc: usize,
    /// Inside `\*\htmltag`: HTML of the wrapped mail.
    html_tag: bool,
    /// `\htmlrtf` on: RTF of its own, not part of the wrapped HTML.
    htmlrtf: bool,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            skip: false,
            uc: 1,
            html_tag: false,
            htmlrtf: false,
        }
    }
}

struct Reader {
    out: String,
    /// Bytes waiting to be read in the code page.
    bytes: Vec<u8>,
    encoding: &'static encoding_rs::Encoding,
    from_html: bool,
}

impl Reader {
    fn flush(&mut self) {
        if !self.bytes.is_empty() {
            let (text, _, _) = self.encoding.decode(&self.bytes);
            self.out.push_str(&text);
            self.bytes.clear();
        }
    }

    fn push_char(&mut self, c: char) {
        self.flush();
        self.out.push(c);
    }

    fn visible(&self, g: &Group) -> bool {
        !g.skip && (!self.from_html || g.html_tag || !g.htmlrtf)
    }
}

/// The encoding of a Windows code page (RTF's `\ansicpg`, TNEF's OEM code
/// page); Windows-1252 for one it does not know.
pub(crate) fn encoding_for(code_page: u32) -> &'static encoding_rs::Encoding {
    match code_page {
        65001 => encoding_rs::UTF_8,
        932 => encoding_rs::SHIFT_JIS,
        936 => encoding_rs::GBK,
        949 => encoding_rs::EUC_KR,
        950 => encoding_rs::BIG5,
        874 | 1250..=1258 => {
            encoding_rs::Encoding::for_label(format!("windows-{code_page}").as_bytes())
                .unwrap_or(encoding_rs::WINDOWS_1252)
        }
        _ => encoding_rs::WINDOWS_1252,
    }
}

/// The body's text: for wrapped HTML, the HTML read as text.
pub fn to_text(rtf: &[u8]) -> String {
    let (out, from_html) = read(rtf);
    let text = if from_html {
        super::html::to_text(&out)
    } else {
        out
    };
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim_end) {
        // No more than one empty line in a row.
        if line.is_empty() && lines.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    lines.join("\n").trim().to_string()
}

/// The text (or, with `\fromhtml1`, the HTML) the RTF holds, and whether
/// it is HTML.
fn read(rtf: &[u8]) -> (String, bool) {
    let mut r = Reader {
        out: String::new(),
        bytes: Vec::new(),
        encoding: encoding_rs::WINDOWS_1252,
        from_html: false,
    };
    let mut stack = vec![Group::default()];
    // After `\*`: the group is a destination to skip unless it is known.
    let mut starred = false;
    let mut skip_chars = 0usize;
    let mut i = 0;
    while i < rtf.len() {
        let c = rtf[i];
        i += 1;
        match c {
            b'{' => {
                r.flush();
                let top = stack.last().cloned().unwrap_or_default();
                // Deeply nested groups from a broken stream stay in the
                // one above.
                if stack.len() < 1000 {
                    stack.push(top);
                }
                starred = false;
                skip_chars = 0;
            }
            b'}' => {
                r.flush();
                if stack.len() > 1 {
                    stack.pop();
                }
                starred = false;
                skip_chars = 0;
            }
            b'\r' | b'\n' => {}
            b'\\' => {
                let Some(&next) = rtf.get(i) else { break };
                if next.is_ascii_alphabetic() {
                    let start = i;
                    while rtf.get(i).is_some_and(u8::is_ascii_alphabetic) {
                        i += 1;
                    }
                    let word = std::str::from_utf8(&rtf[start..i]).unwrap_or("");
                    let num_start = i;
                    if rtf.get(i) == Some(&b'-') {
                        i += 1;
                    }
                    while rtf.get(i).is_some_and(u8::is_ascii_digit) && i - num_start < 10 {
                        i += 1;
                    }
                    let param = std::str::from_utf8(&rtf[num_start..i])
                        .ok()
                        .and_then(|p| p.parse::<i32>().ok());
                    if rtf.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if word == "bin" {
                        // Binary data of the given length, never text.
                        i = i.saturating_add(param.unwrap_or(0).max(0) as usize);
                        continue;
                    }
                    let was_starred = std::mem::take(&mut starred);
                    let Some(g) = stack.last_mut() else { break };
                    if word == "u" {
                        if let Some(n) = param {
                            let visible = r.visible(g);
                            let uc = g.uc;
                            let code = if n < 0 { n + 65536 } else { n } as u32;
                            if visible {
                                r.push_char(char::from_u32(code).unwrap_or('\u{FFFD}'));
                            }
                            skip_chars = uc;
                        }
                        continue;
                    }
                    skip_chars = 0;
                    match word {
                        "htmltag" if r.from_html => {
                            g.html_tag = true;
                            g.skip = false;
                        }
                        _ if was_starred || SKIPPED.contains(&word) => g.skip = true,
                        "fromhtml" => r.from_html = param != Some(0),
                        "ansicpg" => {
                            r.flush();
                            r.encoding = encoding_for(
                                param.and_then(|p| u32::try_from(p).ok()).unwrap_or(1252),
                            );
                        }
                        "uc" => g.uc = param.unwrap_or(1).clamp(0, 10) as usize,
                        "htmlrtf" => g.htmlrtf = param != Some(0),
                        _ => {
                            let visible = r.visible(g);
                            let c = match word {
                                "par" | "line" | "sect" | "page" | "row" => Some('\n'),
                                "tab" | "cell" => Some('\t'),
                                "emdash" => Some('—'),
                                "endash" => Some('–'),
                                "bullet" => Some('•'),
                                "lquote" => Some('‘'),
                                "rquote" => Some('’'),
                                "ldblquote" => Some('“'),
                                "rdblquote" => Some('”'),
                                _ => None,
                            };
                            if let (Some(c), true) = (c, visible) {
                                // In wrapped HTML a line break is white space.
                                r.push_char(if r.from_html && c == '\n' { ' ' } else { c });
                            }
                        }
                    }
                } else {
                    i += 1;
                    let Some(g) = stack.last() else { break };
                    let visible = r.visible(g);
                    match next {
                        b'\'' => {
                            let hex = rtf.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                            i = (i + 2).min(rtf.len());
                            if let Some(b) = byte {
                                if skip_chars > 0 {
                                    skip_chars -= 1;
                                } else if visible {
                                    r.bytes.push(b);
                                }
                            }
                        }
                        b'*' => starred = true,
                        b'\\' | b'{' | b'}' if visible => r.bytes.push(next),
                        b'~' if visible => r.push_char('\u{A0}'),
                        b'_' if visible => r.push_char('-'),
                        b'\r' | b'\n' if visible => r.push_char('\n'),
                        _ => {}
                    }
                }
            }
            _ => {
                if skip_chars > 0 {
                    skip_chars -= 1;
                } else if stack.last().is_some_and(|g| r.visible(g)) {
                    r.bytes.push(c);
                }
            }
        }
    }
    r.flush();
    (r.out, r.from_html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rich_text_gives_its_paragraphs() {
        let rtf = br#"{\rtf1\ansi\ansicpg1252\deff0\nouicompat\deflang1043{\fonttbl{\f0\fswiss\fcharset0 Calibri;}}
{\*\generator Riched20 16.0.4027}\viewkind4\uc1
\pard\sa200\sl276\slmult1\f0\fs22\lang19 Goedemiddag,\par
\par
De munt is kapot (gebroken capsule) \endash  zie foto\rquote s. Caf\'e9 \u8364?5\par
Bestelnummer: c9QeWJKY40uvSwMFLZDe1f\par
{\field{\*\fldinst{HYPERLINK "https://example.test/"}}{\fldrslt{voorbeeld}}}\par
{\pict\pngblip 89504e47}Groet,\line Hans\par
}"#;
        assert_eq!(
            to_text(rtf),
            "Goedemiddag,\n\nDe munt is kapot (gebroken capsule) – zie foto’s. Café €5\n\
             Bestelnummer: c9QeWJKY40uvSwMFLZDe1f\nvoorbeeld\nGroet,\nHans"
        );
    }

    #[test]
    fn wrapped_html_is_read_as_html() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\fromhtml1 \fbidis \deff0{\fonttbl
{\f0\fswiss\fcharset0 Arial;}}
{\colortbl\red0\green0\blue0;}
\uc1\pard\plain\deftab360 \f0\fs24
{\*\htmltag19 <html>}{\*\htmltag34 <head>}{\*\htmltag241 <style>p \{margin:0\}</style>}{\*\htmltag41 </head>}
{\*\htmltag50 <body lang=NL>}\htmlrtf {\htmlrtf0
{\*\htmltag64 <p class=MsoNormal>}\htmlrtf {\htmlrtf0 Beste support, mijn kaart is beschadigd aangekomen.{\*\htmltag116 <o:p>}{\*\htmltag84 &nbsp;}\htmlrtf \'a0\htmlrtf0 {\*\htmltag124 </o:p>}\htmlrtf }\htmlrtf0 \htmlrtf \par
\htmlrtf0
{\*\htmltag72 </p>}
{\*\htmltag64 <p class=MsoNormal>}\htmlrtf {\htmlrtf0 Bestelling dQzGdHsKxwaEyrQfCdcCs8, geleverd op 20-11-2026. Pok\'e9mon.\htmlrtf }\htmlrtf0 \htmlrtf \par
\htmlrtf0
{\*\htmltag72 </p>}
{\*\htmltag58 </body>}{\*\htmltag27 </html>}}";
        assert_eq!(
            to_text(rtf),
            "Beste support, mijn kaart is beschadigd aangekomen.\n\n\
             Bestelling dQzGdHsKxwaEyrQfCdcCs8, geleverd op 20-11-2026. Pokémon."
        );
    }

    #[test]
    fn broken_rtf_gives_what_it_can() {
        for rtf in [
            &b"{\\rtf1 abc\\"[..],
            b"{\\rtf1 \\'4",
            b"}}}{{{\\u-",
            b"{\\rtf1 \\bin99999999999 x}",
            b"\\uc99999999999 \\u65 x",
            &[b'{'; 5000],
        ] {
            let _ = to_text(rtf);
        }
        assert_eq!(to_text(b"{\\rtf1 abc\\"), "abc");
    }
}
