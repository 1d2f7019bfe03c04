//! `RoomActor`: one per active room, started and stopped by
//! [`ChatServer`](super::server::ChatServer). It owns the room's members,
//! the order of its messages and their fan-out.
//!
//! A chat message goes to [`History`] first and is broadcast only when
//! [`MessagesStored`] comes back. The writer answers in the order messages were
//! queued, and this actor queues them in the order it received them, so ids
//! rise in broadcast order and each connection's messages reach everyone in
//! the order sent.
//!
//! The room keeps its last `MAX_HISTORY` broadcast messages in memory. A join
//! is answered from there without touching the database, and, because the
//! cache and the live stream are updated in the same handler, a joiner gets
//! every message exactly once: in `history` or live, never both.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;

use super::history::{History, MessagesAfter, MessagesStored, PendingWrite, RecentMessages};
use super::outbox::Outbox;
use super::server::{ChatServer, MemberDropped};
use super::SessionId;
use crate::backlog::Admitted;
use crate::metrics::Metrics;
use crate::protocol::{
    format_timestamp, now_millis, ChatMessage, ErrorCode, MessageId, RoomName, ServerFrame,
    UserName,
};

/// Add a connection to the room. It receives `history`, then `presence`;
/// the others hear `join` if this is the user's first connection here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub user: UserName,
    pub outbox: Outbox,
    /// Recover messages with `id > since` instead of the latest ones.
    pub since: Option<MessageId>,
}

/// Remove a connection from the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
    /// Send the leaver its own `leave` (an explicit leave, not a disconnect).
    pub acknowledge: bool,
}

/// Say something in the room. Sent straight from the session, which has
/// already validated it and applied the rate limit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Chat {
    pub session: SessionId,
    pub text: String,
    pub reference: Option<String>,
    /// When the session read it, for the delivery latency metric.
    pub received: Instant,
    /// Its place in the server's backlog, held until the room has handed
    /// the stored chat to its members.
    pub admitted: Admitted,
}

/// The room's distinct users, sorted.
#[derive(Message)]
#[rtype(result = "Vec<UserName>")]
pub struct RoomUsers;

/// Process everything received so far, then answer (used at shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Sync;

/// The room has no members left and is no longer routed to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRoom;

struct Member {
    user: UserName,
    outbox: Outbox,
}

/// A chat handed to storage, waiting for its answer in a [`MessagesStored`].
struct InFlight {
    sender: SessionId,
    reference: Option<String>,
    received: Instant,
}

pub struct RoomActor {
    name: RoomName,
    history: History,
    server: Addr<ChatServer>,
    max_history: usize,
    outbox_limit: usize,
    members: HashMap<SessionId, Member>,
    /// Connections per user: presence and join/leave are per user.
    /// A BTreeMap because presence is sorted by code point, which is byte
    /// order for UTF-8 strings.
    users: BTreeMap<UserName, usize>,
    /// The last `max_history` broadcast messages, oldest first.
    recent: VecDeque<ChatMessage>,
    /// Whether stored messages older than `recent` exist.
    has_older: bool,
    /// The newest message broadcast (or found stored at start).
    last_broadcast: Option<MessageId>,
    in_flight: VecDeque<InFlight>,
    /// Kept so each write does not build a new recipient.
    stored_recipient: Option<Recipient<MessagesStored>>,
    /// Stored chats waiting for the next delivery (see [`DELIVERY_SPACING_PER_MEMBER`]).
    pending: Vec<StoredChat>,
    /// Their places in the backlog, given back once they are delivered.
    pending_admitted: Option<Admitted>,
    /// When the last batch went out.
    last_delivery: Option<Instant>,
    /// A timer will deliver `pending`.
    delivery_scheduled: bool,
    metrics: Arc<Metrics>,
}

/// How long a room waits between two deliveries, per member. Each delivery
/// costs one socket write per member, and a write costs about 10 us here,
/// whether it carries one frame or twenty. So a room of 1000 waits 20 ms
/// between deliveries: at most 50 writes a second per member however fast
/// messages come, and what arrives meanwhile shares those writes. An idle
/// room delivers at once, and a room of 10 waits 0.2 ms, so small rooms
/// see no delay.
const DELIVERY_SPACING_PER_MEMBER: Duration = Duration::from_micros(20);

impl RoomActor {
    pub fn new(
        name: RoomName,
        history: History,
        server: Addr<ChatServer>,
        max_history: usize,
        outbox_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        RoomActor {
            name,
            history,
            server,
            max_history,
            outbox_limit,
            members: HashMap::new(),
            users: BTreeMap::new(),
            recent: VecDeque::new(),
            has_older: false,
            last_broadcast: None,
            in_flight: VecDeque::new(),
            pending: Vec::new(),
            pending_admitted: None,
            last_delivery: None,
            delivery_scheduled: false,
            stored_recipient: None,
            metrics,
        }
    }

    /// Sends `frame` to every member but `except`, then drops the members
    /// whose outbox overflowed (which may broadcast their `leave`).
    fn broadcast(&mut self, frame: &ByteString, except: Option<SessionId>) {
        let mut overflowed = Vec::new();
        for (&session, member) in &self.members {
            if Some(session) != except
                && member
                    .outbox
                    .push(frame.clone(), self.outbox_limit)
                    .is_err()
            {
                overflowed.push(session);
            }
        }
        self.drop_members(overflowed);
    }

    /// Sends `frame` to one member, dropping it if its outbox overflowed.
    fn send_to(&mut self, session: SessionId, frame: ByteString) {
        let overflowed = match self.members.get(&session) {
            Some(member) => member.outbox.push(frame, self.outbox_limit).is_err(),
            None => false,
        };
        if overflowed {
            self.drop_members(vec![session]);
        }
    }

    /// Removes slow members as if they had disconnected and tells the
    /// server, which owns the room's lifetime.
    fn drop_members(&mut self, mut sessions: Vec<SessionId>) {
        while let Some(session) = sessions.pop() {
            if let Some((user, last)) = self.remove_member(session) {
                log::info!(
                    "room {}: dropping slow connection {session} of {user}",
                    self.name
                );
                self.server.do_send(MemberDropped {
                    room: self.name.clone(),
                    session,
                });
                if last {
                    let frame = self.leave_frame(&user);
                    for (&other, member) in &self.members {
                        if member
                            .outbox
                            .push(frame.clone(), self.outbox_limit)
                            .is_err()
                        {
                            sessions.push(other);
                        }
                    }
                }
            }
        }
    }

    /// Removes a connection; returns its user and whether that was the
    /// user's last connection in the room.
    fn remove_member(&mut self, session: SessionId) -> Option<(UserName, bool)> {
        let member = self.members.remove(&session)?;
        let last = match self.users.get_mut(&member.user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                self.users.remove(&member.user);
                true
            }
        };
        Some((member.user, last))
    }

    fn leave_frame(&self, user: &str) -> ByteString {
        ServerFrame::Leave {
            room: &self.name,
            user,
            timestamp: &format_timestamp(now_millis()),
        }
        .encode()
        .into()
    }

    /// Where the `history` for a join comes from.
    fn history_source(&self, since: Option<MessageId>) -> HistorySource {
        match since {
            None => HistorySource::Cache {
                messages: self.recent.iter().cloned().collect(),
                more: self.has_older,
            },
            // Everything after `since` is in the cache when nothing older
            // than the cache exists, or the cache reaches back to `since`.
            Some(since)
                if !self.has_older || self.recent.front().is_some_and(|m| m.id <= since) =>
            {
                HistorySource::Cache {
                    messages: self
                        .recent
                        .iter()
                        .filter(|m| m.id > since)
                        .cloned()
                        .collect(),
                    more: false,
                }
            }
            // Otherwise read what the client missed, but only up to what has
            // been broadcast: anything newer reaches the joiner live.
            Some(since) => HistorySource::Database {
                after: since,
                up_to: self.last_broadcast,
            },
        }
    }

    /// Admits a joiner once its history is known.
    fn admit(&mut self, join: Join, messages: Vec<ChatMessage>, more: bool) {
        let history: ByteString = ServerFrame::History {
            room: &self.name,
            messages: &messages,
            more,
        }
        .encode()
        .into();
        if join.outbox.push(history, self.outbox_limit).is_err() {
            return;
        }
        let count = self.users.entry(join.user.clone()).or_default();
        *count += 1;
        let first = *count == 1;
        self.members.insert(
            join.session,
            Member {
                user: join.user.clone(),
                outbox: join.outbox,
            },
        );
        let presence: ByteString = ServerFrame::Presence {
            room: &self.name,
            users: self.users.keys().map(String::as_str).collect(),
        }
        .encode()
        .into();
        self.send_to(join.session, presence);
        if first {
            let frame: ByteString = ServerFrame::Join {
                room: &self.name,
                user: &join.user,
                timestamp: &format_timestamp(now_millis()),
            }
            .encode()
            .into();
            self.broadcast(&frame, Some(join.session));
        }
    }

    fn remember(&mut self, message: &ChatMessage) {
        self.last_broadcast = Some(message.id);
        if self.max_history == 0 {
            self.has_older = true;
            return;
        }
        if self.recent.len() == self.max_history {
            self.recent.pop_front();
            self.has_older = true;
        }
        self.recent.push_back(message.clone());
    }
}

enum HistorySource {
    Cache {
        messages: Vec<ChatMessage>,
        more: bool,
    },
    Database {
        after: MessageId,
        up_to: Option<MessageId>,
    },
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stored_recipient = Some(ctx.address().recipient());
        // Nothing else is handled until the recent history is loaded, so
        // the first joiners get it too.
        let load = self.history.writer.send(RecentMessages {
            room: self.name.clone(),
            limit: self.max_history,
        });
        ctx.wait(load.into_actor(self).map(|result, room, _| match result {
            Ok(Ok((messages, more))) => {
                room.last_broadcast = messages.last().map(|m| m.id);
                room.has_older = more || (room.max_history == 0 && room.last_broadcast.is_some());
                room.recent = messages.into();
            }
            Ok(Err(e)) => {
                log::error!("room {}: cannot load history: {e}", room.name);
                room.has_older = true;
            }
            Err(e) => {
                log::error!("room {}: history actor unavailable: {e}", room.name);
                room.has_older = true;
            }
        }));
        log::debug!("room {} started", self.name);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        log::debug!("room {} stopped", self.name);
    }
}

impl Handler<Join> for RoomActor {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) {
        self.deliver_pending();
        match self.history_source(join.since) {
            HistorySource::Cache { messages, more } => self.admit(join, messages, more),
            HistorySource::Database { after, up_to } => {
                // Rare: a client recovering more than the cache holds. The
                // room waits for the read so the joiner's history and the
                // live stream meet exactly at `up_to`.
                let read = self.history.writer.send(MessagesAfter {
                    room: self.name.clone(),
                    after,
                    up_to,
                    limit: self.max_history,
                });
                ctx.wait(read.into_actor(self).map(move |result, room, _| {
                    match result {
                        Ok(Ok((messages, more))) => room.admit(join, messages, more),
                        failed => {
                            log::error!("room {}: cannot read history: {failed:?}", room.name);
                            // `more: true` tells the client to fetch what it
                            // missed over REST.
                            room.admit(join, Vec::new(), true)
                        }
                    }
                }));
            }
        }
    }
}

impl Handler<Leave> for RoomActor {
    type Result = ();

    fn handle(&mut self, leave: Leave, _: &mut Self::Context) {
        self.deliver_pending();
        let outbox = self.members.get(&leave.session).map(|m| m.outbox.clone());
        let Some((user, last)) = self.remove_member(leave.session) else {
            return;
        };
        let frame = self.leave_frame(&user);
        if last {
            self.broadcast(&frame, None);
        }
        if leave.acknowledge {
            if let Some(outbox) = outbox {
                let _ = outbox.push(frame, self.outbox_limit);
            }
        }
    }
}

impl Handler<Chat> for RoomActor {
    type Result = ();

    fn handle(&mut self, chat: Chat, _: &mut Self::Context) {
        let Some(member) = self.members.get(&chat.session) else {
            // The session was dropped as a slow reader and is closing.
            return;
        };
        let Some(reply) = self.stored_recipient.clone() else {
            return;
        };
        self.history.store(PendingWrite {
            room: self.name.clone(),
            user: member.user.clone(),
            text: chat.text,
            reply,
            admitted: chat.admitted,
        });
        self.in_flight.push_back(InFlight {
            sender: chat.session,
            reference: chat.reference,
            received: chat.received,
        });
    }
}

/// What the sender of a chat that could not be stored reads.
const STORE_FAILED_MESSAGE: &str = "the message could not be stored; try again later";

/// One answered chat of a [`MessagesStored`] batch, encoded.
struct StoredChat {
    sender: SessionId,
    /// When the session read it.
    received: Instant,
    /// The stored message, remembered for `history` once delivered.
    message: Option<ChatMessage>,
    /// What every member gets (`None` when the message was not stored).
    shared: Option<ByteString>,
    /// What the sender gets instead: its copy with its `ref`, or the error.
    own: Option<ByteString>,
}

impl RoomActor {
    /// Delivers `pending` now if the room has waited long enough since its
    /// last delivery, or sets a timer for when it has.
    fn schedule_delivery(&mut self, ctx: &mut Context<Self>) {
        if self.delivery_scheduled || self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let spacing = DELIVERY_SPACING_PER_MEMBER * self.members.len() as u32;
        match self.last_delivery.map(|last| last + spacing) {
            Some(due) if due > now => {
                self.delivery_scheduled = true;
                ctx.run_later(due - now, |room, _| {
                    room.delivery_scheduled = false;
                    room.deliver_pending();
                });
            }
            _ => self.deliver_pending(),
        }
    }

    /// Delivers every stored chat still waiting. Called before anything
    /// that reads or changes membership or the recent history, so a joiner's
    /// `history` and the live stream still meet exactly.
    fn deliver_pending(&mut self) {
        if self.pending.is_empty() {
            self.pending_admitted = None;
            return;
        }
        let outcomes = std::mem::take(&mut self.pending);
        for message in outcomes.iter().filter_map(|o| o.message.as_ref()) {
            self.remember(message);
        }
        self.last_delivery = Some(Instant::now());
        self.deliver(outcomes);
        // Handed to the members: their outboxes bound them from here.
        self.pending_admitted = None;
    }

    /// Hands every member the whole batch in one outbox push, in stored
    /// order: the frames encoded once and shared, except for the batch's
    /// senders, whose own copies carry their `ref`.
    fn deliver(&mut self, outcomes: Vec<StoredChat>) {
        let shared: Arc<[ByteString]> = outcomes.iter().filter_map(|o| o.shared.clone()).collect();
        // A set: in a big busy room a batch may come from many senders.
        let personal: HashSet<SessionId> = outcomes
            .iter()
            .filter(|o| o.own.is_some())
            .map(|o| o.sender)
            .collect();
        let mut overflowed = Vec::new();
        let mut delivered = 0;
        for (&session, member) in &self.members {
            let frames = if personal.contains(&session) {
                outcomes
                    .iter()
                    .filter_map(|o| match &o.own {
                        Some(own) if o.sender == session => Some(own.clone()),
                        _ => o.shared.clone(),
                    })
                    .collect()
            } else if shared.is_empty() {
                continue;
            } else {
                shared.clone()
            };
            if member.outbox.push_all(frames, self.outbox_limit).is_err() {
                overflowed.push(session);
            } else {
                // Every member that takes the batch gets each stored chat
                // once: the shared copy, or its own with its ref.
                delivered += shared.len();
            }
        }
        self.drop_members(overflowed);
        self.metrics.messages_delivered.inc_by(delivered as u64);
        for o in outcomes.iter().filter(|o| o.message.is_some()) {
            self.metrics
                .delivery_seconds
                .observe(o.received.elapsed().as_secs_f64());
        }
    }
}

impl Handler<MessagesStored> for RoomActor {
    type Result = ();

    fn handle(&mut self, stored: MessagesStored, ctx: &mut Self::Context) {
        match &mut self.pending_admitted {
            Some(places) => places.merge(stored.1),
            None => self.pending_admitted = Some(stored.1),
        }
        let mut outcomes = Vec::with_capacity(stored.0.len());
        for answer in stored.0 {
            let Some(InFlight {
                sender,
                reference,
                received,
            }) = self.in_flight.pop_front()
            else {
                log::error!(
                    "room {}: a stored message nobody was waiting for",
                    self.name
                );
                break;
            };
            outcomes.push(match answer {
                Ok(message) => {
                    // Everyone's copy is the same bytes, encoded once; the
                    // sender's carries its ref.
                    StoredChat {
                        sender,
                        received,
                        shared: Some(ServerFrame::chat(&message, None).encode().into()),
                        own: reference.map(|reference| {
                            ServerFrame::chat(&message, Some(&reference))
                                .encode()
                                .into()
                        }),
                        message: Some(message),
                    }
                }
                // The writer has logged why, once for the batch; the
                // client gets no SQLite detail.
                Err(_) => StoredChat {
                    sender,
                    received,
                    message: None,
                    shared: None,
                    own: Some(
                        ServerFrame::Error {
                            code: ErrorCode::StoreFailed,
                            message: STORE_FAILED_MESSAGE,
                            reference: reference.as_deref(),
                        }
                        .encode()
                        .into(),
                    ),
                },
            });
        }
        let failed = outcomes.iter().filter(|o| o.message.is_none()).count();
        self.metrics
            .errors_sent(ErrorCode::StoreFailed, failed as u64);
        self.pending.extend(outcomes);
        self.schedule_delivery(ctx);
    }
}

impl Handler<RoomUsers> for RoomActor {
    type Result = Vec<UserName>;

    fn handle(&mut self, _: RoomUsers, _: &mut Self::Context) -> Vec<UserName> {
        self.users.keys().cloned().collect()
    }
}

impl Handler<Sync> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: Sync, _: &mut Self::Context) {
        self.deliver_pending();
    }
}

impl Handler<StopRoom> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: StopRoom, ctx: &mut Self::Context) {
        self.deliver_pending();
        ctx.stop();
    }
}
