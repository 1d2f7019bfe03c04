//! The load tester's own WebSocket client (RFC 6455, client side, no
//! extensions), written for a cheap receive path.
//!
//! Why not tungstenite for this: at 1 M deliveries/s the load tester's one
//! core went mostly to tungstenite's receive path (each frame copied from
//! the socket buffer into a 4 KiB chunk, then into its read buffer, then
//! into a payload `Vec`, then into a `String`, with two allocations), not
//! to the checks. Here each connection reads straight from its socket into
//! one buffer and hands every text frame out as a range of that buffer: no
//! copy, no allocation per frame. tungstenite still derives the handshake's
//! key and accept value.
//!
//! Every operation is cancel-safe (the scenarios read inside `select!`):
//! what was read stays in the buffer, what is to be written waits in an
//! outgoing buffer that each write drains, so a cancelled read loses no
//! bytes and a cancelled write never interleaves two frames.

use std::ops::Range;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tungstenite::handshake::{client::generate_key, derive_accept_key};

/// The largest frame (and reassembled message) accepted from the server:
/// tungstenite's default message limit. A history page is far smaller.
pub const MAX_MESSAGE: usize = 64 << 20;

/// The largest HTTP response head accepted for the upgrade.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What [`Conn::next`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A whole text message in one frame: `Conn::bytes(range)` until the
    /// next read. Not yet checked to be UTF-8 (see [`Conn::text`]).
    Text(Range<usize>),
    /// A text message the server sent in several frames, reassembled.
    AssembledText(Vec<u8>),
    /// A binary message (the protocol has none): ignored by callers.
    Binary,
    /// The server's close frame, with its status code if it gave one. The
    /// answering close frame is already queued.
    Close(Option<u16>),
}

/// Why a connection can no longer be used.
#[derive(Debug)]
pub enum WireError {
    Io(std::io::Error),
    /// The server closed the TCP connection without a close frame.
    Eof,
    /// The server sent its close frame.
    Closed,
    /// The server broke the protocol (a masked or oversized frame, a bad
    /// opcode, a continuation out of place).
    Protocol(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Eof => f.write_str("the connection was closed without a close frame"),
            WireError::Closed => f.write_str("the server closed the connection"),
            WireError::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

/// One open WebSocket connection.
pub struct Conn {
    stream: TcpStream,
    /// Received bytes not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The size of the buffer when nothing big is in it, and so the most
    /// one `read(2)` asks for (`--read-buffer`).
    read_size: usize,
    /// Frames queued to be written; `out[written..]` is still to go.
    out: Vec<u8>,
    written: usize,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    fragments: Option<(u8, Vec<u8>)>,
    /// xorshift64 state for the masking keys clients must use.
    mask_state: u64,
}

impl Conn {
    /// Upgrades `stream` to a WebSocket: `GET path_and_query` on `host`.
    /// The error says what went wrong, as the report shows it.
    pub async fn handshake(
        mut stream: TcpStream,
        host: &str,
        path_and_query: &str,
        read_size: usize,
    ) -> Result<Conn, String> {
        let key = generate_key();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("upgrade failed: {e}"))?;
        let read_size = read_size.max(256);
        let mut buf = vec![0; read_size.max(MAX_RESPONSE_HEAD)];
        let mut end = 0;
        let head_len = loop {
            if let Some(at) = memchr::memmem::find(&buf[..end], b"\r\n\r\n") {
                break at + 4;
            }
            if end == buf.len() {
                return Err("upgrade failed: the response head is too long".into());
            }
            let n = stream
                .read(&mut buf[end..])
                .await
                .map_err(|e| format!("upgrade failed: {e}"))?;
            if n == 0 {
                return Err("upgrade failed: the server closed the connection".into());
            }
            end += n;
        };
        check_response(&buf[..head_len], &derive_accept_key(key.as_bytes()))?;
        // Whatever came after the head is the first frames: keep it.
        buf.copy_within(head_len..end, 0);
        buf.truncate(read_size.max(end - head_len));
        buf.shrink_to_fit();
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), &key);
        Ok(Conn {
            stream,
            buf,
            start: 0,
            end: end - head_len,
            read_size,
            out: Vec::new(),
            written: 0,
            fragments: None,
            mask_state: seed | 1,
        })
    }

    /// The bytes of a [`Received::Text`] range.
    #[cfg(test)]
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Takes the receive buffer out (to read a [`Received::Text`] while
    /// the caller borrows itself mutably); give it back with
    /// [`Conn::put_buffer`] before the next read.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    pub fn put_buffer(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    /// The next message, reading from the socket as needed. Pings are
    /// answered and pongs skipped on the way.
    pub async fn next(&mut self) -> Result<Received, WireError> {
        loop {
            if let Some(received) = self.next_buffered()? {
                return Ok(received);
            }
            self.fill().await?;
        }
    }

    /// The next message if it is already in the buffer, without reading
    /// the socket: the frames that came in with the last read.
    pub fn next_buffered(&mut self) -> Result<Option<Received>, WireError> {
        loop {
            let Some((opcode, fin, payload)) = self.parse()? else {
                return Ok(None);
            };
            match opcode {
                OP_TEXT | OP_BINARY if self.fragments.is_some() => {
                    return Err(WireError::Protocol("a new message inside a fragmented one"))
                }
                OP_TEXT if fin => return Ok(Some(Received::Text(payload))),
                OP_BINARY if fin => return Ok(Some(Received::Binary)),
                OP_TEXT | OP_BINARY => {
                    self.fragments = Some((opcode, self.buf[payload].to_vec()));
                }
                OP_CONTINUATION => {
                    let Some((first, bytes)) = &mut self.fragments else {
                        return Err(WireError::Protocol(
                            "a continuation with nothing to continue",
                        ));
                    };
                    if bytes.len() + payload.len() > MAX_MESSAGE {
                        return Err(WireError::Protocol("a message over the size limit"));
                    }
                    bytes.extend_from_slice(&self.buf[payload]);
                    if fin {
                        let first = *first;
                        let (_, bytes) = self.fragments.take().unwrap_or_default();
                        return Ok(Some(if first == OP_TEXT {
                            Received::AssembledText(bytes)
                        } else {
                            Received::Binary
                        }));
                    }
                }
                OP_CLOSE => {
                    let body = &self.buf[payload];
                    let code = (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                    // Answer with the same code, as RFC 6455 asks.
                    let reply = code.map(u16::to_be_bytes);
                    self.queue(OP_CLOSE, reply.as_ref().map_or(&[][..], |c| &c[..]));
                    self.try_flush();
                    return Ok(Some(Received::Close(code)));
                }
                OP_PING => {
                    let body = self.buf[payload].to_vec();
                    self.queue(OP_PONG, &body);
                    self.try_flush();
                }
                OP_PONG => {}
                _ => return Err(WireError::Protocol("an unknown opcode")),
            }
        }
    }

    /// One whole frame from the buffer, consumed: its opcode, FIN bit and
    /// payload range. `None` when the buffer holds less than a frame (made
    /// room for it).
    fn parse(&mut self) -> Result<Option<(u8, bool, Range<usize>)>, WireError> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(WireError::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        if b[1] & 0x80 != 0 {
            return Err(WireError::Protocol("a masked frame from the server"));
        }
        let (opcode, fin) = (b[0] & 0x0F, b[0] & 0x80 != 0);
        let (head, len) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => {
                let mut n = [0; 8];
                n.copy_from_slice(&b[2..10]);
                (
                    10,
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                )
            }
            126 | 127 => return Ok(None),
            n => (2, n as usize),
        };
        if opcode >= OP_CLOSE && (len > 125 || !fin) {
            return Err(WireError::Protocol(
                "a control frame over 125 bytes or fragmented",
            ));
        }
        if len > MAX_MESSAGE {
            return Err(WireError::Protocol("a frame over the size limit"));
        }
        if b.len() < head + len {
            self.make_room(head + len);
            return Ok(None);
        }
        let payload = self.start + head..self.start + head + len;
        self.start += head + len;
        Ok(Some((opcode, fin, payload)))
    }

    /// Makes sure a frame of `frame_len` bytes starting at `start` fits:
    /// moves the unread bytes to the front, and grows the buffer for a
    /// frame bigger than it (shrinking back once that frame is read).
    fn make_room(&mut self, frame_len: usize) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if frame_len > self.buf.len() {
            self.buf.resize(frame_len, 0);
        }
    }

    /// Reads once from the socket into the buffer.
    async fn fill(&mut self) -> Result<(), WireError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > self.read_size {
                // A big frame is done with: back to the usual size.
                self.buf.truncate(self.read_size);
                self.buf.shrink_to_fit();
            }
        } else if self.buf.len() - self.end < self.read_size / 4 {
            // Little room left behind a partial frame: move it to the
            // front rather than read a few bytes at a time.
            self.make_room(self.end - self.start + 1);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(WireError::Eof);
        }
        self.end += n;
        Ok(())
    }

    /// The next text message as a `String` (binary messages skipped); a
    /// close frame is an error. For the few reads off the hot path.
    pub async fn next_string(&mut self) -> Result<String, WireError> {
        loop {
            let bytes = match self.next().await? {
                Received::Text(range) => self.buf[range].to_vec(),
                Received::AssembledText(bytes) => bytes,
                Received::Binary => continue,
                Received::Close(_) => return Err(WireError::Closed),
            };
            return String::from_utf8(bytes)
                .map_err(|_| WireError::Protocol("a text frame that is not UTF-8"));
        }
    }

    /// Sends one text message (a single frame) and waits until it is
    /// written, with any frame queued before it.
    pub async fn send_text(&mut self, text: &str) -> Result<(), WireError> {
        self.queue(OP_TEXT, text.as_bytes());
        self.flush().await
    }

    /// Sends a close frame with `code` and `reason` (at most 123 bytes).
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WireError> {
        let mut body = code.to_be_bytes().to_vec();
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        body.extend_from_slice(&reason.as_bytes()[..cut]);
        self.queue(OP_CLOSE, &body);
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        while self.written < self.out.len() {
            let n = self.stream.write(&self.out[self.written..]).await?;
            if n == 0 {
                return Err(WireError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Ok(())
    }

    /// Writes what the socket takes now, without waiting (a pong, a close
    /// reply); the rest goes with the next [`Conn::flush`].
    fn try_flush(&mut self) {
        while self.written < self.out.len() {
            match self.stream.try_write(&self.out[self.written..]) {
                Ok(n) if n > 0 => self.written += n,
                _ => return,
            }
        }
        self.out.clear();
        self.written = 0;
    }

    /// Appends one masked frame to the outgoing buffer.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => self.out.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 7;
        self.mask_state ^= self.mask_state << 17;
        let mask = (self.mask_state as u32).to_be_bytes();
        self.out.extend_from_slice(&mask);
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
}

/// Checks the upgrade's response head: `101` and the accept value for our
/// key. Any other status is a refusal, named as the report shows it.
fn check_response(head: &[u8], accept: &str) -> Result<(), String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code, reason) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default().trim(),
    );
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!(
            "upgrade failed: not an HTTP response: {status_line:?}"
        ));
    }
    if code != "101" {
        return Err(format!("upgrade refused: HTTP {code} {reason}")
            .trim_end()
            .to_string());
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    };
    if header("Sec-WebSocket-Accept") != Some(accept) {
        return Err("upgrade failed: wrong or missing Sec-WebSocket-Accept".into());
    }
    if header("Sec-WebSocket-Extensions").is_some_and(|e| !e.is_empty()) {
        return Err("upgrade failed: the server chose an extension that was not asked for".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connection to a real socket on 127.0.0.1 whose other end is raw:
    /// the test writes the server's bytes itself.
    async fn pair(read_size: usize) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_string();
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 sec-websocket-accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            // The first frame comes in the same write as the head.
            let mut bytes = reply.into_bytes();
            bytes.extend(frame(0x81, b"first"));
            s.write_all(&bytes).await.unwrap();
            s
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let conn = Conn::handshake(tcp, &addr.to_string(), "/ws?user=a", read_size)
            .await
            .unwrap();
        (conn, server.await.unwrap())
    }

    /// An unmasked (server) frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 65535 => {
                f.push(126);
                f.extend((n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend((n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    async fn text(conn: &mut Conn) -> String {
        match conn.next().await.unwrap() {
            Received::Text(r) => String::from_utf8(conn.bytes(r).to_vec()).unwrap(),
            Received::AssembledText(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Reads one masked client frame from the raw side and unmasks it.
    async fn client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut h = [0; 2];
        s.read_exact(&mut h).await.unwrap();
        assert_eq!(h[1] & 0x80, 0x80, "client frames are masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut n = [0; 2];
                s.read_exact(&mut n).await.unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0; 8];
                s.read_exact(&mut n).await.unwrap();
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        let mut mask = [0; 4];
        s.read_exact(&mut mask).await.unwrap();
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.unwrap();
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (h[0], body)
    }

    #[tokio::test]
    async fn frames_split_anywhere_come_out_whole_and_in_order() {
        // A small buffer, so frames straddle reads and one outgrows it.
        let (mut conn, mut server) = pair(256).await;
        assert_eq!(text(&mut conn).await, "first");
        let big = "é".repeat(40_000);
        let mut bytes = Vec::new();
        for i in 0..50 {
            bytes.extend(frame(0x81, format!("small {i} ünïcode").as_bytes()));
        }
        bytes.extend(frame(0x81, big.as_bytes()));
        bytes.extend(frame(0x81, b"after"));
        let writer = tokio::spawn(async move {
            // Dribbled out in odd-sized pieces.
            for chunk in bytes.chunks(77) {
                server.write_all(chunk).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        for i in 0..50 {
            assert_eq!(text(&mut conn).await, format!("small {i} ünïcode"));
        }
        assert_eq!(text(&mut conn).await, big);
        assert_eq!(text(&mut conn).await, "after");
        drop(writer.await.unwrap());
        assert!(matches!(conn.next().await, Err(WireError::Eof)));
        assert_eq!(conn.buf.len(), 256, "back to its size after the big frame");
    }

    #[tokio::test]
    async fn fragments_are_reassembled_and_pings_answered_in_between() {
        let (mut conn, mut server) = pair(4096).await;
        assert_eq!(text(&mut conn).await, "first");
        let mut bytes = frame(0x01, b"hel");
        bytes.extend(frame(0x89, b"are you there"));
        bytes.extend(frame(0x00, b"lo "));
        bytes.extend(frame(0x80, "wörld".as_bytes()));
        bytes.extend(frame(0x8A, b"unasked pong"));
        bytes.extend(frame(0x88, &[0x03, 0xE9, b'b', b'y', b'e']));
        server.write_all(&bytes).await.unwrap();
        assert_eq!(text(&mut conn).await, "hello wörld");
        assert_eq!(conn.next().await.unwrap(), Received::Close(Some(1001)));
        assert_eq!(
            client_frame(&mut server).await,
            (0x8A, b"are you there".to_vec())
        );
        assert_eq!(client_frame(&mut server).await, (0x88, vec![0x03, 0xE9]));
    }

    #[tokio::test]
    async fn sent_frames_are_masked_text_and_close_ends_the_stream() {
        let (mut conn, mut server) = pair(4096).await;
        let long = "x".repeat(70_000);
        conn.send_text("{\"type\":\"join\"}").await.unwrap();
        conn.send_text(&long).await.unwrap();
        conn.close(1000, "load test done").await.unwrap();
        assert_eq!(
            client_frame(&mut server).await,
            (0x81, b"{\"type\":\"join\"}".to_vec())
        );
        assert_eq!(client_frame(&mut server).await, (0x81, long.into_bytes()));
        let (op, body) = client_frame(&mut server).await;
        assert_eq!(
            (op, &body[..2], &body[2..]),
            (0x88, &[0x03, 0xE8][..], &b"load test done"[..])
        );
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_server_that_breaks_the_protocol_ends_the_connection() {
        for (bad, why) in [
            (vec![0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0], "masked"),
            (vec![0xC1, 0x00], "reserved"),
            (vec![0x80, 0x00], "continuation"),
            (vec![0x83, 0x00], "opcode"),
            (frame(0x09, b"fragmented ping"), "control"),
        ] {
            let (mut conn, mut server) = pair(4096).await;
            assert_eq!(text(&mut conn).await, "first");
            server.write_all(&bad).await.unwrap();
            match conn.next().await {
                Err(WireError::Protocol(m)) => assert!(m.contains(why), "{why}: {m}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[test]
    fn responses_other_than_a_valid_101_are_refused_with_the_status() {
        let accept = derive_accept_key(b"k");
        let ok =
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        assert_eq!(check_response(ok.as_bytes(), &accept), Ok(()));
        assert_eq!(
            check_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", &accept),
            Err("upgrade refused: HTTP 503 Service Unavailable".into())
        );
        assert!(check_response(
            b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n",
            &accept
        )
        .unwrap_err()
        .contains("Sec-WebSocket-Accept"));
        assert!(check_response(b"SSH-2.0\r\n\r\n", &accept)
            .unwrap_err()
            .contains("not an HTTP response"));
    }
}
