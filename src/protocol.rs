//! The wire format of `../shared/PROTOCOL.md` (mirrored in `docs/PROTOCOL.md`):
//! client frames decoded and validated into [`ClientFrame`], server frames
//! encoded from [`ServerFrame`], and the name rules shared with the HTTP API.
//! Nothing here touches actors or sockets, so the load tester and the tests
//! reuse it as is.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A room's name: 1 to 64 characters from `A-Z a-z 0-9 _ -`.
pub type RoomName = String;
/// A user's name: 1 to 32 characters from `A-Z a-z 0-9 _ - .`.
pub type UserName = String;
/// A stored chat message's id: the row id in SQLite, so it survives restarts.
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
/// docs/PROTOCOL.md) for a chat the database refused, and `overloaded`
/// (version 1.1) for a chat refused because too much waits to be stored.
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
}

impl ErrorCode {
    /// Every code, for listing them (metrics start each at zero). The test
    /// `all_lists_every_code` stops compiling when a code is added here
    /// and not there.
    pub(crate) const ALL: [ErrorCode; 12] = [
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
    Leave {
        room: RoomName,
        reference: Option<String>,
    },
    Chat {
        room: RoomName,
        text: String,
        reference: Option<String>,
    },
}

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
            let room = take_room(&mut object, &reference)?;
            let since = match object.get("since") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(id) if id >= 0 => Some(id),
                    _ => return Err(bad_since(reference)),
                },
                Some(_) => return Err(bad_since(reference)),
            };
            Ok(ClientFrame::Join {
                room,
                since,
                reference,
            })
        }
        "leave" => Ok(ClientFrame::Leave {
            room: take_room(&mut object, &reference)?,
            reference,
        }),
        "chat" => {
            let room = take_room(&mut object, &reference)?;
            let text = match object.remove("text") {
                Some(Value::String(text)) => text,
                _ => {
                    return Err(DecodeError::new(
                        ErrorCode::InvalidText,
                        "\"text\" must be a string",
                        reference,
                    ))
                }
            };
            if let Err(why) = check_text(&text, max_text_chars) {
                return Err(DecodeError::new(ErrorCode::InvalidText, why, reference));
            }
            Ok(ClientFrame::Chat {
                room,
                text,
                reference,
            })
        }
        other => Err(DecodeError::new(
            ErrorCode::UnknownType,
            format!("unknown type {other:?}; expected join, leave or chat"),
            reference,
        )),
    }
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

/// One stored chat message as clients see it in `history` and over REST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: MessageId,
    pub room: RoomName,
    pub user: UserName,
    pub text: String,
    /// RFC 3339, UTC, milliseconds; see [`format_timestamp`].
    pub timestamp: String,
    /// Its place in its room, 1, 2, 3, ... with no gap: set in cluster
    /// mode only, where it lets a node see that it missed a message
    /// another node stored. Never sent to clients.
    #[serde(skip)]
    pub seq: Option<i64>,
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
    },
    Presence {
        room: &'a str,
        users: Vec<&'a str>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text, ready to send.
    pub fn encode(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and
        // there are no non-finite floats.
        serde_json::to_string(self).expect("server frames always serialize")
    }

    /// The `chat` frame for a stored message, with the sender's `ref` if any.
    pub fn chat<'a>(message: &'a ChatMessage, reference: Option<&'a str>) -> ServerFrame<'a> {
        ServerFrame::Chat {
            id: message.id,
            room: &message.room,
            user: &message.user,
            text: &message.text,
            timestamp: &message.timestamp,
            reference,
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
                reference: None
            })
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
            seq: None,
        };
        let plain = ServerFrame::chat(&message, None).encode();
        assert!(!plain.contains("ref"), "{plain}");
        let own = ServerFrame::chat(&message, Some("x")).encode();
        assert!(own.contains(r#""ref":"x""#), "{own}");
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
            prop_assert_eq!(decoded, Ok(ClientFrame::Chat { room, text, reference: Some(r) }));
        }
    }
}
