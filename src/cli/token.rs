//! `chatterbox token`: mints a connection token with the server's secret.

use std::process::ExitCode;
use std::time::Duration;

use crate::auth::{self, Extra};
use crate::config::{format_duration, parse_duration, Config};
use crate::permissions::RoomPattern;

/// The room patterns of `--mod-rooms` or `--rooms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(pub Vec<RoomPattern>);

/// `--mod-rooms`, `--rooms`: comma-separated room patterns, at least one
/// (an empty `--rooms` would allow no room at all, which is a typo more
/// often than a wish).
pub fn parse_patterns(s: &str) -> Result<Patterns, String> {
    let patterns = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| RoomPattern::try_from(p.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if patterns.is_empty() {
        return Err("expected room patterns such as general,team-* (comma-separated)".into());
    }
    Ok(Patterns(patterns))
}

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
/// `extra` carries the control-plane claims (`mod`, `rooms`).
pub fn token(user: &str, ttl: Duration, extra: Extra) -> ExitCode {
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
    match auth::mint_with(secret.expose(), &user.to_string(), ttl, extra) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_comma_separated_and_checked() {
        let Patterns(patterns) = parse_patterns("general, team-*").unwrap();
        assert_eq!(patterns.len(), 2);
        assert!(patterns[1].matches("team-red") && patterns[0].matches("general"));
        assert!(parse_patterns("").is_err());
        assert!(parse_patterns(" , ").is_err());
        assert!(parse_patterns("general,no room").is_err());
    }
}
