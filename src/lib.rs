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
//!   registry of rooms) and `RoomActor` (one per active room; a room's
//!   delivery is in `actors/room/delivery.rs`); the messages between them
//!   in `actors::messages`, one module per recipient.
//! * [`history`]: the one door to storage, [`history::History`]; behind it
//!   the `HistoryActor` threads (group commit) and a backend. SQLite's is
//!   [`history::sqlite`] (schema, migrations, queries, the checks on its
//!   files); a new backend implements [`history::backend::Backend`] and is
//!   chosen in [`history::History::start`].
//! * [`http`]: the `/ws` upgrade, the REST API and `/health`.
//! * [`rate_limit`]: the per-connection token bucket.
//! * [`auth`]: signed identities (HS256 tokens) when `AUTH_SECRET` is set.
//! * [`direct`]: direct-message rooms: the name of two users' room.
//! * [`caps`]: the caps on open connections, in all and per address.
//! * [`backlog`]: the bound on chat accepted but not yet stored and
//!   delivered (`overloaded` past it).
//! * [`metrics`]: the Prometheus metrics behind `GET /metrics`.
//! * [`watchdog`]: closes WebSockets whose socket stopped taking data,
//!   which nothing inside the session can do.
//! * [`thread_name`]: names the server's threads (`room-N`,
//!   `history-write`, `history-read`) for per-thread CPU figures.
//! * [`startup`]: builds and runs the whole server; graceful shutdown.
//! * [`cli`]: what the binary runs: the server until a signal, the health
//!   probe and the token minter.
//!
//! The path of one chat message: session → room → history (stored, group
//! commit) → room → every member's session.
//!
//! The public surface is what the binary, the tests, the benches and the load
//! tester use: `protocol`, `config`, `auth`, `startup`, `cli`, and for the
//! hot-path bench the room's delivery code (`actors::room::{delivery,
//! members}`, with `actors::SessionId` and `actors::outbox::Overflow`).
//! Everything else is `pub(crate)`; this map links to it anyway, so read it
//! with `cargo doc --document-private-items`.

// The map above and the modules' own docs link to internal items on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod actors;
pub mod auth;
pub(crate) mod backlog;
pub(crate) mod caps;
pub mod cli;
pub(crate) mod cluster;
pub mod config;
pub mod direct;
pub(crate) mod history;
pub(crate) mod http;
pub(crate) mod metrics;
pub mod permissions;
pub mod protocol;
pub(crate) mod rate_limit;
pub mod startup;
pub(crate) mod thread_name;
pub(crate) mod watchdog;
pub(crate) mod webhooks;
