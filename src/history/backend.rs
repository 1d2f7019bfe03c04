//! [`Backend`]: what a database must do for chat history, in blocking calls
//! made from the history worker threads. The SQLite backend is in
//! [`super::sqlite`], PostgreSQL's in [`super::postgres`]; a third database
//! goes beside them and is chosen in [`super::History::start`].
//!
//! History is a log of changes per room (chats, edits, deletes,
//! reactions), each with an id from one sequence. A backend keeps the log
//! as it was broadcast (for `since` replays and other nodes) and each
//! chat's current state (for history on join and REST), and decides, in
//! the transaction that stores a batch, which changes may be stored at all
//! (see [`super::rules`]).

use super::direct_rooms::DirectRoom;
use super::{Page, StoreError};
use crate::protocol::{ChatMessage, MessageId, ModAction, UserName};

/// A change a member asked for, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewChange {
    Chat {
        text: String,
        reply_to: Option<MessageId>,
        /// Idempotency key: a repeat within [`KEY_WINDOW_MS`] is not
        /// stored again.
        key: Option<String>,
    },
    Edit {
        target: MessageId,
        text: String,
    },
    Delete {
        target: MessageId,
        /// The sender moderates the room: it may delete anyone's chat (a
        /// `moderation` with action `delete` when the chat is not its own).
        as_moderator: bool,
    },
    React {
        target: MessageId,
        emoji: String,
        on: bool,
    },
    /// A moderator's kick, mute, ban or unban of `subject` (authority
    /// checked before it gets here). A moderator's delete is a `Delete`.
    Moderate {
        action: ModAction,
        subject: UserName,
        /// Milliseconds since the Unix epoch when a mute or ban ends
        /// (`None`: a ban until unbanned).
        until: Option<i64>,
        reason: Option<String>,
    },
}

impl NewChange {
    /// The text stored in the log row: a chat's or an edit's.
    pub fn text(&self) -> &str {
        match self {
            NewChange::Chat { text, .. } | NewChange::Edit { text, .. } => text,
            NewChange::Delete { .. } | NewChange::React { .. } | NewChange::Moderate { .. } => "",
        }
    }
}

/// How long a chat's `key` makes a resend return the original: 24 hours.
pub const KEY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// A change to store, as the worker hands it to a backend.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    pub room: &'a str,
    pub user: &'a str,
    pub change: &'a NewChange,
    /// Milliseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

/// What the database made of one stored change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub id: MessageId,
    /// Its place in its room, where the backend numbers them (see
    /// [`crate::protocol::ChatMessage::seq`]).
    pub seq: Option<i64>,
    /// Milliseconds since the Unix epoch, UTC: the batch's time, or later
    /// when the backend keeps a room's timestamps rising across nodes.
    pub created_at: i64,
    /// A moderator's delete of another user's chat: that user, the
    /// `moderation` frame's `user`.
    pub deleted_for: Option<UserName>,
}

/// Why a change was not stored, as its sender is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The target or `reply_to` is not a chat of this room, or was deleted.
    NotFound,
    /// An edit or delete of another user's chat.
    Forbidden,
}

/// What became of one change of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored: it goes to every member.
    Stored(Inserted),
    /// Not stored; its sender gets an error.
    Refused(Refusal),
    /// A chat whose key was used before: nothing stored, its sender gets
    /// the original back.
    Repeat(Box<ChatMessage>),
    /// A reaction already in the asked state: nothing stored, its sender
    /// gets the state (`on`).
    Unchanged { on: bool },
}

/// A room's mutes and bans in force, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sanctions {
    pub mutes: Vec<(UserName, i64)>,
    pub bans: Vec<(UserName, Option<i64>)>,
}

/// The most unread chats counted for one user in one room (`history`'s
/// `unread`, `/api/dms`' `unread`); a bigger backlog counts as this many.
/// Counting is a scan of the chats above the user's marker, and every
/// join counts: a new user in a room of a million chats would scan them
/// all. A page shows 99+ long before this.
pub const UNREAD_COUNT_LIMIT: i64 = 1000;

/// One worker thread's access to the database. Every method blocks; each
/// is called on a [`super::worker::HistoryActor`] thread only.
///
/// What every backend guarantees: [`Backend::insert_batch`] is one
/// transaction, durable when it returns `Ok`; within a room, ids rise in
/// the order changes are committed; reads see every committed change.
pub trait Backend: Send + 'static {
    /// Decides on and stores `batch` in one transaction, in order, and
    /// returns what became of each change, in the same order. The
    /// decisions ([`super::rules::judge`]) are made inside the transaction,
    /// so they see every change committed before it, on any node.
    fn insert_batch(&mut self, batch: &[NewRow<'_>]) -> Result<Vec<Outcome>, StoreError>;

    /// The newest `limit` chats of `room` with `id < before` (any id when
    /// `None`), oldest first, in their current state, and whether older
    /// ones exist.
    fn chats_before(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// The oldest `limit` chats of `room` with `id > after`, oldest first,
    /// in their current state, and whether newer ones exist.
    fn chats_after(
        &mut self,
        room: &str,
        after: MessageId,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// The newest `limit` changes of `room` (of every kind, as broadcast),
    /// oldest first, and whether older ones exist.
    fn newest_changes(&mut self, room: &str, limit: usize) -> Result<Page, StoreError>;

    /// The oldest `limit` changes of `room` with `after < id <= up_to` (no
    /// upper bound when `None`), oldest first, as broadcast, and whether
    /// more exist in that range past the last one returned.
    fn changes_after(
        &mut self,
        room: &str,
        after: MessageId,
        up_to: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// How many chats `room` has stored (deleted ones included: they keep
    /// their place).
    fn count_chats(&mut self, room: &str) -> Result<i64, StoreError>;

    /// `user`'s read marker in `room` (0 when none) and how many chats
    /// with an id above it, up to `up_to`, are unread: other users' chats
    /// that are not deleted (your own chats are never unread to you),
    /// counted up to [`UNREAD_COUNT_LIMIT`].
    fn read_marker(
        &mut self,
        room: &str,
        user: &str,
        up_to: MessageId,
    ) -> Result<(MessageId, i64), StoreError>;

    /// The mutes and bans of `room` in force at `now` (milliseconds):
    /// each user with when it ends (`None`: a ban until unbanned).
    fn sanctions(&mut self, room: &str, now: i64) -> Result<Sanctions, StoreError>;

    /// Moves `user`'s read marker in `room` forward to `id` (never back)
    /// and returns the stored marker. Durable when it returns.
    fn set_read_marker(
        &mut self,
        room: &str,
        user: &str,
        id: MessageId,
    ) -> Result<MessageId, StoreError>;

    /// Stores the two users (sorted) of the direct-message room `room`,
    /// opened at `now` (milliseconds), unless it has a pair stored already.
    /// Durable when it returns.
    fn open_direct(
        &mut self,
        room: &str,
        users: &[UserName; 2],
        now: i64,
    ) -> Result<(), StoreError>;

    /// The stored pair of the direct-message room `room`, if any.
    fn direct_pair(&mut self, room: &str) -> Result<Option<[UserName; 2]>, StoreError>;

    /// `user`'s direct-message rooms, the most recently active first, at
    /// most `limit` (see [`super::direct_rooms::LIST`]).
    fn direct_rooms(&mut self, user: &str, limit: usize) -> Result<Vec<DirectRoom>, StoreError>;

    /// One small real write, committed like a batch: what `/health` uses to
    /// see that the database takes writes when no chat was stored lately.
    fn check_write(&mut self, millis: i64) -> Result<(), StoreError>;

    /// Leaves the database complete in its own files for a stop (SQLite:
    /// copies its log into the database file). Called after the last batch.
    fn checkpoint(&mut self) -> Result<(), StoreError>;
}
