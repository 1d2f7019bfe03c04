//! History on join, recovery with `since`, and history across a restart.

use serde_json::{json, Value};
use testkit::{spawn_app_in, spawn_app_with, Client};

/// Sends `texts` to `room` from `client` and returns the echoed ids.
async fn say_all(client: &mut Client, room: &str, texts: &[String]) -> Vec<i64> {
    for (i, text) in texts.iter().enumerate() {
        client.chat(room, text, &i.to_string()).await;
    }
    let mut ids = Vec::new();
    for _ in texts {
        ids.push(client.expect("chat").await["id"].as_i64().unwrap());
    }
    ids
}

fn texts_of(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[actix_web::test]
async fn a_joiner_gets_the_last_max_history_messages_oldest_first() {
    let app = spawn_app_with(|c| c.max_history = 5).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    say_all(&mut alice, "r", &numbered("m", 8)).await;

    let mut bob = app.connect("bob").await;
    let (history, _) = bob.join("r").await;

    assert_eq!(texts_of(&history), numbered("m", 8)[3..]);
    assert_eq!(history["more"], true);
    let first = &history["messages"][0];
    for field in ["id", "room", "user", "text", "timestamp"] {
        assert!(
            first.get(field).is_some(),
            "history message lacks {field}: {first}"
        );
    }
    assert!(
        first.get("ref").is_none(),
        "ref must never be stored: {first}"
    );
}

#[actix_web::test]
async fn history_says_no_more_when_everything_fits() {
    let app = spawn_app_with(|c| c.max_history = 5).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    say_all(&mut alice, "r", &numbered("m", 5)).await;

    let mut bob = app.connect("bob").await;
    let (history, _) = bob.join("r").await;

    assert_eq!(texts_of(&history), numbered("m", 5));
    assert_eq!(history["more"], false);
}

#[actix_web::test]
async fn since_recovers_what_was_missed_and_more_says_when_to_page_on() {
    let app = spawn_app_with(|c| c.max_history = 5).await;
    let mut alice = app.connect("alice").await;
    let mut noise = app.connect("noise").await;
    alice.join("r").await;
    noise.join("other").await;
    // Interleave another room's messages so ids in "r" are not contiguous.
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.extend(say_all(&mut alice, "r", &[format!("m{i}")]).await);
        say_all(&mut noise, "other", &[format!("n{i}")]).await;
    }

    // Missed little: answered from the room's recent messages.
    let mut bob = app.connect("bob").await;
    bob.send(json!({"type": "join", "room": "r", "since": ids[9]}))
        .await;
    let history = bob.expect("history").await;
    assert_eq!(texts_of(&history), ["m10", "m11"]);
    assert_eq!(history["more"], false);
    bob.expect("presence").await;

    // Missed much: the first MAX_HISTORY after `since`, and `more`.
    let mut carol = app.connect("carol").await;
    carol
        .send(json!({"type": "join", "room": "r", "since": ids[1]}))
        .await;
    let history = carol.expect("history").await;
    assert_eq!(texts_of(&history), ["m2", "m3", "m4", "m5", "m6"]);
    assert_eq!(history["more"], true);
    carol.expect("presence").await;

    // The rest comes from REST with `after`.
    let last_seen = history["messages"][4]["id"].as_i64().unwrap();
    let (_, _, page) = app
        .get(&format!("/api/rooms/r/messages?after={last_seen}"))
        .await;
    let rest: Vec<String> = numbered("m", 12)[7..].to_vec();
    assert_eq!(texts_of(&page), rest);
    assert_eq!(page["more"], false);

    // since 0 is "everything", capped.
    let mut dave = app.connect("dave").await;
    dave.send(json!({"type": "join", "room": "r", "since": 0}))
        .await;
    let history = dave.expect("history").await;
    assert_eq!(texts_of(&history), numbered("m", 5));
    assert_eq!(history["more"], true);

    // since null is the same as no since.
    let mut erin = app.connect("erin").await;
    erin.send(json!({"type": "join", "room": "r", "since": null}))
        .await;
    let history = erin.expect("history").await;
    assert_eq!(texts_of(&history), numbered("m", 12)[7..]);
}

#[actix_web::test]
async fn a_reconnecting_client_sees_each_message_exactly_once() {
    let app = spawn_app_with(|c| c.max_history = 3).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let mut bob = app.connect("bob").await;
    bob.join("r").await;
    alice.expect("join").await;
    let seen = say_all(&mut alice, "r", &numbered("a", 2)).await;
    for _ in 0..2 {
        bob.expect("chat").await;
    }

    // Bob drops; alice goes on talking; bob comes back with since.
    drop(bob);
    alice.expect("leave").await;
    say_all(&mut alice, "r", &numbered("b", 7)).await;
    let mut bob = app.connect("bob").await;
    bob.send(json!({"type": "join", "room": "r", "since": seen[1]}))
        .await;
    let history = bob.expect("history").await;
    bob.expect("presence").await;
    let mut got = texts_of(&history);
    let mut after = history["messages"].as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut more = history["more"] == true;
    while more {
        let (_, _, page) = app
            .get(&format!("/api/rooms/r/messages?after={after}"))
            .await;
        got.extend(texts_of(&page));
        after = page["messages"]
            .as_array()
            .unwrap()
            .last()
            .map_or(after, |m| m["id"].as_i64().unwrap());
        more = page["more"] == true;
    }
    // A live message after the rejoin arrives once, live.
    alice.chat("r", "live", "l").await;
    assert_eq!(bob.expect("chat").await["text"], "live");
    assert_eq!(got, numbered("b", 7));
}

#[actix_web::test]
async fn history_survives_a_restart_on_the_same_file() {
    let app = spawn_app_with(|_| {}).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let ids = say_all(&mut alice, "r", &numbered("before-", 3)).await;
    drop(alice);
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    let mut bob = app.connect("bob").await;
    let (history, _) = bob.join("r").await;
    assert_eq!(texts_of(&history), numbered("before-", 3), "{history}");
    // Ids go on rising after a restart.
    let new_id = say_all(&mut bob, "r", &["after".to_string()]).await[0];
    assert!(new_id > ids[2]);
}

#[actix_web::test]
async fn a_joiner_in_the_middle_of_a_flood_in_a_big_room_meets_it_exactly() {
    // A big room spaces its deliveries (members x 20 us) and holds stored
    // chats until then; a join in the middle must still see each message
    // once: in its history or live, never both, never neither.
    let app = spawn_app_with(|c| {
        c.max_history = 1000;
        c.rate_limit = 10_000.0;
        c.rate_burst = 10_000.0;
    })
    .await;
    let mut members = Vec::new();
    for i in 0..400 {
        let mut member = app.connect(&format!("m{i}")).await;
        member.join("big").await;
        members.push(member);
    }
    let mut sender = app.connect("sender").await;
    sender.join("big").await;
    let mut joiner = app.connect("joiner").await;
    let mut watcher = members.pop().expect("400 members");

    // The flood goes on, five messages a millisecond, until the joiner has
    // its history and then some: so the join always lands while the flood
    // is still arriving at the server, with chats being stored or waiting
    // for the room's next delivery (a room of 400 spaces its deliveries
    // 8 ms apart). The joiner starts once a member has seen `BEFORE` chats
    // delivered.
    const BEFORE: usize = 50;
    const AFTER: usize = 30;
    let joined = std::cell::Cell::new(false);
    let flood = async {
        let mut sent = Vec::new();
        let mut after = 0;
        while after < AFTER {
            let text = format!("f{}", sent.len());
            sender.chat("big", &text, &sent.len().to_string()).await;
            sent.push(text);
            if joined.get() {
                after += 1;
            }
            if sent.len() % 5 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        sender.chat("big", "end", "end").await;
        sent.push("end".to_string());
        sent
    };
    let join = async {
        let mut seen = 0;
        while seen < BEFORE {
            if watcher.recv().await["type"] == "chat" {
                seen += 1;
            }
        }
        let (history, _) = joiner.join("big").await;
        joined.set(true);
        let mut got = texts_of(&history);
        let in_history = got.len();
        while got.last().map(String::as_str) != Some("end") {
            let frame = joiner.recv().await;
            if frame["type"] == "chat" {
                got.push(frame["text"].as_str().unwrap().to_string());
            }
        }
        (got, in_history)
    };
    let (texts, (got, in_history)) = tokio::join!(flood, join);

    // The join fell in the middle: part of the flood came in its history,
    // the rest live, and together they are the flood exactly once, in order.
    assert!(
        in_history >= BEFORE && in_history < texts.len() - AFTER,
        "{in_history} of {} chats came in the history",
        texts.len()
    );
    assert_eq!(got, texts);
    joiner
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
}

#[actix_web::test]
async fn unread_is_counted_exactly_below_the_limit_and_as_the_limit_above_it() {
    // Counting unread chats scans the backlog above the marker at every
    // join; past 1,000 the count stops there (docs/PROTOCOL.md).
    const LIMIT: usize = 1000;
    let app = spawn_app_with(|c| {
        c.rate_limit = 1_000_000.0;
        c.rate_burst = 1_000_000.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    alice.join("big").await;
    let ids = say_all(&mut alice, "big", &numbered("chat ", LIMIT + 3)).await;

    // A new member has read nothing: 1,003 unread, counted as 1,000.
    let mut bob = app.connect("bob").await;
    let (history, _) = bob.join("big").await;
    assert_eq!(
        (history["last_read"].clone(), history["unread"].clone()),
        (json!(0), json!(LIMIT))
    );

    // Three read leave exactly 1,000; four read, 999: exact below it.
    for (read, unread) in [(2, LIMIT), (3, LIMIT - 1)] {
        let id = ids[read];
        bob.send(json!({"type": "read", "room": "big", "id": id, "ref": "r"}))
            .await;
        assert_eq!(bob.expect("read").await["id"], json!(id));
        let mut tab = app.connect("bob").await;
        let (history, _) = tab.join("big").await;
        assert_eq!(
            (history["last_read"].clone(), history["unread"].clone()),
            (json!(id), json!(unread)),
            "after reading up to chat {read}"
        );
    }
}
