//! `GET /ws?user=NAME`: checks the request and hands the connection to a
//! [`ChatSession`].

use std::collections::HashMap;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::error::ApiError;
use super::AppState;
use crate::actors::session::ChatSession;
use crate::protocol::is_valid_user;

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let user = match query.get("user") {
        Some(user) if is_valid_user(user) => user.clone(),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "user must be 1 to 32 characters from A-Z a-z 0-9 _ - .".into(),
            ))
        }
        None => return Err(ApiError::BadRequest("missing query parameter user".into())),
    };
    check_origin(&req, &state.config.allowed_origins)?;
    ws::handshake(&req)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket upgrade: {e}")))?;

    let session = ChatSession::new(user, state.chat.clone(), state.config.clone());
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(state.config.max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
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
