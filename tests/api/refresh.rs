//! Token refresh on a live connection (`refresh` → `refreshed`), the
//! closing of expired connections (CLOSE_EXPIRED, 4001), and the minting
//! of control-plane tokens with `chatterbox token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatterbox::auth;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{spawn_app_with, Client, TestApp};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const SECRET: &str = "refresh-test-secret-0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// A token signed with `secret` for these claims.
fn signed(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("the test token is signed")
}

/// A token for `user` expiring at `exp`, with `extra` claims merged in.
fn token(user: &str, exp: u64, extra: Value) -> String {
    let mut claims = json!({"sub": user, "exp": exp});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    signed(claims, SECRET)
}

async fn secured(close_expired: bool) -> TestApp {
    spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.close_expired = close_expired;
    })
    .await
}

async fn connect(app: &TestApp, token: &str) -> Client {
    Client::connect_query(app.port, &format!("token={token}")).await
}

/// The connection still works: a chat in `room` comes back.
async fn still_chats(client: &mut Client, room: &str, text: &str) {
    client.chat(room, text, text).await;
    let echo = client.expect("chat").await;
    assert_eq!(echo["text"], text);
}

async fn refresh(client: &mut Client, token: &str, reference: &str) -> Value {
    client
        .send(json!({"type": "refresh", "token": token, "ref": reference}))
        .await;
    client.recv().await
}

fn rfc3339(exp: u64) -> String {
    chrono::DateTime::from_timestamp(exp as i64, 0)
        .expect("a valid time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[actix_web::test]
async fn a_refresh_carries_the_connection_past_its_first_expiry_and_not_the_second() {
    let app = secured(true).await;
    let first_exp = now() + 3;
    let mut alice = connect(&app, &token("alice", first_exp, json!({}))).await;
    alice.join("lobby").await;
    still_chats(&mut alice, "lobby", "before").await;

    let second_exp = now() + 6;
    let answer = refresh(&mut alice, &token("alice", second_exp, json!({})), "r1").await;
    assert_eq!(
        answer,
        json!({"type": "refreshed", "exp": rfc3339(second_exp), "ref": "r1"})
    );

    // Past the first token's exp the connection is open and in its room.
    while now() <= first_exp {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_chats(&mut alice, "lobby", "after the first exp").await;

    // Past the second, with no refresh, it is closed with 4001.
    assert_eq!(alice.expect_close().await, CloseCode::from(4001));
    assert!(
        now() >= second_exp,
        "closed at {} before the refreshed exp {second_exp}",
        now()
    );
}

#[actix_web::test]
async fn without_a_refresh_an_expired_connection_is_closed_with_4001() {
    let app = secured(true).await;
    let exp = now() + 2;
    let mut bob = connect(&app, &token("bob", exp, json!({}))).await;
    bob.join("lobby").await;
    assert_eq!(bob.expect_close().await, CloseCode::from(4001));
    assert!(now() >= exp);
}

#[actix_web::test]
async fn with_close_expired_off_an_expired_connection_stays_open() {
    let app = secured(false).await;
    let exp = now() + 1;
    let mut carol = connect(&app, &token("carol", exp, json!({}))).await;
    carol.join("lobby").await;
    while now() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    still_chats(&mut carol, "lobby", "long after exp").await;
    // And a refresh still answers, telling the new exp.
    let exp = now() + 60;
    let answer = refresh(&mut carol, &token("carol", exp, json!({})), "r").await;
    assert_eq!(answer["exp"], rfc3339(exp));
}

#[actix_web::test]
async fn a_bad_refresh_is_invalid_token_and_changes_nothing() {
    let app = secured(true).await;
    let exp = now() + 4;
    let mut alice = connect(&app, &token("alice", exp, json!({}))).await;
    alice.join("lobby").await;

    let later = now() + 3600;
    let bad = [
        ("another user", token("bob", later, json!({}))),
        ("expired", token("alice", now() - 3600, json!({}))),
        (
            "wrong secret",
            signed(json!({"sub": "alice", "exp": later}), "other"),
        ),
        ("too long", token("alice", now() + 30 * 86400, json!({}))),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, bad_token) in &bad {
        let answer = refresh(&mut alice, bad_token, what).await;
        assert_eq!(answer["type"], "error", "{what}: {answer}");
        assert_eq!(answer["code"], "invalid_token", "{what}: {answer}");
        assert_eq!(answer["ref"], *what);
        still_chats(&mut alice, "lobby", what).await;
    }
    // A refresh frame with no token at all is a malformed frame.
    alice.send(json!({"type": "refresh", "ref": "x"})).await;
    assert_eq!(alice.expect_error("invalid_field").await["ref"], "x");

    // None of them extended the connection: it ends at its first exp.
    assert_eq!(alice.expect_close().await, CloseCode::from(4001));
    assert!(now() >= exp);
}

#[actix_web::test]
async fn without_auth_secret_a_refresh_is_forbidden() {
    let app = spawn_app_with(|c| c.close_expired = true).await;
    let mut dave = app.connect("dave").await;
    dave.join("lobby").await;
    let answer = refresh(&mut dave, &token("dave", now() + 60, json!({})), "r").await;
    assert_eq!(answer["code"], "forbidden", "{answer}");
    assert_eq!(answer["ref"], "r");
    still_chats(&mut dave, "lobby", "still here").await;
    let (_, _, health) = app.get("/health").await;
    assert_eq!(health["token_refresh_url"], Value::Null);
}

#[actix_web::test]
async fn a_refresh_replaces_the_rooms_claim_and_leaves_rooms_it_no_longer_allows() {
    let app = secured(false).await;
    let exp = now() + 60;
    let mut erin = connect(&app, &token("erin", exp, json!({"rooms": ["team-*"]}))).await;
    erin.join("team-a").await;
    erin.join("team-b").await;
    erin.send(json!({"type": "join", "room": "general"})).await;
    erin.expect_error("forbidden").await;
    let mut watcher = connect(&app, &token("watcher", exp, json!({}))).await;
    watcher.join("team-a").await;
    assert_eq!(erin.expect("join").await["user"], "watcher");

    let narrower = token("erin", exp, json!({"rooms": ["team-b", "general"]}));
    let answer = refresh(&mut erin, &narrower, "r").await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert_eq!(answer["left"], json!(["team-a"]));
    // As after its own `leave`, the connection gets `leave` for the room.
    let own = erin.expect("leave").await;
    assert_eq!(
        (&own["room"], &own["user"]),
        (&json!("team-a"), &json!("erin"))
    );
    // The others in team-a see erin go.
    let leave = watcher.expect("leave").await;
    assert_eq!(
        (&leave["room"], &leave["user"]),
        (&json!("team-a"), &json!("erin"))
    );

    erin.chat("team-a", "still here?", "gone").await;
    erin.expect_error("not_joined").await;
    still_chats(&mut erin, "team-b", "kept").await;
    erin.join("general").await;
    erin.send(json!({"type": "join", "room": "team-a"})).await;
    erin.expect_error("forbidden").await;

    // A refresh that allows every room leaves nothing.
    let answer = refresh(&mut erin, &token("erin", exp, json!({})), "r2").await;
    assert_eq!(answer.get("left"), None, "{answer}");
}

#[actix_web::test]
async fn health_tells_the_page_where_to_refresh() {
    let app = spawn_app_with(|c| {
        c.auth_secret = Some(SECRET.into());
        c.token_refresh_url = Some("/auth/chat-token".into());
    })
    .await;
    let (_, _, health) = app.get("/health").await;
    assert_eq!(health["token_refresh_url"], "/auth/chat-token");
}

fn token_command(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("token")
        .args(args)
        .env("AUTH_SECRET", SECRET)
        .env_remove("MAX_TOKEN_LIFETIME")
        .output()
        .expect("the binary runs")
}

fn claims_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout.clone()).expect("UTF-8");
    let claims = auth::verify(SECRET, token.trim(), Duration::from_secs(86400)).expect("valid");
    serde_json::to_value(claims).expect("claims serialize")
}

#[test]
fn the_token_subcommand_mints_moderator_and_room_tokens() {
    let plain = claims_of(&token_command(&["--user", "ann"]));
    assert_eq!((plain.get("mod"), plain.get("rooms")), (None, None));

    let everywhere = claims_of(&token_command(&["--user", "ann", "--mod"]));
    assert_eq!(everywhere["mod"], true);

    let some = claims_of(&token_command(&[
        "--user",
        "ann",
        "--mod-rooms",
        "help,team-*",
        "--rooms",
        "help,team-*,general",
    ]));
    assert_eq!(some["mod"], json!(["help", "team-*"]));
    assert_eq!(some["rooms"], json!(["help", "team-*", "general"]));

    for bad in [
        &["--user", "ann", "--rooms", "no room"][..],
        &["--user", "ann", "--rooms", ""][..],
        &["--user", "ann", "--mod", "--mod-rooms", "help"][..],
    ] {
        let out = token_command(bad);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(out.stdout.is_empty(), "{bad:?} printed a token");
    }
}
