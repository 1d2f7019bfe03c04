//! The HTTP side: the `/ws` upgrade ([`ws`]), the REST API and health check
//! ([`api`]), a user's direct messages ([`dms`]), the server API ([`server_api`]), the browser client's files and the security headers
//! ([`static_files`]), and their shared error type ([`error`]). Routes are put
//! together in [`crate::startup`].

pub(crate) mod api;
pub(crate) mod dms;
pub(crate) mod error;
pub(crate) mod server_api;
pub(crate) mod static_files;
pub(crate) mod ws;

use std::sync::Arc;

use actix::Addr;

use crate::actors::server::ChatServer;
use crate::backlog::Backlog;
use crate::caps::ConnectionCaps;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::history::History;
use crate::metrics::Metrics;
use crate::watchdog::Watchdog;

/// What every handler can reach, shared through `web::Data`.
pub(crate) struct AppState {
    pub config: Arc<Config>,
    pub chat: Addr<ChatServer>,
    pub history: History,
    /// Cluster mode: the other nodes (presence, `/health`).
    pub cluster: Option<Cluster>,
    pub metrics: Arc<Metrics>,
    pub caps: Arc<ConnectionCaps>,
    /// Chat accepted and not yet stored: sessions admit each chat here.
    pub backlog: Arc<Backlog>,
    /// Drops the TCP connection of a WebSocket whose socket froze.
    pub watchdog: Watchdog,
}
