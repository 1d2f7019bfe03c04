//! `ChatServer`: the one registry of connections and active rooms. Sessions
//! join and leave through it, so it knows when a room gains its first member
//! (start a [`RoomActor`]) and loses its last (stop it; history stays
//! stored). Chat messages do not pass through here: after a join the session
//! talks to its room directly. The REST API asks it about rooms, and
//! shutdown asks it to close every session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::join_all;

use super::messages::room::{AddMember, CatchUp, ClusterNews, RemoveMember, RoomUsers, StopRoom};
use super::messages::server::{
    ActiveRoomUsers, BeginShutdown, CatchUpRooms, ClusterEvent, Connect, Disconnect, JoinError,
    JoinRoom, Joined, LeaveRoom, ListRooms, MemberDropped, RoomSummary, ServerStats, Stats,
};
use super::messages::session::GoingAway;
use super::room::RoomActor;
use super::SessionId;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::direct::{self, Pair};
use crate::history::History;
use crate::metrics::Metrics;
use crate::protocol::{RoomName, UserName};

struct ActiveRoom {
    addr: Addr<RoomActor>,
    /// The connections in the room. A set, not a count, so a member that
    /// both was dropped by the room and later disconnected is removed once.
    sessions: HashSet<SessionId>,
    /// A direct-message room's two users, known from the `join` with `dm`
    /// that opened it (its name cannot be turned back into them).
    dm: Option<Pair>,
}

pub(crate) struct ChatServer {
    config: Arc<Config>,
    history: History,
    /// Cluster mode: handed to each room it starts.
    cluster: Option<Cluster>,
    metrics: Arc<Metrics>,
    rooms: HashMap<RoomName, ActiveRoom>,
    sessions: HashMap<SessionId, Recipient<GoingAway>>,
    shutting_down: bool,
}

impl ChatServer {
    pub(crate) fn new(
        config: Arc<Config>,
        history: History,
        cluster: Option<Cluster>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ChatServer {
            config,
            history,
            cluster,
            metrics,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
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
        if active.sessions.is_empty() {
            if let Some(active) = self.rooms.remove(room) {
                active.addr.do_send(StopRoom);
            }
            self.metrics.rooms.set(self.rooms.len() as i64);
        }
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
        self.sessions.insert(msg.session, msg.closer);
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.sessions.remove(&msg.session);
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
        let dm = if direct::is_direct(&msg.room) {
            let known = self
                .rooms
                .get(&msg.room)
                .and_then(|active| active.dm.clone());
            let Some(pair) = msg.dm.clone().or(known) else {
                return Err(JoinError::Forbidden(format!(
                    "{} is a direct-message room; open it with \"dm\" and the other user's name",
                    msg.room
                )));
            };
            if !pair.contains(&msg.user) {
                return Err(JoinError::Forbidden(format!(
                    "{} is a direct-message room of two other users",
                    msg.room
                )));
            }
            Some(pair)
        } else {
            None
        };
        if !self.rooms.contains_key(&msg.room) && self.rooms.len() >= self.config.max_rooms {
            return Err(JoinError::TooManyRooms(self.config.max_rooms));
        }
        let active = self.rooms.entry(msg.room.clone()).or_insert_with(|| {
            let room = RoomActor::new(
                msg.room.clone(),
                dm.clone(),
                self.history.clone(),
                ctx.address().recipient(),
                self.config.max_history,
                self.config.outbox_limit,
                self.cluster.clone(),
                self.metrics.clone(),
            );
            ActiveRoom {
                addr: room.start(),
                sessions: HashSet::new(),
                dm,
            }
        });
        active.sessions.insert(msg.session);
        let addr = active.addr.clone();
        self.metrics.rooms.set(self.rooms.len() as i64);
        let (admitted, told) = tokio::sync::oneshot::channel();
        addr.do_send(AddMember {
            session: msg.session,
            user: msg.user,
            outbox: msg.outbox,
            since: msg.since,
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
        for closer in self.sessions.values() {
            closer.do_send(GoingAway);
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
