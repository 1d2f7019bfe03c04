//! The `chatterbox` server binary: its command line, `.env`, and the
//! library's [`chatterbox::cli`] that does the work. Without a subcommand it
//! serves; the subcommands are small tools around the server: a health
//! probe for container runtimes and a token minter.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use chatterbox::auth::Extra;
use chatterbox::cli;
use chatterbox::permissions::ModClaim;

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
        #[arg(long, default_value = "1h", value_parser = cli::parse_ttl)]
        ttl: Duration,
        /// Make the user a moderator in every room (the `mod: true` claim).
        #[arg(long = "mod", conflicts_with = "mod_rooms")]
        moderator: bool,
        /// Make the user a moderator in the rooms matching these patterns,
        /// comma-separated: room names, or prefixes followed by * (team-*).
        #[arg(long, value_name = "PATTERN,...", value_parser = cli::parse_patterns)]
        mod_rooms: Option<cli::Patterns>,
        /// Let the token join only the rooms matching these patterns (the
        /// `rooms` claim); without it, every room.
        #[arg(long, value_name = "PATTERN,...", value_parser = cli::parse_patterns)]
        rooms: Option<cli::Patterns>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command takes its settings from the environment, .env included.
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return ExitCode::FAILURE;
        }
    }
    match cli.command {
        None => cli::serve(),
        Some(Command::Healthcheck) => cli::healthcheck(),
        Some(Command::Token {
            user,
            ttl,
            moderator,
            mod_rooms,
            rooms,
        }) => {
            let moderator = match (moderator, mod_rooms) {
                (true, _) => Some(ModClaim::Everywhere(true)),
                (false, Some(patterns)) => Some(ModClaim::Rooms(patterns.0)),
                (false, None) => None,
            };
            let extra = Extra {
                moderator,
                rooms: rooms.map(|patterns| patterns.0),
            };
            cli::token(&user, ttl, extra)
        }
    }
}
