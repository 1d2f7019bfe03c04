//! What only the API tests use; what other suites use too is in testkit/.

use std::time::Duration;

use serde_json::Value;
use testkit::{get_json, Client, ServerBinary};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// The real `chatterbox` binary, which Cargo builds for this package's
/// integration tests, for [`testkit::ServerProcess::start`].
pub const CHATTERBOX: ServerBinary = ServerBinary::Path(env!("CARGO_BIN_EXE_chatterbox"));

/// Every stored message of `room`, oldest first, through REST (paging
/// with `after`).
pub async fn stored_messages(port: u16, room: &str) -> Vec<Value> {
    let mut stored = Vec::new();
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
            after = m["id"].as_i64().expect("an id");
            stored.push(m.clone());
        }
        if page["more"] == false {
            return stored;
        }
    }
}

/// The texts of every stored message of `room`, oldest first.
pub async fn stored_texts(port: u16, room: &str) -> Vec<String> {
    stored_messages(port, room)
        .await
        .iter()
        .map(|m| m["text"].as_str().expect("a text").to_string())
        .collect()
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

/// A token for `user` signed with `secret`, living 10 minutes, with the
/// control plane's claims in `extra` (e.g. `{"mod": true}`) merged in.
pub fn token_with(secret: &str, user: &str, extra: Value) -> String {
    let mut claims = serde_json::json!({
        "sub": user,
        "exp": chrono::Utc::now().timestamp() + 600,
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token encodes")
}

/// Connects `user` to `port` with a [`token_with`] `secret` and `extra`.
/// The token is made at once, so the future borrows nothing (callers keep
/// it in closures).
pub fn connect_signed(
    port: u16,
    secret: &str,
    user: &str,
    extra: Value,
) -> impl std::future::Future<Output = Client> {
    let token = token_with(secret, user, extra);
    async move { Client::connect_query(port, &format!("token={token}")).await }
}
