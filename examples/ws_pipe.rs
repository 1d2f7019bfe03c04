//! A line-oriented WebSocket client for scripts, in the manner of
//! `websocat`: each line read on stdin goes out as a text frame, each text
//! frame received comes out as one line on stdout. The cluster smoke test
//! (`scripts/cluster-smoke.sh`) keeps several open at once, writes frames to
//! them through FIFOs and reads what they heard from their output files.
//!
//! ```sh
//! cargo run --example ws_pipe -- 'ws://127.0.0.1:8080/ws?user=alice'
//! {"type":"join","room":"general"}
//! ```
//!
//! It prints `connected` once the upgrade succeeds, then one line per text
//! frame. When the server closes it prints `closed CODE` (`closed none`
//! without a code) and exits 0; at the end of stdin it closes with 1000,
//! waits up to 5 s for the server's reply, prints `closed ...` and exits 0.
//! A failed connection or a broken socket prints `error: ...` and exits 1,
//! and so does reaching `--lifetime`, so that a script that loses track of
//! it cannot leave it running.

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Pipe stdin lines to a WebSocket and its text frames to stdout")]
struct Args {
    /// WebSocket URL, query string included (`ws://HOST:PORT/ws?user=NAME`).
    url: String,
    /// Seconds allowed for the connection and upgrade.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds after which the client gives up in any case (exit 1).
    #[arg(long, default_value_t = 600)]
    lifetime: u64,
}

/// How long to wait for the server's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(&args)) {
        Ok(()) => 0,
        Err(e) => {
            println!("error: {e}");
            1
        }
    };
    // Exit without dropping the runtime: its blocking stdin reader may be
    // parked in a read that only a new line would end.
    std::process::exit(code);
}

async fn run(args: &Args) -> Result<(), String> {
    let connect = tokio_tungstenite::connect_async(args.url.as_str());
    let (ws, _) = tokio::time::timeout(Duration::from_secs(args.connect_timeout), connect)
        .await
        .map_err(|_| format!("connecting to {}: timed out", args.url))?
        .map_err(|e| format!("connecting to {}: {e}", args.url))?;
    println!("connected");

    let (mut sink, mut stream) = ws.split();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let deadline = tokio::time::sleep(Duration::from_secs(args.lifetime));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => sink
                    .send(Message::Text(line))
                    .await
                    .map_err(|e| format!("sending: {e}"))?,
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                    sink.send(Message::Close(Some(close)))
                        .await
                        .map_err(|e| format!("sending the close frame: {e}"))?;
                    let soon = Instant::now() + CLOSE_WAIT;
                    if soon < deadline.deadline() {
                        deadline.as_mut().reset(soon);
                    }
                }
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => println!("{text}"),
                Some(Ok(Message::Close(close))) => {
                    match close {
                        Some(frame) => println!("closed {}", u16::from(frame.code)),
                        None => println!("closed none"),
                    }
                    return Ok(());
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("connection failed: {e}")),
                None => return Err("connection ended without a close frame".to_string()),
            },
            () = &mut deadline => {
                return Err(if stdin_open {
                    format!("still open after --lifetime {} s", args.lifetime)
                } else {
                    format!("no answer to the close frame within {CLOSE_WAIT:?}")
                });
            }
        }
    }
}
