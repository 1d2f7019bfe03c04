//! `RoomActor`: one per active room, started and stopped by
//! [`ChatServer`](super::server::ChatServer). It owns the room's members,
//! the order of its messages and their fan-out; the rules live in plain
//! structs beside it, each tested on its own:
//! * [`members`]: connections and per-user presence;
//! * [`recent`]: the recent-history window, and where a joiner's `history`
//!   comes from;
//! * [`delivery`]: chats in flight matched to their stored answers, the
//!   pacing of deliveries, and the fan-out of each batch.
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

pub mod delivery;
pub(crate) mod elsewhere;
pub(crate) mod markers;
pub mod members;
pub(crate) mod recent;
pub(crate) mod sanctions;
pub(crate) mod sequence;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;

use self::delivery::{fan_out, Answered, Delivery, InFlight, Next, Sender};
use self::elsewhere::Elsewhere;
use self::markers::{ReadMarkers, ReadStep};
use self::members::{Audience, Members};
use self::recent::{HistorySource, Recent};
use self::sanctions::RoomSanctions;
use self::sequence::Sequence;
use super::outbox::{Handing, Outbox};
use super::SessionId;
use crate::actors::messages::room::{
    AddMember, CatchUp, ClusterNews, Drained, FromMember, MemberRequest, PublishChange,
    RemoveMember, RoomUsers, StopRoom,
};
use crate::actors::messages::server::{DirectNotice, MemberDropped};
use crate::backlog::Admitted;
use crate::cluster::Cluster;
use crate::direct::{self, Pair};
use crate::history::{History, MessagesStored, NewChange, PendingWrite, Refusal, Stored};
use crate::metrics::Metrics;
use crate::protocol::{
    format_timestamp, now_millis, ChangeKind, ChatMessage, ErrorCode, MessageId, ModAction,
    RoomName, ServerFrame, UserName,
};
use crate::webhooks::{Event, Webhooks};

/// A user's read marker in a room and the chats unread above it.
type Marker = (MessageId, i64);

pub(crate) struct RoomActor {
    name: RoomName,
    /// A direct-message room's two users, for its `history` and to check a
    /// join by name: learnt from a `join` with `dm`, or read when the room
    /// starts from where the first such join stored it.
    dm: Option<Pair>,
    /// Whether `dm` is known to be stored (read at start, or written).
    pair_stored: bool,
    history: History,
    /// Told when the room drops a member on its own. A recipient rather
    /// than the server's address, so the room does not depend on the
    /// server that starts it.
    server: Recipient<MemberDropped>,
    /// Where a direct-message room's chats are told to its other user's
    /// connections that are not in it.
    notices: Recipient<DirectNotice>,
    outbox_limit: usize,
    members: Members<Outbox>,
    markers: ReadMarkers,
    /// Mutes and bans in force.
    sanctions: RoomSanctions,
    recent: Recent,
    delivery: Delivery,
    /// Kept so each write does not build a new recipient.
    stored_recipient: Option<Recipient<MessagesStored>>,
    /// Where the room's events go, when webhooks are on.
    webhooks: Option<Webhooks>,
    /// Whether the room had members when webhooks were last told.
    occupied: bool,
    /// Where members' sessions say they have written a delivery.
    drained_recipient: Option<Recipient<Drained>>,
    /// The timer that delivers what is pending if the members take too
    /// long to write the last delivery.
    delivery_timer: Option<SpawnHandle>,
    /// Cluster mode: the other nodes, and their users in this room.
    cluster: Option<Cluster>,
    elsewhere: Elsewhere,
    /// Other nodes' users as last read, waiting until the messages known
    /// at that time are delivered (see [`Sequence::is_behind`]).
    elsewhere_read: Option<(Vec<UserName>, Instant)>,
    metrics: Arc<Metrics>,
}

/// The most messages one read of other nodes' messages takes; a longer
/// gap is read in several.
const CATCH_UP_PAGE: usize = 256;

/// The longest a change of presence on other nodes waits for the room to
/// deliver the messages that came before it.
const PRESENCE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a room waits to read again after a read of other nodes'
/// messages failed.
const CATCH_UP_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

impl RoomActor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: RoomName,
        history: History,
        server: Recipient<MemberDropped>,
        notices: Recipient<DirectNotice>,
        max_history: usize,
        outbox_limit: usize,
        cluster: Option<Cluster>,
        webhooks: Option<Webhooks>,
        metrics: Arc<Metrics>,
    ) -> Self {
        RoomActor {
            webhooks,
            occupied: false,
            name,
            dm: None,
            pair_stored: false,
            history,
            server,
            notices,
            outbox_limit,
            members: Members::default(),
            markers: ReadMarkers::default(),
            sanctions: RoomSanctions::default(),
            recent: Recent::new(max_history),
            delivery: Delivery::default(),
            stored_recipient: None,
            drained_recipient: None,
            delivery_timer: None,
            cluster,
            elsewhere: Elsewhere::default(),
            elsewhere_read: None,
            metrics,
        }
    }

    /// Cluster mode: starts the next read of other nodes' messages, if the
    /// room's order needs one.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        let in_flight = self.delivery.in_flight();
        let Some(read) = self
            .delivery
            .sequence()
            .and_then(|s| s.next_read(in_flight))
        else {
            return;
        };
        let (history, name) = (self.history.clone(), self.name.clone());
        let started = Instant::now();
        let read = async move { history.catch_up(&name, read.after_id, CATCH_UP_PAGE).await };
        ctx.spawn(read.into_actor(self).map(move |result, room, ctx| {
            room.metrics.cluster_catch_up_reads.inc();
            room.metrics
                .cluster_catch_up_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok((messages, more)) => room.delivery.read(messages, more),
                Err(e) => {
                    log::error!("room {}: cannot read other nodes' messages: {e}", room.name);
                    if let Some(sequence) = room.delivery.sequence() {
                        sequence.read_failed();
                    }
                    // The database may be restarting: try again shortly
                    // (and on the next notification or answer).
                    ctx.run_later(CATCH_UP_RETRY, |room, ctx| room.catch_up(ctx));
                    return;
                }
            }
            room.schedule_delivery(ctx);
            room.catch_up(ctx);
            room.apply_elsewhere(ctx);
        }));
    }

    /// Applies the last read of other nodes' users once the room is not
    /// behind on their messages: join and leave go out after the messages
    /// that came before them.
    fn apply_elsewhere(&mut self, ctx: &mut Context<Self>) {
        let Some((_, read_at)) = &self.elsewhere_read else {
            return;
        };
        // Not forever: a room flooded from other nodes is always a little
        // behind, and presence must still move.
        let waited = read_at.elapsed();
        if waited < PRESENCE_WAIT && self.delivery.sequence().is_some_and(|s| s.is_behind()) {
            ctx.run_later(PRESENCE_WAIT - waited, |room, ctx| {
                room.apply_elsewhere(ctx)
            });
            return;
        }
        let Some((users, _)) = self.elsewhere_read.take() else {
            return;
        };
        self.deliver_pending();
        let members = &self.members;
        let (changes, again) = self
            .elsewhere
            .read(users, |user| members.users().any(|u| u == user));
        for user in &changes.joined {
            let frame = self.join_frame(user);
            self.broadcast(&frame, None);
        }
        for user in &changes.left {
            let frame = self.leave_frame(user);
            self.broadcast(&frame, None);
        }
        if again {
            self.refresh_elsewhere(ctx);
        }
    }

    /// Cluster mode: reads who is in the room on other nodes, and tells the
    /// members who came or went.
    fn refresh_elsewhere(&mut self, ctx: &mut Context<Self>) {
        if let Some(read) = self.read_elsewhere() {
            ctx.spawn(read);
        }
    }

    /// The read behind [`RoomActor::refresh_elsewhere`], if one is to start
    /// now (cluster mode, none in flight): the caller runs it.
    fn read_elsewhere(&mut self) -> Option<impl ActorFuture<Self, Output = ()>> {
        let cluster = self.cluster.clone()?;
        if !self.elsewhere.wants_read() {
            return None;
        }
        let name = self.name.clone();
        let read = async move { cluster.users_elsewhere(&name).await };
        Some(
            read.into_actor(self)
                .map(
                    |result, room: &mut Self, ctx: &mut Context<Self>| match result {
                        Ok(users) => {
                            room.elsewhere_read = Some((users, Instant::now()));
                            room.apply_elsewhere(ctx);
                        }
                        Err(e) => {
                            log::warn!("room {}: cannot read presence elsewhere: {e}", room.name);
                            if room.elsewhere.read_failed() {
                                room.refresh_elsewhere(ctx);
                            }
                        }
                    },
                ),
        )
    }

    /// A user's last connection here closed: in cluster mode the others
    /// hear `leave` only if the user has none on another node either.
    fn last_connection_closed(&mut self, user: &UserName) -> bool {
        self.markers.forget(user);
        match &self.cluster {
            Some(cluster) => {
                cluster.set_present(&self.name, user, false);
                !self.elsewhere.contains(user)
            }
            None => true,
        }
    }

    fn join_frame(&self, user: &str) -> ByteString {
        ServerFrame::Join {
            room: &self.name,
            user,
            timestamp: &format_timestamp(now_millis()),
        }
        .encode()
        .into()
    }

    /// Sends `frame` to every member but `except`, then drops the members
    /// whose outbox overflowed (which may broadcast their `leave`).
    fn broadcast(&mut self, frame: &ByteString, except: Option<SessionId>) {
        let overflowed = self.members.push_each(frame, except, self.outbox_limit);
        self.drop_members(overflowed);
    }

    /// Sends `frame` to one member, dropping it if its outbox overflowed.
    fn send_to(&mut self, session: SessionId, frame: ByteString) {
        let overflowed = match self.members.get(session) {
            Some(member) => member.outbox.push(frame, self.outbox_limit).is_err(),
            None => false,
        };
        if overflowed {
            self.drop_members(vec![session]);
        }
    }

    /// Sends one member an `error` the room decided on (not one storage
    /// answered, which goes out with the batch), counting it.
    fn send_error(
        &mut self,
        session: SessionId,
        code: ErrorCode,
        message: &str,
        reference: Option<&str>,
    ) {
        self.metrics.error(code);
        let frame = ServerFrame::Error {
            code,
            message,
            reference,
        }
        .encode()
        .into();
        self.send_to(session, frame);
    }

    /// Removes slow members as if they had disconnected and tells the
    /// server, which owns the room's lifetime.
    fn drop_members(&mut self, mut sessions: Vec<SessionId>) {
        while let Some(session) = sessions.pop() {
            if let Some((member, last)) = self.members.remove(session) {
                let user = member.user;
                log::info!(
                    "room {}: dropping slow connection {session} of {user}",
                    self.name
                );
                self.server.do_send(MemberDropped {
                    room: self.name.clone(),
                    session,
                });
                if last && self.last_connection_closed(&user) {
                    let frame = self.leave_frame(&user);
                    sessions.extend(self.members.push_each(&frame, None, self.outbox_limit));
                }
            }
        }
        self.tell_occupancy();
    }

    /// A moderator kicked or banned `user`: each of its connections here
    /// gets `leave` for the room and is told it is out, the server forgets
    /// them, and the others hear `leave` once (as for a disconnect).
    /// Answers how many connections it removed.
    fn remove_user(&mut self, user: &UserName) -> usize {
        let sessions: Vec<SessionId> = self
            .members
            .iter()
            .filter(|(_, m)| m.user == *user)
            .map(|(s, _)| s)
            .collect();
        let frame = self.leave_frame(user);
        let mut removed = 0;
        for session in sessions {
            let Some((member, last)) = self.members.remove(session) else {
                continue;
            };
            removed += 1;
            // The server first, as in `refuse`: the client may join again
            // as soon as it reads `leave`.
            self.server.do_send(MemberDropped {
                room: self.name.clone(),
                session,
            });
            member
                .outbox
                .removed_from(self.name.clone(), frame.clone(), self.outbox_limit);
            if last && self.last_connection_closed(user) {
                self.broadcast(&frame, None);
            }
        }
        self.tell_occupancy();
        removed
    }

    /// Tells the webhooks when the room gains its first member on this
    /// node or loses its last; called after every change of membership.
    fn tell_occupancy(&mut self) {
        let occupied = !self.members.is_empty();
        if occupied == self.occupied {
            return;
        }
        self.occupied = occupied;
        if let Some(webhooks) = &self.webhooks {
            let room = self.name.clone();
            webhooks.send(if occupied {
                Event::RoomOccupied { room }
            } else {
                Event::RoomVacated { room }
            });
        }
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

    /// The pair read from storage as the room started: the room's own if
    /// it hashes to the room's name (anything else is not trusted).
    fn pair_loaded(&mut self, pair: Pair) {
        if pair.room() != self.name {
            log::error!(
                "room {}: the stored pair {:?} is not this room's; ignoring it",
                self.name,
                pair.users()
            );
            return;
        }
        self.pair_stored = true;
        if self.dm.is_none() {
            self.dm = Some(pair);
        }
    }

    /// A join of this direct-message room: a `join` with `dm` teaches the
    /// room its pair (the session derived the name from it, so it is this
    /// room's and has the joiner in it); a join by name is let in only if
    /// the room knows its pair and the joiner is one of the two.
    fn check_pair(&mut self, join: &AddMember) -> Result<(), String> {
        if let (Some(pair), None) = (&join.dm, &self.dm) {
            self.dm = Some(pair.clone());
        }
        match &self.dm {
            None => Err(format!(
                "{} is a direct-message room; open it with \"dm\" and the other user's name",
                self.name
            )),
            Some(pair) if !pair.contains(&join.user) => Err(format!(
                "{} is a direct-message room of two other users",
                self.name
            )),
            Some(_) => Ok(()),
        }
    }

    /// A chat stored in this direct-message room: the other user of the
    /// pair hears of it on every connection not in the room, on this node
    /// and (cluster mode) the others.
    fn tell_direct(&self, pair: &Pair, message: &ChatMessage) {
        if message.kind != ChangeKind::Chat {
            return;
        }
        let mut others: Vec<&UserName> = pair
            .users()
            .iter()
            .filter(|u| **u != message.user)
            .collect();
        // A room of one has nobody else to tell.
        others.dedup();
        for to in others {
            let notice = DirectNotice {
                room: self.name.clone(),
                to: to.clone(),
                from: message.user.clone(),
                id: message.id,
            };
            if let Some(cluster) = &self.cluster {
                cluster.publish_direct(&notice);
            }
            self.notices.do_send(notice);
        }
    }

    /// Refuses a join: the session sends (and counts) the error, and the
    /// server forgets the connection here.
    fn refuse(&mut self, join: AddMember, code: ErrorCode, why: String) {
        // The server first: rooms run on threads of their own, and a
        // client that reads the error may join again at once, which the
        // server must not take for a second join.
        self.server.do_send(MemberDropped {
            room: self.name.clone(),
            session: join.session,
        });
        let _ = join.admitted.send(Err((code, why)));
    }

    /// Admits a joiner once its history and read marker are known.
    fn admit(&mut self, mut join: AddMember, messages: Vec<ChatMessage>, more: bool, read: Marker) {
        let (admitted, _) = tokio::sync::oneshot::channel();
        // Told on return, whatever happens: the session waits for it.
        let _admitted = std::mem::replace(&mut join.admitted, admitted);
        let history: ByteString = ServerFrame::History {
            room: &self.name,
            messages: &messages,
            more,
            last_read: read.0,
            unread: read.1,
            dm: self.dm.as_ref().map(Pair::users),
        }
        .encode()
        .into();
        if join.outbox.push(history, self.outbox_limit).is_err() {
            return;
        }
        self.markers.known(&join.user, read.0);
        let first = self
            .members
            .insert(join.session, join.user.clone(), join.outbox);
        let presence: ByteString = ServerFrame::Presence {
            room: &self.name,
            users: self.elsewhere.with(self.members.users()),
        }
        .encode()
        .into();
        self.send_to(join.session, presence);
        self.tell_occupancy();
        if first {
            if let Some(cluster) = &self.cluster {
                cluster.set_present(&self.name, &join.user, true);
            }
            // In cluster mode a user already here through another node
            // has joined already, as far as everyone can tell.
            if !self.elsewhere.contains(&join.user) {
                let frame = self.join_frame(&join.user);
                self.broadcast(&frame, Some(join.session));
            }
        }
    }

    /// Sends a frame about `user` to its audience (`own` instead to the
    /// connection it names), dropping members whose outbox overflowed.
    fn send_about(
        &mut self,
        audience: Audience<'_>,
        frame: ByteString,
        own: Option<(SessionId, ByteString)>,
    ) {
        let overflowed = self
            .members
            .push_about(audience, &frame, own, self.outbox_limit);
        self.drop_members(overflowed);
    }

    /// A member is typing: the other users hear it, at most once per
    /// connection every two seconds (never while muted); in cluster mode
    /// other nodes too.
    fn typing(&mut self, session: SessionId) {
        let Some(user) = self.members.typing(session, Instant::now()).cloned() else {
            return;
        };
        // A muted user's typing would only tease.
        if self.sanctions.is_muted(&user, now_millis()) {
            return;
        }
        self.metrics.typing_forwarded.inc();
        self.tell_typing(&user);
        if let Some(cluster) = &self.cluster {
            cluster.publish_typing(&self.name, &user);
        }
    }

    /// Tells the members who are not `user` that `user` is typing.
    fn tell_typing(&mut self, user: &UserName) {
        let frame = ServerFrame::Typing {
            room: &self.name,
            user,
        }
        .encode()
        .into();
        self.send_about(Audience::Others(user), frame, None);
    }

    /// Tells `user`'s connections here that its read marker is `id`; the
    /// one that moved it gets its `ref`.
    fn tell_read(&mut self, user: &UserName, id: MessageId, own: Option<(SessionId, &str)>) {
        let frame = |reference| -> ByteString {
            ServerFrame::Read {
                room: &self.name,
                id,
                reference,
            }
            .encode()
            .into()
        };
        let own = own.map(|(session, reference)| (session, frame(Some(reference))));
        self.send_about(Audience::User(user), frame(None), own);
    }

    /// A member's user read the room up to `id`: stored (only ever
    /// forward, one write per user at a time, see [`markers`]), then every
    /// connection of that user is told the marker.
    fn read(
        &mut self,
        session: SessionId,
        id: MessageId,
        reference: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(member) = self.members.get(session) else {
            return;
        };
        let last = self.recent.last_id();
        if id > last {
            let why = format!("\"id\" {id} is past the room's last message ({last})");
            self.send_error(session, ErrorCode::InvalidField, &why, reference.as_deref());
            return;
        }
        let user = member.user.clone();
        match self
            .markers
            .request(&user, (session, reference.clone()), id)
        {
            ReadStep::Acknowledge(stored) => {
                self.acknowledge_read(session, stored, reference.as_deref())
            }
            ReadStep::Write(id) => self.write_marker(user, id, ctx),
            ReadStep::Queued { displaced, stored } => {
                if let Some((session, reference)) = displaced {
                    self.acknowledge_read(session, stored, reference.as_deref());
                }
            }
        }
    }

    /// Answers one connection's `read` with the stored marker.
    fn acknowledge_read(&mut self, session: SessionId, id: MessageId, reference: Option<&str>) {
        let frame: ByteString = ServerFrame::Read {
            room: &self.name,
            id,
            reference,
        }
        .encode()
        .into();
        self.send_to(session, frame);
    }

    /// Stores `user`'s marker `id`, then tells its connections (and the
    /// other nodes), and starts the write queued meanwhile, if any.
    fn write_marker(&mut self, user: UserName, id: MessageId, ctx: &mut Context<Self>) {
        let (history, name, who) = (self.history.clone(), self.name.clone(), user.clone());
        let write = async move { history.set_read_marker(&name, &who, id).await };
        ctx.spawn(write.into_actor(self).map(move |result, room, ctx| {
            let stored = match &result {
                Ok(marker) => Some(*marker),
                Err(e) => {
                    log::error!("room {}: cannot store a read marker: {e}", room.name);
                    None
                }
            };
            let done = room.markers.written(&user, stored);
            match (stored, done.asked) {
                (Some(_), asked) => {
                    room.metrics.read_markers_stored.inc();
                    let own = asked
                        .as_ref()
                        .and_then(|(s, r)| r.as_deref().map(|r| (*s, r)));
                    room.tell_read(&user, done.stored, own);
                    if let Some(cluster) = &room.cluster {
                        cluster.publish_read(&room.name, &user, done.stored);
                    }
                }
                (None, Some((session, reference))) => {
                    let why = "the read marker could not be stored; try again later";
                    room.send_error(session, ErrorCode::StoreFailed, why, reference.as_deref());
                }
                (None, None) => {}
            }
            if let Some((session, reference)) = done.covered {
                room.acknowledge_read(session, done.stored, reference.as_deref());
            }
            if let Some(next) = done.next {
                room.write_marker(user, next, ctx);
            }
        }));
    }

    /// Reads `user`'s marker and unread count up to what the room has
    /// broadcast, then admits the joiner, the room waiting meanwhile so
    /// `history` and the live stream still meet exactly.
    fn read_marker_then_admit(
        &mut self,
        join: AddMember,
        history: Option<(MessageId, Option<MessageId>)>,
        cached: (Vec<ChatMessage>, bool),
        ctx: &mut Context<Self>,
    ) {
        let (store, name, user) = (self.history.clone(), self.name.clone(), join.user.clone());
        let (up_to, limit) = (self.recent.last_id(), self.recent.max());
        // The first `dm` join of a room whose pair is not stored yet
        // stores it, before the joiner gets `history`: by then a join by
        // name works on every node, and the other user's listing shows it.
        let to_store = match (&join.dm, &self.dm) {
            (Some(_), Some(pair)) if !self.pair_stored => Some(pair.users().clone()),
            _ => None,
        };
        let read = async move {
            let stored = match &to_store {
                Some(users) => Some(store.open_direct(&name, users).await),
                None => None,
            };
            if let Some(Err(e)) = &stored {
                // The `dm` join goes on: it works without the stored pair,
                // and the next one tries again.
                log::error!("room {name}: cannot store its pair: {e}");
            }
            let marker = store.read_marker(&name, &user, up_to).await;
            let page = match history {
                Some((after, up_to)) => Some(store.after(&name, after, up_to, limit).await),
                None => None,
            };
            (stored, marker, page)
        };
        ctx.wait(
            read.into_actor(self)
                .map(move |(stored, marker, page), room, _| {
                    if let Some(Ok(())) = stored {
                        room.pair_stored = true;
                    }
                    let marker = marker.unwrap_or_else(|e| {
                        log::error!("room {}: cannot read a read marker: {e}", room.name);
                        (0, 0)
                    });
                    let (messages, more) = match page {
                        None => cached,
                        Some(Ok(page)) => page,
                        Some(Err(e)) => {
                            log::error!("room {}: cannot read history: {e}", room.name);
                            // `more: true` tells the client to fetch what it
                            // missed over REST.
                            (Vec::new(), true)
                        }
                    };
                    room.admit(join, messages, more, marker);
                }),
        );
    }

    /// Queues a change for storage as `user` and notes who waits for its
    /// answer: the writer answers in queue order, matched by position.
    fn store(&mut self, user: UserName, change: NewChange, admitted: Admitted, chat: InFlight) {
        let Some(reply) = self.stored_recipient.clone() else {
            return;
        };
        self.history.store(PendingWrite {
            room: self.name.clone(),
            user,
            change,
            reply,
            admitted,
        });
        self.delivery.sent(chat);
    }

    /// Delivers the pending stored chats now if the room has waited long
    /// enough since its last delivery, or sets a timer for when it has.
    fn schedule_delivery(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match self.delivery.next(now, self.members.len()) {
            Next::Nothing => {}
            Next::Now => self.deliver_pending(),
            Next::After(wait) => {
                self.delivery.set_scheduled(true);
                self.delivery_timer = Some(ctx.run_later(wait, |room, _| {
                    room.delivery_timer = None;
                    room.delivery.set_scheduled(false);
                    room.deliver_pending();
                }));
            }
        }
    }

    /// Delivers every stored chat still waiting. Called before anything
    /// that reads or changes membership or the recent history, so a joiner's
    /// `history` and the live stream still meet exactly.
    fn deliver_pending(&mut self) {
        let Some(drained) = self.drained_recipient.clone() else {
            return;
        };
        let Some(mut batch) = self.delivery.take(Instant::now()) else {
            return;
        };
        let api_answers = batch.take_api_answers();
        for message in batch.messages() {
            self.recent.remember(message);
        }
        let handing = Handing::new(batch.number(), self.members.len(), drained);
        let result = fan_out(batch.chats(), &self.members, self.outbox_limit, || {
            handing.receipt()
        });
        if handing.finish() {
            self.delivery.written(batch.number());
        }
        self.metrics.room_deliveries.inc();
        self.drop_members(result.overflowed);
        // This node's own stored changes: their latency, and what this
        // node alone tells of them (another node's were told by it).
        for chat in batch.chats() {
            let (Some(message), Some(received)) = (chat.message(), chat.received()) else {
                continue;
            };
            self.metrics
                .delivery_seconds
                .observe(received.elapsed().as_secs_f64());
            if let Some(pair) = &self.dm {
                self.tell_direct(pair, message);
            }
            if let (Some(webhooks), ChangeKind::Chat) = (&self.webhooks, message.kind) {
                webhooks.send(Event::Message(Box::new(message.clone())));
            }
        }
        let removed: Vec<UserName> = batch
            .messages()
            .filter(|m| m.kind == ChangeKind::Moderation)
            .filter_map(|m| {
                self.sanctions.apply(m);
                match m.action {
                    Some(ModAction::Kick | ModAction::Ban) => m.subject.clone(),
                    _ => None,
                }
            })
            .collect();
        let mut removed_here: HashMap<UserName, usize> = HashMap::new();
        for user in removed {
            let n = self.remove_user(&user);
            *removed_here.entry(user).or_default() += n;
        }
        for (answer, told) in api_answers {
            let told = told.map(|stored| {
                let connections = match &stored {
                    Stored::New(m)
                        if matches!(m.action, Some(ModAction::Kick | ModAction::Ban)) =>
                    {
                        m.subject
                            .as_ref()
                            .and_then(|s| removed_here.get(s))
                            .copied()
                            .unwrap_or(0)
                    }
                    _ => 0,
                };
                Answered {
                    stored,
                    connections,
                }
            });
            // The caller may have gone (a closed HTTP connection): the
            // change is stored and delivered all the same.
            let _ = answer.send(told);
        }
        self.metrics
            .messages_delivered
            .inc_by(result.delivered as u64);
        // Handed to the members: their outboxes bound them from here, so
        // the batch's backlog places are given back.
        drop(batch);
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stored_recipient = Some(ctx.address().recipient());
        self.drained_recipient = Some(ctx.address().recipient());
        // Nothing else is handled until the recent history is loaded, so
        // the first joiners get it too.
        let (history, name, limit) = (self.history.clone(), self.name.clone(), self.recent.max());
        // The newest change is where the room's ids (and, in cluster mode,
        // its order) start, even with MAX_HISTORY=0.
        let clustered = self.cluster.is_some();
        let load = async move { history.start_room(&name, limit.max(1)).await };
        ctx.wait(
            load.into_actor(self)
                .map(move |result, room, _| match result {
                    Ok(mut start) => {
                        room.sanctions.loaded(std::mem::take(&mut start.sanctions));
                        if let Some([a, b]) = start.pair.take() {
                            room.pair_loaded(Pair::new(&a, &b));
                        }
                        if clustered {
                            let sequence = Sequence::starting_at(start.changes.0.last());
                            room.delivery = Delivery::in_sequence(sequence);
                        }
                        room.recent.loaded(start);
                    }
                    Err(e) => {
                        log::error!("room {}: cannot load history: {e}", room.name);
                        room.recent.load_failed();
                        if clustered {
                            // Read everything on the first notification: better
                            // a repeat the client filters than a silent gap.
                            room.delivery = Delivery::in_sequence(Sequence::starting_at(None));
                        }
                    }
                }),
        );
        // Cluster mode: who is here through other nodes, before the first
        // joiner's `presence` (with no members yet, nobody hears a join).
        if let Some(read) = self.read_elsewhere() {
            ctx.wait(read);
        }
        log::debug!("room {} started", self.name);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        log::debug!("room {} stopped", self.name);
    }
}

impl Handler<AddMember> for RoomActor {
    type Result = ();

    fn handle(&mut self, join: AddMember, ctx: &mut Self::Context) {
        self.deliver_pending();
        if direct::is_direct(&self.name) {
            if let Err(why) = self.check_pair(&join) {
                return self.refuse(join, ErrorCode::Forbidden, why);
            }
        }
        if self.sanctions.is_banned(&join.user, now_millis()) {
            let why = format!("you are banned from room {}", self.name);
            return self.refuse(join, ErrorCode::Banned, why);
        }
        match self.recent.source(join.since) {
            HistorySource::Cache { messages, more } => {
                self.read_marker_then_admit(join, None, (messages, more), ctx)
            }
            // Rare: a client recovering more than the cache holds.
            HistorySource::Database { after, up_to } => {
                self.read_marker_then_admit(join, Some((after, up_to)), (Vec::new(), true), ctx)
            }
        }
    }
}

impl Handler<RemoveMember> for RoomActor {
    type Result = ();

    fn handle(&mut self, leave: RemoveMember, _: &mut Self::Context) {
        self.deliver_pending();
        let Some((member, last)) = self.members.remove(leave.session) else {
            return;
        };
        let frame = self.leave_frame(&member.user);
        if last && self.last_connection_closed(&member.user) {
            self.broadcast(&frame, None);
        }
        if leave.acknowledge {
            let _ = member.outbox.push(frame, self.outbox_limit);
        }
        self.tell_occupancy();
    }
}

impl Handler<FromMember> for RoomActor {
    type Result = ();

    fn handle(&mut self, asked: FromMember, ctx: &mut Self::Context) {
        let Some(member) = self.members.get(asked.session) else {
            // The session was dropped as a slow reader and is closing.
            return;
        };
        match asked.request {
            MemberRequest::Change { change, admitted } => {
                let speaks = matches!(
                    change,
                    NewChange::Chat { .. } | NewChange::Edit { .. } | NewChange::React { .. }
                );
                if speaks && self.sanctions.is_muted(&member.user, now_millis()) {
                    // Refused before storage: its backlog place goes now.
                    drop(admitted);
                    let why = format!("you are muted in room {}", self.name);
                    let reference = asked.reference.as_deref();
                    self.send_error(asked.session, ErrorCode::Muted, &why, reference);
                    return;
                }
                let user = member.user.clone();
                self.store(
                    user,
                    change,
                    admitted,
                    InFlight {
                        sender: Sender::Member(asked.session),
                        reference: asked.reference,
                        received: asked.received,
                    },
                );
            }
            MemberRequest::Typing => self.typing(asked.session),
            MemberRequest::Read { id } => self.read(asked.session, id, asked.reference, ctx),
        }
    }
}

impl Handler<PublishChange> for RoomActor {
    type Result = ();

    /// The server API's change takes its place in the room's order exactly
    /// as a member's: queued for storage behind what came before it.
    fn handle(&mut self, publish: PublishChange, _: &mut Self::Context) {
        // DELETE /bans/{user} of a user who is not banned stores nothing.
        if let NewChange::Moderate {
            action: ModAction::Unban,
            subject,
            ..
        } = &publish.change
        {
            if !self.sanctions.is_banned(subject, now_millis()) {
                let _ = publish.answer.send(Ok(Answered {
                    stored: Stored::Refused(Refusal::NotFound),
                    connections: 0,
                }));
                return;
            }
        }
        self.store(
            publish.user,
            publish.change,
            publish.admitted,
            InFlight {
                sender: Sender::Api(publish.answer),
                reference: None,
                received: publish.received,
            },
        );
    }
}

impl Handler<MessagesStored> for RoomActor {
    type Result = ();

    fn handle(&mut self, stored: MessagesStored, ctx: &mut Self::Context) {
        let matched = self.delivery.stored(stored.0, stored.1);
        if matched.unmatched > 0 {
            log::error!(
                "room {}: a stored message nobody was waiting for",
                self.name
            );
        }
        for code in matched.errors {
            self.metrics.error(code);
        }
        self.schedule_delivery(ctx);
        self.catch_up(ctx);
    }
}

impl Handler<ClusterNews> for RoomActor {
    type Result = ();

    fn handle(&mut self, news: ClusterNews, ctx: &mut Self::Context) {
        match news {
            ClusterNews::Committed(last_seq) => {
                if let Some(sequence) = self.delivery.sequence() {
                    sequence.notified(last_seq);
                }
                self.catch_up(ctx);
            }
            ClusterNews::PresenceChanged => self.refresh_elsewhere(ctx),
            ClusterNews::Typing { user } => self.tell_typing(&user),
            ClusterNews::Read { user, id } => {
                self.markers.known(&user, id);
                self.tell_read(&user, id, None);
            }
            ClusterNews::Resync => {
                if let Some(sequence) = self.delivery.sequence() {
                    sequence.read_to_end();
                }
                self.catch_up(ctx);
                self.refresh_elsewhere(ctx);
            }
        }
    }
}

impl Handler<RoomUsers> for RoomActor {
    type Result = Vec<UserName>;

    fn handle(&mut self, _: RoomUsers, _: &mut Self::Context) -> Vec<UserName> {
        self.members.users().cloned().collect()
    }
}

impl Handler<CatchUp> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: CatchUp, _: &mut Self::Context) {
        self.deliver_pending();
    }
}

impl Handler<Drained> for RoomActor {
    type Result = ();

    /// The members have written a delivery: if it was the last one, what
    /// is pending goes out now rather than when the timer fires.
    fn handle(&mut self, drained: Drained, ctx: &mut Self::Context) {
        if !self.delivery.written(drained.delivery) {
            return;
        }
        if let Some(timer) = self.delivery_timer.take() {
            ctx.cancel_future(timer);
            self.delivery.set_scheduled(false);
        }
        self.schedule_delivery(ctx);
    }
}

impl Handler<StopRoom> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: StopRoom, ctx: &mut Self::Context) {
        self.deliver_pending();
        ctx.stop();
    }
}
