//! SQLite through diesel: opening a connection the way every part of the
//! server needs it (WAL, busy timeout, full sync), the embedded migrations,
//! and the few queries chat history needs. Every call here blocks; only the
//! history worker threads make them, through [`super::SqliteBackend`].

use std::path::Path;
use std::sync::Once;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::models::{NewMessage, StoredMessage};
use super::schema::{
    bans, messages, moderation_audit, mutes, reactions, read_markers, write_check,
};
use diesel::sql_types::{BigInt, Text};

use crate::history::backend::{
    Inserted, NewChange, NewRow, Outcome, Sanctions, KEY_WINDOW_MS, UNREAD_COUNT_LIMIT,
};
use crate::history::direct_rooms::{self, DirectRoom};
use crate::history::rows::{self, NewColumns, Row};
use crate::history::rules::{self, Known, ReactionOf, Target, Verdict, Wanted};
use crate::history::{Page, StoreError};
use crate::protocol::{ChangeKind, ChatMessage, MessageId, ModAction, UserName};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a connection waits for another's lock before failing. Readers
/// never block the writer in WAL mode; this covers checkpoints and a second
/// process opening the same file.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Opens (creating when missing) the database file; for start-up, where a
/// missing file means a new installation.
pub fn open(path: &Path) -> Result<SqliteConnection, StoreError> {
    connect(path, &path.to_string_lossy())
}

/// Opens the database file only if it exists. A running server uses this:
/// if the file vanished, creating an empty one in its place would hide the
/// loss and split the history between two files.
pub fn open_existing(path: &Path) -> Result<SqliteConnection, StoreError> {
    // SQLite's URI form: `mode=rw` opens without creating. `%`, `?` and `#`
    // in the path would be read as URI syntax, so they are escaped.
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=rw");
    connect(path, &uri)
}

/// Sets a connection up for a long-running server: WAL so readers and the
/// writer do not block each other, `synchronous=FULL` so a commit is on
/// disk before any client is told about the message, a busy timeout, and
/// no memory mapping of the database file (a write fault on a mapped page
/// of a file that turned immutable is a SIGBUS, not an error).
fn connect(path: &Path, url: &str) -> Result<SqliteConnection, StoreError> {
    no_checkpoint_on_close();
    let open_error = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    let mut conn = SqliteConnection::establish(url).map_err(|e| open_error(e.to_string()))?;
    conn.batch_execute(&format!(
        // busy_timeout first: switching to WAL takes a lock that another
        // connection (a checkpoint, a previous server) may briefly hold.
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA mmap_size = 0;"
    ))
    .map_err(|e| open_error(e.to_string()))?;
    Ok(conn)
}

/// Makes every SQLite connection of this process close without a
/// checkpoint (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`).
///
/// The last connection to close normally checkpoints, which writes the
/// `-shm` through its memory mapping: if the `-shm` is immutable or
/// truncated by then, that write is a SIGBUS, and closing is exactly what
/// the writer does when it finds its files broken. So no close writes;
/// the writer checkpoints explicitly when its files are sound
/// ([`checkpoint`]), and the `-wal` and `-shm` stay beside the database
/// after a stop, the `-wal` empty. diesel does not hand out its raw
/// handle, so the setting is applied by an auto-extension, which SQLite
/// calls with each new connection's handle inside `sqlite3_open_v2`.
fn no_checkpoint_on_close() {
    use libsqlite3_sys as ffi;
    use std::os::raw::{c_char, c_int};

    unsafe extern "C" fn on_open(
        db: *mut ffi::sqlite3,
        _error: *mut *mut c_char,
        _api: *const ffi::sqlite3_api_routines,
    ) -> c_int {
        // SAFETY: SQLite calls this with the live handle of a connection
        // being opened; the option takes an int and an optional out-pointer.
        unsafe {
            ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            );
        }
        ffi::SQLITE_OK
    }

    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a function with the signature SQLite expects;
        // it stays valid for the life of the process.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            log::error!("cannot register the SQLite open hook (code {rc}); closing a connection on broken files may crash");
        }
    });
}

#[derive(QueryableByName)]
struct CheckpointResult {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

/// Copies everything in the `-wal` into the database file, syncs it and
/// empties the `-wal`. Returns whether it got through everything (a reader
/// in the middle of a query can hold part of the log back).
pub fn checkpoint(conn: &mut SqliteConnection) -> Result<bool, StoreError> {
    let result: CheckpointResult =
        diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(conn)?;
    Ok(result.busy == 0)
}

/// One small real write, committed like a batch (write lock, log, fsync):
/// what `/health` uses to see that the database takes writes when no chat
/// has been stored lately.
pub fn check_write(conn: &mut SqliteConnection, millis: i64) -> Result<(), StoreError> {
    conn.immediate_transaction(|conn| {
        diesel::replace_into(write_check::table)
            .values((write_check::id.eq(1), write_check::checked_at.eq(millis)))
            .execute(conn)
    })?;
    Ok(())
}

/// Brings the schema up to date. Run once at start, before any actor opens
/// the file.
pub fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    conn.run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Decides on and inserts `batch` in one transaction, in order (see
/// [`rules`]), and returns what became of each change. One transaction
/// means one fsync for the whole batch: this is what makes group commit
/// cheap. A batch of plain chats reads nothing first.
pub fn insert_batch(
    conn: &mut SqliteConnection,
    batch: &[NewRow<'_>],
) -> Result<Vec<Outcome>, StoreError> {
    conn.immediate_transaction::<_, StoreError, _>(|conn| {
        let wanted = rules::wanted(batch);
        let mut known = if wanted.is_empty() {
            Known::default()
        } else {
            let since = batch[0].created_at - KEY_WINDOW_MS;
            load_known(conn, &wanted, since)?
        };
        let verdicts = rules::judge(batch, &mut known);
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        for (row, verdict) in batch.iter().zip(verdicts) {
            let outcome = match verdict {
                Verdict::Store => Outcome::Stored(store(conn, row, None)?),
                Verdict::ModeratorDelete { author } => {
                    Outcome::Stored(store(conn, row, Some(author))?)
                }
                Verdict::Refuse(refusal) => Outcome::Refused(refusal),
                Verdict::Repeat(original) => Outcome::Repeat(original),
                Verdict::RepeatOfRow(position) => rows::repeat_of(batch, &outcomes, position)?,
                Verdict::Unchanged { on } => Outcome::Unchanged { on },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    })
}

/// Inserts one change and applies it to the chat or user it is about;
/// `deleted_for` is the author of a chat a moderator deletes.
fn store(
    conn: &mut SqliteConnection,
    row: &NewRow<'_>,
    deleted_for: Option<String>,
) -> Result<Inserted, StoreError> {
    let columns = NewColumns::of(row.change, deleted_for.as_deref());
    let id = diesel::insert_into(messages::table)
        .values(NewMessage {
            room: row.room,
            user_name: row.user,
            text: columns.text,
            created_at: row.created_at,
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
        })
        .returning(messages::id)
        .get_result::<MessageId>(conn)?;
    if let (Some(action), Some(subject)) = (columns.action, columns.subject) {
        diesel::insert_into(moderation_audit::table)
            .values((
                moderation_audit::id.eq(id),
                moderation_audit::room.eq(row.room),
                moderation_audit::action.eq(action),
                moderation_audit::subject.eq(subject),
                moderation_audit::by_user.eq(row.user),
                moderation_audit::target.eq(columns.target),
                moderation_audit::until_at.eq(columns.until_at),
                moderation_audit::reason.eq(columns.reason),
                moderation_audit::created_at.eq(row.created_at),
            ))
            .execute(conn)?;
    }
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
                diesel::replace_into(mutes::table)
                    .values((
                        mutes::room.eq(row.room),
                        mutes::user_name.eq(subject),
                        mutes::until_at.eq(until.unwrap_or(row.created_at)),
                    ))
                    .execute(conn)?;
            }
            ModAction::Ban => {
                diesel::replace_into(bans::table)
                    .values((
                        bans::room.eq(row.room),
                        bans::user_name.eq(subject),
                        bans::until_at.eq(until),
                    ))
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
                diesel::insert_or_ignore_into(reactions::table)
                    .values((
                        reactions::message_id.eq(target),
                        reactions::emoji.eq(emoji),
                        reactions::user_name.eq(row.user),
                    ))
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
    Ok(Inserted {
        id,
        seq: None,
        created_at: row.created_at,
        deleted_for,
    })
}

/// The mutes and bans of `room` in force at `now`.
pub fn sanctions(
    conn: &mut SqliteConnection,
    room: &str,
    now: i64,
) -> Result<Sanctions, StoreError> {
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
}

/// Reads what the rules need of what a batch refers to; keys only of chats
/// stored at or after `since`.
fn load_known(
    conn: &mut SqliteConnection,
    wanted: &Wanted,
    since: i64,
) -> Result<Known, StoreError> {
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
        let wanted_set: std::collections::HashSet<&ReactionOf> = wanted.reactions.iter().collect();
        known
            .reactions
            .extend(on.into_iter().filter(|r| wanted_set.contains(r)));
    }
    Ok(known)
}

/// Puts each chat's reactions on it.
fn add_reactions(conn: &mut SqliteConnection, chats: &mut [ChatMessage]) -> Result<(), StoreError> {
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

/// The newest `limit` chats of `room` with `id < before` (any id when
/// `None`), oldest first, in their current state, and whether older ones
/// exist.
pub fn chats_before(
    conn: &mut SqliteConnection,
    room: &str,
    before: Option<MessageId>,
    limit: usize,
) -> Result<Page, StoreError> {
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
    let mut found = query.load(conn)?;
    let more = found.len() > limit;
    found.truncate(limit);
    found.reverse();
    let mut chats: Vec<ChatMessage> = found.into_iter().map(|r| Row::from(r).current()).collect();
    add_reactions(conn, &mut chats)?;
    Ok((chats, more))
}

/// The oldest `limit` chats of `room` with `id > after`, oldest first, in
/// their current state, and whether newer ones exist.
pub fn chats_after(
    conn: &mut SqliteConnection,
    room: &str,
    after: MessageId,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut found = messages::table
        .filter(messages::room.eq(room))
        .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
        .filter(messages::id.gt(after))
        .order(messages::id.asc())
        .limit(limit as i64 + 1)
        .select(StoredMessage::as_select())
        .load(conn)?;
    let more = found.len() > limit;
    found.truncate(limit);
    let mut chats: Vec<ChatMessage> = found.into_iter().map(|r| Row::from(r).current()).collect();
    add_reactions(conn, &mut chats)?;
    Ok((chats, more))
}

/// The newest `limit` changes of `room`, oldest first, as broadcast, and
/// whether older ones exist.
pub fn newest_changes(
    conn: &mut SqliteConnection,
    room: &str,
    limit: usize,
) -> Result<Page, StoreError> {
    let mut found = messages::table
        .filter(messages::room.eq(room))
        .order(messages::id.desc())
        .limit(limit as i64 + 1)
        .select(StoredMessage::as_select())
        .load(conn)?;
    let more = found.len() > limit;
    found.truncate(limit);
    found.reverse();
    Ok((
        found
            .into_iter()
            .map(|r| Row::from(r).broadcast())
            .collect(),
        more,
    ))
}

/// The oldest `limit` changes of `room` with `after < id <= up_to` (no
/// upper bound when `None`), oldest first, as broadcast, and whether more
/// exist in that range past the last one returned.
pub fn changes_after(
    conn: &mut SqliteConnection,
    room: &str,
    after: MessageId,
    up_to: Option<MessageId>,
    limit: usize,
) -> Result<Page, StoreError> {
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
    let mut found = query.load(conn)?;
    let more = found.len() > limit;
    found.truncate(limit);
    Ok((
        found
            .into_iter()
            .map(|r| Row::from(r).broadcast())
            .collect(),
        more,
    ))
}

/// How many chats `room` has stored.
pub fn count_chats(conn: &mut SqliteConnection, room: &str) -> Result<i64, StoreError> {
    Ok(messages::table
        .filter(messages::room.eq(room))
        .filter(messages::kind.eq(ChangeKind::Chat.as_str()))
        .count()
        .get_result(conn)?)
}

/// `user`'s read marker in `room` (0 when none), and how many chats above
/// it, up to `up_to`, are not deleted.
pub fn read_marker(
    conn: &mut SqliteConnection,
    room: &str,
    user: &str,
    up_to: MessageId,
) -> Result<(MessageId, i64), StoreError> {
    let marker = read_markers::table
        .find((room, user))
        .select(read_markers::last_read)
        .first::<MessageId>(conn)
        .optional()?
        .unwrap_or(0);
    // At most the limit's ids: the cost of a join stays bounded however
    // long the backlog.
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
}

/// Moves `user`'s read marker in `room` forward to `id` and returns the
/// stored marker.
pub fn set_read_marker(
    conn: &mut SqliteConnection,
    room: &str,
    user: &str,
    id: MessageId,
) -> Result<MessageId, StoreError> {
    conn.immediate_transaction::<_, StoreError, _>(|conn| {
        diesel::sql_query(
            "INSERT INTO read_markers (room, user_name, last_read) VALUES (?, ?, ?) \
             ON CONFLICT (room, user_name) DO UPDATE SET \
             last_read = MAX(last_read, excluded.last_read)",
        )
        .bind::<diesel::sql_types::Text, _>(room)
        .bind::<diesel::sql_types::Text, _>(user)
        .bind::<diesel::sql_types::BigInt, _>(id)
        .execute(conn)?;
        Ok(read_markers::table
            .find((room, user))
            .select(read_markers::last_read)
            .first::<MessageId>(conn)?)
    })
}

/// Stores a direct-message room's pair unless it has one.
pub fn open_direct(
    conn: &mut SqliteConnection,
    room: &str,
    users: &[UserName; 2],
    now: i64,
) -> Result<(), StoreError> {
    diesel::sql_query(direct_rooms::OPEN)
        .bind::<Text, _>(room)
        .bind::<Text, _>(&users[0])
        .bind::<Text, _>(&users[1])
        .bind::<BigInt, _>(now)
        .execute(conn)?;
    Ok(())
}

/// A direct-message room's stored pair.
pub fn direct_pair(
    conn: &mut SqliteConnection,
    room: &str,
) -> Result<Option<[UserName; 2]>, StoreError> {
    let found: Vec<direct_rooms::PairRow> = diesel::sql_query(direct_rooms::PAIR)
        .bind::<Text, _>(room)
        .load(conn)?;
    Ok(found.into_iter().next().map(Into::into))
}

/// `user`'s direct-message rooms, the most recently active first.
pub fn direct_rooms(
    conn: &mut SqliteConnection,
    user: &str,
    limit: usize,
) -> Result<Vec<DirectRoom>, StoreError> {
    let found: Vec<direct_rooms::ListRow> = diesel::sql_query(direct_rooms::LIST)
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind::<BigInt, _>(UNREAD_COUNT_LIMIT)
        .load(conn)?;
    Ok(found.into_iter().map(Into::into).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_existing_does_not_create_a_missing_database() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("odd ?#% name.db");
        assert!(matches!(open_existing(&path), Err(StoreError::Open { .. })));
        assert!(!path.exists());
        drop(open(&path).unwrap());
        open_existing(&path).expect("an existing file opens, odd characters and all");
    }
}
