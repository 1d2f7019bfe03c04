//! `chatterbox healthcheck`, Docker's HEALTHCHECK: the binary as a process
//! against the real server, a stopped one and a port nobody listens on.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use testkit::ServerProcess;

use crate::helpers::CHATTERBOX;

/// Runs `chatterbox healthcheck` with HOST and PORT (and nothing from the
/// test's own environment that could move it elsewhere).
fn healthcheck(host: &str, port: u16) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("healthcheck")
        .env("HOST", host)
        .env("PORT", port.to_string())
        .env_remove("AUTH_SECRET")
        .output()
        .expect("the binary runs")
}

/// A port nobody listens on: bind one, then drop it.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_running_server_is_healthy() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &[]);

    let out = healthcheck("127.0.0.1", server.port);

    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn a_server_bound_to_every_address_is_probed_on_loopback() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &[]);

    // What the image sets: HOST=0.0.0.0.
    let out = healthcheck("0.0.0.0", server.port);

    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn no_server_is_unhealthy() {
    let out = healthcheck("127.0.0.1", closed_port());

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
}

#[test]
fn a_server_that_does_not_answer_is_unhealthy_within_the_probes_timeout() {
    let dir = TempDir::new().unwrap();
    let server = ServerProcess::start(CHATTERBOX, &dir.path().join("chat.db"), &[]);
    // The kernel still accepts connections; nobody reads them.
    server.signal("STOP");

    let started = Instant::now();
    let out = healthcheck("127.0.0.1", server.port);
    let took = started.elapsed();
    server.signal("CONT");

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
    // Inside Docker's --timeout=5s, so the probe says why itself.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_bad_configuration_is_reported_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_chatterbox"))
        .arg("healthcheck")
        .env("PORT", "http")
        .output()
        .expect("the binary runs");

    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration: ") && stderr.contains("PORT"),
        "{stderr}"
    );
}
