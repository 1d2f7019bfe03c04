//! The actors, each with the messages it handles beside it:
//! * [`session::ChatSession`]: one per WebSocket connection.
//! * [`server::ChatServer`]: the registry of connections and active rooms.
//! * [`room::RoomActor`]: one per active room; members, order, fan-out.
//! * [`outbox`]: the bounded queue between rooms and a session.

pub mod outbox;
pub mod room;
pub mod server;
pub mod session;

use std::fmt;

/// Identifies one WebSocket connection for as long as the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
