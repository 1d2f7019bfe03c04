//! A WebSocket's connection after the HTTP upgrade, out of actix-http's
//! HTTP/1 dispatcher.
//!
//! Served as a streaming response, a WebSocket kept the dispatcher's 8 KiB
//! read buffer and 8 KiB write buffer for its whole life: most of the memory
//! of an idle connection (docs/BENCHMARKS.md, "Memory per connection").
//! So requests that ask for an upgrade go to actix-http's upgrade service
//! instead ([`serve`]): it passes the request through the same actix-web
//! `App` as every other request (routes, `/ws`'s checks, headers), writes
//! the response itself, and when `/ws` accepted the connection
//! ([`Accepted`]) drops the dispatcher's buffers and runs the session over
//! the bare socket ([`Connection`]): what arrives is read into a buffer on
//! the stack and handed to the session's context as it comes, and what the
//! context encodes is written from the chunk it yields. The session is the
//! same actix actor in the same `WebsocketContext`, watched as before
//! ([`crate::watchdog::Watched`]).
//!
//! Like the dispatcher, the connection polls the session only while its
//! socket takes data, and after the session ends it sends its FIN and reads
//! what the client still sends, for up to [`LINGER`], before it closes.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_codec::{Encoder, Framed};
use actix_http::body::{self, BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{self, Message};
use actix_http::ws::Codec;
use actix_http::{Request, Response, StatusCode};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use actix_web_actors::ws::WebsocketContext;
use futures_util::Stream;
use socket2::SockRef;

use crate::actors::session::ChatSession;
use crate::watchdog::{Registration, Watchdog, Watched};

/// How long a closed connection keeps reading what the client still sends
/// before the socket is closed (actix-web's client disconnect timeout).
const LINGER: Duration = Duration::from_secs(1);

/// What one read takes off the socket, at most: on the stack, copied out
/// at the size that arrived.
const READ_CHUNK: usize = 4096;

/// Bytes read in a row before the reader lets the session handle them (a
/// client that sends faster than the session handles is not read far ahead
/// of it).
const READ_BURST: usize = 16 * 1024;

/// Chunks written in one poll before the connection lets the worker's other
/// connections run (the session handles 16 frames a poll; a client that
/// keeps sending would otherwise keep the thread).
const CHUNKS_PER_POLL: usize = 16;

/// A WebSocket the `/ws` handler accepted: put in its `101` response's
/// extensions, started by [`serve`] once the response is written.
pub(crate) struct Accepted {
    pub session: ChatSession,
    pub codec: Codec,
    pub watchdog: Watchdog,
}

/// actix-http's upgrade service: every request with `Connection: upgrade`.
/// `app` is the server's actix-web `App`, which answers it as any request;
/// the answer is written here, and a WebSocket `/ws` accepted runs here
/// until it closes. Anything else gets its response and the connection is
/// closed.
pub(crate) async fn serve<S, B>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> io::Result<()>
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let mut response = match app.call(req).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let accepted = response.extensions_mut().remove::<Accepted>();
    let response: Response<BoxBody> = response.into();
    let parts = framed.into_parts();
    let (io, mut codec) = (parts.io, parts.codec);
    // Whatever the client sent after the request (it may start talking
    // before the 101 arrives), copied out of the dispatcher's read buffer,
    // which goes with its write buffer.
    let early = Bytes::copy_from_slice(&parts.read_buf);
    drop((parts.read_buf, parts.write_buf));

    let mut out = BytesMut::new();
    let (head, body) = response.into_parts();
    let accepted = match accepted {
        Some(accepted) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            codec.encode(Message::Item((head, BodySize::None)), &mut out)?;
            Some(accepted)
        }
        _ => {
            let body = body::to_bytes(body)
                .await
                .map_err(|e| io::Error::other(e.to_string()))?;
            let size = BodySize::Sized(body.len() as u64);
            codec.encode(Message::Item((head, size)), &mut out)?;
            codec.encode(Message::Chunk(Some(body)), &mut out)?;
            codec.encode(Message::Chunk(None), &mut out)?;
            None
        }
    };
    drop(codec);
    let io = Rc::new(io);
    write_all(&io, out.freeze()).await?;
    match accepted {
        Some(accepted) => start(io, early, accepted).await,
        None => {
            let _ = SockRef::from(&*io).shutdown(Shutdown::Write);
            Ok(())
        }
    }
}

async fn write_all(io: &TcpStream, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        io.writable().await?;
        match io.try_write(&data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                let _ = data.split_to(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the session's context reads: the socket, as data arrives.
struct SocketReader {
    io: Rc<TcpStream>,
    /// Bytes that came with the upgrade request, handed over first.
    early: Option<Bytes>,
    /// Read since the reader last returned `Pending`.
    burst: usize,
    done: bool,
}

impl Stream for SocketReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(early) = self.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        if self.burst >= READ_BURST {
            self.burst = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if let Err(e) = ready!(self.io.poll_read_ready(cx)) {
                self.done = true;
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            let mut buf = [0u8; READ_CHUNK];
            match self.io.try_read(&mut buf) {
                Ok(0) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    self.burst += n;
                    return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&buf[..n]))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.burst = 0;
                }
                Err(e) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}

/// One WebSocket connection: the session's frames written to the socket,
/// then the close.
struct Connection<F> {
    /// Dropped before `io`: the watchdog forgets the descriptor before it
    /// is closed.
    registration: Option<Registration>,
    frames: Watched<F>,
    /// The chunk being written; the session is not polled until it is out.
    pending: Bytes,
    /// Set once the session's frames ended: reading until the client's end
    /// of the stream, or until this passes.
    linger: Option<Pin<Box<actix_web::rt::time::Sleep>>>,
    io: Rc<TcpStream>,
}

/// Starts the session of `accepted` on `io`; `early`: what the client sent
/// after its request.
fn start(
    io: Rc<TcpStream>,
    early: Bytes,
    accepted: Accepted,
) -> Connection<impl Stream<Item = Result<Bytes, actix_web::Error>>> {
    let Accepted {
        session,
        codec,
        watchdog,
    } = accepted;
    let outbox = session.outbox();
    let registration = watchdog.watch(&*io, outbox.clone());
    let reader = SocketReader {
        io: io.clone(),
        early: (!early.is_empty()).then_some(early),
        burst: 0,
        done: false,
    };
    let frames = WebsocketContext::with_codec(session, reader, codec);
    Connection {
        registration,
        frames: Watched::new(frames, outbox, Some(io.as_raw_fd())),
        pending: Bytes::new(),
        linger: None,
        io,
    }
}

impl<F> Connection<F> {
    /// Writes `pending` as far as the socket takes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            ready!(self.io.poll_write_ready(cx))?;
            match self.io.try_write(&self.pending) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// After the FIN: reads and discards until the client's end of the
    /// stream (or an error), or until the linger time passes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.io.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => match self.io.try_read(&mut buf) {
                    Ok(0) => return Poll::Ready(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(()),
                },
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        match &mut self.linger {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl<F> Future for Connection<F>
where
    F: Stream<Item = Result<Bytes, actix_web::Error>>,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.linger.is_some() {
            ready!(this.poll_linger(cx));
            this.registration = None;
            return Poll::Ready(Ok(()));
        }
        let mut chunks = 0;
        loop {
            if let Err(e) = ready!(this.poll_write(cx)) {
                // The peer is gone or the watchdog ended the socket: the
                // session goes with the connection.
                log::debug!("WebSocket write failed: {e}");
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.frames).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.pending = chunk;
                    chunks += 1;
                    if chunks == CHUNKS_PER_POLL {
                        // Written on the next poll, after the others had
                        // their turn.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Some(Err(e)) => {
                    log::debug!("WebSocket frames failed: {e}");
                    return Poll::Ready(Ok(()));
                }
                None => break,
            }
        }
        // The session ended and everything it wrote is out: FIN, then the
        // client's end of the stream (at once if it closed first: `Watched`
        // shut the read side).
        if this.frames.is_aborted() {
            return Poll::Ready(Ok(()));
        }
        let _ = SockRef::from(&*this.io).shutdown(Shutdown::Write);
        this.linger = Some(Box::pin(actix_web::rt::time::sleep(LINGER)));
        ready!(this.poll_linger(cx));
        this.registration = None;
        Poll::Ready(Ok(()))
    }
}
