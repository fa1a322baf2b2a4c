//! Large base64 parts (photos, PDFs, videos) decoded line by line with the
//! SIMD decoder of `base64-simd` (the `base64` crate for what it refuses)
//! instead of mail-parser's byte-at-a-time decoder, which took half of
//! ingest's CPU time on mail with photos.
//!
//! `mask` finds the body of each large base64 part whose headers say it is
//! binary, decodes it, and returns a copy of the raw mail with that body
//! replaced by a short base64 placeholder naming the part. mail-parser then
//! parses the small copy as it would the original (the headers and the MIME
//! structure are untouched), and `parse` puts the decoded bytes back where a
//! placeholder came out. Anything unusual falls back to mail-parser's own
//! decoding: a body with characters outside the alphabet, padding in the
//! middle, a group cut short, a part inside an attached message, or a
//! placeholder that does not come out exactly once as a whole attachment.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Mail smaller than this is parsed as it is.
const MIN_MAIL: usize = 64 * 1024;
/// Bodies smaller than this are left to mail-parser.
const MIN_PART: usize = 16 * 1024;
/// Base64 text decoded before its bytes are hashed (a multiple of 4).
const CHUNK: usize = 64 * 1024;

/// Decodes like mail-parser does where both succeed: padding optional on
/// each line's last group, leftover bits ignored.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The raw mail with its large base64 bodies replaced by placeholders.
pub struct Masked {
    pub raw: Vec<u8>,
    /// One for each placeholder, in order.
    pub parts: Vec<Part>,
}

pub struct Part {
    /// The bytes its placeholder decodes to.
    pub marker: Vec<u8>,
    /// The part's decoded content (empty when only digested).
    pub data: Vec<u8>,
    /// With `mask_digested`: the sha256 (hex) and size of the content,
    /// which is not kept.
    pub digest: Option<(String, usize)>,
}

/// `None` when the mail has no large base64 part worth taking out.
/// `nonce` goes into the placeholders so the mail's own content cannot
/// name one (a random value, see `parse`).
pub fn mask(raw: &[u8], nonce: &str) -> Option<Masked> {
    mask_with(raw, nonce, false)
}

/// `mask` for a caller that needs only each large part's sha256 and size
/// (the ingest, which decodes attachments from the raw mail when they are
/// asked for): the decoded bytes are hashed a chunk at a time and never
/// held whole, which for a 20 MB video is 15 MB less at once.
pub fn mask_digested(raw: &[u8], nonce: &str) -> Option<Masked> {
    mask_with(raw, nonce, true)
}

fn mask_with(raw: &[u8], nonce: &str, digest: bool) -> Option<Masked> {
    if raw.len() < MIN_MAIL {
        return None;
    }
    let mut out: Option<Masked> = None;
    let mut copied = 0; // raw[..copied] is already in out.raw
    each_body(raw, |blank, next| {
        let mut out_part = if digest {
            Decoded::Digest(Sha256::new(), 0)
        } else {
            Decoded::Bytes(Vec::new())
        };
        let end = decode_body(raw, next, &mut out_part)?;
        let m = out.get_or_insert_with(|| Masked {
            raw: Vec::with_capacity(raw.len() / 8),
            parts: Vec::new(),
        });
        let marker = format!("\0ticketd large part {} {nonce}\0", m.parts.len()).into_bytes();
        m.raw.extend_from_slice(&raw[copied..next]);
        m.raw.extend_from_slice(LENIENT.encode(&marker).as_bytes());
        m.raw.extend_from_slice(line_ending(blank));
        m.parts.push(match out_part {
            Decoded::Bytes(data) => Part {
                marker,
                data,
                digest: None,
            },
            Decoded::Digest(hasher, len) => Part {
                marker,
                data: Vec::new(),
                digest: Some((hex(&hasher.finalize()), len)),
            },
        });
        copied = end;
        Some(end)
    });
    let mut m = out?;
    m.raw.extend_from_slice(&raw[copied..]);
    Some(m)
}

/// The content of the large base64 part of `raw` whose bytes hash to
/// `sha256` (hex), decoded as `mask` decodes it: an attachment read back
/// from its raw mail without parsing the whole mail. `None` when no large
/// part of it does (a small part, one left to mail-parser): parse then.
pub fn find(raw: &[u8], sha256: &str) -> Option<Vec<u8>> {
    if raw.len() < MIN_MAIL {
        return None;
    }
    let mut found = None;
    each_body(raw, |_, next| {
        let mut part = Decoded::Bytes(Vec::new());
        let end = decode_body(raw, next, &mut part)?;
        match part {
            Decoded::Bytes(data) if hex(&Sha256::digest(&data)) == sha256 => {
                found = Some(data);
                // Nothing more to read.
                Some(raw.len())
            }
            _ => Some(end),
        }
    });
    found
}

/// Walks the MIME parts of `raw`. For the body of each part whose headers
/// say binary base64, `take(blank line, body start)` returns where the
/// body ends when it took it, or `None` to read on line by line.
fn each_body(raw: &[u8], mut take: impl FnMut(&[u8], usize) -> Option<usize>) {
    let mut pos = 0;
    let mut in_headers = true;
    let mut headers = PartHeaders::default();
    while pos < raw.len() {
        let (line, next) = line_at(raw, pos);
        if in_headers {
            if is_blank(line) {
                in_headers = false;
                if headers.binary_base64() {
                    if let Some(end) = take(line, next) {
                        pos = end;
                        continue;
                    }
                }
            } else {
                headers.feed(line);
            }
        } else if line.starts_with(b"--") {
            in_headers = true;
            headers = PartHeaders::default();
        }
        pos = next;
    }
}

/// The line starting at `pos` (with its line ending) and where the next
/// one starts.
fn line_at(raw: &[u8], pos: usize) -> (&[u8], usize) {
    let next = match memchr::memchr(b'\n', &raw[pos..]) {
        Some(i) => pos + i + 1,
        None => raw.len(),
    };
    (&raw[pos..next], next)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    trim_eol(line).is_empty()
}

fn line_ending(line: &[u8]) -> &'static [u8] {
    if line.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// The headers of one MIME part that say whether its body can be taken
/// out: folded lines are followed, nothing else is kept.
#[derive(Default)]
struct PartHeaders {
    content_type: Option<String>,
    encoding: Option<String>,
    /// Named winmail.dat (in Content-Type or Content-Disposition), as a
    /// relay that calls it application/octet-stream still writes it.
    winmail: bool,
    current: Option<Which>,
}

#[derive(Clone, Copy)]
enum Which {
    ContentType,
    Encoding,
    Disposition,
}

/// "winmail.dat" in a header line, in any case.
fn names_winmail(line: &[u8]) -> bool {
    line.windows(11)
        .any(|w| w.eq_ignore_ascii_case(b"winmail.dat"))
}

impl PartHeaders {
    fn feed(&mut self, line: &[u8]) {
        let line = trim_eol(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let value = String::from_utf8_lossy(line);
            match self.current {
                Some(Which::ContentType) => self.content_type.get_or_insert_default(),
                Some(Which::Encoding) => self.encoding.get_or_insert_default(),
                Some(Which::Disposition) => {
                    self.winmail |= names_winmail(line);
                    return;
                }
                None => return,
            }
            .push_str(&value);
            self.winmail |= names_winmail(line);
            return;
        }
        self.current = None;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
        if name.eq_ignore_ascii_case(b"content-type") {
            self.current = Some(Which::ContentType);
            self.winmail |= names_winmail(value.as_bytes());
            self.content_type = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
            self.current = Some(Which::Encoding);
            self.encoding = Some(value);
        } else if name.eq_ignore_ascii_case(b"content-disposition") {
            self.current = Some(Which::Disposition);
            self.winmail |= names_winmail(value.as_bytes());
        }
    }

    /// Base64 and of a type mail-parser keeps as bytes: not text (which it
    /// decodes to a string), not multipart or message (which it parses).
    fn binary_base64(&self) -> bool {
        let base64 = self
            .encoding
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case("base64"));
        let binary = self.content_type.as_deref().is_some_and(|ct| {
            let ctype = ct.split(['/', ';']).next().unwrap_or("").trim();
            !ctype.is_empty()
                && !["text", "multipart", "message"]
                    .iter()
                    .any(|t| ctype.eq_ignore_ascii_case(t))
                // Outlook's winmail.dat is opened by `parse`, which needs
                // its bytes (`mask_digested` would keep only a digest).
                && !crate::core::tnef::is_tnef(ct.split(';').next().unwrap_or(""), None)
        });
        base64 && binary && !self.winmail
    }
}

/// Where a large part's decoded bytes go.
enum Decoded {
    Bytes(Vec<u8>),
    /// Hashed as they come, and counted.
    Digest(Sha256, usize),
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Decodes the base64 body starting at `start`, which ends before the
/// first line starting with `--` or at the end of the mail, into `out`.
/// Returns where that line starts, or `None` (leave it to mail-parser) for
/// a small body or one this decoder would read differently.
fn decode_body(raw: &[u8], start: usize, out: &mut Decoded) -> Option<usize> {
    let mut scratch = Vec::new();
    let (decoded, mut digest) = match out {
        Decoded::Bytes(data) => (data, None),
        Decoded::Digest(hasher, len) => (&mut scratch, Some((hasher, len))),
    };
    decoded.resize(CHUNK / 4 * 3, 0);
    // Each line is decoded straight into `decoded` from `filled` on; a
    // line that does not hold whole groups is joined with the next.
    let mut filled = 0;
    let mut room = |decoded: &mut Vec<u8>, filled: &mut usize, text: &[u8]| {
        let need = *filled + text.len() / 4 * 3;
        if need <= decoded.len() {
            return;
        }
        match &mut digest {
            Some((hasher, len)) => {
                hasher.update(&decoded[..*filled]);
                **len += *filled;
                *filled = 0;
                decoded.resize(decoded.len().max(text.len() / 4 * 3), 0);
            }
            None => decoded.resize(need.max(decoded.len() * 2), 0),
        }
    };
    let mut joined: Vec<u8> = Vec::new();
    let mut pos = start;
    // The length of the last line, line ending included: most lines of a
    // body are as long as the one before, which saves looking for their
    // end. The guess holds when the SIMD decoder takes the text before
    // the line ending, which it would not with a line ending (or a "--")
    // inside.
    let mut width = 0;
    // Such lines (whole groups, no padding) are gathered in `run`, from
    // the line at `run_start` on, and decoded together: one call of the
    // SIMD decoder for up to CHUNK bytes of text instead of one per line,
    // each of which ended in the slow scalar path for its last groups.
    // Should the decoder refuse a run, its lines are read again one by
    // one as before, and no run is gathered for the rest of the body.
    let mut run: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut run_start = pos;
    let mut runs = true;
    loop {
        let end = pos >= raw.len() || raw[pos..].starts_with(b"--");
        if !end && runs && joined.is_empty() {
            if let Some(line) = raw.get(pos..pos + width).filter(|l| l.ends_with(b"\n")) {
                let text = trim_eol(line);
                let fits = run.len() + text.len() <= CHUNK;
                if !text.is_empty() && text.len() % 4 == 0 && !text.ends_with(b"=") && fits {
                    if run.is_empty() {
                        run_start = pos;
                    }
                    run.extend_from_slice(text);
                    pos += width;
                    continue;
                }
            }
        }
        if !run.is_empty() {
            room(decoded, &mut filled, &run);
            let n = decode_simd(&run, &mut decoded[filled..]);
            run.clear();
            match n {
                Some(n) => filled += n,
                None => (pos, runs) = (run_start, false),
            }
            continue;
        }
        if end {
            break;
        }
        if joined.is_empty() {
            if let Some(line) = raw.get(pos..pos + width).filter(|l| l.ends_with(b"\n")) {
                let text = trim_eol(line);
                room(decoded, &mut filled, text);
                if let Some(n) = decode_simd(text, &mut decoded[filled..]) {
                    filled += n;
                    pos += width;
                    continue;
                }
            }
        }
        let (line, next) = line_at(raw, pos);
        width = next - pos;
        pos = next;
        let text = trim_eol(line);
        if text.is_empty() {
            continue;
        }
        let groups = if joined.is_empty() && text.len() % 4 == 0 {
            text
        } else {
            joined.extend_from_slice(text);
            &joined[..joined.len() / 4 * 4]
        };
        room(decoded, &mut filled, groups);
        filled += decode_into(groups, &mut decoded[filled..])?;
        if !joined.is_empty() {
            joined.drain(..joined.len() / 4 * 4);
        }
    }
    // mail-parser drops a group cut short at the end; so would we, but
    // such a body is broken and stays with mail-parser.
    if pos - start < MIN_PART || !joined.is_empty() {
        return None;
    }
    match digest {
        Some((hasher, len)) => {
            hasher.update(&decoded[..filled]);
            *len += filled;
        }
        None => {
            decoded.truncate(filled);
            decoded.shrink_to_fit();
        }
    }
    Some(pos)
}

/// Decodes whole, well-formed base64 groups into `out` (long enough);
/// `None` for anything else.
fn decode_simd(text: &[u8], out: &mut [u8]) -> Option<usize> {
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let bytes = base64_simd::STANDARD
        .decode(text, base64_simd::Out::from_slice(out))
        .ok()?;
    Some(bytes.len())
}

/// Decodes whole base64 groups into `out` (long enough) and returns how
/// many bytes they made. Padding is allowed only at the end: mail-parser
/// also reads groups after a padded one, so a padded line is decoded
/// alone. What the SIMD decoder refuses (no padding, stray bits in the
/// last group, junk) is read leniently.
fn decode_into(text: &[u8], out: &mut [u8]) -> Option<usize> {
    decode_simd(text, out).or_else(|| LENIENT.decode_slice_unchecked(text, out).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn wrapped(data: &[u8], width: usize, eol: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        b64.as_bytes()
            .chunks(width)
            .map(|c| format!("{}{eol}", std::str::from_utf8(c).unwrap()))
            .collect()
    }

    fn mail(content_type: &str, body: &str, eol: &str) -> Vec<u8> {
        format!(
            "From: a@example.test{eol}Message-ID: <m@example.test>{eol}MIME-Version: 1.0{eol}\
             Content-Type: multipart/mixed; boundary=\"b1\"{eol}{eol}--b1{eol}\
             Content-Type: text/plain{eol}{eol}hello{eol}--b1{eol}\
             Content-Type: {content_type}{eol}Content-Transfer-Encoding: base64{eol}{eol}\
             {body}--b1--{eol}"
        )
        .into_bytes()
    }

    #[test]
    fn a_photo_is_taken_out_and_decoded() {
        let data = photo(200_000);
        for eol in ["\r\n", "\n"] {
            let raw = mail("image/jpeg; name=\"p.jpg\"", &wrapped(&data, 76, eol), eol);
            let m = mask(&raw, "n").expect("masked");
            assert_eq!(m.parts.len(), 1);
            assert_eq!(m.parts[0].data, data);
            assert!(m.raw.len() < 1000, "{}", m.raw.len());
            assert!(m.raw.ends_with(format!("--b1--{eol}").as_bytes()));
            let d = mask_digested(&raw, "n").expect("masked");
            assert_eq!(d.raw, m.raw);
            assert!(d.parts[0].data.is_empty());
            let sha = crate::core::parse::sha256_hex(&data);
            assert_eq!(d.parts[0].digest, Some((sha, data.len())));
        }
    }

    #[test]
    fn a_run_holding_a_line_ending_is_read_again_line_by_line() {
        // Runs of lines are decoded together, each line taken as wide as
        // the one before. Two short lines that together are that wide (36
        // and 39 characters with LF, 36 and 38 with CRLF, for 76-character
        // lines) put a line ending inside a run: the SIMD decoder refuses
        // it, and the run is read again line by line.
        let data = photo(3 * CHUNK);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        for (eol, short) in [("\n", [36, 39]), ("\r\n", [36, 38])] {
            let mut body = String::new();
            let mut rest = b64.as_str();
            let mut line = 0;
            while !rest.is_empty() {
                let widths: &[usize] = if line == 1500 { &short } else { &[76] };
                for &w in widths {
                    let (l, r) = rest.split_at(w.min(rest.len()));
                    body.push_str(l);
                    body.push_str(eol);
                    rest = r;
                }
                line += 1;
            }
            let raw = mail("image/jpeg", &body, eol);
            assert_eq!(mask(&raw, "n").unwrap().parts[0].data, data, "{eol:?}");
            let d = mask_digested(&raw, "n").unwrap();
            let sha = crate::core::parse::sha256_hex(&data);
            assert_eq!(d.parts[0].digest, Some((sha, data.len())));
        }
    }

    #[test]
    fn odd_line_widths_are_joined() {
        let data = photo(100_000);
        let raw = mail("application/pdf", &wrapped(&data, 75, "\r\n"), "\r\n");
        assert_eq!(mask(&raw, "n").unwrap().parts[0].data, data);
    }

    #[test]
    fn long_bodies_and_lines_padded_one_by_one_decode_as_mail_parser_does() {
        // Several chunks' worth of text, and an encoder that pads every
        // line (each line a base64 text of its own).
        let data = photo(3 * CHUNK);
        let raw = mail("image/jpeg", &wrapped(&data, 76, "\r\n"), "\r\n");
        assert_eq!(mask(&raw, "n").unwrap().parts[0].data, data);
        let padded: String = data
            .chunks(56)
            .map(|c| format!("{}\n", base64::engine::general_purpose::STANDARD.encode(c)))
            .collect();
        assert!(padded.lines().next().unwrap().ends_with('='));
        let raw = mail("image/jpeg", &padded, "\n");
        assert_eq!(mask(&raw, "n").unwrap().parts[0].data, data);
    }

    #[test]
    fn groups_the_fast_decoder_refuses_are_read_as_mail_parser_reads_them() {
        // A last group with stray bits ("QR==" is "A" with bits left over),
        // and lines that each lost their "=" (read as one stream, as
        // mail-parser does).
        let data = photo(100_000);
        let mut body = wrapped(&data[..99_999], 76, "\n");
        body.push_str("QR==\n");
        let raw = mail("image/jpeg", &body, "\n");
        let mut want = data[..99_999].to_vec();
        want.push(b'A');
        assert!(mask(&raw, "n").unwrap().parts[0].data == want);
        // 55 bytes a line: 74 characters without "==", whole groups every
        // fourth line.
        let unpadded: String = photo(55 * 4 * 455)
            .chunks(55)
            .map(|c| {
                let line = base64::engine::general_purpose::STANDARD.encode(c);
                format!("{}\n", line.trim_end_matches('='))
            })
            .collect();
        let raw = mail("image/jpeg", &unpadded, "\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        let theirs = parsed.attachment(0).unwrap().contents();
        let ours = mask(&raw, "n").unwrap();
        assert!(ours.parts[0].data == theirs, "decoded differently");
    }

    #[test]
    fn text_small_and_broken_bodies_stay_with_mail_parser() {
        let data = photo(100_000);
        let body = wrapped(&data, 76, "\n");
        assert!(mask(&mail("text/plain", &body, "\n"), "n").is_none());
        assert!(mask(&mail("message/rfc822", &body, "\n"), "n").is_none());
        let small = wrapped(&photo(1000), 76, "\n");
        let mut raw = mail("image/png", &small, "\n");
        raw.extend(std::iter::repeat_n(b'x', MIN_MAIL));
        assert!(mask(&raw, "n").is_none());
        let junk = body.replacen('A', "*", 1);
        assert!(mask(&mail("image/png", &junk, "\n"), "n").is_none());
        let cut = format!("{body}QUJ\n");
        assert!(mask(&mail("image/png", &cut, "\n"), "n").is_none());
    }
}
