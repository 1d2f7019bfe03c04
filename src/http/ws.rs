//! `GET /ws?user=NAME` (or `?token=JWT` when `AUTH_SECRET` is set): checks
//! who is asking, where from and whether there is room for them, then hands
//! the connection to a [`ChatSession`]. Every refusal is a JSON error,
//! counted in the metrics and logged (never with the token).

use std::collections::HashMap;

use actix_http::ws::Codec;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::error::ApiError;
use super::AppState;
use crate::actors::session::ChatSession;
use crate::auth;
use crate::caps::CapReached;
use crate::metrics::Refusal;
use crate::protocol::{is_valid_user, UserName};
use crate::watchdog::{ConnectionSocket, Watched};

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let refuse = |refusal: Refusal, error: ApiError| {
        state.metrics.refused(refusal);
        let peer = req
            .peer_addr()
            .map_or_else(|| "unknown peer".to_string(), |a| a.ip().to_string());
        log::info!("refused /ws from {peer}: {error}");
        error
    };

    let query =
        web::Query::<HashMap<String, String>>::from_query(req.query_string()).map_err(|e| {
            refuse(
                Refusal::BadRequest,
                ApiError::BadRequest(format!("bad query string: {e}")),
            )
        })?;
    let user = identify(
        &query,
        state.config.auth_secret.as_ref().map(|s| s.expose()),
    )
    .map_err(|(refusal, error)| refuse(refusal, error))?;
    check_origin(&req, &state.config.allowed_origins)
        .map_err(|error| refuse(Refusal::Origin, error))?;
    let mut response = ws::handshake(&req).map_err(|e| {
        refuse(
            Refusal::BadRequest,
            ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")),
        )
    })?;
    // Without a peer address (not over TCP) the per-address cap cannot
    // apply; the unspecified address stands in for it.
    let ip = req
        .peer_addr()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
    let slot = state.caps.acquire(ip).map_err(|cap| {
        let refusal = match cap {
            CapReached::Total(_) => Refusal::MaxConnections,
            CapReached::PerIp(_) => Refusal::MaxConnectionsPerIp,
        };
        refuse(refusal, ApiError::Unavailable(cap.to_string()))
    })?;

    let session = ChatSession::new(
        user,
        state.chat.clone(),
        state.config.clone(),
        state.metrics.clone(),
        Some(slot),
    );
    // As `WsResponseBuilder::start` does, with the session's frames passed
    // through `Watched` and the connection handed to the watchdog: once the
    // socket stops taking data nothing inside the session runs any more.
    let outbox = session.outbox();
    let socket = req.conn_data::<ConnectionSocket>();
    state.watchdog.watch(socket, outbox.clone());
    let codec = Codec::new().max_size(state.config.max_frame_bytes);
    let frames = ws::WebsocketContext::with_codec(session, stream, codec);
    Ok(response.streaming(Watched::new(frames, outbox, socket)))
}

/// The user this connection speaks as: from a verified token when a secret
/// is configured, else the `user` parameter as given (development mode).
fn identify(
    query: &HashMap<String, String>,
    secret: Option<&str>,
) -> Result<UserName, (Refusal, ApiError)> {
    let user = query.get("user");
    if let Some(user) = user {
        if !is_valid_user(user) {
            return Err((
                Refusal::BadRequest,
                ApiError::BadRequest(
                    "user must be 1 to 32 characters from A-Z a-z 0-9 _ - .".into(),
                ),
            ));
        }
    }
    let Some(secret) = secret else {
        return user.cloned().ok_or_else(|| {
            (
                Refusal::BadRequest,
                ApiError::BadRequest("missing query parameter user".into()),
            )
        });
    };
    let token = query.get("token").ok_or((
        Refusal::Unauthorized,
        ApiError::Unauthorized(auth::AuthError::Missing.to_string()),
    ))?;
    let claims = auth::verify(secret, token)
        .map_err(|e| (Refusal::Unauthorized, ApiError::Unauthorized(e.to_string())))?;
    match user {
        Some(user) if *user != claims.sub => Err((
            Refusal::UserMismatch,
            ApiError::Forbidden(format!(
                "user {user} does not match the token's user {}",
                claims.sub
            )),
        )),
        _ => Ok(claims.sub),
    }
}

/// With an allowed-origins list, a browser (which always sends `Origin`)
/// must come from one of them; requests without `Origin` are not from a
/// browser page and pass.
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), ApiError> {
    if allowed.is_empty() {
        return Ok(());
    }
    match req.headers().get(header::ORIGIN) {
        None => Ok(()),
        Some(origin) if allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) => Ok(()),
        Some(origin) => Err(ApiError::Forbidden(format!(
            "origin {} is not allowed",
            String::from_utf8_lossy(origin.as_bytes())
        ))),
    }
}
