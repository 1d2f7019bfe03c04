//! The join/leave budget: a second token bucket per connection, so one
//! connection's presence churn cannot flood a room's members (each `join`
//! and `leave` is broadcast to all of them) and get them closed as slow
//! readers.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testkit::{spawn_app, spawn_app_with, Client};
use tokio_tungstenite::tungstenite::Message;

/// A sustained rate so low that no token comes back during a test.
const NO_REFILL: f64 = 0.001;

const WATCHERS: usize = 30;
const FLOOD: Duration = Duration::from_secs(3);

/// What one watching member saw until the chat sent after the flood.
#[derive(Debug)]
struct Watched {
    presence_frames: usize,
    got_the_chat: bool,
    /// Why reading stopped before the chat: closed, failed, or the deadline.
    ended: Option<String>,
}

#[actix_web::test]
async fn a_join_leave_flood_is_limited_and_leaves_every_other_member_connected() {
    let app = spawn_app().await;
    let config = chatterbox::config::Config::default();
    let (rate, burst) = (config.join_rate_limit, config.join_rate_burst);
    // However the server copes, the test ends by then.
    let deadline = tokio::time::Instant::now() + FLOOD + Duration::from_secs(40);

    // 30 members in the room, each read by its own task that counts the
    // flooder's join and leave frames until the chat sent after the flood.
    let mut senders = Vec::new();
    let mut watchers = Vec::new();
    for i in 0..WATCHERS {
        let mut member = app.connect(&format!("member{i}")).await;
        member.join("busy").await;
        let (sink, mut stream) = member.ws.split();
        senders.push(sink);
        watchers.push(tokio::spawn(async move {
            let mut watched = Watched {
                presence_frames: 0,
                got_the_chat: false,
                ended: None,
            };
            loop {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => {
                        let frame: Value = serde_json::from_str(&text).expect("JSON frames");
                        match frame["type"].as_str() {
                            Some("join" | "leave") if frame["user"] == "flooder" => {
                                watched.presence_frames += 1
                            }
                            Some("chat") if frame["text"] == "after the flood" => {
                                watched.got_the_chat = true;
                                return watched;
                            }
                            _ => {}
                        }
                    }
                    Ok(Some(Ok(Message::Close(reason)))) => {
                        watched.ended = Some(format!("{reason:?}"));
                        return watched;
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => {
                        watched.ended = Some(e.to_string());
                        return watched;
                    }
                    Ok(None) => {
                        watched.ended = Some("end of stream".into());
                        return watched;
                    }
                    Err(_) => {
                        watched.ended = Some("no chat before the deadline".into());
                        return watched;
                    }
                }
            }
        }));
    }

    // One connection sends join/leave pairs as fast as it can.
    let flooder = app.connect("flooder").await;
    let (mut flood_sink, mut flood_stream) = flooder.ws.split();
    let reader = tokio::spawn(async move {
        let (mut accepted, mut rate_limited) = (0usize, 0usize);
        loop {
            let next = tokio::time::timeout_at(deadline, flood_stream.next()).await;
            // The flooder may itself be closed for reading its answers too
            // slowly: that ends the flood too.
            let Ok(Some(Ok(message))) = next else {
                return (accepted, rate_limited);
            };
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).expect("JSON frames");
            match (frame["type"].as_str(), frame["code"].as_str()) {
                // A join is acknowledged by history, a leave by its leave.
                (Some("history" | "leave"), _) => accepted += 1,
                (Some("error"), Some("rate_limited")) => rate_limited += 1,
                (Some("error"), Some("not_joined")) if frame["ref"] == "done" => {
                    return (accepted, rate_limited)
                }
                _ => {}
            }
        }
    });
    let join = Message::Text(json!({"type": "join", "room": "busy"}).to_string());
    let leave = Message::Text(json!({"type": "leave", "room": "busy"}).to_string());
    let started = Instant::now();
    let mut pairs = 0usize;
    let flood_end = tokio::time::Instant::now() + FLOOD;
    while tokio::time::Instant::now() < flood_end {
        let batch = async {
            for _ in 0..50 {
                flood_sink.feed(join.clone()).await?;
                flood_sink.feed(leave.clone()).await?;
            }
            flood_sink.flush().await
        };
        // A server that stops reading holds the batch back: the flood ends
        // on time anyway.
        match tokio::time::timeout_at(flood_end, batch).await {
            Ok(Ok(())) => pairs += 50,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Answered after everything before it: the end of the flood.
    let done = json!({"type": "chat", "room": "nowhere", "text": "x", "ref": "done"});
    let _ = flood_sink.send(Message::Text(done.to_string())).await;
    let (accepted, rate_limited) = reader.await.expect("the flooder's reader");
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last accepted leave travel from the server to the room.
    tokio::time::sleep(Duration::from_millis(300)).await;

    senders[0]
        .send(Message::Text(
            json!({"type": "chat", "room": "busy", "text": "after the flood"}).to_string(),
        ))
        .await
        .expect("sent");
    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(watcher.await.expect("a watcher"));
    }
    let most = seen.iter().map(|w| w.presence_frames).max().unwrap_or(0);
    let closed = seen.iter().filter(|w| w.ended.is_some()).count();
    let budget = burst + rate * (elapsed + 1.0);
    eprintln!(
        "join/leave flood: {pairs} pairs sent in {elapsed:.1} s; {accepted} accepted, \
         {rate_limited} rate_limited; at most {most} presence frames per member (budget \
         {budget:.0}); {closed} of {WATCHERS} members closed or without the chat (first: {:?})",
        seen.iter().find_map(|w| w.ended.as_deref())
    );

    assert!(rate_limited > 0, "the flooder was never rate limited");
    assert!(
        accepted as f64 <= budget,
        "{accepted} joins and leaves accepted, past the budget of {budget:.0}"
    );
    for (i, watched) in seen.iter().enumerate() {
        assert_eq!(watched.ended, None, "member{i} was closed: {watched:?}");
        assert!(
            watched.got_the_chat,
            "member{i} missed the chat: {watched:?}"
        );
        assert!(
            watched.presence_frames as f64 <= budget,
            "member{i} got {} presence frames, past the budget of {budget:.0}",
            watched.presence_frames
        );
    }
}

#[actix_web::test]
async fn a_join_or_leave_refused_by_the_budget_changes_nothing() {
    let app = spawn_app_with(|c| {
        c.join_rate_limit = NO_REFILL;
        c.join_rate_burst = 3.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let mut bob = app.connect("bob").await;

    // Three tokens: join, leave, join. Alice hears each.
    bob.join("r").await;
    alice.expect("join").await;
    bob.send(json!({"type": "leave", "room": "r"})).await;
    bob.expect("leave").await;
    alice.expect("leave").await;
    bob.join("r").await;
    alice.expect("join").await;

    // The budget is spent: a leave is refused, with its ref.
    bob.send(json!({"type": "leave", "room": "r", "ref": "l1"}))
        .await;
    let error = bob.expect_error("rate_limited").await;
    assert_eq!(error["ref"], "l1");
    // So is a join of another room.
    bob.send(json!({"type": "join", "room": "s", "ref": "j1"}))
        .await;
    let error = bob.expect_error("rate_limited").await;
    assert_eq!(error["ref"], "j1");
    alice.expect_silence(Duration::from_millis(300)).await;

    // Bob is still in r, and only in r.
    let (_, _, room) = app.get("/api/rooms/r").await;
    assert_eq!(room["users"], json!(["alice", "bob"]));
    let (status, _, _) = app.get("/api/rooms/s").await;
    assert_eq!(status, 404, "the refused join did not open room s");
    bob.chat("r", "still here", "c1").await;
    assert_eq!(bob.expect("chat").await["ref"], "c1");
    assert_eq!(alice.expect("chat").await["text"], "still here");
    bob.chat("s", "not here", "c2").await;
    bob.expect_error("not_joined").await;
}

#[actix_web::test]
async fn joins_and_leaves_refused_for_another_reason_spend_no_token() {
    let app = spawn_app_with(|c| {
        c.join_rate_limit = NO_REFILL;
        c.join_rate_burst = 2.0;
        c.max_rooms = 2;
        c.max_rooms_per_connection = 1;
    })
    .await;
    // Two active rooms: the server is full.
    let mut alice = app.connect("alice").await;
    alice.join("a").await;
    let mut carol = app.connect("carol").await;
    carol.join("c").await;

    let mut bob = app.connect("bob").await;
    // The server's room cap answers after the token was taken: given back.
    for _ in 0..3 {
        bob.send(json!({"type": "join", "room": "b"})).await;
        bob.expect_error("too_many_rooms").await;
    }
    bob.join("a").await; // token 1
    for _ in 0..3 {
        bob.send(json!({"type": "join", "room": "a"})).await;
        bob.expect_error("already_joined").await;
        // The connection's own room cap.
        bob.send(json!({"type": "join", "room": "c"})).await;
        bob.expect_error("too_many_rooms").await;
        bob.send(json!({"type": "leave", "room": "c"})).await;
        bob.expect_error("not_joined").await;
        bob.send(json!({"type": "join", "room": "bad room"})).await;
        bob.expect_error("invalid_room").await;
    }
    bob.send(json!({"type": "leave", "room": "a"})).await; // token 2
    bob.expect("leave").await;
    // Exactly two tokens were spent: the budget is now empty.
    bob.send(json!({"type": "join", "room": "a"})).await;
    bob.expect_error("rate_limited").await;
}

#[actix_web::test]
async fn the_burst_lets_a_reconnecting_client_rejoin_all_its_rooms_at_once() {
    let app = spawn_app_with(|c| c.join_rate_limit = NO_REFILL).await;
    let config = chatterbox::config::Config::default();
    let rooms: Vec<String> = (0..config.max_rooms_per_connection)
        .map(|i| format!("room{i}"))
        .collect();

    // Joined twice, on two connections, as a page does after a reconnect.
    let mut first = app.connect("alice").await;
    join_all_at_once(&mut first, &rooms).await;
    first.close().await;
    let mut again = app.connect("alice").await;
    join_all_at_once(&mut again, &rooms).await;

    // The burst has room for more: 32 joins spent, so 68 tokens are left,
    // 34 leave/join pairs, and then the budget says no.
    let spare = config.join_rate_burst as usize - rooms.len();
    for _ in 0..spare / 2 {
        again.send(json!({"type": "leave", "room": "room0"})).await;
        again.expect("leave").await;
        again.join("room0").await;
    }
    again.send(json!({"type": "leave", "room": "room0"})).await;
    again.expect_error("rate_limited").await;
}

/// Sends a join for each room back to back, without waiting for answers,
/// then expects each room's `history` and `presence`, in order.
async fn join_all_at_once(client: &mut Client, rooms: &[String]) {
    for room in rooms {
        client.send(json!({"type": "join", "room": room})).await;
    }
    for room in rooms {
        let history = client.expect("history").await;
        assert_eq!(history["room"], *room);
        client.expect("presence").await;
    }
}
