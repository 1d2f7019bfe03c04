//! The `nodes` table: each node beats (updates its `seen_at`) three times
//! per `NODE_TIMEOUT`, and on each beat removes the nodes whose last beat
//! is older than that, with their presence, and notifies the rooms those
//! users were in. Times are the database's (`now()`), so the nodes' clocks
//! need not agree.

use std::sync::Arc;
use std::time::Duration;

use super::connection::{query_error, Shared};
use super::presence::PresenceWriter;
use super::PRESENCE_CHANNEL;
use crate::history::StoreError;

/// Adds (or refreshes) this node's row. Returns whether the row was new:
/// a node the others had timed out (a long pause, a partition) finds its
/// presence gone and publishes it again.
pub async fn register(shared: &Shared, node: &str) -> Result<bool, StoreError> {
    let client = shared.client()?;
    let row = client
        .query_one(
            "INSERT INTO nodes (id) VALUES ($1) \
             ON CONFLICT (id) DO UPDATE SET seen_at = now() \
             RETURNING (xmax = 0) AS inserted",
            &[&node],
        )
        .await
        .map_err(query_error)?;
    Ok(row.get::<_, bool>(0))
}

/// Removes this node (and so its presence), notifying its rooms.
pub async fn deregister(shared: &Shared, node: &str) -> Result<(), StoreError> {
    let client = shared.client()?;
    client
        .execute(
            &format!(
                "WITH left_rooms AS (DELETE FROM presence WHERE node = $1 RETURNING room), \
                 gone AS (DELETE FROM nodes WHERE id = $1) \
                 SELECT pg_notify('{PRESENCE_CHANNEL}', room) \
                 FROM (SELECT DISTINCT room FROM left_rooms) r"
            ),
            &[&node],
        )
        .await
        .map_err(query_error)?;
    Ok(())
}

/// Removes every other node silent for `timeout`, with its presence, and
/// notifies their rooms. Returns how many nodes are left.
async fn expire(shared: &Shared, node: &str, timeout: Duration) -> Result<i64, StoreError> {
    let client = shared.client()?;
    let seconds = timeout.as_secs_f64();
    let expired = client
        .query(
            &format!(
                "WITH gone AS (DELETE FROM nodes \
                   WHERE seen_at < now() - make_interval(secs => $1) AND id <> $2 RETURNING id), \
                 left_rooms AS (DELETE FROM presence p USING gone WHERE p.node = gone.id \
                   RETURNING p.room) \
                 SELECT (SELECT count(*) FROM gone), pg_notify('{PRESENCE_CHANNEL}', room) \
                 FROM (SELECT DISTINCT room FROM left_rooms) r"
            ),
            &[&seconds, &node],
        )
        .await
        .map_err(query_error)?;
    if !expired.is_empty() {
        log::warn!(
            "cluster: timed out a node silent for {seconds} s; its users left {} rooms",
            expired.len()
        );
    }
    let row = client
        .query_one(
            "SELECT count(*) FROM nodes WHERE seen_at >= now() - make_interval(secs => $1)",
            &[&seconds],
        )
        .await
        .map_err(query_error)?;
    Ok(row.get::<_, i64>(0))
}

/// Beats every `timeout / 3` for as long as the system runs.
pub fn spawn_heartbeat(
    shared: Arc<Shared>,
    node: Arc<str>,
    timeout: Duration,
    presence: PresenceWriter,
) {
    actix::spawn(async move {
        let mut beat = tokio::time::interval(timeout / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            beat.tick().await;
            match register(&shared, &node).await {
                Ok(true) => {
                    log::warn!("cluster: this node had been timed out by the others; publishing its presence again");
                    presence.republish();
                }
                Ok(false) => {}
                Err(e) => {
                    log::warn!("cluster: heartbeat failed: {e}");
                    continue;
                }
            }
            match expire(&shared, &node, timeout).await {
                Ok(nodes) => shared.metrics.cluster_nodes.set(nodes),
                Err(e) => log::warn!("cluster: checking the other nodes failed: {e}"),
            }
        }
    });
}
