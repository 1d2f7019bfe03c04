//! The HTTP API's errors: every refusal is a status and a JSON body
//! `{"error": "..."}`, mapped in one place.

use actix_web::http::header::WWW_AUTHENTICATE;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A bad field of a request body (or of its path): 400 naming it.
    #[error("{message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidField { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((WWW_AUTHENTICATE, "Bearer"));
        }
        match self {
            ApiError::InvalidField { field, .. } => {
                response.json(serde_json::json!({ "error": self.to_string(), "field": field }))
            }
            _ => response.json(serde_json::json!({ "error": self.to_string() })),
        }
    }
}
