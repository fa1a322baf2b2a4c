//! The SQLite file and the content-addressed blob directory under data_dir.
//! Raw mails up to 64 KiB are rows of the `blobs` table, written in the
//! transaction that names them. Larger raw mails are files, written and
//! synced before the row that names them commits, so a committed row never
//! points at a missing file; a crash in between leaves only an unreferenced
//! file. An attachment is not stored a second time: it is decoded from its
//! raw mail when asked for (stores written before this kept small ones
//! decoded in `blobs`, which is still read first).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tracing::warn;

mod checkpoint;
pub mod delete;
pub mod views;

const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_2.sql"),
    include_str!("schema_3.sql"),
    include_str!("schema_4.sql"),
    include_str!("schema_5.sql"),
    include_str!("schema_6.sql"),
    include_str!("schema_7.sql"),
];

/// Blobs up to this size are kept in the database (the `blobs` table),
/// larger ones as files. SQLite reads and writes blobs below ~100 KB faster
/// than the filesystem does files, and they need no separate sync.
pub const INLINE_BLOB_MAX: usize = 64 * 1024;

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    Database,
    File(PathBuf),
    /// An attachment is not stored a second time: it is decoded from
    /// the raw mail that carried it (this sha256) when asked for.
    InMail(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database at {path} has schema version {found}, newer than this ticketd knows ({known}); \
         run a newer ticketd"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{0}")]
    NotFound(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the IMAP reader stands in one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxPosition {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// One queued outbound mail, ready to hand to SMTP.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub message_id: String,
    pub envelope_from: String,
    pub envelope_to: String,
    pub raw: Vec<u8>,
    /// Every attempt, reached or not (the backoff grows with it).
    pub attempts: i64,
    /// Attempts the server answered with a failure for this message.
    pub failures: i64,
    /// Attempts that got no answer after the message went out (counted in
    /// `failures` too): each may have been delivered.
    pub uncertain: i64,
}

/// Why an outbox item was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The server could not be reached: delays the item, uses up no try.
    Unreachable,
    /// The server refused the message (counted in `failures`).
    Refused,
    /// No answer after the message went out: it may have been delivered
    /// (counted in `failures` and `uncertain`).
    Uncertain,
}

pub struct Store {
    conn: Connection,
    data_dir: PathBuf,
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer.take() {
            c.stop(&self.conn);
        }
    }
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let db = data_dir.join("ticketd.sqlite3");
        let mut conn = Connection::open(&db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Filing one message runs a few dozen distinct statements.
        conn.set_prepared_statement_cache_capacity(64);
        // Switching a new file to WAL, and the first read of a WAL file
        // another process is still setting up, can report "locked" at once
        // without waiting on the busy handler. Those steps are idempotent,
        // so they are retried for as long as the busy timeout would wait.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Self::prepare(&mut conn, &db) {
                Err(StoreError::Sql(e)) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(Store {
            conn,
            data_dir: data_dir.to_path_buf(),
            checkpointer: None,
        })
    }

    /// From now on this connection's commits leave WAL checkpoints to a
    /// thread of their own (see `checkpoint`): for the connection that
    /// files mail, so a batch's commit does not wait for the last batches'
    /// pages to be copied into the database file.
    pub fn checkpoint_in_background(&mut self) -> Result<(), StoreError> {
        if self.checkpointer.is_none() {
            self.checkpointer = Some(checkpoint::Checkpointer::start(&self.conn)?);
        }
        Ok(())
    }

    fn prepare(conn: &mut Connection, db: &Path) -> Result<(), StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed message (and the ack it queued) survives power
        // loss, so an ack is never sent for a message that is then re-filed.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // What is deleted or overwritten (a row updated, a ticket deleted
        // on request) is zeroed in the file, not left in free space where
        // `ticketd delete` could not reach it.
        conn.pragma_update(None, "secure_delete", "ON")?;
        // 8 MiB of page cache (the default is 2): a batch of new mail no
        // longer spills dirty pages to the WAL before its commit.
        conn.pragma_update(None, "cache_size", -8192)?;
        migrate(conn, db)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A write transaction. IMMEDIATE takes the write lock up front: a
    /// transaction that reads first and writes later would otherwise fail
    /// at once ("database is locked") when another connection (the outbox
    /// sender, an agent's command) committed in between, instead of
    /// waiting its turn.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        blob_path(&self.data_dir, sha256)
    }

    /// Writes a large blob's file under its sha256 without waiting for
    /// the disk; `sync_blobs` must follow before any row names it. A file
    /// a crash left before that sync (short, or the right size with other
    /// bytes) is written again. Small blobs go through `put_blob_inline`.
    pub fn put_blob_file_unsynced(&self, sha: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_blob_file(&self.data_dir, sha, bytes).map(drop)
    }

    /// Stores a blob of any size durably and returns its sha256: inline
    /// in its own transaction when small, else as a synced file. For
    /// callers outside the ingest batch (which writes many at once).
    pub fn put_blob(&mut self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = crate::core::parse::sha256_hex(bytes);
        if bytes.len() <= INLINE_BLOB_MAX {
            let tx = self.transaction()?;
            put_blob_inline(&tx, &sha, bytes)?;
            tx.commit()?;
        } else {
            self.put_blob_file_unsynced(&sha, bytes)?;
            self.sync_blobs()?;
        }
        Ok(sha)
    }

    /// Makes every blob written so far durable: one syncfs(2) for the data
    /// directory's filesystem instead of an fsync per file and directory.
    pub fn sync_blobs(&self) -> Result<(), StoreError> {
        sync_blobs(&self.data_dir)
    }

    pub fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let inline: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM blobs WHERE sha256 = ?1", [sha256], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(bytes) = inline {
            return Ok(bytes);
        }
        let path = self.blob_path(sha256);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match self.attachment_from_mail(sha256)? {
                    Some(bytes) => Ok(bytes),
                    None => Err(StoreError::Io { path, source: e }),
                }
            }
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// The raw mails that carry an attachment with this sha256.
    fn mails_carrying(&self, sha256: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT m.raw_sha256 FROM attachments a JOIN messages m ON m.id = a.message
             WHERE a.sha256 = ?1 AND m.raw_sha256 != ''",
        )?;
        let rows = stmt.query_map([sha256], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Decodes an attachment out of the raw mail it came in, checking
    /// that the bytes still hash to what was recorded.
    fn attachment_from_mail(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        for raw_sha in self.mails_carrying(sha256)? {
            if raw_sha == sha256 {
                continue;
            }
            let Ok(raw) = self.read_blob(&raw_sha) else {
                continue;
            };
            // A photo or document is one of the large parts, read without
            // parsing the rest of the mail; anything else needs the parse.
            if let Some(data) = crate::core::large_parts::find(&raw, sha256) {
                return Ok(Some(data));
            }
            let found = crate::core::parse::parse(&raw)
                .attachments
                .into_iter()
                .find(|a| crate::core::parse::sha256_hex(&a.data) == sha256);
            if let Some(a) = found {
                return Ok(Some(a.data));
            }
        }
        Ok(None)
    }

    /// Where a stored blob is, for an operator who wants to find it.
    pub fn blob_location(&self, sha256: &str) -> Result<BlobLocation, StoreError> {
        let inline: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = ?1)",
            [sha256],
            |r| r.get(0),
        )?;
        if inline {
            return Ok(BlobLocation::Database);
        }
        let path = self.blob_path(sha256);
        if !path.exists() {
            if let Some(raw) = self.mails_carrying(sha256)?.into_iter().next() {
                return Ok(BlobLocation::InMail(raw));
            }
        }
        Ok(BlobLocation::File(path))
    }

    pub fn position(&self, mailbox: &str) -> Result<Option<MailboxPosition>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity, last_uid FROM mailbox_positions WHERE mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(MailboxPosition {
                        mailbox: mailbox.to_string(),
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Queued mail whose next attempt is due at `now` (unix seconds), up
    /// to 100 items with ids above `after`, in id order.
    pub fn outbox_due(&self, now: i64, after: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, message_id, envelope_from, envelope_to, raw, attempts, failures, uncertain
             FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?1 AND id > ?2 ORDER BY id LIMIT 100",
        )?;
        let rows = stmt.query_map([now, after], |r| {
            Ok(OutboxItem {
                id: r.get(0)?,
                message_id: r.get(1)?,
                envelope_from: r.get(2)?,
                envelope_to: r.get(3)?,
                raw: r.get(4)?,
                attempts: r.get(5)?,
                failures: r.get(6)?,
                uncertain: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The earliest time a queued item becomes due, if any is queued.
    pub fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn outbox_sent(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2,
             last_error = NULL WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Marks the queued outbox item with this Message-ID sent; false when
    /// there is none (marked already, or deleted).
    pub fn outbox_sent_by_message_id(
        &self,
        message_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2,
             last_error = NULL WHERE message_id = ?1 AND status = 'queued'",
            params![message_id, now],
        )?;
        Ok(changed > 0)
    }

    /// Records an attempt that did not deliver outbox item `id`: due again
    /// at `next_attempt`, or with `give_up` marked failed for good.
    pub fn outbox_failed_attempt(
        &self,
        id: i64,
        error: &str,
        next_attempt: i64,
        failure: AttemptFailure,
        give_up: bool,
    ) -> Result<(), StoreError> {
        let refused = failure != AttemptFailure::Unreachable;
        let uncertain = failure == AttemptFailure::Uncertain;
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, failures = failures + ?4,
             uncertain = uncertain + ?6, last_error = ?2, next_attempt_at = ?3,
             status = CASE WHEN ?5 THEN 'failed' ELSE status END
             WHERE id = ?1",
            params![
                id,
                error,
                next_attempt,
                refused as i64,
                give_up,
                uncertain as i64
            ],
        )?;
        Ok(())
    }
}

/// The file in the data directory whose lock a process holds while it
/// sends the outbox.
pub const OUTBOX_LOCK_FILE: &str = "outbox.lock";

/// Held while this process sends the store's outbox, so that `run`,
/// `poll`, `reply --send` and `ingest --send` never send the same item at
/// once. An exclusive flock(2) on [`OUTBOX_LOCK_FILE`]: released on drop,
/// and by the kernel when the process ends, however it ends.
#[derive(Debug)]
pub struct OutboxLock {
    _file: File,
}

impl Store {
    /// Takes the outbox lock without waiting: None when another process
    /// (or another `Store` of this one) holds it.
    pub fn try_lock_outbox(&self) -> Result<Option<OutboxLock>, StoreError> {
        use std::os::fd::AsRawFd;
        let path = self.data_dir.join(OUTBOX_LOCK_FILE);
        let file = open_lock_file(&self.data_dir, &path).map_err(io_err(&path))?;
        loop {
            // SAFETY: flock only uses the descriptor, which `file` keeps open.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Some(OutboxLock { _file: file }));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) => return Ok(None),
                Some(libc::EINTR) => continue,
                _ => return Err(io_err(&path)(e)),
            }
        }
    }
}

/// Opens (creating it if need be) the outbox lock file. Read access is
/// all flock needs, so anyone who can read the store can take it. A new
/// file gets the data directory's read and write bits (under the umask),
/// and when root makes it, the directory's owner and group, so a command
/// run as root never leaves a lock file the service cannot open.
fn open_lock_file(data_dir: &Path, path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    let dir = fs::metadata(data_dir)?;
    let created = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(dir.mode() & 0o666)
        .open(path);
    match created {
        Ok(file) => {
            // SAFETY: geteuid cannot fail and touches no memory.
            if unsafe { libc::geteuid() } == 0 {
                std::os::unix::fs::fchown(&file, Some(dir.uid()), Some(dir.gid()))?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => File::open(path),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Puts a failed (or bounced) outbox item back in the queue, due now,
    /// with its full number of tries.
    pub fn outbox_requeue(&self, id: i64, now: i64) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE outbox SET status = 'queued', next_attempt_at = ?2, failures = 0, uncertain = 0
             WHERE id = ?1 AND status != 'sent'",
            params![id, now],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "no unsent outbox item {id} (see `ticketd outbox`)"
            )));
        }
        Ok(())
    }

    /// A consistent copy of the database while ticketd keeps running:
    /// `VACUUM INTO` reads one snapshot (SQLite's online backup in steps
    /// starts over after every commit of another connection, and under a
    /// busy daemon never got to the end). A copy that fails is removed.
    /// Blobs are immutable files and are copied separately.
    ///
    /// The copy holds every buyer's mail: it is made readable by its owner
    /// only (0600), whatever the umask of the shell that asked for it.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let target = dest.to_str().ok_or_else(|| StoreError::Io {
            path: dest.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path is not valid UTF-8",
            ),
        })?;
        // VACUUM INTO fills an empty file it is given, keeping its mode.
        File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| StoreError::Io {
                path: dest.to_path_buf(),
                source: if e.kind() == std::io::ErrorKind::AlreadyExists {
                    std::io::Error::new(e.kind(), "will not overwrite it")
                } else {
                    e
                },
            })?;
        if let Err(e) = self.conn.execute("VACUUM INTO ?1", [target]) {
            let _ = fs::remove_file(dest);
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks the data directory takes new files (and fsync), as filing needs.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let probe = self
            .data_dir
            .join(format!(".write-check.{}", std::process::id()));
        let result = File::create(&probe).and_then(|f| f.sync_all());
        let _ = fs::remove_file(&probe);
        result.map_err(io_err(&self.data_dir))
    }

    /// Closes or reopens a ticket. Closing stops its response clock.
    pub fn set_ticket_status(&self, ticket: i64, open: bool, now: i64) -> Result<(), StoreError> {
        let changed = if open {
            self.conn.execute(
                "UPDATE tickets SET status = 'open', closed_at = NULL, updated_at = ?2 WHERE id = ?1",
                params![ticket, now],
            )?
        } else {
            self.conn.execute(
                "UPDATE tickets SET status = 'closed', closed_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![ticket, now],
            )?
        };
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no ticket number {ticket}")));
        }
        Ok(())
    }
}

/// Stores a small blob inside the caller's transaction, so it becomes
/// durable with the rows that name it.
pub fn put_blob_inline(conn: &Connection, sha: &str, bytes: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?1, ?2)")?
        .execute(rusqlite::params![sha, bytes])?;
    Ok(())
}

/// `Store::put_blob_file_unsynced`, for a thread that holds no `Store`.
/// Returns the new file's path, for `drop_cached` once it is durable;
/// `None` when the blob was there already.
pub fn write_blob_file(
    data_dir: &Path,
    sha: &str,
    bytes: &[u8],
) -> Result<Option<PathBuf>, StoreError> {
    let path = blob_path(data_dir, sha);
    if fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        // Only the same mail or attachment again finds it there, or a
        // file a crash caught before it was synced: on some filesystems
        // that keeps its name and size but not its bytes. Compared, not
        // trusted; a read of a file already written is the rare case.
        match holds(&path, bytes) {
            Ok(true) => return Ok(None),
            Ok(false) => warn!(
                path = %path.display(),
                "a blob file did not hold the bytes its name says (left by a crash before it was synced?); writing it again"
            ),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "could not read a blob file back; writing it again")
            }
        }
    }
    let dir = path.parent().unwrap_or(data_dir).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let owner = owner_for_root(data_dir, &dir).map_err(io_err(&dir))?;
    // A name of its own for each write: two threads may write the same
    // blob at once (two copies of one mail in a batch), and each must
    // rename a whole file of its own into place.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{sha}.{}.{n}.tmp", std::process::id()));
    // Through the page cache, with writeback started at once: the writing
    // thread is free again after a copy, and the disk works while the
    // batch is parsed. (Direct I/O, which skips that copy, kept the
    // writers waiting on the disk: 10-20% slower on the full mix.)
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(bytes)?;
        start_writeback(&f);
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::Io {
            path: path.clone(),
            source: e,
        }
    })?;
    Ok(Some(path))
}

/// The owner and group a file root makes in the data directory must get
/// (the directory's: the service's user), when this process is root and
/// the directory is not root's; `None` otherwise.
pub(crate) fn service_owner(data_dir: &Path) -> std::io::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let top = fs::metadata(data_dir)?;
    Ok((top.uid() != 0).then(|| (top.uid(), top.gid())))
}

/// When root writes into the data directory (an operator's `ticketd
/// ingest` or `reply` run with sudo), the owner new blob files must get:
/// the data directory's, which is the service's user. A blob directory
/// root made is given to that owner too (now, and when an earlier run
/// left one), since a directory only root can write would stop the
/// service from filing every later large mail whose hash falls in it.
/// `None` for any other user: the files are theirs, as before.
fn owner_for_root(data_dir: &Path, blob_dir: &Path) -> std::io::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    let Some((uid, gid)) = service_owner(data_dir)? else {
        return Ok(None);
    };
    let blobs = data_dir.join("blobs");
    for d in [blobs.as_path(), blob_dir] {
        if fs::metadata(d)?.uid() == 0 {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        }
    }
    Ok(Some((uid, gid)))
}

/// Whether the file at `path` holds exactly `bytes`, read in pieces.
fn holds(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut rest = bytes;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(rest.is_empty());
        }
        if n > rest.len() || buf[..n] != rest[..n] {
            return Ok(false);
        }
        rest = &rest[n..];
    }
}

/// Lets the kernel drop a blob file's pages from the page cache. Only for
/// files made durable already (clean pages go at once; dirty ones would
/// stay). A raw mail is read again only when an agent opens one of its
/// attachments, so its pages would only push the database's out, and
/// the memory they take is used again for the next batch's files instead
/// of more being taken. Only a hint: an error changes nothing. (Opened
/// again rather than kept open from the write: a batch can hold 200.)
pub fn drop_cached(path: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(file) = File::open(path) else { return };
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps
    // open.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// `Store::sync_blobs` for a thread without the store: syncfs(2) of the
/// data directory's filesystem.
pub fn sync_blobs(data_dir: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(data_dir).map_err(io_err(data_dir))?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(StoreError::Io {
            path: data_dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

pub fn blob_path(data_dir: &Path, sha256: &str) -> PathBuf {
    let (a, rest) = sha256.split_at(sha256.len().min(2));
    data_dir.join("blobs").join(a).join(rest)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &mut Connection, db: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    // Up to date: nothing to write, so read-only commands work on a full
    // disk and never wait behind the daemon's write lock.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == known {
        return Ok(());
    }
    // Behind: one IMMEDIATE transaction around reading the version again
    // and migrating, so two processes opening a new data directory at once
    // cannot both create the schema.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(StoreError::TooNew {
            path: db.to_path_buf(),
            found: version,
            known,
        });
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

/// Threading's view of the store, on whatever connection or transaction
/// the caller holds.
pub struct Lookup<'a>(pub &'a Connection);

impl crate::core::thread::ThreadLookup for Lookup<'_> {
    fn ticket_of_message(&self, ids: &[String]) -> Option<i64> {
        ticket_of_message(self.0, ids).ok().flatten()
    }
    fn ticket_of_sent(&self, ids: &[String]) -> Option<i64> {
        ticket_of_sent(self.0, ids).ok().flatten()
    }
    fn is_participant(&self, ticket: i64, address: &str) -> Option<bool> {
        is_participant(self.0, ticket, address).ok().flatten()
    }
    fn requester(&self, ticket: i64) -> Option<String> {
        self.0
            .row_cached(
                "SELECT requester FROM tickets WHERE id = ?1",
                [ticket],
                |r| r.get(0),
            )
            .ok()
    }
}

/// Statements run for every message go through the connection's
/// prepared-statement cache: parsing their SQL anew each time was an eighth
/// of ingest's CPU time.
pub trait Cached {
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

// Queries used inside the per-message transaction. They take a plain
// connection so the caller decides the transaction boundary.

/// The blob name of the raw mail stored under this dedupe key.
pub fn stored_raw_blob(conn: &Connection, dedupe_key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .row_cached(
            "SELECT raw_sha256 FROM messages WHERE message_id = ?1",
            [dedupe_key],
            |r| r.get(0),
        )
        .optional()?)
}

/// Who sent the stored message filed under `dedupe_key`, if there is one:
/// `None` inside when it is our own (an ack or an agent's reply, whose
/// copy coming back is always the same mail), else its From address.
pub fn stored_sender(
    conn: &Connection,
    dedupe_key: &str,
) -> Result<Option<Option<String>>, StoreError> {
    Ok(conn
        .row_cached(
            "SELECT direction, from_addr FROM messages WHERE message_id = ?1",
            [dedupe_key],
            |r| {
                let direction: String = r.get(0)?;
                let from: Option<String> = r.get(1)?;
                Ok((direction == "in").then(|| from.unwrap_or_default()))
            },
        )
        .optional()?)
}

pub fn ticket_of_message(conn: &Connection, ids: &[String]) -> Result<Option<i64>, StoreError> {
    first_ticket(
        conn,
        "SELECT ticket_id FROM messages WHERE message_id = ?1 AND ticket_id IS NOT NULL",
        ids,
    )
}

/// The ticket of the first of these Message-IDs that is one of our own
/// mails (an ack or an agent's reply): what a bounce returns is ours, so a
/// "bounce" naming a buyer's message files onto no one's ticket.
pub fn ticket_of_sent(conn: &Connection, ids: &[String]) -> Result<Option<i64>, StoreError> {
    first_ticket(
        conn,
        "SELECT ticket_id FROM messages WHERE message_id = ?1 AND direction = 'out'
         AND ticket_id IS NOT NULL",
        ids,
    )
}

fn first_ticket(conn: &Connection, sql: &str, ids: &[String]) -> Result<Option<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    for id in ids {
        if let Some(t) = stmt.query_row([id], |r| r.get(0)).optional()? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

pub fn is_participant(
    conn: &Connection,
    ticket: i64,
    address: &str,
) -> Result<Option<bool>, StoreError> {
    let exists = conn
        .row_cached("SELECT 1 FROM tickets WHERE id = ?1", [ticket], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let member = conn
        .row_cached(
            "SELECT 1 FROM participants WHERE ticket_id = ?1 AND address = ?2",
            params![ticket, address.to_ascii_lowercase()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    Ok(Some(member))
}

/// Moves the position forward (a message asked for again from below it,
/// see `left_out`, leaves it where it is); a new UIDVALIDITY starts over.
pub fn set_position(conn: &Connection, pos: &MailboxPosition) -> Result<(), StoreError> {
    conn.exec_cached(
        "INSERT INTO mailbox_positions (mailbox, uidvalidity, last_uid) VALUES (?1, ?2, ?3)
         ON CONFLICT(mailbox) DO UPDATE SET
         last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                         THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
         uidvalidity = excluded.uidvalidity",
        params![pos.mailbox, pos.uidvalidity, pos.last_uid],
    )?;
    Ok(())
}

/// Notes filed mail to be flagged or moved on the server once committed
/// (in the transaction that files it).
pub fn queue_after_filing(conn: &Connection, pos: &MailboxPosition) -> Result<(), StoreError> {
    conn.exec_cached(
        "INSERT OR IGNORE INTO after_filing (mailbox, uidvalidity, uid) VALUES (?1, ?2, ?3)",
        params![pos.mailbox, pos.uidvalidity, pos.last_uid],
    )?;
    Ok(())
}

/// Filed mail of `mailbox` still to be flagged or moved, oldest first (at
/// most `limit`); rows of another UIDVALIDITY are dropped, as their UIDs
/// no longer name anything.
pub fn after_filing(
    conn: &Connection,
    mailbox: &str,
    uidvalidity: u32,
    limit: usize,
) -> Result<Vec<u32>, StoreError> {
    conn.exec_cached(
        "DELETE FROM after_filing WHERE mailbox = ?1 AND uidvalidity != ?2",
        params![mailbox, uidvalidity],
    )?;
    Ok(conn
        .prepare_cached(
            "SELECT uid FROM after_filing WHERE mailbox = ?1 AND uidvalidity = ?2
             ORDER BY uid LIMIT ?3",
        )?
        .query_map(params![mailbox, uidvalidity, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The server has flagged or moved these.
pub fn done_after_filing(
    conn: &Connection,
    mailbox: &str,
    uidvalidity: u32,
    uids: &[u32],
) -> Result<(), StoreError> {
    // Deletes only, so the write lock is taken at the first one anyway.
    let tx = conn.unchecked_transaction()?;
    for uid in uids {
        tx.exec_cached(
            "DELETE FROM after_filing WHERE mailbox = ?1 AND uidvalidity = ?2 AND uid = ?3",
            params![mailbox, uidvalidity, uid],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A message the server left out of a FETCH answer, to be asked for again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftOut {
    pub mailbox: String,
    pub uid: u32,
    /// Passes that asked for it and got nothing.
    pub tries: i64,
    /// Unix seconds.
    pub first_at: i64,
}

/// The messages of `mailbox` still to be asked for again (all mailboxes'
/// when `mailbox` is None), oldest UID first. Those of another UIDVALIDITY
/// are left out: a rescan from UID 1 covers them.
pub fn left_out(
    conn: &Connection,
    mailbox: Option<(&str, u32)>,
) -> Result<Vec<LeftOut>, StoreError> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(LeftOut {
            mailbox: r.get(0)?,
            uid: r.get(1)?,
            tries: r.get(2)?,
            first_at: r.get(3)?,
        })
    };
    Ok(match mailbox {
        Some((mailbox, uidvalidity)) => conn
            .prepare_cached(
                "SELECT mailbox, uid, tries, first_at FROM left_out
                 WHERE mailbox = ?1 AND uidvalidity = ?2 ORDER BY uid",
            )?
            .query_map(params![mailbox, uidvalidity], row)?
            .collect::<Result<_, _>>()?,
        None => conn
            .prepare_cached(
                "SELECT l.mailbox, l.uid, l.tries, l.first_at FROM left_out l
                 LEFT JOIN mailbox_positions p ON p.mailbox = l.mailbox
                 WHERE p.uidvalidity IS NULL OR p.uidvalidity = l.uidvalidity
                 ORDER BY l.mailbox, l.uid",
            )?
            .query_map([], row)?
            .collect::<Result<_, _>>()?,
    })
}

/// Counts one more pass in which the server did not send these messages
/// (recording them the first time); gives each one's tries so far. Called
/// before the position moves past them.
pub fn note_left_out(
    conn: &Connection,
    mailbox: &str,
    uidvalidity: u32,
    uids: &[u32],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut tries = Vec::with_capacity(uids.len());
    for uid in uids {
        tries.push(conn.row_cached(
            "INSERT INTO left_out (mailbox, uidvalidity, uid, tries, first_at, last_at)
             VALUES (?1, ?2, ?3, 1, ?4, ?4)
             ON CONFLICT DO UPDATE SET tries = tries + 1, last_at = excluded.last_at
             RETURNING tries",
            params![mailbox, uidvalidity, uid, now],
            |r| r.get(0),
        )?);
    }
    Ok(tries)
}

/// Stops asking for these messages: filed, or gone from the mailbox. With
/// `uids` None, every one of the mailbox's that is not of `uidvalidity`.
pub fn forget_left_out(
    conn: &Connection,
    mailbox: &str,
    uidvalidity: u32,
    uids: Option<&[u32]>,
) -> Result<(), StoreError> {
    match uids {
        Some(uids) => {
            for uid in uids {
                conn.exec_cached(
                    "DELETE FROM left_out WHERE mailbox = ?1 AND uidvalidity = ?2 AND uid = ?3",
                    params![mailbox, uidvalidity, uid],
                )?;
            }
        }
        None => {
            conn.exec_cached(
                "DELETE FROM left_out WHERE mailbox = ?1 AND uidvalidity != ?2",
                params![mailbox, uidvalidity],
            )?;
        }
    }
    Ok(())
}

pub fn ticket_language(conn: &Connection, ticket: i64) -> Result<String, StoreError> {
    Ok(conn.row_cached(
        "SELECT language FROM tickets WHERE id = ?1",
        [ticket],
        |r| r.get(0),
    )?)
}

/// Asks the kernel to start writing a blob file to disk now, so the disk
/// works while the rest of the batch is parsed and the later syncfs(2)
/// finds less to wait for. Only a hint: durability still comes from that
/// sync, and an error here changes nothing.
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the descriptor, which `f` keeps open.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_files_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        for len in [INLINE_BLOB_MAX + 1, 1 << 20, (3 << 20) + 4095, 5 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
            let sha = crate::core::parse::sha256_hex(&bytes);
            write_blob_file(dir.path(), &sha, &bytes).unwrap();
            assert_eq!(fs::read(blob_path(dir.path(), &sha)).unwrap(), bytes);
        }
    }

    #[test]
    fn two_threads_writing_the_same_blob_both_succeed() {
        // Two copies of one raw mail in a batch reach both writer threads.
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let bytes: Vec<u8> = (0..(1 << 20) + round)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            let sha = crate::core::parse::sha256_hex(&bytes);
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let writers: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            write_blob_file(dir.path(), &sha, &bytes)
                        })
                    })
                    .collect();
                for w in writers {
                    w.join().unwrap().unwrap();
                }
            });
            assert!(fs::read(blob_path(dir.path(), &sha)).unwrap() == bytes);
        }
    }

    #[test]
    fn one_store_at_a_time_holds_the_outbox_lock() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        let held = a.try_lock_outbox().unwrap().expect("free at first");
        assert!(b.try_lock_outbox().unwrap().is_none(), "taken twice");
        assert!(a.try_lock_outbox().unwrap().is_none(), "taken twice");
        drop(held);
        assert!(b.try_lock_outbox().unwrap().is_some(), "free again");
    }

    #[test]
    fn the_outbox_lock_file_follows_the_data_directory() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = unsafe { libc::geteuid() } == 0;
        for mode in [0o700, 0o750] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let store = Store::open(&data).unwrap();
            fs::set_permissions(&data, fs::Permissions::from_mode(mode)).unwrap();
            // As when root runs a command in the service's directory.
            if root {
                std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
            }
            drop(store.try_lock_outbox().unwrap().unwrap());
            let meta = fs::metadata(data.join(OUTBOX_LOCK_FILE)).unwrap();
            let bits = meta.mode() & 0o777;
            assert_eq!(
                bits & !(mode & 0o666),
                0,
                "{bits:o} in a {mode:o} directory"
            );
            assert_ne!(bits & 0o600, 0, "{bits:o}");
            if root {
                assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
            }
            // Read access is enough to take it.
            fs::set_permissions(
                data.join(OUTBOX_LOCK_FILE),
                fs::Permissions::from_mode(0o400),
            )
            .unwrap();
            assert!(store.try_lock_outbox().unwrap().is_some());
        }
    }

    #[test]
    fn small_blobs_live_in_the_database_large_ones_in_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let small = vec![7u8; INLINE_BLOB_MAX];
        let large = vec![9u8; INLINE_BLOB_MAX + 1];
        let s = store.put_blob(&small).unwrap();
        let l = store.put_blob(&large).unwrap();
        assert_eq!(store.blob_location(&s).unwrap(), BlobLocation::Database);
        assert!(!store.blob_path(&s).exists());
        assert_eq!(
            store.blob_location(&l).unwrap(),
            BlobLocation::File(store.blob_path(&l))
        );
        assert!(store.blob_path(&l).exists());
        assert_eq!(store.read_blob(&s).unwrap(), small);
        assert_eq!(store.read_blob(&l).unwrap(), large);
        // Storing again changes nothing.
        assert_eq!(store.put_blob(&small).unwrap(), s);
        let n: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(store.read_blob(&"0".repeat(64)).is_err());
    }

    #[test]
    fn a_blob_file_of_the_right_size_but_other_bytes_is_written_again() {
        // What a crash between writing a blob and syncing it can leave on
        // some filesystems: the name and size, but zeros for the bytes.
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mail = (0..INLINE_BLOB_MAX * 3)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>();
        let sha = crate::core::parse::sha256_hex(&mail);
        let path = store.blob_path(&sha);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, vec![0u8; mail.len()]).unwrap();
        // Differing only in the last byte, past the first read.
        let mut almost = mail.clone();
        *almost.last_mut().unwrap() ^= 1;

        assert_eq!(store.put_blob(&mail).unwrap(), sha);
        assert_eq!(store.read_blob(&sha).unwrap(), mail);
        fs::write(&path, &almost).unwrap();
        assert_eq!(
            write_blob_file(dir.path(), &sha, &mail).unwrap(),
            Some(path.clone())
        );
        assert_eq!(store.read_blob(&sha).unwrap(), mail);
        // The same bytes are left as they are.
        assert_eq!(write_blob_file(dir.path(), &sha, &mail).unwrap(), None);
    }

    /// INBOX at `last_uid` under `uidvalidity`.
    fn pos(uidvalidity: u32, last_uid: u32) -> MailboxPosition {
        MailboxPosition {
            mailbox: "INBOX".into(),
            uidvalidity,
            last_uid,
        }
    }

    #[test]
    fn left_out_messages_are_counted_until_forgotten_and_the_position_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        // Noted before any position exists (nothing else came yet).
        assert_eq!(note_left_out(c, "INBOX", 7, &[3, 5], 100).unwrap(), [1, 1]);
        assert_eq!(note_left_out(c, "INBOX", 7, &[3], 200).unwrap(), [2]);
        assert_eq!(note_left_out(c, "Other", 7, &[3], 200).unwrap(), [1]);
        let uids = |l: Vec<LeftOut>| l.iter().map(|l| (l.uid, l.tries)).collect::<Vec<_>>();
        assert_eq!(
            uids(left_out(c, Some(("INBOX", 7))).unwrap()),
            [(3, 2), (5, 1)]
        );
        assert_eq!(left_out(c, Some(("INBOX", 7))).unwrap()[0].first_at, 100);
        assert!(left_out(c, Some(("INBOX", 8))).unwrap().is_empty());
        assert_eq!(left_out(c, None).unwrap().len(), 3);

        set_position(c, &pos(7, 9)).unwrap();
        // A left-out UID filed later does not take the position back.
        set_position(c, &pos(7, 3)).unwrap();
        assert_eq!(store.position("INBOX").unwrap(), Some(pos(7, 9)));
        forget_left_out(c, "INBOX", 7, Some(&[3])).unwrap();
        assert_eq!(uids(left_out(c, Some(("INBOX", 7))).unwrap()), [(5, 1)]);

        // A new UIDVALIDITY starts over; the old one's UIDs mean nothing.
        set_position(c, &pos(8, 2)).unwrap();
        assert_eq!(store.position("INBOX").unwrap(), Some(pos(8, 2)));
        assert_eq!(left_out(c, None).unwrap().len(), 1, "only Other's");
        forget_left_out(c, "INBOX", 8, None).unwrap();
        assert!(left_out(c, Some(("INBOX", 7))).unwrap().is_empty());
    }

    #[test]
    fn mail_to_flag_or_move_is_queued_once_and_only_for_this_uidvalidity() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = store.conn();
        for uid in [4, 2, 3, 2] {
            queue_after_filing(c, &pos(7, uid)).unwrap();
        }
        queue_after_filing(c, &pos(6, 9)).unwrap();
        assert_eq!(after_filing(c, "INBOX", 7, 2).unwrap(), [2, 3]);
        assert_eq!(after_filing(c, "Other", 7, 10).unwrap(), Vec::<u32>::new());
        done_after_filing(c, "INBOX", 7, &[2, 3]).unwrap();
        assert_eq!(after_filing(c, "INBOX", 7, 10).unwrap(), [4]);
        // The old UIDVALIDITY's row went with the first read.
        let n: i64 = c
            .query_row("SELECT count(*) FROM after_filing", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_version_1_store_gains_the_blob_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("ticketd.sqlite3")).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let v: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let sha = store.put_blob(b"hello").unwrap();
        assert_eq!(store.read_blob(&sha).unwrap(), b"hello");
    }
}
