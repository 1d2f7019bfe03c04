//! Chat messages: echo and ref, fan-out, ids and ordering, the rate limit.

use std::time::Duration;

use serde_json::json;
use testkit::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn a_chat_is_echoed_with_its_ref_and_broadcast_without_it() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.expect("join").await;

    alice.chat("r", "hello <b>bob</b>", "m-1").await;

    let echo = alice.expect("chat").await;
    assert_eq!(echo["ref"], "m-1");
    assert_eq!(echo["user"], "alice");
    assert_eq!(echo["room"], "r");
    assert_eq!(echo["text"], "hello <b>bob</b>");
    let heard = bob.expect("chat").await;
    assert!(
        heard.get("ref").is_none(),
        "ref leaked to another member: {heard}"
    );
    assert_eq!(heard["id"], echo["id"]);
    assert_eq!(heard["text"], echo["text"]);
    assert_eq!(heard["timestamp"], echo["timestamp"]);
    let timestamp = heard["timestamp"].as_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-11-25T19:30:24.123Z".len(),
        "{timestamp}"
    );
    assert!(timestamp.ends_with('Z'));
}

#[actix_web::test]
async fn ref_reaches_only_the_sending_connection_not_the_same_users_other_tab() {
    let app = spawn_app().await;
    let mut tab1 = app.connect("alice").await;
    let mut tab2 = app.connect("alice").await;
    tab1.join("r").await;
    tab2.join("r").await;

    tab1.chat("r", "from tab one", "t1").await;

    assert_eq!(tab1.expect("chat").await["ref"], "t1");
    let other = tab2.expect("chat").await;
    assert!(other.get("ref").is_none(), "{other}");
}

#[actix_web::test]
async fn a_chat_without_ref_or_with_null_ref_has_no_ref_key() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;

    alice
        .send(json!({"type": "chat", "room": "r", "text": "a"}))
        .await;
    alice
        .send(json!({"type": "chat", "room": "r", "text": "b", "ref": null}))
        .await;

    for text in ["a", "b"] {
        let echo = alice.expect("chat").await;
        assert_eq!(echo["text"], text);
        assert!(echo.get("ref").is_none(), "{echo}");
    }
}

#[actix_web::test]
async fn text_is_stored_and_sent_exactly_as_given() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let text = "  spaced\tout \u{1F600} <img src=x onerror=alert(1)>\n";

    alice.chat("r", text, "1").await;

    assert_eq!(alice.expect("chat").await["text"], text);
    let (_, _, page) = app.get("/api/rooms/r/messages").await;
    assert_eq!(page["messages"][0]["text"], text);
}

#[actix_web::test]
async fn messages_from_one_connection_arrive_everywhere_in_order_with_rising_ids() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 10_000.0;
        c.rate_burst = 10_000.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    let mut carol = app.connect("carol").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.join("r").await;
    }
    alice.expect("join").await;
    alice.expect("join").await;
    bob.expect("join").await;

    // Two senders interleaving; every member must see each sender's
    // messages in order, and ids strictly increasing overall.
    for i in 0..100 {
        alice.chat("r", &format!("a{i}"), &format!("a{i}")).await;
        bob.chat("r", &format!("b{i}"), &format!("b{i}")).await;
    }

    for client in [&mut alice, &mut bob, &mut carol] {
        let (mut next_a, mut next_b, mut last_id) = (0, 0, 0);
        for _ in 0..200 {
            let chat = client.expect("chat").await;
            let id = chat["id"].as_i64().unwrap();
            assert!(id > last_id, "ids must rise: {id} after {last_id}");
            last_id = id;
            let text = chat["text"].as_str().unwrap();
            if let Some(n) = text.strip_prefix('a') {
                assert_eq!(n.parse::<i32>().unwrap(), next_a);
                next_a += 1;
            } else {
                assert_eq!(text[1..].parse::<i32>().unwrap(), next_b);
                next_b += 1;
            }
        }
    }
}

#[actix_web::test]
async fn one_connection_chats_in_several_rooms() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("one").await;
    alice.join("two").await;
    bob.join("two").await;
    alice.expect("join").await;

    alice.chat("one", "only in one", "1").await;
    alice.chat("two", "only in two", "2").await;

    assert_eq!(alice.expect("chat").await["room"], "one");
    assert_eq!(alice.expect("chat").await["room"], "two");
    let heard = bob.expect("chat").await;
    assert_eq!(heard["room"], "two");
    assert_eq!(heard["text"], "only in two");
    bob.expect_silence(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn chat_above_the_rate_limit_is_refused_and_not_stored() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 1.0;
        c.rate_burst = 3.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;

    for i in 0..5 {
        alice.chat("r", &format!("m{i}"), &format!("r{i}")).await;
    }

    // The bucket starts full: the first three pass, the rest are refused
    // with their refs. Errors are immediate; echoes wait for storage, so
    // collect both and compare as sets of refs.
    let mut echoed = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..5 {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("chat") => echoed.push(frame["ref"].as_str().unwrap().to_string()),
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited");
                refused.push(frame["ref"].as_str().unwrap().to_string());
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(echoed, ["r0", "r1", "r2"]);
    refused.sort();
    assert_eq!(refused, ["r3", "r4"]);
    let (_, _, details) = app.get("/api/rooms/r").await;
    assert_eq!(details["messages"], 3);
}

#[actix_web::test]
async fn a_refused_chat_does_not_use_a_rate_token() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 0.001;
        c.rate_burst = 2.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;

    for _ in 0..5 {
        alice.chat("r", "   ", "blank").await;
        alice.expect_error("invalid_text").await;
        alice.chat("elsewhere", "hi", "nj").await;
        alice.expect_error("not_joined").await;
    }
    alice.chat("r", "one", "1").await;
    alice.chat("r", "two", "2").await;
    assert_eq!(alice.expect("chat").await["ref"], "1");
    assert_eq!(alice.expect("chat").await["ref"], "2");
}
