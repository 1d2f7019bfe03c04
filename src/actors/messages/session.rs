//! What a [`ChatSession`](crate::actors::session::ChatSession) handles: the
//! frames its rooms queue for it, and the server's word at shutdown.

use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use crate::actors::outbox::Receipt;
use crate::protocol::RoomName;

/// From the rooms a session is in: what to write to its client. Queued
/// through the session's [`Outbox`](crate::actors::outbox::Outbox), which
/// counts every frame against `OUTBOX_LIMIT`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Outgoing {
    /// One encoded server frame to write as it is.
    Frame(ByteString),
    /// Several frames, in order: a batch of chat messages. Shared by every
    /// member that gets the same frames, and written in one go. The
    /// receipt, dropped once they are written, tells the room.
    Frames(Arc<[ByteString]>, Receipt),
    /// The outbox passed its bound: drop what is queued, close with 1008.
    Overflowed,
    /// A room removed this connection (kick, ban): forget it, so the
    /// client may join again. Sent after the room's last frames.
    Removed(RoomName),
}

/// From the server to each session at shutdown: close with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct GoingAway;

/// From the server, for the server API's `POST /api/users/{name}/disconnect`:
/// close with 4000.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnected;
