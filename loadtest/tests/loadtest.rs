//! The load tester (`loadtest`) against the real server in a process of
//! its own: a small, short run of each kind that checks the tool's
//! accounting end to end. Nothing here asserts speed.

use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;
use testkit::{ServerBinary, ServerProcess};

/// The server these tests load: a process of its own, as `cargo run
/// --release` starts it, so that a test can stop it with SIGSTOP and the
/// load tester can read its memory by pid. The `chatterbox` binary is
/// another package's, which Cargo does not build for these tests, so it is
/// this test executable run once more as [`chatterbox_server`].
const SERVER: ServerBinary = ServerBinary::ThisTest("chatterbox_server");

/// The server process of the other tests ([`SERVER`]); in a plain `cargo
/// test -- --ignored` it has nothing to do.
#[test]
#[ignore = "the server process of the other tests (ServerProcess starts it)"]
fn chatterbox_server() {
    testkit::serve_if_started_as_server();
}

/// Runs `loadtest --json` against `server` with `args`; its exit code and result.
fn loadtest(server: &ServerProcess, args: &[&str]) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .env_remove("AUTH_SECRET")
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{}", server.port))
        .args([
            "--json",
            "--quiet",
            "--setup-timeout",
            "20s",
            "--drain-timeout",
            "5s",
        ])
        .args(args)
        .output()
        .expect("the loadtest binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), result)
}

#[test]
fn a_small_fanout_delivers_every_message_once_in_order() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[]);

    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "fanout",
            "--clients",
            "20",
            "--senders",
            "4",
            "--rate",
            "20",
            "--duration",
            "2s",
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["passed"], true);
    let sent = result["messages"]["sent"].as_u64().unwrap();
    assert!(sent > 0, "{result:#}");
    assert_eq!(result["messages"]["acked"].as_u64(), Some(sent));
    let deliveries = &result["deliveries"];
    assert_eq!(deliveries["expected"].as_u64(), Some(sent * 20));
    assert_eq!(deliveries["received"], deliveries["expected"]);
    assert_eq!(deliveries["lost"], 0);
    assert_eq!(deliveries["duplicated"], 0);
    assert_eq!(deliveries["out_of_order"], 0);
    assert_eq!(deliveries["latency_ms"]["count"].as_u64(), Some(sent * 20));
    assert_eq!(result["messages"]["stored"]["found"].as_u64(), Some(sent));
    assert_eq!(result["connections"]["opened"], 20);
}

#[test]
fn with_the_servers_secret_it_connects_with_minted_tokens() {
    const SECRET: &str = "loadtest-secret-0123456789abcdef0123";
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &[("AUTH_SECRET", SECRET)],
    );
    let small = [
        "--scenario",
        "fanout",
        "--clients",
        "5",
        "--senders",
        "1",
        "--rate",
        "5",
        "--duration",
        "1s",
    ];

    let mut with_secret = small.to_vec();
    with_secret.extend(["--auth-secret", SECRET]);
    let (code, result) = loadtest(&server, &with_secret);
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["connections"]["opened"], 5);
    assert_eq!(result["deliveries"]["lost"], 0);

    // Without it, every upgrade is refused, and the run says so and fails.
    let (code, result) = loadtest(&server, &small);
    assert_ne!(code, 0, "{result:#}");
    assert_eq!(result["passed"], false);
    assert!(result.to_string().contains("HTTP 401"), "{result:#}");
}

#[test]
fn throttling_by_the_servers_rate_limit_is_reported() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &[("RATE_LIMIT", "2"), ("RATE_BURST", "2")],
    );

    let (_, result) = loadtest(
        &server,
        &[
            "--scenario",
            "rooms",
            "--rooms",
            "2",
            "--members",
            "3",
            "--per-sender-rate",
            "20",
            "--duration",
            "1s",
            "--server-rate-limit",
            "2",
            "--server-rate-burst",
            "2",
        ],
    );

    let warnings = result["warnings"].to_string();
    assert!(warnings.contains("allows 2 msg/s"), "{result:#}");
    assert!(warnings.contains("rate_limited"), "{result:#}");
    assert!(result["errors"]["rate_limited"].as_u64().unwrap() > 0);
    let m = &result["messages"];
    assert_eq!(
        m["sent"].as_u64(),
        Some(m["acked"].as_u64().unwrap() + m["refused"].as_u64().unwrap())
    );
    // Refused messages are not expected anywhere: nothing counts as lost.
    assert_eq!(result["deliveries"]["lost"], 0, "{result:#}");
}

#[test]
fn members_whose_join_failed_are_excused_not_counted_as_losing_messages() {
    let dir = TempDir::new().unwrap();
    // One room allowed: the members of the second room cannot join.
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[("MAX_ROOMS", "1")]);
    let run = [
        "--scenario",
        "rooms",
        "--rooms",
        "2",
        "--members",
        "2",
        "--per-sender-rate",
        "4",
        "--duration",
        "1s",
    ];

    let mut excused = run.to_vec();
    excused.extend(["--max-connect-failures", "2"]);
    let (code, result) = loadtest(&server, &excused);
    assert_eq!(code, 0, "{result:#}");
    let connections = &result["connections"];
    assert_eq!(connections["join_failed"], 2, "{result:#}");
    assert_eq!(connections["ready"], 2, "{result:#}");
    assert_eq!(connections["not_ready"], 2, "{result:#}");
    let deliveries = &result["deliveries"];
    assert_eq!(deliveries["lost"], 0, "{result:#}");
    // Only the joined room's two members hear its messages.
    let acked = result["messages"]["acked"].as_u64().unwrap();
    assert!(acked > 0, "{result:#}");
    assert_eq!(deliveries["expected"].as_u64(), Some(acked * 2));

    // Not excused, the same run fails for its connections, not for losses.
    let (code, result) = loadtest(&server, &run);
    assert_ne!(code, 0, "{result:#}");
    let failures = result["failures"].to_string();
    assert!(failures.contains("failed to open or join"), "{failures}");
    assert!(!failures.contains("lost"), "{failures}");
}

#[test]
fn a_server_that_stops_mid_run_fails_it_within_a_bound() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &[("RATE_LIMIT", "1000000"), ("RATE_BURST", "1000000")],
    );
    let pid = server.child.id().to_string();
    // One sender pushing big texts fast: once the server stops reading,
    // its socket fills and a send blocks.
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .env_remove("AUTH_SECRET")
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{}", server.port))
        .args(["--json", "--quiet", "--no-store-check"])
        .args([
            "--clients",
            "2",
            "--senders",
            "1",
            "--per-sender-rate",
            "2000",
        ])
        .args(["--message-size", "4096", "--duration", "2s"])
        .args(["--drain-timeout", "1s", "--server-rate-limit", "1000000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the loadtest binary runs");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs")
    };
    assert!(signal("-STOP").success());
    let started = std::time::Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    signal("-CONT");
    if !finished {
        let _ = child.kill();
        panic!("the load tester hung on a stopped server");
    }
    let output = child.wait_with_output().unwrap();
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(output.status.code(), Some(1), "{result:#}");
    assert_eq!(result["passed"], false);
    assert!(
        result["messages"]["unanswered"].as_u64().unwrap() > 0,
        "{result:#}"
    );
    assert!(result["unfinished"]["panics"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn connect_reports_server_memory_per_connection() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[]);
    let pid = server.child.id().to_string();

    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "connect",
            "--clients",
            "50",
            "--duration",
            "500ms",
            "--server-pid",
            &pid,
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["connections"]["opened"], 50);
    assert_eq!(result["connections"]["dropped_by_server"], 0);
    assert!(
        result["server"]["bytes_per_connection"].is_number(),
        "{result:#}"
    );
}

#[test]
fn a_short_churn_completes_sessions_and_answers_every_message() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[]);

    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "churn",
            "--clients",
            "6",
            "--rooms",
            "2",
            "--churn-messages",
            "2",
            "--per-sender-rate",
            "10",
            "--duration",
            "1s",
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    assert!(
        result["churn"]["sessions"].as_u64().unwrap() >= 6,
        "{result:#}"
    );
    assert_eq!(result["messages"]["unanswered"], 0);
}

#[test]
fn churn_sessions_stop_sending_when_the_duration_is_over() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[]);

    // Sessions of 1000 messages at 2/s would take 500 s: --duration wins.
    let started = std::time::Instant::now();
    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "churn",
            "--clients",
            "3",
            "--rooms",
            "1",
            "--churn-messages",
            "1000",
            "--per-sender-rate",
            "2",
            "--duration",
            "1s",
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    assert!(started.elapsed().as_secs() < 30, "{result:#}");
    // Each worker: the message at the start, at most two more in 1 s.
    let sent = result["messages"]["sent"].as_u64().unwrap();
    assert!((3..=9).contains(&sent), "{result:#}");
    assert_eq!(result["messages"]["unanswered"], 0);
    // Cut short but left normally: each worker's session completed.
    assert_eq!(result["churn"]["sessions"], 3, "{result:#}");
}

#[test]
fn a_server_that_is_not_there_fails_the_run() {
    // A port nobody listens on: bind one, then drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &format!("ws://127.0.0.1:{port}"),
            "--json",
            "--quiet",
        ])
        .args([
            "--clients",
            "3",
            "--duration",
            "200ms",
            "--setup-timeout",
            "10s",
        ])
        .output()
        .expect("the loadtest binary runs");
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(result["passed"], false);
    assert_eq!(result["connections"]["failed"], 3);
}

#[test]
fn a_run_whose_every_message_is_refused_fails() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &[("MAX_MESSAGE_LEN", "100")],
    );
    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "fanout",
            "--clients",
            "3",
            "--senders",
            "1",
            "--rate",
            "5",
            "--duration",
            "1s",
            "--message-size",
            "200",
        ],
    );
    assert_ne!(code, 0, "{result:#}");
    assert_eq!(result["passed"], false);
    let failures = result["failures"].to_string();
    assert!(failures.contains("acknowledged none"), "{failures}");
    assert!(failures.contains("invalid_text"), "{failures}");
}

#[test]
fn a_keyed_fanout_delivers_every_message_once_in_order() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(SERVER, &dir.path().join("chat.db"), &[]);

    let (code, result) = loadtest(
        &server,
        &[
            "--scenario",
            "fanout",
            "--keyed",
            "--clients",
            "10",
            "--senders",
            "2",
            "--rate",
            "10",
            "--duration",
            "2s",
        ],
    );

    assert_eq!(code, 0, "{result:#}");
    let sent = result["messages"]["sent"].as_u64().unwrap();
    assert!(sent > 0, "{result:#}");
    // Each sender's keys are its own (k1, k2...): none is a resend, so
    // every chat is stored and delivered once.
    assert_eq!(result["messages"]["acked"].as_u64(), Some(sent));
    assert_eq!(result["deliveries"]["expected"].as_u64(), Some(sent * 10));
    assert_eq!(result["deliveries"]["lost"], 0);
    assert_eq!(result["deliveries"]["duplicated"], 0);
    assert_eq!(result["messages"]["stored"]["found"].as_u64(), Some(sent));
    // The flag belongs to the scenarios that chat from fixed members.
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--scenario", "churn", "--keyed"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
/// A features run against `server`: 8 members, 4 of them sending 80
/// operations/s in all for 3 s (each sender 20/s, within the chat rate
/// limit set here).
fn features_run(server: &ServerProcess) -> (i32, Value) {
    loadtest(
        server,
        &[
            "--scenario",
            "features",
            "--clients",
            "8",
            "--senders",
            "4",
            "--rate",
            "80",
            "--duration",
            "3s",
            "--server-rate-limit",
            "1000",
            "--server-rate-burst",
            "1000",
        ],
    )
}

fn limits_out_of_the_way() -> [(&'static str, &'static str); 2] {
    [("RATE_LIMIT", "1000"), ("RATE_BURST", "1000")]
}

#[test]
fn features_every_change_reaches_every_member_once_in_id_order() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &limits_out_of_the_way(),
    );

    let (code, result) = features_run(&server);

    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["errors"], serde_json::json!({}), "{result:#}");
    let d = &result["deliveries"];
    assert_eq!(
        (d["duplicated"].as_u64(), d["out_of_order"].as_u64()),
        (Some(0), Some(0))
    );
    let f = &result["features"];
    for kind in ["chat", "edit", "delete", "reaction"] {
        let k = &f["kinds"][kind];
        let acked = k["acked"].as_u64().unwrap();
        assert!(acked > 0, "no {kind} acknowledged: {result:#}");
        assert_eq!(k["sent"].as_u64(), Some(acked), "{kind}: {result:#}");
        // Every member, the sender included, got every one.
        assert_eq!(
            k["expected"].as_u64(),
            Some(acked * 8),
            "{kind}: {result:#}"
        );
        assert_eq!(k["received"], k["expected"], "{kind}: {result:#}");
        assert_eq!(k["lost"], 0, "{kind}: {result:#}");
        assert_eq!(
            k["echo_ms"]["count"].as_u64(),
            Some(acked),
            "{kind}: {result:#}"
        );
        assert_eq!(
            k["delivery_ms"]["count"].as_u64(),
            Some(acked * 7),
            "{kind}: {result:#}"
        );
    }
    let reads = &f["reads"];
    assert!(reads["acked"].as_u64().unwrap() > 0, "{result:#}");
    assert_eq!(reads["acked"], reads["sent"]);
    assert_eq!(reads["moved_back"], 0);
    // Typing: forwarded to the others, throttled, never to oneself.
    let typing = &f["typing"];
    assert!(typing["sent"].as_u64().unwrap() > 0, "{result:#}");
    assert!(typing["forwarded"].as_u64().unwrap() > 0, "{result:#}");
    assert_eq!(typing["from_self"], 0);
    assert_eq!(typing["over_throttle"], 0);
    // The replay holds every stored change, as members received them live,
    // and no typing.
    let replay = &f["replay"];
    assert_eq!(replay["complete"], true, "{result:#}");
    assert_eq!(replay["matches_live"], true, "{result:#}");
    assert_eq!(replay["typing_items"], 0);
    assert_eq!(replay["by_type"].get("typing"), None);
    assert!(
        replay["by_type"]["edit"].as_u64().unwrap() > 0,
        "{result:#}"
    );
    // Chats in the store: those acknowledged, resends not again.
    let chats = f["kinds"]["chat"]["acked"].as_u64().unwrap();
    assert_eq!(
        result["messages"]["stored"]["found"].as_u64(),
        Some(chats),
        "{result:#}"
    );
}

#[test]
fn features_a_resent_key_gets_the_original_id_and_no_member_a_duplicate() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(
        SERVER,
        &dir.path().join("chat.db"),
        &limits_out_of_the_way(),
    );

    let (code, result) = features_run(&server);

    let resends = &result["features"]["resends"];
    let sent = resends["sent"].as_u64().unwrap();
    assert!(
        sent >= 4,
        "each sender resends some keyed chats: {result:#}"
    );
    assert_eq!(resends["original_id"].as_u64(), Some(sent), "{result:#}");
    assert_eq!(resends["new_id"], 0, "{result:#}");
    assert_eq!(result["deliveries"]["duplicated"], 0, "{result:#}");
    assert_eq!(code, 0, "{result:#}");
}
