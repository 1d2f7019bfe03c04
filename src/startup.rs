//! Putting the server together: the database and actors, every route in one
//! `App`, served by actix-http (with an upgrade service for WebSockets), and the graceful shutdown. `main` and the
//! integration tests both start the server through [`Application`].

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, AsyncContext, Context};
use actix_http::{Extensions, HttpService};
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::{AppConfig, Server, ServerHandle};
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};
use futures_util::future::LocalBoxFuture;

use crate::actors::messages::server::{BeginShutdown, CatchUpRooms};
use crate::actors::server::ChatServer;
use crate::backlog::Backlog;
use crate::caps::ConnectionCaps;
use crate::cluster::{default_node_id, Cluster, ClusterConfig};
use crate::config::Config;
use crate::history::{History, Storage, StoreError};
use crate::http::{api, dms, server_api, static_files, upgrade, ws, AppState};
use crate::metrics::Metrics;
use crate::thread_name::Numbered;
use crate::watchdog::{FrozenRule, Watchdog};
use crate::webhooks::{Target, Webhooks};

/// Connections the kernel queues before they are accepted. A listener from
/// `std::net::TcpListener::bind` gets 128 (and `HttpServer::backlog` does not
/// apply to a listener passed in), so a burst of connects overflowed the
/// queue and the kernel dropped SYNs: those clients retried a second later.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listening socket with [`LISTEN_BACKLOG`]. Must run inside the
/// runtime (tokio registers the socket, then hands it back as std).
fn bind(host: IpAddr, port: u16) -> io::Result<TcpListener> {
    let address = SocketAddr::new(host, port);
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std does: a restarted server can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// How long shutdown waits for queued webhook events to be sent.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

/// How long shutdown waits for connections to finish closing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {address}: {source}")]
    Bind { address: String, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("STATIC_DIR {0} is not a folder")]
    StaticDir(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start the connection watchdog: {0}")]
    Watchdog(io::Error),
    #[error("cannot start the webhook sender: {0}")]
    Webhooks(io::Error),
}

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    handle: AppHandle,
}

/// Stops a running [`Application`] gracefully; cheap to clone.
#[derive(Clone)]
pub struct AppHandle {
    server: ServerHandle,
    chat: Addr<ChatServer>,
    history: History,
    cluster: Option<Cluster>,
    webhooks: Option<Webhooks>,
}

impl Application {
    /// Opens the database, starts the actors and binds the listener.
    /// Must run inside an actix `System` (`#[actix_web::main]` or
    /// `#[actix_web::test]`).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        config.validate()?;
        if !config.static_dir.is_dir() {
            return Err(StartupError::StaticDir(
                config.static_dir.display().to_string(),
            ));
        }
        let metrics = Arc::new(Metrics::new());
        let storage = match &config.database_url {
            Some(url) => Storage::Postgres(url.expose().to_string()),
            None => Storage::Sqlite(config.db_path.clone()),
        };
        let history = History::start(&storage, metrics.clone())?;
        let config = Arc::new(config);
        // The chat server's address exists before it runs, so the cluster
        // listener can be given it first.
        let chat_context = Context::<ChatServer>::new();
        let cluster = match &config.database_url {
            Some(url) => {
                let settings = ClusterConfig {
                    url: url.expose().to_string(),
                    node: config.node_id.clone().unwrap_or_else(default_node_id),
                    node_timeout: config.node_timeout,
                };
                let events = chat_context.address().recipient();
                Some(Cluster::start(settings, events, metrics.clone()).await?)
            }
            None => None,
        };
        let webhooks = match (&config.webhook_url, &config.webhook_secret) {
            (Some(url), Some(secret)) => Some(
                Webhooks::start(
                    Target {
                        url: url.clone(),
                        secret: secret.expose().to_string(),
                        node: config.node_id.clone().unwrap_or_else(default_node_id),
                    },
                    metrics.clone(),
                )
                .map_err(StartupError::Webhooks)?,
            ),
            _ => None,
        };
        let chat = chat_context.run(ChatServer::new(
            config.clone(),
            history.clone(),
            cluster.clone(),
            webhooks.clone(),
            metrics.clone(),
        ));
        let caps = ConnectionCaps::new(
            config.max_connections,
            config.max_connections_per_ip,
            metrics.clone(),
        );

        let backlog = Backlog::new(
            config.max_pending_messages,
            config.max_pending_bytes,
            metrics.clone(),
        );
        let watchdog = Watchdog::start(
            FrozenRule {
                client_timeout: config.client_timeout,
            },
            config.heartbeat_interval,
            metrics.clone(),
        )
        .map_err(StartupError::Watchdog)?;

        let address = format!("{}:{}", config.host, config.port);
        let listener = bind(config.host, config.port).map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            address: address.clone(),
            source,
        })?;

        let state = web::Data::new(AppState {
            config: config.clone(),
            chat: chat.clone(),
            history: history.clone(),
            cluster: cluster.clone(),
            metrics,
            caps,
            backlog,
            watchdog,
        });
        // Resolved once: files are served only from inside this real path.
        let static_root = static_files::resolve(&config.static_dir)
            .map_err(|_| StartupError::StaticDir(config.static_dir.display().to_string()))?;
        let csp = static_files::content_security_policy(config.token_refresh_url.as_deref());
        // Every route; built once for the dispatcher's requests and once for
        // the upgrade service's (each worker builds its own).
        let app = move || {
            App::new()
                .wrap(static_files::security_headers(&csp))
                .app_data(state.clone())
                .route("/ws", web::get().to(ws::upgrade))
                .route("/health", web::get().to(api::health))
                .route("/metrics", web::get().to(api::metrics))
                .service(
                    web::scope("/api")
                        .route("/rooms", web::get().to(api::list_rooms))
                        .route("/dms", web::get().to(dms::list))
                        .route("/rooms/{name}", web::get().to(api::room_details))
                        .route("/rooms/{name}/messages", web::get().to(api::room_messages))
                        .route(
                            "/rooms/{name}/messages",
                            web::post().to(server_api::publish),
                        )
                        .route(
                            "/rooms/{name}/messages/{id}",
                            web::delete().to(server_api::delete_message),
                        )
                        .route("/rooms/{name}/kick", web::post().to(server_api::kick))
                        .route("/rooms/{name}/bans", web::post().to(server_api::ban))
                        .route(
                            "/rooms/{name}/bans/{user}",
                            web::delete().to(server_api::unban),
                        )
                        .route(
                            "/users/{name}/disconnect",
                            web::post().to(server_api::disconnect),
                        )
                        .default_service(web::to(api::not_found)),
                )
                .service(static_files::service(&static_root))
        };
        let builder = Server::build();
        let shutdown_signal = builder.graceful_shutdown_signal();
        // actix-server calls the factory below once on each worker thread,
        // as the worker starts: name it there.
        let worker_names = Arc::new(Numbered::new("http"));
        let server = builder
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
            .listen("chatterbox", listener, move || {
                worker_names.name_this_thread();
                let signal = shutdown_signal.clone();
                let upgrade_app = app.clone();
                HttpService::build()
                    // As actix-web's `HttpServer` sets them.
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .local_addr(local)
                    .graceful_shutdown_signal(move || {
                        let signal = signal.clone();
                        async move { signal.notified().await }
                    })
                    // Chat frames are small and latency matters: no Nagle
                    // delay.
                    .on_connect_ext(|tcp: &TcpStream, _: &mut Extensions| {
                        let _ = tcp.set_nodelay(true);
                    })
                    // Requests that ask for an upgrade (a WebSocket) leave
                    // the dispatcher and its buffers: see `http::upgrade`.
                    .upgrade(fn_factory(move || {
                        let factory = upgrade_app().into_factory();
                        async move {
                            let app = Rc::new(
                                factory
                                    .new_service(AppConfig::default())
                                    .await
                                    .map_err(|_| ())?,
                            );
                            Ok::<_, ()>(fn_service(move |(req, framed)| {
                                let app = app.clone();
                                let serve: LocalBoxFuture<'static, Result<(), actix_web::Error>> =
                                    Box::pin(
                                        async move { Ok(upgrade::serve(app, req, framed).await?) },
                                    );
                                serve
                            }))
                        }
                    }))
                    .finish(map_config(
                        app()
                            .into_factory()
                            .map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    ))
                    .tcp()
            })
            .map_err(|source| StartupError::Bind { address, source })?
            .run();

        log::info!("listening on http://{}:{}", config.host, local.port());
        match &config.auth_secret {
            None => log::warn!(
                "AUTH_SECRET is not set: user names are not verified, anyone can connect as \
                 anyone (development mode)"
            ),
            Some(secret) if secret.expose().len() < 32 => log::warn!(
                "signed tokens required; AUTH_SECRET is only {} bytes, use 32 or more random bytes",
                secret.expose().len()
            ),
            Some(_) => log::info!("signed tokens required (AUTH_SECRET is set)"),
        }
        let handle = AppHandle {
            server: server.handle(),
            chat,
            history,
            cluster,
            webhooks,
        };
        Ok(Application {
            port: local.port(),
            server,
            handle,
        })
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// Serves until [`AppHandle::shutdown`], then makes sure every accepted
    /// message is stored before returning.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.server.await?;
        self.handle.drain().await;
        Ok(())
    }
}

impl AppHandle {
    /// The protocol's shutdown: stop accepting, close every session with
    /// 1001, wait for the connections to close. [`Application::run_until_stopped`]
    /// then stores what is left and returns.
    pub async fn shutdown(&self) {
        self.server.pause().await;
        match self.chat.send(BeginShutdown).await {
            Ok(n) => log::info!("shutting down: closing {n} connections"),
            Err(e) => log::error!("shutting down: chat server unavailable: {e}"),
        }
        self.server.stop(true).await;
    }

    /// Lets every room queue what it has received, then commits the queue.
    async fn drain(&self) {
        let _ = self.chat.send(CatchUpRooms).await;
        match self.history.flush().await {
            Ok(()) => log::info!("all accepted messages are stored"),
            Err(e) => log::error!("could not store the last messages: {e}"),
        }
        if let Err(e) = self.history.checkpoint().await {
            log::warn!("could not copy the log into the database file: {e}");
        }
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        if let Some(webhooks) = &self.webhooks {
            webhooks.flush(WEBHOOK_FLUSH).await;
        }
    }
}
