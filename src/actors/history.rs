//! `HistoryActor`: diesel against SQLite on `SyncArbiter` threads, because
//! every SQLite call blocks. One arbiter with a single thread is the writer
//! (SQLite has one writer); a second arbiter of reader threads answers REST
//! queries without waiting behind commits.
//!
//! Writes use group commit. Rooms put chat messages on a shared queue
//! ([`History::store`]) and nudge the writer; the writer takes what is
//! queued, oldest first and at most [`MAX_BATCH`] messages, and commits it in
//! one transaction. A lone message commits at once; messages that arrive
//! while a commit is in flight wait and go together in the next one, so a
//! flood pays one fsync per batch. While messages remain queued the writer
//! nudges itself again, so a backlog (after the store stalled) drains in
//! several commits, in queue order. How much can be queued at all is bounded
//! before it gets here: each write carries its place in the server's
//! [`Backlog`](crate::backlog::Backlog).
//! Each message's room hears [`MessagesStored`] once its batch is durable, in
//! queue order, and only then broadcasts it. A room's messages that are
//! consecutive in a batch come back in one `MessagesStored`, so the room can
//! hand each member all of them at once (one mailbox message and one socket
//! write per member per batch instead of one per message).
//!
//! Only the writer keeps a connection open; it checks the database's files
//! before each use ([`HistoryActor::check_files`]) and keeps the write
//! path's health for `/health` ([`WriteHealth`]). Readers open a
//! connection per query, so no idle connection keeps a vanished file or a
//! stale shared-memory index alive.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::backlog::Admitted;
use crate::metrics::Metrics;
use crate::protocol::{now_millis, ChatMessage, MessageId, RoomName, UserName};
use crate::store::files::{DbFiles, Snapshot};
use crate::store::{self, models::NewMessage, StoreError};

/// A chat message waiting for the writer, with the room to tell once stored.
pub struct PendingWrite {
    pub room: RoomName,
    pub user: UserName,
    pub text: String,
    pub reply: Recipient<MessagesStored>,
    /// Its place in the backlog, handed back to the room with the answer.
    pub admitted: Admitted,
}

/// The answer to consecutive [`PendingWrite`]s of one room, in the order
/// they were queued: each stored message with its id and timestamp, or why
/// it could not be stored; and their places in the backlog, which the room
/// keeps until it has handed the messages to its members.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MessagesStored(pub Answers, pub Admitted);

/// One room's answers to a run of its consecutive writes.
type Answers = Vec<Result<ChatMessage, StoreError>>;

/// One answer on its way to its room: where to, what, and the write's place.
type Reply = (
    Recipient<MessagesStored>,
    Result<ChatMessage, StoreError>,
    Admitted,
);

/// Sends each room its answers, one message per run of consecutive writes
/// from the same room, keeping the queue's order.
fn reply_in_runs(answers: impl IntoIterator<Item = Reply>) {
    let mut run: Option<(Recipient<MessagesStored>, Answers, Admitted)> = None;
    for (reply, answer, admitted) in answers {
        match &mut run {
            Some((to, answers, places)) if *to == reply => {
                answers.push(answer);
                places.merge(admitted);
            }
            _ => {
                if let Some((to, answers, places)) = run.replace((reply, vec![answer], admitted)) {
                    to.do_send(MessagesStored(answers, places));
                }
            }
        }
    }
    if let Some((to, answers, places)) = run {
        to.do_send(MessagesStored(answers, places));
    }
}

/// The most messages one transaction commits. A backlog drains in several
/// commits of this size instead of one huge one, so each batch's answers
/// (and what rooms encode from them) stay small and the writer reads its
/// mailbox between batches. A constant: 256 rows of at most 16 KB is a
/// commit of milliseconds, and at the fsync rates of real disks it still
/// commits tens of thousands of messages a second, far more than the rooms
/// can fan out.
pub const MAX_BATCH: usize = 256;

/// Messages accepted but not yet given to a transaction.
#[derive(Default)]
struct WriteQueue {
    pending: Mutex<VecDeque<PendingWrite>>,
    /// True while a [`Flush`] is on its way to the writer; saves sending one
    /// nudge per message during a flood.
    nudged: AtomicBool,
}

/// Commit everything queued so far, in batches of at most [`MAX_BATCH`].
/// Answered once it is durable, or with the first failure (what was queued
/// after the failed batch stays queued for the next nudge).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

/// Commit the next batch; sent by [`History::store`] and by the writer to
/// itself while messages remain queued.
#[derive(Message)]
#[rtype(result = "()")]
struct Nudge;

/// The newest `limit` messages of a room, oldest first, and whether older
/// ones exist. Sent to the writer, which flushes first, so a room that starts
/// sees every message accepted before it.
#[derive(Message)]
#[rtype(result = "Result<(Vec<ChatMessage>, bool), StoreError>")]
pub struct RecentMessages {
    pub room: RoomName,
    pub limit: usize,
}

/// The newest `limit` messages with `id < before` (`None`: the newest page),
/// oldest first, and whether older ones exist.
#[derive(Message)]
#[rtype(result = "Result<(Vec<ChatMessage>, bool), StoreError>")]
pub struct MessagesBefore {
    pub room: RoomName,
    pub before: Option<MessageId>,
    pub limit: usize,
}

/// The oldest `limit` messages with `after < id <= up_to`, oldest first, and
/// whether more exist in that range.
#[derive(Message)]
#[rtype(result = "Result<(Vec<ChatMessage>, bool), StoreError>")]
pub struct MessagesAfter {
    pub room: RoomName,
    pub after: MessageId,
    pub up_to: Option<MessageId>,
    pub limit: usize,
}

/// How many messages a room has stored.
#[derive(Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub struct MessageCount {
    pub room: RoomName,
}

/// Whether the database takes writes, for `/health`: the outcome of the
/// last commit attempt if it is recent, else of a small real write made
/// now. `Err` is a plain reason.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct CheckWrite;

/// Copy the log into the database file, for a stop: connections close
/// without a checkpoint (see `store::open`), so without this the newest
/// messages would be in the `-wal` only.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Checkpoint;

/// How long a commit attempt's outcome stands for the write path's health.
/// `/health` is unauthenticated, so however often it is asked, the writer
/// makes at most one check write per this interval.
const HEALTH_FRESH: Duration = Duration::from_secs(1);

/// The outcome of the writer's last commit attempt (a batch or a
/// [`CheckWrite`]), and when it was.
#[derive(Debug, Default)]
pub struct WriteHealth {
    last: Option<(Instant, Result<(), String>)>,
}

impl WriteHealth {
    pub fn record(&mut self, at: Instant, outcome: Result<(), String>) {
        self.last = Some((at, outcome));
    }

    /// The last outcome, if it is recent enough to answer with.
    pub fn fresh(&self, now: Instant) -> Option<Result<(), String>> {
        match &self.last {
            Some((at, outcome)) if now.saturating_duration_since(*at) < HEALTH_FRESH => {
                Some(outcome.clone())
            }
            _ => None,
        }
    }
}

/// One thread's access to the database. The writer also owns the queue.
pub struct HistoryActor {
    path: PathBuf,
    files: DbFiles,
    /// The writer's connection: opened lazily, and dropped after a failure
    /// so a database that comes back (a full disk freed, a lock released,
    /// a file restored) is used again without a restart. Readers keep none.
    conn: Option<SqliteConnection>,
    /// The files as `conn` found them when it opened, to notice when they
    /// are no longer the ones at `DB_PATH`.
    held: Option<Snapshot>,
    /// Shared with [`History`], which answers `/health` from it.
    health: Arc<Mutex<WriteHealth>>,
    /// `Some` on the writer only.
    queue: Option<Arc<WriteQueue>>,
    /// Timestamps never go backwards, even if the wall clock does, so they
    /// rise with ids.
    last_millis: i64,
    metrics: Arc<Metrics>,
}

impl Actor for HistoryActor {
    type Context = SyncContext<Self>;
}

impl HistoryActor {
    fn new(path: &Path, queue: Option<Arc<WriteQueue>>, shared: &Shared) -> HistoryActor {
        HistoryActor {
            path: path.to_path_buf(),
            files: DbFiles::new(path),
            conn: None,
            held: None,
            health: shared.health.clone(),
            queue,
            last_millis: 0,
            metrics: shared.metrics.clone(),
        }
    }

    /// The writer's connection, opened if there is none. Only a database
    /// file that exists is opened, and only when no file is frozen.
    fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        if self.conn.is_none() {
            self.files.snapshot().may_open()?;
            let conn = store::open_existing(&self.path)?;
            // SQLite has created a missing -wal and -shm by now; if it has
            // not (another connection of ours still maps an unlinked
            // -shm), this one would share that stale index: try again later.
            let held = self.files.snapshot();
            held.may_open_beside()?;
            self.held = Some(held);
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connection was just opened"))
    }

    /// Before every use of the writer's connection (so right before each
    /// batch's transaction): are the files at `DB_PATH` still the ones it
    /// holds, and writable? If not, the connection is dropped and the
    /// caller fails, so nothing is acknowledged that a restart would not
    /// find. Before dropping it, the connection copies its log into the
    /// database file when that is safe: after an unlinked `-wal`, that is
    /// what keeps the messages already acknowledged.
    fn check_files(&mut self) -> Result<(), StoreError> {
        let (Some(conn), Some(held)) = (self.conn.as_mut(), self.held.as_ref()) else {
            return Ok(());
        };
        let now = self.files.snapshot();
        let Err(problem) = now.compare(held) else {
            self.held = Some(now.grown(held));
            return Ok(());
        };
        log::error!(
            "{problem} ({}): closing the database connection",
            self.path.display()
        );
        if now.may_checkpoint(held) {
            match store::checkpoint(conn) {
                Ok(true) => log::warn!("copied the log into the database file before closing it"),
                Ok(false) => log::error!("could not copy all of the log into the database file (a reader held it); messages stored since the last checkpoint may be lost"),
                Err(e) => log::error!("could not copy the log into the database file: {e}; messages stored since the last checkpoint may be lost"),
            }
        }
        self.conn = None;
        self.held = None;
        Err(problem.into())
    }

    /// Runs `f` on a connection. The writer checks its files first and
    /// drops its connection if anything fails, so the next call reopens
    /// it. A reader opens a connection for this query only, when all three
    /// files are there and usable.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.queue.is_none() {
            self.files.snapshot().may_open_beside()?;
            let mut conn = store::open_existing(&self.path)?;
            return f(&mut conn);
        }
        let result = self.check_files().and_then(|()| self.conn()).and_then(f);
        if result.is_err() {
            self.conn = None;
            self.held = None;
        }
        result
    }

    /// Records a commit attempt's outcome for `/health` and the metrics.
    fn record_health<T>(&self, result: &Result<T, StoreError>) {
        let outcome = result.as_ref().map(|_| ()).map_err(StoreError::reason);
        self.metrics.store_writable.set(i64::from(outcome.is_ok()));
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(Instant::now(), outcome);
    }

    /// Commits the oldest queued writes, at most [`MAX_BATCH`], in one
    /// transaction and tells each room. Returns how many it took.
    fn commit_batch(&mut self) -> (usize, Result<(), StoreError>) {
        let Some(queue) = self.queue.clone() else {
            return (0, Ok(()));
        };
        let batch: Vec<PendingWrite> = {
            let mut pending = queue.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let n = pending.len().min(MAX_BATCH);
            pending.drain(..n).collect()
        };
        if batch.is_empty() {
            return (0, Ok(()));
        }
        let taken = batch.len();
        let millis = now_millis().max(self.last_millis);
        self.last_millis = millis;
        let rows: Vec<NewMessage<'_>> = batch
            .iter()
            .map(|w| NewMessage {
                room: &w.room,
                user_name: &w.user,
                text: &w.text,
                created_at: millis,
            })
            .collect();
        let started = Instant::now();
        let result = self.with_conn(|conn| store::insert_batch(conn, &rows));
        self.record_health(&result);
        drop(rows);
        self.metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.store_batch_size.observe(batch.len() as f64);
        log::debug!(
            "group commit of {} messages: {:?}",
            batch.len(),
            result.is_ok()
        );
        let result = match result {
            Ok(ids) => {
                self.metrics.messages_stored.inc_by(ids.len() as u64);
                let timestamp = crate::protocol::format_timestamp(millis);
                reply_in_runs(batch.into_iter().zip(ids).map(|(write, id)| {
                    let message = ChatMessage {
                        id,
                        room: write.room,
                        user: write.user,
                        text: write.text,
                        timestamp: timestamp.clone(),
                    };
                    (write.reply, Ok(message), write.admitted)
                }));
                Ok(())
            }
            Err(e) => {
                log::error!("could not store {} chat messages: {e}", batch.len());
                reply_in_runs(
                    batch
                        .into_iter()
                        .map(|w| (w.reply, Err(e.clone()), w.admitted)),
                );
                Err(e)
            }
        };
        (taken, result)
    }

    /// Commits everything queued when called, batch by batch, stopping at
    /// the first failure (that batch's rooms have been told; the rest stays
    /// queued and is tried again on the next nudge).
    fn flush(&mut self) -> Result<(), StoreError> {
        let Some(queue) = self.queue.clone() else {
            return Ok(());
        };
        let mut left = queue
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        while left > 0 {
            let (taken, result) = self.commit_batch();
            result?;
            if taken == 0 {
                break;
            }
            left = left.saturating_sub(taken);
        }
        Ok(())
    }

    /// Nudges the writer again if writes are still queued and no nudge is
    /// on its way, so a backlog keeps draining.
    fn nudge_if_queued(&self, ctx: &mut SyncContext<Self>) {
        let Some(queue) = &self.queue else {
            return;
        };
        let queued = !queue
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if queued && !queue.nudged.swap(true, Ordering::SeqCst) {
            ctx.address().do_send(Nudge);
        }
    }
}

impl Handler<Nudge> for HistoryActor {
    type Result = ();
    fn handle(&mut self, _: Nudge, ctx: &mut Self::Context) {
        if let Some(queue) = &self.queue {
            queue.nudged.store(false, Ordering::SeqCst);
        }
        // A failed batch has told its rooms; the next one tries again.
        let _ = self.commit_batch();
        self.nudge_if_queued(ctx);
    }
}

impl Handler<Flush> for HistoryActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        let result = self.flush();
        self.nudge_if_queued(ctx);
        result
    }
}

impl Handler<RecentMessages> for HistoryActor {
    type Result = Result<(Vec<ChatMessage>, bool), StoreError>;
    fn handle(&mut self, msg: RecentMessages, ctx: &mut Self::Context) -> Self::Result {
        // A failed flush has already told its rooms; the read goes on.
        let _ = self.flush();
        self.nudge_if_queued(ctx);
        self.with_conn(|conn| store::messages_before(conn, &msg.room, None, msg.limit))
    }
}

impl Handler<MessagesBefore> for HistoryActor {
    type Result = Result<(Vec<ChatMessage>, bool), StoreError>;
    fn handle(&mut self, msg: MessagesBefore, ctx: &mut Self::Context) -> Self::Result {
        let _ = self.flush();
        self.nudge_if_queued(ctx);
        self.with_conn(|conn| store::messages_before(conn, &msg.room, msg.before, msg.limit))
    }
}

impl Handler<MessagesAfter> for HistoryActor {
    type Result = Result<(Vec<ChatMessage>, bool), StoreError>;
    fn handle(&mut self, msg: MessagesAfter, ctx: &mut Self::Context) -> Self::Result {
        let _ = self.flush();
        self.nudge_if_queued(ctx);
        self.with_conn(|conn| {
            store::messages_after(conn, &msg.room, msg.after, msg.up_to, msg.limit)
        })
    }
}

impl Handler<MessageCount> for HistoryActor {
    type Result = Result<i64, StoreError>;
    fn handle(&mut self, msg: MessageCount, _: &mut Self::Context) -> Self::Result {
        self.with_conn(|conn| store::count_messages(conn, &msg.room))
    }
}

impl Handler<CheckWrite> for HistoryActor {
    type Result = Result<(), String>;
    fn handle(&mut self, _: CheckWrite, _: &mut Self::Context) -> Self::Result {
        let fresh = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fresh(Instant::now());
        if let Some(outcome) = fresh {
            return outcome;
        }
        let millis = now_millis();
        let result = self.with_conn(|conn| store::check_write(conn, millis));
        if let Err(e) = &result {
            log::warn!("health check: writing to the database failed: {e}");
        }
        self.record_health(&result);
        result.map_err(|e| e.reason())
    }
}

impl Handler<Checkpoint> for HistoryActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Checkpoint, _: &mut Self::Context) -> Self::Result {
        self.with_conn(store::checkpoint).map(|_| ())
    }
}

/// What the writer and the handle share.
#[derive(Clone)]
struct Shared {
    health: Arc<Mutex<WriteHealth>>,
    metrics: Arc<Metrics>,
}

/// The handle the rest of the server holds: where to queue writes and whom
/// to ask. Cheap to clone.
#[derive(Clone)]
pub struct History {
    /// The one writer thread. Reads that must see every accepted message
    /// (a room starting, `since` recovery) go here too.
    pub writer: Addr<HistoryActor>,
    /// Reader threads for REST.
    pub readers: Addr<HistoryActor>,
    queue: Arc<WriteQueue>,
    health: Arc<Mutex<WriteHealth>>,
    /// One [`CheckWrite`] at a time from `/health`; the others wait for
    /// its outcome instead of queueing more.
    checking: Arc<tokio::sync::Mutex<()>>,
}

/// Reader threads: REST reads are short, two keep one slow query from
/// holding up the rest.
const READER_THREADS: usize = 2;

impl History {
    /// Opens the database, runs pending migrations and starts the writer and
    /// reader threads. Must run inside an actix `System`.
    pub fn start(path: &Path, metrics: Arc<Metrics>) -> Result<History, StoreError> {
        let mut conn = store::open(path)?;
        store::migrate(&mut conn)?;
        // Connections close without a checkpoint (see `store::open`): make
        // one, so the database file alone has the schema.
        if let Err(e) = store::checkpoint(&mut conn) {
            log::warn!("checkpoint after migrations failed: {e}");
        }
        drop(conn);

        let queue = Arc::new(WriteQueue::default());
        let shared = Shared {
            health: Arc::new(Mutex::new(WriteHealth::default())),
            metrics,
        };
        // Start-up just opened and migrated the database: it takes writes.
        shared.metrics.store_writable.set(1);
        let writer = {
            let (path, queue, shared) = (path.to_path_buf(), queue.clone(), shared.clone());
            SyncArbiter::start(1, move || {
                HistoryActor::new(&path, Some(queue.clone()), &shared)
            })
        };
        let readers = {
            let (path, shared) = (path.to_path_buf(), shared.clone());
            SyncArbiter::start(READER_THREADS, move || {
                HistoryActor::new(&path, None, &shared)
            })
        };
        Ok(History {
            writer,
            readers,
            queue,
            health: shared.health,
            checking: Arc::new(tokio::sync::Mutex::new(())),
        })
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
                .unwrap_or_else(|_| Err("the history writer is gone".to_string()))
        };
        tokio::time::timeout(wait, check).await.unwrap_or_else(|_| {
            Err(format!(
                "the database did not answer within {} s",
                wait.as_secs_f64()
            ))
        })
    }

    /// Queues a chat message for the next transaction. Its room hears
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

    /// Waits until everything queued so far is committed (used at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer
            .send(Flush)
            .await
            .map_err(|e| StoreError::Query(format!("history writer is gone: {e}")))?
    }

    /// Copies the log into the database file (used at shutdown, after
    /// [`History::flush`]), when the files are sound.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.writer
            .send(Checkpoint)
            .await
            .map_err(|e| StoreError::Query(format!("history writer is gone: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_answers_for_a_second_then_asks_for_a_new_check() {
        let mut health = WriteHealth::default();
        let start = Instant::now();
        assert_eq!(health.fresh(start), None);
        health.record(start, Err("the disk is full".into()));
        assert_eq!(
            health.fresh(start + Duration::from_millis(999)),
            Some(Err("the disk is full".into()))
        );
        assert_eq!(health.fresh(start + HEALTH_FRESH), None);
        health.record(start + HEALTH_FRESH, Ok(()));
        assert_eq!(health.fresh(start + HEALTH_FRESH), Some(Ok(())));
    }
}
