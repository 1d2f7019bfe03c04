//! The chat features of version 1.1: edit, delete, reactions, replies,
//! typing, read markers and idempotent chat, on one node with SQLite (the
//! cluster versions are in `cluster.rs`). Each test drives real clients and
//! checks what the other members, a fresh join, a recovering client and
//! REST see.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::{spawn_app_in, spawn_app_with, Client, TestApp};

use crate::helpers::stored_messages;

/// A server whose chat rate is out of the way.
async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.rate_limit = 1_000.0;
        c.rate_burst = 1_000.0;
    })
    .await
}

/// The next frame that is not presence (`join`, `leave`, `presence`).
async fn next(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if !matches!(frame["type"].as_str(), Some("join" | "leave" | "presence")) {
            return frame;
        }
    }
}

/// The next frame that is not presence, which must be of type `kind`.
async fn expect(client: &mut Client, kind: &str) -> Value {
    let frame = next(client).await;
    assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
    frame
}

/// The next frame that is not presence, which must be an `error` with
/// `code`.
async fn expect_error(client: &mut Client, code: &str) -> Value {
    let frame = expect(client, "error").await;
    assert_eq!(frame["code"], code, "{frame}");
    frame
}

/// Sends a chat and returns the sender's echo.
async fn say(client: &mut Client, room: &str, text: &str) -> Value {
    client.chat(room, text, text).await;
    let echo = expect(client, "chat").await;
    assert_eq!(echo["ref"], text);
    echo
}

fn id(frame: &Value) -> i64 {
    frame["id"].as_i64().expect("an id")
}

/// Joins `room` with `since`; returns the `history` frame.
async fn join_since(client: &mut Client, room: &str, since: Option<i64>) -> Value {
    client
        .send(json!({"type": "join", "room": room, "since": since}))
        .await;
    let history = client.expect("history").await;
    client.expect("presence").await;
    history
}

/// Two members of room `r`, each having seen the other join.
async fn alice_and_bob(app: &TestApp) -> (Client, Client) {
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.expect("join").await;
    (alice, bob)
}

#[actix_web::test]
async fn an_edit_reaches_everyone_and_every_later_view_shows_the_new_text() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let chat = say(&mut alice, "r", "helo").await;
    expect(&mut bob, "chat").await;

    alice
        .send(
            json!({"type": "edit", "room": "r", "target": id(&chat), "text": "hello", "ref": "e1"}),
        )
        .await;
    let own = expect(&mut alice, "edit").await;
    let heard = expect(&mut bob, "edit").await;
    assert_eq!(own["ref"], "e1");
    assert!(heard.get("ref").is_none(), "{heard}");
    for edit in [&own, &heard] {
        assert_eq!(edit["target"], chat["id"]);
        assert_eq!(edit["text"], "hello");
        assert_eq!(edit["user"], "alice");
        assert!(id(edit) > id(&chat), "an edit takes its place in the order");
    }

    let (history, _) = app.connect("carol").await.join("r").await;
    let item = &history["messages"][0];
    assert_eq!(item["type"], "chat");
    assert_eq!(item["id"], chat["id"]);
    assert_eq!(item["text"], "hello");
    assert_eq!(item["edited_at"], own["timestamp"]);
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    let stored = stored_messages(app.port, "r").await;
    assert_eq!(stored.len(), 1, "REST lists chats only: {stored:?}");
    assert_eq!(stored[0]["text"], "hello");
    assert_eq!(stored[0]["edited_at"], own["timestamp"]);
    let (_, _, room) = app.get("/api/rooms/r").await;
    assert_eq!(room["messages"], 1, "the count counts chats only");
}

#[actix_web::test]
async fn only_the_author_edits_or_deletes_and_only_chats_of_this_room() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let chat = say(&mut alice, "r", "mine").await;
    expect(&mut bob, "chat").await;
    let target = id(&chat);

    for frame in [
        json!({"type": "edit", "room": "r", "target": target, "text": "yours?", "ref": "x"}),
        json!({"type": "delete", "room": "r", "target": target, "ref": "x"}),
    ] {
        bob.send(frame).await;
        let error = expect_error(&mut bob, "forbidden").await;
        assert_eq!(error["ref"], "x");
    }
    let mut elsewhere = app.connect("alice").await;
    elsewhere.join("other").await;
    for frame in [
        json!({"type": "edit", "room": "other", "target": target, "text": "t"}),
        json!({"type": "delete", "room": "other", "target": target}),
        json!({"type": "react", "room": "other", "target": target, "emoji": "👍"}),
        json!({"type": "chat", "room": "other", "text": "t", "reply_to": target}),
        json!({"type": "edit", "room": "other", "target": 999_999, "text": "t"}),
    ] {
        elsewhere.send(frame).await;
        expect_error(&mut elsewhere, "not_found").await;
    }
    // An edit is a change, not a chat: it cannot be edited itself.
    alice
        .send(json!({"type": "edit", "room": "r", "target": target, "text": "v2"}))
        .await;
    let edit = expect(&mut alice, "edit").await;
    expect(&mut bob, "edit").await;
    alice
        .send(json!({"type": "edit", "room": "r", "target": id(&edit), "text": "v3"}))
        .await;
    expect_error(&mut alice, "not_found").await;
    bob.send(json!({"type": "edit", "room": "nowhere", "target": target, "text": "t"}))
        .await;
    expect_error(&mut bob, "not_joined").await;
    bob.send(json!({"type": "edit", "room": "r", "target": target, "text": "   "}))
        .await;
    expect_error(&mut bob, "invalid_text").await;
    bob.send(json!({"type": "react", "room": "r", "target": "1", "emoji": "👍"}))
        .await;
    expect_error(&mut bob, "invalid_field").await;

    // Nothing refused reached anyone else or changed the message.
    bob.expect_silence(Duration::from_millis(200)).await;
    let stored = stored_messages(app.port, "r").await;
    assert_eq!(stored[0]["text"], "v2");
}

#[actix_web::test]
async fn a_deleted_chat_keeps_its_place_without_its_text_or_reactions() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let first = say(&mut alice, "r", "secret").await;
    let second = say(&mut alice, "r", "still here").await;
    bob.send(json!({"type": "react", "room": "r", "target": id(&first), "emoji": "👍"}))
        .await;
    expect(&mut bob, "chat").await;
    expect(&mut bob, "chat").await;
    expect(&mut bob, "reaction").await;
    expect(&mut alice, "reaction").await;

    alice
        .send(json!({"type": "delete", "room": "r", "target": id(&first), "ref": "d"}))
        .await;
    let own = expect(&mut alice, "delete").await;
    assert_eq!(own["ref"], "d");
    assert_eq!(own["target"], first["id"]);
    assert!(own.get("text").is_none(), "{own}");
    expect(&mut bob, "delete").await;

    let (history, _) = app.connect("carol").await.join("r").await;
    let items = history["messages"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], first["id"]);
    assert_eq!(items[0]["deleted"], true);
    assert_eq!(items[0]["text"], "");
    assert!(items[0].get("reactions").is_none(), "{}", items[0]);
    assert_eq!(items[1]["text"], "still here");
    assert!(items[1].get("deleted").is_none());
    let stored = stored_messages(app.port, "r").await;
    assert_eq!(
        (stored[0]["deleted"].clone(), stored[0]["text"].clone()),
        (json!(true), json!(""))
    );
    assert_eq!(stored[1]["id"], second["id"]);

    // A deleted chat takes nothing more.
    for frame in [
        json!({"type": "edit", "room": "r", "target": id(&first), "text": "back"}),
        json!({"type": "delete", "room": "r", "target": id(&first)}),
        json!({"type": "react", "room": "r", "target": id(&first), "emoji": "🎉"}),
        json!({"type": "chat", "room": "r", "text": "re", "reply_to": id(&first)}),
    ] {
        alice.send(frame).await;
        expect_error(&mut alice, "not_found").await;
    }
    // Its text is gone from the replay too.
    let mut late = app.connect("dave").await;
    let replay = join_since(&mut late, "r", Some(0)).await;
    let items = replay["messages"].as_array().unwrap();
    assert_eq!(items[0]["id"], first["id"]);
    assert_eq!(items[0]["text"], "", "{replay}");
}

#[actix_web::test]
async fn reactions_count_each_user_once_per_emoji_and_a_repeat_changes_nothing() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let chat = say(&mut alice, "r", "react to me").await;
    expect(&mut bob, "chat").await;
    let react = |emoji: &str, on: bool, reference: &str| json!({"type": "react", "room": "r", "target": chat["id"], "emoji": emoji, "on": on, "ref": reference});

    bob.send(react("👍", true, "b1")).await;
    let own = expect(&mut bob, "reaction").await;
    assert_eq!(
        (own["emoji"].clone(), own["on"].clone(), own["ref"].clone()),
        (json!("👍"), json!(true), json!("b1"))
    );
    assert!(id(&own) > id(&chat));
    let heard = expect(&mut alice, "reaction").await;
    assert!(heard.get("ref").is_none());
    assert_eq!(heard["user"], "bob");

    // Again: bob alone hears the unchanged state, with id 0.
    bob.send(react("👍", true, "b2")).await;
    let same = expect(&mut bob, "reaction").await;
    assert_eq!(
        (same["id"].clone(), same["on"].clone(), same["ref"].clone()),
        (json!(0), json!(true), json!("b2"))
    );
    alice.send(react("👍", true, "a1")).await;
    expect(&mut alice, "reaction").await;
    alice.send(react("🎉", false, "a2")).await;
    let unchanged = expect(&mut alice, "reaction").await;
    assert_eq!(
        (unchanged["id"].clone(), unchanged["on"].clone()),
        (json!(0), json!(false))
    );
    let alices = expect(&mut bob, "reaction").await;
    assert_eq!(alices["user"], "alice");
    bob.expect_silence(Duration::from_millis(200)).await;

    let (history, _) = app.connect("carol").await.join("r").await;
    assert_eq!(
        history["messages"][0]["reactions"],
        json!({"👍": ["alice", "bob"]})
    );
    bob.send(react("👍", false, "b3")).await;
    let off = expect(&mut bob, "reaction").await;
    assert_eq!(off["on"], false);
    expect(&mut alice, "reaction").await;
    let stored = stored_messages(app.port, "r").await;
    assert_eq!(stored[0]["reactions"], json!({"👍": ["alice"]}));
    for bad in ["", "a b", "123456789"] {
        bob.send(react(bad, true, "bad")).await;
        expect_error(&mut bob, "invalid_field").await;
    }
}

#[actix_web::test]
async fn a_reply_names_the_chat_it_answers_in_every_view() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let question = say(&mut alice, "r", "tea?").await;
    expect(&mut bob, "chat").await;
    bob.send(
        json!({"type": "chat", "room": "r", "text": "yes", "reply_to": question["id"], "ref": "y"}),
    )
    .await;
    let answer = expect(&mut bob, "chat").await;
    assert_eq!(answer["reply_to"], question["id"]);
    assert_eq!(expect(&mut alice, "chat").await["reply_to"], question["id"]);
    let (history, _) = app.connect("carol").await.join("r").await;
    assert_eq!(history["messages"][1]["reply_to"], question["id"]);
    assert!(history["messages"][0].get("reply_to").is_none());
    let stored = stored_messages(app.port, "r").await;
    assert_eq!(stored[1]["reply_to"], question["id"]);
    bob.send(json!({"type": "chat", "room": "r", "text": "?", "reply_to": 424_242}))
        .await;
    expect_error(&mut bob, "not_found").await;
}

#[actix_web::test]
async fn typing_reaches_other_users_only_at_most_every_two_seconds_and_is_never_stored() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let mut alice_tab = app.connect("alice").await;
    alice_tab.join("r").await;

    for _ in 0..5 {
        alice.send(json!({"type": "typing", "room": "r"})).await;
    }
    let typing = expect(&mut bob, "typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "r", "user": "alice"})
    );
    bob.expect_silence(Duration::from_millis(300)).await;
    alice_tab.expect_silence(Duration::from_millis(10)).await;
    alice.expect_silence(Duration::from_millis(10)).await;
    // Another connection has its own throttle.
    alice_tab.send(json!({"type": "typing", "room": "r"})).await;
    expect(&mut bob, "typing").await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    alice.send(json!({"type": "typing", "room": "r"})).await;
    expect(&mut bob, "typing").await;

    let metrics = testkit::scrape(app.port).await;
    assert_eq!(metrics.value("chatterbox_typing_forwarded_total"), 3.0);
    alice
        .send(json!({"type": "typing", "room": "elsewhere"}))
        .await;
    expect_error(&mut alice, "not_joined").await;
    let mut late = app.connect("carol").await;
    let replay = join_since(&mut late, "r", Some(0)).await;
    assert_eq!(replay["messages"], json!([]), "typing is never stored");
}

#[actix_web::test]
async fn read_markers_move_forward_reach_every_tab_and_come_back_on_join() {
    let dir = tempfile::TempDir::new().unwrap();
    let app = spawn_app_in(dir, |_| {}).await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(id(&say(&mut alice, "r", text).await));
        expect(&mut bob, "chat").await;
    }
    let mut bob_tab = app.connect("bob").await;
    let (history, _) = bob_tab.join("r").await;
    assert_eq!(
        (history["last_read"].clone(), history["unread"].clone()),
        (json!(0), json!(3))
    );

    bob.send(json!({"type": "read", "room": "r", "id": ids[1], "ref": "m"}))
        .await;
    let ack = expect(&mut bob, "read").await;
    assert_eq!(
        ack,
        json!({"type": "read", "room": "r", "id": ids[1], "ref": "m"})
    );
    let other = expect(&mut bob_tab, "read").await;
    assert_eq!(other, json!({"type": "read", "room": "r", "id": ids[1]}));
    alice.expect_silence(Duration::from_millis(100)).await;

    // Backwards: acknowledged with the stored marker, to the sender alone
    // (nothing changed for the other tabs).
    bob.send(json!({"type": "read", "room": "r", "id": ids[0], "ref": "back"}))
        .await;
    let ack = expect(&mut bob, "read").await;
    assert_eq!(
        (ack["id"].clone(), ack["ref"].clone()),
        (json!(ids[1]), json!("back"))
    );
    bob_tab.expect_silence(Duration::from_millis(100)).await;
    let metrics = testkit::scrape(app.port).await;
    assert_eq!(
        metrics.value("chatterbox_read_markers_stored_total"),
        1.0,
        "a read that moves nothing stores nothing"
    );
    bob.send(json!({"type": "read", "room": "r", "id": ids[2] + 1_000, "ref": "future"}))
        .await;
    assert_eq!(
        expect_error(&mut bob, "invalid_field").await["ref"],
        "future"
    );

    // The marker survives a restart.
    drop((alice, bob, bob_tab));
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let mut bob = app.connect("bob").await;
    let (history, _) = bob.join("r").await;
    assert_eq!(
        (history["last_read"].clone(), history["unread"].clone()),
        (json!(ids[1]), json!(1))
    );
    let (history, _) = app.connect("alice").await.join("r").await;
    assert_eq!(
        (history["last_read"].clone(), history["unread"].clone()),
        (json!(0), json!(0)),
        "markers are per user, and your own chats are never unread"
    );
}

#[actix_web::test]
async fn a_chat_resent_with_its_key_comes_back_as_the_original_even_after_a_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let app = spawn_app_in(dir, |_| {}).await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    let keyed = |text: &str, key: &str, reference: &str| json!({"type": "chat", "room": "r", "text": text, "key": key, "ref": reference});
    alice.send(keyed("once", "k-1", "a")).await;
    let original = expect(&mut alice, "chat").await;
    expect(&mut bob, "chat").await;

    alice.send(keyed("once (resent)", "k-1", "b")).await;
    let again = expect(&mut alice, "chat").await;
    assert_eq!(again["ref"], "b");
    for field in ["id", "text", "timestamp", "user"] {
        assert_eq!(again[field], original[field], "{field}");
    }
    bob.expect_silence(Duration::from_millis(200)).await;
    // Keys are per user: bob's k-1 is a new chat.
    bob.send(keyed("mine", "k-1", "c")).await;
    assert_ne!(expect(&mut bob, "chat").await["id"], original["id"]);
    expect(&mut alice, "chat").await;

    drop((alice, bob));
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    alice.send(keyed("after restart", "k-1", "d")).await;
    let after = expect(&mut alice, "chat").await;
    assert_eq!(
        (after["id"].clone(), after["ref"].clone()),
        (original["id"].clone(), json!("d"))
    );
    let texts: Vec<Value> = stored_messages(app.port, "r")
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [json!("once"), json!("mine")],
        "nothing stored twice"
    );
}

#[actix_web::test]
async fn two_sends_of_one_key_in_one_batch_store_one_chat() {
    let app = app().await;
    let (mut alice, mut bob) = alice_and_bob(&app).await;
    // Sent back to back, both usually land in one group commit.
    for reference in ["a", "b", "c"] {
        alice
            .send(
                json!({"type": "chat", "room": "r", "text": "hi", "key": "same", "ref": reference}),
            )
            .await;
    }
    let echoes = [
        expect(&mut alice, "chat").await,
        expect(&mut alice, "chat").await,
        expect(&mut alice, "chat").await,
    ];
    let refs: Vec<&Value> = echoes.iter().map(|e| &e["ref"]).collect();
    assert_eq!(
        refs,
        [&json!("a"), &json!("b"), &json!("c")],
        "in the order sent"
    );
    assert!(echoes.iter().all(|e| e["id"] == echoes[0]["id"]));
    expect(&mut bob, "chat").await;
    bob.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(stored_messages(app.port, "r").await.len(), 1);
}

/// Applies a replay of changes to chats in their current state, as a
/// client does.
fn apply(state: &mut Vec<Value>, change: &Value) {
    let target = &change["target"];
    let find = |state: &mut Vec<Value>| state.iter_mut().position(|c| &c["id"] == target);
    match change["type"].as_str() {
        Some("chat") => state.push(change.clone()),
        Some("edit") => {
            if let Some(i) = find(state) {
                state[i]["text"] = change["text"].clone();
                state[i]["edited_at"] = change["timestamp"].clone();
            }
        }
        Some("delete") => {
            if let Some(i) = find(state) {
                let chat = state[i].as_object_mut().unwrap();
                chat.insert("deleted".into(), json!(true));
                chat.insert("text".into(), json!(""));
                chat.remove("edited_at");
                chat.remove("reactions");
            }
        }
        Some("reaction") => {
            if let Some(i) = find(state) {
                let emoji = change["emoji"].as_str().unwrap().to_string();
                let user = change["user"].clone();
                let chat = state[i].as_object_mut().unwrap();
                let reactions = chat.entry("reactions").or_insert(json!({}));
                let users = reactions
                    .as_object_mut()
                    .unwrap()
                    .entry(emoji.clone())
                    .or_insert(json!([]));
                let list = users.as_array_mut().unwrap();
                list.retain(|u| u != &user);
                if change["on"] == true {
                    list.push(user);
                    list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
                if list.is_empty() {
                    reactions.as_object_mut().unwrap().remove(&emoji);
                }
                if reactions.as_object().unwrap().is_empty() {
                    chat.remove("reactions");
                }
            }
        }
        other => panic!("unexpected change {other:?}"),
    }
}

/// A client that reconnects with `since` and applies what it missed ends
/// in the state of one that never left; from the room's cache and from the
/// database alike (`MAX_HISTORY` small, so the second replay reads it).
#[actix_web::test]
async fn a_replay_with_since_brings_a_client_to_the_state_of_one_that_never_left() {
    for max_history in [50, 3] {
        let app = spawn_app_with(|c| {
            c.max_history = max_history;
            c.rate_limit = 1_000.0;
            c.rate_burst = 1_000.0;
        })
        .await;
        let (mut alice, mut bob) = alice_and_bob(&app).await;
        let start = say(&mut alice, "r", "before").await;
        expect(&mut bob, "chat").await;
        // Bob goes away; a lot happens.
        drop(bob);
        let mut ids = Vec::new();
        for text in ["a", "b", "c", "d"] {
            ids.push(say(&mut alice, "r", text).await);
        }
        let changes = [
            json!({"type": "edit", "room": "r", "target": id(&start), "text": "before!"}),
            json!({"type": "react", "room": "r", "target": id(&ids[0]), "emoji": "🎉"}),
            json!({"type": "react", "room": "r", "target": id(&ids[1]), "emoji": "🎉"}),
            json!({"type": "react", "room": "r", "target": id(&ids[0]), "emoji": "🎉", "on": false}),
            json!({"type": "edit", "room": "r", "target": id(&ids[2]), "text": "c2"}),
            json!({"type": "delete", "room": "r", "target": id(&ids[2])}),
            json!({"type": "chat", "room": "r", "text": "e", "reply_to": id(&ids[1])}),
        ];
        for change in changes {
            alice.send(change).await;
            let answer = next(&mut alice).await;
            assert_ne!(answer["type"], "error", "{answer}");
        }

        // Bob's view when he left, brought up to date with the replay.
        let mut bob = app.connect("bob").await;
        let mut since = id(&start);
        let mut replayed = Vec::new();
        loop {
            let history = join_since(&mut bob, "r", Some(since)).await;
            for item in history["messages"].as_array().unwrap() {
                assert!(item.get("ref").is_none(), "{item}");
                assert!(id(item) > since, "each change once, in order");
                since = id(item);
                replayed.push(item.clone());
            }
            if history["more"] == false {
                break;
            }
            bob.send(json!({"type": "leave", "room": "r"})).await;
            bob.expect("leave").await;
        }
        assert_eq!(
            replayed.len(),
            4 + 7,
            "every change, max_history={max_history}"
        );
        let mut state = vec![start.clone()];
        state[0].as_object_mut().unwrap().remove("ref");
        for change in &replayed {
            apply(&mut state, change);
        }
        // A client that never left sees what a fresh join sees.
        let mut fresh = stored_messages(app.port, "r").await;
        for chat in fresh.iter_mut().chain(state.iter_mut()) {
            chat.as_object_mut().unwrap().remove("ref");
        }
        assert_eq!(state, fresh, "max_history={max_history}");
        assert_eq!(fresh[3]["deleted"], true);
        assert_eq!(fresh[0]["text"], "before!");
    }
}

#[actix_web::test]
async fn edits_deletes_and_reactions_spend_chat_tokens() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 0.001;
        c.rate_burst = 3.0;
    })
    .await;
    let (mut alice, _bob) = alice_and_bob(&app).await;
    let chat = say(&mut alice, "r", "one").await;
    alice
        .send(json!({"type": "edit", "room": "r", "target": id(&chat), "text": "1"}))
        .await;
    expect(&mut alice, "edit").await;
    alice
        .send(json!({"type": "react", "room": "r", "target": id(&chat), "emoji": "x"}))
        .await;
    expect(&mut alice, "reaction").await;
    alice
        .send(json!({"type": "delete", "room": "r", "target": id(&chat), "ref": "d"}))
        .await;
    assert_eq!(expect_error(&mut alice, "rate_limited").await["ref"], "d");
    // Typing and read markers spend none.
    alice
        .send(json!({"type": "read", "room": "r", "id": id(&chat)}))
        .await;
    expect(&mut alice, "read").await;
}
