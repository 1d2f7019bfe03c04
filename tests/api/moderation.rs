//! Moderation (version 1.1, control plane): a moderator's token (`mod`
//! claim) lets it delete anyone's chat, kick, mute, ban and unban over the
//! WebSocket; everyone else is refused; each action is stored in the
//! room's order, broadcast, replayed with `since` and audited.

use std::time::Duration;

use chatterbox::auth::Claims;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{spawn_app_with, Client, TestApp};

const SECRET: &str = "a-moderation-test-secret-of-some-length";

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.rate_limit = 1_000.0;
        c.rate_burst = 1_000.0;
    })
    .await
}

/// A token for `user`, a moderator as `moderator` says (`null`: none).
fn token(user: &str, moderator: Value) -> String {
    let mut claims = serde_json::to_value(Claims {
        sub: user.into(),
        exp: chrono::Utc::now().timestamp() as u64 + 600,
        iat: None,
        moderator: None,
        rooms: None,
    })
    .unwrap();
    if !moderator.is_null() {
        claims["mod"] = moderator;
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn connect(app: &TestApp, user: &str, moderator: Value) -> Client {
    Client::connect_query(app.port, &format!("token={}", token(user, moderator))).await
}

/// The next frame that is not presence.
async fn next(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if !matches!(frame["type"].as_str(), Some("join" | "presence")) {
            return frame;
        }
    }
}

async fn expect(client: &mut Client, kind: &str) -> Value {
    let frame = next(client).await;
    assert_eq!(frame["type"], kind, "expected {kind}, got {frame}");
    frame
}

async fn expect_error(client: &mut Client, code: &str) -> Value {
    let frame = expect(client, "error").await;
    assert_eq!(frame["code"], code, "{frame}");
    frame
}

/// A moderator of room `r` and two members, all joined.
async fn room(app: &TestApp) -> (Client, Client, Client) {
    let mut moderator = connect(app, "mod", json!(["r", "team-*"])).await;
    let mut alice = connect(app, "alice", Value::Null).await;
    let mut bob = connect(app, "bob", Value::Null).await;
    for client in [&mut moderator, &mut alice, &mut bob] {
        client.join("r").await;
    }
    (moderator, alice, bob)
}

#[actix_web::test]
async fn a_moderator_deletes_anyones_chat_as_a_moderation_everyone_sees_and_replays() {
    let app = app().await;
    let (mut moderator, mut alice, mut bob) = room(&app).await;
    alice.chat("r", "spam", "s").await;
    let chat = expect(&mut alice, "chat").await;
    expect(&mut bob, "chat").await;
    expect(&mut moderator, "chat").await;

    moderator
        .send(json!({"type": "delete", "room": "r", "target": chat["id"], "ref": "d"}))
        .await;
    let own = expect(&mut moderator, "moderation").await;
    assert_eq!(own["ref"], "d");
    for frame in [
        &own,
        &expect(&mut alice, "moderation").await,
        &expect(&mut bob, "moderation").await,
    ] {
        assert_eq!(frame["action"], "delete");
        assert_eq!(frame["target"], chat["id"]);
        assert_eq!(frame["user"], "alice");
        assert_eq!(frame["by"], "mod");
        assert!(frame["id"].as_i64() > chat["id"].as_i64());
    }
    let mut late = connect(&app, "carol", Value::Null).await;
    let (history, _) = late.join("r").await;
    assert_eq!(history["messages"][0]["deleted"], true);
    let mut again = connect(&app, "carol", Value::Null).await;
    again
        .send(json!({"type": "join", "room": "r", "since": chat["id"]}))
        .await;
    let replay = again.expect("history").await;
    assert_eq!(replay["messages"][0]["type"], "moderation", "{replay}");
    assert_eq!(replay["messages"][0]["action"], "delete");

    // Not a moderator, or not of this room: refused.
    bob.chat("r", "mine", "m").await;
    let bobs = expect(&mut bob, "chat").await;
    expect(&mut alice, "chat").await;
    alice
        .send(json!({"type": "delete", "room": "r", "target": bobs["id"], "ref": "x"}))
        .await;
    expect_error(&mut alice, "forbidden").await;
}

#[actix_web::test]
async fn each_action_needs_a_moderator_of_that_room() {
    let app = app().await;
    let (mut moderator, mut alice, _bob) = room(&app).await;
    for action in ["kick", "mute", "ban", "unban"] {
        let mut frame = json!({"type": action, "room": "r", "user": "bob", "ref": action});
        if action == "mute" {
            frame["seconds"] = json!(60);
        }
        alice.send(frame).await;
        assert_eq!(expect_error(&mut alice, "forbidden").await["ref"], action);
    }
    // A moderator of team-* only is not one of `elsewhere`.
    moderator
        .send(json!({"type": "join", "room": "elsewhere"}))
        .await;
    expect(&mut moderator, "history").await;
    moderator
        .send(json!({"type": "kick", "room": "elsewhere", "user": "bob"}))
        .await;
    expect_error(&mut moderator, "forbidden").await;
    for bad in [
        json!({"type": "kick", "room": "r", "user": "no one!"}),
        json!({"type": "mute", "room": "r", "user": "bob"}),
        json!({"type": "mute", "room": "r", "user": "bob", "seconds": 0}),
        json!({"type": "ban", "room": "r", "user": "bob", "seconds": "1"}),
        json!({"type": "kick", "room": "r", "user": "bob", "reason": 5}),
    ] {
        moderator.send(bad.clone()).await;
        let error = expect(&mut moderator, "error").await;
        assert_eq!(error["code"], "invalid_field", "{bad}: {error}");
    }
}

#[actix_web::test]
async fn a_kicked_user_leaves_the_room_is_told_why_and_may_join_again() {
    let app = app().await;
    let (mut moderator, mut alice, mut bob) = room(&app).await;
    let mut bob_tab = connect(&app, "bob", Value::Null).await;
    bob_tab.join("r").await;
    moderator
        .send(
            json!({"type": "kick", "room": "r", "user": "bob", "reason": "calm down", "ref": "k"}),
        )
        .await;
    let own = expect(&mut moderator, "moderation").await;
    assert_eq!(
        (
            own["action"].clone(),
            own["user"].clone(),
            own["reason"].clone(),
            own["ref"].clone()
        ),
        (json!("kick"), json!("bob"), json!("calm down"), json!("k"))
    );
    for tab in [&mut bob, &mut bob_tab] {
        assert_eq!(expect(tab, "moderation").await["action"], "kick");
        let leave = expect(tab, "leave").await;
        assert_eq!(
            (leave["room"].clone(), leave["user"].clone()),
            (json!("r"), json!("bob"))
        );
    }
    assert_eq!(expect(&mut alice, "moderation").await["action"], "kick");
    let leave = expect(&mut alice, "leave").await;
    assert_eq!(leave["user"], "bob");
    alice.expect_silence(Duration::from_millis(100)).await;
    // Out: a chat is refused; a join works again.
    bob.chat("r", "hello?", "h").await;
    expect_error(&mut bob, "not_joined").await;
    bob.join("r").await;
    bob.chat("r", "back", "b").await;
    assert_eq!(expect(&mut bob, "chat").await["text"], "back");
}

#[actix_web::test]
async fn a_muted_user_s_chats_are_refused_until_it_ends_or_is_lifted() {
    let app = app().await;
    let (mut moderator, mut alice, mut bob) = room(&app).await;
    moderator
        .send(json!({"type": "mute", "room": "r", "user": "bob", "seconds": 1}))
        .await;
    let mute = expect(&mut moderator, "moderation").await;
    assert!(mute["until"].is_string(), "{mute}");
    expect(&mut alice, "moderation").await;
    expect(&mut bob, "moderation").await;
    bob.chat("r", "can you hear me", "q").await;
    assert_eq!(expect_error(&mut bob, "muted").await["ref"], "q");
    bob.send(json!({"type": "typing", "room": "r"})).await;
    alice.expect_silence(Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    bob.chat("r", "now?", "n").await;
    assert_eq!(expect(&mut bob, "chat").await["text"], "now?");
    expect(&mut alice, "chat").await;
    expect(&mut moderator, "chat").await;

    moderator
        .send(json!({"type": "mute", "room": "r", "user": "bob", "seconds": 3600}))
        .await;
    expect(&mut moderator, "moderation").await;
    expect(&mut bob, "moderation").await;
    bob.chat("r", "again", "a").await;
    expect_error(&mut bob, "muted").await;
    moderator
        .send(json!({"type": "unban", "room": "r", "user": "bob"}))
        .await;
    assert_eq!(
        expect(&mut moderator, "moderation").await["action"],
        "unban"
    );
    expect(&mut bob, "moderation").await;
    bob.chat("r", "free", "f").await;
    assert_eq!(expect(&mut bob, "chat").await["text"], "free");
}

#[actix_web::test]
async fn a_ban_removes_the_user_and_refuses_its_joins_across_a_restart_until_unbanned() {
    let dir = tempfile::TempDir::new().unwrap();
    let configure = |c: &mut chatterbox::config::Config| {
        c.auth_secret = Some(SECRET.into());
    };
    let app = testkit::spawn_app_in(dir, configure).await;
    let (mut moderator, _alice, mut bob) = room(&app).await;
    moderator
        .send(json!({"type": "ban", "room": "r", "user": "bob", "reason": "spam"}))
        .await;
    let ban = expect(&mut moderator, "moderation").await;
    assert!(ban.get("until").is_none(), "until unbanned: {ban}");
    expect(&mut bob, "moderation").await;
    expect(&mut bob, "leave").await;
    bob.send(json!({"type": "join", "room": "r", "ref": "j"}))
        .await;
    assert_eq!(expect_error(&mut bob, "banned").await["ref"], "j");
    bob.chat("r", "x", "x").await;
    expect_error(&mut bob, "not_joined").await;
    bob.join("other").await;

    drop((moderator, bob));
    let dir = app.stop().await;
    let app = testkit::spawn_app_in(dir, configure).await;
    let mut bob = connect(&app, "bob", Value::Null).await;
    bob.send(json!({"type": "join", "room": "r"})).await;
    expect_error(&mut bob, "banned").await;
    let mut moderator = connect(&app, "mod", json!(true)).await;
    moderator.join("r").await;
    moderator
        .send(json!({"type": "unban", "room": "r", "user": "bob"}))
        .await;
    expect(&mut moderator, "moderation").await;
    bob.join("r").await;
}

#[actix_web::test]
async fn without_auth_secret_there_are_no_moderators() {
    let app = spawn_app_with(|_| {}).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    alice
        .send(json!({"type": "kick", "room": "r", "user": "bob"}))
        .await;
    expect_error(&mut alice, "forbidden").await;
}
