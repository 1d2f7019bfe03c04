//! A session's outgoing queue as the rooms see it. Rooms push encoded frames
//! into the session's mailbox; the session counts them out as it writes them.
//! When a session stops reading, its socket and then its mailbox fill up, and
//! the count tells the room to stop feeding it: the room drops the member and
//! the session closes with 1008 when it next runs. So one slow reader never
//! slows a room, and its memory is bounded by `OUTBOX_LIMIT` frames.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

/// What rooms send a session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Outgoing {
    /// One encoded server frame to write as it is.
    Frame(ByteString),
    /// Several frames, in order: a batch of chat messages. Shared by every
    /// member that gets the same frames, and written in one go.
    Frames(Arc<[ByteString]>),
    /// The outbox passed its bound: drop what is queued, close with 1008.
    Overflowed,
}

/// Counters shared by a session and every room it is in.
#[derive(Debug, Default)]
pub struct OutboxState {
    /// Frames pushed and not yet taken by the session.
    queued: AtomicUsize,
    /// Set once, on overflow; afterwards nothing more is queued.
    closed: AtomicBool,
}

impl OutboxState {
    /// The session took `frames` frames off its mailbox.
    pub fn taken(&self, frames: usize) {
        self.queued.fetch_sub(frames, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The sending side, held by rooms for each member.
#[derive(Clone)]
pub struct Outbox {
    state: Arc<OutboxState>,
    recipient: Recipient<Outgoing>,
}

/// The session behind an outbox fell too far behind and is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Outbox {
    pub fn new(state: Arc<OutboxState>, recipient: Recipient<Outgoing>) -> Self {
        Outbox { state, recipient }
    }

    /// Queues `frame` unless the session already holds `limit` unread
    /// frames; on the first overflow the session is told to close.
    pub fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
        self.reserve(1, limit)?;
        self.recipient.do_send(Outgoing::Frame(frame));
        Ok(())
    }

    /// Queues `frames` in one mailbox message unless the session already
    /// holds `limit` unread frames. A batch is one unit, like a single
    /// frame: the session holds at most `limit - 1` plus one batch (a batch
    /// is at most one group commit of the room's messages).
    pub fn push_all(&self, frames: Arc<[ByteString]>, limit: usize) -> Result<(), Overflow> {
        self.reserve(frames.len(), limit)?;
        self.recipient.do_send(Outgoing::Frames(frames));
        Ok(())
    }

    /// Counts `n` more queued frames, or closes the outbox on overflow.
    fn reserve(&self, n: usize, limit: usize) -> Result<(), Overflow> {
        if self.state.is_closed() {
            return Err(Overflow);
        }
        if self.state.queued.fetch_add(n, Ordering::Relaxed) >= limit {
            self.state.queued.fetch_sub(n, Ordering::Relaxed);
            if !self.state.closed.swap(true, Ordering::Relaxed) {
                self.recipient.do_send(Outgoing::Overflowed);
            }
            return Err(Overflow);
        }
        Ok(())
    }
}
