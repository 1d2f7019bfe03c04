//! The server as a process of its own, for what only a real process can
//! show: signals, `kill -9`, exit codes, memory read by pid.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{static_dir, WAIT};

/// Set in the environment of a [`ServerBinary::ThisTest`] process: serve
/// instead of returning.
const AS_SERVER: &str = "CHATTERBOX_TESTKIT_SERVE";

/// Which executable a [`ServerProcess`] runs.
///
/// Cargo hands a test the path of a binary (`CARGO_BIN_EXE_*`, at compile
/// time) only for the binaries of the test's own package, and building
/// another package's binary for a test needs an unstable feature. So the
/// suite says which executable to run: the root package's tests name the
/// real binary, and other packages' tests run themselves once more as the
/// server.
#[derive(Debug, Clone, Copy)]
pub enum ServerBinary {
    /// The `chatterbox` binary at this path: the root package's tests pass
    /// `env!("CARGO_BIN_EXE_chatterbox")`, which Cargo builds for them.
    Path(&'static str),
    /// The running test executable, started again to run only the ignored
    /// test of this name, whose body is [`serve_if_started_as_server`]: it
    /// calls `chatterbox::cli::serve`, which is all the binary does without
    /// a subcommand (besides reading `.env`, which tests do not want). It
    /// is always built from the current sources, so there is no stale
    /// binary to pick up. For packages other than the root (the load
    /// tester).
    ThisTest(&'static str),
}

/// The body of the ignored test that [`ServerBinary::ThisTest`] names. In
/// the process a [`ServerProcess`] started, it serves until a signal ends
/// it and exits with the server's code (not the harness's verdict); in a
/// plain `cargo test -- --ignored` it returns at once.
pub fn serve_if_started_as_server() {
    if std::env::var_os(AS_SERVER).is_none() {
        return;
    }
    let code = chatterbox::cli::serve();
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// The server running in a child process on port 0; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    /// Lines the server logs after start-up.
    pub log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `binary` on 127.0.0.1, port 0, with `db_path`, the tests'
    /// defaults and the extra variables `env`; returns once the server has
    /// logged its address.
    pub fn start(binary: ServerBinary, db_path: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let mut command = match binary {
            ServerBinary::Path(path) => Command::new(path),
            ServerBinary::ThisTest(test) => {
                let this = std::env::current_exe().expect("the test executable's path");
                let mut command = Command::new(this);
                command
                    .args(["--exact", test, "--ignored", "--nocapture"])
                    .args(["--test-threads", "1", "--quiet"])
                    .env(AS_SERVER, "1");
                command
            }
        };
        command
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", db_path)
            .env("STATIC_DIR", static_dir())
            .env("RUST_LOG", "info")
            .env_remove("AUTH_SECRET")
            // A test harness prints its own lines to stdout; the server
            // logs to stderr.
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
        let deadline = Instant::now() + WAIT;
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
        ServerProcess { child, port, log }
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `KILL`, `STOP`, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit without blocking the test's runtime,
    /// so the test's own clients (and in-process nodes) keep running: a
    /// server shutting down waits for its clients' close handshakes, which
    /// a blocked test thread could not answer. Returns its exit code.
    pub async fn exited(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the server did not exit in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the process to exit; returns its exit code. Blocks the
    /// thread: for a process nothing in the test talks to any more (see
    /// [`ServerProcess::exited`]).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the server did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
