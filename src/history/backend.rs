//! [`Backend`]: what a database must do for chat history, in blocking calls
//! made from the history worker threads. The SQLite backend is in
//! [`super::sqlite`]; a second database goes beside it and is chosen in
//! [`super::History::start`].

use super::{Page, StoreError};
use crate::protocol::MessageId;

/// A chat message to insert, as the worker hands it to a backend.
#[derive(Debug, Clone, Copy)]
pub struct NewChat<'a> {
    pub room: &'a str,
    pub user: &'a str,
    pub text: &'a str,
    /// Milliseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

/// What the database made of one inserted chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub id: MessageId,
    /// Its place in its room, where the backend numbers them (see
    /// [`crate::protocol::ChatMessage::seq`]).
    pub seq: Option<i64>,
    /// Milliseconds since the Unix epoch, UTC: the batch's time, or later
    /// when the backend keeps a room's timestamps rising across nodes.
    pub created_at: i64,
}

/// One worker thread's access to the database. Every method blocks; each
/// is called on a [`super::worker::HistoryActor`] thread only.
///
/// What every backend guarantees: [`Backend::insert_batch`] is one
/// transaction, durable when it returns `Ok`; within a room, ids rise in
/// the order messages are committed; reads see every committed message.
pub trait Backend: Send + 'static {
    /// Inserts `batch` in one transaction, in order, and returns what each
    /// row became, in the same order.
    fn insert_batch(&mut self, batch: &[NewChat<'_>]) -> Result<Vec<Inserted>, StoreError>;

    /// The newest `limit` messages of `room` with `id < before` (any id
    /// when `None`), oldest first, and whether older ones exist.
    fn messages_before(
        &mut self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// The oldest `limit` messages of `room` with `after < id <= up_to` (no
    /// upper bound when `None`), oldest first, and whether more exist in
    /// that range past the last one returned.
    fn messages_after(
        &mut self,
        room: &str,
        after: MessageId,
        up_to: Option<MessageId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// How many messages `room` has stored.
    fn count_messages(&mut self, room: &str) -> Result<i64, StoreError>;

    /// One small real write, committed like a batch: what `/health` uses to
    /// see that the database takes writes when no chat was stored lately.
    fn check_write(&mut self, millis: i64) -> Result<(), StoreError>;

    /// Leaves the database complete in its own files for a stop (SQLite:
    /// copies its log into the database file). Called after the last batch.
    fn checkpoint(&mut self) -> Result<(), StoreError>;
}
