//! A batch whose large raw mail cannot be written to its file fails as a
//! whole: no row, ticket, ack or mailbox position of it is committed, and
//! the error names the file. Once the disk takes the file again, the same
//! batch is filed completely, its files holding the raw bytes. Files made
//! durable are let go from the page cache.

mod common;

use std::path::Path;

use ticketd::ack::AckTemplates;
use ticketd::config::Config;
use ticketd::core::parse::raw_name;
use ticketd::ingest::{Incoming, Ingestor, Outcome};
use ticketd::store::{blob_path, MailboxPosition, Store};

/// The config, loaded templates and opened store of a store in `dir`.
fn setup(dir: &Path) -> (Config, AckTemplates, Store) {
    let config = common::store_config(dir);
    let templates = AckTemplates::load(&config.tickets.templates_dir).unwrap();
    let store = Store::open(&config.data_dir).unwrap();
    (config, templates, store)
}

/// The mails as they sit in INBOX, at UIDs 1, 2, ...
fn incoming<'a>(raws: &[&'a [u8]]) -> Vec<Incoming<'a>> {
    raws.iter()
        .enumerate()
        .map(|(n, raw)| Incoming {
            raw,
            position: Some(MailboxPosition {
                mailbox: "INBOX".into(),
                uidvalidity: 7,
                last_uid: n as u32 + 1,
            }),
            too_large: None,
            received: None,
        })
        .collect()
}

/// Buyer mail `i`, with a photo of `photo` bytes when not zero.
fn mail(i: usize, photo: usize) -> Vec<u8> {
    use base64::Engine;
    let mut raw = format!(
        "From: koper{i}@buyer.test\r\nTo: support@example.test\r\nSubject: Pakket {i} beschadigd\r\n\
         Message-ID: <blob-{i}@buyer.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nMijn pakket is kapot aangekomen.\r\n"
    );
    if photo > 0 {
        let bytes: Vec<u8> = (0..photo).map(|n| (n * 7 + i) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        raw.push_str(
            "--b\r\nContent-Type: image/jpeg; name=\"foto.jpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
        );
        for line in b64.as_bytes().chunks(76) {
            raw.push_str(std::str::from_utf8(line).unwrap());
            raw.push_str("\r\n");
        }
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}

/// Rows of `table` (which may end in a WHERE clause).
fn count(store: &Store, table: &str) -> i64 {
    store
        .conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_batch_whose_file_cannot_be_written_is_not_filed_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let (config, templates, mut store) = setup(dir.path());
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    // Three large mails (files of their own, written by the writer
    // threads) around a small one (kept in the database).
    let raws = [
        mail(1, 300_000),
        mail(2, 0),
        mail(3, 200_000),
        mail(4, 400_000),
    ];
    let items = incoming(&raws.each_ref().map(|r| &r[..]));

    // The directory one of the files goes into is taken by a file, which
    // stops root as well as anyone else.
    let blocked = blob_path(&config.data_dir, &raw_name(&raws[2]));
    let parent = blocked.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(parent.parent().unwrap()).unwrap();
    std::fs::write(&parent, b"in the way").unwrap();

    let now = chrono::Utc::now();
    let err = ingestor
        .ingest_batch(&mut store, &items, now)
        .expect_err("the file could not be written");
    assert!(
        err.to_string().contains(&*parent.to_string_lossy()),
        "the error names the file: {err}"
    );
    for table in ["messages", "tickets", "outbox", "attachments"] {
        assert_eq!(count(&store, table), 0, "{table} after the failed batch");
    }
    assert_eq!(store.position("INBOX").unwrap(), None);

    std::fs::remove_file(&parent).unwrap();
    let outcomes = ingestor.ingest_batch(&mut store, &items, now).unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Outcome::Filed {
                new: true,
                ack_queued: true,
                ..
            }
        )),
        "{outcomes:?}"
    );
    assert_eq!(count(&store, "tickets"), 4);
    assert_eq!(count(&store, "outbox"), 4);
    assert_eq!(count(&store, "attachments"), 3);
    assert_eq!(store.position("INBOX").unwrap().unwrap().last_uid, 4);
    for raw in &raws {
        assert!(store.read_blob(&raw_name(raw)).unwrap() == *raw);
    }
    for raw in [&raws[0], &raws[2], &raws[3]] {
        let file = blob_path(&config.data_dir, &raw_name(raw));
        assert_eq!(std::fs::metadata(file).unwrap().len(), raw.len() as u64);
    }
}

/// How many of a file's pages are in the page cache.
fn resident_pages(path: &Path) -> usize {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let page = 4096;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a read-only shared mapping of an open file, only asked
    // which of its pages are resident (mincore touches none of them) and
    // unmapped before `file` closes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(addr, libc::MAP_FAILED);
        assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
        libc::munmap(addr, len);
    }
    vec.iter().filter(|&&v| v & 1 == 1).count()
}

#[test]
fn filed_raw_mails_leave_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: statfs writes into the struct it is given.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::statfs(path.as_ptr(), &mut fs) }, 0);
    if fs.f_type == libc::TMPFS_MAGIC {
        eprintln!(
            "skipped: {} is on tmpfs, whose pages are the files",
            dir.path().display()
        );
        return;
    }
    let (config, templates, mut store) = setup(dir.path());
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    let raws = [mail(5, 600_000), mail(6, 900_000)];
    let items = incoming(&raws.each_ref().map(|r| &r[..]));
    ingestor
        .ingest_batch(&mut store, &items, chrono::Utc::now())
        .unwrap();
    for raw in &raws {
        let file = blob_path(&config.data_dir, &raw_name(raw));
        // Durable, then let go: none of its pages kept in memory.
        assert_eq!(resident_pages(&file), 0, "{}", file.display());
        assert!(store.read_blob(&raw_name(raw)).unwrap() == *raw);
    }
}

#[test]
fn the_same_large_mail_twice_in_one_batch_is_filed_once() {
    // Two copies of one mail (as an IMAP COPY leaves them): each goes to a
    // writer thread, and both write the same blob file.
    let dir = tempfile::tempdir().unwrap();
    let (config, templates, mut store) = setup(dir.path());
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    let raw = mail(7, 1_000_000);
    let items = incoming(&[&raw, &raw]);
    let outcomes = ingestor
        .ingest_batch(&mut store, &items, chrono::Utc::now())
        .unwrap();
    assert!(
        matches!(outcomes[0], Outcome::Filed { new: true, .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Outcome::Duplicate);
    assert_eq!(count(&store, "messages WHERE direction = 'in'"), 1);
    assert_eq!(store.position("INBOX").unwrap().unwrap().last_uid, 2);
    assert!(store.read_blob(&raw_name(&raw)).unwrap() == raw);
}

/// Every file under `blobs/`.
fn blob_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir.join("blobs")).into_iter().flatten() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    files
}

#[test]
fn a_large_mail_delivered_again_with_other_headers_leaves_no_file_behind() {
    // The same mail reaching the mailbox twice (a second alias, a relay
    // that tried again) differs in its Received lines: other bytes, so a
    // file of another name, which no row would ever name. Its copy was
    // written while the batch was parsed; it goes once the batch is filed.
    let dir = tempfile::tempdir().unwrap();
    let (config, templates, mut store) = setup(dir.path());
    let ingestor = Ingestor {
        config: &config,
        templates: &templates,
    };
    let raw = mail(8, 1_000_000);
    let mut again = b"Received: from relay2.example.test by mx.example.test\r\n".to_vec();
    again.extend_from_slice(&raw);
    let first = ingestor
        .ingest_batch(&mut store, &incoming(&[&raw]), chrono::Utc::now())
        .unwrap();
    assert!(matches!(first[0], Outcome::Filed { .. }), "{first:?}");
    let files = blob_files(&config.data_dir);
    assert_eq!(files, vec![blob_path(&config.data_dir, &raw_name(&raw))]);
    // In a batch with other mail, and in one of its own.
    let other = mail(9, 1_000_000);
    for batch in [vec![&again[..], &other[..]], vec![&again[..]]] {
        let outcomes = ingestor
            .ingest_batch(&mut store, &incoming(&batch), chrono::Utc::now())
            .unwrap();
        assert_eq!(outcomes[0], Outcome::Duplicate);
    }
    assert_eq!(
        blob_files(&config.data_dir),
        {
            let mut want = vec![
                blob_path(&config.data_dir, &raw_name(&raw)),
                blob_path(&config.data_dir, &raw_name(&other)),
            ];
            want.sort();
            want
        },
        "only the filed mails' files are kept"
    );
    assert!(store.read_blob(&raw_name(&raw)).unwrap() == raw);
    assert!(store.read_blob(&raw_name(&other)).unwrap() == other);

    // Both deliveries in one batch, the second one twice.
    let third = mail(10, 1_000_000);
    let mut third_again = b"Received: from relay2.example.test by mx.example.test\r\n".to_vec();
    third_again.extend_from_slice(&third);
    let outcomes = ingestor
        .ingest_batch(
            &mut store,
            &incoming(&[&third, &third_again, &third_again]),
            chrono::Utc::now(),
        )
        .unwrap();
    assert!(matches!(outcomes[0], Outcome::Filed { .. }), "{outcomes:?}");
    assert_eq!(outcomes[1..], [Outcome::Duplicate, Outcome::Duplicate]);
    assert!(!blob_path(&config.data_dir, &raw_name(&third_again)).exists());
    assert!(store.read_blob(&raw_name(&third)).unwrap() == third);
    assert_eq!(blob_files(&config.data_dir).len(), 3);
}
