//! A minimal chatterbox client that proves a server works end to end; the
//! Docker smoke test (`scripts/docker-smoke.sh`) drives a container with it.
//!
//! ```sh
//! cargo run --example ws_roundtrip -- --url ws://127.0.0.1:8080/ws \
//!     --user alice --room general --say hello
//! ```
//!
//! It connects, joins the room (expecting `history` and then `presence` with
//! itself in it), and then, as asked: checks that the history holds a text
//! (`--expect-history`), sends a chat with a `ref` and waits for its echo
//! (`--say`), and waits for the server to close the connection with a given
//! code (`--expect-close`, printing `ready` once it waits). Each step prints
//! one line; any failure exits 1.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Join a chatterbox room and check the replies")]
struct Args {
    /// WebSocket endpoint, without the query string.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value = "smoke")]
    user: String,
    #[arg(long, default_value = "smoke")]
    room: String,
    /// A text the room's history must contain on join.
    #[arg(long)]
    expect_history: Option<String>,
    /// Send this chat text and wait for its echo.
    #[arg(long)]
    say: Option<String>,
    /// After the other steps, wait until the server closes with this code.
    #[arg(long)]
    expect_close: Option<u16>,
    /// Seconds allowed for each step (the close wait has no limit of its own
    /// beyond `--close-timeout`).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Seconds to wait for the server to close (`--expect-close`).
    #[arg(long, default_value_t = 60)]
    close_timeout: u64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let step = Duration::from_secs(args.timeout);
    let url = format!("{}?user={}", args.url, args.user);
    let (mut ws, _) = tokio::time::timeout(step, tokio_tungstenite::connect_async(url.as_str()))
        .await
        .map_err(|_| format!("connecting to {url}: timed out"))?
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    println!("connected to {url}");

    send(&mut ws, json!({"type": "join", "room": args.room})).await?;
    let history = expect(&mut ws, step, "history", |m| m["room"] == args.room).await?;
    let messages = history["messages"].as_array().cloned().unwrap_or_default();
    let presence = expect(&mut ws, step, "presence", |m| m["room"] == args.room).await?;
    let users: Vec<&str> = presence["users"]
        .as_array()
        .map(|users| users.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !users.contains(&args.user.as_str()) {
        return Err(format!("presence {users:?} does not list {}", args.user));
    }
    println!(
        "joined {}: history of {} messages, presence [{}]",
        args.room,
        messages.len(),
        users.join(", ")
    );

    if let Some(text) = &args.expect_history {
        match messages.iter().find(|m| m["text"] == text.as_str()) {
            Some(m) => println!("history has {text:?} (id {}, by {})", m["id"], m["user"]),
            None => return Err(format!("history of {} lacks {text:?}", args.room)),
        }
    }

    if let Some(text) = &args.say {
        let reference = format!("ref-{}", std::process::id());
        send(
            &mut ws,
            json!({"type": "chat", "room": args.room, "text": text, "ref": reference}),
        )
        .await?;
        let echo = expect(&mut ws, step, "chat", |m| m["ref"] == reference.as_str()).await?;
        if echo["text"] != text.as_str() || echo["user"] != args.user.as_str() {
            return Err(format!("echo does not match what was sent: {echo}"));
        }
        if !echo["id"].as_u64().is_some_and(|id| id > 0) {
            return Err(format!("echo has no positive id: {echo}"));
        }
        println!("echo of {text:?} with ref {reference} (id {})", echo["id"]);
    }

    if let Some(code) = args.expect_close {
        // Tell a waiting script that the connection is in place.
        let mut stdout = tokio::io::stdout();
        let _ = stdout.write_all(b"ready\n").await;
        let _ = stdout.flush().await;
        let got = wait_close(&mut ws, Duration::from_secs(args.close_timeout)).await?;
        if got != Some(code) {
            return Err(format!("closed with {got:?}, expected {code}"));
        }
        println!("server closed the connection with {code}");
    } else {
        let _ = ws.close(None).await;
    }
    Ok(())
}

async fn send(ws: &mut Ws, frame: Value) -> Result<(), String> {
    ws.send(Message::Text(frame.to_string()))
        .await
        .map_err(|e| format!("sending {frame}: {e}"))
}

/// Reads frames until one of type `kind` satisfies `matches`; an `error`
/// frame on the way fails.
async fn expect(
    ws: &mut Ws,
    timeout: Duration,
    kind: &str,
    matches: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| format!("waiting for {kind}: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let value: Value =
                serde_json::from_str(&text).map_err(|e| format!("bad frame {text:?}: {e}"))?;
            if value["type"] == "error" {
                return Err(format!("server error while waiting for {kind}: {value}"));
            }
            if value["type"] == kind && matches(&value) {
                return Ok(value);
            }
        }
        Err(format!("connection ended while waiting for {kind}"))
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("no {kind} within {timeout:?}"))?
}

/// Waits for the server's close frame and returns its code.
async fn wait_close(ws: &mut Ws, timeout: Duration) -> Result<Option<u16>, String> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Close(close)) => return Ok(close.map(|c| u16::from(c.code))),
                Ok(_) => continue,
                Err(e) => return Err(format!("connection failed before a close frame: {e}")),
            }
        }
        Err("connection ended without a close frame".to_string())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("no close within {timeout:?}"))?
}
