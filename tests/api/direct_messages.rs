//! Private rooms and direct messages: a `join` with `dm` opens the room of
//! two users, nobody else gets in by any means, REST does not show it, and
//! a token's `rooms` claim limits its joins. All of it needs AUTH_SECRET.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{spawn_app, spawn_app_with, Client, ServerProcess, TestApp};

use crate::helpers::CHATTERBOX;

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
    signed_in_at(app.port, user).await
}

async fn signed_in_at(port: u16, user: &str) -> Client {
    let token = token(json!({ "sub": user }));
    Client::connect_query(port, &format!("token={token}")).await
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

#[actix_web::test]
async fn after_a_restart_either_user_joins_by_name_and_nobody_else_does() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("chat.db");
    let env = [("AUTH_SECRET", SECRET)];
    let mut server = ServerProcess::start(CHATTERBOX, &db, &env);
    let mut alice = signed_in_at(server.port, "alice").await;
    join_dm(&mut alice, "bob").await;
    alice.chat(ALICE_BOB, "before the restart", "1").await;
    alice.expect("chat").await;
    alice.close().await;
    server.signal("TERM");
    assert_eq!(server.exited().await, Some(0));

    // A new process: the room is not open, and nobody has sent `dm` to it.
    let server = ServerProcess::start(CHATTERBOX, &db, &env);
    let mut bob = signed_in_at(server.port, "bob").await;
    let (history, presence) = bob.join(ALICE_BOB).await;
    assert_eq!(history["dm"], json!(["alice", "bob"]));
    assert_eq!(history["messages"][0]["text"], "before the restart");
    assert_eq!(presence["users"], json!(["bob"]));
    bob.chat(ALICE_BOB, "got it", "2").await;
    assert_eq!(bob.expect("chat").await["ref"], "2");

    // Open now, and closed again: carol is refused either way.
    let mut carol = signed_in_at(server.port, "carol").await;
    carol
        .send(json!({"type": "join", "room": ALICE_BOB, "ref": "open"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "open");
    bob.close().await;
    let mut alice = signed_in_at(server.port, "alice").await;
    let (history, _) = alice.join(ALICE_BOB).await;
    assert_eq!(history["messages"][1]["text"], "got it");
    alice.close().await;
    carol
        .send(json!({"type": "join", "room": ALICE_BOB, "ref": "closed"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "closed");
    // A `dm-` name no `dm` join ever opened is refused to everyone.
    carol
        .send(json!({"type": "join", "room": "dm-0000000000000000", "ref": "never"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "never");
}

/// `GET /api/dms` with `authorization` (if any): status and body as JSON.
async fn list_dms(port: u16, authorization: Option<&str>) -> (u16, Value) {
    let client = awc::Client::default();
    let mut req = client.get(format!("http://127.0.0.1:{port}/api/dms"));
    if let Some(value) = authorization {
        req = req.insert_header(("authorization", value));
    }
    let mut response = req.send().await.expect("GET /api/dms answers");
    let status = response.status().as_u16();
    let body = response.body().await.expect("a body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn dms_of(port: u16, user: &str) -> Value {
    let bearer = format!("Bearer {}", token(json!({ "sub": user })));
    let (status, body) = list_dms(port, Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    body["rooms"].clone()
}

#[actix_web::test]
async fn a_user_lists_the_dms_others_opened_with_them_and_nobody_elses() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    join_dm(&mut alice, "bob").await;
    alice.chat(ALICE_BOB, "one", "1").await;
    let first = alice.expect("chat").await["id"].clone();
    alice.chat(ALICE_BOB, "two", "2").await;
    let last = alice.expect("chat").await["id"].clone();
    let mut carol = signed_in(&app, "carol").await;
    let (history, _) = join_dm(&mut carol, "dave").await;
    let carol_dave = history["room"].clone();

    // Bob never joined it: it is listed all the same, both chats unread.
    assert_eq!(
        dms_of(app.port, "bob").await,
        json!([{"room": ALICE_BOB, "with": "alice", "last_id": last, "unread": 2}])
    );
    // Your own chats are never unread to you.
    assert_eq!(
        dms_of(app.port, "alice").await,
        json!([{"room": ALICE_BOB, "with": "bob", "last_id": last, "unread": 0}])
    );
    // Carol sees her own room (no chat yet), never alice and bob's.
    assert_eq!(
        dms_of(app.port, "carol").await,
        json!([{"room": carol_dave, "with": "dave", "last_id": 0, "unread": 0}])
    );

    // Bob reads the first: one unread left. And the most recent first.
    let mut bob = signed_in(&app, "bob").await;
    bob.join(ALICE_BOB).await;
    bob.send(json!({"type": "read", "room": ALICE_BOB, "id": first, "ref": "r"}))
        .await;
    bob.expect("read").await;
    let (history, _) = join_dm(&mut bob, "dave").await;
    let bob_dave = history["room"].clone();
    assert_eq!(
        dms_of(app.port, "bob").await,
        json!([
            {"room": ALICE_BOB, "with": "alice", "last_id": last, "unread": 1},
            {"room": bob_dave, "with": "dave", "last_id": 0, "unread": 0},
        ])
    );
    // A token whose `rooms` do not allow direct messages lists none.
    let narrow = token(json!({"sub": "bob", "rooms": ["team-*"]}));
    let (status, body) = list_dms(app.port, Some(&format!("Bearer {narrow}"))).await;
    assert_eq!((status, body), (200, json!({"rooms": []})));
}

#[actix_web::test]
async fn the_listing_needs_the_users_own_valid_token() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    join_dm(&mut alice, "bob").await;
    let forged = encode(
        &Header::default(),
        &json!({"sub": "bob", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(b"not-the-secret-at-all-0123456789"),
    )
    .unwrap();
    for authorization in [
        None,
        Some(format!("Bearer {forged}")),
        Some("Bearer not-a-jwt".to_string()),
        Some(format!("Basic {}", token(json!({"sub": "bob"})))),
    ] {
        let (status, body) = list_dms(app.port, authorization.as_deref()).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert!(body["error"].is_string(), "{body}");
        assert!(!body.to_string().contains(ALICE_BOB), "{body}");
    }

    // Without AUTH_SECRET there are no direct messages to list.
    let open = spawn_app().await;
    let (status, body) = list_dms(open.port, Some(&format!("Bearer {forged}"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[actix_web::test]
async fn a_chat_in_a_dm_reaches_the_other_users_connections_outside_it_as_a_notice() {
    let app = secured().await;
    let mut alice = signed_in(&app, "alice").await;
    let mut alice_elsewhere = signed_in(&app, "alice").await;
    let mut bob_in = signed_in(&app, "bob").await;
    let mut bob_out = signed_in(&app, "bob").await;
    let mut carol = signed_in(&app, "carol").await;
    join_dm(&mut alice, "bob").await;
    join_dm(&mut bob_in, "alice").await;
    alice.expect("join").await;
    // Bob's other connection is in some other room, not this one.
    bob_out.join("general").await;

    alice.chat(ALICE_BOB, "are you there?", "1").await;
    let chat = alice.expect("chat").await;
    assert_eq!(bob_in.expect("chat").await["id"], chat["id"]);
    let notice = bob_out.expect("direct").await;
    assert_eq!(
        notice,
        json!({"type": "direct", "room": ALICE_BOB, "with": "alice", "id": chat["id"]})
    );

    // Bob answers: alice's connection outside the room hears of it.
    bob_in.chat(ALICE_BOB, "yes", "2").await;
    let answer = bob_in.expect("chat").await;
    assert_eq!(alice.expect("chat").await["id"], answer["id"]);
    let notice = alice_elsewhere.expect("direct").await;
    assert_eq!(
        (&notice["with"], &notice["id"]),
        (&json!("bob"), &answer["id"])
    );

    // Nobody else, and no connection in the room, hears a notice; nor
    // does a writer of its own chat.
    let quiet = Duration::from_millis(300);
    carol.expect_silence(quiet).await;
    bob_in.expect_silence(quiet).await;
    alice.expect_silence(quiet).await;
    bob_out.expect_silence(quiet).await;
    alice_elsewhere.expect_silence(quiet).await;
}
