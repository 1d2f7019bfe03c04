//! A session's outgoing queue. Rooms push encoded frames into the session's
//! mailbox, the session adds its own (errors, pings, pongs), and every frame
//! counts against `OUTBOX_LIMIT` from the moment it is queued until the
//! connection (`http/upgrade.rs`) takes it off the session's WebSocket
//! context to write it ([`OutboxState::handed_off`]). When a client stops
//! reading, its socket fills up, the connection stops taking frames, and
//! the count tells the room to stop feeding it: the room drops the member
//! and the session closes with 1008 when it next runs (or, if it never runs
//! again, the [`crate::watchdog`] drops the TCP connection). So one slow
//! reader never slows a room, and its memory is bounded by `OUTBOX_LIMIT`
//! frames.
//!
//! [`OutboxState`] is the counting rule, with no actix in it; [`Outbox`] is
//! the rooms' handle on it; a [`Receipt`] tells a room when its last
//! delivery has been written, so it can deliver the next at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;

use super::messages::room::Drained;
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
/// it is in, the stream that hands its frames to the connection's writer, and
/// the watchdog.
#[derive(Debug)]
pub(crate) struct OutboxState {
    /// Frames queued (in the mailbox or written into the WebSocket context)
    /// and not yet taken by the connection.
    queued: AtomicUsize,
    /// Of those, the ones already written into the context: the next chunk
    /// the connection takes holds all of them.
    written: AtomicUsize,
    /// Set once, on overflow; afterwards nothing more is queued.
    closed: AtomicBool,
    /// When the connection last polled for frames, in nanoseconds since
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

    /// The connection took a chunk: every frame written so far is in it.
    pub(crate) fn handed_off(&self) {
        let n = self.written.swap(0, Ordering::Relaxed);
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Frames queued and not yet taken by the connection.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The connection polled for frames just now.
    pub(crate) fn polled(&self) {
        let nanos = u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_polled.store(nanos, Ordering::Relaxed);
    }

    /// How long ago the connection last polled (since creation if never).
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
    /// taken by the connection; on the first overflow the session is told
    /// to close.
    pub(crate) fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
        self.reserve(1, limit)?;
        self.recipient.do_send(Outgoing::Frame(frame));
        Ok(())
    }

    /// Queues `frames` in one mailbox message (written in one go) unless
    /// that would make more than `limit` frames not taken by the
    /// dispatcher: every frame of the batch counts. The session drops
    /// `receipt` once it has written them (or dropped them unwritten).
    pub(crate) fn push_all(
        &self,
        frames: Arc<[ByteString]>,
        receipt: Receipt,
        limit: usize,
    ) -> Result<(), Overflow> {
        self.reserve(frames.len(), limit)?;
        self.recipient.do_send(Outgoing::Frames(frames, receipt));
        Ok(())
    }

    /// Tells the session that the room `room` removed it (a moderator's
    /// kick or ban), after the frames already queued, with the `leave` it
    /// writes: one message, so its client cannot read `leave` and join
    /// again before the session knows it is out.
    pub(crate) fn removed_from(&self, room: RoomName, leave: ByteString, limit: usize) {
        let leave = self.reserve(1, limit).is_ok().then_some(leave);
        self.recipient.do_send(Outgoing::Removed(room, leave));
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

/// Added to a delivery's count while the room is still handing it out, so
/// no member's session can bring the count down to the threshold early.
const HANDING_OUT: usize = usize::MAX / 2;

/// One delivery of a room, counted down as its members' sessions write it.
#[derive(Debug)]
struct Tally {
    /// Members whose session still holds its receipt, plus
    /// [`HANDING_OUT`] until the room has handed the delivery to all.
    remaining: AtomicUsize,
    /// Members allowed to lag: a frozen client's session never writes, and
    /// must not hold up the rest of a big room.
    stragglers: usize,
    /// Which of the room's deliveries this is.
    delivery: u64,
    room: Recipient<Drained>,
}

/// A member's share of one delivery: the session drops it once it has
/// written the delivery's frames into its WebSocket context (the
/// dispatcher takes them in the same poll and writes the socket), or
/// dropped them unwritten. When all but the delivery's stragglers are
/// dropped, the room is told ([`Drained`]), and may deliver what came
/// meanwhile at once: a room delivers as often as its members' sockets
/// take the frames, and coalesces only while writes are pending.
#[derive(Debug)]
pub struct Receipt(Arc<Tally>);

/// The room's hold on a delivery while it hands it out; see
/// [`Handing::finish`].
#[derive(Debug)]
pub(crate) struct Handing(Arc<Tally>);

impl Handing {
    /// Delivery number `delivery` of the room behind `room`, to up to
    /// `members` members, of whom `members / 100` may lag.
    pub(crate) fn new(delivery: u64, members: usize, room: Recipient<Drained>) -> Handing {
        Handing(Arc::new(Tally {
            remaining: AtomicUsize::new(HANDING_OUT),
            stragglers: members / 100,
            delivery,
            room,
        }))
    }

    /// A receipt for one more member.
    pub(crate) fn receipt(&self) -> Receipt {
        self.0.remaining.fetch_add(1, Ordering::AcqRel);
        Receipt(self.0.clone())
    }

    /// Every member has its receipt: whether the delivery is written
    /// already (all but its stragglers). If not, the session that brings
    /// it down to that tells the room.
    pub(crate) fn finish(self) -> bool {
        let before = self.0.remaining.fetch_sub(HANDING_OUT, Ordering::AcqRel);
        before - HANDING_OUT <= self.0.stragglers
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        let before = self.0.remaining.fetch_sub(1, Ordering::AcqRel);
        // Only the drop that crosses the threshold tells the room; while
        // the room is handing out, the count stays far above it.
        if before == self.0.stragglers + 1 {
            self.0.room.do_send(Drained {
                delivery: self.0.delivery,
            });
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

    /// Counts the `Drained` it is told of.
    struct Room(Arc<std::sync::Mutex<Vec<u64>>>);

    impl Actor for Room {
        type Context = Context<Self>;
    }

    impl Handler<Drained> for Room {
        type Result = ();
        fn handle(&mut self, drained: Drained, _: &mut Self::Context) {
            self.0.lock().expect("not poisoned").push(drained.delivery);
        }
    }

    /// Starts a `Room` and returns where it is told and what it was told.
    fn room() -> (Recipient<Drained>, Arc<std::sync::Mutex<Vec<u64>>>) {
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        (Room(told.clone()).start().recipient(), told)
    }

    async fn settle() {
        actix::clock::sleep(Duration::from_millis(20)).await;
    }

    #[actix_web::test]
    async fn the_room_is_told_once_when_the_last_member_has_written() {
        let (recipient, told) = room();
        let handing = Handing::new(7, 3, recipient);
        let receipts: Vec<_> = (0..3).map(|_| handing.receipt()).collect();
        assert!(!handing.finish(), "nobody has written yet");
        let mut receipts = receipts.into_iter();
        drop(receipts.next());
        drop(receipts.next());
        settle().await;
        assert!(
            told.lock().expect("not poisoned").is_empty(),
            "one still writing"
        );
        drop(receipts.next());
        settle().await;
        assert_eq!(*told.lock().expect("not poisoned"), [7]);
    }

    #[actix_web::test]
    async fn members_that_wrote_while_the_room_handed_out_make_it_written_at_once() {
        let (recipient, told) = room();
        let handing = Handing::new(1, 2, recipient);
        drop(handing.receipt());
        drop(handing.receipt());
        assert!(handing.finish(), "both wrote before the room finished");
        settle().await;
        assert!(
            told.lock().expect("not poisoned").is_empty(),
            "the room knows already: no message"
        );
    }

    #[actix_web::test]
    async fn a_big_room_does_not_wait_for_its_last_percent() {
        let (recipient, told) = room();
        let handing = Handing::new(3, 1000, recipient);
        let mut receipts: Vec<_> = (0..1000).map(|_| handing.receipt()).collect();
        assert!(!handing.finish());
        // 990 write; 10 (a frozen client or two, say) never do.
        receipts.truncate(11);
        settle().await;
        assert!(
            told.lock().expect("not poisoned").is_empty(),
            "11 left: one too many"
        );
        receipts.pop();
        settle().await;
        assert_eq!(*told.lock().expect("not poisoned"), [3]);
        drop(receipts);
        settle().await;
        assert_eq!(*told.lock().expect("not poisoned"), [3], "told once");
    }
}
