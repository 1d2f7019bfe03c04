//! The cluster backend: history in PostgreSQL (`DATABASE_URL`), shared by
//! every node that has the same URL.
//!
//! Ordering across nodes is decided here. A batch first takes, in name
//! order (so two batches never deadlock), the `rooms` row of each room it
//! writes to, with an upsert that adds the batch's count to the room's
//! `last_seq`. The row stays locked until commit, so batches of different
//! nodes into one room take turns; ids come from one global sequence and
//! are taken under that lock, so within a room they rise in commit order.
//! Each message gets the next `seq` of its room (1, 2, 3, ... without a
//! gap), which lets a node notice a message it has not seen. The same
//! transaction notifies the other nodes (`NOTIFY`, delivered on commit,
//! one per room per batch) with the room and its new `last_seq`; see
//! [`crate::cluster`] for the listening side.

mod schema;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::backend::{Backend, Inserted, NewChat};
use super::{Page, StoreError};
use crate::metrics::Metrics;
use crate::protocol::{format_timestamp, ChatMessage, MessageId};
use schema::{messages, write_check};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The channel on which each commit names its rooms and their `last_seq`.
pub const MESSAGES_CHANNEL: &str = "chatterbox_messages";

/// Taken while migrating, so nodes starting together migrate one at a
/// time (the number is arbitrary, fixed for this program).
const MIGRATION_LOCK: i64 = 0x0063_6861_7474_6572;

/// How long a statement may run before PostgreSQL cancels it: a lock held
/// elsewhere or a stuck server fails a batch instead of stalling it.
const STATEMENT_TIMEOUT_MS: u32 = 5_000;

/// How long opening a connection may take (seconds).
const CONNECT_TIMEOUT_S: u32 = 5;

/// A connection idle this long is checked (`SELECT 1`) before use: after a
/// database restart it is dead, and a batch sent on it would fail.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The payload of a commit's notification for one room: its new
/// `last_seq` and its name.
pub fn notification_payload(room: &str, last_seq: i64) -> String {
    format!("{last_seq} {room}")
}

/// Reads a notification's payload back: `(room, last_seq)`.
pub fn parse_notification(payload: &str) -> Option<(&str, i64)> {
    let (seq, room) = payload.split_once(' ')?;
    Some((room, seq.parse().ok()?))
}

/// `url` with a connect timeout, unless it sets one: a server that does
/// not answer fails the attempt instead of holding the thread.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&connect_timeout={CONNECT_TIMEOUT_S}")
    } else {
        format!("{url}?connect_timeout={CONNECT_TIMEOUT_S}")
    }
}

fn connect(url: &str) -> Result<PgConnection, StoreError> {
    let url = with_connect_timeout(url);
    let mut conn = PgConnection::establish(&url).map_err(|e| StoreError::Open {
        path: "DATABASE_URL".into(),
        reason: e.to_string(),
    })?;
    conn.batch_execute(&format!(
        "SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET synchronous_commit = on;"
    ))?;
    Ok(conn)
}

/// Connects to the database and brings its schema up to date, one node at
/// a time. Run once at start, before any worker connects.
pub fn prepare(url: &str) -> Result<(), StoreError> {
    let mut conn = connect(url)?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let migrated = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Migration(e.to_string()));
    let unlocked = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    migrated?;
    unlocked?;
    Ok(())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct StoredMessage {
    id: i64,
    room: String,
    seq: i64,
    user_name: String,
    text: String,
    created_at: i64,
}

impl From<StoredMessage> for ChatMessage {
    fn from(row: StoredMessage) -> Self {
        ChatMessage {
            id: row.id,
            room: row.room,
            user: row.user_name,
            text: row.text,
            timestamp: format_timestamp(row.created_at),
            seq: Some(row.seq),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = messages)]
struct NewMessage<'a> {
    room: &'a str,
    seq: i64,
    user_name: &'a str,
    text: &'a str,
    created_at: i64,
}

#[derive(QueryableByName)]
struct RoomTurn {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_millis: i64,
}

/// One worker thread's connection to PostgreSQL.
pub struct PostgresBackend {
    url: String,
    /// Opened lazily and dropped after a failure, so a database that comes
    /// back is used again without a restart; with when it was last used.
    conn: Option<(PgConnection, Instant)>,
    /// `Some` on the writer, which counts the notifications it sends.
    metrics: Option<Arc<Metrics>>,
}

impl PostgresBackend {
    pub fn writer(url: &str, metrics: Arc<Metrics>) -> PostgresBackend {
        PostgresBackend {
            url: url.to_string(),
            conn: None,
            metrics: Some(metrics),
        }
    }

    pub fn reader(url: &str) -> PostgresBackend {
        PostgresBackend {
            url: url.to_string(),
            conn: None,
            metrics: None,
        }
    }

    /// Runs `f` on the connection: opened if there is none, checked first
    /// if it sat idle, dropped if anything fails.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some((conn, used)) = &mut self.conn {
            if used.elapsed() >= IDLE_CHECK && conn.batch_execute("SELECT 1").is_err() {
                log::info!("a database connection went stale; opening a new one");
                self.conn = None;
            }
        }
        let (conn, used) = match &mut self.conn {
            Some(open) => open,
            None => self.conn.insert((connect(&self.url)?, Instant::now())),
        };
        let result = f(conn);
        *used = Instant::now();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// A read, tried once more on a new connection if it fails: reads
    /// change nothing, and after a database restart every kept connection
    /// fails once.
    fn read<T>(
        &mut self,
        f: impl Fn(&mut PgConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(&f).or_else(|_| self.with_conn(&f))
    }
}

/// The batch's transaction: each room's turn (its row locked, its seqs
/// reserved), the rows, and one notification per room.
fn insert_batch(
    conn: &mut PgConnection,
    batch: &[NewChat<'_>],
) -> Result<(Vec<Inserted>, usize), StoreError> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for chat in batch {
        *counts.entry(chat.room).or_default() += 1;
    }
    conn.transaction::<_, StoreError, _>(|conn| {
        // Every room's turn in one statement, taken in name order (the
        // rows are inserted, and so locked, in the order given): every
        // batch locks in the same order, so two never deadlock.
        let (names, ns): (Vec<&str>, Vec<i64>) = counts.iter().map(|(r, n)| (*r, *n)).unzip();
        let taken: Vec<RoomTurn> = diesel::sql_query(
            "INSERT INTO rooms (name, last_seq, last_millis) \
             SELECT name, n, $3 FROM unnest($1::text[], $2::bigint[]) \
               WITH ORDINALITY AS t(name, n, ord) ORDER BY ord \
             ON CONFLICT (name) DO UPDATE SET \
             last_seq = rooms.last_seq + EXCLUDED.last_seq, \
             last_millis = GREATEST(rooms.last_millis, EXCLUDED.last_millis) \
             RETURNING name, last_seq, last_millis",
        )
        .bind::<Array<Text>, _>(&names)
        .bind::<Array<BigInt>, _>(&ns)
        .bind::<BigInt, _>(batch[0].created_at)
        .load(conn)?;
        // (next seq to give, last seq, the timestamp), by room
        let mut turns: HashMap<&str, (i64, i64, i64)> = HashMap::new();
        for turn in &taken {
            let Some((&room, &n)) = counts.get_key_value(turn.name.as_str()) else {
                return Err(StoreError::Query(format!(
                    "no turn asked for room {}",
                    turn.name
                )));
            };
            turns.insert(
                room,
                (turn.last_seq - n + 1, turn.last_seq, turn.last_millis),
            );
        }
        let mut rows: Vec<NewMessage<'_>> = Vec::with_capacity(batch.len());
        for chat in batch {
            let Some(turn) = turns.get_mut(chat.room) else {
                return Err(StoreError::Query(format!("room {} has no turn", chat.room)));
            };
            rows.push(NewMessage {
                room: chat.room,
                seq: turn.0,
                user_name: chat.user,
                text: chat.text,
                created_at: turn.2,
            });
            turn.0 += 1;
        }
        let ids: Vec<(String, i64, i64)> = diesel::insert_into(messages::table)
            .values(&rows)
            .returning((messages::room, messages::seq, messages::id))
            .get_results(conn)?;
        let ids: HashMap<(String, i64), i64> = ids
            .into_iter()
            .map(|(room, seq, id)| ((room, seq), id))
            .collect();
        // One statement for every room's notification.
        let payloads: Vec<String> = turns
            .iter()
            .map(|(room, &(_, last_seq, _))| notification_payload(room, last_seq))
            .collect();
        diesel::sql_query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
            .bind::<Text, _>(MESSAGES_CHANNEL)
            .bind::<Array<Text>, _>(&payloads)
            .execute(conn)?;
        let inserted = rows
            .iter()
            .map(|row| {
                let id = ids
                    .get(&(row.room.to_string(), row.seq))
                    .copied()
                    .ok_or_else(|| {
                        StoreError::Query(format!(
                            "the insert did not return message {} of room {}",
                            row.seq, row.room
                        ))
                    })?;
                Ok(Inserted {
                    id,
                    seq: Some(row.seq),
                    created_at: row.created_at,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((inserted, turns.len()))
    })
}

impl Backend for PostgresBackend {
    fn insert_batch(&mut self, batch: &[NewChat<'_>]) -> Result<Vec<Inserted>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (inserted, notified) = self.with_conn(|conn| insert_batch(conn, batch))?;
        if let Some(metrics) = &self.metrics {
            metrics.cluster_notifications_sent.inc_by(notified as u64);
        }
        Ok(inserted)
    }

    fn messages_before(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(|conn| {
            let mut query = messages::table
                .filter(messages::room.eq(room))
                .order(messages::id.desc())
                .limit(limit as i64 + 1)
                .select(StoredMessage::as_select())
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(messages::id.lt(before));
            }
            let mut rows = query.load(conn)?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            rows.reverse();
            Ok((rows.into_iter().map(ChatMessage::from).collect(), more))
        })
    }

    fn messages_after(
        &mut self,
        room: &str,
        after: MessageId,
        up_to: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(|conn| {
            let mut query = messages::table
                .filter(messages::room.eq(room))
                .filter(messages::id.gt(after))
                .order(messages::id.asc())
                .limit(limit as i64 + 1)
                .select(StoredMessage::as_select())
                .into_boxed();
            if let Some(up_to) = up_to {
                query = query.filter(messages::id.le(up_to));
            }
            let mut rows = query.load(conn)?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok((rows.into_iter().map(ChatMessage::from).collect(), more))
        })
    }

    fn count_messages(&mut self, room: &str) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(messages::table
                .filter(messages::room.eq(room))
                .count()
                .get_result(conn)?)
        })
    }

    fn check_write(&mut self, millis: i64) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            diesel::insert_into(write_check::table)
                .values((write_check::id.eq(1), write_check::checked_at.eq(millis)))
                .on_conflict(write_check::id)
                .do_update()
                .set(write_check::checked_at.eq(millis))
                .execute(conn)?;
            Ok(())
        })
    }

    /// PostgreSQL keeps its own files complete; nothing to do.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_its_room_and_last_seq() {
        let payload = notification_payload("the lobby", 42);
        assert_eq!(parse_notification(&payload), Some(("the lobby", 42)));
        assert_eq!(parse_notification("x general"), None);
        assert_eq!(parse_notification("general"), None);
    }
}
