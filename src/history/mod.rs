//! Chat history: the one door to storage.
//!
//! Everything the server stores or reads goes through a [`History`] handle:
//! rooms [`store`](History::store) changes (chats, edits, deletes,
//! reactions), read what they [`start_room`](History::start_room) from and
//! what a reconnecting client missed ([`after`](History::after)), and keep
//! read markers ([`read_marker`](History::read_marker),
//! [`set_read_marker`](History::set_read_marker)); REST reads
//! [`page`](History::page)s and [`count`](History::count)s; `/health` asks
//! [`write_health`](History::write_health); shutdown
//! [`flush`](History::flush)es and [`checkpoint`](History::checkpoint)s.
//!
//! Behind the handle, [`worker::HistoryActor`] threads do the blocking work
//! (group commit on one writer, reads on others) against a
//! [`backend::Backend`]: which one is decided in [`History::start`] from a
//! [`Storage`], and nowhere else. To add a database, implement `Backend`
//! in a module beside [`sqlite`] and add its `Storage` variant.

pub mod backend;
pub mod direct_rooms;
mod error;
pub mod postgres;
pub(crate) mod rows;
pub mod rules;
pub mod sqlite;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;

pub use backend::{NewChange, Refusal};
pub use error::StoreError;

use backend::Backend;

use crate::backlog::Admitted;
use crate::metrics::Metrics;
use crate::protocol::{ChatMessage, MessageId, RoomName, UserName};
use crate::thread_name::{name_this_thread, Numbered};
use direct_rooms::DirectRoom;
use postgres::PostgresBackend;
use sqlite::SqliteBackend;
use worker::{
    ChangesAfter, ChatCount, ChatsPage, CheckWrite, Checkpoint, DirectRooms, Flush, HistoryActor,
    Nudge, OpenDirect, ReadMarker, SetReadMarker, Shared, StartRoom, WriteHealth, WriteQueue,
};

/// Where the history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// An SQLite file (`DB_PATH`), created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`DATABASE_URL`), shared by the nodes of a
    /// cluster.
    Postgres(String),
}

/// Messages of one room in id order, and whether more exist beyond them
/// (older ones for [`History::recent`] and [`Cursor::Before`], newer ones
/// for [`History::after`] and [`Cursor::After`]).
pub type Page = (Vec<ChatMessage>, bool);

/// A change on its way to storage, with the room to tell once stored.
pub struct PendingWrite {
    pub room: RoomName,
    pub user: UserName,
    pub change: NewChange,
    pub reply: Recipient<MessagesStored>,
    /// Its place in the backlog, handed back to the room with the answer.
    pub admitted: Admitted,
}

/// The answer to consecutive [`PendingWrite`]s of one room, in the order
/// they were queued: each stored message with its id and timestamp, or why
/// it could not be stored; and their places in the backlog, which the room
/// keeps until it has handed the messages to its members. Handled by the
/// room; sent by the history writer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MessagesStored(pub Answers, pub Admitted);

/// One room's answers to a run of its consecutive writes.
pub type Answers = Vec<Result<Stored, StoreError>>;

/// What became of one change, as its room passes it on.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// Stored: it goes to every member, as broadcast.
    New(ChatMessage),
    /// Nothing was stored; its sender alone gets this frame: the original
    /// of a repeated key, or a reaction's unchanged state (id 0).
    Reply(ChatMessage),
    /// Not stored; its sender gets this error.
    Refused(Refusal),
}

/// What a room starts from (see [`History::start_room`]).
#[derive(Debug, Default)]
pub struct Start {
    /// The newest chats in their current state, and whether older exist.
    pub chats: Page,
    /// The newest changes as broadcast, and whether older exist.
    pub changes: Page,
    /// The mutes and bans in force.
    pub sanctions: backend::Sanctions,
    /// A direct-message room's stored pair (sorted), if it has one.
    pub pair: Option<[UserName; 2]>,
}

/// Which page of a room's history REST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest messages, or those with `id <` the given one.
    Before(Option<MessageId>),
    /// The oldest messages with `id >` the given one.
    After(MessageId),
}

/// The handle the rest of the server holds. Cheap to clone.
#[derive(Clone)]
pub struct History {
    /// The one writer thread. Reads that must see every accepted message
    /// (a room starting, `since` recovery) go here too.
    writer: Addr<HistoryActor>,
    /// Reader threads for REST.
    readers: Addr<HistoryActor>,
    queue: Arc<WriteQueue>,
    health: Arc<Mutex<WriteHealth>>,
    /// One [`CheckWrite`] at a time from `/health`; the others wait for
    /// its outcome instead of queueing more.
    checking: Arc<tokio::sync::Mutex<()>>,
}

/// Makes one worker thread's backend.
type Connect = Box<dyn Fn() -> Box<dyn Backend> + Send + Sync>;

/// Reader threads: REST reads are short, two keep one slow query from
/// holding up the rest.
const READER_THREADS: usize = 2;

/// A worker's answer, or [`StoreError::Stopped`] if the worker is gone.
fn answer<T>(sent: Result<Result<T, StoreError>, MailboxError>) -> Result<T, StoreError> {
    sent.unwrap_or(Err(StoreError::Stopped))
}

impl History {
    /// Prepares the database (creates it if it is an SQLite file that does
    /// not exist yet, runs pending migrations) and starts the writer and
    /// reader threads. Must run inside an actix `System`.
    pub fn start(storage: &Storage, metrics: Arc<Metrics>) -> Result<History, StoreError> {
        let queue = Arc::new(WriteQueue::default());
        let shared = Shared {
            health: Arc::new(Mutex::new(WriteHealth::default())),
            metrics,
        };
        // The one place that knows which backend serves: how to make the
        // writer's and a reader's connection to it.
        let (writer_backend, reader_backend): (Connect, Connect) = match storage {
            Storage::Sqlite(path) => {
                sqlite::prepare(path)?;
                let (w, r) = (path.clone(), path.clone());
                (
                    Box::new(move || Box::new(SqliteBackend::writer(&w))),
                    Box::new(move || Box::new(SqliteBackend::reader(&r))),
                )
            }
            Storage::Postgres(url) => {
                postgres::prepare(url)?;
                let (w, r, metrics) = (url.clone(), url.clone(), shared.metrics.clone());
                (
                    Box::new(move || Box::new(PostgresBackend::writer(&w, metrics.clone()))),
                    Box::new(move || Box::new(PostgresBackend::reader(&r))),
                )
            }
        };
        let writer = {
            let (queue, shared) = (queue.clone(), shared.clone());
            SyncArbiter::start(1, move || {
                name_this_thread("history-write");
                HistoryActor::writer(writer_backend(), queue.clone(), &shared)
            })
        };
        let readers = {
            let shared = shared.clone();
            // The factory runs on each reader's own thread as it starts.
            let names = Numbered::new("history-read");
            SyncArbiter::start(READER_THREADS, move || {
                names.name_this_thread();
                HistoryActor::reader(reader_backend(), &shared)
            })
        };
        // Start-up just opened and migrated the database: it takes writes.
        shared.metrics.store_writable.set(1);
        Ok(History {
            writer,
            readers,
            queue,
            health: shared.health,
            checking: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Queues a change for the next transaction. Its room hears
    /// [`MessagesStored`] when it is durable.
    pub fn store(&self, write: PendingWrite) {
        self.queue
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(write);
        if !self.queue.nudged.swap(true, Ordering::SeqCst) {
            self.writer.do_send(Nudge);
        }
    }

    /// What `room` starts from: its newest `limit` chats in their current
    /// state and its newest `limit` changes as broadcast, including every
    /// change accepted before the call (it commits what is queued first).
    pub async fn start_room(&self, room: &RoomName, limit: usize) -> Result<Start, StoreError> {
        let read = StartRoom {
            room: room.clone(),
            limit,
        };
        answer(self.writer.send(read).await)
    }

    /// The oldest `limit` changes of `room` with `after < id <= up_to`, as
    /// broadcast, oldest first, and whether more exist in that range;
    /// including every change accepted before the call. What a room reads
    /// for a client recovering with `since`.
    pub async fn after(
        &self,
        room: &RoomName,
        after: MessageId,
        up_to: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let read = ChangesAfter {
            room: room.clone(),
            after,
            up_to,
            limit,
        };
        answer(self.writer.send(read).await)
    }

    /// Cluster mode: the oldest `limit` committed changes of `room` with an
    /// id above `after`, as broadcast, and whether more exist: what other
    /// nodes stored. Read on the reader threads, so it never waits behind
    /// this node's commits.
    pub async fn catch_up(
        &self,
        room: &RoomName,
        after: MessageId,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let read = ChangesAfter {
            room: room.clone(),
            after,
            up_to: None,
            limit,
        };
        answer(self.readers.send(read).await)
    }

    /// A page of `room`'s committed chats in their current state, for
    /// REST. Read on the reader threads, so it never waits behind a commit.
    pub async fn page(
        &self,
        room: &RoomName,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let read = ChatsPage {
            room: room.clone(),
            cursor,
            limit,
        };
        answer(self.readers.send(read).await)
    }

    /// How many chats `room` has stored.
    pub async fn count(&self, room: &RoomName) -> Result<i64, StoreError> {
        let read = ChatCount { room: room.clone() };
        answer(self.readers.send(read).await)
    }

    /// `user`'s read marker in `room` (0 when none) and how many chats
    /// above it, up to `up_to`, are unread (other users', not deleted). Read on the reader threads:
    /// everything up to `up_to` (what the room broadcast) is committed.
    pub async fn read_marker(
        &self,
        room: &RoomName,
        user: &UserName,
        up_to: MessageId,
    ) -> Result<(MessageId, i64), StoreError> {
        let read = ReadMarker {
            room: room.clone(),
            user: user.clone(),
            up_to,
        };
        answer(self.readers.send(read).await)
    }

    /// Moves `user`'s read marker in `room` forward to `id`; answers with
    /// the stored marker once it is durable.
    pub async fn set_read_marker(
        &self,
        room: &RoomName,
        user: &UserName,
        id: MessageId,
    ) -> Result<MessageId, StoreError> {
        let write = SetReadMarker {
            room: room.clone(),
            user: user.clone(),
            id,
        };
        answer(self.writer.send(write).await)
    }

    /// Stores the pair of the direct-message room `room` (the two users,
    /// sorted) unless it has one; answers once it is durable.
    pub async fn open_direct(
        &self,
        room: &RoomName,
        users: &[UserName; 2],
    ) -> Result<(), StoreError> {
        let write = OpenDirect {
            room: room.clone(),
            users: users.clone(),
        };
        answer(self.writer.send(write).await)
    }

    /// `user`'s direct-message rooms, the most recently active first, at
    /// most `limit`. Read on the reader threads.
    pub async fn direct_rooms(
        &self,
        user: &UserName,
        limit: usize,
    ) -> Result<Vec<DirectRoom>, StoreError> {
        let read = DirectRooms {
            user: user.clone(),
            limit,
        };
        answer(self.readers.send(read).await)
    }

    /// Whether the database takes writes: `Err` with a plain reason while
    /// the last commit attempt failed or the file is gone, or when the
    /// writer does not answer within `wait` (a lock held elsewhere, a
    /// stuck disk). Answers from the last attempt when it is under a
    /// second old, else has the writer make a small real write.
    pub async fn write_health(&self, wait: Duration) -> Result<(), String> {
        let fresh = || {
            self.health
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .fresh(Instant::now())
        };
        if let Some(outcome) = fresh() {
            return outcome;
        }
        let check = async {
            let _turn = self.checking.lock().await;
            if let Some(outcome) = fresh() {
                return outcome;
            }
            self.writer
                .send(CheckWrite)
                .await
                .unwrap_or_else(|_| Err(StoreError::Stopped.reason()))
        };
        tokio::time::timeout(wait, check).await.unwrap_or_else(|_| {
            Err(format!(
                "the database did not answer within {} s",
                wait.as_secs_f64()
            ))
        })
    }

    /// Waits until everything queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        answer(self.writer.send(Flush).await)
    }

    /// Leaves the database complete in its own files (used at shutdown,
    /// after [`History::flush`]), when they are sound.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        answer(self.writer.send(Checkpoint).await)
    }
}
