//! The files inside Outlook's `winmail.dat` (`application/ms-tnef`, the
//! Transport Neutral Encapsulation Format of [MS-OXTNEF]).
//!
//! Outlook sends a mail written in its rich-text format as a plain text part
//! and one `winmail.dat` that holds everything else, the buyer's photos
//! included. No mail client outside Outlook opens it, so an agent would see
//! an opaque file and the ack would ask for photos already sent. `files`
//! reads the stream's attachment attributes and returns each file with its
//! name and type. It also reads the message's own body (plain text, HTML or
//! compressed RTF), which the caller takes only when Outlook sent no text
//! part beside `winmail.dat`: otherwise that part says the same.
//!
//! The reader is lenient where Outlook's writers vary (attributes it does
//! not know are skipped, as are an attachment's date and rendering details)
//! and strict where the bytes would be wrong: a bad signature, a length past
//! the end or a checksum that does not add up is an error, and the caller
//! keeps `winmail.dat` as it came.
//!
//! [MS-OXTNEF]: https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxtnef

use std::fmt;

const SIGNATURE: u32 = 0x223E_9F78;
const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;

// Attribute ids (type in the high word, id in the low word).
const ATT_OEM_CODEPAGE: u32 = 0x0006_9007;
const ATT_BODY: u32 = 0x0002_800C;
const ATT_MSG_PROPS: u32 = 0x0006_9003;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;

// MAPI property ids and types in attAttachment.
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;
const PR_BODY: u16 = 0x1000;
const PR_RTF_COMPRESSED: u16 = 0x1009;
const PR_BODY_HTML: u16 = 0x1013;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const PT_OBJECT: u16 = 0x000D;
const MV_FLAG: u16 = 0x1000;

/// One file found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: Option<String>,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// What the stream holds: its files, how many of its attachments are not
/// files (an embedded Outlook item or an OLE object), which only
/// `winmail.dat` itself still carries, and the message's own body, read
/// (`body`) only for a mail that has no text part beside `winmail.dat`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub files: Vec<File>,
    pub skipped: usize,
    bodies: Bodies,
}

impl Contents {
    /// The message's body: plain text first (Outlook writes it beside the
    /// others), then HTML, then compressed RTF.
    pub fn body(&self) -> Body {
        self.bodies.best()
    }
}

/// The message's body as the stream has it.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Body {
    #[default]
    None,
    Text(String),
    /// A body there is, in a form that could not be read (compressed RTF
    /// that does not decompress).
    Unreadable,
}

/// A property's value: a string, or bytes.
enum Value<'a> {
    Text(String),
    Bytes(&'a [u8]),
}

/// The body properties met so far.
#[derive(Debug, Default, PartialEq, Eq)]
struct Bodies {
    text: Option<String>,
    html: Option<String>,
    rtf: Option<Vec<u8>>,
}

impl Bodies {
    fn best(&self) -> Body {
        if let Some(t) = self.text.as_ref().filter(|t| !t.trim().is_empty()) {
            return Body::Text(t.clone());
        }
        if let Some(h) = &self.html {
            let t = super::html::to_text(h);
            if !t.trim().is_empty() {
                return Body::Text(t);
            }
        }
        match self.rtf.as_deref().map(decompress_rtf) {
            Some(Some(rtf)) => {
                let t = super::rtf::to_text(&rtf);
                if t.trim().is_empty() {
                    Body::None
                } else {
                    Body::Text(t)
                }
            }
            Some(None) => Body::Unreadable,
            None => Body::None,
        }
    }
}

/// PR_RTF_COMPRESSED's bytes (MS-OXRTFCP) as RTF.
pub fn decompress_rtf(data: &[u8]) -> Option<Vec<u8>> {
    // The crate indexes the header and an uncompressed body by the sizes
    // it declares, and reserves the size it is told: check them first.
    // LZFu makes at most 17 bytes of 2, 8 such in 17 bytes.
    let header = data.get(..16)?;
    let raw_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let most = match &header[8..12] {
        b"MELA" => data.len() - 16,
        _ => data.len() * 8 + 4096,
    };
    if raw_size > most {
        return None;
    }
    let rtf = compressed_rtf::decompress_rtf(data).ok()?;
    // One char per byte (it reads each byte as U+0000 to U+00FF).
    Some(rtf.chars().map(|c| c as u32 as u8).collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotTnef,
    Truncated { at: usize },
    Checksum { attribute: u32 },
    BadLevel { at: usize, level: u8 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotTnef => write!(f, "no TNEF signature"),
            Error::Truncated { at } => write!(f, "cut short at byte {at}"),
            Error::Checksum { attribute } => {
                write!(f, "checksum of attribute {attribute:#010x} does not add up")
            }
            Error::BadLevel { at, level } => write!(f, "attribute level {level} at byte {at}"),
        }
    }
}

impl std::error::Error for Error {}

/// Whether a part is a TNEF stream by its type or Outlook's file name.
pub fn is_tnef(content_type: &str, filename: Option<&str>) -> bool {
    let ct = content_type.trim();
    ct.eq_ignore_ascii_case("application/ms-tnef")
        || ct.eq_ignore_ascii_case("application/vnd.ms-tnef")
        || filename.is_some_and(|f| f.trim().eq_ignore_ascii_case("winmail.dat"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(Error::Truncated { at: self.pos })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

/// An attachment being read: attAttachRendData starts one.
#[derive(Default)]
struct Pending {
    /// An OLE object (a picture pasted into rich text), not a file.
    ole: bool,
    title: Option<String>,
    data: Option<Vec<u8>>,
    long_name: Option<String>,
    mime_tag: Option<String>,
}

impl Pending {
    fn finish(self, out: &mut Contents) {
        let Some(data) = self.data.filter(|_| !self.ole) else {
            out.skipped += 1;
            return;
        };
        let name = self.long_name.or(self.title).filter(|n| !n.is_empty());
        let content_type = self
            .mime_tag
            .filter(|t| valid_type(t))
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_else(|| guess_type(name.as_deref(), &data).to_string());
        out.files.push(File {
            name,
            content_type,
            data,
        });
    }
}

/// Reads the files out of a TNEF stream.
pub fn files(bytes: &[u8]) -> Result<Contents, Error> {
    let mut r = Reader { bytes, pos: 0 };
    if r.u32().ok() != Some(SIGNATURE) {
        return Err(Error::NotTnef);
    }
    r.u16()?; // legacy key
    let mut code_page = 1252;
    let mut out = Contents::default();
    let mut pending: Option<Pending> = None;
    while !r.at_end() {
        let at = r.pos;
        let level = r.take(1)?[0];
        let id = r.u32()?;
        let len = r.u32()? as usize;
        let data = r.take(len)?;
        let checksum = r.u16()?;
        let sum = data
            .iter()
            .fold(0u16, |sum, &b| sum.wrapping_add(u16::from(b)));
        if sum != checksum {
            return Err(Error::Checksum { attribute: id });
        }
        match level {
            LEVEL_MESSAGE => {
                if id == ATT_OEM_CODEPAGE && data.len() >= 4 {
                    code_page = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                } else if id == ATT_BODY {
                    out.bodies.text = Some(oem_string(data, code_page));
                } else if id == ATT_MSG_PROPS {
                    let _ = read_props(data, code_page, |id, value| match (id, value) {
                        (PR_BODY, Value::Text(t)) => out.bodies.text = Some(t),
                        (PR_BODY_HTML, Value::Text(t)) => out.bodies.html = Some(t),
                        (PR_BODY_HTML, Value::Bytes(b)) => {
                            out.bodies.html = Some(match std::str::from_utf8(b) {
                                Ok(t) => t.to_string(),
                                Err(_) => oem_string(b, code_page),
                            })
                        }
                        (PR_RTF_COMPRESSED, Value::Bytes(b)) => out.bodies.rtf = Some(b.to_vec()),
                        _ => {}
                    });
                }
            }
            LEVEL_ATTACHMENT => match id {
                ATT_ATTACH_REND_DATA => {
                    let next = Pending {
                        ole: data.get(..2) == Some(&[2, 0]),
                        ..Pending::default()
                    };
                    if let Some(done) = pending.replace(next) {
                        done.finish(&mut out);
                    }
                }
                ATT_ATTACH_TITLE => {
                    pending.get_or_insert_default().title = Some(oem_string(data, code_page));
                }
                ATT_ATTACH_DATA => {
                    pending.get_or_insert_default().data = Some(data.to_vec());
                }
                ATT_ATTACHMENT => {
                    let p = pending.get_or_insert_default();
                    // Properties that do not parse leave the title and a
                    // guessed type: the file itself is in attAttachData.
                    let _ = read_props(data, code_page, |id, value| match (id, value) {
                        (PR_ATTACH_LONG_FILENAME, Value::Text(t)) => p.long_name = Some(t),
                        (PR_ATTACH_MIME_TAG, Value::Text(t)) => p.mime_tag = Some(t),
                        _ => {}
                    });
                }
                _ => {}
            },
            level => return Err(Error::BadLevel { at, level }),
        }
    }
    if let Some(done) = pending {
        done.finish(&mut out);
    }
    Ok(out)
}

/// A string in the stream's OEM code page, up to its NUL.
fn oem_string(data: &[u8], code_page: u32) -> String {
    let data = data.split(|&b| b == 0).next().unwrap_or_default();
    super::rtf::encoding_for(code_page)
        .decode_without_bom_handling(data)
        .0
        .trim()
        .to_string()
}

fn utf16_string(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units).trim().to_string()
}

/// Bytes a value of a fixed-size property type takes, padded to four.
fn fixed_size(ptype: u16) -> Option<usize> {
    Some(match ptype {
        0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => 4,
        0x0005..=0x0007 | 0x0014 | 0x0040 => 8,
        0x0048 => 16,
        _ => return None,
    })
}

/// Walks a MAPI property list (MS-OXTNEF 2.1.3.4), calling `found` with
/// each single-valued string or binary property's id and value. Stops at
/// the first type it cannot size.
fn read_props<'a>(
    data: &'a [u8],
    code_page: u32,
    mut found: impl FnMut(u16, Value<'a>),
) -> Result<(), Error> {
    let mut r = Reader {
        bytes: data,
        pos: 0,
    };
    let count = r.u32()?;
    for _ in 0..count {
        let ptype = r.u16()?;
        let id = r.u16()?;
        if id >= 0x8000 {
            // A named property: its GUID, then a number or a name.
            r.take(16)?;
            let kind = r.u32()?;
            if kind == 0 {
                r.u32()?;
            } else {
                let len = r.u32()? as usize;
                r.take(len.next_multiple_of(4))?;
            }
        }
        let base = ptype & !MV_FLAG;
        let variable = matches!(base, PT_STRING8 | PT_UNICODE | PT_BINARY | PT_OBJECT);
        let values = if ptype & MV_FLAG != 0 || variable {
            r.u32()?
        } else {
            1
        };
        for _ in 0..values {
            if variable {
                let len = r.u32()? as usize;
                let value = r
                    .take(len.next_multiple_of(4))?
                    .get(..len)
                    .unwrap_or_default();
                if values == 1 && ptype & MV_FLAG == 0 {
                    match base {
                        PT_STRING8 => found(id, Value::Text(oem_string(value, code_page))),
                        PT_UNICODE => found(id, Value::Text(utf16_string(value))),
                        PT_BINARY => found(id, Value::Bytes(value)),
                        _ => {}
                    }
                }
            } else {
                let size = fixed_size(base).ok_or(Error::Truncated { at: r.pos })?;
                r.take(size)?;
            }
        }
    }
    Ok(())
}

/// `type/subtype` in printable ASCII.
fn valid_type(t: &str) -> bool {
    let t = t.trim();
    t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && t.bytes()
                .all(|c| c.is_ascii_graphic() && !b"\"\\;,".contains(&c))
    })
}

/// A file's type from its extension, or else from its first bytes.
fn guess_type(name: Option<&str>, data: &[u8]) -> &'static str {
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    let by_name = match ext.as_deref() {
        Some("jpg" | "jpeg" | "jpe") => Some("image/jpeg"),
        Some("png") => Some("image/png"),
        Some("gif") => Some("image/gif"),
        Some("webp") => Some("image/webp"),
        Some("heic") => Some("image/heic"),
        Some("heif") => Some("image/heif"),
        Some("bmp") => Some("image/bmp"),
        Some("tif" | "tiff") => Some("image/tiff"),
        Some("pdf") => Some("application/pdf"),
        Some("txt") => Some("text/plain"),
        Some("mp4") => Some("video/mp4"),
        Some("mov") => Some("video/quicktime"),
        Some("eml") => Some("message/rfc822"),
        Some("doc") => Some("application/msword"),
        Some("docx") => {
            Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        }
        Some("xlsx") => Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        _ => None,
    };
    by_name.unwrap_or(match data {
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'%', b'P', b'D', b'F', ..] => "application/pdf",
        _ => "application/octet-stream",
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes TNEF streams as Outlook does, for tests.
    pub(crate) struct Writer(pub Vec<u8>);

    impl Writer {
        pub(crate) fn new() -> Self {
            let mut w = Writer(Vec::new());
            w.0.extend_from_slice(&SIGNATURE.to_le_bytes());
            w.0.extend_from_slice(&0x0123u16.to_le_bytes());
            w.attr(LEVEL_MESSAGE, 0x0008_9006, &[0, 0, 1, 0]); // attTnefVersion
            let mut cp = 1252u32.to_le_bytes().to_vec();
            cp.extend_from_slice(&[0; 4]);
            w.attr(LEVEL_MESSAGE, ATT_OEM_CODEPAGE, &cp);
            w.attr(LEVEL_MESSAGE, 0x0007_8008, b"IPM.Microsoft Mail.Note\0"); // attMessageClass
            w.attr(LEVEL_MESSAGE, ATT_BODY, b"\0"); // attBody, empty
            w
        }

        pub(crate) fn attr(&mut self, level: u8, id: u32, data: &[u8]) -> &mut Self {
            self.0.push(level);
            self.0.extend_from_slice(&id.to_le_bytes());
            self.0.extend_from_slice(&(data.len() as u32).to_le_bytes());
            self.0.extend_from_slice(data);
            let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
            self.0.extend_from_slice(&sum.to_le_bytes());
            self
        }

        /// One attachment: short title, file data, and the MAPI properties
        /// with the long name (UTF-16) and, if given, the MIME tag.
        pub(crate) fn file(
            &mut self,
            title: &str,
            long_name: &str,
            mime: Option<&str>,
            data: &[u8],
        ) -> &mut Self {
            let mut rend = 1u16.to_le_bytes().to_vec();
            rend.extend_from_slice(&[0xFF; 4]);
            rend.extend_from_slice(&[0; 8]);
            self.attr(LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &rend);
            self.attr(
                LEVEL_ATTACHMENT,
                ATT_ATTACH_TITLE,
                &[title.as_bytes(), b"\0"].concat(),
            );
            self.attr(LEVEL_ATTACHMENT, 0x0003_8012, &[0; 14]); // attAttachCreateDate
            self.attr(LEVEL_ATTACHMENT, ATT_ATTACH_DATA, data);
            let mut props = Vec::new();
            let mut count = 0u32;
            // PR_ATTACH_METHOD, a PT_LONG: 1 (by value)
            props.extend_from_slice(&0x0003u16.to_le_bytes());
            props.extend_from_slice(&0x3705u16.to_le_bytes());
            props.extend_from_slice(&1u32.to_le_bytes());
            count += 1;
            // A named property, with a name, before the ones read.
            props.extend_from_slice(&PT_BINARY.to_le_bytes());
            props.extend_from_slice(&0x8005u16.to_le_bytes());
            props.extend_from_slice(&[7; 16]);
            props.extend_from_slice(&1u32.to_le_bytes());
            let name: Vec<u8> = "x-name\0"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            props.extend_from_slice(&(name.len() as u32).to_le_bytes());
            props.extend_from_slice(&name);
            props.resize(props.len().next_multiple_of(4), 0);
            props.extend_from_slice(&1u32.to_le_bytes());
            props.extend_from_slice(&3u32.to_le_bytes());
            props.extend_from_slice(&[1, 2, 3, 0]);
            count += 1;
            let mut string = |id: u16, ptype: u16, bytes: Vec<u8>| {
                props.extend_from_slice(&ptype.to_le_bytes());
                props.extend_from_slice(&id.to_le_bytes());
                props.extend_from_slice(&1u32.to_le_bytes());
                props.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                props.extend_from_slice(&bytes);
                props.resize(props.len().next_multiple_of(4), 0);
                count += 1;
            };
            let utf16 = |s: &str| -> Vec<u8> {
                s.encode_utf16()
                    .chain([0])
                    .flat_map(u16::to_le_bytes)
                    .collect()
            };
            string(PR_ATTACH_LONG_FILENAME, PT_UNICODE, utf16(long_name));
            if let Some(m) = mime {
                string(
                    PR_ATTACH_MIME_TAG,
                    PT_STRING8,
                    [m.as_bytes(), b"\0"].concat(),
                );
            }
            let mut list = count.to_le_bytes().to_vec();
            list.extend_from_slice(&props);
            self.attr(LEVEL_ATTACHMENT, ATT_ATTACHMENT, &list)
        }
    }

    /// attMsgProps with one single-valued variable-size property.
    fn msg_prop(ptype: u16, id: u16, value: &[u8]) -> Vec<u8> {
        let mut list = 2u32.to_le_bytes().to_vec();
        // PR_MESSAGE_FLAGS first, a PT_LONG.
        list.extend_from_slice(&0x0003u16.to_le_bytes());
        list.extend_from_slice(&0x0E07u16.to_le_bytes());
        list.extend_from_slice(&0x11u32.to_le_bytes());
        list.extend_from_slice(&ptype.to_le_bytes());
        list.extend_from_slice(&id.to_le_bytes());
        list.extend_from_slice(&1u32.to_le_bytes());
        list.extend_from_slice(&(value.len() as u32).to_le_bytes());
        list.extend_from_slice(value);
        list.resize(list.len().next_multiple_of(4), 0);
        list
    }

    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0 a photo of a cracked slab";

    #[test]
    fn the_body_is_read_from_plain_text_html_or_compressed_rtf() {
        let rtf = "{\\rtf1\\ansi\\ansicpg1252 Mijn kaart is kapot.\\par Bestelling dQzGdHsKxwaEyrQfCdcCs8, caf\\'e9\\par}";
        let compressed = compressed_rtf::compress_rtf(rtf).unwrap();
        let cases = [
            (
                msg_prop(PT_STRING8, PR_BODY, b"Plain text.\r\n\0"),
                "Plain text.",
            ),
            (
                msg_prop(PT_BINARY, PR_BODY_HTML, b"<p>Some <b>HTML</b></p>"),
                "Some HTML",
            ),
            (
                msg_prop(PT_BINARY, PR_RTF_COMPRESSED, &compressed),
                "Mijn kaart is kapot.\nBestelling dQzGdHsKxwaEyrQfCdcCs8, café",
            ),
        ];
        for (props, want) in cases {
            let mut w = Writer::new();
            w.attr(LEVEL_MESSAGE, ATT_MSG_PROPS, &props);
            let got = files(&w.0).unwrap();
            assert_eq!(got.body(), Body::Text(want.to_string()));
        }
        // Compressed RTF whose check sum is wrong: a body there is, unread.
        let mut bad = compressed.clone();
        bad[12] ^= 1;
        let mut w = Writer::new();
        w.attr(
            LEVEL_MESSAGE,
            ATT_MSG_PROPS,
            &msg_prop(PT_BINARY, PR_RTF_COMPRESSED, &bad),
        );
        assert_eq!(files(&w.0).unwrap().body(), Body::Unreadable);
        // Sizes that point past the end are not read.
        for header in [
            &b"\x10\0\0\0\xff\xff\0\0MELA\0\0\0\0"[..],
            b"\x10\0\0\0\xff\xff\xff\xffLZFu\0\0\0\0",
            b"LZFu",
        ] {
            assert_eq!(decompress_rtf(header), None);
        }
    }

    #[test]
    fn reads_each_file_with_its_long_name_and_type() {
        let mut w = Writer::new();
        w.file("IMG_20~1.JPG", "IMG_20261118_142233.jpg", None, JPEG)
            .file(
                "ORDER~1.PDF",
                "Order confirmation é.pdf",
                Some("application/pdf"),
                b"%PDF-1.4",
            );
        let got = files(&w.0).unwrap();
        assert_eq!(got.skipped, 0);
        assert_eq!(
            got.files,
            vec![
                File {
                    name: Some("IMG_20261118_142233.jpg".into()),
                    content_type: "image/jpeg".into(),
                    data: JPEG.to_vec(),
                },
                File {
                    name: Some("Order confirmation é.pdf".into()),
                    content_type: "application/pdf".into(),
                    data: b"%PDF-1.4".to_vec(),
                },
            ]
        );
    }

    #[test]
    fn without_properties_the_title_and_the_bytes_say_what_it_is() {
        let mut w = Writer::new();
        let mut rend = 1u16.to_le_bytes().to_vec();
        rend.extend_from_slice(&[0; 12]);
        let mut ole = rend.clone();
        ole[0] = 2;
        w.attr(LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &rend)
            .attr(LEVEL_ATTACHMENT, ATT_ATTACH_TITLE, b"Kapotte munt \xe9\0")
            .attr(LEVEL_ATTACHMENT, ATT_ATTACH_DATA, JPEG)
            // An OLE object: its data is an OLE storage, not a file, so
            // only winmail.dat has it.
            .attr(LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &ole)
            .attr(
                LEVEL_ATTACHMENT,
                ATT_ATTACH_TITLE,
                b"Picture (Device Independent Bitmap)\0",
            )
            .attr(
                LEVEL_ATTACHMENT,
                ATT_ATTACH_DATA,
                b"\xD0\xCF\x11\xE0 storage",
            )
            // An attached Outlook item: no attAttachData at all.
            .attr(LEVEL_ATTACHMENT, ATT_ATTACH_REND_DATA, &rend)
            .attr(LEVEL_ATTACHMENT, ATT_ATTACH_TITLE, b"Re: bestelling\0");
        let got = files(&w.0).unwrap();
        assert_eq!(got.skipped, 2);
        assert_eq!(got.files.len(), 1);
        assert_eq!(got.files[0].name.as_deref(), Some("Kapotte munt é"));
        assert_eq!(got.files[0].content_type, "image/jpeg");
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        let mut w = Writer::new();
        w.file(
            "IMG_20~1.JPG",
            "IMG_20261118_142233.jpg",
            Some("image/jpeg"),
            JPEG,
        );
        let good = w.0.clone();
        assert_eq!(files(b"not tnef at all"), Err(Error::NotTnef));
        assert_eq!(files(&[]), Err(Error::NotTnef));
        // Every cut and every flipped byte gives a result or an error.
        for cut in 0..good.len() {
            let _ = files(&good[..cut]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5A;
            let _ = files(&bad);
        }
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(files(&bad), Err(Error::Checksum { .. })));
        assert!(matches!(
            files(&good[..good.len() - 3]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn tnef_by_type_or_outlook_name() {
        assert!(is_tnef("application/ms-tnef", None));
        assert!(is_tnef("application/vnd.ms-tnef", Some("x")));
        assert!(is_tnef("application/octet-stream", Some("WINMAIL.DAT")));
        assert!(!is_tnef("application/octet-stream", Some("winmail.txt")));
    }
}
