//! `GET /metrics`: parsed with a Prometheus parser, and its counters move by
//! exactly what a scripted session did.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use testkit::{scrape, spawn_app_with, Client, WAIT};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{refused_upgrade, small_window_client};

/// Every chat a connection may send in one burst; nothing refills during
/// the test.
const BURST: usize = 1000;
/// Chats sent before reading the answers, so no reader falls behind.
const STEP: usize = 20;

/// Reads frames until `chats` chat frames have arrived; returns the other
/// frames seen on the way.
async fn read_chats(client: &mut Client, chats: usize) -> Vec<Value> {
    let mut others = Vec::new();
    let mut seen = 0;
    while seen < chats {
        let frame = client.recv().await;
        if frame["type"] == "chat" {
            seen += 1;
        } else {
            others.push(frame);
        }
    }
    others
}

#[actix_web::test]
async fn counters_follow_a_scripted_session() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 0.001;
        c.rate_burst = BURST as f64;
        c.outbox_limit = 64;
        c.max_message_len = 16_000;
    })
    .await;
    let before = scrape(app.port).await;
    assert_eq!(before.value("chatterbox_connections"), 0.0);
    assert_eq!(before.value("chatterbox_messages_received_total"), 0.0);

    // A refused upgrade.
    let (status, _) = refused_upgrade(app.port, "nobody=here").await;
    assert_eq!(status, 400);

    // Join, 3 chats, then a burst past the rate limit.
    let mut alice = app.connect("alice").await;
    let mut carol = app.connect("carol").await;
    alice.join("ops").await;
    carol.join("ops").await;
    alice.expect("join").await;
    for i in 0..3 {
        alice
            .chat("ops", &format!("hello {i}"), &format!("a{i}"))
            .await;
    }
    assert!(read_chats(&mut alice, 3).await.is_empty());
    read_chats(&mut carol, 3).await;
    let mut limited = 0;
    let mut accepted = 3;
    for step in 0..BURST / STEP {
        for i in 0..STEP {
            alice.chat("ops", "burst", &format!("b{step}-{i}")).await;
        }
        let mut answers = 0;
        while answers < STEP {
            let frame = alice.recv().await;
            match frame["type"].as_str() {
                Some("chat") => accepted += 1,
                Some("error") if frame["code"] == "rate_limited" => limited += 1,
                _ => panic!("unexpected {frame}"),
            }
            answers += 1;
        }
    }
    assert_eq!((accepted, limited), (BURST, 3));
    read_chats(&mut carol, BURST - 3).await;

    let m = scrape(app.port).await;
    let chats = BURST as f64;
    assert_eq!(m.value("chatterbox_connections"), 2.0);
    assert_eq!(m.value("chatterbox_connections_opened_total"), 2.0);
    assert_eq!(m.value("chatterbox_rooms_active"), 1.0);
    assert_eq!(m.value("chatterbox_messages_received_total"), chats);
    assert_eq!(m.value("chatterbox_messages_stored_total"), chats);
    // Each chat reached its sender (the echo) and carol.
    assert_eq!(m.value("chatterbox_messages_delivered_total"), 2.0 * chats);
    assert_eq!(m.value("chatterbox_rate_limited_total"), 3.0);
    assert_eq!(
        m.get("chatterbox_errors_total", Some(("code", "rate_limited"))),
        3.0
    );
    assert_eq!(
        m.get("chatterbox_errors_total", Some(("code", "not_joined"))),
        0.0
    );
    assert_eq!(
        m.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "bad_request"))
        ),
        1.0
    );
    assert_eq!(m.value("chatterbox_slow_client_closes_total"), 0.0);
    assert_eq!(m.value("chatterbox_store_batch_size_sum"), chats);
    assert_eq!(m.value("chatterbox_delivery_seconds_count"), chats);
    assert!(m.value("chatterbox_store_commit_seconds_count") >= 1.0);

    // A slow client: bob stops reading while dave floods the room.
    let mut bob = small_window_client(app.port, "bob").await;
    let mut dave = app.connect("dave").await;
    bob.join("flood").await;
    dave.join("flood").await;
    let big = "x".repeat(16_000);
    let mut bob_left = false;
    for step in 0..BURST / STEP {
        for i in 0..STEP {
            dave.chat("flood", &big, &format!("d{step}-{i}")).await;
        }
        for frame in read_chats(&mut dave, STEP).await {
            bob_left |= frame["type"] == "leave" && frame["user"] == "bob";
        }
    }
    while !bob_left {
        let frame = dave.recv().await;
        bob_left = frame["type"] == "leave" && frame["user"] == "bob";
    }
    // Bob finds the close once he reads again.
    let deadline = tokio::time::Instant::now() + WAIT;
    let code = loop {
        match tokio::time::timeout_at(deadline, bob.ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(close))))) => break Some(close.code),
            Ok(Some(Ok(_))) => continue,
            _ => break None,
        }
    };
    assert_eq!(code.map(u16::from), Some(1008));

    let m = scrape(app.port).await;
    assert_eq!(m.value("chatterbox_slow_client_closes_total"), 1.0);
    assert_eq!(m.value("chatterbox_messages_received_total"), 2.0 * chats);
    assert_eq!(m.value("chatterbox_messages_stored_total"), 2.0 * chats);
    assert_eq!(m.value("chatterbox_rate_limited_total"), 3.0);
    assert_eq!(m.value("chatterbox_heartbeat_timeouts_total"), 0.0);
    assert_eq!(m.value("chatterbox_rooms_active"), 2.0);
}

#[actix_web::test]
async fn a_silent_connection_counts_as_a_heartbeat_timeout() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.client_timeout = Duration::from_millis(400);
    })
    .await;
    // Connected, then never polled again: it answers no ping.
    let _silent = app.connect("sleepy").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape(app.port).await;
        if m.value("chatterbox_heartbeat_timeouts_total") == 1.0 {
            assert_eq!(m.value("chatterbox_connections"), 0.0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn every_metric_is_documented_and_prefixed() {
    let app = spawn_app_with(|_| {}).await;
    let m = scrape(app.port).await;
    for sample in &m.scrape.samples {
        assert!(
            sample.metric.starts_with("chatterbox_"),
            "{}",
            sample.metric
        );
    }
    for family in [
        "chatterbox_connections",
        "chatterbox_rooms_active",
        "chatterbox_messages_received_total",
        "chatterbox_messages_stored_total",
        "chatterbox_messages_delivered_total",
        "chatterbox_errors_total",
        "chatterbox_rate_limited_total",
        "chatterbox_slow_client_closes_total",
        "chatterbox_heartbeat_timeouts_total",
        "chatterbox_frozen_closes_total",
        "chatterbox_upgrades_refused_total",
        "chatterbox_store_commit_seconds",
        "chatterbox_store_batch_size",
        "chatterbox_delivery_seconds",
        "chatterbox_pending_messages",
        "chatterbox_pending_bytes",
    ] {
        assert!(m.scrape.docs.contains_key(family), "no HELP for {family}");
    }
}
