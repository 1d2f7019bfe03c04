//! The embedded backend: history in one SQLite file (`DB_PATH`), in WAL
//! mode with full sync.
//!
//! SQLite has one writer, so the history runs one writer thread (which
//! keeps its connection open) and reader threads (which open a connection
//! per query, so no idle connection keeps a vanished file or a stale
//! shared-memory index alive). The writer checks the database's files
//! before each use ([`SqliteBackend::check_files`], with [`files`]): a
//! file replaced, deleted or made read-only under a running server fails
//! the write instead of acknowledging what a restart would not find.

pub mod files;
mod models;
mod queries;
mod schema;

use std::path::{Path, PathBuf};

use diesel::sqlite::SqliteConnection;

use super::backend::{Backend, NewRow, Outcome, Sanctions};
use super::direct_rooms::DirectRoom;
use super::{Page, StoreError};
use crate::protocol::{MessageId, UserName};
use files::{DbFiles, Snapshot};

/// Opens (creating when missing) the database at `path`, brings its schema
/// up to date and leaves the schema in the file itself. Run once at start,
/// before any worker opens the file.
pub fn prepare(path: &Path) -> Result<(), StoreError> {
    let mut conn = queries::open(path)?;
    queries::migrate(&mut conn)?;
    // Connections close without a checkpoint (see `queries::open`): make
    // one, so the database file alone has the schema.
    if let Err(e) = queries::checkpoint(&mut conn) {
        log::warn!("checkpoint after migrations failed: {e}");
    }
    Ok(())
}

/// Whether a worker thread writes (one, with a kept connection) or reads.
enum Role {
    Writer {
        /// Opened lazily, and dropped after a failure so a database that
        /// comes back (a full disk freed, a lock released, a file restored)
        /// is used again without a restart.
        conn: Option<SqliteConnection>,
        /// The files as `conn` found them when it opened, to notice when
        /// they are no longer the ones at `DB_PATH`.
        held: Option<Snapshot>,
    },
    Reader,
}

/// One worker thread's access to the SQLite file.
pub struct SqliteBackend {
    path: PathBuf,
    files: DbFiles,
    role: Role,
}

impl SqliteBackend {
    pub fn writer(path: &Path) -> SqliteBackend {
        SqliteBackend::new(
            path,
            Role::Writer {
                conn: None,
                held: None,
            },
        )
    }

    pub fn reader(path: &Path) -> SqliteBackend {
        SqliteBackend::new(path, Role::Reader)
    }

    fn new(path: &Path, role: Role) -> SqliteBackend {
        SqliteBackend {
            path: path.to_path_buf(),
            files: DbFiles::new(path),
            role,
        }
    }

    /// Before every use of the writer's connection (so right before each
    /// batch's transaction): are the files at `DB_PATH` still the ones it
    /// holds, and writable? If not, the connection is dropped and the
    /// caller fails, so nothing is acknowledged that a restart would not
    /// find. Before dropping it, the connection copies its log into the
    /// database file when that is safe: after an unlinked `-wal`, that is
    /// what keeps the messages already acknowledged.
    fn check_files(&mut self) -> Result<(), StoreError> {
        let Role::Writer { conn, held } = &mut self.role else {
            return Ok(());
        };
        let (Some(open), Some(found)) = (conn.as_mut(), held.as_ref()) else {
            return Ok(());
        };
        let now = self.files.snapshot();
        let Err(problem) = now.compare(found) else {
            *held = Some(now.grown(found));
            return Ok(());
        };
        log::error!(
            "{problem} ({}): closing the database connection",
            self.path.display()
        );
        if now.may_checkpoint(found) {
            match queries::checkpoint(open) {
                Ok(true) => log::warn!("copied the log into the database file before closing it"),
                Ok(false) => log::error!("could not copy all of the log into the database file (a reader held it); messages stored since the last checkpoint may be lost"),
                Err(e) => log::error!("could not copy the log into the database file: {e}; messages stored since the last checkpoint may be lost"),
            }
        }
        *conn = None;
        *held = None;
        Err(problem.into())
    }

    /// Runs `f` on a connection. The writer checks its files first, opens
    /// its connection if it has none (only a database file that exists,
    /// and only when no file is frozen), and drops it if anything fails, so
    /// the next call reopens it. A reader opens a connection for this query
    /// only, when all three files are there and usable.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_files()?;
        let Role::Writer { conn, held } = &mut self.role else {
            self.files.snapshot().may_open_beside()?;
            let mut conn = queries::open_existing(&self.path)?;
            return f(&mut conn);
        };
        let open = match conn {
            Some(open) => open,
            None => {
                self.files.snapshot().may_open()?;
                let opened = queries::open_existing(&self.path)?;
                // SQLite has created a missing -wal and -shm by now; if it
                // has not (another connection of ours still maps an
                // unlinked -shm), this one would share that stale index:
                // try again later.
                let found = self.files.snapshot();
                found.may_open_beside()?;
                *held = Some(found);
                conn.insert(opened)
            }
        };
        let result = f(open);
        if result.is_err() {
            *conn = None;
            *held = None;
        }
        result
    }
}

impl Backend for SqliteBackend {
    fn insert_batch(&mut self, batch: &[NewRow<'_>]) -> Result<Vec<Outcome>, StoreError> {
        self.with_conn(|conn| queries::insert_batch(conn, batch))
    }

    fn chats_before(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.with_conn(|conn| queries::chats_before(conn, room, before, limit))
    }

    fn chats_after(
        &mut self,
        room: &str,
        after: MessageId,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.with_conn(|conn| queries::chats_after(conn, room, after, limit))
    }

    fn newest_changes(&mut self, room: &str, limit: usize) -> Result<Page, StoreError> {
        self.with_conn(|conn| queries::newest_changes(conn, room, limit))
    }

    fn changes_after(
        &mut self,
        room: &str,
        after: MessageId,
        up_to: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.with_conn(|conn| queries::changes_after(conn, room, after, up_to, limit))
    }

    fn count_chats(&mut self, room: &str) -> Result<i64, StoreError> {
        self.with_conn(|conn| queries::count_chats(conn, room))
    }

    fn read_marker(
        &mut self,
        room: &str,
        user: &str,
        up_to: MessageId,
    ) -> Result<(MessageId, i64), StoreError> {
        self.with_conn(|conn| queries::read_marker(conn, room, user, up_to))
    }

    fn sanctions(&mut self, room: &str, now: i64) -> Result<Sanctions, StoreError> {
        self.with_conn(|conn| queries::sanctions(conn, room, now))
    }

    fn set_read_marker(
        &mut self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> Result<MessageId, StoreError> {
        self.with_conn(|conn| queries::set_read_marker(conn, room, user, id))
    }

    fn open_direct(
        &mut self,
        room: &str,
        users: &[UserName; 2],
        now: i64,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| queries::open_direct(conn, room, users, now))
    }

    fn direct_pair(&mut self, room: &str) -> Result<Option<[UserName; 2]>, StoreError> {
        self.with_conn(|conn| queries::direct_pair(conn, room))
    }

    fn direct_rooms(&mut self, user: &str, limit: usize) -> Result<Vec<DirectRoom>, StoreError> {
        self.with_conn(|conn| queries::direct_rooms(conn, user, limit))
    }

    fn check_write(&mut self, millis: i64) -> Result<(), StoreError> {
        self.with_conn(|conn| queries::check_write(conn, millis))
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.with_conn(queries::checkpoint).map(|_| ())
    }
}
