//! What a [`RoomActor`](crate::actors::room::RoomActor) handles: members
//! added and removed by the server, chats straight from its members'
//! sessions, and the server's questions and barriers. (The room also handles
//! `MessagesStored`, the history writer's answer, which is still defined in
//! [`crate::history`].)

use std::time::Instant;

use actix::prelude::*;

use crate::actors::messages::server::Admission;
use crate::actors::outbox::Outbox;
use crate::actors::room::delivery::ApiAnswer;
use crate::actors::SessionId;
use crate::backlog::Admitted;
use crate::direct::Pair;
use crate::history::NewChange;
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
    /// A `join` with `dm`: the pair whose room this is (the room learns
    /// and stores it). `None` for a join by name, which the room checks
    /// against the pair it knows.
    pub dm: Option<Pair>,
    /// Told once the joiner has its `history` and `presence`, or is
    /// refused.
    pub admitted: tokio::sync::oneshot::Sender<Admission>,
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

/// From a member's session, straight (not through the server): a change
/// to store, a typing notice or a read marker. The session has already
/// validated it and applied its rate limits.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FromMember {
    pub session: SessionId,
    pub request: MemberRequest,
    pub reference: Option<String>,
    /// When the session read it, for the delivery latency metric.
    pub received: Instant,
}

/// What a member asks of its room.
pub(crate) enum MemberRequest {
    /// A chat, edit, delete or reaction: stored, then broadcast.
    Change {
        change: NewChange,
        /// Its place in the server's backlog, held until the room has
        /// handed the stored change to its members.
        admitted: Admitted,
    },
    /// The member is typing: passed on (throttled), never stored.
    Typing,
    /// The member's user has read the room up to `id`.
    Read { id: MessageId },
}

/// From the server, for the server API: a change to store as `user`, in
/// the room's order like a member's; `answer` is told what storage made of
/// it (`Err`: the database refused it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PublishChange {
    pub user: UserName,
    pub change: NewChange,
    pub admitted: Admitted,
    pub answer: ApiAnswer,
    pub received: Instant,
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

/// From a member's session, through the [`Receipt`] it held: the room's
/// delivery number `delivery` has been written by all its members but the
/// stragglers, so what is pending may go out at once.
///
/// [`Receipt`]: crate::actors::outbox::Receipt
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Drained {
    pub delivery: u64,
}

/// From the server: the room has no members left and is no longer routed
/// to.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopRoom;

/// From the server, in cluster mode: what the cluster's listener heard
/// about this room.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub(crate) enum ClusterNews {
    /// Some node committed messages into the room, up to this `seq`.
    Committed(i64),
    /// Some node's users in the room changed.
    PresenceChanged,
    /// The listener was down: read whatever was missed.
    Resync,
    /// A user on another node is typing.
    Typing { user: UserName },
    /// A user's read marker moved on another node.
    Read { user: UserName, id: MessageId },
}
