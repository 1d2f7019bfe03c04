//! Presence across nodes. Each node keeps a row in `presence` for every
//! (room, user) it has at least one connection for, and notifies the room's
//! channel when that changes; a room's users, cluster-wide, are its local
//! users plus the other nodes' rows. So a user with tabs on two nodes is
//! listed once, and leaves only when their last connection anywhere closes.
//!
//! Writes go through one background task that coalesces them: a join and
//! leave in quick succession end as whatever was set last, and they are
//! applied in one statement. The node also keeps what it has published, to
//! write it all again after its connection comes back or the other nodes
//! had timed it out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::connection::{query_error, Shared};
use super::PRESENCE_CHANNEL;
use crate::history::StoreError;
use crate::protocol::{RoomName, UserName};

type Key = (RoomName, UserName);

/// How long the writer waits after a failed write before trying again.
const RETRY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    /// Every (room, user) this node has connections for: bounded by its
    /// connections times `MAX_ROOMS_PER_CONNECTION`.
    published: HashSet<Key>,
    /// Changes not yet written: the last one set for each key.
    changes: HashMap<Key, bool>,
    /// Write everything in `published` again, replacing the node's rows.
    rewrite: bool,
}

/// Queues this node's presence changes for the database.
#[derive(Clone)]
pub struct PresenceWriter {
    node: Arc<str>,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl PresenceWriter {
    pub fn new(node: Arc<str>) -> PresenceWriter {
        PresenceWriter {
            node,
            state: Arc::new(Mutex::new(State::default())),
            wake: Arc::new(Notify::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set(&self, room: &RoomName, user: &UserName, present: bool) {
        let key = (room.clone(), user.clone());
        {
            let mut state = self.state();
            if present {
                state.published.insert(key.clone());
            } else {
                state.published.remove(&key);
            }
            state.changes.insert(key, present);
        }
        self.wake.notify_one();
    }

    /// Writes everything again (after a reconnect or a time-out).
    pub fn republish(&self) {
        self.state().rewrite = true;
        self.wake.notify_one();
    }

    /// The writer task.
    pub fn spawn(&self, shared: Arc<Shared>) {
        let writer = self.clone();
        actix::spawn(async move {
            loop {
                writer.wake.notified().await;
                let (changes, rewrite, published) = {
                    let mut state = writer.state();
                    let changes = std::mem::take(&mut state.changes);
                    let rewrite = std::mem::take(&mut state.rewrite);
                    let published: Vec<Key> = if rewrite {
                        state.published.iter().cloned().collect()
                    } else {
                        Vec::new()
                    };
                    (changes, rewrite, published)
                };
                let result = if rewrite {
                    write_all(&shared, &writer.node, published).await
                } else {
                    write_changes(&shared, &writer.node, &changes).await
                };
                if let Err(e) = result {
                    log::warn!("cluster: writing presence failed: {e}; trying again");
                    {
                        let mut state = writer.state();
                        state.rewrite |= rewrite;
                        for (key, present) in changes {
                            // A newer change for the key wins.
                            state.changes.entry(key).or_insert(present);
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                    writer.wake.notify_one();
                }
            }
        });
    }
}

fn columns<'a>(keys: impl Iterator<Item = &'a Key>) -> (Vec<&'a str>, Vec<&'a str>) {
    keys.map(|(room, user)| (room.as_str(), user.as_str()))
        .unzip()
}

/// Applies `changes` in one statement, notifying each room that changed.
async fn write_changes(
    shared: &Shared,
    node: &str,
    changes: &HashMap<Key, bool>,
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let (add_rooms, add_users) = columns(changes.iter().filter(|c| *c.1).map(|c| c.0));
    let (del_rooms, del_users) = columns(changes.iter().filter(|c| !*c.1).map(|c| c.0));
    let client = shared.client()?;
    client
        .execute(
            &format!(
                "WITH added AS (INSERT INTO presence (node, room, user_name) \
                   SELECT $1, r, u FROM unnest($2::text[], $3::text[]) AS t(r, u) \
                   ON CONFLICT DO NOTHING RETURNING room), \
                 removed AS (DELETE FROM presence p \
                   USING unnest($4::text[], $5::text[]) AS t(r, u) \
                   WHERE p.node = $1 AND p.room = t.r AND p.user_name = t.u RETURNING p.room) \
                 SELECT pg_notify('{PRESENCE_CHANNEL}', room) \
                 FROM (SELECT room FROM added UNION SELECT room FROM removed) r"
            ),
            &[&node, &add_rooms, &add_users, &del_rooms, &del_users],
        )
        .await
        .map_err(query_error)?;
    Ok(())
}

/// Replaces every row of this node with `published`, notifying every room
/// in either.
async fn write_all(shared: &Shared, node: &str, published: Vec<Key>) -> Result<(), StoreError> {
    let (rooms, users) = columns(published.iter());
    let client = shared.client()?;
    client
        .execute(
            &format!(
                // Rows to keep are neither deleted nor inserted: in one
                // statement a deleted row would still block its insert.
                "WITH wanted AS (SELECT r, u FROM unnest($2::text[], $3::text[]) AS t(r, u)), \
                 removed AS (DELETE FROM presence p WHERE p.node = $1 AND NOT EXISTS \
                   (SELECT 1 FROM wanted w WHERE w.r = p.room AND w.u = p.user_name) \
                   RETURNING p.room), \
                 added AS (INSERT INTO presence (node, room, user_name) \
                   SELECT $1, r, u FROM wanted ON CONFLICT DO NOTHING RETURNING room) \
                 SELECT pg_notify('{PRESENCE_CHANNEL}', room) \
                 FROM (SELECT room FROM added UNION SELECT room FROM removed) r"
            ),
            &[&node, &rooms, &users],
        )
        .await
        .map_err(query_error)?;
    Ok(())
}

/// The users other nodes have in `room`, sorted.
pub async fn users_elsewhere(
    shared: &Shared,
    node: &str,
    room: &RoomName,
) -> Result<Vec<UserName>, StoreError> {
    let client = shared.client()?;
    let rows = client
        .query(
            "SELECT DISTINCT user_name FROM presence WHERE room = $1 AND node <> $2",
            &[room, &node],
        )
        .await
        .map_err(query_error)?;
    let users: BTreeSet<UserName> = rows.iter().map(|row| row.get(0)).collect();
    Ok(users.into_iter().collect())
}

/// Every room with users on other nodes, with those users, sorted.
pub async fn rooms_elsewhere(
    shared: &Shared,
    node: &str,
) -> Result<Vec<(RoomName, Vec<UserName>)>, StoreError> {
    let client = shared.client()?;
    let rows = client
        .query(
            "SELECT DISTINCT room, user_name FROM presence WHERE node <> $1",
            &[&node],
        )
        .await
        .map_err(query_error)?;
    let mut rooms: BTreeMap<RoomName, BTreeSet<UserName>> = BTreeMap::new();
    for row in &rows {
        rooms.entry(row.get(0)).or_default().insert(row.get(1));
    }
    Ok(rooms
        .into_iter()
        .map(|(room, users)| (room, users.into_iter().collect()))
        .collect())
}
