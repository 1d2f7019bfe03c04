//! What the `chatterbox` binary runs: the server, and the two small tools
//! around it. `main.rs` parses the command line, reads `.env` and calls one
//! of these; they live in the library so that the load tester's tests can
//! start the same server, [`serve()`], in a process of their own.

mod healthcheck;
mod serve;
mod token;

pub use healthcheck::healthcheck;
pub use serve::serve;
pub use token::{parse_patterns, parse_ttl, token, Patterns};
