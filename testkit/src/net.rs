//! Ports on 127.0.0.1 for programs that must be told one (chromedriver,
//! PostgreSQL) rather than taking port 0 themselves.

use std::net::TcpListener;

/// A port nothing listens on right now. Another process may take it before
/// the caller binds it: a caller that can, retries with a new one.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}
