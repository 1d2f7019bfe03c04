//! `GET /ws?user=NAME` (or `?token=JWT`, or `Authorization: Bearer JWT`,
//! when `AUTH_SECRET` is set): checks
//! who is asking, where from and whether there is room for them, then hands
//! the connection to a [`ChatSession`]. Every refusal is a JSON error,
//! counted in the metrics and logged (never with the token).

use std::collections::HashMap;

use actix_http::ws::Codec;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::error::ApiError;
use super::AppState;
use crate::actors::session::{ChatSession, Identity};
use crate::auth;
use crate::caps::CapReached;
use crate::config::Config;
use crate::metrics::Refusal;
use crate::permissions::Grants;
use crate::protocol::is_valid_user;
use crate::watchdog::{ConnectionSocket, Watched};

pub(crate) async fn upgrade(
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
    let identity = identify(&query, req.headers(), &state.config)
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
        identity,
        state.chat.clone(),
        state.config.clone(),
        state.metrics.clone(),
        state.backlog.clone(),
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

/// Who this connection speaks as and what it may do: from a verified token
/// when a secret is configured, else the `user` parameter as given
/// (development mode, with [`Grants::unverified`]).
/// The token comes in `?token=` (browsers cannot set headers on a
/// WebSocket) or an `Authorization: Bearer` header (other clients, which
/// keep it out of URLs and access logs); given both ways, the two must be
/// the same token.
fn identify(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    config: &Config,
) -> Result<Identity, (Refusal, ApiError)> {
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
    let Some(secret) = config.auth_secret.as_ref().map(|s| s.expose()) else {
        let user = user.cloned().ok_or_else(|| {
            (
                Refusal::BadRequest,
                ApiError::BadRequest("missing query parameter user".into()),
            )
        })?;
        return Ok(Identity {
            user,
            grants: Grants::unverified(),
            expires: None,
        });
    };
    let unauthorized = |why: String| (Refusal::Unauthorized, ApiError::Unauthorized(why));
    let token = match (query.get("token"), bearer(headers).map_err(unauthorized)?) {
        (Some(a), Some(b)) if a != b => {
            return Err((
                Refusal::BadRequest,
                ApiError::BadRequest(
                    "two different tokens: token= and the Authorization header must be the \
                     same token (or give just one)"
                        .into(),
                ),
            ))
        }
        (Some(token), _) => token.as_str(),
        (None, Some(token)) => token,
        (None, None) => return Err(unauthorized(auth::AuthError::Missing.to_string())),
    };
    let claims = auth::verify(secret, token, config.max_token_lifetime)
        .map_err(|e| unauthorized(e.to_string()))?;
    match user {
        Some(user) if *user != claims.sub => Err((
            Refusal::UserMismatch,
            ApiError::Forbidden(format!(
                "user {user} does not match the token's user {}",
                claims.sub
            )),
        )),
        _ => Ok(Identity {
            grants: claims.grants(),
            expires: Some(claims.exp),
            user: claims.sub,
        }),
    }
}

/// The token of an `Authorization: Bearer` header, if there is one. Any
/// other scheme is refused rather than ignored: the client meant to
/// authenticate and would otherwise get a puzzling "token required".
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err("the Authorization header must be \"Bearer JWT\"".into()),
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
