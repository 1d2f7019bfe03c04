//! `ChatServer`: the one registry of connections and active rooms. Sessions
//! join and leave through it, so it knows when a room gains its first member
//! (start a [`RoomActor`]) and loses its last (stop it; history stays
//! stored). Chat messages do not pass through here: after a join the session
//! talks to its room directly. The REST API asks it about rooms, and
//! shutdown asks it to close every session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;
use futures_util::future::join_all;

use super::messages::room::{
    AddMember, CatchUp, ClusterNews, PublishChange, RemoveMember, RoomUsers, StopRoom,
};
use super::messages::server::{
    ActiveRoomUsers, BeginShutdown, CatchUpRooms, ClusterEvent, Connect, DirectNotice, Disconnect,
    DisconnectUser, JoinError, JoinRoom, Joined, LeaveRoom, ListRooms, MemberDropped, Publish,
    PublishError, RoomSummary, ServerStats, Stats,
};
use super::messages::session::{Disconnected, GoingAway};
use super::outbox::Outbox;
use super::room::RoomActor;
use super::room_threads::RoomThreads;
use super::SessionId;
use crate::actors::room::delivery::{Answered, StoreFailed};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::direct;
use crate::history::History;
use crate::metrics::Metrics;
use crate::protocol::{RoomName, ServerFrame, UserName};
use crate::webhooks::Webhooks;

struct ActiveRoom {
    addr: Addr<RoomActor>,
    /// The connections in the room. A set, not a count, so a member that
    /// both was dropped by the room and later disconnected is removed once.
    sessions: HashSet<SessionId>,
    /// Server API changes sent to the room and not answered yet: the room
    /// stays up for them even with no members.
    publishing: usize,
}

/// A connection as the server knows it.
struct Connection {
    user: UserName,
    closer: Recipient<GoingAway>,
    disconnect: Recipient<Disconnected>,
    /// For frames from no room (`direct` notices).
    outbox: Outbox,
}

pub(crate) struct ChatServer {
    config: Arc<Config>,
    history: History,
    /// Cluster mode: handed to each room it starts.
    cluster: Option<Cluster>,
    /// Handed to each room it starts.
    webhooks: Option<Webhooks>,
    metrics: Arc<Metrics>,
    rooms: HashMap<RoomName, ActiveRoom>,
    /// Where new rooms are started, in turn.
    room_threads: RoomThreads,
    sessions: HashMap<SessionId, Connection>,
    /// Each user's connections here: what the server API's disconnect and
    /// the `direct` notices reach. As bounded as `sessions` (an entry goes
    /// with its user's last connection).
    by_user: HashMap<UserName, HashSet<SessionId>>,
    shutting_down: bool,
}

impl ChatServer {
    pub(crate) fn new(
        config: Arc<Config>,
        history: History,
        cluster: Option<Cluster>,
        webhooks: Option<Webhooks>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ChatServer {
            room_threads: RoomThreads::start(config.room_threads),
            config,
            history,
            cluster,
            webhooks,
            metrics,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            shutting_down: false,
        }
    }

    /// Removes `session` from `room`, first handing the room `farewell` (the
    /// member's `RemoveMember`, if any), then stopping the room if it is now empty.
    /// The order matters: mailboxes are FIFO, so the room handles the leave
    /// before it stops.
    fn remove_from_room(&mut self, room: &str, session: SessionId, farewell: Option<RemoveMember>) {
        let Some(active) = self.rooms.get_mut(room) else {
            return;
        };
        if !active.sessions.remove(&session) {
            return;
        }
        if let Some(leave) = farewell {
            active.addr.do_send(leave);
        }
        self.stop_if_unused(room);
    }

    /// Stops `room` if it has no members and no server API change in
    /// flight. Runs in this actor, as joins do, so a join either finds the
    /// room still routed to or starts a new one.
    fn stop_if_unused(&mut self, room: &str) {
        let unused = self
            .rooms
            .get(room)
            .is_some_and(|active| active.sessions.is_empty() && active.publishing == 0);
        if unused {
            if let Some(active) = self.rooms.remove(room) {
                active.addr.do_send(StopRoom);
            }
            self.metrics.rooms.set(self.rooms.len() as i64);
        }
    }

    /// Sends `notice` as a `direct` frame to each connection of its user
    /// here that is not a member of its room.
    fn notify_direct(&self, notice: &DirectNotice) {
        let Some(sessions) = self.by_user.get(&notice.to) else {
            return;
        };
        let members = self.rooms.get(&notice.room).map(|r| &r.sessions);
        let frame: ByteString = ServerFrame::Direct {
            room: &notice.room,
            with: &notice.from,
            id: notice.id,
        }
        .encode()
        .into();
        for session in sessions {
            if members.is_some_and(|m| m.contains(session)) {
                continue;
            }
            if let Some(connection) = self.sessions.get(session) {
                // An overflow closes the connection (the outbox tells it).
                let _ = connection
                    .outbox
                    .push(frame.clone(), self.config.outbox_limit);
            }
        }
    }

    /// The active room `name`, started if it is not (within `MAX_ROOMS`).
    fn room(
        &mut self,
        name: &RoomName,
        ctx: &mut Context<Self>,
    ) -> Result<&mut ActiveRoom, JoinError> {
        let rooms = self.rooms.len() + usize::from(!self.rooms.contains_key(name));
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        if !self.rooms.contains_key(name) && self.rooms.len() >= self.config.max_rooms {
            return Err(JoinError::TooManyRooms(self.config.max_rooms));
        }
        let active = self.rooms.entry(name.clone()).or_insert_with(|| {
            let room = RoomActor::new(
                name.clone(),
                self.history.clone(),
                ctx.address().recipient(),
                ctx.address().recipient(),
                self.config.max_history,
                self.config.outbox_limit,
                self.cluster.clone(),
                self.webhooks.clone(),
                self.metrics.clone(),
            );
            ActiveRoom {
                addr: RoomActor::start_in_arbiter(self.room_threads.next(), move |_| room),
                sessions: HashSet::new(),
                publishing: 0,
            }
        });
        self.metrics.rooms.set(rooms as i64);
        Ok(active)
    }
}

impl Actor for ChatServer {
    type Context = Context<Self>;
}

impl Handler<Connect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        if self.shutting_down {
            msg.closer.do_send(GoingAway);
        }
        self.by_user
            .entry(msg.user.clone())
            .or_default()
            .insert(msg.session);
        self.sessions.insert(
            msg.session,
            Connection {
                user: msg.user,
                closer: msg.closer,
                disconnect: msg.disconnect,
                outbox: msg.outbox,
            },
        );
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        if let Some(connection) = self.sessions.remove(&msg.session) {
            if let Some(sessions) = self.by_user.get_mut(&connection.user) {
                sessions.remove(&msg.session);
                if sessions.is_empty() {
                    self.by_user.remove(&connection.user);
                }
            }
        }
        for room in &msg.rooms {
            let leave = RemoveMember {
                session: msg.session,
                acknowledge: false,
            };
            self.remove_from_room(room, msg.session, Some(leave));
        }
    }
}

impl Handler<JoinRoom> for ChatServer {
    type Result = Result<Joined, JoinError>;

    fn handle(&mut self, msg: JoinRoom, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        // A direct-message room checks a join by name itself, against the
        // pair it knows (from a `dm` join, or stored).
        let active = self.room(&msg.room, ctx)?;
        active.sessions.insert(msg.session);
        let addr = active.addr.clone();
        let (admitted, told) = tokio::sync::oneshot::channel();
        addr.do_send(AddMember {
            session: msg.session,
            user: msg.user,
            outbox: msg.outbox,
            since: msg.since,
            dm: msg.dm,
            admitted,
        });
        Ok(Joined {
            room: addr.recipient(),
            admitted: told,
        })
    }
}

impl Handler<LeaveRoom> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: LeaveRoom, _: &mut Self::Context) {
        let leave = RemoveMember {
            session: msg.session,
            acknowledge: true,
        };
        self.remove_from_room(&msg.room, msg.session, Some(leave));
    }
}

impl Handler<Publish> for ChatServer {
    type Result = ResponseActFuture<Self, Result<Answered, PublishError>>;

    /// Hands the change to its room (started if need be), then, once it is
    /// answered, stops the room again if nobody joined meanwhile. The wait
    /// runs in this actor's context, so the count goes down even if the
    /// HTTP caller has gone.
    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) -> Self::Result {
        let room = msg.room.clone();
        // The API reaches a direct-message room only while it is open.
        if direct::is_direct(&room) && !self.rooms.contains_key(&room) {
            let refused = JoinError::Forbidden(format!(
                "{room} is a direct-message room that is not open; the server API reaches it \
                 only while one of its users is in it"
            ));
            return Box::pin(fut::ready(Err(refused.into())));
        }
        let active = match self.room(&msg.room, ctx) {
            Ok(active) => active,
            Err(e) => return Box::pin(fut::ready(Err(e.into()))),
        };
        active.publishing += 1;
        let (answer, told) = tokio::sync::oneshot::channel();
        active.addr.do_send(PublishChange {
            user: msg.user,
            change: msg.change,
            admitted: msg.admitted,
            answer,
            received: Instant::now(),
        });
        Box::pin(told.into_actor(self).map(move |told, server, _| {
            if let Some(active) = server.rooms.get_mut(&room) {
                active.publishing -= 1;
            }
            server.stop_if_unused(&room);
            match told {
                Ok(Ok(stored)) => Ok(stored),
                // Dropped unanswered: the room stopped first.
                Ok(Err(StoreFailed)) | Err(_) => Err(PublishError::StoreFailed),
            }
        }))
    }
}

impl Handler<DisconnectUser> for ChatServer {
    type Result = usize;

    fn handle(&mut self, msg: DisconnectUser, _: &mut Self::Context) -> usize {
        let mut closed = 0;
        let sessions = self.by_user.get(&msg.user).into_iter().flatten();
        for connection in sessions.filter_map(|s| self.sessions.get(s)) {
            connection.disconnect.do_send(Disconnected);
            closed += 1;
        }
        closed
    }
}

impl Handler<DirectNotice> for ChatServer {
    type Result = ();

    /// Tells each connection of `to` here that is not in the room; one
    /// whose outbox is full is closed by it, as a room's member would be.
    fn handle(&mut self, notice: DirectNotice, _: &mut Self::Context) {
        self.notify_direct(&notice);
    }
}

impl Handler<MemberDropped> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: MemberDropped, _: &mut Self::Context) {
        self.remove_from_room(&msg.room, msg.session, None);
    }
}

impl Handler<ListRooms> for ChatServer {
    type Result = ResponseFuture<Vec<RoomSummary>>;

    fn handle(&mut self, _: ListRooms, _: &mut Self::Context) -> Self::Result {
        let mut rooms: Vec<(RoomName, Addr<RoomActor>)> = self
            .rooms
            .iter()
            .map(|(name, active)| (name.clone(), active.addr.clone()))
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        Box::pin(async move {
            let users = join_all(rooms.iter().map(|(_, addr)| addr.send(RoomUsers))).await;
            rooms
                .into_iter()
                .zip(users)
                // A room that stopped meanwhile is no longer active.
                .filter_map(|((name, _), users)| {
                    users.ok().map(|users| RoomSummary { name, users })
                })
                .collect()
        })
    }
}

impl Handler<ActiveRoomUsers> for ChatServer {
    type Result = ResponseFuture<Option<Vec<UserName>>>;

    fn handle(&mut self, msg: ActiveRoomUsers, _: &mut Self::Context) -> Self::Result {
        let addr = self.rooms.get(&msg.room).map(|active| active.addr.clone());
        Box::pin(async move {
            match addr {
                Some(addr) => addr.send(RoomUsers).await.ok(),
                None => None,
            }
        })
    }
}

impl Handler<Stats> for ChatServer {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        MessageResult(ServerStats {
            connections: self.sessions.len(),
            rooms: self.rooms.len(),
        })
    }
}

impl Handler<BeginShutdown> for ChatServer {
    type Result = usize;

    fn handle(&mut self, _: BeginShutdown, _: &mut Self::Context) -> usize {
        self.shutting_down = true;
        for connection in self.sessions.values() {
            connection.closer.do_send(GoingAway);
        }
        self.sessions.len()
    }
}

impl Handler<CatchUpRooms> for ChatServer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CatchUpRooms, _: &mut Self::Context) -> Self::Result {
        let rooms: Vec<_> = self.rooms.values().map(|r| r.addr.clone()).collect();
        Box::pin(async move {
            join_all(rooms.iter().map(|addr| addr.send(CatchUp))).await;
        })
    }
}

impl Handler<ClusterEvent> for ChatServer {
    type Result = ();

    /// Passes the cluster's news to the room it is about, if the room is
    /// active here (a room that starts later reads the history itself).
    fn handle(&mut self, event: ClusterEvent, _: &mut Self::Context) {
        let (room, news) = match event {
            ClusterEvent::Committed { room, last_seq } => (room, ClusterNews::Committed(last_seq)),
            ClusterEvent::PresenceChanged { room } => (room, ClusterNews::PresenceChanged),
            ClusterEvent::Typing { room, user } => (room, ClusterNews::Typing { user }),
            ClusterEvent::Read { room, user, id } => (room, ClusterNews::Read { user, id }),
            ClusterEvent::Direct(notice) => return self.notify_direct(&notice),
            ClusterEvent::Resync => {
                for active in self.rooms.values() {
                    active.addr.do_send(ClusterNews::Resync);
                }
                return;
            }
        };
        if let Some(active) = self.rooms.get(&room) {
            active.addr.do_send(news);
        }
    }
}
