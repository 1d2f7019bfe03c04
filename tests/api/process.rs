//! The server binary as a process: crash safety, graceful shutdown, slow and
//! silent clients, and start-up errors.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use testkit::{get_json, static_dir, Client, ServerProcess};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{stored_texts, CHATTERBOX};

const FAST: &[(&str, &str)] = &[("RATE_LIMIT", "100000"), ("RATE_BURST", "100000")];

#[actix_web::test]
async fn acknowledged_messages_survive_kill_9() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("chat.db");
    let server = ServerProcess::start(CHATTERBOX, &db, FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("r").await;

    // Send a flood, and kill the server as soon as half of it is echoed.
    let total = 400;
    for i in 0..total {
        alice.chat("r", &format!("m{i}"), &i.to_string()).await;
    }
    let mut acknowledged = Vec::new();
    while acknowledged.len() < total / 2 {
        let echo = alice.expect("chat").await;
        acknowledged.push(echo["text"].as_str().unwrap().to_string());
    }
    server.signal("KILL");
    drop(server);

    let server = ServerProcess::start(CHATTERBOX, &db, &[]);
    let stored = stored_texts(server.port, "r").await;
    // Everything acknowledged is there, and what is stored is a prefix of
    // what was sent, in order.
    assert!(
        stored.len() >= acknowledged.len(),
        "{} < {}",
        stored.len(),
        acknowledged.len()
    );
    assert_eq!(stored[..acknowledged.len()], acknowledged[..]);
    let sent: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
    assert_eq!(stored[..], sent[..stored.len()]);
}

#[actix_web::test]
async fn sigterm_closes_clients_with_1001_stores_everything_and_exits_0() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("chat.db");
    let mut server = ServerProcess::start(CHATTERBOX, &db, FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    let mut bob = Client::connect(server.port, "bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.expect("join").await;
    for i in 0..50 {
        alice.chat("r", &format!("m{i}"), &i.to_string()).await;
    }
    for _ in 0..50 {
        alice.expect("chat").await;
    }

    server.signal("TERM");

    assert_eq!(alice.expect_close().await, CloseCode::Away);
    assert_eq!(bob.expect_close().await, CloseCode::Away);
    assert_eq!(server.exited().await, Some(0));
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains("all accepted messages are stored")),
        "{log:#?}"
    );
    drop(server);
    let server = ServerProcess::start(CHATTERBOX, &db, &[]);
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(stored_texts(server.port, "r").await, expected);
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_with_1008_and_the_room_carries_on() {
    let dir = TempDir::new().unwrap();
    let env = [
        ("RATE_LIMIT", "100000"),
        ("RATE_BURST", "100000"),
        ("OUTBOX_LIMIT", "256"),
    ];
    let server = ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &env);
    let mut slow = Client::connect(server.port, "slow").await;
    let mut reader = Client::connect(server.port, "reader").await;
    let mut sender = Client::connect(server.port, "sender").await;
    slow.join("flood").await;
    reader.join("flood").await;
    sender.join("flood").await;
    reader.expect("join").await;

    // 20 MB of chat: far more than the socket buffers and the outbox hold.
    let total = 5000;
    let text = "x".repeat(4000);
    let send = async {
        for batch in 0..total / 50 {
            for i in 0..50 {
                let n = batch * 50 + i;
                sender
                    .chat("flood", &format!("{n} {text}"), &n.to_string())
                    .await;
            }
            let mut echoed = 0;
            while echoed < 50 {
                // The slow client's leave may arrive among the echoes.
                if sender.recv().await["type"] == "chat" {
                    echoed += 1;
                }
            }
        }
    };
    let read = async {
        let mut next = 0;
        while next < total {
            let frame = reader.recv().await;
            if frame["type"] == "chat" {
                let n: usize = frame["text"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(n, next, "the reader must get every message, in order");
                next += 1;
            }
        }
        next
    };
    let (_, received) = tokio::join!(send, read);
    assert_eq!(received, total);

    // The slow client finally reads: some data, then the close.
    let mut chats = 0;
    let code = loop {
        match slow.next_frame().await {
            Some(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "chat" {
                    chats += 1;
                }
            }
            Some(Message::Close(Some(close))) => break close.code,
            other => panic!("expected chats then a close, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Policy);
    assert!(
        chats < total,
        "the slow client cannot have been sent everything"
    );
    let (_, _, details) = get_json(server.port, "/api/rooms/flood").await;
    assert_eq!(details["users"], serde_json::json!(["reader", "sender"]));
}

#[actix_web::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_rooms_hear_leave() {
    let dir = TempDir::new().unwrap();
    let env = [("HEARTBEAT_INTERVAL", "100ms"), ("CLIENT_TIMEOUT", "600ms")];
    let server = ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &env);
    let mut silent = Client::connect(server.port, "silent").await;
    silent.join("r").await;
    let mut watcher = Client::connect(server.port, "watcher").await;
    watcher.join("r").await;

    // `silent` is never read again, so it never answers a ping. `watcher`
    // is read (and so answers pings) while it waits.
    let leave = watcher.expect("leave").await;

    assert_eq!(leave["user"], "silent");
    // The watcher, which answers pings, is still connected well past the timeout.
    tokio::time::sleep(Duration::from_millis(200)).await;
    watcher.chat("r", "still here", "w").await;
    assert_eq!(watcher.expect("chat").await["ref"], "w");
    drop(silent);
}

#[test]
fn a_bad_configuration_value_stops_start_up_naming_the_variable() {
    for (name, value) in [
        ("PORT", "http"),
        ("CLIENT_TIMEOUT", "forever"),
        ("MAX_HISTORY", "-3"),
        ("MAX_PENDING_MESSAGES", "0"),
        ("MAX_PENDING_BYTES", "0"),
    ] {
        let dir = TempDir::new().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
            .env("DB_PATH", dir.path().join("chat.db"))
            .env("STATIC_DIR", static_dir())
            .env(name, value)
            .output()
            .expect("the server binary runs");
        assert!(
            !output.status.success(),
            "{name}={value} must stop start-up"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "the error names {name}: {stderr}");
    }
}
