//! Shared test plumbing: the server started in-process on port 0 with a
//! SQLite file in a temporary folder, the server binary started as a child
//! process, and a small WebSocket client over 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chatterbox::config::Config;
use chatterbox::startup::{AppHandle, Application};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
}

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

pub async fn get_json(port: u16, path: &str) -> (u16, String, Value) {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("the request gets an answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let body = response.body().await.expect("a body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, json)
}

/// Every stored message of `room`, oldest first, through REST.
pub async fn stored_texts(port: u16, room: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut after = 0;
    loop {
        let (status, _, page) = get_json(
            port,
            &format!("/api/rooms/{room}/messages?after={after}&limit=200"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().expect("a messages array");
        for m in messages {
            texts.push(m["text"].as_str().expect("a text").to_string());
            after = m["id"].as_i64().expect("an id");
        }
        if page["more"] == false {
            return texts;
        }
    }
}

/// A WebSocket client speaking the chat protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(port: u16, user: &str) -> Client {
        let url = format!("ws://127.0.0.1:{port}/ws?user={user}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the WebSocket upgrade succeeds");
        Client { ws }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string()))
            .await
            .expect("the frame is sent");
    }

    pub async fn chat(&mut self, room: &str, text: &str, reference: &str) {
        self.send(json!({"type": "chat", "room": room, "text": text, "ref": reference}))
            .await;
    }

    /// The next text frame as JSON; pings are answered on the way.
    pub async fn recv(&mut self) -> Value {
        match self.next_frame().await {
            Some(Message::Text(text)) => serde_json::from_str(&text).expect("frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame that is not a ping or pong, or `None` when the
    /// connection ended.
    pub async fn next_frame(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next frame, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// The next frame, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
        frame
    }

    /// Joins `room`; returns its `history` and `presence` frames.
    pub async fn join(&mut self, room: &str) -> (Value, Value) {
        self.send(json!({"type": "join", "room": room})).await;
        let history = self.expect("history").await;
        let presence = self.expect("presence").await;
        (history, presence)
    }

    /// Waits for the close frame and returns its code.
    pub async fn expect_close(&mut self) -> CloseCode {
        loop {
            match self.next_frame().await {
                Some(Message::Close(Some(CloseFrame { code, .. }))) => return code,
                Some(Message::Close(None)) => panic!("close frame without a code"),
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Asserts that no text frame arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// The server binary started as a child process, for what only a real
/// process can show: signals, `kill -9`, exit codes.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    /// Lines the server logs after start-up.
    pub log: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts `chatterbox` on port 0 with `db_path` and extra variables.
    pub fn start(db_path: &Path, env: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatterbox"));
        command
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env("DB_PATH", db_path)
            .env("STATIC_DIR", static_dir())
            .env("RUST_LOG", "info")
            .env_remove("AUTH_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the server binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + WAIT;
        let port = loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
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

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit in time"
            );
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

/// A client whose socket buffer is tiny, so it fills after a few frames
/// once the client stops reading.
pub async fn small_window_client(port: u16, user: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connects");
    let url = format!("ws://127.0.0.1:{port}/ws?user={user}");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("the upgrade succeeds");
    Client { ws }
}

/// The answer to a `/ws` upgrade that was refused: status and JSON body.
/// Panics if the upgrade succeeds.
pub async fn refused_upgrade(port: u16, query: &str) -> (u16, Value) {
    let url = format!("ws://127.0.0.1:{port}/ws?{query}");
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("the upgrade with {query} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            let json = serde_json::from_slice(body).unwrap_or(Value::Null);
            (status, json)
        }
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    }
}

impl Client {
    /// Opens `/ws?{query}`, which must be accepted.
    pub async fn connect_query(port: u16, query: &str) -> Client {
        let url = format!("ws://127.0.0.1:{port}/ws?{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("the upgrade with {query} succeeds: {e}"));
        Client { ws }
    }

    /// Sends a close frame and waits for the server's, so the server has
    /// finished with the connection when this returns.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // The server's close frame is enough: waiting for the end of the
        // TCP stream would wait out the server's disconnect timeout.
        while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, self.ws.next()).await {
            if message.is_close() {
                break;
            }
        }
    }
}

/// `GET /metrics`, parsed by a real Prometheus text parser.
pub async fn scrape(port: u16) -> Metrics {
    let client = awc::Client::default();
    let mut response = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = response.body().await.expect("a body");
    let text = String::from_utf8(body.to_vec()).expect("metrics are UTF-8");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Metrics {
        scrape: prometheus_parse::Scrape::parse(lines).expect("metrics parse as Prometheus text"),
        text,
    }
}

pub struct Metrics {
    pub scrape: prometheus_parse::Scrape,
    pub text: String,
}

impl Metrics {
    /// The value of the counter or gauge `name` (with `label` = `value`, if
    /// given); panics if the series is missing.
    pub fn get(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        use prometheus_parse::Value as V;
        let sample = self
            .scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.map_or(true, |(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no series {name} {label:?} in\n{}", self.text));
        match &sample.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
            other => panic!("{name} is not a single number: {other:?}"),
        }
    }

    pub fn value(&self, name: &str) -> f64 {
        self.get(name, None)
    }
}

impl Client {
    /// The TCP stream under the WebSocket, to look at or write to the socket
    /// without going through the WebSocket layer.
    pub fn tcp(&self) -> &TcpStream {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(stream) => stream,
            _ => panic!("the tests connect without TLS"),
        }
    }
}

/// Whether the server process still holds its end of `client`'s TCP
/// connection, from the kernel's table of TCP sockets (Linux): the server's
/// socket is gone (reset) or orphaned (closed by the server, the kernel
/// still delivering what it queued, which a client that does not read
/// never takes) once the server has let go. Nothing is read from the
/// client's socket: a client that stopped reading must stay stopped.
pub fn server_holds(server_port: u16, client: &Client) -> bool {
    let client_port = client.tcp().local_addr().expect("a local address").port();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
    let port = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 9
            && port(fields[1]) == Some(server_port)
            && port(fields[2]) == Some(client_port)
            && fields[9] != "0"
    })
}

/// One masked text frame of one byte: not JSON, so each earns an `error`.
pub const ONE_BYTE_FRAME: [u8; 7] = [0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1];

/// Writes one-byte text frames straight to `stream` (back to back, as one
/// byte stream) until `frames` are written or the socket has taken nothing
/// for `stuck`. Returns the bytes written; `from` is where in the stream of
/// frames to go on from.
pub async fn flood_one_byte_frames(
    stream: &TcpStream,
    from: usize,
    frames: usize,
    stuck: Duration,
) -> usize {
    let chunk: Vec<u8> = ONE_BYTE_FRAME
        .iter()
        .copied()
        .cycle()
        .take(7 * 512)
        .collect();
    let end = from + frames * ONE_BYTE_FRAME.len();
    let mut written = from;
    let mut last_progress = tokio::time::Instant::now();
    while written < end && last_progress.elapsed() < stuck {
        let offset = written % ONE_BYTE_FRAME.len();
        let n = (end - written).min(chunk.len() - offset);
        match stream.try_write(&chunk[offset..offset + n]) {
            Ok(n) => {
                written += n;
                last_progress = tokio::time::Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(_) => break,
        }
    }
    written - from
}
