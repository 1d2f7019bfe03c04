//! Frozen connections: a client whose socket stops taking data is closed,
//! and its slot freed, within CLIENT_TIMEOUT + HEARTBEAT_INTERVAL, whatever
//! it keeps sending; and a clean close ends the TCP connection at once.

use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use testkit::{scrape, spawn_app_with, Client, TestApp, WAIT};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::helpers::{flood_one_byte_frames, server_holds, small_window_client};

const HEARTBEAT: Duration = Duration::from_millis(250);
const TIMEOUT: Duration = Duration::from_secs(1);
/// Allowed on top of a bound and the test's resolution: the time the server
/// takes to tear down a reset connection and count it closed, a few
/// milliseconds on a loaded machine (the tests run in parallel; one CI run
/// missed by 3 ms). Half a heartbeat, so a missed watchdog tick still fails.
const TEARDOWN: Duration = Duration::from_millis(125);

/// Whether the server has let go of the TCP connection of every one of
/// `clients` and counts `open` connections; panics once [`WAIT`] has passed
/// since `start`.
async fn all_closed(app: &TestApp, clients: &[Client], open: f64, start: Instant) -> bool {
    let ended = clients
        .iter()
        .filter(|c| !server_holds(app.port, c))
        .count();
    let counted = scrape(app.port).await.value("chatterbox_connections");
    assert!(
        start.elapsed() < WAIT,
        "after {:?}: the server let go of {ended} of {} TCP connections, {counted} counted open (expected {open})",
        start.elapsed(),
        clients.len()
    );
    ended == clients.len() && counted == open
}

/// The case, scaled down: clients that send a flood of one-byte
/// frames (each earns an `error`) and never read. Some then go silent, the
/// others keep sending. All of them hold every slot until the server closes
/// them; then a new client gets in.
#[actix_web::test]
async fn clients_that_flood_without_reading_are_closed_and_their_slots_freed() {
    const CLIENTS: usize = 6;
    let app = spawn_app_with(|c| {
        c.heartbeat_interval = HEARTBEAT;
        c.client_timeout = TIMEOUT;
        c.max_connections = CLIENTS;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(small_window_client(app.port, &format!("flood{i}")).await);
    }
    let sent = join_all(
        clients
            .iter()
            .map(|c| flood_one_byte_frames(c.tcp(), 0, 60_000, Duration::from_millis(300))),
    )
    .await;
    // Half go silent; the other half keep trying to send. The server works
    // through what it has read, answering each frame with an `error`, until
    // its sockets to them are full: from the last answer on, nothing of
    // theirs runs any more, and the clock starts.
    let bad_json =
        |m: &testkit::Metrics| m.get("chatterbox_errors_total", Some(("code", "bad_json")));
    let mut offsets = sent.clone();
    let mut answered = bad_json(&scrape(app.port).await);
    let mut last_answer = Instant::now();
    let start = Instant::now();
    // How often the test looks: its resolution, allowed on top of the bound.
    let mut resolution = Duration::ZERO;
    let mut look = Instant::now();
    while !all_closed(&app, &clients, 0.0, start).await {
        resolution = resolution.max(look.elapsed());
        look = Instant::now();
        let now = bad_json(&scrape(app.port).await);
        if now != answered {
            answered = now;
            last_answer = Instant::now();
        }
        for i in CLIENTS / 2..CLIENTS {
            offsets[i] +=
                flood_one_byte_frames(clients[i].tcp(), offsets[i], 10, Duration::ZERO).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = last_answer.elapsed();
    assert!(
        elapsed <= TIMEOUT + HEARTBEAT + resolution + TEARDOWN,
        "the frozen connections were closed only {elapsed:?} after the server last answered \
         them (the test looked every {resolution:?})"
    );
    println!(
        "{CLIENTS} frozen flooders closed {elapsed:?} after their last answer ({:?} after \
         they stopped sending); {answered} errors answered",
        start.elapsed()
    );

    let mut late = app.connect("late").await;
    late.join("lobby").await;
    late.chat("lobby", "in at last", "1").await;
    late.expect("chat").await;
    let metrics = scrape(app.port).await;
    assert!(metrics.value("chatterbox_frozen_closes_total") >= 1.0);
}

/// Members of a flooded room that stop reading are dropped from the room
/// at once (their outbox overflows); their TCP connections must end too.
#[actix_web::test]
async fn members_that_stop_reading_in_a_flooded_room_lose_their_connections() {
    const STUCK: usize = 5;
    // Long enough that the outbox overflows before the heartbeat gives up.
    let timeout = Duration::from_secs(3);
    let app = spawn_app_with(|c| {
        c.heartbeat_interval = HEARTBEAT;
        c.client_timeout = timeout;
        c.outbox_limit = 16;
        c.max_message_len = 16_000;
        c.rate_limit = 1_000_000.0;
        c.rate_burst = 1_000_000.0;
    })
    .await;
    let mut stuck = Vec::new();
    for i in 0..STUCK {
        let mut client = small_window_client(app.port, &format!("stuck{i}")).await;
        client.join("flood").await;
        stuck.push(client);
    }
    let mut flooder = app.connect("flooder").await;
    flooder.join("flood").await;
    // From here on the stuck members never read again.
    let big = "y".repeat(16_000);
    let mut dropped = 0;
    let mut sent = 0;
    while dropped < STUCK {
        assert!(sent < 5_000, "only {dropped} stuck members were dropped");
        // Half the outbox at a time: the flooder, which reads, never
        // holds more than that.
        for i in 0..8 {
            flooder.chat("flood", &big, &format!("f{sent}-{i}")).await;
        }
        sent += 8;
        let mut echoes = 0;
        while echoes < 8 {
            let frame = flooder.recv().await;
            match frame["type"].as_str() {
                Some("chat") => echoes += 1,
                Some("leave") => dropped += 1,
                _ => {}
            }
        }
    }

    let start = Instant::now();
    // How often the test looks: its resolution, allowed on top of the bound.
    let mut resolution = Duration::ZERO;
    let mut look = Instant::now();
    while !all_closed(&app, &stuck, 1.0, start).await {
        resolution = resolution.max(look.elapsed());
        look = Instant::now();
        // Reading keeps the flooder answering pings.
        flooder.expect_silence(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed <= timeout + HEARTBEAT + resolution + TEARDOWN,
        "the stuck members' connections ended only after {elapsed:?} (the test looked every \
         {resolution:?})"
    );
    println!("{STUCK} stuck members' connections ended {elapsed:?} after their drop");
    flooder.chat("flood", "still here", "last").await;
    assert_eq!(flooder.expect("chat").await["ref"], "last");
}

/// The closing handshake started by the client ends with the server
/// closing TCP right away (RFC 6455 section 7.1.1), not after a delay.
#[actix_web::test]
async fn a_clean_close_ends_the_tcp_connection_at_once() {
    let app = spawn_app_with(|_| {}).await;
    let mut times = Vec::new();
    for i in 0..5 {
        let mut client = app.connect(&format!("polite{i}")).await;
        client.join("lobby").await;
        let start = Instant::now();
        client
            .ws
            .send(Message::Close(None))
            .await
            .expect("close sent");
        loop {
            match tokio::time::timeout(WAIT, client.ws.next()).await {
                Ok(Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected the server's close frame, got {other:?}"),
            }
        }
        let mut rest = Vec::new();
        let MaybeTlsStream::Plain(tcp) = client.ws.get_mut() else {
            panic!("plain TCP")
        };
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
            .await
            .expect("the server ends the TCP connection")
            .expect("a clean end, not a reset");
        assert!(rest.is_empty(), "nothing after the close frame");
        times.push(start.elapsed());
    }
    times.sort();
    println!("clean closes took {times:?}");
    assert!(
        times[times.len() / 2] < Duration::from_millis(100),
        "a clean close takes {:?} (median of {times:?})",
        times[times.len() / 2]
    );
}

/// Every frame of a delivered batch counts against OUTBOX_LIMIT: a batch
/// of chats larger than the outbox closes a member with 1008 even though
/// it reads as fast as it can (a batch used to count as one frame).
#[actix_web::test]
async fn a_batch_larger_than_the_outbox_is_refused() {
    let app = spawn_app_with(|c| {
        c.outbox_limit = 4;
        c.rate_limit = 1_000_000.0;
        c.rate_burst = 1_000_000.0;
    })
    .await;
    let mut reader = app.connect("reader").await;
    reader.join("busy").await;
    let mut sender = app.connect("sender").await;
    sender.join("busy").await;
    reader.expect("join").await;
    // Sent back to back: what arrives while one group commit runs is
    // stored, and delivered, as one batch.
    for i in 0..200 {
        sender.chat("busy", "hi", &i.to_string()).await;
    }
    let mut chats = 0;
    let read = async {
        loop {
            match reader.next_frame().await {
                Some(Message::Text(_)) => chats += 1,
                Some(Message::Close(Some(close))) => return close.code,
                other => panic!("after {chats} frames: expected chats then a close, got {other:?}"),
            }
        }
    };
    // Pings keep `next_frame` waiting: the deadline is for the whole read.
    let code = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("the reader was never closed"));
    assert_eq!(u16::from(code), 1008, "after {chats} frames");
    assert!(
        chats < 200,
        "the reader got every chat: no batch was refused"
    );
    let metrics = scrape(app.port).await;
    assert!(metrics.value("chatterbox_slow_client_closes_total") >= 1.0);
    assert!(metrics.value("chatterbox_store_batch_size_count") < 200.0);
}
