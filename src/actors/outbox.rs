//! A session's outgoing queue. Rooms push encoded frames into the session's
//! mailbox, the session adds its own (errors, pings, pongs), and every frame
//! counts against `OUTBOX_LIMIT` from the moment it is queued until the HTTP
//! dispatcher takes it off the session's WebSocket context
//! ([`OutboxState::handed_off`]). When a client stops reading, its socket and
//! then the dispatcher's buffer fill up, the dispatcher stops taking frames,
//! and the count tells the room to stop feeding it: the room drops the member
//! and the session closes with 1008 when it next runs (or, if it never runs
//! again, the [`crate::watchdog`] drops the TCP connection). So one slow
//! reader never slows a room, and its memory is bounded by `OUTBOX_LIMIT`
//! frames.
//!
//! [`OutboxState`] is the counting rule, with no actix in it; [`Outbox`] is
//! the rooms' handle on it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;

use super::messages::session::Outgoing;
use crate::protocol::RoomName;

/// The answer to [`OutboxState::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// There was room; the frames are counted.
    Queued,
    /// These frames would pass the bound: nothing was counted, and the
    /// outbox is closed from now on. Told once, to whoever passed it, who
    /// must have the session closed with 1008.
    Overflowed,
    /// The outbox overflowed earlier; nothing more is queued.
    Closed,
}

/// The outgoing state of one connection, shared by its session, every room
/// it is in, the stream that hands its frames to the HTTP dispatcher, and
/// the watchdog.
#[derive(Debug)]
pub(crate) struct OutboxState {
    /// Frames queued (in the mailbox or written into the WebSocket context)
    /// and not yet taken by the dispatcher.
    queued: AtomicUsize,
    /// Of those, the ones already written into the context: the next chunk
    /// the dispatcher takes holds all of them.
    written: AtomicUsize,
    /// Set once, on overflow; afterwards nothing more is queued.
    closed: AtomicBool,
    /// When the dispatcher last polled for frames, in nanoseconds since
    /// `created`. It polls whenever its write buffer has room, and the
    /// heartbeat wakes it at least every HEARTBEAT_INTERVAL, so a
    /// connection that is not polled for long has a socket that stopped
    /// taking data.
    last_polled: AtomicU64,
    created: Instant,
    /// The client started the closing handshake and the session answered
    /// it: once the answer is out, nothing more is to be read or written.
    peer_closed: AtomicBool,
    /// The session gave up on the client (nothing heard for
    /// CLIENT_TIMEOUT): the TCP connection is to end at once, no linger.
    aborted: AtomicBool,
}

impl Default for OutboxState {
    fn default() -> Self {
        OutboxState {
            queued: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            last_polled: AtomicU64::new(0),
            created: Instant::now(),
            peer_closed: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
        }
    }
}

impl OutboxState {
    /// Counts `n` more frames unless that would make more than `limit`
    /// queued. A batch counts each of its frames, so a batch larger than the
    /// room left is refused whole (and closes the outbox), like the frame
    /// that would pass the bound.
    pub(crate) fn reserve(&self, n: usize, limit: usize) -> Reserve {
        if self.is_closed() {
            return Reserve::Closed;
        }
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) <= limit {
            return Reserve::Queued;
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        if self.closed.swap(true, Ordering::Relaxed) {
            Reserve::Closed
        } else {
            Reserve::Overflowed
        }
    }

    /// The session wrote `n` counted frames into its WebSocket context.
    pub(crate) fn written(&self, n: usize) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }

    /// The session dropped `n` counted frames unwritten (after an overflow).
    pub(crate) fn dropped(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// The dispatcher took a chunk: every frame written so far is in it.
    pub(crate) fn handed_off(&self) {
        let n = self.written.swap(0, Ordering::Relaxed);
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Frames queued and not yet taken by the dispatcher.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The dispatcher polled for frames just now.
    pub(crate) fn polled(&self) {
        let nanos = u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_polled.store(nanos, Ordering::Relaxed);
    }

    /// How long ago the dispatcher last polled (since creation if never).
    pub(crate) fn since_polled(&self) -> Duration {
        let last = Duration::from_nanos(self.last_polled.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// The session answered the client's Close frame.
    pub(crate) fn peer_closed(&self) {
        self.peer_closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_peer_closed(&self) -> bool {
        self.peer_closed.load(Ordering::Relaxed)
    }

    /// The session gave up on a client it no longer hears.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }
}

/// The sending side, held by rooms for each member.
#[derive(Clone)]
pub(crate) struct Outbox {
    state: Arc<OutboxState>,
    recipient: Recipient<Outgoing>,
}

/// The session behind an outbox fell too far behind and is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Outbox {
    pub(crate) fn new(state: Arc<OutboxState>, recipient: Recipient<Outgoing>) -> Self {
        Outbox { state, recipient }
    }

    /// Queues `frame` unless the session already holds `limit` frames not
    /// taken by the dispatcher; on the first overflow the session is told
    /// to close.
    pub(crate) fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
        self.reserve(1, limit)?;
        self.recipient.do_send(Outgoing::Frame(frame));
        Ok(())
    }

    /// Queues `frames` in one mailbox message (written in one go) unless
    /// that would make more than `limit` frames not taken by the
    /// dispatcher: every frame of the batch counts.
    pub(crate) fn push_all(&self, frames: Arc<[ByteString]>, limit: usize) -> Result<(), Overflow> {
        self.reserve(frames.len(), limit)?;
        self.recipient.do_send(Outgoing::Frames(frames));
        Ok(())
    }

    /// Tells the session that the room `room` removed it (a moderator's
    /// kick or ban), after the frames already queued: it is no longer in
    /// that room.
    pub(crate) fn removed_from(&self, room: RoomName) {
        self.recipient.do_send(Outgoing::Removed(room));
    }

    fn reserve(&self, n: usize, limit: usize) -> Result<(), Overflow> {
        match self.state.reserve(n, limit) {
            Reserve::Queued => Ok(()),
            Reserve::Overflowed => {
                self.recipient.do_send(Outgoing::Overflowed);
                Err(Overflow)
            }
            Reserve::Closed => Err(Overflow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_count_until_the_dispatcher_takes_them() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(3, 4), Reserve::Queued);
        // The session writes them into its context: still counted.
        outbox.written(3);
        assert_eq!(outbox.queued(), 3);
        assert_eq!(outbox.reserve(1, 4), Reserve::Queued);
        outbox.handed_off();
        assert_eq!(outbox.queued(), 1, "the one still in the mailbox");
        outbox.written(1);
        outbox.handed_off();
        assert_eq!(outbox.queued(), 0);
    }

    #[test]
    fn a_batch_larger_than_the_room_left_is_refused_whole() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(3, 8), Reserve::Queued);
        assert_eq!(outbox.reserve(6, 8), Reserve::Overflowed);
        assert_eq!(outbox.queued(), 3, "nothing of the refused batch counted");
        assert!(outbox.is_closed());
        assert_eq!(outbox.reserve(1, 8), Reserve::Closed, "closed for good");
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_refused_on_an_empty_outbox() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(9, 8), Reserve::Overflowed);
        assert_eq!(outbox.queued(), 0);
    }

    #[test]
    fn the_limit_itself_is_allowed() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(8, 8), Reserve::Queued);
        assert_eq!(outbox.reserve(1, 8), Reserve::Overflowed);
    }

    #[test]
    fn the_overflow_is_told_once() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(2, 1), Reserve::Overflowed);
        assert_eq!(outbox.reserve(2, 1), Reserve::Closed);
        assert_eq!(outbox.reserve(1, 1), Reserve::Closed);
    }

    #[test]
    fn dropped_frames_leave_the_count() {
        let outbox = OutboxState::default();
        assert_eq!(outbox.reserve(5, 8), Reserve::Queued);
        outbox.dropped(5);
        assert_eq!(outbox.queued(), 0);
    }

    #[test]
    fn a_poll_resets_the_time_since_polled() {
        let outbox = OutboxState::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(outbox.since_polled() >= Duration::from_millis(20));
        outbox.polled();
        assert!(outbox.since_polled() < Duration::from_millis(20));
    }
}
