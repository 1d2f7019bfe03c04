//! The actors:
//! * [`session::ChatSession`]: one per WebSocket connection.
//! * [`server::ChatServer`]: the registry of connections and active rooms.
//! * [`room::RoomActor`]: one per active room; members, order, fan-out.
//!
//! and what they share:
//! * [`messages`]: every message between session, server and room, in one
//!   module per recipient (`messages::room` is what a room handles, and so
//!   on). The history's own messages are private to [`crate::history`],
//!   and `MessagesStored`, the history writer's answer to a room, is
//!   defined there, beside the door rooms store through.
//! * [`outbox`]: the bounded queue between rooms and a session.
//!
//! The actors depend on each other one way: a session names the server, the
//! server names the rooms it starts, and rooms name only the history. An
//! actor reaches one it does not name through a `Recipient` of a message in
//! [`messages`]: the server reaches sessions with `GoingAway`; a room reaches
//! its members' sessions with `Outgoing` (inside their [`outbox::Outbox`])
//! and the server with `MemberDropped`; a session reaches its rooms with
//! `Chat`, through the recipient the server answers a join with.

pub(crate) mod messages;
pub mod outbox;
pub mod room;
pub(crate) mod room_threads;
pub(crate) mod server;
pub(crate) mod session;

use std::fmt;

/// Identifies one WebSocket connection for as long as the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
