//! The REST API and the health check: each answer, its 400 and 404 cases,
//! and no 500 for any bad input.

use serde_json::json;
use testkit::{spawn_app, spawn_app_with, Client};

async fn chat_n(client: &mut Client, room: &str, n: usize) -> Vec<i64> {
    for i in 0..n {
        client.chat(room, &format!("m{i}"), &i.to_string()).await;
    }
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(client.expect("chat").await["id"].as_i64().unwrap());
    }
    ids
}

#[actix_web::test]
async fn health_is_ok_with_json() {
    let app = spawn_app().await;
    let (status, content_type, body) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(body["status"], "ok");
}

#[actix_web::test]
async fn the_page_is_served_at_the_root() {
    let app = spawn_app().await;
    let response = awc::Client::default()
        .get(app.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
}

#[actix_web::test]
async fn rooms_lists_active_rooms_sorted_with_distinct_user_counts() {
    let app = spawn_app().await;
    let (status, content_type, body) = app.get("/api/rooms").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(body, json!({"rooms": []}));

    let mut alice1 = app.connect("alice").await;
    let mut alice2 = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice1.join("zeta").await;
    alice2.join("zeta").await;
    bob.join("zeta").await;
    bob.join("Alpha").await;

    let (_, _, body) = app.get("/api/rooms").await;
    assert_eq!(
        body,
        json!({"rooms": [{"name": "Alpha", "users": 1}, {"name": "zeta", "users": 2}]})
    );
}

#[actix_web::test]
async fn room_details_for_active_stored_and_unknown_rooms() {
    let app = spawn_app().await;
    let mut bob = app.connect("bob").await;
    let mut alice = app.connect("alice").await;
    bob.join("r").await;
    alice.join("r").await;
    chat_n(&mut alice, "r", 2).await;

    let (status, content_type, body) = app.get("/api/rooms/r").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(
        body,
        json!({"name": "r", "active": true, "users": ["alice", "bob"], "messages": 2})
    );

    drop(alice);
    drop(bob);
    // Once both are gone the room is inactive but still known.
    let mut inactive = json!(null);
    for _ in 0..100 {
        let (_, _, body) = app.get("/api/rooms/r").await;
        if body["active"] == false {
            inactive = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        inactive,
        json!({"name": "r", "active": false, "users": [], "messages": 2})
    );

    let (status, content_type, body) = app.get("/api/rooms/never-used").await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    assert!(body["error"].is_string());

    let (status, _, body) = app.get("/api/rooms/bad.name").await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
}

#[actix_web::test]
async fn messages_pages_backwards_with_before_and_forwards_with_after() {
    let app = spawn_app().await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let ids = chat_n(&mut alice, "r", 7).await;
    let texts = |body: &serde_json::Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, content_type, newest) = app.get("/api/rooms/r/messages?limit=3").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(newest["room"], "r");
    assert_eq!(texts(&newest), ["m4", "m5", "m6"]);
    assert_eq!(newest["more"], true);

    let (_, _, older) = app
        .get(&format!("/api/rooms/r/messages?limit=3&before={}", ids[4]))
        .await;
    assert_eq!(texts(&older), ["m1", "m2", "m3"]);
    assert_eq!(older["more"], true);
    let (_, _, oldest) = app
        .get(&format!("/api/rooms/r/messages?limit=3&before={}", ids[1]))
        .await;
    assert_eq!(texts(&oldest), ["m0"]);
    assert_eq!(oldest["more"], false);

    let (_, _, forward) = app
        .get(&format!("/api/rooms/r/messages?limit=4&after={}", ids[0]))
        .await;
    assert_eq!(texts(&forward), ["m1", "m2", "m3", "m4"]);
    assert_eq!(forward["more"], true);
    let (_, _, end) = app
        .get(&format!("/api/rooms/r/messages?after={}", ids[4]))
        .await;
    assert_eq!(texts(&end), ["m5", "m6"]);
    assert_eq!(end["more"], false);

    let (_, _, all) = app.get("/api/rooms/r/messages?unknown=1").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 7);
    assert_eq!(all["messages"][0]["user"], "alice");
    assert_eq!(all["messages"][0]["id"], ids[0]);

    let (status, _, empty) = app.get("/api/rooms/quiet/messages").await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({"room": "quiet", "messages": [], "more": false})
    );
}

#[actix_web::test]
async fn bad_query_parameters_get_400_with_json_never_500() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=%2B5",
        "limit=1.0",
        "limit=",
        "limit=abc",
        "before=9223372036854775808",
        "after=99999999999999999999999",
        "before=1&after=2",
        "before=%FF",
        "after=%201",
    ] {
        let (status, content_type, body) = app.get(&format!("/api/rooms/r/messages?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(content_type, "application/json", "{query}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
    let (status, _, _) = app
        .get("/api/rooms/r/messages?before=9223372036854775807&limit=200")
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = app
        .get(&format!("/api/rooms/{}/messages", "x".repeat(65)))
        .await;
    assert_eq!(status, 400);
    let (status, content_type, _) = app.get("/api/nothing/here").await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
}

#[actix_web::test]
async fn health_reports_the_live_counts() {
    let app = spawn_app_with(|_| {}).await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let (_, _, body) = app.get("/health").await;
    assert_eq!(body["connections"], 1);
    assert_eq!(body["rooms"], 1);
}

#[actix_web::test]
async fn health_reports_the_configured_limits() {
    let app = spawn_app_with(|c| {
        c.max_message_len = 10;
        c.max_rooms_per_connection = 3;
        c.max_history = 7;
    })
    .await;
    let (status, _, body) = app.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["limits"],
        json!({"max_message_len": 10, "max_rooms_per_connection": 3, "max_history": 7})
    );

    // The limit reported is the one the server enforces: 11 characters
    // are refused as too long, 10 are accepted.
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    alice.chat("r", &"x".repeat(11), "long").await;
    alice.expect_error("invalid_text").await;
    alice.chat("r", &"x".repeat(10), "fits").await;
    assert_eq!(alice.expect("chat").await["text"], "x".repeat(10));
}

#[actix_web::test]
async fn health_reports_the_default_limits() {
    let app = spawn_app().await;
    let (_, _, body) = app.get("/health").await;
    assert_eq!(body["limits"]["max_message_len"], 4096);
    assert_eq!(body["limits"]["max_rooms_per_connection"], 32);
    assert_eq!(body["limits"]["max_history"], 50);
}
