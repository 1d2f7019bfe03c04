//! The stored pairs of direct-message rooms (`direct_rooms`), as every
//! backend reads and writes them. A room's name is a hash of its two users
//! and cannot be turned back into them, so the pair is stored when the room
//! is first opened with `dm`; a room that starts reads it (so a join by name
//! works after a restart and on any node), and `GET /api/dms` lists a
//! user's rooms from it.
//!
//! The statements are plain SQL that SQLite and PostgreSQL both read the
//! same way (`$1` is a numbered parameter in both), so they are written
//! once, here.

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

use crate::protocol::{MessageId, RoomName, UserName};

/// Stores a pair unless its room has one: `$1` room, `$2` and `$3` the two
/// users sorted, `$4` when (milliseconds).
pub const OPEN: &str = "INSERT INTO direct_rooms (room, user_a, user_b, opened_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (room) DO NOTHING";

/// The stored pair of room `$1`.
pub const PAIR: &str = "SELECT user_a, user_b FROM direct_rooms WHERE room = $1";

/// User `$1`'s rooms, the most recently active first, at most `$2`: each
/// with the other user, its newest chat's id (0 when none), and how many
/// chats are unread above the user's read marker (other users' chats that
/// are not deleted, as `history`'s `unread` counts them), at most `$3`
/// ([`super::backend::UNREAD_COUNT_LIMIT`]).
pub const LIST: &str = "SELECT d.room AS room, \
       CASE WHEN d.user_a = $1 THEN d.user_b ELSE d.user_a END AS with_user, \
       COALESCE((SELECT MAX(m.id) FROM messages m \
                 WHERE m.room = d.room AND m.kind = 'chat'), 0) AS last_id, \
       (SELECT COUNT(*) FROM (SELECT 1 FROM messages m \
        WHERE m.room = d.room AND m.kind = 'chat' AND NOT m.deleted AND m.user_name <> $1 \
          AND m.id > COALESCE((SELECT r.last_read FROM read_markers r \
                               WHERE r.room = d.room AND r.user_name = $1), 0) \
        LIMIT $3) AS counted) AS unread \
     FROM direct_rooms d \
     WHERE d.user_a = $1 OR d.user_b = $1 \
     ORDER BY last_id DESC, d.opened_at DESC, d.room \
     LIMIT $2";

/// A row of [`PAIR`].
#[derive(QueryableByName)]
pub struct PairRow {
    #[diesel(sql_type = Text)]
    pub user_a: String,
    #[diesel(sql_type = Text)]
    pub user_b: String,
}

impl From<PairRow> for [UserName; 2] {
    fn from(row: PairRow) -> Self {
        [row.user_a, row.user_b]
    }
}

/// A row of [`LIST`].
#[derive(QueryableByName)]
pub struct ListRow {
    #[diesel(sql_type = Text)]
    pub room: String,
    #[diesel(sql_type = Text)]
    pub with_user: String,
    #[diesel(sql_type = BigInt)]
    pub last_id: i64,
    #[diesel(sql_type = BigInt)]
    pub unread: i64,
}

/// One of a user's direct-message rooms, as `GET /api/dms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectRoom {
    pub room: RoomName,
    /// The other user (the user itself for its room of one).
    pub with: UserName,
    /// The newest chat's id, 0 when none.
    pub last_id: MessageId,
    /// Other users' chats above the user's read marker, not deleted.
    pub unread: i64,
}

impl From<ListRow> for DirectRoom {
    fn from(row: ListRow) -> Self {
        DirectRoom {
            room: row.room,
            with: row.with_user,
            last_id: row.last_id,
            unread: row.unread,
        }
    }
}
