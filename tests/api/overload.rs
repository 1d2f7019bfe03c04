//! A stalled store: another process holds SQLite's write lock while clients
//! flood. What is accepted but not yet stored stays bounded (so memory
//! does), chats past the bound get `overloaded`, and every answer is still
//! exactly one of echo, `overloaded` or `store_failed`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use testkit::{get_json, scrape, spawn_app_with, Client, ServerProcess};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::CHATTERBOX;

/// The server's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is there");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Holds SQLite's write lock on `db` from another connection (as another
/// process would) for `hold`; says on `held` once it has it.
fn hold_write_lock(
    db: &Path,
    hold: Duration,
    held: mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    let url = db.to_string_lossy().to_string();
    std::thread::spawn(move || {
        let mut conn = SqliteConnection::establish(&url).expect("the test opens the database");
        conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE;")
            .expect("the test takes the write lock");
        held.send(()).expect("the test waits for the lock");
        std::thread::sleep(hold);
        conn.batch_execute("COMMIT;")
            .expect("the test releases the lock");
    })
}

/// What one connection saw.
#[derive(Default)]
struct Seen {
    /// Answers to this connection's own chats, by ref: "chat", "overloaded"
    /// or "store_failed".
    answers: HashMap<String, String>,
    /// Every chat frame received (own echoes and others'), as (sender, n).
    chats: Vec<(String, u64)>,
    /// The id of the last chat frame received.
    last_id: i64,
}

struct Outcome {
    sent: usize,
    echoed: usize,
    overloaded: usize,
    store_failed: usize,
    rss_start: u64,
    rss_max_during: u64,
    rss_max_after: u64,
    metrics: String,
}

const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];

/// Bounds the run in count whatever the machine's speed.
const MAX_PER_SENDER: u64 = 20_000;

/// One flood at a time: two would share the machine's cores with each other
/// and with every other test.
static ONE_STALL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Five connections in one room send 4 KB chats as fast as they can while
/// the write lock is held for `lock`, then wait for every answer. Checks
/// what must hold whatever the timing; returns the figures.
async fn stall(lock: Duration) -> Outcome {
    let _alone = ONE_STALL_AT_A_TIME.lock().await;
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("chat.db");
    let server = ServerProcess::start(
        CHATTERBOX,
        &db,
        &[("RATE_LIMIT", "1000000"), ("RATE_BURST", "1000000")],
    );
    let pid = server.child.id();
    let port = server.port;

    let mut clients = Vec::new();
    for user in USERS {
        let mut client = Client::connect(port, user).await;
        client.join("stall").await;
        clients.push(client);
    }
    // Everyone has heard everyone join.
    for (i, client) in clients.iter_mut().enumerate() {
        for _ in i + 1..USERS.len() {
            client.expect("join").await;
        }
    }

    let rss_start = rss_bytes(pid);
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u64)>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (samples, sampling) = (samples.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kb) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        samples.lock().unwrap().push((Instant::now(), kb * 1024));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let (held_tx, held_rx) = mpsc::channel();
    let locker = hold_write_lock(&db, lock, held_tx);
    held_rx.recv().expect("the lock is taken");
    let locked_at = Instant::now();
    let unlock_at = locked_at + lock;

    let padding = "x".repeat(4000);
    let mut tasks = Vec::new();
    for (client, user) in clients.into_iter().zip(USERS) {
        let (mut sink, mut stream) = client.ws.split();
        let padding = padding.clone();
        // The sender: as fast as the socket takes them, until the lock goes.
        let sender = async move {
            let mut n: u64 = 0;
            while Instant::now() < unlock_at && n < MAX_PER_SENDER {
                let frame = json!({
                    "type": "chat",
                    "room": "stall",
                    "text": format!("{user} {n} {padding}"),
                    "ref": n.to_string(),
                });
                sink.send(Message::Text(frame.to_string()))
                    .await
                    .expect("the chat is sent");
                n += 1;
            }
            (sink, n)
        };
        let sender = actix_web::rt::spawn(sender);
        // The reader: every frame, until told how many answers to expect.
        let (total_tx, total_rx) = tokio::sync::oneshot::channel::<u64>();
        let reader = async move {
            let mut seen = Seen::default();
            let mut total_rx = Some(total_rx);
            let mut expected: Option<u64> = None;
            loop {
                if let Some(rx) = total_rx.as_mut() {
                    if let Ok(total) = rx.try_recv() {
                        expected = Some(total);
                        total_rx = None;
                    }
                }
                if let Some(own) = expected {
                    if seen.answers.len() as u64 == own {
                        return (seen, stream);
                    }
                }
                let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
                let text = match next {
                    Err(_) => continue,
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                    Ok(other) => panic!("{user}: expected frames, got {other:?}"),
                };
                let frame: Value = serde_json::from_str(&text).expect("frames are JSON");
                let reference = frame["ref"].as_str().map(str::to_string);
                let answer = match frame["type"].as_str() {
                    Some("chat") => {
                        let mut words = frame["text"].as_str().unwrap().split(' ');
                        let from = words.next().unwrap().to_string();
                        let n: u64 = words.next().unwrap().parse().unwrap();
                        if reference.is_some() {
                            assert_eq!(from, user, "a ref only on the sender's copy");
                            assert_eq!(reference.as_deref(), Some(n.to_string().as_str()));
                        }
                        let id = frame["id"].as_i64().unwrap();
                        assert!(
                            id > seen.last_id,
                            "{user}: ids must rise in broadcast order"
                        );
                        seen.last_id = id;
                        seen.chats.push((from, n));
                        "chat".to_string()
                    }
                    Some("error") => {
                        let code = frame["code"].as_str().unwrap().to_string();
                        assert!(
                            code == "overloaded" || code == "store_failed",
                            "{user}: unexpected {frame}"
                        );
                        assert!(reference.is_some(), "{user}: error without ref: {frame}");
                        code
                    }
                    _ => panic!("{user}: unexpected {frame}"),
                };
                if let Some(reference) = reference {
                    if let Some(first) = seen.answers.insert(reference.clone(), answer.clone()) {
                        panic!("{user}: ref {reference} answered twice: {first}, then {answer}");
                    }
                }
            }
        };
        tasks.push((sender, total_tx, actix_web::rt::spawn(reader)));
    }

    let mut sent = Vec::new();
    let mut readers = Vec::new();
    for (sender, total_tx, reader) in tasks {
        let (sink, n) = sender.await.expect("the sender finishes");
        sent.push((sink, n));
        readers.push((total_tx, reader));
    }
    let unlocked = Instant::now();
    locker.join().expect("the lock holder finishes");

    // Each connection waits for one answer per chat it sent.
    let mut seen = Vec::new();
    for ((_, n), (total_tx, reader)) in sent.iter().zip(readers) {
        let _ = total_tx.send(*n);
        let (s, stream) = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .expect("every chat is answered in time")
            .expect("the reader finishes");
        seen.push((s, stream));
    }
    let total_sent: u64 = sent.iter().map(|(_, n)| n).sum();
    let count = |code: &str| {
        seen.iter()
            .map(|(s, _)| s.answers.values().filter(|a| *a == code).count())
            .sum::<usize>()
    };
    let (echoed, overloaded, store_failed) =
        (count("chat"), count("overloaded"), count("store_failed"));
    for ((s, _), (_, n)) in seen.iter().zip(&sent) {
        // Every ref 0..n answered once (no extra, no missing).
        assert_eq!(s.answers.len() as u64, *n);
        assert!((0..*n).all(|i| s.answers.contains_key(&i.to_string())));
    }

    // What was echoed is what is stored, and every member got each stored
    // chat once, in each sender's order; nobody got a refused one.
    let (status, _, details) = get_json(port, "/api/rooms/stall").await;
    assert_eq!(status, 200);
    assert_eq!(details["messages"], echoed as u64, "{details}");
    let mut streams = Vec::new();
    for (mut s, mut stream) in seen {
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.chats.len() < echoed {
            assert!(Instant::now() < deadline, "a member misses stored chats");
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "chat", "{frame}");
                    let id = frame["id"].as_i64().unwrap();
                    assert!(id > s.last_id, "ids must rise in broadcast order");
                    s.last_id = id;
                    let mut words = frame["text"].as_str().unwrap().split(' ');
                    let from = words.next().unwrap().to_string();
                    s.chats.push((from, words.next().unwrap().parse().unwrap()));
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("a member's stream ended: {other:?}"),
            }
        }
        assert_eq!(
            s.chats.len(),
            echoed,
            "each stored chat reaches a member once"
        );
        for user in USERS {
            let ns: Vec<u64> = s
                .chats
                .iter()
                .filter(|(f, _)| f == user)
                .map(|(_, n)| *n)
                .collect();
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "{user}'s chats out of order"
            );
        }
        streams.push(stream);
    }
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let max_in = |from: Instant, to: Instant| {
        samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0)
    };
    let rss_max_during = max_in(locked_at, unlocked);
    let rss_max_after = max_in(unlocked, settled + Duration::from_millis(300));
    let metrics = scrape(port).await.text;
    drop(streams);
    drop(sent);
    let outcome = Outcome {
        sent: total_sent as usize,
        echoed,
        overloaded,
        store_failed,
        rss_start,
        rss_max_during,
        rss_max_after,
        metrics,
    };
    eprintln!(
        "stall of {lock:?}: sent {}, echoed {}, overloaded {}, store_failed {}; \
         RSS start {} MB, max during {} MB, max after {} MB",
        outcome.sent,
        outcome.echoed,
        outcome.overloaded,
        outcome.store_failed,
        outcome.rss_start >> 20,
        outcome.rss_max_during >> 20,
        outcome.rss_max_after >> 20,
    );
    outcome
}

/// The value of one sample line of the exposition, e.g.
/// `chatterbox_errors_total{code="overloaded"}`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} is exposed"))
        .trim()
        .parse()
        .unwrap()
}

fn assert_memory_bounded(outcome: &Outcome) {
    const MARGIN: u64 = 100 << 20;
    assert!(
        outcome.rss_max_during < outcome.rss_start + MARGIN,
        "RSS during the stall: {} MB from {} MB",
        outcome.rss_max_during >> 20,
        outcome.rss_start >> 20
    );
    assert!(
        outcome.rss_max_after < outcome.rss_start + MARGIN,
        "RSS after the stall: {} MB from {} MB",
        outcome.rss_max_after >> 20,
        outcome.rss_start >> 20
    );
}

#[actix_web::test]
async fn a_stalled_store_refuses_chats_past_the_bound_and_memory_stays_bounded() {
    // Shorter than the server's 5 s busy timeout: the commits wait, none fails.
    let outcome = stall(Duration::from_secs(4)).await;
    assert_memory_bounded(&outcome);
    assert!(outcome.overloaded > 0, "the flood passes the bound");
    assert!(outcome.echoed > 0);
    assert_eq!(outcome.store_failed, 0);
    assert_eq!(
        sample(
            &outcome.metrics,
            "chatterbox_errors_total{code=\"overloaded\"}"
        ),
        outcome.overloaded as f64
    );
    // The backlog drained in several commits, none bigger than the bound.
    let commits = sample(&outcome.metrics, "chatterbox_store_batch_size_count");
    assert!(commits > 1.0, "{commits} commits");
    assert_eq!(
        sample(
            &outcome.metrics,
            "chatterbox_store_batch_size_bucket{le=\"500\"}"
        ),
        commits,
        "a commit of more than 500 messages"
    );
}

#[actix_web::test]
async fn a_store_stalled_past_the_busy_timeout_answers_store_failed_and_stays_bounded() {
    // Longer than the busy timeout: the first commit fails, later ones pass.
    let outcome = stall(Duration::from_secs(6)).await;
    assert_memory_bounded(&outcome);
    assert!(outcome.overloaded > 0, "the flood passes the bound");
    assert!(
        outcome.store_failed > 0,
        "a commit waited past the busy timeout"
    );
    assert!(outcome.echoed > 0, "commits after the lock succeed");
}

#[actix_web::test]
async fn past_the_bound_a_chat_gets_overloaded_with_its_ref_and_reaches_nobody() {
    let app = spawn_app_with(|c| c.max_pending_messages = 2).await;
    let mut alice = app.connect("alice").await;
    let mut bob = app.connect("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.expect("join").await;

    let (held_tx, held_rx) = mpsc::channel();
    let locker = hold_write_lock(
        &app.dir.path().join("chat.db"),
        Duration::from_millis(1500),
        held_tx,
    );
    held_rx.recv().expect("the lock is taken");
    // Two chats wait for the store; the third is past the bound.
    alice.chat("r", "one", "1").await;
    alice.chat("r", "two", "2").await;
    alice.chat("r", "three", "3").await;
    let refused = alice.expect_error("overloaded").await;
    assert_eq!(refused["ref"], "3");
    let m = scrape(app.port).await;
    assert_eq!(m.value("chatterbox_pending_messages"), 2.0);
    assert_eq!(m.value("chatterbox_pending_bytes"), 6.0);
    assert_eq!(
        m.get("chatterbox_errors_total", Some(("code", "overloaded"))),
        1.0
    );

    // Once the store is back the two are stored and broadcast; the refused
    // one never is, and the next chat is accepted again.
    assert_eq!(alice.expect("chat").await["ref"], "1");
    assert_eq!(alice.expect("chat").await["ref"], "2");
    alice.chat("r", "four", "4").await;
    assert_eq!(alice.expect("chat").await["ref"], "4");
    let texts: Vec<Value> = [
        bob.expect("chat").await,
        bob.expect("chat").await,
        bob.expect("chat").await,
    ]
    .iter()
    .map(|f| f["text"].clone())
    .collect();
    assert_eq!(texts, [json!("one"), json!("two"), json!("four")]);
    let (_, _, details) = app.get("/api/rooms/r").await;
    assert_eq!(details["messages"], 3);
    locker.join().expect("the lock holder finishes");
    let m = scrape(app.port).await;
    assert_eq!(m.value("chatterbox_pending_messages"), 0.0);
    assert_eq!(m.value("chatterbox_pending_bytes"), 0.0);
}

#[actix_web::test]
async fn a_backlog_drains_in_several_bounded_commits_in_order() {
    let app = spawn_app_with(|c| {
        c.rate_limit = 1_000_000.0;
        c.rate_burst = 1_000_000.0;
    })
    .await;
    let mut alice = app.connect("alice").await;
    alice.join("r").await;
    let (held_tx, held_rx) = mpsc::channel();
    let locker = hold_write_lock(
        &app.dir.path().join("chat.db"),
        Duration::from_millis(1000),
        held_tx,
    );
    held_rx.recv().expect("the lock is taken");
    // 600 chats queue up behind the lock (well within the bounds).
    let total = 600;
    for i in 0..total {
        alice.chat("r", &format!("m{i}"), &i.to_string()).await;
    }
    let mut last_id = 0;
    for i in 0..total {
        let echo = alice.expect("chat").await;
        assert_eq!(echo["ref"], i.to_string(), "echoes in the order sent");
        let id = echo["id"].as_i64().unwrap();
        assert!(id > last_id);
        last_id = id;
    }
    locker.join().expect("the lock holder finishes");
    let m = scrape(app.port).await;
    assert_eq!(m.value("chatterbox_messages_stored_total"), total as f64);
    // At most 256 per commit: at least three commits, none above 500.
    let commits = sample(&m.text, "chatterbox_store_batch_size_count");
    assert!(commits >= 3.0, "{commits} commits for {total} messages");
    assert_eq!(
        sample(&m.text, "chatterbox_store_batch_size_bucket{le=\"500\"}"),
        commits,
        "a commit of more than 500 messages"
    );
}
