//! `GET /api/dms`: the direct-message rooms of the user whose token the
//! request carries (`Authorization: Bearer JWT`, checked as the WebSocket's
//! upgrade checks it), so a page learns at sign-in of the rooms the other
//! user opened. Only ever the caller's own rooms; without `AUTH_SECRET`
//! names are not verified and there are no direct messages: 404.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::ws::bearer;
use super::AppState;
use crate::auth;
use crate::history::StoreError;

/// The most rooms one answer lists: the most recently active first.
pub(crate) const MAX_LISTED: usize = 200;

/// `GET /api/dms`
pub(crate) async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.config.auth_secret.as_ref().map(|s| s.expose()) else {
        return Err(ApiError::NotFound(
            "no such endpoint: GET /api/dms (direct messages need AUTH_SECRET)".into(),
        ));
    };
    let token = bearer(req.headers())
        .map_err(ApiError::Unauthorized)?
        .ok_or_else(|| {
            ApiError::Unauthorized("GET /api/dms needs the header Authorization: Bearer JWT".into())
        })?;
    let claims = auth::verify(secret, token, state.config.max_token_lifetime)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let grants = claims.grants();
    let rooms = state
        .history
        .direct_rooms(&claims.sub, MAX_LISTED)
        .await
        .map_err(|e: StoreError| {
            log::error!("GET /api/dms: {e}");
            ApiError::Unavailable(format!("service unavailable: {}", e.reason()))
        })?;
    // A token whose `rooms` keep it out of a room does not see it either.
    let rooms: Vec<_> = rooms
        .into_iter()
        .filter(|r| grants.may_join(&r.room))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}
