//! The server these tests load: a process of its own, as `cargo run
//! --release` starts it, so that a test can stop it with SIGSTOP and the
//! load tester can read its memory by pid.
//!
//! Cargo hands a test the path of a binary only for binaries of the test's
//! own package (`CARGO_BIN_EXE_*`), and the `chatterbox` binary is another
//! package's. So the process is this test executable started once more, to
//! run only [`child`]: it calls `chatterbox::cli::serve`, which is all the
//! `chatterbox` binary does without a subcommand (after reading `.env`, which
//! these tests do not want). It is always built from the current sources,
//! with no stale binary to pick up.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the child's environment: run the server instead of returning.
const AS_SERVER: &str = "LOADTEST_TEST_SERVE";

/// How long the server may take to log its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Started by [`ServerProcess::start`] as the only test of a child
/// process; there it serves until a signal ends it. In a plain `cargo test
/// -- --ignored` it has nothing to do.
#[test]
#[ignore = "the server process of the other tests (ServerProcess starts it)"]
fn child() {
    if std::env::var_os(AS_SERVER).is_none() {
        return;
    }
    let code = chatterbox::cli::serve();
    // Leave with the server's own exit code, not the harness's verdict.
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// The chatterbox server running in a child process on port 0.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts the server on `db_path` with the tests' defaults and `env`.
    pub fn start(db_path: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let this = std::env::current_exe().expect("the test executable's path");
        let mut command = Command::new(this);
        command
            .args(["--exact", "server::child", "--ignored", "--nocapture"])
            .args(["--test-threads", "1", "--quiet"])
            .env(AS_SERVER, "1")
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", db_path)
            .env("STATIC_DIR", static_dir())
            .env("RUST_LOG", "info")
            .env_remove("AUTH_SECRET")
            // The harness's own lines go to stdout; the server logs to stderr.
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the server process starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = mpsc::channel();
        // Read on to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = log
                .recv_timeout(remaining)
                .expect("the server logs its address");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest.rsplit(':').next().expect("host:port");
                break port.trim().parse().expect("a port number");
            }
        };
        ServerProcess { child, port }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page the server serves: the chatterbox package's static/.
fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../static")
}
