//! A WebSocket client speaking the chat protocol over 127.0.0.1.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;

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

    /// Opens `/ws?{query}`, which must be accepted.
    pub async fn connect_query(port: u16, query: &str) -> Client {
        let url = format!("ws://127.0.0.1:{port}/ws?{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("the upgrade with {query} succeeds: {e}"));
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

    /// The TCP stream under the WebSocket, to look at or write to the socket
    /// without going through the WebSocket layer.
    pub fn tcp(&self) -> &TcpStream {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(stream) => stream,
            _ => panic!("the tests connect without TLS"),
        }
    }
}
