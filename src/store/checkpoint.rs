//! WAL checkpoints on a thread of their own, for the connection that files
//! mail. By default SQLite checkpoints inside the commit that takes the WAL
//! past 1000 pages: the writer copies those pages into the database file
//! and waits for two fsyncs before it can go on to the next batch. Here the
//! commit only wakes a thread with its own connection, which runs a PASSIVE
//! checkpoint (it never blocks the writer or readers) while the next batch
//! is parsed. Durability is unchanged: a commit is durable once its WAL
//! frames are synced, which still happens in the commit.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{ffi, Connection};
use tracing::warn;

use super::StoreError;

/// The WAL size (in pages) at which a commit wakes the checkpointer:
/// SQLite's own autocheckpoint default.
const WAKE_PAGES: c_int = 1000;
/// Past this many pages (64 MiB of 4 KiB pages) the checkpointer has not
/// kept up: the writer checkpoints in its commit as well, as SQLite would
/// by default, so the WAL grows no further than it would without the
/// thread (a reader that holds an old snapshot for long holds back either).
const WRITER_PAGES: c_int = 16 * 1024;

pub(super) struct Checkpointer {
    /// Boxed so its address, given to SQLite as the hook's context, stays
    /// put while the Store moves.
    wake: Box<SyncSender<()>>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to `conn`'s database,
    /// and hooks `conn`'s commits to it.
    pub(super) fn start(conn: &Connection) -> Result<Checkpointer, StoreError> {
        let db = Path::new(conn.path().unwrap_or_default());
        let own = Connection::open(db)?;
        own.busy_timeout(std::time::Duration::from_secs(10))?;
        // A checkpoint syncs the WAL before it copies and the database
        // file after (FULL is also SQLite's default).
        own.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || checkpoint_when_woken(own, woken))
            .map_err(|e| StoreError::Io {
                path: db.to_path_buf(),
                source: e,
            })?;
        let wake = Box::new(wake);
        let ctx = &*wake as *const SyncSender<()> as *mut c_void;
        // SAFETY: the handle is this open connection's; `ctx` points at the
        // boxed sender, which lives until `stop` has removed the hook.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), Some(on_commit), ctx);
        }
        Ok(Checkpointer { wake, thread })
    }

    /// Removes the hook from `conn` and waits for a checkpoint under way.
    pub(super) fn stop(self, conn: &Connection) {
        // SAFETY: as in `start`; after this SQLite no longer holds `ctx`.
        unsafe {
            ffi::sqlite3_wal_hook(conn.handle(), None, std::ptr::null_mut());
        }
        let Checkpointer { wake, thread } = self;
        drop(wake);
        let _ = thread.join();
    }
}

fn checkpoint_when_woken(conn: Connection, woken: Receiver<()>) {
    while woken.recv().is_ok() {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            warn!(error = %e, "WAL checkpoint failed; the next commit tries again");
        }
    }
}

/// SQLite's WAL hook: called after every commit of the hooked connection,
/// with the number of pages now in the WAL.
unsafe extern "C" fn on_commit(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    pages: c_int,
) -> c_int {
    if pages >= WRITER_PAGES {
        // SAFETY: db and name are the ones SQLite passed in; checkpointing
        // from the hook is what SQLite's own default hook does.
        unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                name,
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    } else if pages >= WAKE_PAGES {
        // SAFETY: ctx is the boxed sender `start` registered, alive until
        // the hook is removed.
        let wake = unsafe { &*(ctx as *const SyncSender<()>) };
        // Full means a wake-up is pending already.
        let _ = wake.try_send(());
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use crate::store::{put_blob_inline, Store};

    #[test]
    fn pages_reach_the_database_file_while_the_store_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ticketd.sqlite3");
        let mut store = Store::open(dir.path()).unwrap();
        store.checkpoint_in_background().unwrap();
        let before = std::fs::metadata(&db).unwrap().len();
        // 60 commits of 200 KiB: 12 MiB, about 3000 pages through the WAL.
        let mut n = 0u32;
        for _ in 0..60 {
            let tx = store.transaction().unwrap();
            for _ in 0..50 {
                n += 1;
                let bytes: Vec<u8> = (0..4096u32).map(|i| (i ^ n) as u8).collect();
                put_blob_inline(&tx, &format!("{n:064}"), &bytes).unwrap();
            }
            tx.commit().unwrap();
        }
        // The writer never checkpoints below 16k pages; the thread does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let copied = loop {
            let len = std::fs::metadata(&db).unwrap().len();
            if len > before + 10 * 1024 * 1024 || std::time::Instant::now() > deadline {
                break len;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            copied > before + 10 * 1024 * 1024,
            "database file {before} -> {copied} bytes: no checkpoint ran"
        );
        let other = rusqlite::Connection::open(&db).unwrap();
        let rows: i64 = other
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3000);
        drop(store);
    }
}
