//! # chatterbox
//!
//! A WebSocket chat server: named rooms, presence, and message history in
//! SQLite, on actix actors. The wire protocol is in `docs/PROTOCOL.md`.
//!
//! # Layout
//! * [`config`]: configuration from the environment, one error per bad variable.
//! * [`protocol`]: the wire format; client frames decoded and validated,
//!   server frames encoded. Shared with the load tester and the tests.
//! * [`actors`]: `ChatSession` (one per connection), `ChatServer` (the
//!   registry of rooms), `RoomActor` (one per active room) and
//!   `HistoryActor` (SQLite on sync threads, with group commit).
//! * [`store`]: diesel schema, migrations and queries.
//! * [`http`]: the `/ws` upgrade, the REST API and `/health`.
//! * [`rate_limit`]: the per-connection token bucket.
//! * [`auth`]: signed identities (HS256 tokens) when `AUTH_SECRET` is set.
//! * [`caps`]: the caps on open connections, in all and per address.
//! * [`metrics`]: the Prometheus metrics behind `GET /metrics`.
//! * [`watchdog`]: closes WebSockets whose socket stopped taking data,
//!   which nothing inside the session can do.
//! * [`startup`]: builds and runs the whole server; graceful shutdown.
//!
//! The path of one chat message: session → room → history (stored, group
//! commit) → room → every member's session.

pub mod actors;
pub mod auth;
pub mod caps;
pub mod config;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod rate_limit;
pub mod startup;
pub mod store;
pub mod watchdog;
