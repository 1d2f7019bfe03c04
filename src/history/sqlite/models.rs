//! Rows of the SQLite tables: what diesel reads and what it inserts.

use diesel::prelude::*;

use super::schema::messages;
use crate::history::rows::Row;

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
    pub kind: String,
    pub target: Option<i64>,
    pub reply_to: Option<i64>,
    pub emoji: Option<String>,
    pub reaction_on: Option<bool>,
    pub idempotency_key: Option<String>,
    pub edited_text: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub until_at: Option<i64>,
    pub reason: Option<String>,
}

/// A row to insert; borrowed from the worker's batch.
#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage<'a> {
    pub room: &'a str,
    pub user_name: &'a str,
    pub text: &'a str,
    pub created_at: i64,
    pub kind: &'a str,
    pub target: Option<i64>,
    pub reply_to: Option<i64>,
    pub emoji: Option<&'a str>,
    pub reaction_on: Option<bool>,
    pub idempotency_key: Option<&'a str>,
    pub action: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub until_at: Option<i64>,
    pub reason: Option<&'a str>,
}

impl From<StoredMessage> for Row {
    fn from(row: StoredMessage) -> Self {
        Row {
            id: row.id,
            room: row.room,
            seq: None,
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
