//! The cluster's one PostgreSQL connection: it `LISTEN`s for the other
//! nodes' notifications and carries the heartbeat and presence queries.
//! When it drops, the listener reconnects with backoff; until then the node
//! reports itself unhealthy, and after it every room catches up.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use futures_util::stream::{poll_fn, StreamExt};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};

use super::events::{Event, EVENTS_CHANNEL};
use super::presence::PresenceWriter;
use super::{set_up, ClusterEvent, DirectNotice, MESSAGES_CHANNEL, PRESENCE_CHANNEL};
use crate::history::postgres::parse_notification;
use crate::history::StoreError;
use crate::metrics::Metrics;
use crate::protocol::is_valid_room;

pub type Connection = tokio_postgres::Connection<Socket, NoTlsStream>;

/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits between reconnection attempts: doubling, up to the last.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// What the cluster's tasks share: the connection (while it is up).
pub struct Shared {
    url: String,
    client: Mutex<Option<Arc<Client>>>,
    pub(super) up: AtomicBool,
    pub(super) metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(url: String, metrics: Arc<Metrics>) -> Shared {
        Shared {
            url,
            client: Mutex::new(None),
            up: AtomicBool::new(false),
            metrics,
        }
    }

    /// The connection's client, or an error while it is down.
    pub fn client(&self) -> Result<Arc<Client>, StoreError> {
        self.client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Query("the cluster connection is down".into()))
    }

    fn set_client(&self, client: Option<Arc<Client>>) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = client;
    }
}

pub fn query_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Opens the connection and listens on both channels. The caller drives
/// the returned connection (notifications arrive through it).
async fn open(shared: &Shared) -> Result<Connection, StoreError> {
    let connecting = tokio_postgres::connect(&shared.url, NoTls);
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| StoreError::Open {
            path: "DATABASE_URL (PostgreSQL)".into(),
            reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| StoreError::Open {
            path: "DATABASE_URL (PostgreSQL)".into(),
            reason: e.to_string(),
        })?;
    // The connection has to be polled for LISTEN to complete; drive it
    // until the client's statement is answered.
    let statement =
        format!("LISTEN {MESSAGES_CHANNEL}; LISTEN {PRESENCE_CHANNEL}; LISTEN {EVENTS_CHANNEL};");
    {
        let mut listen = std::pin::pin!(client.batch_execute(&statement));
        loop {
            tokio::select! {
                done = &mut listen => { done.map_err(query_error)?; break; }
                message = poll_fn(|cx| connection.poll_message(cx)).into_future() => {
                    match message.0 {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(query_error(e)),
                        None => return Err(StoreError::Query("the connection closed".into())),
                    }
                }
            }
        }
    }
    shared.set_client(Some(Arc::new(client)));
    set_up(shared, true);
    Ok(connection)
}

/// The first connection, at start: failing here stops start-up. The
/// listener task drives it from then on ([`spawn_listener`]).
pub async fn connect_first(shared: &Shared, node: &str) -> Result<Connection, StoreError> {
    let connection = open(shared).await?;
    log::info!("cluster: node {node} connected and listening");
    Ok(connection)
}

/// Drives the connection, passing notifications on; reconnects when it
/// drops, then re-publishes this node's presence and has every room
/// catch up.
pub fn spawn_listener(
    shared: Arc<Shared>,
    node: Arc<str>,
    events: Recipient<ClusterEvent>,
    presence: PresenceWriter,
    first: Connection,
) {
    actix::spawn(async move {
        let mut connection = Some(first);
        let mut attempt = 0;
        loop {
            if let Some(conn) = connection.take() {
                listen(conn, &shared, &node, &events).await;
                set_up(&shared, false);
                shared.set_client(None);
                log::error!("cluster: node {node} lost its database connection; reconnecting");
            }
            tokio::time::sleep(BACKOFF[attempt.min(BACKOFF.len() - 1)]).await;
            match open(&shared).await {
                Ok(conn) => {
                    attempt = 0;
                    log::info!("cluster: node {node} reconnected");
                    // Queries need the connection driven, which the loop
                    // does next: register in a task of its own.
                    let (shared, node) = (shared.clone(), node.clone());
                    let (presence, events) = (presence.clone(), events.clone());
                    actix::spawn(async move {
                        if let Err(e) = super::nodes::register(&shared, &node).await {
                            log::warn!("cluster: could not register again: {e}");
                        }
                        presence.republish();
                        events.do_send(ClusterEvent::Resync);
                    });
                    connection = Some(conn);
                }
                Err(e) => {
                    attempt += 1;
                    log::warn!("cluster: reconnecting failed: {e}");
                }
            }
        }
    });
}

/// Passes each notification on until the connection ends.
async fn listen(
    mut connection: Connection,
    shared: &Shared,
    node: &str,
    events: &Recipient<ClusterEvent>,
) {
    let mut messages = poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(note)) => {
                shared.metrics.cluster_notifications_received.inc();
                if let Some(event) = event_for(note.channel(), note.payload(), node) {
                    events.do_send(event);
                }
            }
            Ok(AsyncMessage::Notice(notice)) => log::debug!("cluster: {notice}"),
            Ok(_) => {}
            Err(e) => {
                log::error!("cluster: the database connection failed: {e}");
                return;
            }
        }
    }
}

/// The event a notification stands for; `None` for this node's own
/// events, and for a payload that is not ours (logged).
fn event_for(channel: &str, payload: &str, node: &str) -> Option<ClusterEvent> {
    let event = match channel {
        EVENTS_CHANNEL => {
            return match Event::parse(payload) {
                Some((from, _)) if from == node => None,
                Some((_, Event::Typing { room, user })) => {
                    Some(ClusterEvent::Typing { room, user })
                }
                Some((_, Event::Read { room, user, id })) => {
                    Some(ClusterEvent::Read { room, user, id })
                }
                Some((_, Event::Direct { room, to, from, id })) => {
                    Some(ClusterEvent::Direct(DirectNotice { room, to, from, id }))
                }
                None => {
                    log::warn!("cluster: ignoring a notification on {channel}: {payload:?}");
                    None
                }
            }
        }
        MESSAGES_CHANNEL => {
            parse_notification(payload).map(|(room, last_seq)| ClusterEvent::Committed {
                room: room.to_string(),
                last_seq,
            })
        }
        PRESENCE_CHANNEL => Some(ClusterEvent::PresenceChanged {
            room: payload.to_string(),
        }),
        _ => None,
    };
    match event {
        Some(
            ClusterEvent::Committed { ref room, .. } | ClusterEvent::PresenceChanged { ref room },
        ) if !is_valid_room(room) => None,
        None => {
            log::warn!("cluster: ignoring a notification on {channel}: {payload:?}");
            None
        }
        event => event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_become_events_and_strangers_are_ignored() {
        assert_eq!(
            event_for(MESSAGES_CHANNEL, "12 general", "me"),
            Some(ClusterEvent::Committed {
                room: "general".into(),
                last_seq: 12
            })
        );
        assert_eq!(
            event_for(PRESENCE_CHANNEL, "general", "me"),
            Some(ClusterEvent::PresenceChanged {
                room: "general".into()
            })
        );
        assert_eq!(event_for(MESSAGES_CHANNEL, "twelve general", "me"), None);
        assert_eq!(event_for("elsewhere", "general", "me"), None);
        assert_eq!(
            event_for(EVENTS_CHANNEL, "typing other general bob", "me"),
            Some(ClusterEvent::Typing {
                room: "general".into(),
                user: "bob".into()
            })
        );
        assert_eq!(
            event_for(EVENTS_CHANNEL, "typing me general bob", "me"),
            None,
            "a node's own events come back to it and are ignored"
        );
    }
}
