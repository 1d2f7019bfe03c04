//! Test support shared by chatterbox's test suites (the API and browser
//! tests of the server, and the load tester's): the server in-process on
//! port 0 ([`spawn_app`]), the server binary as a child process
//! ([`ServerProcess`]), a WebSocket client speaking the chat protocol
//! ([`Client`]), plain HTTP ([`get_json`]), `/metrics` ([`scrape`]), and a
//! throwaway PostgreSQL server ([`PgServer`]).
//!
//! What only one suite uses stays in that suite.

mod app;
mod ci;
mod client;
mod http;
mod metrics;
mod net;
mod pg_server;
mod server_process;

use std::path::PathBuf;
use std::time::Duration;

pub use app::{spawn_app, spawn_app_in, spawn_app_with, TestApp};
pub use ci::{skip_unless_ci, under_ci};
pub use client::Client;
pub use http::get_json;
pub use metrics::{scrape, Metrics};
pub use net::free_port;
pub use pg_server::{PgServer, DATABASE, DEBIAN_PG_BIN, PG_BIN_VARIABLE, SUPERUSER};
pub use server_process::{serve_if_started_as_server, ServerBinary, ServerProcess};

/// How long a test waits for a frame, an answer or a process it expects
/// before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The page the server serves: the chatterbox package's `static/`.
pub fn static_dir() -> PathBuf {
    let testkit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit
        .parent()
        .expect("testkit/ is inside the workspace")
        .join("static")
}
