//! Private rooms and direct messages: a `join` with `dm` opens the room of
//! two users, nobody else gets in by any means, REST does not show it, and
//! a token's `rooms` claim limits its joins. All of it needs AUTH_SECRET.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{spawn_app, spawn_app_with, Client, TestApp};

const SECRET: &str = "direct-messages-test-secret-0123456789";

/// The room of alice and bob: `printf 'alice\nbob' | sha256sum` starts
/// with 1cb15457d1ddab60.
const ALICE_BOB: &str = "dm-1cb15457d1ddab60";

async fn secured() -> TestApp {
    spawn_app_with(|c| c.auth_secret = Some(SECRET.into())).await
}

/// A token for `claims` (with `exp` an hour from now added).
fn token(mut claims: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    claims["exp"] = json!(now + 3600);
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("the test token is signed")
}

async fn signed_in(app: &TestApp, user: &str) -> Client {
    let token = token(json!({ "sub": user }));
    Client::connect_query(app.port, &format!("token={token}")).await
}

/// Sends `join` with `dm`; returns its `history` and `presence`.
async fn join_dm(client: &mut Client, with: &str) -> (Value, Value) {
    client.send(json!({"type": "join", "dm": with})).await;
    let history = client.expect("history").await;
    let presence = client.expect("presence").await;
    (history, presence)
}

#[actix_web::test]
async fn the_two_users_meet_in_one_room_from_either_side() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    let mut bob = signed_in(&app, "bob").await;

    let (history, presence) = join_dm(&mut alice, "bob").await;
    assert_eq!(history["room"], ALICE_BOB);
    assert_eq!(history["dm"], json!(["alice", "bob"]));
    assert_eq!(presence["room"], ALICE_BOB);
    assert_eq!(presence["users"], json!(["alice"]));

    let (history, presence) = join_dm(&mut bob, "alice").await;
    assert_eq!(history["room"], ALICE_BOB);
    assert_eq!(history["dm"], json!(["alice", "bob"]));
    assert_eq!(presence["users"], json!(["alice", "bob"]));
    let joined = alice.expect("join").await;
    assert_eq!(
        (&joined["room"], &joined["user"]),
        (&json!(ALICE_BOB), &json!("bob"))
    );

    // It is a room like any other for chat, by its name.
    bob.chat(ALICE_BOB, "just between us", "1").await;
    assert_eq!(bob.expect("chat").await["ref"], "1");
    let heard = alice.expect("chat").await;
    assert_eq!(
        (&heard["text"], &heard["user"]),
        (&json!("just between us"), &json!("bob"))
    );

    // While it is open, either of the two may join it by name too; the
    // history carries the pair as well.
    let mut bob_again = signed_in(&app, "bob").await;
    let (history, _) = bob_again.join(ALICE_BOB).await;
    assert_eq!(history["dm"], json!(["alice", "bob"]));
    assert_eq!(history["messages"][0]["text"], "just between us");

    // And a later `dm` join finds the stored history.
    alice.close().await;
    bob.close().await;
    bob_again.close().await;
    let mut alice = signed_in(&app, "alice").await;
    let (history, _) = join_dm(&mut alice, "bob").await;
    assert_eq!(history["messages"][0]["text"], "just between us");
}

#[actix_web::test]
async fn a_third_user_is_refused_the_room_by_any_means() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    let mut carol = signed_in(&app, "carol").await;

    // Not open yet: by name nobody gets in (the server cannot tell who
    // its two users are until one of them opens it with `dm`).
    carol
        .send(json!({"type": "join", "room": ALICE_BOB, "ref": "closed"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "closed");
    alice.send(json!({"type": "join", "room": ALICE_BOB})).await;
    alice.expect_error("forbidden").await;

    join_dm(&mut alice, "bob").await;
    alice.chat(ALICE_BOB, "for bob only", "1").await;
    alice.expect("chat").await;

    // Open: by name still refused, even with a token that allows every room.
    carol
        .send(json!({"type": "join", "room": ALICE_BOB, "ref": "open"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "open");
    let mut everywhere = Client::connect_query(
        app.port,
        &format!(
            "token={}",
            token(json!({"sub": "carol", "rooms": ["*"], "mod": true}))
        ),
    )
    .await;
    everywhere
        .send(json!({"type": "join", "room": ALICE_BOB}))
        .await;
    everywhere.expect_error("forbidden").await;

    // A `dm` join of carol's opens carol's own rooms, never theirs.
    let (history, _) = join_dm(&mut carol, "alice").await;
    assert_ne!(history["room"], ALICE_BOB);
    assert_eq!(history["dm"], json!(["alice", "carol"]));
    assert_eq!(history["messages"], json!([]));
    let (history, _) = join_dm(&mut carol, "bob").await;
    assert_ne!(history["room"], ALICE_BOB);

    // And she cannot chat there without joining.
    carol.chat(ALICE_BOB, "hi", "2").await;
    carol.expect_error("not_joined").await;
    // Alice heard nobody but herself.
    alice.expect_silence(Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn direct_messages_stay_out_of_rest() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    alice.join("general").await;
    join_dm(&mut alice, "bob").await;
    alice.chat(ALICE_BOB, "secret", "1").await;
    alice.expect("chat").await;

    let (status, _, rooms) = app.get("/api/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"], json!([{"name": "general", "users": 1}]));

    // Active and with a stored message, it answers as if it did not exist.
    for path in [
        format!("/api/rooms/{ALICE_BOB}"),
        format!("/api/rooms/{ALICE_BOB}/messages"),
        format!("/api/rooms/{ALICE_BOB}/messages?after=0"),
        "/api/rooms/dm-nothing-here".to_string(),
    ] {
        let (status, body, _) = app.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("secret"), "{path}: {body}");
    }
    let (_, _, details) = app.get("/api/rooms/nowhere").await;
    let (_, _, hidden) = app.get(&format!("/api/rooms/{ALICE_BOB}")).await;
    assert_eq!(details["error"].is_string(), hidden["error"].is_string());
}

#[actix_web::test]
async fn a_tokens_rooms_claim_limits_its_joins() {
    let app = secured().await;
    let claims = json!({"sub": "tess", "rooms": ["team-*"]});
    let mut tess = Client::connect_query(app.port, &format!("token={}", token(claims))).await;
    let (history, _) = tess.join("team-a").await;
    assert_eq!(history["room"], "team-a");
    tess.send(json!({"type": "join", "room": "general", "ref": "g"}))
        .await;
    assert_eq!(tess.expect_error("forbidden").await["ref"], "g");
    // A direct-message room is a room like any other for the claim.
    tess.send(json!({"type": "join", "dm": "bob", "ref": "d"}))
        .await;
    assert_eq!(tess.expect_error("forbidden").await["ref"], "d");

    let claims = json!({"sub": "tess", "rooms": ["team-*", "dm-*"]});
    let mut tess = Client::connect_query(app.port, &format!("token={}", token(claims))).await;
    let (history, _) = join_dm(&mut tess, "bob").await;
    assert_eq!(history["dm"], json!(["bob", "tess"]));
}

#[actix_web::test]
async fn without_auth_secret_direct_messages_are_off() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice
        .send(json!({"type": "join", "dm": "bob", "ref": "d"}))
        .await;
    assert_eq!(alice.expect_error("forbidden").await["ref"], "d");
    // Nor by name: anyone could claim to be alice.
    alice
        .send(json!({"type": "join", "room": ALICE_BOB, "ref": "n"}))
        .await;
    assert_eq!(alice.expect_error("forbidden").await["ref"], "n");
    // Other rooms are as before.
    alice.join("general").await;
}

#[actix_web::test]
async fn odd_dm_joins() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    alice
        .send(json!({"type": "join", "room": "general", "dm": "bob", "ref": "b"}))
        .await;
    assert_eq!(alice.expect_error("invalid_field").await["ref"], "b");
    alice
        .send(json!({"type": "join", "dm": "not a name"}))
        .await;
    alice.expect_error("invalid_field").await;

    // Yourself: a room of one, for notes.
    let (history, presence) = join_dm(&mut alice, "alice").await;
    assert_eq!(history["dm"], json!(["alice", "alice"]));
    assert_eq!(presence["users"], json!(["alice"]));
    let mut bob = signed_in(&app, "bob").await;
    let room = history["room"].as_str().expect("a room name");
    bob.send(json!({"type": "join", "room": room})).await;
    bob.expect_error("forbidden").await;

    // Twice: already joined, under the room's name.
    alice.send(json!({"type": "join", "dm": "alice"})).await;
    alice.expect_error("already_joined").await;
}
