//! The wire format of `../shared/PROTOCOL.md` (mirrored in `docs/PROTOCOL.md`):
//! client frames decoded and validated into [`ClientFrame`], server frames
//! encoded from [`ServerFrame`], and the name rules shared with the HTTP API.
//! Nothing here touches actors or sockets, so the load tester and the tests
//! reuse it as is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A room's name: 1 to 64 characters from `A-Z a-z 0-9 _ -`.
pub type RoomName = String;
/// A user's name: 1 to 32 characters from `A-Z a-z 0-9 _ - .`.
pub type UserName = String;
/// A stored change's id (a chat's, an edit's, ...): from one sequence in
/// the database, so it survives restarts.
pub type MessageId = i64;

/// Longest `ref` a client may attach to a frame, in characters.
pub(crate) const MAX_REF_CHARS: usize = 64;

/// True for a valid room name.
pub(crate) fn is_valid_room(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// True for a valid user name.
pub(crate) fn is_valid_user(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Every error code of the protocol, plus `store_failed` (documented in
/// docs/PROTOCOL.md) for a chat the database refused; version 1.1 adds
/// `overloaded` (too much waits to be stored), `not_found` and `forbidden`
/// (an edit, delete, reaction or reply aimed at the wrong message) and
/// `invalid_token` (a `refresh` whose token the connection cannot take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BinaryUnsupported,
    UnknownType,
    InvalidRoom,
    InvalidText,
    InvalidField,
    AlreadyJoined,
    NotJoined,
    TooManyRooms,
    RateLimited,
    StoreFailed,
    Overloaded,
    NotFound,
    Forbidden,
    Banned,
    Muted,
    InvalidToken,
}

impl ErrorCode {
    /// Every code, for listing them (metrics start each at zero). The test
    /// `all_lists_every_code` stops compiling when a code is added here
    /// and not there.
    pub(crate) const ALL: [ErrorCode; 17] = [
        ErrorCode::BadJson,
        ErrorCode::BinaryUnsupported,
        ErrorCode::UnknownType,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidText,
        ErrorCode::InvalidField,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotJoined,
        ErrorCode::TooManyRooms,
        ErrorCode::RateLimited,
        ErrorCode::StoreFailed,
        ErrorCode::Overloaded,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::Banned,
        ErrorCode::Muted,
        ErrorCode::InvalidToken,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidText => "invalid_text",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::StoreFailed => "store_failed",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

/// A frame from a client, validated: names are valid, text is within limits.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Join {
        room: RoomName,
        since: Option<MessageId>,
        reference: Option<String>,
    },
    /// `join` with `dm` instead of `room`: open the direct-message room
    /// with that user (see [`crate::direct`]).
    JoinDirect {
        with: UserName,
        since: Option<MessageId>,
        reference: Option<String>,
    },
    Leave {
        room: RoomName,
        reference: Option<String>,
    },
    Chat {
        room: RoomName,
        text: String,
        reference: Option<String>,
        /// The chat of this room it answers.
        reply_to: Option<MessageId>,
        /// Makes the send idempotent: a repeat within a day returns the
        /// original.
        key: Option<String>,
    },
    Edit {
        room: RoomName,
        target: MessageId,
        text: String,
        reference: Option<String>,
    },
    Delete {
        room: RoomName,
        target: MessageId,
        reference: Option<String>,
    },
    React {
        room: RoomName,
        target: MessageId,
        emoji: String,
        /// Add (`true`) or remove the reaction.
        on: bool,
        reference: Option<String>,
    },
    Typing {
        room: RoomName,
        reference: Option<String>,
    },
    Read {
        room: RoomName,
        /// Read up to and including this id.
        id: MessageId,
        reference: Option<String>,
    },
    /// A moderator's `kick`, `mute`, `ban` or `unban` of `user`.
    Moderate {
        room: RoomName,
        action: ModAction,
        user: UserName,
        /// How long a mute or ban lasts (`None`: a ban until unbanned).
        seconds: Option<u32>,
        reason: Option<String>,
        reference: Option<String>,
    },
    /// A fresh token for the connection's user. Only its shape is checked
    /// here; the session verifies it.
    Refresh {
        token: String,
        reference: Option<String>,
    },
}

/// What a moderator did, as the `action` of a `moderation` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModAction {
    Kick,
    Mute,
    Ban,
    Unban,
    Delete,
}

impl ModAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ModAction::Kick => "kick",
            ModAction::Mute => "mute",
            ModAction::Ban => "ban",
            ModAction::Unban => "unban",
            ModAction::Delete => "delete",
        }
    }

    pub fn parse(name: &str) -> Option<ModAction> {
        Some(match name {
            "kick" => ModAction::Kick,
            "mute" => ModAction::Mute,
            "ban" => ModAction::Ban,
            "unban" => ModAction::Unban,
            "delete" => ModAction::Delete,
            _ => return None,
        })
    }
}

/// Longest moderation `reason`, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 256;

/// Longest `key` of an idempotent chat, in characters.
pub(crate) const MAX_KEY_CHARS: usize = 64;

/// Longest reaction, in Unicode scalar values: room for an emoji built of
/// several (a flag, a family, a skin tone).
pub(crate) const MAX_EMOJI_CHARS: usize = 8;

/// Why a text frame was refused; becomes an `error` frame carrying the
/// frame's `ref` when it had a usable one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    pub reference: Option<String>,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>, reference: Option<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
            reference,
        }
    }
}

/// Decodes one client text frame. `max_text_chars` is `MAX_MESSAGE_LEN`.
///
/// Checks run in the order a client would expect to be told about them:
/// the JSON shape, the `ref` (so later errors can echo it), the type, then
/// the type's own fields.
pub fn decode_client_frame(text: &str, max_text_chars: usize) -> Result<ClientFrame, DecodeError> {
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(DecodeError::new(
                ErrorCode::BadJson,
                "a frame must be a JSON object",
                None,
            ))
        }
        Err(e) => {
            return Err(DecodeError::new(
                ErrorCode::BadJson,
                format!("not valid JSON: {e}"),
                None,
            ))
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => {
            return Err(DecodeError::new(
                ErrorCode::BadJson,
                "a frame needs a string field \"type\"",
                None,
            ))
        }
    };
    let reference = match object.remove("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.chars().count() <= MAX_REF_CHARS => Some(r),
        Some(_) => {
            return Err(DecodeError::new(
                ErrorCode::InvalidField,
                format!("\"ref\" must be a string of at most {MAX_REF_CHARS} characters"),
                None,
            ))
        }
    };
    match kind.as_str() {
        "join" => {
            let dm = match object.remove("dm") {
                None | Some(Value::Null) => None,
                Some(Value::String(user)) if is_valid_user(&user) => Some(user),
                Some(_) => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidField,
                        "\"dm\" must be a user name: 1 to 32 characters from A-Z a-z 0-9 _ - .",
                        reference,
                    ))
                }
            };
            let has_room = !matches!(object.get("room"), None | Some(Value::Null));
            if dm.is_some() && has_room {
                return Err(DecodeError::new(
                    ErrorCode::InvalidField,
                    "give \"room\" or \"dm\", not both",
                    reference,
                ));
            }
            // The room by name, or the user of a direct-message room.
            let target = match dm {
                Some(with) => Err(with),
                None => Ok(take_room(&mut object, &reference)?),
            };
            let since = match object.get("since") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(id) if id >= 0 => Some(id),
                    _ => return Err(bad_since(reference)),
                },
                Some(_) => return Err(bad_since(reference)),
            };
            match target {
                Ok(room) => Ok(ClientFrame::Join {
                    room,
                    since,
                    reference,
                }),
                Err(with) => Ok(ClientFrame::JoinDirect {
                    with,
                    since,
                    reference,
                }),
            }
        }
        "leave" => Ok(ClientFrame::Leave {
            room: take_room(&mut object, &reference)?,
            reference,
        }),
        "chat" => {
            let room = take_room(&mut object, &reference)?;
            let text = take_text(&mut object, max_text_chars, &reference)?;
            let reply_to = match object.get("reply_to") {
                None | Some(Value::Null) => None,
                Some(value) => Some(message_id(value, "reply_to", &reference)?),
            };
            let key = match object.remove("key") {
                None | Some(Value::Null) => None,
                Some(Value::String(key))
                    if !key.is_empty() && key.chars().count() <= MAX_KEY_CHARS =>
                {
                    Some(key)
                }
                Some(_) => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidField,
                        format!("\"key\" must be a string of 1 to {MAX_KEY_CHARS} characters"),
                        reference,
                    ))
                }
            };
            Ok(ClientFrame::Chat {
                room,
                text,
                reference,
                reply_to,
                key,
            })
        }
        "edit" => {
            let room = take_room(&mut object, &reference)?;
            let target = take_target(&object, &reference)?;
            let text = take_text(&mut object, max_text_chars, &reference)?;
            Ok(ClientFrame::Edit {
                room,
                target,
                text,
                reference,
            })
        }
        "delete" => {
            let room = take_room(&mut object, &reference)?;
            let target = take_target(&object, &reference)?;
            Ok(ClientFrame::Delete {
                room,
                target,
                reference,
            })
        }
        "react" => {
            let room = take_room(&mut object, &reference)?;
            let target = take_target(&object, &reference)?;
            let emoji = match object.remove("emoji") {
                Some(Value::String(emoji)) if is_valid_emoji(&emoji) => emoji,
                _ => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidField,
                        format!(
                        "\"emoji\" must be 1 to {MAX_EMOJI_CHARS} characters without white space"
                    ),
                        reference,
                    ))
                }
            };
            let on = match object.get("on") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(on)) => *on,
                Some(_) => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidField,
                        "\"on\" must be true or false",
                        reference,
                    ))
                }
            };
            Ok(ClientFrame::React {
                room,
                target,
                emoji,
                on,
                reference,
            })
        }
        "typing" => Ok(ClientFrame::Typing {
            room: take_room(&mut object, &reference)?,
            reference,
        }),
        "kick" | "mute" | "ban" | "unban" => {
            let action = ModAction::parse(&kind).unwrap_or(ModAction::Kick);
            let room = take_room(&mut object, &reference)?;
            let field = |message: String| {
                DecodeError::new(ErrorCode::InvalidField, message, reference.clone())
            };
            let user = match object.remove("user") {
                Some(Value::String(user)) if is_valid_user(&user) => user,
                _ => return Err(field("\"user\" must be a valid user name".into())),
            };
            let seconds = match (action, object.get("seconds")) {
                (ModAction::Kick | ModAction::Unban, _)
                | (ModAction::Ban, None | Some(Value::Null)) => None,
                (_, Some(Value::Number(n))) => match n.as_u64() {
                    Some(s) if (1..=1 << 31).contains(&s) => Some(s as u32),
                    _ => {
                        return Err(field(
                            "\"seconds\" must be an integer from 1 to 2^31".into(),
                        ))
                    }
                },
                _ => {
                    return Err(field(
                        "\"seconds\" must be an integer from 1 to 2^31".into(),
                    ))
                }
            };
            let reason = match (action, object.remove("reason")) {
                (_, None | Some(Value::Null)) | (ModAction::Unban, _) => None,
                (_, Some(Value::String(r))) if r.chars().count() <= MAX_REASON_CHARS => Some(r),
                _ => {
                    return Err(field(format!(
                        "\"reason\" must be a string of at most {MAX_REASON_CHARS} characters"
                    )))
                }
            };
            Ok(ClientFrame::Moderate {
                room,
                action,
                user,
                seconds,
                reason,
                reference,
            })
        }
        "read" => {
            let room = take_room(&mut object, &reference)?;
            let id = match object.get("id") {
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(id) if id >= 0 => id,
                    _ => return Err(bad_id("id", &reference)),
                },
                _ => return Err(bad_id("id", &reference)),
            };
            Ok(ClientFrame::Read {
                room,
                id,
                reference,
            })
        }
        "refresh" => match object.remove("token") {
            Some(Value::String(token)) if !token.is_empty() => {
                Ok(ClientFrame::Refresh { token, reference })
            }
            _ => Err(DecodeError::new(
                ErrorCode::InvalidField,
                "\"token\" must be a non-empty string (a JWT)",
                reference,
            )),
        },
        other => Err(DecodeError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown type {other:?}; expected join, leave, chat, edit, delete, react, typing, \
                 read, refresh, kick, mute, ban or unban"
            ),
            reference,
        )),
    }
}

/// A chat or edit's `text`, checked against the text rules.
fn take_text(
    object: &mut Map<String, Value>,
    max_text_chars: usize,
    reference: &Option<String>,
) -> Result<String, DecodeError> {
    let text = match object.remove("text") {
        Some(Value::String(text)) => text,
        _ => {
            return Err(DecodeError::new(
                ErrorCode::InvalidText,
                "\"text\" must be a string",
                reference.clone(),
            ))
        }
    };
    if let Err(why) = check_text(&text, max_text_chars) {
        return Err(DecodeError::new(
            ErrorCode::InvalidText,
            why,
            reference.clone(),
        ));
    }
    Ok(text)
}

/// The `target` of an edit, delete or reaction: a message id.
fn take_target(
    object: &Map<String, Value>,
    reference: &Option<String>,
) -> Result<MessageId, DecodeError> {
    match object.get("target") {
        Some(value) => message_id(value, "target", reference),
        None => Err(bad_id("target", reference)),
    }
}

/// A positive message id, or `invalid_field` naming `field`.
fn message_id(
    value: &Value,
    field: &str,
    reference: &Option<String>,
) -> Result<MessageId, DecodeError> {
    match value.as_i64() {
        Some(id) if id > 0 => Ok(id),
        _ => Err(bad_id(field, reference)),
    }
}

fn bad_id(field: &str, reference: &Option<String>) -> DecodeError {
    DecodeError::new(
        ErrorCode::InvalidField,
        format!("\"{field}\" must be a message id (a positive integer)"),
        reference.clone(),
    )
}

/// True for a valid reaction: 1 to [`MAX_EMOJI_CHARS`] Unicode scalar
/// values, none of them white space or a control character.
pub(crate) fn is_valid_emoji(emoji: &str) -> bool {
    let n = emoji.chars().count();
    (1..=MAX_EMOJI_CHARS).contains(&n)
        && emoji.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

fn take_room(
    object: &mut Map<String, Value>,
    reference: &Option<String>,
) -> Result<RoomName, DecodeError> {
    match object.remove("room") {
        Some(Value::String(room)) if is_valid_room(&room) => Ok(room),
        _ => Err(DecodeError::new(
            ErrorCode::InvalidRoom,
            "\"room\" must be 1 to 64 characters from A-Z a-z 0-9 _ -",
            reference.clone(),
        )),
    }
}

fn bad_since(reference: Option<String>) -> DecodeError {
    DecodeError::new(
        ErrorCode::InvalidField,
        "\"since\" must be a non-negative integer message id",
        reference,
    )
}

/// Checks a chat text: 1 to `max_chars` Unicode scalar values, not all
/// Unicode White_Space (which is what `char::is_whitespace` tests).
pub(crate) fn check_text(text: &str, max_chars: usize) -> Result<(), String> {
    if text.chars().all(char::is_whitespace) {
        return Err("\"text\" must not be empty or all white space".into());
    }
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(format!("\"text\" is longer than {max_chars} characters"));
    }
    Ok(())
}

/// What a stored change does: every change of a room has an id from the
/// same sequence, and its place in the room's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new message.
    #[default]
    Chat,
    /// New text for the chat `target`.
    Edit,
    /// The chat `target` is gone.
    Delete,
    /// A user's `emoji` on the chat `target`, added or removed.
    Reaction,
    /// A moderator's action (`action`) on the user `subject`.
    Moderation,
}

impl ChangeKind {
    /// Its name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Chat => "chat",
            ChangeKind::Edit => "edit",
            ChangeKind::Delete => "delete",
            ChangeKind::Reaction => "reaction",
            ChangeKind::Moderation => "moderation",
        }
    }

    /// Reads a name written by [`ChangeKind::as_str`]; an unknown one (a
    /// newer server's) reads as a chat, which shows its text.
    pub fn parse(name: &str) -> ChangeKind {
        match name {
            "edit" => ChangeKind::Edit,
            "delete" => ChangeKind::Delete,
            "reaction" => ChangeKind::Reaction,
            "moderation" => ChangeKind::Moderation,
            _ => ChangeKind::Chat,
        }
    }
}

/// Who reacted with what to a chat: emoji to the sorted list of users.
pub type Reactions = BTreeMap<String, Vec<UserName>>;

/// One stored change of a room (most often a chat message) as clients see
/// it: live, in `history` and over REST. A chat read "in its current
/// state" (history on join, REST) carries what later changes did to it
/// (`edited_at`, `deleted`, `reactions`); a change replayed for `since`
/// is exactly as it was broadcast. It is encoded as the server frame of
/// its kind, so a history item reads like the live frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatMessage {
    pub id: MessageId,
    pub room: RoomName,
    pub user: UserName,
    pub kind: ChangeKind,
    /// A chat's text, or an edit's new text; empty for the others, and for
    /// a deleted chat and its edits.
    pub text: String,
    /// RFC 3339, UTC, milliseconds; see [`format_timestamp`].
    pub timestamp: String,
    /// The chat an edit, delete or reaction is about.
    pub target: Option<MessageId>,
    /// The chat this chat answers.
    pub reply_to: Option<MessageId>,
    /// A reaction's emoji, and whether it was added.
    pub emoji: Option<String>,
    pub on: bool,
    /// Current state of a chat: when it was last edited.
    pub edited_at: Option<String>,
    /// Current state of a chat: it was deleted (its text is gone).
    pub deleted: bool,
    /// Current state of a chat: its reactions.
    pub reactions: Reactions,
    /// A moderation's action, the user it is about, until when, and why.
    pub action: Option<ModAction>,
    pub subject: Option<UserName>,
    pub until: Option<String>,
    pub reason: Option<String>,
    /// Its place in its room, 1, 2, 3, ... with no gap: set in cluster
    /// mode only, where it lets a node see that it missed a message
    /// another node stored. Never sent to clients.
    pub seq: Option<i64>,
}

impl ChatMessage {
    /// Applies a later change to this chat, in its current state: what a
    /// client does with each frame it receives. Changes to another chat are
    /// ignored.
    pub fn apply(&mut self, change: &ChatMessage) {
        if change.target != Some(self.id) || self.deleted {
            return;
        }
        let deletes = change.kind == ChangeKind::Delete
            || (change.kind == ChangeKind::Moderation && change.action == Some(ModAction::Delete));
        match change.kind {
            _ if deletes => {
                self.deleted = true;
                self.text.clear();
                self.edited_at = None;
                self.reactions.clear();
            }
            ChangeKind::Chat | ChangeKind::Delete | ChangeKind::Moderation => {}
            ChangeKind::Edit => {
                self.text = change.text.clone();
                self.edited_at = Some(change.timestamp.clone());
            }
            ChangeKind::Reaction => {
                let Some(emoji) = &change.emoji else { return };
                let users = self.reactions.entry(emoji.clone()).or_default();
                match (change.on, users.binary_search(&change.user)) {
                    (true, Err(at)) => users.insert(at, change.user.clone()),
                    (false, Ok(at)) => {
                        users.remove(at);
                    }
                    _ => {}
                }
                if users.is_empty() {
                    self.reactions.remove(emoji);
                }
            }
        }
    }
}

impl Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ServerFrame::change(self, None).serialize(serializer)
    }
}

/// A frame the server sends. Borrowed fields: a frame is encoded once and
/// dropped, so nothing is copied to build it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Chat {
        id: MessageId,
        room: &'a str,
        user: &'a str,
        text: &'a str,
        timestamp: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        edited_at: Option<&'a str>,
        #[serde(skip_serializing_if = "is_false")]
        deleted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reactions: Option<&'a Reactions>,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Edit {
        id: MessageId,
        room: &'a str,
        user: &'a str,
        target: MessageId,
        text: &'a str,
        timestamp: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Delete {
        id: MessageId,
        room: &'a str,
        user: &'a str,
        target: MessageId,
        timestamp: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Reaction {
        id: MessageId,
        room: &'a str,
        user: &'a str,
        target: MessageId,
        emoji: &'a str,
        on: bool,
        timestamp: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Moderation {
        id: MessageId,
        room: &'a str,
        action: ModAction,
        /// The user it is about.
        user: &'a str,
        /// The moderator, or `api`.
        by: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<MessageId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        timestamp: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Typing {
        room: &'a str,
        user: &'a str,
    },
    Read {
        room: &'a str,
        id: MessageId,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Join {
        room: &'a str,
        user: &'a str,
        timestamp: &'a str,
    },
    Leave {
        room: &'a str,
        user: &'a str,
        timestamp: &'a str,
    },
    History {
        room: &'a str,
        messages: &'a [ChatMessage],
        more: bool,
        last_read: MessageId,
        unread: i64,
        /// A direct-message room's two users, sorted.
        #[serde(skip_serializing_if = "Option::is_none")]
        dm: Option<&'a [UserName; 2]>,
    },
    Presence {
        room: &'a str,
        users: Vec<&'a str>,
    },
    /// A chat in a direct-message room this connection is not in: `with`
    /// (the other user, who wrote it) wrote chat `id` there.
    Direct {
        room: &'a str,
        with: &'a str,
        id: MessageId,
    },
    /// A `refresh` was taken: the connection now lives until `exp`; `left`
    /// names the rooms it was in that the new token's `rooms` no longer
    /// allow, which it has left (absent when none).
    Refreshed {
        exp: &'a str,
        #[serde(skip_serializing_if = "<[RoomName]>::is_empty")]
        left: &'a [RoomName],
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ServerFrame<'_> {
    /// The frame as JSON text, ready to send.
    pub fn encode(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and
        // there are no non-finite floats.
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// The frame for a stored change (see [`ServerFrame::change`]); kept
    /// under its old name for chats.
    pub fn chat<'a>(message: &'a ChatMessage, reference: Option<&'a str>) -> ServerFrame<'a> {
        ServerFrame::change(message, reference)
    }

    /// The frame for a stored change of any kind, with the sender's `ref`
    /// if any: `chat`, `edit`, `delete` or `reaction`.
    pub fn change<'a>(message: &'a ChatMessage, reference: Option<&'a str>) -> ServerFrame<'a> {
        let target = message.target.unwrap_or_default();
        match message.kind {
            ChangeKind::Chat => ServerFrame::Chat {
                id: message.id,
                room: &message.room,
                user: &message.user,
                text: &message.text,
                timestamp: &message.timestamp,
                reply_to: message.reply_to,
                edited_at: message.edited_at.as_deref(),
                deleted: message.deleted,
                reactions: Some(&message.reactions).filter(|r| !r.is_empty()),
                reference,
            },
            ChangeKind::Edit => ServerFrame::Edit {
                id: message.id,
                room: &message.room,
                user: &message.user,
                target,
                text: &message.text,
                timestamp: &message.timestamp,
                reference,
            },
            ChangeKind::Delete => ServerFrame::Delete {
                id: message.id,
                room: &message.room,
                user: &message.user,
                target,
                timestamp: &message.timestamp,
                reference,
            },
            ChangeKind::Moderation => ServerFrame::Moderation {
                id: message.id,
                room: &message.room,
                action: message.action.unwrap_or(ModAction::Kick),
                user: message.subject.as_deref().unwrap_or_default(),
                by: &message.user,
                target: message.target,
                until: message.until.as_deref(),
                reason: message.reason.as_deref(),
                timestamp: &message.timestamp,
                reference,
            },
            ChangeKind::Reaction => ServerFrame::Reaction {
                id: message.id,
                room: &message.room,
                user: &message.user,
                target,
                emoji: message.emoji.as_deref().unwrap_or_default(),
                on: message.on,
                timestamp: &message.timestamp,
                reference,
            },
        }
    }
}

/// Formats milliseconds since the Unix epoch the way the protocol wants:
/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T19:30:24.123Z`.
pub(crate) fn format_timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_lists_every_code() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            // Exhaustive on purpose: a new code breaks this match until it
            // is given its place in `ALL`.
            let position = match code {
                ErrorCode::BadJson => 0,
                ErrorCode::BinaryUnsupported => 1,
                ErrorCode::UnknownType => 2,
                ErrorCode::InvalidRoom => 3,
                ErrorCode::InvalidText => 4,
                ErrorCode::InvalidField => 5,
                ErrorCode::AlreadyJoined => 6,
                ErrorCode::NotJoined => 7,
                ErrorCode::TooManyRooms => 8,
                ErrorCode::RateLimited => 9,
                ErrorCode::StoreFailed => 10,
                ErrorCode::Overloaded => 11,
                ErrorCode::NotFound => 12,
                ErrorCode::Forbidden => 13,
                ErrorCode::Banned => 14,
                ErrorCode::Muted => 15,
                ErrorCode::InvalidToken => 16,
            };
            assert_eq!(i, position, "{}", code.as_str());
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn code_of(text: &str) -> ErrorCode {
        decode_client_frame(text, 4096).unwrap_err().code
    }

    #[test]
    fn a_join_names_a_room_or_a_dm_user_not_both() {
        assert_eq!(
            decode_client_frame(r#"{"type":"join","dm":"bob","since":3,"ref":"d"}"#, 4096),
            Ok(ClientFrame::JoinDirect {
                with: "bob".into(),
                since: Some(3),
                reference: Some("d".into())
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"join","room":"r","dm":null}"#, 4096),
            Ok(ClientFrame::Join {
                room: "r".into(),
                since: None,
                reference: None
            })
        );
        let both = decode_client_frame(r#"{"type":"join","room":"r","dm":"bob","ref":"x"}"#, 4096)
            .unwrap_err();
        assert_eq!(both.code, ErrorCode::InvalidField);
        assert_eq!(both.reference.as_deref(), Some("x"));
        for bad in [r#""a b""#, "7", r#""""#, "true"] {
            let frame = format!(r#"{{"type":"join","dm":{bad}}}"#);
            let error = decode_client_frame(&frame, 4096).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidField, "{frame}");
        }
        let dm_since = decode_client_frame(r#"{"type":"join","dm":"bob","since":-1}"#, 4096);
        assert_eq!(dm_since.unwrap_err().code, ErrorCode::InvalidField);
    }

    #[test]
    fn a_refresh_needs_a_token_string() {
        assert_eq!(
            decode_client_frame(r#"{"type":"refresh","token":"a.b.c","ref":"r"}"#, 4096),
            Ok(ClientFrame::Refresh {
                token: "a.b.c".into(),
                reference: Some("r".into())
            })
        );
        for bad in [
            r#"{"type":"refresh"}"#,
            r#"{"type":"refresh","token":""}"#,
            r#"{"type":"refresh","token":7}"#,
        ] {
            assert_eq!(code_of(bad), ErrorCode::InvalidField, "{bad}");
        }
        let direct = ServerFrame::Direct {
            room: "dm-1cb15457d1ddab60",
            with: "alice",
            id: 7,
        };
        assert_eq!(
            direct.encode(),
            r#"{"type":"direct","room":"dm-1cb15457d1ddab60","with":"alice","id":7}"#
        );
        let refreshed = ServerFrame::Refreshed {
            exp: "2030-01-01T00:00:00Z",
            left: &[],
            reference: Some("r"),
        };
        assert_eq!(
            refreshed.encode(),
            r#"{"type":"refreshed","exp":"2030-01-01T00:00:00Z","ref":"r"}"#
        );
    }

    #[test]
    fn decodes_each_client_type() {
        assert_eq!(
            decode_client_frame(
                r#"{"type":"join","room":"general","since":7,"ref":"a"}"#,
                4096
            ),
            Ok(ClientFrame::Join {
                room: "general".into(),
                since: Some(7),
                reference: Some("a".into())
            })
        );
        assert_eq!(
            decode_client_frame(
                r#"{"type":"join","room":"r","since":null,"ref":null}"#,
                4096
            ),
            Ok(ClientFrame::Join {
                room: "r".into(),
                since: None,
                reference: None
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"leave","room":"r","extra":[1]}"#, 4096),
            Ok(ClientFrame::Leave {
                room: "r".into(),
                reference: None
            })
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"chat","room":"r","text":"  hi  "}"#, 4096),
            Ok(ClientFrame::Chat {
                room: "r".into(),
                text: "  hi  ".into(),
                reference: None,
                reply_to: None,
                key: None,
            })
        );
    }

    #[test]
    fn decodes_the_chat_feature_frames() {
        let decode = |text: &str| decode_client_frame(text, 4096);
        assert_eq!(
            decode(r#"{"type":"chat","room":"r","text":"hi","reply_to":3,"key":"k-1"}"#),
            Ok(ClientFrame::Chat {
                room: "r".into(),
                text: "hi".into(),
                reference: None,
                reply_to: Some(3),
                key: Some("k-1".into()),
            })
        );
        assert_eq!(
            decode(r#"{"type":"edit","room":"r","target":4,"text":"fixed","ref":"e"}"#),
            Ok(ClientFrame::Edit {
                room: "r".into(),
                target: 4,
                text: "fixed".into(),
                reference: Some("e".into()),
            })
        );
        assert_eq!(
            decode(r#"{"type":"delete","room":"r","target":4}"#),
            Ok(ClientFrame::Delete {
                room: "r".into(),
                target: 4,
                reference: None,
            })
        );
        assert_eq!(
            decode(r#"{"type":"react","room":"r","target":4,"emoji":"👍🏽"}"#),
            Ok(ClientFrame::React {
                room: "r".into(),
                target: 4,
                emoji: "👍🏽".into(),
                on: true,
                reference: None,
            })
        );
        assert_eq!(
            decode(r#"{"type":"react","room":"r","target":4,"emoji":"x","on":false}"#),
            Ok(ClientFrame::React {
                room: "r".into(),
                target: 4,
                emoji: "x".into(),
                on: false,
                reference: None,
            })
        );
        assert_eq!(
            decode(r#"{"type":"typing","room":"r"}"#),
            Ok(ClientFrame::Typing {
                room: "r".into(),
                reference: None,
            })
        );
        assert_eq!(
            decode(r#"{"type":"read","room":"r","id":0}"#),
            Ok(ClientFrame::Read {
                room: "r".into(),
                id: 0,
                reference: None,
            })
        );
    }

    #[test]
    fn each_malformed_feature_field_gets_its_code() {
        for frame in [
            r#"{"type":"chat","room":"r","text":"t","reply_to":"3"}"#,
            r#"{"type":"chat","room":"r","text":"t","reply_to":0}"#,
            r#"{"type":"chat","room":"r","text":"t","key":""}"#,
            r#"{"type":"chat","room":"r","text":"t","key":7}"#,
            r#"{"type":"edit","room":"r","text":"t"}"#,
            r#"{"type":"edit","room":"r","target":1.5,"text":"t"}"#,
            r#"{"type":"delete","room":"r","target":-2}"#,
            r#"{"type":"react","room":"r","target":1}"#,
            r#"{"type":"react","room":"r","target":1,"emoji":""}"#,
            r#"{"type":"react","room":"r","target":1,"emoji":"a b"}"#,
            r#"{"type":"react","room":"r","target":1,"emoji":"123456789"}"#,
            r#"{"type":"react","room":"r","target":1,"emoji":"x","on":"yes"}"#,
            r#"{"type":"read","room":"r"}"#,
            r#"{"type":"read","room":"r","id":-1}"#,
        ] {
            assert_eq!(code_of(frame), ErrorCode::InvalidField, "{frame}");
        }
        let long_key = format!(
            r#"{{"type":"chat","room":"r","text":"t","key":"{}"}}"#,
            "k".repeat(65)
        );
        assert_eq!(code_of(&long_key), ErrorCode::InvalidField);
        assert_eq!(
            code_of(r#"{"type":"edit","room":"r","target":1,"text":" "}"#),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code_of(r#"{"type":"typing","room":"no room"}"#),
            ErrorCode::InvalidRoom
        );
    }

    #[test]
    fn each_malformed_frame_gets_its_code() {
        assert_eq!(code_of("not json"), ErrorCode::BadJson);
        assert_eq!(code_of("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code_of(r#"{"room":"r"}"#), ErrorCode::BadJson);
        assert_eq!(code_of(r#"{"type":5}"#), ErrorCode::BadJson);
        assert_eq!(code_of(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code_of(r#"{"type":"join"}"#), ErrorCode::InvalidRoom);
        assert_eq!(
            code_of(r#"{"type":"join","room":7}"#),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"a b"}"#),
            ErrorCode::InvalidRoom
        );
        let long_room = format!(r#"{{"type":"leave","room":"{}"}}"#, "r".repeat(65));
        assert_eq!(code_of(&long_room), ErrorCode::InvalidRoom);
        assert_eq!(
            code_of(r#"{"type":"chat","room":"r"}"#),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code_of(r#"{"type":"chat","room":"r","text":1}"#),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code_of(r#"{"type":"chat","room":"r","text":""}"#),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code_of("{\"type\":\"chat\",\"room\":\"r\",\"text\":\" \\u2003\\n\"}"),
            ErrorCode::InvalidText
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"r","since":-1}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"r","since":1.5}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"r","since":"1"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code_of(r#"{"type":"join","room":"r","ref":5}"#),
            ErrorCode::InvalidField
        );
        let long_ref = format!(r#"{{"type":"join","room":"r","ref":"{}"}}"#, "x".repeat(65));
        assert_eq!(code_of(&long_ref), ErrorCode::InvalidField);
    }

    #[test]
    fn errors_after_the_ref_echo_it() {
        let err =
            decode_client_frame(r#"{"type":"chat","room":"bad room","ref":"r1"}"#, 10).unwrap_err();
        assert_eq!(err.reference.as_deref(), Some("r1"));
        let err = decode_client_frame(r#"{"type":"nope","ref":"r2"}"#, 10).unwrap_err();
        assert_eq!(err.reference.as_deref(), Some("r2"));
    }

    #[test]
    fn text_length_counts_unicode_scalar_values() {
        let four_emoji = "😀".repeat(4);
        assert!(check_text(&four_emoji, 4).is_ok());
        assert!(check_text(&"😀".repeat(5), 4).is_err());
        assert!(check_text(&"a".repeat(4096), 4096).is_ok());
        assert!(check_text(&"a".repeat(4097), 4096).is_err());
    }

    #[test]
    fn names_follow_the_protocol_rules() {
        assert!(is_valid_room("General_chat-2"));
        assert!(!is_valid_room("dots.not.allowed"));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room("é"));
        assert!(is_valid_room(&"r".repeat(64)));
        assert!(is_valid_user("alice.b-c_9"));
        assert!(!is_valid_user(&"u".repeat(33)));
        assert!(!is_valid_user("al ice"));
    }

    #[test]
    fn ref_is_absent_rather_than_null() {
        let message = ChatMessage {
            id: 1,
            room: "r".into(),
            user: "u".into(),
            text: "t".into(),
            timestamp: format_timestamp(0),
            ..ChatMessage::default()
        };
        let plain = ServerFrame::chat(&message, None).encode();
        assert!(!plain.contains("ref"), "{plain}");
        let own = ServerFrame::chat(&message, Some("x")).encode();
        assert!(own.contains(r#""ref":"x""#), "{own}");
    }

    fn chat(id: MessageId) -> ChatMessage {
        ChatMessage {
            id,
            room: "r".into(),
            user: "alice".into(),
            text: "hello".into(),
            timestamp: format_timestamp(0),
            ..ChatMessage::default()
        }
    }

    fn change(id: MessageId, user: &str, kind: ChangeKind, target: MessageId) -> ChatMessage {
        ChatMessage {
            id,
            user: user.into(),
            kind,
            target: Some(target),
            text: String::new(),
            timestamp: format_timestamp(id),
            ..chat(id)
        }
    }

    #[test]
    fn changes_applied_in_order_give_the_current_state() {
        let mut message = chat(1);
        let mut edit = change(2, "alice", ChangeKind::Edit, 1);
        edit.text = "hello, world".into();
        let react = |id, user: &str, emoji: &str, on| ChatMessage {
            emoji: Some(emoji.into()),
            on,
            ..change(id, user, ChangeKind::Reaction, 1)
        };
        for c in [
            edit,
            react(3, "bob", "👍", true),
            react(4, "amy", "👍", true),
            react(5, "bob", "🎉", true),
            react(6, "bob", "🎉", false),
            react(7, "amy", "👍", true),
            react(8, "zed", "x", false),
            change(9, "alice", ChangeKind::Edit, 99),
        ] {
            message.apply(&c);
        }
        assert_eq!(message.text, "hello, world");
        assert_eq!(
            message.edited_at.as_deref(),
            Some(format_timestamp(2).as_str())
        );
        let expected: Reactions = [("👍".to_string(), vec!["amy".into(), "bob".into()])].into();
        assert_eq!(message.reactions, expected);
        let item = serde_json::to_value(&message).unwrap();
        assert_eq!(item["type"], "chat");
        assert_eq!(item["reactions"]["👍"], serde_json::json!(["amy", "bob"]));

        message.apply(&change(10, "alice", ChangeKind::Delete, 1));
        let item = serde_json::to_value(&message).unwrap();
        assert_eq!(item["deleted"], true);
        assert_eq!(item["text"], "");
        assert!(item.get("reactions").is_none() && item.get("edited_at").is_none());
        message.apply(&react(11, "bob", "👍", true));
        assert!(
            message.reactions.is_empty(),
            "a deleted chat takes no reactions"
        );
    }

    #[test]
    fn each_change_encodes_as_its_frame() {
        let plain = serde_json::to_value(chat(1)).unwrap();
        for absent in [
            "reply_to",
            "edited_at",
            "deleted",
            "reactions",
            "ref",
            "target",
        ] {
            assert!(plain.get(absent).is_none(), "{absent} in {plain}");
        }
        let mut edit = change(2, "alice", ChangeKind::Edit, 1);
        edit.text = "new".into();
        let frame: Value =
            serde_json::from_str(&ServerFrame::change(&edit, Some("e")).encode()).unwrap();
        assert_eq!(frame["type"], "edit");
        assert_eq!(frame["target"], 1);
        assert_eq!(frame["text"], "new");
        assert_eq!(frame["ref"], "e");
        let delete = serde_json::to_value(change(3, "alice", ChangeKind::Delete, 1)).unwrap();
        assert_eq!(delete["type"], "delete");
        assert!(delete.get("text").is_none());
        let reaction = ChatMessage {
            emoji: Some("🎉".into()),
            on: false,
            ..change(4, "bob", ChangeKind::Reaction, 1)
        };
        let reaction = serde_json::to_value(reaction).unwrap();
        assert_eq!(reaction["emoji"], "🎉");
        assert_eq!(reaction["on"], false);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(
            format_timestamp(1_795_635_024_123),
            "2026-11-25T19:30:24.123Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,80}".prop_map(Value::String),
            prop_oneof![Just("join"), Just("leave"), Just("chat"), Just("type")]
                .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("room".to_string()),
                        Just("text".to_string()),
                        Just("since".to_string()),
                        Just("ref".to_string()),
                        ".{0,8}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn no_byte_string_panics_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_client_frame(&text, 4096);
        }

        #[test]
        fn no_json_value_panics_the_decoder(value in any_json(), max in 0usize..10) {
            let result = decode_client_frame(&value.to_string(), max);
            // A frame that decodes must satisfy the protocol's rules.
            if let Ok(ClientFrame::Chat { room, text, .. }) = &result {
                prop_assert!(is_valid_room(room));
                prop_assert!(check_text(text, max).is_ok());
            }
            if !value.is_object() {
                prop_assert_eq!(result.unwrap_err().code, ErrorCode::BadJson);
            }
        }

        #[test]
        fn any_valid_chat_round_trips(room in "[A-Za-z0-9_-]{1,64}", text in "\\PC{0,50}[a-z]", r in "[a-z]{0,64}") {
            let frame = serde_json::json!({"type": "chat", "room": room, "text": text, "ref": r});
            let decoded = decode_client_frame(&frame.to_string(), 4096);
            prop_assert_eq!(decoded, Ok(ClientFrame::Chat { room, text, reference: Some(r), reply_to: None, key: None }));
        }
    }
}
