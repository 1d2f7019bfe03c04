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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::backend::{
    Backend, Inserted, NewChange, NewRow, Outcome, Sanctions, KEY_WINDOW_MS, UNREAD_COUNT_LIMIT,
};
use super::direct_rooms::{self, DirectRoom};
use super::rows::{self, NewColumns, Row};
use super::rules::{self, Known, ReactionOf, Target, Verdict, Wanted};
use super::{Page, StoreError};
use crate::metrics::Metrics;
use crate::protocol::{ChangeKind, ChatMessage, MessageId, ModAction, UserName};
use schema::{bans, messages, moderation_audit, mutes, reactions, read_markers, write_check};

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
    kind: String,
    target: Option<i64>,
    reply_to: Option<i64>,
    emoji: Option<String>,
    reaction_on: Option<bool>,
    idempotency_key: Option<String>,
    edited_text: Option<String>,
    edited_at: Option<i64>,
    deleted: bool,
    action: Option<String>,
    subject: Option<String>,
    until_at: Option<i64>,
    reason: Option<String>,
}

impl From<StoredMessage> for Row {
    fn from(row: StoredMessage) -> Self {
        Row {
            id: row.id,
            room: row.room,
            seq: Some(row.seq),
            user_name: row.user_name,
            text: row.text,
            created_at: row.created_at,
            kind: row.kind,
            target: row.target,
            reply_to: row.reply_to,
            emoji: row.emoji,
            reaction_on: row.reaction_on,
            edited_text: row.edited_text,
            edited_at: row.edited_at,
            deleted: row.deleted,
            action: row.action,
            subject: row.subject,
            until_at: row.until_at,
            reason: row.reason,
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
    kind: &'a str,
    target: Option<i64>,
    reply_to: Option<i64>,
    emoji: Option<&'a str>,
    reaction_on: Option<bool>,
    idempotency_key: Option<&'a str>,
    action: Option<&'a str>,
    subject: Option<&'a str>,
    until_at: Option<i64>,
    reason: Option<&'a str>,
}

#[derive(QueryableByName)]
struct MarkerRow {
    #[diesel(sql_type = BigInt)]
    last_read: i64,
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
/// reserved), the decisions on what may be stored (made under those locks,
/// so they see every other node's commits), the rows and their effects,
/// and one notification per room.
fn insert_batch(
    conn: &mut PgConnection,
    batch: &[NewRow<'_>],
) -> Result<(Vec<Outcome>, usize), StoreError> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for row in batch {
        *counts.entry(row.room).or_default() += 1;
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
        // Decided under the rooms' locks. A plain batch reads nothing.
        let wanted = rules::wanted(batch);
        let verdicts = if wanted.is_empty() {
            vec![Verdict::Store; batch.len()]
        } else {
            let since = batch[0].created_at - KEY_WINDOW_MS;
            let mut known = load_known(conn, &wanted, since)?;
            rules::judge(batch, &mut known)
        };
        // What each room stores: its seqs were reserved for every change
        // of the batch, and those not stored are given back below.
        let mut stored: HashMap<&str, i64> = HashMap::new();
        let stores =
            |verdict: &Verdict| matches!(verdict, Verdict::Store | Verdict::ModeratorDelete { .. });
        for (row, verdict) in batch.iter().zip(&verdicts) {
            if stores(verdict) {
                *stored.entry(row.room).or_default() += 1;
            }
        }
        // (next seq to give, last seq, the timestamp), by room
        let mut turns: HashMap<&str, (i64, i64, i64)> = HashMap::new();
        let mut unused: Vec<(&str, i64)> = Vec::new();
        for turn in &taken {
            let Some((&room, &n)) = counts.get_key_value(turn.name.as_str()) else {
                return Err(StoreError::Query(format!(
                    "no turn asked for room {}",
                    turn.name
                )));
            };
            let used = stored.get(room).copied().unwrap_or(0);
            if used < n {
                unused.push((room, n - used));
            }
            let first = turn.last_seq - n + 1;
            turns.insert(room, (first, first + used - 1, turn.last_millis));
        }
        if !unused.is_empty() {
            let (names, ns): (Vec<&str>, Vec<i64>) = unused.into_iter().unzip();
            diesel::sql_query(
                "UPDATE rooms SET last_seq = rooms.last_seq - t.n \
                 FROM unnest($1::text[], $2::bigint[]) AS t(name, n) \
                 WHERE rooms.name = t.name",
            )
            .bind::<Array<Text>, _>(&names)
            .bind::<Array<BigInt>, _>(&ns)
            .execute(conn)?;
        }
        let mut rows: Vec<NewMessage<'_>> = Vec::with_capacity(batch.len());
        for (row, verdict) in batch.iter().zip(&verdicts) {
            let deleted_for = match verdict {
                Verdict::Store => None,
                Verdict::ModeratorDelete { author } => Some(author.as_str()),
                _ => continue,
            };
            let Some(turn) = turns.get_mut(row.room) else {
                return Err(StoreError::Query(format!("room {} has no turn", row.room)));
            };
            let columns = NewColumns::of(row.change, deleted_for);
            rows.push(NewMessage {
                room: row.room,
                seq: turn.0,
                user_name: row.user,
                text: columns.text,
                created_at: turn.2,
                kind: columns.kind,
                target: columns.target,
                reply_to: columns.reply_to,
                emoji: columns.emoji,
                reaction_on: columns.reaction_on,
                idempotency_key: columns.idempotency_key,
                action: columns.action,
                subject: columns.subject,
                until_at: columns.until_at,
                reason: columns.reason,
            });
            turn.0 += 1;
        }
        let ids: Vec<(String, i64, i64)> = if rows.is_empty() {
            Vec::new()
        } else {
            diesel::insert_into(messages::table)
                .values(&rows)
                .returning((messages::room, messages::seq, messages::id))
                .get_results(conn)?
        };
        let ids: HashMap<(String, i64), i64> = ids
            .into_iter()
            .map(|(room, seq, id)| ((room, seq), id))
            .collect();
        for (row, verdict) in batch.iter().zip(&verdicts) {
            if stores(verdict) {
                apply(conn, row)?;
            }
        }
        // The audit trail of this batch's moderation.
        for row in rows.iter().filter(|r| r.action.is_some()) {
            let Some(&id) = ids.get(&(row.room.to_string(), row.seq)) else {
                continue;
            };
            diesel::insert_into(moderation_audit::table)
                .values((
                    moderation_audit::id.eq(id),
                    moderation_audit::room.eq(row.room),
                    moderation_audit::action.eq(row.action.unwrap_or_default()),
                    moderation_audit::subject.eq(row.subject.unwrap_or_default()),
                    moderation_audit::by_user.eq(row.user_name),
                    moderation_audit::target.eq(row.target),
                    moderation_audit::until_at.eq(row.until_at),
                    moderation_audit::reason.eq(row.reason),
                    moderation_audit::created_at.eq(row.created_at),
                ))
                .execute(conn)?;
        }
        // One statement for every room's notification (rooms where nothing
        // was stored have nothing to tell).
        let payloads: Vec<String> = turns
            .iter()
            .filter(|(room, _)| stored.contains_key(*room))
            .map(|(room, &(_, last_seq, _))| notification_payload(room, last_seq))
            .collect();
        if !payloads.is_empty() {
            diesel::sql_query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
                .bind::<Text, _>(MESSAGES_CHANNEL)
                .bind::<Array<Text>, _>(&payloads)
                .execute(conn)?;
        }
        let mut inserted = rows.iter().map(|row| {
            let id = ids
                .get(&(row.room.to_string(), row.seq))
                .copied()
                .ok_or_else(|| {
                    StoreError::Query(format!(
                        "the insert did not return message {} of room {}",
                        row.seq, row.room
                    ))
                })?;
            Ok::<_, StoreError>(Inserted {
                id,
                seq: Some(row.seq),
                created_at: row.created_at,
                deleted_for: None,
            })
        });
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        for verdict in &verdicts {
            let outcome = match verdict {
                Verdict::Store | Verdict::ModeratorDelete { .. } => {
                    let Some(row) = inserted.next() else {
                        return Err(StoreError::Query("fewer rows inserted than stored".into()));
                    };
                    let mut row = row?;
                    if let Verdict::ModeratorDelete { author } = verdict {
                        row.deleted_for = Some(author.clone());
                    }
                    Outcome::Stored(row)
                }
                Verdict::Refuse(refusal) => Outcome::Refused(*refusal),
                Verdict::Repeat(original) => Outcome::Repeat(original.clone()),
                Verdict::RepeatOfRow(position) => rows::repeat_of(batch, &outcomes, *position)?,
                Verdict::Unchanged { on } => Outcome::Unchanged { on: *on },
            };
            outcomes.push(outcome);
        }
        Ok((outcomes, payloads.len()))
    })
}

/// What a stored change does to the chat it is about.
fn apply(conn: &mut PgConnection, row: &NewRow<'_>) -> Result<(), StoreError> {
    match row.change {
        NewChange::Chat { .. } => {}
        NewChange::Edit { target, text } => {
            diesel::update(messages::table.find(target))
                .set((
                    messages::edited_text.eq(text),
                    messages::edited_at.eq(row.created_at),
                ))
                .execute(conn)?;
        }
        NewChange::Moderate {
            action,
            subject,
            until,
            ..
        } => match action {
            ModAction::Mute => {
                let until = until.unwrap_or(row.created_at);
                diesel::insert_into(mutes::table)
                    .values((
                        mutes::room.eq(row.room),
                        mutes::user_name.eq(subject),
                        mutes::until_at.eq(until),
                    ))
                    .on_conflict((mutes::room, mutes::user_name))
                    .do_update()
                    .set(mutes::until_at.eq(until))
                    .execute(conn)?;
            }
            ModAction::Ban => {
                diesel::insert_into(bans::table)
                    .values((
                        bans::room.eq(row.room),
                        bans::user_name.eq(subject),
                        bans::until_at.eq(until),
                    ))
                    .on_conflict((bans::room, bans::user_name))
                    .do_update()
                    .set(bans::until_at.eq(until))
                    .execute(conn)?;
            }
            ModAction::Unban => {
                diesel::delete(bans::table.find((row.room, subject))).execute(conn)?;
                diesel::delete(mutes::table.find((row.room, subject))).execute(conn)?;
            }
            ModAction::Kick | ModAction::Delete => {}
        },
        NewChange::Delete { target, .. } => {
            diesel::update(messages::table.find(target))
                .set((
                    messages::deleted.eq(true),
                    messages::text.eq(""),
                    messages::edited_text.eq(None::<String>),
                    messages::edited_at.eq(None::<i64>),
                ))
                .execute(conn)?;
            diesel::update(messages::table.filter(messages::target.eq(target)))
                .filter(messages::kind.eq(ChangeKind::Edit.as_str()))
                .set(messages::text.eq(""))
                .execute(conn)?;
            diesel::delete(reactions::table.filter(reactions::message_id.eq(target)))
                .execute(conn)?;
        }
        NewChange::React { target, emoji, on } => {
            if *on {
                diesel::insert_into(reactions::table)
                    .values((
                        reactions::message_id.eq(target),
                        reactions::emoji.eq(emoji),
                        reactions::user_name.eq(row.user),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            } else {
                diesel::delete(
                    reactions::table
                        .filter(reactions::message_id.eq(target))
                        .filter(reactions::emoji.eq(emoji))
                        .filter(reactions::user_name.eq(row.user)),
                )
                .execute(conn)?;
            }
        }
    }
    Ok(())
}

/// Reads what the rules need of what a batch refers to; keys only of chats
/// stored at or after `since`.
fn load_known(conn: &mut PgConnection, wanted: &Wanted, since: i64) -> Result<Known, StoreError> {
    let mut known = Known::default();
    if !wanted.ids.is_empty() {
        let targets: Vec<(MessageId, String, String, String, bool)> = messages::table
            .filter(messages::id.eq_any(&wanted.ids))
            .select((
                messages::id,
                messages::room,
                messages::user_name,
                messages::kind,
                messages::deleted,
            ))
            .load(conn)?;
        for (id, room, user, kind, deleted) in targets {
            let kind = ChangeKind::parse(&kind);
            known.targets.insert(
                id,
                Target {
                    room,
                    user,
                    kind,
                    deleted,
                },
            );
        }
    }
    if !wanted.keys.is_empty() {
        let rooms: Vec<&str> = wanted.keys.iter().map(|k| k.0.as_str()).collect();
        let users: Vec<&str> = wanted.keys.iter().map(|k| k.1.as_str()).collect();
        let keys: Vec<&str> = wanted.keys.iter().map(|k| k.2.as_str()).collect();
        let found = messages::table
            .filter(messages::room.eq_any(&rooms))
            .filter(messages::user_name.eq_any(&users))
            .filter(messages::idempotency_key.eq_any(&keys))
            .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
            .filter(messages::created_at.ge(since))
            .order(messages::id.asc())
            .select(StoredMessage::as_select())
            .load(conn)?;
        rules::remember_keys(
            &mut known,
            wanted,
            found.into_iter().map(|row| {
                let key = row.idempotency_key.clone();
                (key, Row::from(row).broadcast())
            }),
        );
    }
    if !wanted.reactions.is_empty() {
        let ids: Vec<MessageId> = wanted.reactions.iter().map(|r| r.0).collect();
        let users: Vec<&str> = wanted.reactions.iter().map(|r| r.1.as_str()).collect();
        let on: Vec<(MessageId, String, String)> = reactions::table
            .filter(reactions::message_id.eq_any(&ids))
            .filter(reactions::user_name.eq_any(&users))
            .select((
                reactions::message_id,
                reactions::user_name,
                reactions::emoji,
            ))
            .load(conn)?;
        let wanted_set: HashSet<&ReactionOf> = wanted.reactions.iter().collect();
        known
            .reactions
            .extend(on.into_iter().filter(|r| wanted_set.contains(r)));
    }
    Ok(known)
}

/// Puts each chat's reactions on it.
fn add_reactions(conn: &mut PgConnection, chats: &mut [ChatMessage]) -> Result<(), StoreError> {
    if chats.is_empty() {
        return Ok(());
    }
    let found: Vec<(MessageId, String, String)> = reactions::table
        .filter(reactions::message_id.eq_any(rows::ids(chats)))
        .select((
            reactions::message_id,
            reactions::emoji,
            reactions::user_name,
        ))
        .load(conn)?;
    rows::with_reactions(chats, found);
    Ok(())
}

/// A page of rows, oldest first, cut to `limit`, and whether there were
/// more (`found` holds up to `limit + 1`; `newest_first` when read so).
fn page_of(mut found: Vec<StoredMessage>, limit: usize, newest_first: bool) -> (Vec<Row>, bool) {
    let more = found.len() > limit;
    found.truncate(limit);
    if newest_first {
        found.reverse();
    }
    (found.into_iter().map(Row::from).collect(), more)
}

impl Backend for PostgresBackend {
    fn insert_batch(&mut self, batch: &[NewRow<'_>]) -> Result<Vec<Outcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (inserted, notified) = self.with_conn(|conn| insert_batch(conn, batch))?;
        if let Some(metrics) = &self.metrics {
            metrics.cluster_notifications_sent.inc_by(notified as u64);
        }
        Ok(inserted)
    }

    fn chats_before(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(|conn| {
            let mut query = messages::table
                .filter(messages::room.eq(room))
                .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
                .order(messages::id.desc())
                .limit(limit as i64 + 1)
                .select(StoredMessage::as_select())
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(messages::id.lt(before));
            }
            let (found, more) = page_of(query.load(conn)?, limit, true);
            let mut chats: Vec<ChatMessage> = found.into_iter().map(Row::current).collect();
            add_reactions(conn, &mut chats)?;
            Ok((chats, more))
        })
    }

    fn chats_after(
        &mut self,
        room: &str,
        after: MessageId,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.read(|conn| {
            let found = messages::table
                .filter(messages::room.eq(room))
                .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
                .filter(messages::id.gt(after))
                .order(messages::id.asc())
                .limit(limit as i64 + 1)
                .select(StoredMessage::as_select())
                .load(conn)?;
            let (found, more) = page_of(found, limit, false);
            let mut chats: Vec<ChatMessage> = found.into_iter().map(Row::current).collect();
            add_reactions(conn, &mut chats)?;
            Ok((chats, more))
        })
    }

    fn newest_changes(&mut self, room: &str, limit: usize) -> Result<Page, StoreError> {
        self.read(|conn| {
            let found = messages::table
                .filter(messages::room.eq(room))
                .order(messages::id.desc())
                .limit(limit as i64 + 1)
                .select(StoredMessage::as_select())
                .load(conn)?;
            let (found, more) = page_of(found, limit, true);
            Ok((found.into_iter().map(Row::broadcast).collect(), more))
        })
    }

    fn changes_after(
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
            let (found, more) = page_of(query.load(conn)?, limit, false);
            Ok((found.into_iter().map(Row::broadcast).collect(), more))
        })
    }

    fn count_chats(&mut self, room: &str) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(messages::table
                .filter(messages::room.eq(room))
                .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
                .count()
                .get_result(conn)?)
        })
    }

    fn read_marker(
        &mut self,
        room: &str,
        user: &str,
        up_to: MessageId,
    ) -> Result<(MessageId, i64), StoreError> {
        self.read(|conn| {
            let marker = read_markers::table
                .find((room, user))
                .select(read_markers::last_read)
                .first::<MessageId>(conn)
                .optional()?
                .unwrap_or(0);
            // At most the limit's ids: the cost of a join stays bounded
            // however long the backlog.
            let unread: Vec<MessageId> = messages::table
                .filter(messages::room.eq(room))
                .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
                .filter(messages::id.gt(marker))
                .filter(messages::id.le(up_to))
                .filter(messages::deleted.eq(false))
                .filter(messages::user_name.ne(user))
                .select(messages::id)
                .limit(UNREAD_COUNT_LIMIT)
                .load(conn)?;
            Ok((marker, unread.len() as i64))
        })
    }

    fn sanctions(&mut self, room: &str, now: i64) -> Result<Sanctions, StoreError> {
        self.read(|conn| {
            let mutes = mutes::table
                .filter(mutes::room.eq(room))
                .filter(mutes::until_at.gt(now))
                .select((mutes::user_name, mutes::until_at))
                .load(conn)?;
            let bans = bans::table
                .filter(bans::room.eq(room))
                .filter(bans::until_at.is_null().or(bans::until_at.gt(now)))
                .select((bans::user_name, bans::until_at))
                .load(conn)?;
            Ok(Sanctions { mutes, bans })
        })
    }

    fn set_read_marker(
        &mut self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> Result<MessageId, StoreError> {
        self.with_conn(|conn| {
            let stored: Vec<MarkerRow> = diesel::sql_query(
                "INSERT INTO read_markers (room, user_name, last_read) VALUES ($1, $2, $3) \
                 ON CONFLICT (room, user_name) DO UPDATE SET \
                 last_read = GREATEST(read_markers.last_read, EXCLUDED.last_read) \
                 RETURNING last_read",
            )
            .bind::<Text, _>(room)
            .bind::<Text, _>(user)
            .bind::<BigInt, _>(id)
            .load(conn)?;
            stored
                .first()
                .map(|m| m.last_read)
                .ok_or_else(|| StoreError::Query("the read marker upsert returned nothing".into()))
        })
    }

    fn open_direct(
        &mut self,
        room: &str,
        users: &[UserName; 2],
        now: i64,
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            diesel::sql_query(direct_rooms::OPEN)
                .bind::<Text, _>(room)
                .bind::<Text, _>(&users[0])
                .bind::<Text, _>(&users[1])
                .bind::<BigInt, _>(now)
                .execute(conn)?;
            Ok(())
        })
    }

    fn direct_pair(&mut self, room: &str) -> Result<Option<[UserName; 2]>, StoreError> {
        self.read(|conn| {
            let found: Vec<direct_rooms::PairRow> = diesel::sql_query(direct_rooms::PAIR)
                .bind::<Text, _>(room)
                .load(conn)?;
            Ok(found.into_iter().next().map(Into::into))
        })
    }

    fn direct_rooms(&mut self, user: &str, limit: usize) -> Result<Vec<DirectRoom>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let found: Vec<direct_rooms::ListRow> = diesel::sql_query(direct_rooms::LIST)
                .bind::<Text, _>(user)
                .bind::<BigInt, _>(limit)
                .bind::<BigInt, _>(UNREAD_COUNT_LIMIT)
                .load(conn)?;
            Ok(found.into_iter().map(Into::into).collect())
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
