//! Joining, leaving and disconnecting, and what the other members see.

use std::time::Duration;

use serde_json::json;
use testkit::spawn_app;

#[actix_web::test]
async fn a_joiner_gets_history_then_presence_including_itself() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;

    let (history, presence) = alice.join("general").await;

    assert_eq!(history["room"], "general");
    assert_eq!(history["messages"], json!([]));
    assert_eq!(history["more"], false);
    assert_eq!(presence["room"], "general");
    assert_eq!(presence["users"], json!(["alice"]));
}

#[actix_web::test]
async fn others_hear_a_join_but_the_joiner_does_not() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("general").await;

    let mut bob = app.connect("bob").await;
    let (_, presence) = bob.join("general").await;

    assert_eq!(presence["users"], json!(["alice", "bob"]));
    let join = alice.expect("join").await;
    assert_eq!(join["room"], "general");
    assert_eq!(join["user"], "bob");
    assert!(join["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    bob.expect_silence(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn presence_is_sorted_by_code_point_and_lists_each_user_once() {
    let app = spawn_app().await;
    let mut clients = Vec::new();
    for user in ["carol", "Bob", "alice", "_x", "carol"] {
        let mut client = app.connect(user).await;
        client.join("r").await;
        clients.push(client);
    }
    let mut last = app.connect("zed").await;
    let (_, presence) = last.join("r").await;
    assert_eq!(
        presence["users"],
        json!(["Bob", "_x", "alice", "carol", "zed"])
    );
}

#[actix_web::test]
async fn a_second_tab_of_the_same_user_is_silent_to_the_room() {
    let app = spawn_app().await;
    let mut bob = app.connect("bob").await;
    bob.join("r").await;
    let mut alice_tab1 = app.connect("alice").await;
    alice_tab1.join("r").await;
    assert_eq!(bob.expect("join").await["user"], "alice");

    let mut alice_tab2 = app.connect("alice").await;
    let (_, presence) = alice_tab2.join("r").await;
    assert_eq!(presence["users"], json!(["alice", "bob"]));

    // The second tab's arrival and its leave are not news to the room.
    bob.expect_silence(Duration::from_millis(300)).await;
    alice_tab2.send(json!({"type": "leave", "room": "r"})).await;
    let ack = alice_tab2.expect("leave").await;
    assert_eq!(ack["user"], "alice");
    bob.expect_silence(Duration::from_millis(300)).await;
    alice_tab1.expect_silence(Duration::from_millis(100)).await;

    // The last tab leaving is.
    drop(alice_tab1);
    let leave = bob.expect("leave").await;
    assert_eq!(leave["user"], "alice");
    assert_eq!(leave["room"], "r");
}

#[actix_web::test]
async fn leave_is_acknowledged_and_heard_by_the_rest() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.expect("join").await;

    bob.send(json!({"type": "leave", "room": "r"})).await;

    assert_eq!(bob.expect("leave").await["user"], "bob");
    let heard = alice.expect("leave").await;
    assert_eq!(heard["user"], "bob");
    assert_eq!(heard["room"], "r");
    // Out of the room: chatting there is refused.
    bob.chat("r", "still here?", "x").await;
    bob.expect_error("not_joined").await;
}

#[actix_web::test]
async fn a_disconnect_leaves_every_room() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("one").await;
    alice.join("two").await;
    let mut bob = app.connect("bob").await;
    bob.join("one").await;
    bob.join("two").await;
    alice.expect("join").await;
    alice.expect("join").await;

    bob.ws.close(None).await.expect("close is sent");
    drop(bob);

    let mut rooms = vec![
        alice.expect("leave").await["room"].clone(),
        alice.expect("leave").await["room"].clone(),
    ];
    rooms.sort_by_key(|r| r.to_string());
    assert_eq!(rooms, vec![json!("one"), json!("two")]);
}

#[actix_web::test]
async fn a_room_stops_being_active_when_its_last_member_leaves() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("fleeting").await;
    alice.chat("fleeting", "hello", "1").await;
    alice.expect("chat").await;
    let (_, _, rooms) = app.get("/api/rooms").await;
    assert_eq!(rooms["rooms"], json!([{"name": "fleeting", "users": 1}]));

    alice
        .send(json!({"type": "leave", "room": "fleeting"}))
        .await;
    alice.expect("leave").await;

    let (_, _, rooms) = app.get("/api/rooms").await;
    assert_eq!(rooms["rooms"], json!([]));
    let (status, _, details) = app.get("/api/rooms/fleeting").await;
    assert_eq!(status, 200);
    assert_eq!(details["active"], false);
    assert_eq!(details["messages"], 1);

    // Rejoining brings its history back.
    let (history, _) = alice.join("fleeting").await;
    assert_eq!(history["messages"][0]["text"], "hello");
}
