//! A room's chats from storage to its members, with no actix in it.
//!
//! A chat goes to storage first ([`Delivery::sent`]) and is delivered only
//! once stored. The writer answers in the order chats were queued, and the
//! room queues them in the order it received them, so the answers are
//! matched to the chats in flight by position ([`Delivery::stored`]).
//! Stored chats then wait for the next delivery ([`Delivery::next`], the
//! pacing rule), which hands every member the whole batch in one outbox push
//! ([`fan_out`]). A room delivers at once when its members have written its
//! last delivery, and coalesces what comes meanwhile until they have (or
//! until the spacing bound passes). The chats' places in the server's backlog travel with them
//! and are given back once the batch is handed to the members (when the
//! [`Batch`] is dropped).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::members::{Members, Outlet};
use super::sequence::Sequence;
use crate::actors::SessionId;
use crate::backlog::Admitted;
use crate::history::Refusal;
/// What storage made of a change; re-exported for the fan-out bench.
pub use crate::history::Stored;
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame};

/// The longest a room waits between two deliveries while its last one is
/// still being written, per member. Each delivery costs one socket write
/// per member, and a write costs about 10 us here, whether it carries one
/// frame or twenty. A room whose members have written its last delivery
/// delivers at once (their sessions tell it, see [`Receipt`]); while they
/// have not, what arrives shares the next writes, and a room of 1000 waits
/// at most 20 ms before it delivers anyway (members that still have not
/// written the last one get both in one write, bounded by their outbox).
///
/// [`Receipt`]: crate::actors::outbox::Receipt
pub(crate) const DELIVERY_SPACING_PER_MEMBER: Duration = Duration::from_micros(20);

/// What the sender of a chat that could not be stored reads.
const STORE_FAILED_MESSAGE: &str = "the message could not be stored; try again later";

/// What the sender of a change aimed at a missing chat reads.
const NOT_FOUND_MESSAGE: &str = "no such message in this room (or it was deleted)";

/// What the sender of an edit or delete of someone else's chat reads.
const FORBIDDEN_MESSAGE: &str = "only its author may edit or delete a message";

/// Where a room tells the server API what became of its change, once the
/// room has delivered it (so a kick's count is known).
pub type ApiAnswer = tokio::sync::oneshot::Sender<Result<Answered, StoreFailed>>;

/// What the server API is told about its change.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub stored: Stored,
    /// Connections a kick or ban removed from the room on this node.
    pub connections: usize,
}

/// The server API's answer, waiting in its [`StoredChat`] for delivery.
pub(crate) type ApiWaiting = (ApiAnswer, Result<Stored, StoreFailed>);

/// The database refused a change (the writer has logged why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFailed;

/// Who is waiting for a change's answer.
pub enum Sender {
    /// A member's connection: it gets its copy (with its `ref`) or its
    /// error in the room's fan-out.
    Member(SessionId),
    /// The server API: told through the channel as soon as the answer
    /// comes; the members get a stored change as any other.
    Api(ApiAnswer),
}

/// A chat handed to storage, waiting for its answer.
pub struct InFlight {
    pub sender: Sender,
    pub reference: Option<String>,
    /// When the session read it, for the delivery latency metric.
    pub received: Instant,
}

/// One answered chat, encoded: this node's (with its sender), or, in
/// cluster mode, another node's.
pub struct StoredChat {
    /// `None`: stored by another node.
    sender: Option<SessionId>,
    /// When the session read it (`None`: another node's).
    received: Option<Instant>,
    /// The stored message, remembered for `history` once delivered.
    message: Option<ChatMessage>,
    /// What every member gets (`None` when the message was not stored).
    shared: Option<ByteString>,
    /// What the sender gets instead: its copy with its `ref`, a frame for
    /// it alone, or the error.
    own: Option<ByteString>,
    /// The error the sender is told, if it is one.
    error: Option<ErrorCode>,
    /// The server API's change: who to tell, and what, once delivered.
    api: Option<ApiWaiting>,
}

impl StoredChat {
    /// Encodes storage's answer to `chat`: a stored change once for
    /// everyone, plus the sender's copy when it carries a `ref`; or, when
    /// nothing was stored, the frame or error for its sender alone. When
    /// the database failed the writer has logged why, once for the batch;
    /// the client gets no SQLite detail.
    pub fn answer<E>(chat: InFlight, answer: Result<Stored, E>) -> StoredChat {
        let InFlight {
            sender,
            reference,
            received,
        } = chat;
        let sender = match sender {
            Sender::Member(session) => session,
            Sender::Api(reply) => return StoredChat::for_api(reply, answer, received),
        };
        let alone = |own: ByteString, error: Option<ErrorCode>| StoredChat {
            sender: Some(sender),
            received: Some(received),
            message: None,
            shared: None,
            own: Some(own),
            error,
            api: None,
        };
        let error = |code: ErrorCode, message: &str| -> ByteString {
            ServerFrame::Error {
                code,
                message,
                reference: reference.as_deref(),
            }
            .encode()
            .into()
        };
        match answer {
            // Everyone's copy is the same bytes, encoded once; the sender's
            // carries its ref.
            Ok(Stored::New(message)) => StoredChat {
                sender: Some(sender),
                received: Some(received),
                shared: Some(ServerFrame::change(&message, None).encode().into()),
                own: reference.as_deref().map(|reference| {
                    ServerFrame::change(&message, Some(reference))
                        .encode()
                        .into()
                }),
                message: Some(message),
                error: None,
                api: None,
            },
            Ok(Stored::Reply(message)) => alone(
                ServerFrame::change(&message, reference.as_deref())
                    .encode()
                    .into(),
                None,
            ),
            Ok(Stored::Refused(refusal)) => {
                let (code, why) = match refusal {
                    Refusal::NotFound => (ErrorCode::NotFound, NOT_FOUND_MESSAGE),
                    Refusal::Forbidden => (ErrorCode::Forbidden, FORBIDDEN_MESSAGE),
                };
                alone(error(code, why), Some(code))
            }
            Err(_) => alone(
                error(ErrorCode::StoreFailed, STORE_FAILED_MESSAGE),
                Some(ErrorCode::StoreFailed),
            ),
        }
    }

    /// The server API's change: a stored one goes to every member alike,
    /// anything else to nobody; the API is told when it is delivered.
    fn for_api<E>(reply: ApiAnswer, answer: Result<Stored, E>, received: Instant) -> StoredChat {
        let (message, told) = match answer {
            Ok(Stored::New(message)) => (Some(message.clone()), Ok(Stored::New(message))),
            Ok(other) => (None, Ok(other)),
            Err(_) => (None, Err(StoreFailed)),
        };
        StoredChat {
            api: Some((reply, told)),
            sender: None,
            received: Some(received),
            shared: message
                .as_ref()
                .map(|m| ServerFrame::change(m, None).encode().into()),
            own: None,
            message,
            error: None,
        }
    }

    /// A message another node stored, for every member alike.
    pub fn remote(message: ChatMessage) -> StoredChat {
        StoredChat {
            sender: None,
            received: None,
            shared: Some(ServerFrame::change(&message, None).encode().into()),
            own: None,
            message: Some(message),
            error: None,
            api: None,
        }
    }

    /// The stored message (`None`: it could not be stored).
    pub(crate) fn message(&self) -> Option<&ChatMessage> {
        self.message.as_ref()
    }

    /// When the sender's session read it (`None`: another node's).
    pub(crate) fn received(&self) -> Option<Instant> {
        self.received
    }

    /// Whether this is this node's answer to one of its chats (a
    /// member's or the server API's).
    pub fn is_own(&self) -> bool {
        self.received.is_some()
    }
}

/// What [`Delivery::stored`] made of a batch of answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    /// Answers that were errors, by code (`store_failed`, `not_found`,
    /// `forbidden`): their senders are told.
    pub errors: Vec<ErrorCode>,
    /// Answers with no chat in flight left to match (a bug; dropped).
    pub unmatched: usize,
}

/// When the pending chats are to go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing is pending, or a timer is already set.
    Nothing,
    Now,
    /// The room delivered too recently; set a timer.
    After(Duration),
}

/// Stored chats handed out for delivery, with their backlog places, which
/// are released when the batch is dropped: once it is in the outboxes,
/// which bound it from there.
pub(crate) struct Batch {
    chats: Vec<StoredChat>,
    _admitted: Option<Admitted>,
    number: u64,
}

impl Batch {
    /// Which of the room's deliveries this is, for [`Delivery::written`].
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn chats(&self) -> &[StoredChat] {
        &self.chats
    }

    /// The stored messages, in order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = &ChatMessage> {
        self.chats.iter().filter_map(StoredChat::message)
    }

    /// The server API's answers in this batch, in order, to be sent.
    pub(crate) fn take_api_answers(&mut self) -> Vec<ApiWaiting> {
        self.chats.iter_mut().filter_map(|c| c.api.take()).collect()
    }
}

/// The chats of one room between storage and its members.
#[derive(Default)]
pub(crate) struct Delivery {
    in_flight: VecDeque<InFlight>,
    /// Cluster mode: answers and other nodes' messages put in `seq` order
    /// before they are pending.
    sequence: Option<Sequence>,
    /// Stored chats waiting for the next delivery.
    pending: Vec<StoredChat>,
    /// Their places in the backlog, given back once they are delivered.
    pending_admitted: Option<Admitted>,
    /// When the last batch went out.
    last_delivery: Option<Instant>,
    /// Batches handed out so far: the last one's number.
    deliveries: u64,
    /// The last batch is still being written by the members.
    writing: bool,
    /// A timer will deliver `pending`.
    scheduled: bool,
}

impl Delivery {
    /// Cluster mode: deliver in the room's `seq` order, from `sequence`.
    pub fn in_sequence(sequence: Sequence) -> Delivery {
        Delivery {
            sequence: Some(sequence),
            ..Delivery::default()
        }
    }

    /// The room's order, in cluster mode.
    pub fn sequence(&mut self) -> Option<&mut Sequence> {
        self.sequence.as_mut()
    }

    /// Chats handed to storage and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Cluster mode: what the room read from the database, then whatever
    /// it let through, pending.
    pub fn read(&mut self, messages: Vec<ChatMessage>, more: bool) {
        if let Some(sequence) = &mut self.sequence {
            sequence.read(messages, more);
            sequence.release(&mut self.pending);
        }
    }

    /// A chat was handed to storage.
    pub(crate) fn sent(&mut self, chat: InFlight) {
        self.in_flight.push_back(chat);
    }

    /// Storage answered the oldest chats in flight, in order: each answer
    /// is matched to the chat at the same position and waits for delivery,
    /// and `admitted` (their backlog places) with them.
    pub(crate) fn stored<E>(
        &mut self,
        answers: Vec<Result<Stored, E>>,
        admitted: Admitted,
    ) -> Matched {
        match &mut self.pending_admitted {
            Some(places) => places.merge(admitted),
            None => self.pending_admitted = Some(admitted),
        }
        let total = answers.len();
        let mut matched = Matched {
            errors: Vec::new(),
            unmatched: 0,
        };
        self.pending.reserve(total);
        for (n, answer) in answers.into_iter().enumerate() {
            let Some(chat) = self.in_flight.pop_front() else {
                matched.unmatched = total - n;
                break;
            };
            let stored = StoredChat::answer(chat, answer);
            matched.errors.extend(stored.error);
            match &mut self.sequence {
                Some(sequence) => sequence.answered(stored),
                None => self.pending.push(stored),
            }
        }
        if let Some(sequence) = &mut self.sequence {
            sequence.release(&mut self.pending);
        }
        matched
    }

    /// The pacing rule: pending chats go out at once when the members
    /// have written the last batch, or when it went out at least
    /// [`DELIVERY_SPACING_PER_MEMBER`] per member ago.
    pub(crate) fn next(&self, now: Instant, members: usize) -> Next {
        if self.scheduled || self.pending.is_empty() {
            return Next::Nothing;
        }
        if !self.writing {
            return Next::Now;
        }
        let spacing = DELIVERY_SPACING_PER_MEMBER * u32::try_from(members).unwrap_or(u32::MAX);
        match self.last_delivery.map(|last| last + spacing) {
            Some(due) if due > now => Next::After(due - now),
            _ => Next::Now,
        }
    }

    /// A timer is set (`true`) or has fired or been cancelled (`false`).
    pub(crate) fn set_scheduled(&mut self, scheduled: bool) {
        self.scheduled = scheduled;
    }

    /// The members have written batch `number` (all but its stragglers):
    /// `true` if it is the last one, so the next may go out at once.
    pub(crate) fn written(&mut self, number: u64) -> bool {
        if number == self.deliveries && self.writing {
            self.writing = false;
            return true;
        }
        false
    }

    /// Takes every pending chat for delivery at `now`; `None` (and the
    /// backlog places of answers that matched nothing released) when none
    /// is pending.
    pub(crate) fn take(&mut self, now: Instant) -> Option<Batch> {
        if self.pending.is_empty() {
            self.pending_admitted = None;
            return None;
        }
        self.last_delivery = Some(now);
        self.deliveries += 1;
        self.writing = true;
        Some(Batch {
            chats: std::mem::take(&mut self.pending),
            _admitted: self.pending_admitted.take(),
            number: self.deliveries,
        })
    }
}

/// What [`fan_out`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Members whose outbox refused the batch, for the room to drop.
    pub overflowed: Vec<SessionId>,
    /// Stored chats handed to members, counting each member's copy.
    pub delivered: usize,
}

/// Hands every member the whole batch in one outbox push, in stored order:
/// the frames encoded once and shared, except for the batch's senders,
/// whose own copies carry their `ref` (or their `store_failed`). Each push
/// carries a `receipt()`, which the member drops once it has written it.
pub fn fan_out<O: Outlet>(
    chats: &[StoredChat],
    members: &Members<O>,
    limit: usize,
    mut receipt: impl FnMut() -> O::Receipt,
) -> FanOut {
    let shared: Arc<[ByteString]> = chats.iter().filter_map(|o| o.shared.clone()).collect();
    // A set: in a big busy room a batch may come from many senders.
    let personal: HashSet<SessionId> = chats
        .iter()
        .filter(|o| o.own.is_some())
        .filter_map(|o| o.sender)
        .collect();
    let mut result = FanOut::default();
    for (session, member) in members.iter() {
        let frames = if personal.contains(&session) {
            chats
                .iter()
                .filter_map(|o| match &o.own {
                    Some(own) if o.sender == Some(session) => Some(own.clone()),
                    _ => o.shared.clone(),
                })
                .collect()
        } else if shared.is_empty() {
            continue;
        } else {
            shared.clone()
        };
        if member.outbox.push_all(frames, receipt(), limit).is_err() {
            result.overflowed.push(session);
        } else {
            // Every member that takes the batch gets each stored chat
            // once: the shared copy, or its own with its ref.
            result.delivered += shared.len();
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::room::members::tests::Queue;
    use crate::backlog::Backlog;
    use crate::metrics::Metrics;
    use serde_json::Value;

    fn message(id: i64, text: &str) -> Stored {
        Stored::New(ChatMessage {
            id,
            room: "general".into(),
            user: "alice".into(),
            text: text.into(),
            timestamp: "2026-11-26T01:00:00.000Z".into(),
            ..ChatMessage::default()
        })
    }

    fn chat(sender: u64, reference: Option<&str>) -> InFlight {
        InFlight {
            sender: Sender::Member(SessionId(sender)),
            reference: reference.map(String::from),
            received: Instant::now(),
        }
    }

    fn backlog() -> Arc<Backlog> {
        Backlog::new(100, 100_000, Arc::new(Metrics::new()))
    }

    fn places(backlog: &Arc<Backlog>, n: usize) -> Admitted {
        let mut all = backlog.admit(10).expect("room in the backlog");
        for _ in 1..n {
            all.merge(backlog.admit(10).expect("room in the backlog"));
        }
        all
    }

    fn json(frame: &ByteString) -> Value {
        serde_json::from_str(frame).expect("a JSON frame")
    }

    /// `(type, id or code, ref)` of each frame, for comparing.
    fn summary(frames: &[ByteString]) -> Vec<(String, String, Option<String>)> {
        frames
            .iter()
            .map(|f| {
                let v = json(f);
                let what = match v["type"].as_str() {
                    Some("chat") => v["id"].to_string(),
                    _ => v["code"].as_str().unwrap_or_default().to_string(),
                };
                (
                    v["type"].as_str().unwrap_or_default().to_string(),
                    what,
                    v["ref"].as_str().map(String::from),
                )
            })
            .collect()
    }

    fn entry(kind: &str, what: &str, reference: Option<&str>) -> (String, String, Option<String>) {
        (kind.into(), what.into(), reference.map(String::from))
    }

    #[test]
    fn answers_are_matched_to_chats_by_position() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        delivery.sent(chat(1, Some("a")));
        delivery.sent(chat(2, None));
        delivery.sent(chat(3, Some("c")));
        let matched = delivery.stored(
            vec![
                Ok(message(10, "one")),
                Err("disk full"),
                Ok(message(11, "three")),
            ],
            places(&backlog, 3),
        );
        assert_eq!(
            matched,
            Matched {
                errors: vec![ErrorCode::StoreFailed],
                unmatched: 0
            }
        );
        let batch = delivery.take(Instant::now()).expect("a batch");
        let senders: Vec<_> = batch.chats().iter().map(|c| c.sender).collect();
        assert_eq!(
            senders,
            [Some(SessionId(1)), Some(SessionId(2)), Some(SessionId(3))]
        );
        let ids: Vec<_> = batch.messages().map(|m| m.id).collect();
        assert_eq!(ids, [10, 11], "the failed chat is not remembered");
        let own: Vec<_> = batch.chats().iter().map(|c| c.own.as_ref()).collect();
        assert_eq!(json(own[0].expect("a ref"))["ref"], "a");
        assert_eq!(json(own[1].expect("an error"))["code"], "store_failed");
        assert_eq!(json(own[2].expect("a ref"))["ref"], "c");
    }

    #[test]
    fn answers_split_over_batches_keep_their_order() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        for sender in 1..=3 {
            delivery.sent(chat(sender, None));
        }
        delivery.stored::<()>(vec![Ok(message(1, "a"))], places(&backlog, 1));
        delivery.stored::<()>(
            vec![Ok(message(2, "b")), Ok(message(3, "c"))],
            places(&backlog, 2),
        );
        let batch = delivery.take(Instant::now()).expect("a batch");
        let senders: Vec<_> = batch.chats().iter().map(|c| c.sender).collect();
        assert_eq!(senders, [1, 2, 3].map(|n| Some(SessionId(n))));
    }

    #[test]
    fn an_answer_nobody_waits_for_is_counted_and_dropped() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        delivery.sent(chat(1, None));
        let matched = delivery.stored::<()>(
            vec![
                Ok(message(1, "a")),
                Ok(message(2, "b")),
                Ok(message(3, "c")),
            ],
            places(&backlog, 3),
        );
        assert_eq!(matched.unmatched, 2);
        let batch = delivery.take(Instant::now()).expect("a batch");
        assert_eq!(batch.chats().len(), 1);
    }

    #[test]
    fn backlog_places_are_released_once_the_batch_is_delivered() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        delivery.sent(chat(1, None));
        delivery.sent(chat(2, None));
        delivery.stored::<()>(vec![Ok(message(1, "a"))], places(&backlog, 1));
        delivery.stored::<()>(vec![Ok(message(2, "b"))], places(&backlog, 1));
        assert_eq!(backlog.pending().0, 2, "held while waiting for delivery");
        let batch = delivery.take(Instant::now()).expect("a batch");
        assert_eq!(backlog.pending().0, 2, "held until handed to the members");
        drop(batch);
        assert_eq!(backlog.pending(), (0, 0));
    }

    #[test]
    fn places_of_answers_that_matched_nothing_are_released_at_the_next_take() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        delivery.stored::<()>(vec![Ok(message(1, "a"))], places(&backlog, 1));
        assert_eq!(backlog.pending().0, 1);
        assert!(delivery.take(Instant::now()).is_none());
        assert_eq!(backlog.pending(), (0, 0));
    }

    #[test]
    fn an_idle_room_delivers_at_once_and_a_busy_one_waits_per_member() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        let start = Instant::now();
        assert_eq!(delivery.next(start, 1000), Next::Nothing, "nothing pending");

        delivery.sent(chat(1, None));
        delivery.stored::<()>(vec![Ok(message(1, "a"))], places(&backlog, 1));
        assert_eq!(delivery.next(start, 1000), Next::Now, "first delivery");
        drop(delivery.take(start));

        delivery.sent(chat(1, None));
        delivery.stored::<()>(vec![Ok(message(2, "b"))], places(&backlog, 1));
        let later = start + Duration::from_millis(5);
        assert_eq!(
            delivery.next(later, 1000),
            Next::After(Duration::from_millis(15)),
            "1000 members: 20 ms between deliveries"
        );
        assert_eq!(
            delivery.next(later, 10),
            Next::Now,
            "10 members: 0.2 ms, long past"
        );
        assert_eq!(
            delivery.next(start + Duration::from_millis(20), 1000),
            Next::Now
        );

        delivery.set_scheduled(true);
        assert_eq!(delivery.next(later, 1000), Next::Nothing, "a timer is set");
        delivery.set_scheduled(false);
        assert_eq!(
            delivery.next(later, 1000),
            Next::After(Duration::from_millis(15))
        );
    }

    #[test]
    fn once_the_members_have_written_the_last_batch_the_next_goes_out_at_once() {
        let backlog = backlog();
        let mut delivery = Delivery::default();
        let start = Instant::now();
        let later = start + Duration::from_millis(1);
        delivery.sent(chat(1, None));
        delivery.stored::<()>(vec![Ok(message(1, "a"))], places(&backlog, 1));
        let first = delivery.take(start).expect("a batch");
        delivery.sent(chat(1, None));
        delivery.stored::<()>(vec![Ok(message(2, "b"))], places(&backlog, 1));
        let second = delivery.take(later).expect("a batch");
        assert_eq!((first.number(), second.number()), (1, 2));

        delivery.sent(chat(1, None));
        delivery.stored::<()>(vec![Ok(message(3, "c"))], places(&backlog, 1));
        let soon = later + Duration::from_millis(1);
        assert_eq!(
            delivery.next(soon, 1000),
            Next::After(Duration::from_millis(19)),
            "the second batch is being written"
        );
        assert!(
            !delivery.written(first.number()),
            "news of an earlier batch says nothing of the last"
        );
        assert_eq!(
            delivery.next(soon, 1000),
            Next::After(Duration::from_millis(19))
        );
        assert!(delivery.written(second.number()));
        assert_eq!(delivery.next(soon, 1000), Next::Now, "written: deliver now");
        assert!(!delivery.written(second.number()), "told once");
    }

    fn room(senders: &[(u64, &str)]) -> (Members<Queue>, Vec<Queue>) {
        let mut members = Members::default();
        let mut queues = Vec::new();
        for &(id, user) in senders {
            let queue = Queue::default();
            members.insert(SessionId(id), user.into(), queue.clone());
            queues.push(queue);
        }
        (members, queues)
    }

    #[test]
    fn each_member_gets_the_batch_in_order_and_senders_their_own_copies() {
        let (members, queues) = room(&[(1, "alice"), (2, "bob"), (3, "carol")]);
        let chats = vec![
            StoredChat::answer::<()>(chat(1, Some("r1")), Ok(message(10, "hi"))),
            StoredChat::answer::<()>(chat(2, None), Ok(message(11, "hello"))),
            StoredChat::answer(chat(2, Some("r3")), Err(())),
        ];
        let result = fan_out(&chats, &members, 100, || ());
        assert!(result.overflowed.is_empty());
        assert_eq!(result.delivered, 6, "two stored chats to three members");
        assert_eq!(
            summary(&queues[0].frames()),
            [entry("chat", "10", Some("r1")), entry("chat", "11", None)]
        );
        assert_eq!(
            summary(&queues[1].frames()),
            [
                entry("chat", "10", None),
                entry("chat", "11", None),
                entry("error", "store_failed", Some("r3")),
            ]
        );
        assert_eq!(
            summary(&queues[2].frames()),
            [entry("chat", "10", None), entry("chat", "11", None)]
        );
    }

    #[test]
    fn a_batch_that_only_failed_reaches_only_its_sender() {
        let (members, queues) = room(&[(1, "alice"), (2, "bob")]);
        let chats = vec![StoredChat::answer(chat(1, Some("x")), Err(()))];
        let result = fan_out(&chats, &members, 100, || ());
        assert_eq!(result, FanOut::default());
        assert_eq!(
            summary(&queues[0].frames()),
            [entry("error", "store_failed", Some("x"))]
        );
        assert!(queues[1].frames().is_empty());
    }

    #[test]
    fn a_member_whose_outbox_cannot_take_the_whole_batch_gets_none_of_it() {
        let (members, queues) = room(&[(1, "alice"), (2, "bob")]);
        queues[1]
            .push(ByteString::from("earlier"), 3)
            .expect("room for one");
        let chats: Vec<_> = (1..=3)
            .map(|id| StoredChat::answer::<()>(chat(1, None), Ok(message(id, "m"))))
            .collect();
        let result = fan_out(&chats, &members, 3, || ());
        assert_eq!(result.overflowed, [SessionId(2)]);
        assert_eq!(result.delivered, 3, "only alice took the batch");
        assert_eq!(queues[0].frames().len(), 3);
        assert_eq!(queues[1].frames(), [ByteString::from("earlier")]);
    }
}
