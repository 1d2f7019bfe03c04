//! What the [`ChatServer`](crate::actors::server::ChatServer) handles: a
//! session's arrival, joins, leaves and departure; a room's dropped member;
//! the REST API's and `/health`'s questions; and shutdown.

use actix::prelude::*;

use super::room::FromMember;
use super::session::{Disconnected, GoingAway};
use crate::actors::outbox::Outbox;
use crate::actors::room::delivery::Answered;
use crate::actors::SessionId;
use crate::backlog::Admitted;
use crate::direct::Pair;
use crate::history::NewChange;
use crate::protocol::{MessageId, RoomName, UserName};

/// From a session as it starts; `closer` is how shutdown reaches it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Connect {
    pub session: SessionId,
    pub user: UserName,
    pub closer: Recipient<GoingAway>,
    /// How the server API's disconnect reaches it.
    pub disconnect: Recipient<Disconnected>,
    /// Where frames for it that come from no room (a `direct` notice) go.
    pub outbox: Outbox,
}

/// From a session as it stops: it leaves every room it was in, without
/// acknowledgement.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    pub session: SessionId,
    pub rooms: Vec<RoomName>,
}

/// From a session, for its client's `join`: join a room, starting it if it
/// is not active. Answers with where to send what the member asks of the
/// room; the room itself sends `history` and `presence`.
#[derive(Message)]
#[rtype(result = "Result<Joined, JoinError>")]
pub(crate) struct JoinRoom {
    pub session: SessionId,
    pub user: UserName,
    pub room: RoomName,
    pub since: Option<MessageId>,
    pub outbox: Outbox,
    /// A `join` with `dm`: the pair whose room `room` is (the session
    /// derived the name from it). `None` for a join by name, which the
    /// room checks against the pair it knows (see `RoomActor`).
    pub dm: Option<Pair>,
}

/// The server's yes to a [`JoinRoom`].
pub(crate) struct Joined {
    /// Where the member's requests go.
    pub room: Recipient<FromMember>,
    /// Fires once the room has sent `history` and `presence` (`Ok`), or
    /// refused the join (`Err`: the error for the client): the session
    /// waits for it, so a client's joins are answered in the order it sent
    /// them. A room that drops the join without a word counts as `Ok`.
    pub admitted: tokio::sync::oneshot::Receiver<Admission>,
}

/// A room's answer to a join: `Err` with the code and message of the
/// error the joiner gets (`banned`).
pub(crate) type Admission = Result<(), (crate::protocol::ErrorCode, String)>;

/// Why the server refused a [`JoinRoom`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("the server already has its maximum of {0} active rooms")]
    TooManyRooms(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Refused before the room was asked (the server API reaching a
    /// direct-message room that is not open).
    #[error("{0}")]
    Forbidden(String),
}

/// From a session, for its client's `leave`: leave a room, and acknowledge
/// it to the leaver.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LeaveRoom {
    pub session: SessionId,
    pub room: RoomName,
}

/// From a room that dropped a member on its own (a slow reader), so the
/// server stops counting it there.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MemberDropped {
    pub room: RoomName,
    pub session: SessionId,
}

/// From a direct-message room, for a chat it stored (or, in cluster mode,
/// from another node's room): `to`'s connections here that are not in
/// `room` get a `direct` notice that `from` wrote chat `id` there.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) struct DirectNotice {
    pub room: RoomName,
    pub to: UserName,
    pub from: UserName,
    pub id: MessageId,
}

/// From `GET /api/rooms`: the active rooms, sorted by name, with their
/// distinct users.
#[derive(Message)]
#[rtype(result = "Vec<RoomSummary>")]
pub(crate) struct ListRooms;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomSummary {
    pub name: RoomName,
    pub users: Vec<UserName>,
}

/// From `GET /api/rooms/{name}`: the users of one room, `None` when the
/// room is not active.
#[derive(Message)]
#[rtype(result = "Option<Vec<UserName>>")]
pub(crate) struct ActiveRoomUsers {
    pub room: RoomName,
}

/// From `GET /health`: how many connections and active rooms.
#[derive(Message)]
#[rtype(result = "ServerStats")]
pub(crate) struct Stats;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct ServerStats {
    pub connections: usize,
    pub rooms: usize,
}

/// From shutdown, first: close every session with 1001 and refuse new joins. Answers with the
/// number of sessions told.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct BeginShutdown;

/// From shutdown, before the last flush: wait until every room has handled
/// what it was sent (so every accepted chat is queued for storage).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CatchUpRooms;

/// From the cluster's listener, in cluster mode: a notification, for the
/// server to pass to the room it names (if the room is active here).
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum ClusterEvent {
    /// Some node committed messages into `room`, up to `last_seq`.
    Committed { room: RoomName, last_seq: i64 },
    /// Some node's users in `room` changed.
    PresenceChanged { room: RoomName },
    /// A user on another node is typing in `room`.
    Typing { room: RoomName, user: UserName },
    /// A user's read marker in `room` moved on another node.
    Read {
        room: RoomName,
        user: UserName,
        id: MessageId,
    },
    /// A direct-message room on another node stored a chat for a user
    /// who may be connected here.
    Direct(DirectNotice),
    /// The listener was down for a while: notifications may have been
    /// missed, so every room reads what it has not seen, and its presence.
    Resync,
}

/// From the server API's `POST /api/rooms/{name}/messages`: store a change
/// as `user` through the room, exactly as a member's (same order, same
/// group commit, same broadcast), starting the room if it is not active and
/// stopping it again once answered if it has no members. Answers with what
/// storage made of it.
#[derive(Message)]
#[rtype(result = "Result<Answered, PublishError>")]
pub(crate) struct Publish {
    pub room: RoomName,
    pub user: UserName,
    pub change: NewChange,
    /// Its place in the server's backlog, as a member's chat holds one.
    pub admitted: Admitted,
}

/// Why a [`Publish`] has no stored answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    Room(#[from] JoinError),
    /// The database refused the write (the writer logged why).
    #[error("the message could not be stored; try again later")]
    StoreFailed,
}

/// From the server API's `POST /api/users/{name}/disconnect`: close every
/// connection of `user` on this node with 4000. Answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct DisconnectUser {
    pub user: UserName,
}
