//! The database's files changing under a running server: unlinked,
//! replaced, locked by another process, made immutable. The server binary
//! runs as a child process, so a crash (a signal) and a restart on the same
//! folder are what they would be in production.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use serde_json::Value;
use tempfile::TempDir;
use testkit::{get_json, scrape, Client, ServerProcess};

use crate::helpers::{stored_texts, CHATTERBOX};

const FAST: &[(&str, &str)] = &[("RATE_LIMIT", "100000"), ("RATE_BURST", "100000")];

/// `chat.db`, `chat.db-wal` and `chat.db-shm` in `dir`.
fn db_files(dir: &Path) -> [PathBuf; 3] {
    let main = dir.join("chat.db");
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", main.display()));
    [main.clone(), with("-wal"), with("-shm")]
}

/// Polls `/health` until it answers `status`; returns its body. Each
/// request may itself take the server's 2 s health timeout.
async fn health_becomes(port: u16, status: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (got, _, body) = get_json(port, "/health").await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/health did not answer {status} within {within:?}; last {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 503 from `/health` carries a plain reason, under `reason` and, for
/// clients of protocol 1.0, `error`.
fn assert_unavailable_with_reason(body: &Value) {
    assert_eq!(body["status"], "unavailable", "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "no reason in {body}");
    assert_eq!(body["error"], body["reason"], "{body}");
}

/// SQLite's own error texts, which a client must never see.
const SQLITE_TEXTS: &[&str] = &[
    "disk I/O error",
    "database or disk is full",
    "database is locked",
    "readonly database",
    "unable to open database file",
    "no such table",
    "malformed",
    "database query failed",
    "cannot open database",
];

/// The sender's answer to a chat that was not stored: `store_failed` with
/// its ref and a plain message, no SQLite detail.
async fn expect_store_failed(client: &mut Client, reference: &str) {
    let frame = client.recv().await;
    assert_eq!(
        frame["type"], "error",
        "chat {reference} was not refused: {frame}"
    );
    assert_eq!(frame["code"], "store_failed", "{frame}");
    assert_eq!(frame["ref"], reference, "{frame}");
    let message = frame["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{frame}");
    for detail in SQLITE_TEXTS {
        assert!(
            !message.to_lowercase().contains(&detail.to_lowercase()),
            "store_failed carries SQLite's text {detail:?}: {message:?}"
        );
    }
}

/// The server process has not died (of a signal or otherwise).
fn assert_alive(server: &mut ServerProcess) {
    let status = server.child.try_wait().expect("the child can be polled");
    assert!(status.is_none(), "the server died: {status:?}");
}

#[actix_web::test]
async fn unlinked_database_files_refuse_chats_turn_health_503_and_lose_nothing_echoed() {
    let dir = TempDir::new().unwrap();
    let [db, wal, shm] = db_files(dir.path());
    let mut server = ServerProcess::start(CHATTERBOX, &db, FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("r").await;
    alice.chat("r", "before", "0").await;
    alice.expect("chat").await;

    for path in [&db, &wal, &shm] {
        std::fs::remove_file(path).unwrap_or_else(|e| panic!("unlink {}: {e}", path.display()));
    }
    for i in 1..=20 {
        alice.chat("r", &format!("after {i}"), &i.to_string()).await;
        expect_store_failed(&mut alice, &i.to_string()).await;
    }
    let body = health_becomes(server.port, 503, Duration::from_secs(10)).await;
    assert_unavailable_with_reason(&body);
    assert_eq!(body["reason"], "the database file is gone");
    assert_eq!(
        scrape(server.port).await.value("chatterbox_store_writable"),
        0.0
    );
    // No new, empty database appeared in the old one's place.
    assert!(!db.exists(), "a database file was created at DB_PATH");
    // REST reads fail with a plain reason, also when an empty file without
    // the schema is put at DB_PATH: no SQLite text, no path.
    std::fs::write(&db, b"").expect("an empty file at DB_PATH");
    let (status, _, body) = get_json(server.port, "/api/rooms/r/messages").await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().expect("a JSON error");
    let folder = dir.path().to_string_lossy().to_string();
    assert!(
        !error.contains(&folder) && !error.contains("no such table"),
        "{error}"
    );
    assert_alive(&mut server);
    drop(server);

    // Restarted on the same folder (a fresh database, since the file is
    // gone): nothing that was echoed after the unlink is missing, because
    // nothing was.
    let server = ServerProcess::start(CHATTERBOX, &db, &[]);
    let stored = stored_texts(server.port, "r").await;
    assert!(stored.iter().all(|t| !t.starts_with("after")), "{stored:?}");
    let (status, _, _) = get_json(server.port, "/health").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn an_unlinked_wal_loses_no_acknowledged_message() {
    let dir = TempDir::new().unwrap();
    let [db, wal, _] = db_files(dir.path());
    let server = ServerProcess::start(CHATTERBOX, &db, FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("r").await;
    let mut echoed = Vec::new();
    for i in 0..10 {
        alice.chat("r", &format!("m{i}"), &i.to_string()).await;
        echoed.push(
            alice.expect("chat").await["text"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    std::fs::remove_file(&wal).expect("unlink the -wal");
    let mut refused = 0;
    for i in 10..30 {
        alice.chat("r", &format!("m{i}"), &i.to_string()).await;
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("chat") => echoed.push(frame["text"].as_str().unwrap().to_string()),
            Some("error") if frame["code"] == "store_failed" => refused += 1,
            _ => panic!("unexpected answer to chat {i}: {frame}"),
        }
    }
    let wal_back = wal.exists();

    // A crash: nothing the server would do on a clean stop helps.
    server.signal("KILL");
    drop(server);
    let server = ServerProcess::start(CHATTERBOX, &db, &[]);
    let stored = stored_texts(server.port, "r").await;
    let missing: Vec<&String> = echoed.iter().filter(|t| !stored.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} (stored {stored:?})"
    );
    // Once the server has its -wal back, chats are stored again.
    assert!(refused < 20, "every chat after the unlink was refused");
    assert!(wal_back, "no -wal at the path again");
}

#[actix_web::test]
async fn a_write_lock_held_by_another_process_turns_health_503_until_a_write_succeeds() {
    let dir = TempDir::new().unwrap();
    let [db, _, _] = db_files(dir.path());
    let mut server = ServerProcess::start(CHATTERBOX, &db, FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("r").await;
    let (status, _, _) = get_json(server.port, "/health").await;
    assert_eq!(status, 200);

    // This test process is the other process: it takes the write lock and
    // keeps it past the server's busy timeout.
    let mut other = SqliteConnection::establish(db.to_str().unwrap()).expect("a second connection");
    other
        .batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE;")
        .expect("the write lock");
    let body = health_becomes(server.port, 503, Duration::from_secs(15)).await;
    assert_unavailable_with_reason(&body);
    alice.chat("r", "while locked", "1").await;
    expect_store_failed(&mut alice, "1").await;
    assert_alive(&mut server);

    other
        .batch_execute("ROLLBACK")
        .expect("the lock is released");
    health_becomes(server.port, 200, Duration::from_secs(10)).await;
    alice.chat("r", "after", "2").await;
    let echo = alice.expect("chat").await;
    assert_eq!(echo["text"], "after");
}

/// `chattr` on `paths`; `Err` says why it could not be done.
fn chattr(flag: &str, paths: &[&Path]) -> Result<(), String> {
    let output = Command::new("chattr")
        .arg(flag)
        .args(paths)
        .output()
        .map_err(|e| format!("chattr cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chattr {flag} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Clears the immutable flag on drop, so the temporary folder can be
/// removed even when the test fails.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: &[PathBuf]) -> Immutable {
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        // Written back first, so the -shm's pages are clean and the next
        // write to its mapping faults: that fault is what killed the
        // process with SIGBUS.
        let _ = Command::new("sync").status();
        chattr("+i", &refs).expect("chattr +i");
        Immutable(paths.to_vec())
    }

    fn clear(self) {}
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let refs: Vec<&Path> = self.0.iter().map(PathBuf::as_path).collect();
        let _ = chattr("-i", &refs);
    }
}

/// Whether `chattr +i` works in `dir` (root, and a filesystem with the
/// flag); `Err` says why not.
fn chattr_works(dir: &Path) -> Result<(), String> {
    let probe = dir.join("chattr-probe");
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write a probe file: {e}"))?;
    chattr("+i", &[&probe])?;
    chattr("-i", &[&probe])?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `CI` set to anything but empty, `0` or `false`.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

#[actix_web::test]
async fn immutable_database_files_refuse_chats_without_crashing_and_recover() {
    let dir = TempDir::new().unwrap();
    if let Err(why) = chattr_works(dir.path()) {
        if under_ci() {
            panic!("chattr +i is unavailable ({why}); CI is set, so this test must run");
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "test immutable_database_files_refuse_chats_without_crashing_and_recover SKIPPED: {why} (run as root on a filesystem with chattr support, e.g. ext4)"
        );
        return;
    }
    let files = db_files(dir.path());
    let mut server = ServerProcess::start(CHATTERBOX, &files[0], FAST);
    let mut alice = Client::connect(server.port, "alice").await;
    alice.join("r").await;
    alice.chat("r", "before", "0").await;
    alice.expect("chat").await;

    let immutable = Immutable::set(&files);
    for i in 1..=5 {
        alice
            .chat("r", &format!("frozen {i}"), &i.to_string())
            .await;
        expect_store_failed(&mut alice, &i.to_string()).await;
    }
    let body = health_becomes(server.port, 503, Duration::from_secs(10)).await;
    assert_unavailable_with_reason(&body);
    // REST reads touch the same shared memory; they must not crash either.
    let (status, _, _) = get_json(server.port, "/api/rooms/r/messages").await;
    assert!(status == 200 || status == 503, "{status}");
    assert_alive(&mut server);

    immutable.clear();
    health_becomes(server.port, 200, Duration::from_secs(10)).await;
    alice.chat("r", "thawed", "6").await;
    assert_eq!(alice.expect("chat").await["text"], "thawed");
    assert_alive(&mut server);

    // A stop while the files are immutable ends with an exit code, not a
    // signal.
    let immutable = Immutable::set(&files);
    server.signal("TERM");
    let code = server.exited().await;
    assert!(
        code.is_some(),
        "the server was killed by a signal on shutdown"
    );
    immutable.clear();
}
