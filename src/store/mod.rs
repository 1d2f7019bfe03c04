//! SQLite storage through diesel: opening a connection the way every part of
//! the server needs it (WAL, busy timeout, full sync), the embedded
//! migrations, and the few queries chat history needs. Only
//! [`crate::actors::history`] calls this, from its own threads, because
//! every call here blocks.

pub mod models;
pub mod schema;

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::protocol::{ChatMessage, MessageId};
use models::{NewMessage, StoredMessage};
use schema::messages;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a connection waits for another's lock before failing. Readers
/// never block the writer in WAL mode; this covers checkpoints and a second
/// process opening the same file.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// A storage failure, as callers branch on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("cannot migrate database: {0}")]
    Migration(String),
    #[error("database query failed: {0}")]
    Query(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

/// Opens (creating when missing) the database file and sets it up for a
/// long-running server: WAL so readers and the writer do not block each
/// other, `synchronous=FULL` so a commit is on disk before any client is
/// told about the message, and a busy timeout.
pub fn open(path: &Path) -> Result<SqliteConnection, StoreError> {
    let url = path.to_string_lossy();
    let open_error = |reason: String| StoreError::Open {
        path: url.to_string(),
        reason,
    };
    let mut conn = SqliteConnection::establish(&url).map_err(|e| open_error(e.to_string()))?;
    conn.batch_execute(&format!(
        // busy_timeout first: switching to WAL takes a lock that another
        // connection (a checkpoint, a previous server) may briefly hold.
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
    ))
    .map_err(|e| open_error(e.to_string()))?;
    Ok(conn)
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

/// A trivial query, for `/health`.
pub fn ping(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}
