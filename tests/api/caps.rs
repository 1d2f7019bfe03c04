//! MAX_CONNECTIONS and MAX_CONNECTIONS_PER_IP: refused with 503 past the
//! cap, admitted again once a connection closes, and no slot ever leaks.

use std::time::Duration;

use testkit::{scrape, spawn_app_with, TestApp, WAIT};

use crate::helpers::refused_upgrade;

/// Waits until the server counts `n` open connections.
async fn wait_for_open(app: &TestApp, n: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = scrape(app.port).await.value("chatterbox_connections");
        if open == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {open} connections open, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn the_per_address_cap_refuses_then_admits_after_a_close() {
    let app = spawn_app_with(|c| c.max_connections_per_ip = 2).await;
    let first = app.connect("a").await;
    let _second = app.connect("b").await;
    let (status, body) = refused_upgrade(app.port, "user=c").await;
    assert_eq!(status, 503);
    assert!(
        body["error"].as_str().unwrap().contains("your address"),
        "{body}"
    );

    first.close().await;
    wait_for_open(&app, 1.0).await;
    let mut third = app.connect("c").await;
    third.join("lobby").await;

    let metrics = scrape(app.port).await;
    let refused = ("reason", "max_connections_per_ip");
    assert_eq!(
        metrics.get("chatterbox_upgrades_refused_total", Some(refused)),
        1.0
    );
    assert_eq!(metrics.value("chatterbox_connections_opened_total"), 3.0);
}

#[actix_web::test]
async fn the_global_cap_refuses_then_admits_after_a_close() {
    let app = spawn_app_with(|c| c.max_connections = 3).await;
    let mut clients = Vec::new();
    for user in ["a", "b", "c"] {
        clients.push(app.connect(user).await);
    }
    let (status, body) = refused_upgrade(app.port, "user=d").await;
    assert_eq!(status, 503);
    assert!(
        body["error"].as_str().unwrap().contains("limit of 3"),
        "{body}"
    );

    clients.pop().expect("three clients").close().await;
    wait_for_open(&app, 2.0).await;
    let mut d = app.connect("d").await;
    d.join("lobby").await;
    let metrics = scrape(app.port).await;
    assert_eq!(
        metrics.get(
            "chatterbox_upgrades_refused_total",
            Some(("reason", "max_connections"))
        ),
        1.0
    );
}

/// Thousands of connections opened and closed (some politely, some by
/// dropping the socket) leave every slot free.
#[actix_web::test]
async fn slots_do_not_leak_over_thousands_of_connections() {
    const CAP: usize = 5;
    const ROUNDS: usize = 400;
    let app = spawn_app_with(|c| {
        c.max_connections = CAP;
        c.max_connections_per_ip = CAP;
    })
    .await;
    for round in 0..ROUNDS {
        let mut clients = Vec::new();
        for i in 0..CAP {
            clients.push(app.connect(&format!("u{i}")).await);
        }
        if round % 100 == 0 {
            let (status, _) = refused_upgrade(app.port, "user=extra").await;
            assert_eq!(status, 503, "round {round}: the cap still holds");
        }
        for (i, client) in clients.into_iter().enumerate() {
            if i % 2 == 0 {
                client.close().await;
            } else {
                drop(client);
            }
        }
        wait_for_open(&app, 0.0).await;
    }
    let metrics = scrape(app.port).await;
    assert_eq!(
        metrics.value("chatterbox_connections_opened_total"),
        (CAP * ROUNDS) as f64
    );
    assert_eq!(metrics.value("chatterbox_connections"), 0.0);
}

/// A peer that stops reading and never sends again, with its socket full
/// and its outbox past the limit: the room drops it at once, and within
/// CLIENT_TIMEOUT + HEARTBEAT_INTERVAL the server lets go of its TCP
/// connection and its slot is free, while the peer that flooded it (reading
/// all along) stays.
///
/// This used to pass without the stuck peer ever losing its slot: the
/// flooder, which the test stopped reading, was the one the heartbeat
/// dropped, and the count of open connections fell to one because of it.
/// The stuck peer's session never ran again (its socket was full, so the
/// HTTP dispatcher stopped polling it), until the test dropped it.
#[actix_web::test]
async fn a_peer_that_stops_reading_for_good_loses_its_slot() {
    let heartbeat = Duration::from_millis(200);
    // Long enough for the flood to fill the socket first: the stuck peer
    // answers no ping, so the heartbeat would otherwise end it while its
    // session can still run.
    let timeout = Duration::from_secs(3);
    let app = spawn_app_with(|c| {
        c.heartbeat_interval = heartbeat;
        c.client_timeout = timeout;
        c.outbox_limit = 16;
        c.max_message_len = 16_000;
        c.rate_limit = 1_000_000.0;
        c.rate_burst = 1_000_000.0;
    })
    .await;
    let mut stuck = crate::helpers::small_window_client(app.port, "stuck").await;
    let mut flooder = app.connect("flooder").await;
    stuck.join("flood").await;
    flooder.join("flood").await;
    // From here on `stuck` is never read again, and never sends.
    let big = "y".repeat(16_000);
    let mut dropped = false;
    let mut sent = 0;
    while !dropped {
        assert!(
            sent < 5_000,
            "the stuck peer was never dropped from the room"
        );
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
                Some("leave") => dropped |= frame["user"] == "stuck",
                _ => {}
            }
        }
    }

    let start = tokio::time::Instant::now();
    // How often the test looks: its resolution, allowed on top of the bound.
    let mut resolution = Duration::ZERO;
    let mut look = tokio::time::Instant::now();
    loop {
        resolution = resolution.max(look.elapsed());
        look = tokio::time::Instant::now();
        let open = scrape(app.port).await.value("chatterbox_connections");
        if open == 1.0 && !crate::helpers::server_holds(app.port, &stuck) {
            break;
        }
        assert!(
            start.elapsed() <= timeout + heartbeat + resolution,
            "{open} connections open and the server still holds the stuck peer's TCP \
             connection after {:?}",
            start.elapsed()
        );
        // Reading keeps the flooder answering pings, so it stays.
        flooder.expect_silence(Duration::from_millis(20)).await;
    }
    // The flooder, which kept reading, is still there.
    flooder.chat("flood", "still here", "last").await;
    assert_eq!(flooder.expect("chat").await["ref"], "last");
}
