//! `chatterbox token`: mints a connection token with the server's secret.

use std::process::ExitCode;
use std::time::Duration;

use crate::auth;
use crate::config::parse_duration;

/// `--ttl`: a duration such as 30s, 15m, 1h or 7d, not zero.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 15m, 1h or 7d"))
}

/// Prints a token on stdout, and nothing else there, so scripts can
/// capture it.
pub fn token(user: &str, ttl: Duration) -> ExitCode {
    let secret = match std::env::var("AUTH_SECRET") {
        Ok(secret) if !secret.trim().is_empty() => secret,
        _ => {
            eprintln!(
                "error: AUTH_SECRET is not set; the token must be signed with the server's secret"
            );
            return ExitCode::FAILURE;
        }
    };
    match auth::mint(&secret, &user.to_string(), ttl) {
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
