//! Cluster mode: several nodes serve the same rooms through one PostgreSQL
//! database (`DATABASE_URL`). See docs/CLUSTER.md for the whole picture.
//!
//! The database is both the shared log and the bus. Messages are stored by
//! the history writer ([`crate::history::postgres`]), whose commits notify
//! the other nodes; this module is everything else a node needs:
//! * one connection that `LISTEN`s, and passes each notification to the
//!   chat server as a [`ClusterEvent`] (reconnecting when it drops, and
//!   then telling every room to read what it may have missed);
//! * the node's heartbeat in the `nodes` table, and the removal of nodes
//!   that stopped beating, with their users ([`nodes`]);
//! * per-user presence across nodes, in the `presence` table ([`presence`]);
//! * typing notices and read markers for other nodes' members ([`events`]).
//!
//! It uses tokio-postgres rather than diesel: a listener has to wake up
//! when a notification arrives, and libpq through diesel can only be asked
//! whether one has arrived, which would mean polling. The history stays on
//! diesel; this connection carries only notifications, heartbeats and
//! presence.

mod connection;
pub mod events;
pub mod nodes;
pub mod presence;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub(crate) use crate::actors::messages::server::{ClusterEvent, DirectNotice};
use crate::history::StoreError;
use crate::metrics::Metrics;
use crate::protocol::{MessageId, RoomName, UserName};
use connection::Shared;
use events::{Event, Publisher};
use presence::PresenceWriter;

pub use crate::history::postgres::MESSAGES_CHANNEL;

/// The channel on which a change of presence names its room.
pub const PRESENCE_CHANNEL: &str = "chatterbox_presence";

/// The handle the rest of the server holds. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    node: Arc<str>,
    shared: Arc<Shared>,
    presence: PresenceWriter,
    events: Publisher,
}

/// Cluster settings, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub url: String,
    pub node: String,
    pub node_timeout: Duration,
}

impl Cluster {
    /// Connects, registers the node, starts listening and beating. Fails
    /// (naming `DATABASE_URL`) when the database cannot be reached. Must
    /// run inside an actix `System`.
    pub async fn start(
        config: ClusterConfig,
        events: Recipient<ClusterEvent>,
        metrics: Arc<Metrics>,
    ) -> Result<Cluster, StoreError> {
        let node: Arc<str> = config.node.clone().into();
        let shared = Arc::new(Shared::new(config.url.clone(), metrics.clone()));
        let presence = PresenceWriter::new(node.clone());
        let first = connection::connect_first(&shared, &node).await?;
        // The listener drives the connection, so it runs before any query.
        connection::spawn_listener(
            shared.clone(),
            node.clone(),
            events,
            presence.clone(),
            first,
        );
        // With a fixed NODE_ID, a previous run may have left rows behind
        // (a crash): its users go now, not when the row would time out.
        nodes::deregister(&shared, &node).await?;
        nodes::register(&shared, &node).await?;
        nodes::spawn_heartbeat(
            shared.clone(),
            node.clone(),
            config.node_timeout,
            presence.clone(),
        );
        presence.spawn(shared.clone());
        Ok(Cluster {
            events: Publisher::new(node.clone(), shared.clone()),
            node,
            shared,
            presence,
        })
    }

    /// This node's id, as `/health` reports it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the listener's connection is up.
    pub fn listening(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// `user` now has a connection in `room` on this node (`true`), or no
    /// longer has one (`false`). Written in the background, coalesced.
    pub fn set_present(&self, room: &RoomName, user: &UserName, present: bool) {
        self.presence.set(room, user, present);
    }

    /// Tells the other nodes that `user` is typing in `room`.
    pub fn publish_typing(&self, room: &RoomName, user: &UserName) {
        self.events.publish(Event::Typing {
            room: room.clone(),
            user: user.clone(),
        });
    }

    /// Tells the other nodes that `user`'s read marker in `room` is `id`.
    pub fn publish_read(&self, room: &RoomName, user: &UserName, id: MessageId) {
        self.events.publish(Event::Read {
            room: room.clone(),
            user: user.clone(),
            id,
        });
    }

    /// Tells the other nodes of a direct-message room's chat, for its
    /// other user's connections there.
    pub(crate) fn publish_direct(&self, notice: &DirectNotice) {
        self.events.publish(Event::Direct {
            room: notice.room.clone(),
            to: notice.to.clone(),
            from: notice.from.clone(),
            id: notice.id,
        });
    }

    /// The users other nodes have in `room`.
    pub async fn users_elsewhere(&self, room: &RoomName) -> Result<Vec<UserName>, StoreError> {
        presence::users_elsewhere(&self.shared, &self.node, room).await
    }

    /// Every room with users on other nodes, and those users.
    pub async fn rooms_elsewhere(&self) -> Result<Vec<(RoomName, Vec<UserName>)>, StoreError> {
        presence::rooms_elsewhere(&self.shared, &self.node).await
    }

    /// Leaves the cluster at a stop: the node's row goes, and with it its
    /// users, so the other nodes tell their rooms at once instead of after
    /// `NODE_TIMEOUT`.
    pub async fn leave(&self) {
        if let Err(e) = nodes::deregister(&self.shared, &self.node).await {
            log::warn!(
                "could not leave the cluster cleanly: {e}; the other nodes will time this node out"
            );
        }
    }
}

/// The node id used when `NODE_ID` is not set: the host name, the process
/// id and the start time, so a restarted node is a new node and its old
/// self's users time out instead of coming back.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    let started = crate::protocol::now_millis();
    format!("{host}-{}-{started:x}", std::process::id())
}

/// Marks the listener up or down, in the flag and the metric.
fn set_up(shared: &Shared, up: bool) {
    shared.up.store(up, Ordering::SeqCst);
    shared.metrics.cluster_listener_up.set(i64::from(up));
}
