//! SQLite through diesel: opening a connection the way every part of the
//! server needs it (WAL, busy timeout, full sync), the embedded migrations,
//! and the few queries chat history needs. Every call here blocks; only the
//! history worker threads make them, through [`super::SqliteBackend`].

use std::path::Path;
use std::sync::Once;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::models::{NewMessage, StoredMessage};
use super::schema::{messages, write_check};
use crate::history::StoreError;
use crate::protocol::{ChatMessage, MessageId};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a connection waits for another's lock before failing. Readers
/// never block the writer in WAL mode; this covers checkpoints and a second
/// process opening the same file.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Opens (creating when missing) the database file; for start-up, where a
/// missing file means a new installation.
pub fn open(path: &Path) -> Result<SqliteConnection, StoreError> {
    connect(path, &path.to_string_lossy())
}

/// Opens the database file only if it exists. A running server uses this:
/// if the file vanished, creating an empty one in its place would hide the
/// loss and split the history between two files.
pub fn open_existing(path: &Path) -> Result<SqliteConnection, StoreError> {
    // SQLite's URI form: `mode=rw` opens without creating. `%`, `?` and `#`
    // in the path would be read as URI syntax, so they are escaped.
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=rw");
    connect(path, &uri)
}

/// Sets a connection up for a long-running server: WAL so readers and the
/// writer do not block each other, `synchronous=FULL` so a commit is on
/// disk before any client is told about the message, a busy timeout, and
/// no memory mapping of the database file (a write fault on a mapped page
/// of a file that turned immutable is a SIGBUS, not an error).
fn connect(path: &Path, url: &str) -> Result<SqliteConnection, StoreError> {
    no_checkpoint_on_close();
    let open_error = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    let mut conn = SqliteConnection::establish(url).map_err(|e| open_error(e.to_string()))?;
    conn.batch_execute(&format!(
        // busy_timeout first: switching to WAL takes a lock that another
        // connection (a checkpoint, a previous server) may briefly hold.
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA mmap_size = 0;"
    ))
    .map_err(|e| open_error(e.to_string()))?;
    Ok(conn)
}

/// Makes every SQLite connection of this process close without a
/// checkpoint (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`).
///
/// The last connection to close normally checkpoints, which writes the
/// `-shm` through its memory mapping: if the `-shm` is immutable or
/// truncated by then, that write is a SIGBUS, and closing is exactly what
/// the writer does when it finds its files broken. So no close writes;
/// the writer checkpoints explicitly when its files are sound
/// ([`checkpoint`]), and the `-wal` and `-shm` stay beside the database
/// after a stop, the `-wal` empty. diesel does not hand out its raw
/// handle, so the setting is applied by an auto-extension, which SQLite
/// calls with each new connection's handle inside `sqlite3_open_v2`.
fn no_checkpoint_on_close() {
    use libsqlite3_sys as ffi;
    use std::os::raw::{c_char, c_int};

    unsafe extern "C" fn on_open(
        db: *mut ffi::sqlite3,
        _error: *mut *mut c_char,
        _api: *const ffi::sqlite3_api_routines,
    ) -> c_int {
        // SAFETY: SQLite calls this with the live handle of a connection
        // being opened; the option takes an int and an optional out-pointer.
        unsafe {
            ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
        }
        ffi::SQLITE_OK
    }

    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a function with the signature SQLite expects;
        // it stays valid for the life of the process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            log::error!("cannot register the SQLite open hook (code {rc}); closing a connection on broken files may crash");
        }
    });
}

#[derive(QueryableByName)]
struct CheckpointResult {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

/// Copies everything in the `-wal` into the database file, syncs it and
/// empties the `-wal`. Returns whether it got through everything (a reader
/// in the middle of a query can hold part of the log back).
pub fn checkpoint(conn: &mut SqliteConnection) -> Result<bool, StoreError> {
    let result: CheckpointResult =
        diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(conn)?;
    Ok(result.busy == 0)
}

/// One small real write, committed like a batch (write lock, log, fsync):
/// what `/health` uses to see that the database takes writes when no chat
/// has been stored lately.
pub fn check_write(conn: &mut SqliteConnection, millis: i64) -> Result<(), StoreError> {
    conn.immediate_transaction(|conn| {
        diesel::replace_into(write_check::table)
            .values((write_check::id.eq(1), write_check::checked_at.eq(millis)))
            .execute(conn)
    })?;
    Ok(())
}

/// Brings the schema up to date. Run once at start, before any actor opens
/// the file.
pub fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Inserts `batch` in one transaction, in order, and returns the new ids in
/// the same order. One transaction means one fsync for the whole batch: this
/// is what makes group commit cheap.
pub fn insert_batch(
    conn: &mut SqliteConnection,
    batch: &[NewMessage<'_>],
) -> Result<Vec<MessageId>, StoreError> {
    let ids = conn.immediate_transaction(|conn| {
        batch
            .iter()
            .map(|new| {
                diesel::insert_into(messages::table)
                    .values(new)
                    .returning(messages::id)
                    .get_result::<MessageId>(conn)
            })
            .collect::<Result<Vec<MessageId>, diesel::result::Error>>()
    })?;
    Ok(ids)
}

/// The newest `limit` messages of `room` with `id < before` (any id when
/// `None`), oldest first, and whether older ones exist.
pub fn messages_before(
    conn: &mut SqliteConnection,
    room: &str,
    before: Option<MessageId>,
    limit: usize,
) -> Result<(Vec<ChatMessage>, bool), StoreError> {
    let mut query = messages::table
        .filter(messages::room.eq(room))
        .order(messages::id.desc())
        .limit(limit as i64 + 1)
        .select(StoredMessage::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(messages::id.lt(before));
    }
    let mut rows = query.load(conn)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    Ok((rows.into_iter().map(ChatMessage::from).collect(), more))
}

/// The oldest `limit` messages of `room` with `after < id <= up_to` (no
/// upper bound when `None`), oldest first, and whether more exist in that
/// range past the last one returned.
pub fn messages_after(
    conn: &mut SqliteConnection,
    room: &str,
    after: MessageId,
    up_to: Option<MessageId>,
    limit: usize,
) -> Result<(Vec<ChatMessage>, bool), StoreError> {
    let mut query = messages::table
        .filter(messages::room.eq(room))
        .filter(messages::id.gt(after))
        .order(messages::id.asc())
        .limit(limit as i64 + 1)
        .select(StoredMessage::as_select())
        .into_boxed();
    if let Some(up_to) = up_to {
        query = query.filter(messages::id.le(up_to));
    }
    let mut rows = query.load(conn)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows.into_iter().map(ChatMessage::from).collect(), more))
}

/// How many messages `room` has stored.
pub fn count_messages(conn: &mut SqliteConnection, room: &str) -> Result<i64, StoreError> {
    Ok(messages::table
        .filter(messages::room.eq(room))
        .count()
        .get_result(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_existing_does_not_create_a_missing_database() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("odd ?#% name.db");
        assert!(matches!(open_existing(&path), Err(StoreError::Open { .. })));
        assert!(!path.exists());
        drop(open(&path).unwrap());
        open_existing(&path).expect("an existing file opens, odd characters and all");
    }
}
