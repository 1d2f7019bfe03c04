//! Rows of the `messages` table: what diesel reads and what it inserts.

use diesel::prelude::*;

use super::schema::messages;
use crate::protocol::{format_timestamp, ChatMessage};

/// A stored row, as read back.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct StoredMessage {
    pub id: i64,
    pub room: String,
    pub user_name: String,
    pub text: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

/// A row to insert; borrowed from the worker's batch.
#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage<'a> {
    pub room: &'a str,
    pub user_name: &'a str,
    pub text: &'a str,
    pub created_at: i64,
}

impl From<StoredMessage> for ChatMessage {
    fn from(row: StoredMessage) -> Self {
        ChatMessage {
            id: row.id,
            room: row.room,
            user: row.user_name,
            text: row.text,
            timestamp: format_timestamp(row.created_at),
            seq: None,
        }
    }
}
