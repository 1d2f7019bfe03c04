//! The `chatterbox` server binary: configuration, logging, run, and the
//! signals that stop it. Its subcommands are small tools around the server:
//! a health probe for container runtimes and a token minter.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use chatterbox::auth;
use chatterbox::config::{format_duration, parse_duration, Config};
use chatterbox::startup::Application;

/// A real-time WebSocket chat server. Without a subcommand it serves; it is
/// configured through environment variables (see README.md).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ask the server on HOST:PORT for `/health`; exit 0 when it answers 200.
    /// Made for Docker's HEALTHCHECK, so the image needs no curl.
    Healthcheck,
    /// Print a signed connection token (HS256 JWT) for USER, made with the
    /// AUTH_SECRET of the environment (or .env). Connect with
    /// `/ws?token=...` or an `Authorization: Bearer` header, or open the page
    /// at `/#token=...`.
    Token {
        /// The user name the token vouches for (its `sub`).
        #[arg(long)]
        user: String,
        /// How long the token is valid: a number with a unit (30s, 15m, 1h, 7d),
        /// at most MAX_TOKEN_LIFETIME (default 1d).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 30s, 15m, 1h or 7d"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return ExitCode::FAILURE;
        }
    }
    match cli.command {
        None => serve(),
        Some(Command::Healthcheck) => healthcheck(),
        Some(Command::Token { user, ttl }) => token(&user, ttl),
    }
}

#[actix_web::main]
async fn serve() -> ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return ExitCode::FAILURE;
        }
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        wait_for_signal().await;
        handle.shutdown().await;
    });
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            log::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
    }
}

/// `chatterbox token`: prints a token on stdout, and nothing else there, so
/// scripts can capture it.
/// Read through [`Config`], so AUTH_SECRET and MAX_TOKEN_LIFETIME mean
/// what they mean to the server: a token the server would refuse is not
/// printed.
fn token(user: &str, ttl: Duration) -> ExitCode {
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

/// `chatterbox healthcheck`: one HTTP/1.0 request to the local server.
fn healthcheck() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A server bound to every address is reached on loopback.
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        ip => ip,
    };
    match probe(SocketAddr::new(host, config.port)) {
        Ok(status) if status == "200" => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("unhealthy: /health answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the status code of `GET /health`.
fn probe(addr: SocketAddr) -> std::io::Result<String> {
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    // "HTTP/1.1 200 OK"
    line.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line"))
}
