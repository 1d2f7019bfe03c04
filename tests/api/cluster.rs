//! Cluster mode: several nodes on one real PostgreSQL server (a throwaway
//! one per test, see `testkit::PgServer`), real WebSocket clients on each.
//! Nodes run in-process, except where a node must be killed.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chatterbox::config::{Config, Secret};
use chatterbox::startup::Application;
use serde_json::{json, Value};
use testkit::{spawn_app_with, Client, PgServer, ServerProcess, TestApp};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{connect_signed, CHATTERBOX};

/// A node of the cluster on `url`, chat rate limits out of the way.
async fn node(url: &str, id: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|config| {
        config.database_url = Some(Secret::from(url));
        config.node_id = Some(id.to_string());
        config.rate_limit = 10_000.0;
        config.rate_burst = 10_000.0;
        configure(config);
    })
    .await
}

/// Reads frames until `n` chats arrived; returns them, skipping presence.
async fn chats(client: &mut Client, n: usize) -> Vec<Value> {
    let mut chats = Vec::new();
    while chats.len() < n {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("chat") => chats.push(frame),
            Some("join" | "leave" | "presence") => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }
    chats
}

/// Asserts that no chat arrives for `quiet` (presence may: other nodes'
/// joins can come after a flood that started at once).
async fn no_more_chats(client: &mut Client, quiet: Duration) {
    let deadline = Instant::now() + quiet;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(left, futures_util::StreamExt::next(&mut client.ws)).await
        else {
            return;
        };
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(
                frame["type"], "chat",
                "a chat after all were received: {frame}"
            );
        }
    }
}

/// Waits until the node on `port` lists `user` in `general`.
async fn until_listed(port: u16, user: &str) {
    let deadline = Instant::now() + testkit::WAIT;
    loop {
        let (_, _, room) = testkit::get_json(port, "/api/rooms/general").await;
        if room["users"]
            .as_array()
            .is_some_and(|u| u.contains(&json!(user)))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never listed: {room}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next `join` or `leave` frame, skipping chats.
async fn next_presence_event(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if matches!(frame["type"].as_str(), Some("join" | "leave")) {
            return frame;
        }
    }
}

#[actix_web::test]
async fn three_nodes_deliver_every_message_once_in_one_order_to_everyone() {
    let Some(pg) = PgServer::start_or_skip("three_nodes_deliver_every_message") else {
        return;
    };
    let url = pg.url();
    let nodes = [
        node(&url, "a", |_| {}).await,
        node(&url, "b", |_| {}).await,
        node(&url, "c", |_| {}).await,
    ];
    // Two senders on each node, all in one room.
    let mut clients = Vec::new();
    for (n, app) in nodes.iter().enumerate() {
        for s in 0..2 {
            let mut client = app.connect(&format!("u{n}{s}")).await;
            client.join("general").await;
            clients.push(client);
        }
    }
    const EACH: usize = 100;
    let total = EACH * clients.len();
    // Everyone sends at once, so the nodes' batches interleave.
    let sends = clients
        .iter_mut()
        .enumerate()
        .map(|(c, client)| async move {
            for i in 0..EACH {
                client
                    .chat("general", &format!("{c}:{i}"), &format!("r{c}:{i}"))
                    .await;
            }
        });
    futures_util::future::join_all(sends).await;

    let mut orders = Vec::new();
    for (c, client) in clients.iter_mut().enumerate() {
        let got = chats(client, total).await;
        let ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "client {c}: ids rise with no repeat: {ids:?}"
        );
        // Each sender's messages in the order sent, its own with its ref.
        let mut next: HashMap<String, usize> = HashMap::new();
        for message in &got {
            let text = message["text"].as_str().unwrap();
            let (sender, i) = text.split_once(':').unwrap();
            let expected = next.entry(sender.to_string()).or_default();
            assert_eq!(i.parse::<usize>().unwrap(), *expected, "client {c}: {text}");
            *expected += 1;
            let own = sender == c.to_string();
            assert_eq!(
                message.get("ref").is_some(),
                own,
                "client {c}: only its own copies carry a ref: {message}"
            );
        }
        no_more_chats(client, Duration::from_millis(300)).await;
        orders.push(ids);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "every member on every node sees one order"
    );
    // The shared history holds them all, in that order, on any node.
    let stored: Vec<i64> = crate::helpers::stored_messages(nodes[2].port, "general")
        .await
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, orders[0]);
    // The nodes really heard each other.
    let metrics = testkit::scrape(nodes[1].port).await;
    assert!(metrics.value("chatterbox_cluster_notifications_received_total") >= 1.0);
    assert!(metrics.value("chatterbox_cluster_catch_up_reads_total") >= 1.0);
    assert_eq!(metrics.value("chatterbox_cluster_listener_up"), 1.0);
}

#[actix_web::test]
async fn a_user_on_two_nodes_is_listed_once_and_leaves_with_the_last_connection() {
    let Some(pg) = PgServer::start_or_skip("a_user_on_two_nodes_is_listed_once") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;

    let mut bob = b.connect("bob").await;
    bob.join("general").await;
    until_listed(a.port, "bob").await;
    let mut alice_a = a.connect("alice").await;
    let (_, presence) = alice_a.join("general").await;
    assert_eq!(
        presence["users"],
        json!(["alice", "bob"]),
        "bob is on node b"
    );
    let join = next_presence_event(&mut bob).await;
    assert_eq!(
        (join["type"].clone(), join["user"].clone()),
        (json!("join"), json!("alice"))
    );

    // A second tab on the other node: nobody hears a second join.
    let mut alice_b = b.connect("alice").await;
    let (_, presence) = alice_b.join("general").await;
    assert_eq!(presence["users"], json!(["alice", "bob"]));
    bob.expect_silence(Duration::from_millis(500)).await;

    // REST, on a third view of it, counts each user once.
    let (_, _, rooms) = a.get("/api/rooms").await;
    assert_eq!(rooms["rooms"], json!([{"name": "general", "users": 2}]));
    let (_, _, room) = a.get("/api/rooms/general").await;
    assert_eq!(room["users"], json!(["alice", "bob"]));

    // Closing one tab: alice is still here through the other.
    alice_a.close().await;
    bob.expect_silence(Duration::from_millis(700)).await;
    let mut carol = a.connect("carol").await;
    let (_, presence) = carol.join("general").await;
    assert_eq!(presence["users"], json!(["alice", "bob", "carol"]));

    // Closing the last one: everyone, on both nodes, hears one leave.
    alice_b.close().await;
    // Bob also hears carol's join from node a, which may come first.
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let event = next_presence_event(&mut bob).await;
        heard.push((event["type"].clone(), event["user"].clone()));
    }
    heard.sort_by_key(|e| e.0.to_string());
    assert_eq!(
        heard,
        [
            (json!("join"), json!("carol")),
            (json!("leave"), json!("alice"))
        ]
    );
    let leave = next_presence_event(&mut carol).await;
    assert_eq!(
        (leave["type"].clone(), leave["user"].clone()),
        (json!("leave"), json!("alice"))
    );
    carol.expect_silence(Duration::from_millis(500)).await;
    bob.expect_silence(Duration::from_millis(500)).await;
}

#[actix_web::test]
async fn a_killed_node_s_users_leave_within_node_timeout_and_do_not_come_back() {
    let Some(pg) = PgServer::start_or_skip("a_killed_node_s_users_leave") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |c| c.node_timeout = Duration::from_secs(2)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("NODE_ID", "b"),
        ("NODE_TIMEOUT", "2s"),
    ];
    let mut b = ServerProcess::start(CHATTERBOX, &dir.path().join("unused.db"), &env);

    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    // Presence crosses nodes through the database, a few ms behind.
    until_listed(b.port, "alice").await;
    let mut dave = Client::connect(b.port, "dave").await;
    let (_, presence) = dave.join("general").await;
    assert_eq!(presence["users"], json!(["alice", "dave"]));
    let join = next_presence_event(&mut alice).await;
    assert_eq!(join["user"], "dave");

    b.signal("KILL");
    let killed = Instant::now();
    b.wait_exit();
    let leave = next_presence_event(&mut alice).await;
    assert_eq!(
        (leave["type"].clone(), leave["user"].clone()),
        (json!("leave"), json!("dave"))
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(2 + 5),
        "dave left {took:?} after node b died (NODE_TIMEOUT 2 s + 5 s)"
    );

    // Node b comes back under the same id: dave does not.
    let b = ServerProcess::start(CHATTERBOX, &dir.path().join("unused.db"), &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, room) = a.get("/api/rooms/general").await;
    assert_eq!(room["users"], json!(["alice"]));
    let mut erin = Client::connect(b.port, "erin").await;
    let (_, presence) = erin.join("general").await;
    assert_eq!(presence["users"], json!(["alice", "erin"]));
    alice.expect("join").await;
    alice.expect_silence(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn a_client_recovers_on_another_node_what_it_missed() {
    let Some(pg) = PgServer::start_or_skip("a_client_recovers_on_another_node") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    alice.chat("general", "before", "r1").await;
    let seen = alice.expect("chat").await["id"].as_i64().unwrap();
    alice.close().await;

    let mut bob = b.connect("bob").await;
    bob.join("general").await;
    for i in 0..3 {
        bob.chat("general", &format!("missed {i}"), &format!("m{i}"))
            .await;
        chats(&mut bob, 1).await;
    }
    let mut alice = b.connect("alice").await;
    alice
        .send(json!({"type": "join", "room": "general", "since": seen}))
        .await;
    let history = alice.expect("history").await;
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["missed 0", "missed 1", "missed 2"]);
    assert_eq!(history["more"], false);
}

#[actix_web::test]
async fn health_names_the_node_and_the_database() {
    let Some(pg) = PgServer::start_or_skip("health_names_the_node") else {
        return;
    };
    let a = node(&pg.url(), "node-a", |_| {}).await;
    let (status, _, health) = a.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["node"], "node-a");
    assert_eq!(health["database"], "postgresql");
}

#[actix_web::test]
async fn an_unreachable_database_stops_start_up_naming_the_variable() {
    let port = testkit::free_port();
    let config = Config {
        port: 0,
        database_url: Some(Secret::from(
            format!("postgres://chat:hunter2@127.0.0.1:{port}/chat").as_str(),
        )),
        static_dir: testkit::static_dir(),
        ..Config::default()
    };
    let error = match Application::build(config).await {
        Ok(_) => panic!("a server with no database must not start"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("DATABASE_URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn a_database_url_that_is_not_postgres_stops_the_binary_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .env("DATABASE_URL", "mysql://chat:hunter2@db/chat")
        .env("PORT", "0")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// The chat frames in `frame` (a text frame), if it is one.
fn chat_frame(message: Option<tokio_tungstenite::tungstenite::Message>) -> Option<Value> {
    match message {
        Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
            serde_json::from_str::<Value>(&text).ok()
        }
        _ => None,
    }
}

#[actix_web::test]
async fn a_node_killed_while_sending_loses_nothing_it_acknowledged() {
    let Some(pg) = PgServer::start_or_skip("a_node_killed_while_sending") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |c| c.node_timeout = Duration::from_secs(2)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("NODE_ID", "b"),
        ("NODE_TIMEOUT", "2s"),
        ("RATE_LIMIT", "100000"),
        ("RATE_BURST", "100000"),
    ];
    let mut b = ServerProcess::start(CHATTERBOX, &dir.path().join("unused.db"), &env);
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    let mut dave = Client::connect(b.port, "dave").await;
    dave.join("general").await;

    // Long enough that the kill lands while it is still being stored.
    const SENT: usize = 2000;
    for i in 0..SENT {
        dave.chat("general", &i.to_string(), &format!("r{i}")).await;
    }
    // Kill node b in the middle of the stream of echoes.
    let mut acked: Vec<i64> = Vec::new();
    while acked.len() < 50 {
        let frame = dave.recv().await;
        if frame["type"] == "chat" {
            acked.push(frame["id"].as_i64().unwrap());
        }
    }
    b.signal("KILL");
    let killed = Instant::now();
    // Echoes already on their way still count as acknowledged.
    while let Some(frame) = chat_frame(dave.next_frame().await) {
        if frame["type"] == "chat" {
            acked.push(frame["id"].as_i64().unwrap());
        }
    }
    b.wait_exit();
    assert!(
        acked.len() < SENT,
        "the kill came before the end of the stream"
    );

    // Alice gets every acknowledged message, then dave's leave in time.
    let mut seen: Vec<i64> = Vec::new();
    let mut left = None;
    while left.is_none() || seen.len() < acked.len() {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("chat") => seen.push(frame["id"].as_i64().unwrap()),
            Some("leave") if frame["user"] == "dave" => left = Some(killed.elapsed()),
            _ => {}
        }
    }
    let left = left.unwrap();
    assert!(
        left < Duration::from_secs(2 + 5),
        "dave left after {left:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, once");
    for id in &acked {
        assert!(seen.contains(id), "acknowledged message {id} reached alice");
    }
    // Stored: a prefix of what dave sent, in order, and all of it
    // delivered to alice.
    let stored = crate::helpers::stored_texts(a.port, "general").await;
    let expected: Vec<String> = (0..stored.len()).map(|i| i.to_string()).collect();
    assert_eq!(stored, expected);
    assert!(stored.len() >= acked.len());
    assert_eq!(
        seen.len(),
        stored.len(),
        "every stored message reached alice"
    );

    // Node b comes back and takes part again.
    let b = ServerProcess::start(CHATTERBOX, &dir.path().join("unused.db"), &env);
    let mut erin = Client::connect(b.port, "erin").await;
    let (history, presence) = erin.join("general").await;
    assert_eq!(presence["users"], json!(["alice", "erin"]));
    let last = history["messages"].as_array().unwrap().last().cloned();
    assert_eq!(last.and_then(|m| m["id"].as_i64()), seen.last().copied());
    erin.chat("general", "back", "e1").await;
    chats(&mut erin, 1).await;
    // Erin's join and her chat reach alice through different reads.
    let mut frames = [alice.recv().await, alice.recv().await];
    frames.sort_by_key(|f| f["type"].to_string());
    assert_eq!(
        (frames[0]["type"].clone(), frames[0]["text"].clone()),
        (json!("chat"), json!("back"))
    );
    assert_eq!(
        (frames[1]["type"].clone(), frames[1]["user"].clone()),
        (json!("join"), json!("erin"))
    );
}

#[actix_web::test]
async fn a_node_stopped_with_sigterm_stores_what_it_accepted_and_its_users_leave_at_once() {
    let Some(pg) = PgServer::start_or_skip("a_node_stopped_with_sigterm") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let dir = tempfile::TempDir::new().unwrap();
    let env = [("DATABASE_URL", url.as_str()), ("NODE_ID", "b")];
    let mut b = ServerProcess::start(CHATTERBOX, &dir.path().join("unused.db"), &env);
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    let mut dave = Client::connect(b.port, "dave").await;
    dave.join("general").await;
    for i in 0..5 {
        dave.chat("general", &format!("d{i}"), &format!("r{i}"))
            .await;
    }
    chats(&mut dave, 5).await;
    b.signal("TERM");
    let stopped = Instant::now();
    assert_eq!(b.exited().await, Some(0));
    let mut texts = Vec::new();
    loop {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("chat") => texts.push(frame["text"].as_str().unwrap().to_string()),
            Some("leave") => break,
            _ => {}
        }
    }
    // Well inside NODE_TIMEOUT (10 s): the node left the cluster itself.
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(texts, ["d0", "d1", "d2", "d3", "d4"]);
    let (_, _, room) = a.get("/api/rooms/general").await;
    assert_eq!(room["users"], json!(["alice"]));
}

/// Waits until `/health` on `port` answers `status`.
async fn until_health(port: u16, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, _, body) = testkit::get_json(port, "/health").await;
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "health stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn the_nodes_ride_out_a_database_restart_and_lose_nothing_acknowledged() {
    let Some(pg) = PgServer::start_or_skip("the_nodes_ride_out_a_database_restart") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    until_listed(b.port, "alice").await;
    let mut bob = b.connect("bob").await;
    bob.join("general").await;
    alice.chat("general", "before", "r1").await;
    chats(&mut alice, 1).await;
    assert_eq!(chats(&mut bob, 1).await[0]["text"], "before");

    pg.stop();
    // A chat while the database is down is refused, not acknowledged.
    alice.chat("general", "while down", "r2").await;
    let refused = loop {
        let frame = alice.recv().await;
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!(refused["code"], "store_failed");
    assert_eq!(refused["ref"], "r2");
    until_health(a.port, 503).await;

    pg.start_again();
    until_health(a.port, 200).await;
    until_health(b.port, 200).await;
    // The listener is back: what one node stores reaches the other.
    alice.chat("general", "after", "r3").await;
    assert_eq!(chats(&mut alice, 1).await[0]["text"], "after");
    assert_eq!(chats(&mut bob, 1).await[0]["text"], "after");
    bob.chat("general", "and back", "b1").await;
    assert_eq!(chats(&mut alice, 1).await[0]["text"], "and back");
    let stored = crate::helpers::stored_texts(b.port, "general").await;
    assert_eq!(stored, ["before", "after", "and back"]);
    // Presence was written again after the reconnect.
    let (_, _, room) = a.get("/api/rooms/general").await;
    assert_eq!(room["users"], json!(["alice", "bob"]));
}

/// The next frame that is not presence.
async fn next_change(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if !matches!(frame["type"].as_str(), Some("join" | "leave" | "presence")) {
            return frame;
        }
    }
}

/// Sends `frame` and returns the sender's answer (skipping presence).
async fn ask(client: &mut Client, frame: Value) -> Value {
    client.send(frame).await;
    next_change(client).await
}

#[actix_web::test]
async fn edits_reactions_replies_and_deletes_made_on_one_node_reach_the_others_in_order() {
    let Some(pg) = PgServer::start_or_skip("chat_features_across_nodes") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    alice.join("general").await;
    bob.join("general").await;
    // One change at a time: its sender's answer (with its ref), then the
    // other member's copy, from the other node, the same change.
    let mut last_id = 0;
    let mut step = |answer: Value, heard: Value| {
        assert_eq!(heard["type"], answer["type"], "{heard}");
        assert_eq!(heard["id"], answer["id"], "{heard}");
        assert!(answer.get("ref").is_some() && heard.get("ref").is_none());
        let id = answer["id"].as_i64().unwrap();
        assert!(id > last_id, "in id order");
        last_id = id;
        answer
    };
    let first = ask(
        &mut alice,
        json!({"type": "chat", "room": "general", "text": "helo", "ref": "c"}),
    )
    .await;
    let first = step(first, next_change(&mut bob).await);
    let target = first["id"].clone();
    let reaction = ask(
        &mut bob,
        json!({"type": "react", "room": "general", "target": target, "emoji": "👍", "ref": "r"}),
    )
    .await;
    step(reaction, next_change(&mut alice).await);
    let edit = ask(
        &mut alice,
        json!({"type": "edit", "room": "general", "target": target, "text": "hello", "ref": "e"}),
    )
    .await;
    step(edit, next_change(&mut bob).await);
    let reply = ask(
        &mut bob,
        json!({"type": "chat", "room": "general", "text": "hi", "reply_to": target, "ref": "y"}),
    )
    .await;
    let reply = step(reply, next_change(&mut alice).await);
    assert_eq!(reply["reply_to"], target);
    let refused = ask(
        &mut alice,
        json!({"type": "delete", "room": "general", "target": reply["id"], "ref": "x"}),
    )
    .await;
    assert_eq!(refused["code"], "forbidden", "not alice's: {refused}");

    // Both nodes show the same current state, to a fresh join and REST.
    for app in [&a, &b] {
        let (history, _) = app.connect("carol").await.join("general").await;
        let items = history["messages"].as_array().unwrap();
        assert_eq!(items[0]["text"], "hello");
        assert_eq!(items[0]["reactions"], json!({"👍": ["bob"]}));
        assert!(items[0]["edited_at"].is_string());
        assert_eq!(items[1]["reply_to"], target);
        let stored = crate::helpers::stored_messages(app.port, "general").await;
        assert_eq!(
            &stored, items,
            "REST and history agree on node {}",
            app.port
        );
    }
}

#[actix_web::test]
async fn a_chat_resent_on_another_node_comes_back_as_the_original() {
    let Some(pg) = PgServer::start_or_skip("a_chat_resent_on_another_node") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut bob = a.connect("bob").await;
    bob.join("general").await;
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    let keyed = json!({"type": "chat", "room": "general", "text": "once", "key": "k", "ref": "1"});
    let original = ask(&mut alice, keyed.clone()).await;
    next_change(&mut bob).await;
    // The connection drops; the page reconnects to another node and
    // resends what had no echo, with its key.
    drop(alice);
    let mut alice = b.connect("alice").await;
    alice.join("general").await;
    let mut resent = keyed;
    resent["ref"] = json!("2");
    let again = ask(&mut alice, resent).await;
    assert_eq!(
        (again["id"].clone(), again["ref"].clone()),
        (original["id"].clone(), json!("2"))
    );
    no_more_chats(&mut bob, Duration::from_millis(500)).await;
    let stored = crate::helpers::stored_messages(a.port, "general").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[actix_web::test]
async fn typing_and_read_markers_reach_the_users_other_nodes() {
    let Some(pg) = PgServer::start_or_skip("typing_and_read_markers_across_nodes") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    let mut alice_on_b = b.connect("alice").await;
    alice_on_b.join("general").await;
    let mut bob = b.connect("bob").await;
    bob.join("general").await;
    until_listed(a.port, "bob").await;

    alice
        .send(json!({"type": "typing", "room": "general"}))
        .await;
    let typing = next_change(&mut bob).await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "general", "user": "alice"})
    );

    let chat = ask(
        &mut bob,
        json!({"type": "chat", "room": "general", "text": "read me", "ref": "m"}),
    )
    .await;
    assert_eq!(next_change(&mut alice).await["type"], "chat");
    assert_eq!(
        next_change(&mut alice_on_b).await["type"],
        "chat",
        "no typing of her own"
    );
    let ack = ask(
        &mut alice,
        json!({"type": "read", "room": "general", "id": chat["id"], "ref": "r"}),
    )
    .await;
    assert_eq!(
        (ack["type"].clone(), ack["id"].clone(), ack["ref"].clone()),
        (json!("read"), chat["id"].clone(), json!("r"))
    );
    let elsewhere = next_change(&mut alice_on_b).await;
    assert_eq!(
        elsewhere,
        json!({"type": "read", "room": "general", "id": chat["id"]})
    );
    let mut third = b.connect("alice").await;
    let (history, _) = third.join("general").await;
    assert_eq!(
        (history["last_read"].clone(), history["unread"].clone()),
        (chat["id"].clone(), json!(0))
    );
}

/// An edit on one node and a delete on another, of the same chats at the
/// same time: under the room's lock one of them comes first, and an edit
/// after the delete is refused, so no deleted chat ever shows text again.
#[actix_web::test]
async fn an_edit_racing_a_delete_on_another_node_never_brings_the_text_back() {
    let Some(pg) = PgServer::start_or_skip("an_edit_racing_a_delete") else {
        return;
    };
    let url = pg.url();
    let a = node(&url, "a", |_| {}).await;
    let b = node(&url, "b", |_| {}).await;
    let mut on_a = a.connect("alice").await;
    let mut on_b = b.connect("alice").await;
    on_a.join("general").await;
    on_b.join("general").await;
    const N: usize = 20;
    let mut targets = Vec::new();
    for i in 0..N {
        let chat = ask(
            &mut on_a,
            json!({"type": "chat", "room": "general", "text": format!("m{i}"), "ref": "c"}),
        )
        .await;
        targets.push(chat["id"].clone());
    }
    chats(&mut on_b, N).await;
    for target in &targets {
        on_a.send(json!({"type": "delete", "room": "general", "target": target, "ref": "d"}))
            .await;
        on_b.send(json!({"type": "edit", "room": "general", "target": target, "text": "back!", "ref": "e"}))
            .await;
    }
    // Each client hears every stored change and its own refusals.
    let mut deletes = 0;
    let mut edits_stored = 0;
    let mut refused = 0;
    let mut last_id = 0;
    let expected_frames = |d: usize, e: usize, r: usize| d + e + r;
    while expected_frames(deletes, edits_stored, refused) < 2 * N {
        let frame = next_change(&mut on_b).await;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("delete"), _) => deletes += 1,
            (Some("edit"), _) => edits_stored += 1,
            (Some("error"), Some("not_found")) => refused += 1,
            _ => panic!("unexpected {frame}"),
        }
        if let Some(id) = frame["id"].as_i64() {
            assert!(id > last_id, "in id order");
            last_id = id;
        }
    }
    assert_eq!(deletes, N);
    assert_eq!(edits_stored + refused, N);
    for app in [&a, &b] {
        let stored = crate::helpers::stored_messages(app.port, "general").await;
        assert!(
            stored
                .iter()
                .all(|m| m["deleted"] == true && m["text"] == ""),
            "{stored:?}"
        );
    }
}

/// A ban made on one node holds on the others: the user's connections
/// there leave the room, its joins there are refused, and an unban on a
/// third node lets it back.
#[actix_web::test]
async fn a_ban_on_one_node_removes_and_refuses_the_user_on_the_others() {
    let Some(pg) = PgServer::start_or_skip("a_ban_across_nodes") else {
        return;
    };
    const SECRET: &str = "a-cluster-moderation-secret-of-length";
    let url = pg.url();
    let secret = |c: &mut Config| c.auth_secret = Some(Secret::from(SECRET));
    let a = node(&url, "a", secret).await;
    let b = node(&url, "b", secret).await;
    let connect = |port: u16, user: &str, extra: Value| connect_signed(port, SECRET, user, extra);
    let mut moderator = connect(a.port, "mod", json!({"mod": true})).await;
    moderator.join("general").await;
    let mut bob = connect(b.port, "bob", json!({})).await;
    bob.join("general").await;
    until_listed(a.port, "bob").await;

    let ban = ask(
        &mut moderator,
        json!({"type": "ban", "room": "general", "user": "bob", "ref": "b"}),
    )
    .await;
    assert_eq!(
        (ban["type"].clone(), ban["action"].clone()),
        (json!("moderation"), json!("ban")),
        "{ban}"
    );
    let heard = next_change(&mut bob).await;
    assert_eq!(
        (heard["action"].clone(), heard["id"].clone()),
        (json!("ban"), ban["id"].clone())
    );
    let deadline = Instant::now() + testkit::WAIT;
    loop {
        let frame = bob.recv().await;
        if frame["type"] == "leave" && frame["user"] == "bob" {
            break;
        }
        assert!(Instant::now() < deadline, "bob never left on node b");
    }
    bob.send(json!({"type": "join", "room": "general", "ref": "j"}))
        .await;
    let refused = next_change(&mut bob).await;
    assert_eq!(
        (refused["code"].clone(), refused["ref"].clone()),
        (json!("banned"), json!("j"))
    );

    let unban = ask(
        &mut moderator,
        json!({"type": "unban", "room": "general", "user": "bob"}),
    )
    .await;
    assert_eq!(unban["action"], "unban", "{unban}");
    // Node b learns of the unban when its room delivers it; until then a
    // join is still refused, so try again for a moment.
    let deadline = Instant::now() + testkit::WAIT;
    loop {
        bob.send(json!({"type": "join", "room": "general"})).await;
        let answer = next_change(&mut bob).await;
        if answer["type"] == "history" {
            break;
        }
        assert_eq!(answer["code"], "banned", "{answer}");
        assert!(Instant::now() < deadline, "the unban never reached node b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Token refresh in cluster mode (CLOSE_EXPIRED=true): a connection on
/// node b whose token is refreshed outlives the first token, still in the
/// room it shares with node a and still trading chats with it; one that
/// is not refreshed is closed with 4001, and node a hears it leave.
#[actix_web::test]
async fn a_refreshed_connection_on_one_node_outlives_its_first_token_and_still_talks_to_the_others()
{
    let Some(pg) = PgServer::start_or_skip("refresh_across_nodes") else {
        return;
    };
    const SECRET: &str = "a-cluster-refresh-secret-of-some-length";
    let url = pg.url();
    let secured = |c: &mut Config| {
        c.auth_secret = Some(Secret::from(SECRET));
        c.close_expired = true;
    };
    let a = node(&url, "a", secured).await;
    let b = node(&url, "b", secured).await;
    let now = || chrono::Utc::now().timestamp();
    let connect =
        |port: u16, user: &str, exp: i64| connect_signed(port, SECRET, user, json!({ "exp": exp }));
    let first_exp = now() + 3;
    let mut carol = connect(a.port, "carol", now() + 600).await;
    carol.join("general").await;
    let mut bob = connect(b.port, "bob", first_exp).await;
    bob.join("general").await;
    let mut dave = connect(b.port, "dave", first_exp).await;
    dave.join("general").await;
    until_listed(a.port, "bob").await;
    until_listed(a.port, "dave").await;

    let fresh = crate::helpers::token_with(SECRET, "bob", json!({ "exp": now() + 600 }));
    let refreshed = ask(
        &mut bob,
        json!({"type": "refresh", "token": fresh, "ref": "r"}),
    )
    .await;
    assert_eq!(
        (refreshed["type"].clone(), refreshed["ref"].clone()),
        (json!("refreshed"), json!("r")),
        "{refreshed}"
    );

    // Dave did not refresh: closed at his token's exp, and node a hears
    // him leave.
    assert_eq!(dave.expect_close().await, CloseCode::from(4001));
    assert!(now() >= first_exp, "dave was closed before his exp");
    let deadline = Instant::now() + testkit::WAIT;
    loop {
        let frame = next_presence_event(&mut carol).await;
        if frame["type"] == "leave" && frame["user"] == "dave" {
            break;
        }
        assert!(Instant::now() < deadline, "node a never heard dave leave");
    }

    // Past the first exp (dave's close says it passed), bob is still in the
    // room with carol: chats go both ways between the nodes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.chat("general", "still here", "b1").await;
    assert_eq!(chats(&mut carol, 1).await[0]["text"], "still here");
    assert_eq!(chats(&mut bob, 1).await[0]["text"], "still here");
    carol.chat("general", "welcome back", "c1").await;
    assert_eq!(chats(&mut bob, 1).await[0]["text"], "welcome back");
    assert_eq!(chats(&mut carol, 1).await[0]["text"], "welcome back");
}

#[actix_web::test]
async fn a_direct_message_room_opened_on_one_node_is_joined_by_name_on_another() {
    let Some(pg) = PgServer::start_or_skip("a_dm_by_name_across_nodes") else {
        return;
    };
    const SECRET: &str = "a-cluster-direct-message-secret-long";
    let url = pg.url();
    let secret = |c: &mut Config| c.auth_secret = Some(Secret::from(SECRET));
    let a = node(&url, "a", secret).await;
    let b = node(&url, "b", secret).await;
    let connect = |port: u16, user: &str| connect_signed(port, SECRET, user, json!({}));
    let mut alice = connect(a.port, "alice").await;
    alice.send(json!({"type": "join", "dm": "bob"})).await;
    let history = alice.expect("history").await;
    let room = history["room"]
        .as_str()
        .expect("the room's name")
        .to_string();
    alice.expect("presence").await;
    alice.chat(&room, "from node a", "1").await;
    let sent = alice.expect("chat").await;

    // Node b lists it for bob (the listing's SQL on PostgreSQL).
    let bearer = format!(
        "Bearer {}",
        crate::helpers::token_with(SECRET, "bob", json!({}))
    );
    let mut listed = awc::Client::default()
        .get(b.url("/api/dms"))
        .insert_header(("authorization", bearer))
        .send()
        .await
        .expect("GET /api/dms answers");
    assert_eq!(listed.status().as_u16(), 200);
    let listed: Value = serde_json::from_slice(&listed.body().await.unwrap()).unwrap();
    assert_eq!(
        listed["rooms"],
        json!([{"room": room, "with": "alice", "last_id": sent["id"], "unread": 1}])
    );

    // Node b has never seen a `dm` join of this room: it reads the pair.
    let mut bob = connect(b.port, "bob").await;
    let (history, _) = bob.join(&room).await;
    assert_eq!(history["dm"], json!(["alice", "bob"]));
    assert_eq!(history["messages"][0]["text"], "from node a");
    let mut carol = connect(b.port, "carol").await;
    carol
        .send(json!({"type": "join", "room": room, "ref": "c"}))
        .await;
    assert_eq!(carol.expect_error("forbidden").await["ref"], "c");
}

#[actix_web::test]
async fn a_direct_message_notice_reaches_the_other_user_on_another_node() {
    let Some(pg) = PgServer::start_or_skip("a_dm_notice_across_nodes") else {
        return;
    };
    const SECRET: &str = "a-cluster-direct-notice-secret-longer";
    let url = pg.url();
    let secret = |c: &mut Config| c.auth_secret = Some(Secret::from(SECRET));
    let a = node(&url, "a", secret).await;
    let b = node(&url, "b", secret).await;
    let connect = |port: u16, user: &str| connect_signed(port, SECRET, user, json!({}));
    let mut bob = connect(b.port, "bob").await;
    let mut carol = connect(b.port, "carol").await;
    let mut alice = connect(a.port, "alice").await;
    alice.send(json!({"type": "join", "dm": "bob"})).await;
    let room = alice.expect("history").await["room"].clone();
    alice.expect("presence").await;
    alice.chat(room.as_str().unwrap(), "over here", "1").await;
    let chat = alice.expect("chat").await;

    let notice = bob.expect("direct").await;
    assert_eq!(
        notice,
        json!({"type": "direct", "room": room, "with": "alice", "id": chat["id"]})
    );
    carol.expect_silence(Duration::from_millis(300)).await;
    bob.expect_silence(Duration::from_millis(300)).await;
}
