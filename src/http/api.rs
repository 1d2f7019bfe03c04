//! The REST API and the health check. Reads go to the history reader
//! threads; what is live (active rooms, their users) comes from the
//! [`ChatServer`](crate::actors::server::ChatServer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::AppState;
use crate::actors::messages::server::{ActiveRoomUsers, ListRooms, Stats};
use crate::direct;
use crate::history::{Cursor, StoreError};
use crate::protocol::{is_valid_room, MessageId, RoomName, UserName};

/// Page size of `/messages` when `limit` is absent, and its largest value.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 200;

/// How long `/health` waits for the database before calling it down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

fn unavailable(what: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("service unavailable: {what}"))
}

/// A failed read of the store: the detail (SQLite's text, the file's path)
/// goes to the log, the client gets the plain reason, as `/health` does.
fn store_unavailable(e: StoreError) -> ApiError {
    log::error!("REST read failed: {e}");
    unavailable(e.reason())
}

/// `GET /api/rooms`: in cluster mode, every room with users on any node.
pub(crate) async fn list_rooms(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let local = state.chat.send(ListRooms).await.map_err(unavailable)?;
    // Each user once per room, whichever nodes they are on.
    let mut all: BTreeMap<RoomName, BTreeSet<UserName>> = local
        .into_iter()
        .map(|room| (room.name, room.users.into_iter().collect()))
        .collect();
    if let Some(cluster) = &state.cluster {
        for (room, users) in cluster.rooms_elsewhere().await.map_err(store_unavailable)? {
            all.entry(room).or_default().extend(users);
        }
    }
    let rooms: Vec<_> = all
        .into_iter()
        // Direct messages are nobody else's business.
        .filter(|(name, _)| !direct::is_direct(name))
        .map(|(name, users)| json!({ "name": name, "users": users.len() }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

/// `GET /api/rooms/{name}`
pub(crate) async fn room_details(
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room = public_room(name.into_inner())?;
    let mut users = state
        .chat
        .send(ActiveRoomUsers { room: room.clone() })
        .await
        .map_err(unavailable)?;
    if let Some(cluster) = &state.cluster {
        let elsewhere = cluster
            .users_elsewhere(&room)
            .await
            .map_err(store_unavailable)?;
        if !elsewhere.is_empty() {
            let all: BTreeSet<UserName> = users
                .unwrap_or_default()
                .into_iter()
                .chain(elsewhere)
                .collect();
            users = Some(all.into_iter().collect());
        }
    }
    let count = state
        .history
        .count(&room)
        .await
        .map_err(store_unavailable)?;
    if users.is_none() && count == 0 {
        return Err(ApiError::NotFound(format!(
            "room {room} is not active and has no stored messages"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({
        "name": room,
        "active": users.is_some(),
        "users": users.unwrap_or_default(),
        "messages": count,
    })))
}

/// `GET /api/rooms/{name}/messages?before=ID&after=ID&limit=N`
pub(crate) async fn room_messages(
    name: web::Path<String>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room = public_room(name.into_inner())?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let before = id_param(&query, "before")?;
    let after = id_param(&query, "after")?;
    let limit = match id_param(&query, "limit")? {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "limit must be from 1 to {MAX_PAGE}"
            )))
        }
    };
    let cursor = match (before, after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give before or after, not both".into(),
            ))
        }
        (before, None) => Cursor::Before(before),
        (None, Some(after)) => Cursor::After(after),
    };
    let (messages, more) = state
        .history
        .page(&room, cursor, limit)
        .await
        .map_err(store_unavailable)?;
    Ok(HttpResponse::Ok().json(json!({ "room": room, "messages": messages, "more": more })))
}

/// `GET /health`: 200 when the server's actors answer and the database
/// takes writes (the last commit attempt succeeded, or a check write made
/// now does), with the server's `limits`. 503 with a plain `reason`
/// otherwise.
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    let mut db = state.history.write_health(HEALTH_TIMEOUT).await;
    let stats = state.chat.send(Stats).await;
    let (node, database) = match &state.cluster {
        Some(cluster) => {
            if db.is_ok() && !cluster.listening() {
                db = Err("the connection that hears the other nodes is down".into());
            }
            (Some(cluster.node().to_string()), "postgresql")
        }
        None => (None, "sqlite"),
    };
    match (db, stats) {
        (Ok(()), Ok(stats)) => HttpResponse::Ok().json(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "database": database,
            "node": node,
            "connections": stats.connections,
            "rooms": stats.rooms,
            // Tells the browser client whether to ask for a token.
            "auth": if state.config.auth_secret.is_some() { "token" } else { "none" },
            // Where the page gets a fresh token before its own expires
            // (TOKEN_REFRESH_URL); null: it asks its user to sign in again.
            "token_refresh_url": state.config.auth_secret.as_ref().and(state.config.token_refresh_url.as_deref()),
            // Tells clients the configured limits, so the page checks text
            // against the server's `MAX_MESSAGE_LEN` instead of a constant.
            "limits": {
                "max_message_len": state.config.max_message_len,
                "max_rooms_per_connection": state.config.max_rooms_per_connection,
                "max_history": state.config.max_history,
            },
        })),
        (db, _) => {
            let reason = db
                .err()
                .unwrap_or_else(|| "the chat server is unavailable".into());
            log::warn!("health check failed: {reason}");
            // `error` is the key of protocol 1.0, kept beside 1.1's `reason`.
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable",
                "database": database,
                "node": node,
                "reason": reason,
                "error": reason,
            }))
        }
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// Any other path under `/api`.
pub(crate) async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound(format!("no such endpoint: {} {}", req.method(), req.path()))
        .error_response()
}

fn valid_room(name: String) -> Result<String, ApiError> {
    if is_valid_room(&name) {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(
            "room names are 1 to 64 characters from A-Z a-z 0-9 _ -".into(),
        ))
    }
}

/// A valid room name that the REST API serves: a direct-message room
/// answers 404 as if it did not exist (REST is not authenticated, and even
/// "it exists" would tell who talks to whom).
fn public_room(name: String) -> Result<String, ApiError> {
    let room = valid_room(name)?;
    if direct::is_direct(&room) {
        return Err(ApiError::NotFound(format!(
            "room {room} is not active and has no stored messages"
        )));
    }
    Ok(room)
}

/// A query parameter that must be a non-negative integer in ASCII digits,
/// at most 2^63-1.
fn id_param(query: &HashMap<String, String>, name: &str) -> Result<Option<MessageId>, ApiError> {
    let Some(value) = query.get(name) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::BadRequest(format!(
            "{name} must be a non-negative integer of ASCII digits, at most 2^63-1"
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    value.parse::<MessageId>().map(Some).map_err(|_| bad())
}
