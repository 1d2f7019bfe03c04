//! `chatterbox token`: mints a connection token with the server's secret.

use std::process::ExitCode;
use std::time::Duration;

use crate::auth;
use crate::config::{format_duration, parse_duration, Config};

/// `--ttl`: a duration such as 30s, 15m, 1h or 7d, not zero.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 15m, 1h or 7d"))
}

/// Prints a token on stdout, and nothing else there, so scripts can
/// capture it. Read through [`Config`], so AUTH_SECRET and
/// MAX_TOKEN_LIFETIME mean what they mean to the server: a token the server
/// would refuse is not printed.
pub fn token(user: &str, ttl: Duration) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(secret) = config.auth_secret else {
        eprintln!(
            "error: AUTH_SECRET is not set; the token must be signed with the server's secret"
        );
        return ExitCode::FAILURE;
    };
    if ttl > config.max_token_lifetime {
        eprintln!(
            "error: --ttl {} is longer than MAX_TOKEN_LIFETIME ({}), so the server would refuse \
             the token; use a shorter --ttl or raise MAX_TOKEN_LIFETIME (for the server too)",
            format_duration(ttl),
            format_duration(config.max_token_lifetime)
        );
        return ExitCode::FAILURE;
    }
    match auth::mint(secret.expose(), &user.to_string(), ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(auth::AuthError::BadSubject) => {
            eprintln!("error: --user must be 1 to 32 characters from A-Z a-z 0-9 _ - .");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
