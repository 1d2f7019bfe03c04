//! [`HistoryActor`]: the threads that talk to the database, on `SyncArbiter`
//! threads because every database call blocks. One arbiter with a single
//! thread is the writer; a second arbiter of reader threads answers REST
//! queries without waiting behind commits. What they say to the database
//! goes through a [`Backend`]; this module is the same for every backend.
//!
//! Writes use group commit. Rooms put changes (chats, edits, deletes,
//! reactions) on a shared queue
//! ([`super::History::store`]) and nudge the writer; the writer takes what
//! is queued, oldest first and at most [`MAX_BATCH`] messages, and commits
//! it in one transaction. A lone message commits at once; messages that
//! arrive while a commit is in flight wait and go together in the next one,
//! so a flood pays one fsync per batch. While messages remain queued the
//! writer nudges itself again, so a backlog (after the store stalled)
//! drains in several commits, in queue order. How much can be queued at
//! all is bounded before it gets here: each write carries its place in the
//! server's [`Backlog`](crate::backlog::Backlog).
//! Each message's room hears [`MessagesStored`] once its batch is durable,
//! in queue order, and only then broadcasts it. A room's messages that are
//! consecutive in a batch come back in one `MessagesStored`, so the room
//! can hand each member all of them at once (one mailbox message and one
//! socket write per member per batch instead of one per message).
//!
//! The writer keeps the write path's health for `/health`
//! ([`WriteHealth`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::backend::{Backend, Inserted, NewRow, Outcome};
use super::direct_rooms::DirectRoom;
use super::rows::broadcast_form;
use super::{Answers, Cursor, MessagesStored, Page, PendingWrite, Start, StoreError, Stored};
use crate::backlog::Admitted;
use crate::metrics::Metrics;
use crate::protocol::{now_millis, MessageId, RoomName, UserName};

/// One answer on its way to its room: where to, what, and the write's place.
type Reply = (
    Recipient<MessagesStored>,
    Result<Stored, StoreError>,
    Admitted,
);

/// What a change's sender (or everyone) is told, from its outcome.
fn answer_of(row: &NewRow<'_>, outcome: Outcome) -> Stored {
    match outcome {
        Outcome::Stored(inserted) => Stored::New(broadcast_form(row, &inserted)),
        Outcome::Refused(refusal) => Stored::Refused(refusal),
        Outcome::Repeat(original) => Stored::Reply(*original),
        Outcome::Unchanged { on } => {
            // Nothing was stored, so the frame has no id of its own: 0.
            let mut state = broadcast_form(
                row,
                &Inserted {
                    id: 0,
                    seq: None,
                    created_at: row.created_at,
                    deleted_for: None,
                },
            );
            state.on = on;
            Stored::Reply(state)
        }
    }
}

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
pub(super) struct WriteQueue {
    pub(super) pending: Mutex<VecDeque<PendingWrite>>,
    /// True while a [`Flush`] is on its way to the writer; saves sending one
    /// nudge per message during a flood.
    pub(super) nudged: AtomicBool,
}

/// Commit everything queued so far, in batches of at most [`MAX_BATCH`].
/// Answered once it is durable, or with the first failure (what was queued
/// after the failed batch stays queued for the next nudge).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub(super) struct Flush;

/// Commit the next batch; sent by [`History::store`] and by the writer to
/// itself while messages remain queued.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Nudge;

/// What a room starts from: its newest chats in their current state and
/// its newest changes as broadcast. Sent to the writer, which flushes
/// first, so a room that starts sees every change accepted before it.
#[derive(Message)]
#[rtype(result = "Result<Start, StoreError>")]
pub(super) struct StartRoom {
    pub room: RoomName,
    pub limit: usize,
}

/// A page of a room's chats in their current state (REST).
#[derive(Message)]
#[rtype(result = "Result<Page, StoreError>")]
pub(super) struct ChatsPage {
    pub room: RoomName,
    pub cursor: Cursor,
    pub limit: usize,
}

/// The oldest `limit` changes with `after < id <= up_to`, oldest first, as
/// broadcast, and whether more exist in that range. On the writer it
/// flushes first.
#[derive(Message)]
#[rtype(result = "Result<Page, StoreError>")]
pub(super) struct ChangesAfter {
    pub room: RoomName,
    pub after: MessageId,
    pub up_to: Option<MessageId>,
    pub limit: usize,
}

/// How many chats a room has stored.
#[derive(Message)]
#[rtype(result = "Result<i64, StoreError>")]
pub(super) struct ChatCount {
    pub room: RoomName,
}

/// A user's read marker in a room and the unread chats up to `up_to`.
#[derive(Message)]
#[rtype(result = "Result<(MessageId, i64), StoreError>")]
pub(super) struct ReadMarker {
    pub room: RoomName,
    pub user: UserName,
    pub up_to: MessageId,
}

/// Move a user's read marker forward; answered with the stored marker.
#[derive(Message)]
#[rtype(result = "Result<MessageId, StoreError>")]
pub(super) struct SetReadMarker {
    pub room: RoomName,
    pub user: UserName,
    pub id: MessageId,
}

/// Store a direct-message room's pair unless it has one.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub(super) struct OpenDirect {
    pub room: RoomName,
    pub users: [UserName; 2],
}

/// A user's direct-message rooms, the most recently active first.
#[derive(Message)]
#[rtype(result = "Result<Vec<DirectRoom>, StoreError>")]
pub(super) struct DirectRooms {
    pub user: UserName,
    pub limit: usize,
}

/// Whether the database takes writes, for `/health`: the outcome of the
/// last commit attempt if it is recent, else of a small real write made
/// now. `Err` is a plain reason.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub(super) struct CheckWrite;

/// Leave the database complete in its own files, for a stop (see
/// [`Backend::checkpoint`]).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub(super) struct Checkpoint;

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
    backend: Box<dyn Backend>,
    /// Shared with [`super::History`], which answers `/health` from it.
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
    /// The writer: the one thread that commits, owning the queue.
    pub(super) fn writer(
        backend: Box<dyn Backend>,
        queue: Arc<WriteQueue>,
        shared: &Shared,
    ) -> HistoryActor {
        HistoryActor::new(backend, Some(queue), shared)
    }

    /// A reader: answers reads of what is committed.
    pub(super) fn reader(backend: Box<dyn Backend>, shared: &Shared) -> HistoryActor {
        HistoryActor::new(backend, None, shared)
    }

    fn new(
        backend: Box<dyn Backend>,
        queue: Option<Arc<WriteQueue>>,
        shared: &Shared,
    ) -> HistoryActor {
        HistoryActor {
            backend,
            health: shared.health.clone(),
            queue,
            last_millis: 0,
            metrics: shared.metrics.clone(),
        }
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
        let rows: Vec<NewRow<'_>> = batch
            .iter()
            .map(|w| NewRow {
                room: &w.room,
                user: &w.user,
                change: &w.change,
                created_at: millis,
            })
            .collect();
        let started = Instant::now();
        let result = self.backend.insert_batch(&rows);
        self.record_health(&result);
        self.metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.store_batch_size.observe(batch.len() as f64);
        log::debug!(
            "group commit of {} changes: {:?}",
            batch.len(),
            result.is_ok()
        );
        let result = match result {
            Ok(outcomes) => {
                let answers: Vec<Stored> = rows
                    .iter()
                    .zip(outcomes)
                    .map(|(row, outcome)| answer_of(row, outcome))
                    .collect();
                drop(rows);
                let stored = answers
                    .iter()
                    .filter(|a| matches!(a, Stored::New(_)))
                    .count();
                self.metrics.messages_stored.inc_by(stored as u64);
                reply_in_runs(
                    batch
                        .into_iter()
                        .zip(answers)
                        .map(|(write, answer)| (write.reply, Ok(answer), write.admitted)),
                );
                Ok(())
            }
            Err(e) => {
                drop(rows);
                log::error!("could not store {} changes: {e}", batch.len());
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

impl Handler<StartRoom> for HistoryActor {
    type Result = Result<Start, StoreError>;
    fn handle(&mut self, msg: StartRoom, ctx: &mut Self::Context) -> Self::Result {
        // A failed flush has already told its rooms; the read goes on.
        let _ = self.flush();
        self.nudge_if_queued(ctx);
        Ok(Start {
            chats: self.backend.chats_before(&msg.room, None, msg.limit)?,
            changes: self.backend.newest_changes(&msg.room, msg.limit)?,
            sanctions: self.backend.sanctions(&msg.room, now_millis())?,
            // Only a direct-message room has a pair to read.
            pair: match crate::direct::is_direct(&msg.room) {
                true => self.backend.direct_pair(&msg.room)?,
                false => None,
            },
        })
    }
}

impl Handler<ChatsPage> for HistoryActor {
    type Result = Result<Page, StoreError>;
    fn handle(&mut self, msg: ChatsPage, _: &mut Self::Context) -> Self::Result {
        match msg.cursor {
            Cursor::Before(before) => self.backend.chats_before(&msg.room, before, msg.limit),
            Cursor::After(after) => self.backend.chats_after(&msg.room, after, msg.limit),
        }
    }
}

impl Handler<ChangesAfter> for HistoryActor {
    type Result = Result<Page, StoreError>;
    fn handle(&mut self, msg: ChangesAfter, ctx: &mut Self::Context) -> Self::Result {
        let _ = self.flush();
        self.nudge_if_queued(ctx);
        self.backend
            .changes_after(&msg.room, msg.after, msg.up_to, msg.limit)
    }
}

impl Handler<ChatCount> for HistoryActor {
    type Result = Result<i64, StoreError>;
    fn handle(&mut self, msg: ChatCount, _: &mut Self::Context) -> Self::Result {
        self.backend.count_chats(&msg.room)
    }
}

impl Handler<ReadMarker> for HistoryActor {
    type Result = Result<(MessageId, i64), StoreError>;
    fn handle(&mut self, msg: ReadMarker, _: &mut Self::Context) -> Self::Result {
        self.backend.read_marker(&msg.room, &msg.user, msg.up_to)
    }
}

impl Handler<SetReadMarker> for HistoryActor {
    type Result = Result<MessageId, StoreError>;
    fn handle(&mut self, msg: SetReadMarker, _: &mut Self::Context) -> Self::Result {
        let result = self.backend.set_read_marker(&msg.room, &msg.user, msg.id);
        self.record_health(&result);
        result
    }
}

impl Handler<OpenDirect> for HistoryActor {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: OpenDirect, _: &mut Self::Context) -> Self::Result {
        let result = self
            .backend
            .open_direct(&msg.room, &msg.users, now_millis());
        self.record_health(&result);
        result
    }
}

impl Handler<DirectRooms> for HistoryActor {
    type Result = Result<Vec<DirectRoom>, StoreError>;
    fn handle(&mut self, msg: DirectRooms, _: &mut Self::Context) -> Self::Result {
        self.backend.direct_rooms(&msg.user, msg.limit)
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
        let result = self.backend.check_write(millis);
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
        self.backend.checkpoint()
    }
}

/// What the workers and the handle share.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) health: Arc<Mutex<WriteHealth>>,
    pub(super) metrics: Arc<Metrics>,
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
