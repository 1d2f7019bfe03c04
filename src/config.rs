//! Server configuration, read once at start from the environment (and an
//! optional `.env`, loaded by `main`). Every variable of the protocol's
//! configuration table lives here; a value that does not parse stops start-up
//! with a [`ConfigError`] that names the variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server can be told from outside. Cloned into the actors
/// that need it (it is small and read-only).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (tests rely on this).
    pub port: u16,
    /// SQLite file, created with its schema when missing.
    pub db_path: PathBuf,
    /// PostgreSQL instead of SQLite (`postgres://...`): cluster mode, where
    /// every node with the same URL serves the same rooms.
    pub database_url: Option<Secret>,
    /// This node's name in the cluster; `None` makes one at start (host
    /// name, process id and start time).
    pub node_id: Option<String>,
    /// Silence after which the other nodes consider a node gone, and its
    /// users leave every room.
    pub node_timeout: Duration,
    /// Folder served at `/` (the browser client).
    pub static_dir: PathBuf,
    /// Active rooms on the whole server.
    pub max_rooms: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Threads the rooms run on (each room on one of them, for its whole
    /// life), so busy rooms use every core. Default: the number of cores.
    pub room_threads: usize,
    /// Chat messages sent in `history` on join.
    pub max_history: usize,
    /// Characters (Unicode scalar values) in one chat text.
    pub max_message_len: usize,
    /// Chat messages per second per connection, sustained.
    pub rate_limit: f64,
    /// Chat messages a connection may send in one burst.
    pub rate_burst: f64,
    /// Joins and leaves per second per connection, sustained: a budget of
    /// its own, so presence churn cannot flood a room's members.
    pub join_rate_limit: f64,
    /// Joins and leaves a connection may send in one burst; enough for a
    /// reconnecting client to rejoin every room it may be in.
    pub join_rate_burst: f64,
    /// Queued outgoing frames after which a slow connection is closed (1008).
    pub outbox_limit: usize,
    /// How often the server pings each connection.
    pub heartbeat_interval: Duration,
    /// Silence after which a connection is dropped.
    pub client_timeout: Duration,
    /// Origins allowed to open `/ws`; empty means any.
    pub allowed_origins: Vec<String>,
    /// HS256 secret for connection tokens; `None` trusts `?user=`.
    pub auth_secret: Option<Secret>,
    /// How far ahead a token's `exp` may be. A leaked token cannot be
    /// revoked (short of rotating `AUTH_SECRET`), so this bounds how long it
    /// stays useful, whoever minted it.
    pub max_token_lifetime: Duration,
    /// Close a connection (4001) when its token's `exp` passes without a
    /// `refresh`, so a user whose tokens stop being issued does not stay
    /// connected. Off by default: before refresh existed nothing closed
    /// connections at expiry, and clients that cannot refresh keep working.
    pub close_expired: bool,
    /// Where the page gets a fresh token (GET with credentials, answering
    /// `{"token": "..."}`): the integrator's endpoint, told to the page in
    /// `/health`. `None`: the page asks its user to sign in again.
    pub token_refresh_url: Option<String>,
    /// Open WebSocket connections on the whole server.
    pub max_connections: usize,
    /// Open WebSocket connections from one peer address; 0 is no cap.
    pub max_connections_per_ip: usize,
    /// Chat messages accepted and not yet stored and handed to their room's
    /// members, on the whole server; past it chats get `overloaded`.
    pub max_pending_messages: usize,
    /// Bytes of chat text in those messages; past it chats get `overloaded`.
    pub max_pending_bytes: usize,
    /// Largest WebSocket message accepted, in bytes, after reassembling
    /// fragments. Fixed by the protocol (64 KiB), kept here so it has one home.
    pub max_frame_bytes: usize,
    /// The server API's key (`Authorization: Bearer API_KEY`); `None`
    /// turns the API's endpoints off (404).
    pub api_key: Option<Secret>,
    /// Where webhook events are POSTed (`http://host:port/path`); `None`:
    /// no webhooks.
    pub webhook_url: Option<String>,
    /// The key webhook requests are signed with (HMAC-SHA256); required
    /// with `webhook_url`.
    pub webhook_secret: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            db_path: PathBuf::from("chatterbox.db"),
            database_url: None,
            node_id: None,
            node_timeout: Duration::from_secs(10),
            static_dir: PathBuf::from("static"),
            max_rooms: 1000,
            max_rooms_per_connection: 32,
            room_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_history: 50,
            max_message_len: 4096,
            rate_limit: 10.0,
            rate_burst: 20.0,
            join_rate_limit: 5.0,
            join_rate_burst: 100.0,
            outbox_limit: 1024,
            heartbeat_interval: Duration::from_secs(5),
            client_timeout: Duration::from_secs(30),
            allowed_origins: Vec::new(),
            auth_secret: None,
            max_token_lifetime: Duration::from_secs(24 * 3600),
            close_expired: false,
            token_refresh_url: None,
            max_connections: 20_000,
            max_connections_per_ip: 0,
            max_pending_messages: 10_000,
            max_pending_bytes: 8 * 1024 * 1024,
            max_frame_bytes: 64 * 1024,
            api_key: None,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

/// A value that must not reach a log: `Debug` prints a placeholder, so a
/// `Config` can be logged or compared in a failing test without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that signs or verifies with it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A configuration variable whose value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value {value:?} for {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub(crate) fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the
    /// process environment. Unset and empty variables take their defaults.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Config::default();

        if let Some(v) = get("HOST") {
            config.host = parse_with("HOST", &v, |s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".into())
            })?;
        }
        if let Some(v) = get("PORT") {
            config.port = parse_with("PORT", &v, |s| {
                s.trim()
                    .parse::<u16>()
                    .map_err(|_| "expected a port number from 0 to 65535".into())
            })?;
        }
        if let Some(v) = get("DB_PATH") {
            config.db_path = PathBuf::from(v);
        }
        if let Some(v) = get("DATABASE_URL") {
            config.database_url = Some(database_url(&v)?);
        }
        if let Some(v) = get("NODE_ID") {
            config.node_id = Some(node_id(&v)?);
        }
        if let Some(v) = get("NODE_TIMEOUT") {
            config.node_timeout = duration("NODE_TIMEOUT", &v)?;
            if config.node_timeout < Duration::from_secs(1) {
                return Err(ConfigError {
                    variable: "NODE_TIMEOUT",
                    value: v,
                    reason: "must be at least 1s: nodes beat three times per timeout".into(),
                });
            }
        }
        if let Some(v) = get("STATIC_DIR") {
            config.static_dir = PathBuf::from(v);
        }
        if let Some(v) = get("MAX_ROOMS") {
            config.max_rooms = count("MAX_ROOMS", &v, 1)?;
        }
        if let Some(v) = get("MAX_ROOMS_PER_CONNECTION") {
            config.max_rooms_per_connection = count("MAX_ROOMS_PER_CONNECTION", &v, 1)?;
        }
        if let Some(v) = get("ROOM_THREADS") {
            config.room_threads = count("ROOM_THREADS", &v, 1)?;
            if config.room_threads > MAX_ROOM_THREADS {
                return Err(ConfigError {
                    variable: "ROOM_THREADS",
                    value: v,
                    reason: format!("must be at most {MAX_ROOM_THREADS}"),
                });
            }
        }
        if let Some(v) = get("MAX_HISTORY") {
            config.max_history = count("MAX_HISTORY", &v, 0)?;
        }
        if let Some(v) = get("MAX_MESSAGE_LEN") {
            config.max_message_len = count("MAX_MESSAGE_LEN", &v, 1)?;
        }
        if let Some(v) = get("RATE_LIMIT") {
            config.rate_limit = rate("RATE_LIMIT", &v)?;
        }
        if let Some(v) = get("RATE_BURST") {
            config.rate_burst = rate("RATE_BURST", &v)?.max(1.0);
        }
        if let Some(v) = get("JOIN_RATE_LIMIT") {
            config.join_rate_limit = rate("JOIN_RATE_LIMIT", &v)?;
        }
        if let Some(v) = get("JOIN_RATE_BURST") {
            config.join_rate_burst = rate("JOIN_RATE_BURST", &v)?.max(1.0);
        }
        if let Some(v) = get("OUTBOX_LIMIT") {
            config.outbox_limit = count("OUTBOX_LIMIT", &v, 1)?;
        }
        if let Some(v) = get("HEARTBEAT_INTERVAL") {
            config.heartbeat_interval = duration("HEARTBEAT_INTERVAL", &v)?;
        }
        if let Some(v) = get("CLIENT_TIMEOUT") {
            config.client_timeout = duration("CLIENT_TIMEOUT", &v)?;
        }
        if let Some(v) = get("ALLOWED_ORIGINS") {
            config.allowed_origins = v
                .split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
        }
        // Empty means unset (development mode), as documented; a value of
        // only white space is a mistake (a stray space in `.env`), and
        // reading it as unset would silently turn authentication off.
        match lookup("AUTH_SECRET") {
            Some(v) if !v.is_empty() && v.trim().is_empty() => {
                return Err(ConfigError {
                    variable: "AUTH_SECRET",
                    value: v,
                    reason: "it is only white space, which would turn authentication off; \
                             leave it empty for development mode or set a real secret"
                        .into(),
                })
            }
            Some(v) if !v.is_empty() => config.auth_secret = Some(Secret(v)),
            _ => {}
        }
        // As AUTH_SECRET: empty is unset (the API is off), only white space
        // is a mistake that must not pass for a key.
        match lookup("API_KEY") {
            Some(v) if !v.is_empty() && v.trim().is_empty() => {
                return Err(ConfigError {
                    variable: "API_KEY",
                    value: String::new(),
                    reason: "it is only white space; leave it empty to turn the server API \
                             off or set a real key"
                        .into(),
                })
            }
            Some(v) if !v.is_empty() => config.api_key = Some(Secret(v)),
            _ => {}
        }
        if let Some(v) = get("WEBHOOK_URL") {
            config.webhook_url = Some(webhook_url(&v)?);
        }
        if let Some(v) = lookup("WEBHOOK_SECRET").filter(|v| !v.is_empty()) {
            if v.trim().is_empty() {
                return Err(ConfigError {
                    variable: "WEBHOOK_SECRET",
                    value: String::new(),
                    reason: "it is only white space".into(),
                });
            }
            config.webhook_secret = Some(Secret(v));
        }
        if config.webhook_url.is_some() && config.webhook_secret.is_none() {
            return Err(ConfigError {
                variable: "WEBHOOK_SECRET",
                value: String::new(),
                reason: "WEBHOOK_URL is set: webhook requests must be signed, so set \
                         WEBHOOK_SECRET too"
                    .into(),
            });
        }
        if let Some(v) = get("MAX_TOKEN_LIFETIME") {
            config.max_token_lifetime = duration("MAX_TOKEN_LIFETIME", &v)?;
        }
        if let Some(v) = get("CLOSE_EXPIRED") {
            config.close_expired = boolean("CLOSE_EXPIRED", &v)?;
        }
        if let Some(v) = get("TOKEN_REFRESH_URL") {
            config.token_refresh_url = Some(refresh_url(&v)?);
        }
        if let Some(v) = get("MAX_CONNECTIONS") {
            config.max_connections = count("MAX_CONNECTIONS", &v, 1)?;
        }
        if let Some(v) = get("MAX_CONNECTIONS_PER_IP") {
            config.max_connections_per_ip = count("MAX_CONNECTIONS_PER_IP", &v, 0)?;
        }
        if let Some(v) = get("MAX_PENDING_MESSAGES") {
            config.max_pending_messages = count("MAX_PENDING_MESSAGES", &v, 1)?;
        }
        if let Some(v) = get("MAX_PENDING_BYTES") {
            config.max_pending_bytes = count("MAX_PENDING_BYTES", &v, 1)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what no single variable can: CLIENT_TIMEOUT must be longer
    /// than HEARTBEAT_INTERVAL. A healthy idle client is heard from (its
    /// pong) and its socket polled (the ping) once a heartbeat, so with a
    /// shorter timeout every idle connection would be dropped as silent, or
    /// as frozen by the watchdog.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_timeout <= self.heartbeat_interval {
            return Err(ConfigError {
                variable: "CLIENT_TIMEOUT",
                value: format!("{:?}", self.client_timeout),
                reason: format!(
                    "must be longer than HEARTBEAT_INTERVAL ({:?}): a healthy idle connection \
                     is heard from only once a heartbeat",
                    self.heartbeat_interval
                ),
            });
        }
        Ok(())
    }
}

/// A PostgreSQL URL, checked for its form here (whether the server answers
/// is checked at start). The value in an error has its password hidden.
fn database_url(value: &str) -> Result<Secret, ConfigError> {
    let value = value.trim();
    let error = |reason: String| ConfigError {
        variable: "DATABASE_URL",
        value: redact_password(value),
        reason,
    };
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err(error(
            "expected a PostgreSQL URL such as postgres://user:password@host:5432/chat              (leave it unset to use the SQLite file at DB_PATH)"
                .into(),
        ));
    }
    value
        .parse::<tokio_postgres::Config>()
        .map_err(|e| error(format!("not a valid PostgreSQL URL: {e}")))?;
    Ok(Secret(value.to_string()))
}

/// `value` with the password of `scheme://user:password@host` replaced.
fn redact_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return value.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => value.to_string(),
    }
}

/// A node's name: what `/health` reports and the database keys presence
/// by. Short and plain, so it reads well in logs and SQL.
fn node_id(value: &str) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(ConfigError {
            variable: "NODE_ID",
            value: value.to_string(),
            reason: "expected 1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.'".into(),
        })
    }
}

fn parse_with<T>(
    variable: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(value).map_err(|reason| ConfigError {
        variable,
        value: value.to_string(),
        reason,
    })
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
fn boolean(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    parse_with(variable, value, |s| {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    })
}

/// TOKEN_REFRESH_URL: an `http://` or `https://` URL, or a path on the
/// page's own origin (`/auth/token`), with no white space or quotes, since
/// the page passes it to `fetch` as it is.
fn refresh_url(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let form_ok = match value.split_once("://") {
        // A host must follow the scheme.
        Some((scheme, rest)) => {
            matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.starts_with('/')
        }
        None => value.starts_with('/') && !value.starts_with("//"),
    };
    let clean = value
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '<' | '>' | '`'));
    if form_ok && clean {
        Ok(value.to_string())
    } else {
        Err(ConfigError {
            variable: "TOKEN_REFRESH_URL",
            value: value.to_string(),
            reason: "expected an http:// or https:// URL, or a path such as /auth/token on \
                     the page's origin"
                .into(),
        })
    }
}

/// A whole number no smaller than `min`.
/// `WEBHOOK_URL`: plain `http://` (the server has no TLS client; put the
/// receiver on a private network or behind a local proxy), with a host.
fn webhook_url(value: &str) -> Result<String, ConfigError> {
    parse_with("WEBHOOK_URL", value, |s| {
        let s = s.trim();
        match s.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(s.to_string()),
            _ if s.starts_with("https://") => Err("https:// is not supported (the server has \
                 no TLS client): use http:// to a receiver on a private network or a local \
                 TLS proxy"
                .into()),
            _ => Err("expected an http:// URL with a host, e.g. http://10.0.0.5:9000/hooks".into()),
        }
    })
}

/// More room threads than this would be a typo, not a machine.
const MAX_ROOM_THREADS: usize = 1024;

fn count(variable: &'static str, value: &str, min: usize) -> Result<usize, ConfigError> {
    parse_with(variable, value, |s| match s.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("expected a whole number of at least {min}")),
    })
}

/// A positive number of messages (per second, or in a burst).
fn rate(variable: &'static str, value: &str) -> Result<f64, ConfigError> {
    parse_with(variable, value, |s| match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err("expected a positive number".into()),
    })
}

/// A duration: a number with a unit (`500ms`, `5s`, `2m`, `1h`), or a bare
/// number of seconds. Zero is refused: every duration here is a period.
fn duration(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    parse_with(variable, value, |s| {
        let parsed = parse_duration(s.trim())
            .ok_or_else(|| "expected a duration such as 500ms, 5s or 2m".to_string())?;
        if parsed.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(parsed)
    })
}

/// Parses `<number><unit>` where unit is `ms`, `s`, `m`, `h` or `d`; no unit means
/// seconds. Fractions are allowed (`1.5s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).ok()
}

/// Writes a whole number of seconds in the largest unit that divides it,
/// as [`parse_duration`] reads it back (`1d`, `2h`, `15m`, `90s`).
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn close_expired_is_a_boolean_off_by_default() {
        assert!(!config_from(&[]).unwrap().close_expired);
        for on in ["true", "1", "YES", " on "] {
            assert!(config_from(&[("CLOSE_EXPIRED", on)]).unwrap().close_expired);
        }
        assert!(
            !config_from(&[("CLOSE_EXPIRED", "false")])
                .unwrap()
                .close_expired
        );
        let error = config_from(&[("CLOSE_EXPIRED", "sometimes")]).unwrap_err();
        assert_eq!(error.variable, "CLOSE_EXPIRED");
    }

    #[test]
    fn the_refresh_url_is_http_or_a_path() {
        assert_eq!(config_from(&[]).unwrap().token_refresh_url, None);
        for good in [
            "https://example.com/chat/token",
            "http://127.0.0.1:9/t",
            "/auth/token",
        ] {
            let config = config_from(&[("TOKEN_REFRESH_URL", good)]).unwrap();
            assert_eq!(config.token_refresh_url.as_deref(), Some(good));
        }
        for bad in [
            "ftp://example.com/t",
            "example.com/token",
            "//example.com/t",
            "https://",
            "https:///path",
            "/a b",
            "javascript:alert(1)",
            "/\"onload",
        ] {
            let error = config_from(&[("TOKEN_REFRESH_URL", bad)]).unwrap_err();
            assert_eq!(error.variable, "TOKEN_REFRESH_URL", "{bad}");
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let config = config_from(&[("AUTH_SECRET", "hunter2-hunter2")]).unwrap();
        assert_eq!(
            config.auth_secret.as_ref().unwrap().expose(),
            "hunter2-hunter2"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn an_api_key_is_read_kept_secret_and_white_space_is_refused() {
        let config = config_from(&[("API_KEY", "k3y-k3y-k3y")]).unwrap();
        assert_eq!(config.api_key.as_ref().unwrap().expose(), "k3y-k3y-k3y");
        assert!(!format!("{config:?}").contains("k3y-k3y-k3y"));
        assert!(config_from(&[("API_KEY", "")]).unwrap().api_key.is_none());
        assert!(config_from(&[]).unwrap().api_key.is_none());
        let err = config_from(&[("API_KEY", "  ")]).unwrap_err();
        assert_eq!(err.variable, "API_KEY");
        assert!(err.to_string().contains("API_KEY"), "{err}");
    }

    #[test]
    fn no_variables_gives_the_documented_defaults() {
        assert_eq!(config_from(&[]).unwrap(), Config::default());
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn every_variable_is_read() {
        let config = config_from(&[
            ("HOST", "0.0.0.0"),
            ("PORT", "0"),
            ("DB_PATH", "/tmp/x.db"),
            ("STATIC_DIR", "www"),
            ("MAX_ROOMS", "5"),
            ("MAX_ROOMS_PER_CONNECTION", "2"),
            ("ROOM_THREADS", "3"),
            ("MAX_HISTORY", "10"),
            ("MAX_MESSAGE_LEN", "100"),
            ("RATE_LIMIT", "1000"),
            ("RATE_BURST", "2000"),
            ("OUTBOX_LIMIT", "64"),
            ("HEARTBEAT_INTERVAL", "250ms"),
            ("CLIENT_TIMEOUT", "2s"),
            ("ALLOWED_ORIGINS", " http://a.example , http://b.example"),
            ("MAX_CONNECTIONS", "10"),
            ("MAX_CONNECTIONS_PER_IP", "3"),
            ("MAX_PENDING_MESSAGES", "500"),
            ("MAX_PENDING_BYTES", "65536"),
            ("JOIN_RATE_LIMIT", "2.5"),
            ("JOIN_RATE_BURST", "40"),
            ("MAX_TOKEN_LIFETIME", "7d"),
        ])
        .unwrap();
        assert_eq!(config.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(config.port, 0);
        assert_eq!(config.db_path, PathBuf::from("/tmp/x.db"));
        assert_eq!(config.static_dir, PathBuf::from("www"));
        assert_eq!(config.max_rooms, 5);
        assert_eq!(config.max_rooms_per_connection, 2);
        assert_eq!(config.room_threads, 3);
        assert_eq!(config.max_history, 10);
        assert_eq!(config.max_message_len, 100);
        assert_eq!(config.rate_limit, 1000.0);
        assert_eq!(config.rate_burst, 2000.0);
        assert_eq!(config.outbox_limit, 64);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(config.client_timeout, Duration::from_secs(2));
        assert_eq!(
            config.allowed_origins,
            vec![
                "http://a.example".to_string(),
                "http://b.example".to_string()
            ]
        );
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.max_connections_per_ip, 3);
        assert_eq!(config.max_pending_messages, 500);
        assert_eq!(config.max_pending_bytes, 65536);
        assert_eq!(config.join_rate_limit, 2.5);
        assert_eq!(config.join_rate_burst, 40.0);
        assert_eq!(config.max_token_lifetime, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn the_join_budget_defaults_are_the_documented_ones() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.join_rate_limit, 5.0);
        assert_eq!(config.join_rate_burst, 100.0);
    }

    #[test]
    fn tokens_live_at_most_a_day_unless_told_otherwise() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.max_token_lifetime, Duration::from_secs(86400));
        assert_eq!(format_duration(config.max_token_lifetime), "1d");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
    }

    #[test]
    fn an_auth_secret_of_only_white_space_is_refused_naming_the_variable() {
        for blank in [" ", "   ", "\t", " \n ", "\u{a0}"] {
            let err = config_from(&[("AUTH_SECRET", blank)]).unwrap_err();
            assert_eq!(err.variable, "AUTH_SECRET");
            assert!(err.to_string().contains("AUTH_SECRET"), "{err}");
            assert!(err.to_string().contains("white space"), "{err}");
        }
        // Empty still means unset: development mode, as documented.
        assert_eq!(
            config_from(&[("AUTH_SECRET", "")]).unwrap().auth_secret,
            None
        );
        // A real secret is kept exactly, surrounding spaces included.
        let config = config_from(&[("AUTH_SECRET", " s3cret ")]).unwrap();
        assert_eq!(config.auth_secret.unwrap().expose(), " s3cret ");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("HOST", "localhost:80"),
            ("MAX_ROOMS", "0"),
            ("ROOM_THREADS", "0"),
            ("ROOM_THREADS", "5000"),
            ("MAX_HISTORY", "-1"),
            ("RATE_LIMIT", "fast"),
            ("HEARTBEAT_INTERVAL", "0s"),
            ("CLIENT_TIMEOUT", "soon"),
            ("OUTBOX_LIMIT", "1.5"),
            ("MAX_PENDING_MESSAGES", "0"),
            ("MAX_PENDING_BYTES", "0"),
            ("MAX_PENDING_BYTES", "8MB"),
            ("JOIN_RATE_LIMIT", "0"),
            ("JOIN_RATE_BURST", "lots"),
            ("MAX_TOKEN_LIFETIME", "forever"),
            ("MAX_TOKEN_LIFETIME", "0s"),
            ("CLIENT_TIMEOUT", "5s"),
            ("CLIENT_TIMEOUT", "4s"),
        ] {
            let err = config_from(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn webhooks_need_an_http_url_and_a_secret() {
        let config = config_from(&[
            ("WEBHOOK_URL", "http://10.0.0.5:9000/hooks"),
            ("WEBHOOK_SECRET", "s3cret"),
        ])
        .unwrap();
        assert_eq!(
            config.webhook_url.as_deref(),
            Some("http://10.0.0.5:9000/hooks")
        );
        assert_eq!(config.webhook_secret.unwrap().expose(), "s3cret");
        assert!(config_from(&[]).unwrap().webhook_url.is_none());

        let err = config_from(&[("WEBHOOK_URL", "http://10.0.0.5/hooks")]).unwrap_err();
        assert_eq!(
            err.variable, "WEBHOOK_SECRET",
            "unsigned requests are refused"
        );
        for url in [
            "https://hooks.example/x",
            "ftp://x",
            "http://",
            "hooks.example",
        ] {
            let err = config_from(&[("WEBHOOK_URL", url), ("WEBHOOK_SECRET", "s")]).unwrap_err();
            assert_eq!(err.variable, "WEBHOOK_URL", "{url}");
            assert!(err.to_string().contains(url), "{err}");
        }
        let err =
            config_from(&[("WEBHOOK_URL", "http://x/"), ("WEBHOOK_SECRET", "  ")]).unwrap_err();
        assert_eq!(err.variable, "WEBHOOK_SECRET");
    }

    #[test]
    fn a_client_timeout_not_longer_than_the_heartbeat_is_refused() {
        for (heartbeat, timeout) in [("5s", "5s"), ("2s", "1s"), ("250ms", "250ms")] {
            let err = config_from(&[
                ("HEARTBEAT_INTERVAL", heartbeat),
                ("CLIENT_TIMEOUT", timeout),
            ])
            .unwrap_err();
            assert_eq!(err.variable, "CLIENT_TIMEOUT");
            assert!(err.to_string().contains("HEARTBEAT_INTERVAL"), "{err}");
        }
        let ok = config_from(&[("HEARTBEAT_INTERVAL", "1s"), ("CLIENT_TIMEOUT", "1100ms")]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_database_url_selects_postgres_and_a_bad_one_names_the_variable_without_its_password() {
        let config = config_from(&[("DATABASE_URL", "postgres://chat:pw@db:5432/chat")]).unwrap();
        assert_eq!(
            config.database_url.as_ref().map(Secret::expose),
            Some("postgres://chat:pw@db:5432/chat")
        );
        assert!(!format!("{config:?}").contains("pw@"));
        assert!(config_from(&[]).unwrap().database_url.is_none());

        let err = config_from(&[("DATABASE_URL", "mysql://chat:hunter2@db/chat")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err =
            config_from(&[("DATABASE_URL", "postgres://chat:hunter2@db:notaport/x")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn node_id_and_node_timeout_are_checked() {
        let config = config_from(&[("NODE_ID", "node-a.1"), ("NODE_TIMEOUT", "3s")]).unwrap();
        assert_eq!(config.node_id.as_deref(), Some("node-a.1"));
        assert_eq!(config.node_timeout, Duration::from_secs(3));
        assert_eq!(
            config_from(&[]).unwrap().node_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            config_from(&[("NODE_ID", "a b")]).unwrap_err().variable,
            "NODE_ID"
        );
        assert_eq!(
            config_from(&[("NODE_TIMEOUT", "100ms")])
                .unwrap_err()
                .variable,
            "NODE_TIMEOUT"
        );
    }
}
