//! The server running inside the test's own actix system, on port 0 with a
//! SQLite file in a temporary folder.

use chatterbox::config::Config;
use chatterbox::startup::{AppHandle, Application};
use serde_json::Value;
use tempfile::TempDir;

use crate::{get_json, static_dir, Client, WAIT};

/// A server running inside the test's actix system.
pub struct TestApp {
    pub port: u16,
    handle: AppHandle,
    stopped: tokio::sync::oneshot::Receiver<()>,
    /// Keeps the database folder alive as long as the app.
    pub dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server with the test defaults, adjusted by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(TempDir::new().expect("a temporary folder"), configure).await
}

/// Starts the server on the database in `dir` (to restart on the same file).
pub async fn spawn_app_in(dir: TempDir, configure: impl FnOnce(&mut Config)) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let db_path = dir.path().join("chat.db");
    let mut config = Config {
        port: 0,
        db_path: db_path.clone(),
        static_dir: static_dir(),
        ..Config::default()
    };
    configure(&mut config);
    let app = Application::build(config).await.expect("the server starts");
    let port = app.port();
    let handle = app.handle();
    let (done, stopped) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(async move {
        app.run_until_stopped().await.expect("the server runs");
        let _ = done.send(());
    });
    TestApp {
        port,
        handle,
        stopped,
        dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(self.port, user).await
    }

    /// `GET path`: status, content type and the body as JSON.
    pub async fn get(&self, path: &str) -> (u16, String, Value) {
        get_json(self.port, path).await
    }

    /// Shuts the server down gracefully and waits until it has stored
    /// everything; returns the database folder for a restart.
    pub async fn stop(self) -> TempDir {
        self.handle.shutdown().await;
        tokio::time::timeout(WAIT, self.stopped)
            .await
            .expect("the server stops in time")
            .expect("the server task finishes");
        self.dir
    }
}
