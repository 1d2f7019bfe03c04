//! Every error code with its trigger, the frame-size limit, and refused
//! upgrades. An error never closes the connection unless a close code is named.

use futures_util::SinkExt;
use serde_json::json;
use testkit::{spawn_app, spawn_app_with, Client};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[actix_web::test]
async fn each_bad_frame_gets_its_error_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let long_text = "x".repeat(4097);
    let cases = [
        ("not json at all".to_string(), "bad_json"),
        ("[\"join\"]".to_string(), "bad_json"),
        (r#"{"room":"r"}"#.to_string(), "bad_json"),
        (r#"{"type":"dance","ref":"d"}"#.to_string(), "unknown_type"),
        (
            r#"{"type":"join","room":"no spaces"}"#.to_string(),
            "invalid_room",
        ),
        (r#"{"type":"join","room":42}"#.to_string(), "invalid_room"),
        (r#"{"type":"leave"}"#.to_string(), "invalid_room"),
        (
            r#"{"type":"chat","room":"r","text":""}"#.to_string(),
            "invalid_text",
        ),
        (
            r#"{"type":"chat","room":"r","text":" \n\t"}"#.to_string(),
            "invalid_text",
        ),
        (
            r#"{"type":"chat","room":"r","text":["hi"]}"#.to_string(),
            "invalid_text",
        ),
        (
            json!({"type":"chat","room":"r","text":long_text}).to_string(),
            "invalid_text",
        ),
        (
            r#"{"type":"join","room":"s","since":-5}"#.to_string(),
            "invalid_field",
        ),
        (
            r#"{"type":"join","room":"s","since":"7"}"#.to_string(),
            "invalid_field",
        ),
        (
            r#"{"type":"chat","room":"r","text":"hi","ref":{"a":1}}"#.to_string(),
            "invalid_field",
        ),
        (
            r#"{"type":"join","room":"r"}"#.to_string(),
            "already_joined",
        ),
        (
            r#"{"type":"leave","room":"elsewhere"}"#.to_string(),
            "not_joined",
        ),
        (
            r#"{"type":"chat","room":"elsewhere","text":"hi"}"#.to_string(),
            "not_joined",
        ),
    ];
    for (frame, code) in cases {
        alice.send_text(&frame).await;
        let error = alice.expect_error(code).await;
        assert!(
            error.get("ref").is_none() || frame.contains("\"ref\""),
            "{error}"
        );
    }
    // Still connected and working.
    alice.chat("r", "still here", "ok").await;
    assert_eq!(alice.expect("chat").await["ref"], "ok");
}

#[actix_web::test]
async fn errors_echo_the_ref_of_the_frame_that_caused_them() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;

    alice
        .send(json!({"type": "chat", "room": "nowhere", "text": "hi", "ref": "abc"}))
        .await;

    assert_eq!(alice.expect_error("not_joined").await["ref"], "abc");
    alice
        .send(json!({"type": "leave", "room": "bad room!", "ref": "def"}))
        .await;
    assert_eq!(alice.expect_error("invalid_room").await["ref"], "def");
}

#[actix_web::test]
async fn binary_frames_are_refused_with_an_error() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;

    alice.ws.send(Message::Binary(vec![1, 2, 3])).await.unwrap();

    alice.expect_error("binary_unsupported").await;
    alice.join("r").await;
}

#[actix_web::test]
async fn a_connection_is_limited_in_rooms() {
    let app = spawn_app_with(|c| c.max_rooms_per_connection = 2).await;
    let mut alice = app.connect("alice").await;
    alice.join("a").await;
    alice.join("b").await;

    alice
        .send(json!({"type": "join", "room": "c", "ref": "third"}))
        .await;

    assert_eq!(alice.expect_error("too_many_rooms").await["ref"], "third");
    // Leaving one makes room for another.
    alice.send(json!({"type": "leave", "room": "a"})).await;
    alice.expect("leave").await;
    alice.join("c").await;
}

#[actix_web::test]
async fn the_server_is_limited_in_active_rooms() {
    let app = spawn_app_with(|c| c.max_rooms = 2).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("a").await;
    alice.join("b").await;

    bob.send(json!({"type": "join", "room": "c"})).await;
    bob.expect_error("too_many_rooms").await;
    // An active room can still be joined.
    bob.join("a").await;
}

#[actix_web::test]
async fn a_message_of_exactly_64_kib_is_accepted() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    // Pad a valid chat frame with white space up to 65,536 bytes.
    let frame = json!({"type": "chat", "room": "r", "text": "fits", "ref": "big"}).to_string();
    let padded = format!("{frame}{}", " ".repeat(65_536 - frame.len()));
    assert_eq!(padded.len(), 65_536);

    alice.send_text(&padded).await;

    assert_eq!(alice.expect("chat").await["ref"], "big");
}

#[actix_web::test]
async fn a_message_over_64_kib_closes_with_1009() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("r").await;
    bob.join("r").await;

    alice.send_text(&" ".repeat(65_537)).await;

    assert_eq!(alice.expect_close().await, CloseCode::Size);
    assert_eq!(bob.expect("leave").await["user"], "alice");
}

#[actix_web::test]
async fn fragments_are_reassembled_and_the_limit_applies_to_the_whole() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let frame = json!({"type": "chat", "room": "r", "text": "in pieces", "ref": "f"}).to_string();
    let (head, tail) = frame.split_at(10);

    send_fragments(&mut alice, &[head.as_bytes(), tail.as_bytes()]).await;
    assert_eq!(alice.expect("chat").await["text"], "in pieces");

    // Three fragments of 30,000 bytes: each is small, the whole is not.
    let chunk = vec![b' '; 30_000];
    send_fragments(&mut alice, &[&chunk, &chunk, &chunk]).await;
    assert_eq!(alice.expect_close().await, CloseCode::Size);
}

async fn send_fragments(client: &mut Client, parts: &[&[u8]]) {
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = i == parts.len() - 1;
        let frame = Frame::message(part.to_vec(), opcode, last);
        client.ws.send(Message::Frame(frame)).await.unwrap();
    }
}

#[actix_web::test]
async fn an_upgrade_without_a_valid_user_is_refused_with_400() {
    let app = spawn_app().await;
    for query in [
        "",
        "?user=",
        "?user=has%20space",
        "?user=0123456789012345678901234567890123",
        "?name=bob",
    ] {
        let request = format!("ws://127.0.0.1:{}/ws{query}", app.port)
            .into_client_request()
            .unwrap();
        let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
            panic!("expected an HTTP refusal for {query:?}, got {err}");
        };
        assert_eq!(response.status(), 400, "{query:?}");
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn an_upgrade_from_a_foreign_origin_is_refused_with_403() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["http://good.example".into()]).await;
    let url = format!("ws://127.0.0.1:{}/ws?user=alice", app.port);

    let mut bad = url.as_str().into_client_request().unwrap();
    bad.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(bad).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("expected an HTTP refusal, got {err}");
    };
    assert_eq!(response.status(), 403);

    let mut good = url.as_str().into_client_request().unwrap();
    good.headers_mut()
        .insert("Origin", "http://good.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(good).await.is_ok());
    // No Origin header: not a browser, allowed.
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
    let metrics = testkit::scrape(app.port).await;
    assert_eq!(
        metrics.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "origin"))
        ),
        1.0
    );
}
