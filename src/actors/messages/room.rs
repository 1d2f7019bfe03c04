//! What a [`RoomActor`](crate::actors::room::RoomActor) handles: members
//! added and removed by the server, chats straight from its members'
//! sessions, and the server's questions and barriers. (The room also handles
//! `MessagesStored`, the history writer's answer, which is still defined in
//! [`crate::history`].)

use std::time::Instant;

use actix::prelude::*;

use crate::actors::outbox::Outbox;
use crate::actors::SessionId;
use crate::backlog::Admitted;
use crate::protocol::{MessageId, UserName};

/// From the server, for a session's `JoinRoom`: add a connection to the
/// room. It receives `history`, then `presence`; the others hear `join` if
/// this is the user's first connection here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AddMember {
    pub session: SessionId,
    pub user: UserName,
    pub outbox: Outbox,
    /// Recover messages with `id > since` instead of the latest ones.
    pub since: Option<MessageId>,
}

/// From the server, for a session's `LeaveRoom` or `Disconnect`: remove a
/// connection from the room.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RemoveMember {
    pub session: SessionId,
    /// Send the leaver its own `leave` (an explicit leave, not a disconnect).
    pub acknowledge: bool,
}

/// From a member's session, straight (not through the server): say
/// something in the room. The session has already validated it and applied
/// the rate limit.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Chat {
    pub session: SessionId,
    pub text: String,
    pub reference: Option<String>,
    /// When the session read it, for the delivery latency metric.
    pub received: Instant,
    /// Its place in the server's backlog, held until the room has handed
    /// the stored chat to its members.
    pub admitted: Admitted,
}

/// From the server, for the REST API: the room's distinct users, sorted.
#[derive(Message)]
#[rtype(result = "Vec<UserName>")]
pub(crate) struct RoomUsers;

/// From the server, for `CatchUpRooms` at shutdown: handle everything
/// received before this and deliver what is stored, then
/// answer: at shutdown, every chat the room accepted is then queued for
/// storage.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CatchUp;

/// From the server: the room has no members left and is no longer routed
/// to.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopRoom;

/// From the server, in cluster mode: what the cluster's listener heard
/// about this room.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum ClusterNews {
    /// Some node committed messages into the room, up to this `seq`.
    Committed(i64),
    /// Some node's users in the room changed.
    PresenceChanged,
    /// The listener was down: read whatever was missed.
    Resync,
}
