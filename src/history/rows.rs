//! A stored change as every backend reads it back, and the two ways it is
//! shown: as it was broadcast (the log, for `since` replays and other
//! nodes) or, for a chat, in its current state (history on join, REST).
//! Backends read their own row types and convert them into [`Row`], so this
//! is written once.

use std::collections::HashMap;

use super::backend::{Inserted, NewChange, NewRow, Outcome};
use super::StoreError;
use crate::protocol::{format_timestamp, ChangeKind, ChatMessage, MessageId, ModAction, Reactions};

/// One row of a room's log, whatever the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: MessageId,
    pub room: String,
    pub seq: Option<i64>,
    pub user_name: String,
    pub text: String,
    pub created_at: i64,
    pub kind: String,
    pub target: Option<MessageId>,
    pub reply_to: Option<MessageId>,
    pub emoji: Option<String>,
    pub reaction_on: Option<bool>,
    pub edited_text: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub until_at: Option<i64>,
    pub reason: Option<String>,
}

impl Row {
    /// The change as it was broadcast (a deleted chat's text erased).
    pub fn broadcast(self) -> ChatMessage {
        ChatMessage {
            id: self.id,
            room: self.room,
            user: self.user_name,
            kind: ChangeKind::parse(&self.kind),
            text: self.text,
            timestamp: format_timestamp(self.created_at),
            target: self.target,
            reply_to: self.reply_to,
            emoji: self.emoji,
            on: self.reaction_on.unwrap_or(false),
            seq: self.seq,
            action: self.action.as_deref().and_then(ModAction::parse),
            subject: self.subject,
            until: self.until_at.map(format_timestamp),
            reason: self.reason,
            ..ChatMessage::default()
        }
    }

    /// A chat in its current state, without its reactions (see
    /// [`with_reactions`]).
    pub fn current(mut self) -> ChatMessage {
        let (edited_text, edited_at, deleted) =
            (self.edited_text.take(), self.edited_at, self.deleted);
        let mut message = self.broadcast();
        if deleted {
            message.deleted = true;
            message.text.clear();
        } else if let Some(text) = edited_text {
            message.text = text;
            message.edited_at = edited_at.map(format_timestamp);
        }
        message
    }
}

/// The log row a stored change becomes, in the columns every backend has.
pub struct NewColumns<'a> {
    pub kind: &'static str,
    pub text: &'a str,
    pub target: Option<MessageId>,
    pub reply_to: Option<MessageId>,
    pub emoji: Option<&'a str>,
    pub reaction_on: Option<bool>,
    pub idempotency_key: Option<&'a str>,
    pub action: Option<&'static str>,
    pub subject: Option<&'a str>,
    pub until_at: Option<i64>,
    pub reason: Option<&'a str>,
}

impl<'a> NewColumns<'a> {
    /// The row of a stored change; `deleted_for` is the author of a chat a
    /// moderator deleted (stored as a `moderation`).
    pub fn of(change: &'a NewChange, deleted_for: Option<&'a str>) -> NewColumns<'a> {
        let mut columns = NewColumns {
            kind: ChangeKind::Chat.as_str(),
            text: change.text(),
            target: None,
            reply_to: None,
            emoji: None,
            reaction_on: None,
            idempotency_key: None,
            action: None,
            subject: None,
            until_at: None,
            reason: None,
        };
        match change {
            NewChange::Chat { reply_to, key, .. } => {
                columns.reply_to = *reply_to;
                columns.idempotency_key = key.as_deref();
            }
            NewChange::Edit { target, .. } => {
                columns.kind = ChangeKind::Edit.as_str();
                columns.target = Some(*target);
            }
            NewChange::Delete { target, .. } => {
                columns.kind = ChangeKind::Delete.as_str();
                columns.target = Some(*target);
                if let Some(author) = deleted_for {
                    columns.kind = ChangeKind::Moderation.as_str();
                    columns.action = Some(ModAction::Delete.as_str());
                    columns.subject = Some(author);
                }
            }
            NewChange::React { target, emoji, on } => {
                columns.kind = ChangeKind::Reaction.as_str();
                columns.target = Some(*target);
                columns.emoji = Some(emoji);
                columns.reaction_on = Some(*on);
            }
            NewChange::Moderate {
                action,
                subject,
                until,
                reason,
            } => {
                columns.kind = ChangeKind::Moderation.as_str();
                columns.action = Some(action.as_str());
                columns.subject = Some(subject);
                columns.until_at = *until;
                columns.reason = reason.as_deref();
            }
        }
        columns
    }
}

/// Puts `reactions` (chat id, emoji, user) on the chats they belong to,
/// each emoji's users sorted.
pub fn with_reactions(
    chats: &mut [ChatMessage],
    reactions: impl IntoIterator<Item = (MessageId, String, String)>,
) {
    let mut by_chat: HashMap<MessageId, Reactions> = HashMap::new();
    for (id, emoji, user) in reactions {
        by_chat
            .entry(id)
            .or_default()
            .entry(emoji)
            .or_default()
            .push(user);
    }
    for chat in chats {
        if let Some(mut reactions) = by_chat.remove(&chat.id) {
            for users in reactions.values_mut() {
                users.sort_unstable();
                users.dedup();
            }
            chat.reactions = reactions;
        }
    }
}

/// The ids of `chats`, for reading their reactions.
pub fn ids(chats: &[ChatMessage]) -> Vec<MessageId> {
    chats.iter().map(|c| c.id).collect()
}

/// A stored change as it is broadcast, from what was asked and what the
/// database made of it.
pub fn broadcast_form(row: &NewRow<'_>, inserted: &Inserted) -> ChatMessage {
    let mut message = ChatMessage {
        id: inserted.id,
        room: row.room.to_string(),
        user: row.user.to_string(),
        text: row.change.text().to_string(),
        timestamp: format_timestamp(inserted.created_at),
        seq: inserted.seq,
        ..ChatMessage::default()
    };
    match row.change {
        NewChange::Chat { reply_to, .. } => message.reply_to = *reply_to,
        NewChange::Edit { target, .. } => {
            message.kind = ChangeKind::Edit;
            message.target = Some(*target);
        }
        NewChange::Delete { target, .. } => {
            message.kind = ChangeKind::Delete;
            message.target = Some(*target);
            if let Some(author) = &inserted.deleted_for {
                message.kind = ChangeKind::Moderation;
                message.action = Some(ModAction::Delete);
                message.subject = Some(author.clone());
            }
        }
        NewChange::React { target, emoji, on } => {
            message.kind = ChangeKind::Reaction;
            message.target = Some(*target);
            message.emoji = Some(emoji.clone());
            message.on = *on;
        }
        NewChange::Moderate {
            action,
            subject,
            until,
            reason,
        } => {
            message.kind = ChangeKind::Moderation;
            message.action = Some(*action);
            message.subject = Some(subject.clone());
            message.until = until.map(format_timestamp);
            message.reason = reason.clone();
        }
    }
    message
}

/// The answer to a chat whose key an earlier chat of the batch used: that
/// chat, as stored.
pub fn repeat_of(
    batch: &[NewRow<'_>],
    outcomes: &[Outcome],
    position: usize,
) -> Result<Outcome, StoreError> {
    match (batch.get(position), outcomes.get(position)) {
        (Some(row), Some(Outcome::Stored(inserted))) => {
            Ok(Outcome::Repeat(Box::new(broadcast_form(row, inserted))))
        }
        _ => Err(StoreError::Query(format!(
            "a repeated key points at change {position} of the batch, which was not stored"
        ))),
    }
}
