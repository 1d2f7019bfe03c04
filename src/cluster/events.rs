//! Cluster mode: what passes between nodes without being a stored change.
//! A `typing` notice and a moved read marker reach the user's rooms on the
//! other nodes as a notification on [`EVENTS_CHANNEL`], sent on the
//! cluster's connection (the read marker itself is already durable, so a
//! lost notification only delays another tab's update until its next
//! join). A direct-message room's chat reaches its other user's
//! connections on every node the same way, addressed to the user (the chat
//! is stored, so a lost notice only waits for the page's next listing). Notifications come back to their sender too, so each names its
//! node, and a node ignores its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::connection::{query_error, Shared};
use crate::protocol::{is_valid_room, is_valid_user, MessageId, RoomName, UserName};

/// The channel for typing notices and read markers.
pub const EVENTS_CHANNEL: &str = "chatterbox_events";

/// The most notifications one node has on their way at once; past it,
/// typing notices are dropped (they are stale in two seconds anyway) and
/// read markers wait for the next join.
const MAX_IN_FLIGHT: usize = 256;

/// One event between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Typing {
        room: RoomName,
        user: UserName,
    },
    Read {
        room: RoomName,
        user: UserName,
        id: MessageId,
    },
    /// `from` wrote chat `id` in the direct-message room `room`: for `to`.
    Direct {
        room: RoomName,
        to: UserName,
        from: UserName,
        id: MessageId,
    },
}

impl Event {
    /// The notification's payload: what, which node, room, user (and id).
    /// Names never contain spaces.
    pub fn payload(&self, node: &str) -> String {
        match self {
            Event::Typing { room, user } => format!("typing {node} {room} {user}"),
            Event::Read { room, user, id } => format!("read {node} {room} {user} {id}"),
            Event::Direct { room, to, from, id } => {
                format!("direct {node} {room} {to} {from} {id}")
            }
        }
    }

    /// Reads a payload back, with the node that sent it; `None` for one
    /// that is not well formed.
    pub fn parse(payload: &str) -> Option<(&str, Event)> {
        let mut parts = payload.split(' ');
        let (kind, node, room, user) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if !is_valid_room(room) || !is_valid_user(user) {
            return None;
        }
        let (room, user) = (room.to_string(), user.to_string());
        let event = match (kind, parts.next()) {
            ("typing", None) => Event::Typing { room, user },
            ("read", Some(id)) => Event::Read {
                room,
                user,
                id: id.parse().ok()?,
            },
            ("direct", Some(from)) if is_valid_user(from) => Event::Direct {
                room,
                to: user,
                from: from.to_string(),
                id: parts.next()?.parse().ok()?,
            },
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some((node, event))
    }
}

/// Sends events to the other nodes, in the background, a bounded number
/// at a time.
#[derive(Clone)]
pub struct Publisher {
    node: Arc<str>,
    shared: Arc<Shared>,
    in_flight: Arc<AtomicUsize>,
}

impl Publisher {
    pub fn new(node: Arc<str>, shared: Arc<Shared>) -> Publisher {
        Publisher {
            node,
            shared,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Notifies the other nodes of `event`; dropped (and logged at debug)
    /// while the connection is down or too many are on their way.
    pub fn publish(&self, event: Event) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            log::debug!("cluster: too many events on their way; dropping {event:?}");
            return;
        }
        let payload = event.payload(&self.node);
        let (shared, in_flight) = (self.shared.clone(), self.in_flight.clone());
        actix::spawn(async move {
            let sent = match shared.client() {
                Ok(client) => client
                    .execute("SELECT pg_notify($1, $2)", &[&EVENTS_CHANNEL, &payload])
                    .await
                    .map(|_| ())
                    .map_err(query_error),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                log::debug!("cluster: could not send {payload:?}: {e}");
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_with_its_node_and_strangers_do_not() {
        let typing = Event::Typing {
            room: "general".into(),
            user: "alice.b".into(),
        };
        let read = Event::Read {
            room: "general".into(),
            user: "bob".into(),
            id: 42,
        };
        let direct = Event::Direct {
            room: "dm-1cb15457d1ddab60".into(),
            to: "bob".into(),
            from: "alice".into(),
            id: 7,
        };
        for event in [typing, read, direct] {
            let payload = event.payload("node-1");
            assert_eq!(Event::parse(&payload), Some(("node-1", event)));
        }
        for bad in [
            "typing node-1 general",
            "typing node-1 no$room alice",
            "read node-1 general bob",
            "read node-1 general bob x",
            "read node-1 general bob 1 extra",
            "wave node-1 general bob",
            "direct node-1 dm-x bob alice",
            "direct node-1 dm-x bob no$name 1",
            "direct node-1 dm-x bob alice 1 extra",
            "",
        ] {
            assert_eq!(Event::parse(bad), None, "{bad:?}");
        }
    }
}
