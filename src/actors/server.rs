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

use super::history::History;
use super::outbox::Outbox;
use super::room::{self, Chat, RoomActor, RoomUsers, StopRoom};
use super::SessionId;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::protocol::{MessageId, RoomName, UserName};

/// A new WebSocket session; `closer` is how shutdown reaches it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub closer: Recipient<GoingAway>,
}

/// A session ended: it leaves every room it was in, without acknowledgement.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub rooms: Vec<RoomName>,
}

/// Join a room, starting it if it is not active. Answers with where to
/// send the room's chat messages; the room itself sends `history` and
/// `presence`.
#[derive(Message)]
#[rtype(result = "Result<Recipient<Chat>, JoinError>")]
pub struct JoinRoom {
    pub session: SessionId,
    pub user: UserName,
    pub room: RoomName,
    pub since: Option<MessageId>,
    pub outbox: Outbox,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the server already has its maximum of {0} active rooms")]
    TooManyRooms(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Leave a room (an explicit `leave`, acknowledged to the leaver).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRoom {
    pub session: SessionId,
    pub room: RoomName,
}

/// A room dropped a member on its own (a slow reader).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberDropped {
    pub room: RoomName,
    pub session: SessionId,
}

/// Active rooms, sorted by name, with their distinct user counts.
#[derive(Message)]
#[rtype(result = "Vec<RoomSummary>")]
pub struct ListRooms;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    pub name: RoomName,
    pub users: usize,
}

/// The users of one room: `None` when the room is not active.
#[derive(Message)]
#[rtype(result = "Option<Vec<UserName>>")]
pub struct ActiveRoomUsers {
    pub room: RoomName,
}

/// Counts for `/health`.
#[derive(Message)]
#[rtype(result = "ServerStats")]
pub struct Stats;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ServerStats {
    pub connections: usize,
    pub rooms: usize,
}

/// Close every session with 1001 and refuse new joins. Answers with the
/// number of sessions told.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Wait until every room has handled what it was sent (so every accepted
/// chat is queued for storage).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUpRooms;

/// Sent to each session at shutdown: close with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub struct GoingAway;

struct ActiveRoom {
    addr: Addr<RoomActor>,
    /// The connections in the room. A set, not a count, so a member that
    /// both was dropped by the room and later disconnected is removed once.
    sessions: HashSet<SessionId>,
}

pub struct ChatServer {
    config: Arc<Config>,
    history: History,
    metrics: Arc<Metrics>,
    rooms: HashMap<RoomName, ActiveRoom>,
    sessions: HashMap<SessionId, Recipient<GoingAway>>,
    shutting_down: bool,
}

impl ChatServer {
    pub fn new(config: Arc<Config>, history: History, metrics: Arc<Metrics>) -> Self {
        ChatServer {
            config,
            history,
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
    fn remove_from_room(
        &mut self,
        room: &str,
        session: SessionId,
        farewell: Option<room::RemoveMember>,
    ) {
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
            let leave = room::RemoveMember {
                session: msg.session,
                acknowledge: false,
            };
            self.remove_from_room(room, msg.session, Some(leave));
        }
    }
}

impl Handler<JoinRoom> for ChatServer {
    type Result = Result<Recipient<Chat>, JoinError>;

    fn handle(&mut self, msg: JoinRoom, ctx: &mut Self::Context) -> Self::Result {
        if self.shutting_down {
            return Err(JoinError::ShuttingDown);
        }
        if !self.rooms.contains_key(&msg.room) && self.rooms.len() >= self.config.max_rooms {
            return Err(JoinError::TooManyRooms(self.config.max_rooms));
        }
        let active = self.rooms.entry(msg.room.clone()).or_insert_with(|| {
            let room = RoomActor::new(
                msg.room.clone(),
                self.history.clone(),
                ctx.address().recipient(),
                self.config.max_history,
                self.config.outbox_limit,
                self.metrics.clone(),
            );
            ActiveRoom {
                addr: room.start(),
                sessions: HashSet::new(),
            }
        });
        active.sessions.insert(msg.session);
        let addr = active.addr.clone();
        self.metrics.rooms.set(self.rooms.len() as i64);
        addr.do_send(room::AddMember {
            session: msg.session,
            user: msg.user,
            outbox: msg.outbox,
            since: msg.since,
        });
        Ok(addr.recipient())
    }
}

impl Handler<LeaveRoom> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: LeaveRoom, _: &mut Self::Context) {
        let leave = room::RemoveMember {
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
            let counts = join_all(rooms.iter().map(|(_, addr)| addr.send(RoomUsers))).await;
            rooms
                .into_iter()
                .zip(counts)
                // A room that stopped meanwhile is no longer active.
                .filter_map(|((name, _), users)| {
                    users.ok().map(|users| RoomSummary {
                        name,
                        users: users.len(),
                    })
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

impl Handler<Shutdown> for ChatServer {
    type Result = usize;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> usize {
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
            join_all(rooms.iter().map(|addr| addr.send(room::CatchUp))).await;
        })
    }
}
