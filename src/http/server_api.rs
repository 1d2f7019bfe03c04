//! The server API: what a product's backend does to the chat, authorised by
//! `API_KEY` (`Authorization: Bearer API_KEY`). Without `API_KEY` these
//! endpoints do not exist (404); with it, a request without the key is 401
//! before anything else is looked at. Bodies are read here, not by
//! actix-web's JSON extractor, so every bad body is a 400 with a JSON error
//! naming the field, whatever the `Content-Type`.
//!
//! A published chat goes through its room exactly as a member's does (see
//! [`Publish`]): same text rules, same idempotency `key`, same order and
//! group commit, same backlog bound.

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::actors::messages::server::{DisconnectUser, JoinError, Publish, PublishError};
use crate::actors::room::delivery::Answered;
use crate::config::Config;
use crate::history::{NewChange, Refusal, Stored};
use crate::protocol::{
    check_text, is_valid_room, is_valid_user, now_millis, ModAction, MAX_KEY_CHARS,
    MAX_REASON_CHARS,
};

/// Checks the request's key: 404 when the API is off, 401 without the
/// right key. The comparison takes the same time wherever the keys differ.
fn authorize(req: &HttpRequest, config: &Config) -> Result<(), ApiError> {
    let Some(key) = &config.api_key else {
        return Err(ApiError::NotFound(format!(
            "no such endpoint: {} {} (the server API is off: API_KEY is not set)",
            req.method(),
            req.path()
        )));
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        None => Err(ApiError::Unauthorized(
            "the server API needs the header Authorization: Bearer API_KEY".into(),
        )),
        Some(token) if bool::from(token.as_bytes().ct_eq(key.expose().as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("wrong API key".into())),
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        message: message.into(),
    }
}

/// Reads the body as a JSON object, at most `MAX_FRAME_BYTES` long (what a
/// WebSocket frame may be).
async fn json_object(
    mut payload: web::Payload,
    config: &Config,
) -> Result<Map<String, Value>, ApiError> {
    let limit = config.max_frame_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "the body is longer than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid("body", "the body must be a JSON object")),
        Err(e) => Err(invalid("body", format!("the body is not valid JSON: {e}"))),
    }
}

const USER_RULE: &str = "1 to 32 characters from A-Z a-z 0-9 _ - .";

/// The body's `user`: required, a valid user name.
fn take_user(object: &mut Map<String, Value>) -> Result<String, ApiError> {
    match object.remove("user") {
        None | Some(Value::Null) => Err(invalid(
            "user",
            format!("\"user\" is required: a user name of {USER_RULE}"),
        )),
        Some(Value::String(user)) if is_valid_user(&user) => Ok(user),
        Some(_) => Err(invalid(
            "user",
            format!("\"user\" must be a user name of {USER_RULE}"),
        )),
    }
}

/// The room in the path.
fn path_room(name: String) -> Result<String, ApiError> {
    if is_valid_room(&name) {
        Ok(name)
    } else {
        Err(invalid(
            "room",
            "room names are 1 to 64 characters from A-Z a-z 0-9 _ -",
        ))
    }
}

/// A publish body's chat, by the rules of a `chat` frame.
fn chat_change(
    object: &mut Map<String, Value>,
    max_text_chars: usize,
) -> Result<NewChange, ApiError> {
    let text = match object.remove("text") {
        Some(Value::String(text)) => text,
        None | Some(Value::Null) => return Err(invalid("text", "\"text\" is required")),
        Some(_) => return Err(invalid("text", "\"text\" must be a string")),
    };
    check_text(&text, max_text_chars).map_err(|why| invalid("text", why))?;
    let key = match object.remove("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) if !key.is_empty() && key.chars().count() <= MAX_KEY_CHARS => {
            Some(key)
        }
        Some(_) => {
            return Err(invalid(
                "key",
                format!("\"key\" must be a string of 1 to {MAX_KEY_CHARS} characters"),
            ))
        }
    };
    let reply_to = match object.remove("reply_to") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(id) if id > 0 => Some(id),
            _ => {
                return Err(invalid(
                    "reply_to",
                    "\"reply_to\" must be a message id (a positive integer)",
                ))
            }
        },
    };
    Ok(NewChange::Chat {
        text,
        reply_to,
        key,
    })
}

/// Hands `change` to its room as `user` (the backlog bound first, as for a
/// member's change) and waits until the room has delivered it.
async fn act(
    state: &AppState,
    room: String,
    user: String,
    change: NewChange,
) -> Result<Answered, ApiError> {
    let admitted = state
        .backlog
        .admit(change.text().len())
        .map_err(|overloaded| ApiError::Unavailable(format!("overloaded: {overloaded}")))?;
    state.metrics.messages_received.inc();
    let answer = state
        .chat
        .send(Publish {
            room,
            user,
            change,
            admitted,
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("service unavailable: {e}")))?;
    answer.map_err(|e| match e {
        PublishError::Room(JoinError::Forbidden(why)) => ApiError::Forbidden(why),
        e => ApiError::Unavailable(e.to_string()),
    })
}

/// `POST /api/rooms/{name}/messages`: publish a chat as `user`. 201 with
/// the stored chat; 200 with the original for a repeated `key`.
pub(crate) async fn publish(
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let room = path_room(name.into_inner())?;
    let mut object = json_object(payload, &state.config).await?;
    let user = take_user(&mut object)?;
    let change = chat_change(&mut object, state.config.max_message_len)?;
    match act(&state, room, user, change).await?.stored {
        Stored::New(message) => Ok(HttpResponse::Created().json(message)),
        Stored::Reply(message) => Ok(HttpResponse::Ok().json(message)),
        // A bad body, as the WebSocket's `not_found` is an error about the frame.
        Stored::Refused(Refusal::NotFound) => Err(invalid(
            "reply_to",
            "\"reply_to\" is not a chat of this room (or it was deleted)",
        )),
        Stored::Refused(Refusal::Forbidden) => {
            Err(ApiError::Forbidden("the message was refused".into()))
        }
    }
}

/// `DELETE /api/rooms/{name}/messages/{id}`: a moderator's delete, by
/// `api`. 200 `{"deleted": id}`; 404 when the room has no such chat.
pub(crate) async fn delete_message(
    path: web::Path<(String, String)>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let (name, id) = path.into_inner();
    let room = path_room(name)?;
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    let target = match id.parse::<i64>() {
        Ok(id) if digits && id > 0 => id,
        _ => return Err(invalid("id", "the message id must be a positive integer")),
    };
    let change = NewChange::Delete {
        target,
        as_moderator: true,
    };
    match act(&state, room.clone(), API_USER.into(), change)
        .await?
        .stored
    {
        Stored::New(_) => Ok(HttpResponse::Ok().json(json!({ "deleted": target }))),
        Stored::Reply(_) | Stored::Refused(_) => Err(ApiError::NotFound(format!(
            "room {room} has no chat {target} (or it was deleted)"
        ))),
    }
}

/// Who the server API's moderation is `by`.
const API_USER: &str = "api";

/// A moderation body's `seconds`: absent, or 1 to 2^31.
fn take_seconds(object: &mut Map<String, Value>) -> Result<Option<i64>, ApiError> {
    match object.remove("seconds") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s) if (1..=1 << 31).contains(&s) => Ok(Some(s as i64)),
            _ => Err(invalid("seconds", SECONDS_RULE)),
        },
        Some(_) => Err(invalid("seconds", SECONDS_RULE)),
    }
}

const SECONDS_RULE: &str = "\"seconds\" must be an integer from 1 to 2^31";

/// A moderation body's `reason`: absent, or at most `MAX_REASON_CHARS`.
fn take_reason(object: &mut Map<String, Value>) -> Result<Option<String>, ApiError> {
    match object.remove("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) if r.chars().count() <= MAX_REASON_CHARS => Ok(Some(r)),
        Some(_) => Err(invalid(
            "reason",
            format!("\"reason\" must be a string of at most {MAX_REASON_CHARS} characters"),
        )),
    }
}

/// `POST /api/rooms/{name}/kick`: the user's connections leave the room.
/// 200 `{"connections": n}`, counting this node's.
pub(crate) async fn kick(
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let room = path_room(name.into_inner())?;
    let mut object = json_object(payload, &state.config).await?;
    let subject = take_user(&mut object)?;
    let reason = take_reason(&mut object)?;
    let change = NewChange::Moderate {
        action: ModAction::Kick,
        subject,
        until: None,
        reason,
    };
    let answered = act(&state, room, API_USER.into(), change).await?;
    Ok(HttpResponse::Ok().json(json!({ "connections": answered.connections })))
}

/// `POST /api/rooms/{name}/bans`: ban (and kick) the user, until unbanned
/// or for `seconds`. 200 `{"user": NAME, "until": RFC 3339 or null}`.
pub(crate) async fn ban(
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let room = path_room(name.into_inner())?;
    let mut object = json_object(payload, &state.config).await?;
    let subject = take_user(&mut object)?;
    let seconds = take_seconds(&mut object)?;
    let reason = take_reason(&mut object)?;
    let change = NewChange::Moderate {
        action: ModAction::Ban,
        subject: subject.clone(),
        until: seconds.map(|s| now_millis() + s * 1000),
        reason,
    };
    let until = match act(&state, room, API_USER.into(), change).await?.stored {
        Stored::New(message) => message.until,
        Stored::Reply(_) | Stored::Refused(_) => {
            return Err(ApiError::Unavailable("the ban was not stored".into()))
        }
    };
    Ok(HttpResponse::Ok().json(json!({ "user": subject, "until": until })))
}

/// `DELETE /api/rooms/{name}/bans/{user}`: lift the user's ban (and mute).
/// 200 `{"user": NAME}`; 404 when the user is not banned there.
pub(crate) async fn unban(
    path: web::Path<(String, String)>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let (name, subject) = path.into_inner();
    let room = path_room(name)?;
    let subject = path_user(subject)?;
    let change = NewChange::Moderate {
        action: ModAction::Unban,
        subject: subject.clone(),
        until: None,
        reason: None,
    };
    match act(&state, room.clone(), API_USER.into(), change)
        .await?
        .stored
    {
        Stored::New(_) => Ok(HttpResponse::Ok().json(json!({ "user": subject }))),
        Stored::Reply(_) | Stored::Refused(_) => Err(ApiError::NotFound(format!(
            "{subject} is not banned in room {room}"
        ))),
    }
}

/// A user name in the path.
fn path_user(user: String) -> Result<String, ApiError> {
    if is_valid_user(&user) {
        Ok(user)
    } else {
        Err(invalid("user", format!("user names are {USER_RULE}")))
    }
}

/// `POST /api/users/{name}/disconnect`: closes every connection of the user
/// on this node with 4000. 200 `{"connections": n}`.
pub(crate) async fn disconnect(
    name: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state.config)?;
    let user = path_user(name.into_inner())?;
    let closed = state
        .chat
        .send(DisconnectUser { user })
        .await
        .map_err(|e| ApiError::Unavailable(format!("service unavailable: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({ "connections": closed })))
}
