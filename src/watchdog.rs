//! Frozen connections: a WebSocket whose socket stopped taking data.
//!
//! A WebSocket's connection ([`crate::http::upgrade`]) polls the session's
//! `WebsocketContext` only while its socket takes data, and the actor, its
//! heartbeat and its mailbox all run inside that poll. So when a client
//! stops reading, its socket fills, the connection stops polling, and
//! nothing inside the session can close it any more, not
//! the heartbeat, not the 1008 for an overflowing outbox. The connection
//! would hold its `MAX_CONNECTIONS` slot until the peer went away.
//!
//! Two parts see to it from outside:
//! * [`Watched`] wraps the session's frame stream: it notes every poll (the
//!   socket had room), hands the frames it yields off the outbox count,
//!   and ends the TCP connection at once after a closing handshake the
//!   client started (without it the connection lingers up to a second,
//!   reading, before it closes) or when the session gave up on a client it
//!   no longer hears.
//! * [`Watchdog`] is one thread for the server that looks at every
//!   registered connection each HEARTBEAT_INTERVAL and drops the TCP
//!   connection of one that is frozen ([`FrozenRule`]): its socket is shut
//!   down with `SO_LINGER` 0, so the connection sees the end, drops the
//!   session (which frees its slot), and the kernel forgets the socket with
//!   a reset instead of keeping the unsent data.
//!
//! The WebSocket's connection ([`crate::http::upgrade`]) owns the socket; the
//! watchdog knows it by file descriptor, and holds it in its registry for as
//! long as the connection holds the [`Registration`].

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use socket2::SockRef;

use crate::actors::outbox::OutboxState;
use crate::metrics::Metrics;

/// When a connection counts as frozen: a plain rule, tested on its own.
///
/// The connection polls a session's frames whenever its socket has room,
/// and a live session wakes it at least once a HEARTBEAT_INTERVAL
/// (its ping); CLIENT_TIMEOUT is longer than that (the configuration
/// refuses anything else). A connection not polled for CLIENT_TIMEOUT has
/// a socket that takes nothing, whatever its client keeps sending.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrozenRule {
    pub client_timeout: Duration,
}

impl FrozenRule {
    /// `since_polled`: time since the connection last polled the session's
    /// frames (or since the session started, if never).
    pub(crate) fn is_frozen(&self, since_polled: Duration) -> bool {
        since_polled > self.client_timeout
    }
}

/// Where a registered socket is connected, to tell it from a later socket
/// that got the same descriptor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoints {
    local: SocketAddr,
    peer: SocketAddr,
}

/// A socket borrowed by descriptor, for the few calls made on it.
///
/// # Safety
/// `fd` must be open while the returned value is used. Inside the
/// connection's poll it is (the connection owns it). From the watchdog it is
/// used under the registry lock, and a connection leaves the registry
/// (dropping its [`Registration`]) before it closes the socket;
/// should the descriptor have been reused anyway, [`endpoints`] no longer
/// matches and the watchdog leaves it alone.
unsafe fn socket(fd: RawFd) -> BorrowedFd<'static> {
    BorrowedFd::borrow_raw(fd)
}

fn endpoints(fd: &BorrowedFd<'_>) -> io::Result<Endpoints> {
    let sock = SockRef::from(fd);
    let address = |a: socket2::SockAddr| {
        a.as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not an IP socket"))
    };
    Ok(Endpoints {
        local: address(sock.local_addr()?)?,
        peer: address(sock.peer_addr()?)?,
    })
}

/// One watched connection.
struct Entry {
    fd: RawFd,
    endpoints: Endpoints,
    outbox: Arc<OutboxState>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    // Nothing in the registry is left half-changed by a panic.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ends the TCP connection on `fd` now, with a reset: the connection that
/// owns it sees the end (reads return nothing, writes fail) and drops the
/// connection, and the kernel discards what the peer never took instead of
/// trying to deliver it for minutes.
fn abort(fd: &BorrowedFd<'_>) {
    let sock = SockRef::from(fd);
    let _ = sock.set_linger(Some(Duration::ZERO));
    if let Err(e) = sock.shutdown(Shutdown::Both) {
        log::debug!("shutting down a frozen connection: {e}");
    }
}

/// A connection's place in the watchdog's registry; leaving it is dropping it.
pub(crate) struct Registration {
    id: u64,
    registry: Weak<Mutex<Registry>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            lock(&registry).entries.remove(&self.id);
        }
    }
}

/// The registry of WebSocket connections and the thread that checks them.
#[derive(Clone)]
pub(crate) struct Watchdog {
    registry: Shared,
}

impl Watchdog {
    /// Starts the checking thread. It looks every `interval` and stops once
    /// the last handle on the watchdog is dropped.
    pub(crate) fn start(
        rule: FrozenRule,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> io::Result<Self> {
        let registry = Shared::default();
        let weak = Arc::downgrade(&registry);
        std::thread::Builder::new()
            .name("chatterbox-watchdog".into())
            .spawn(move || {
                // On a fixed schedule, so the time a scan takes does not
                // add up into a later look.
                let mut next = std::time::Instant::now();
                loop {
                    next += interval;
                    std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
                    let Some(registry) = weak.upgrade() else {
                        return;
                    };
                    scan(&registry, rule, &metrics);
                }
            })?;
        Ok(Watchdog { registry })
    }

    /// Watches the WebSocket on `socket`, whose frames `outbox` counts,
    /// until the returned registration is dropped (which the connection
    /// does before it closes the socket). `None` if the socket is not a
    /// connected IP socket: there is nothing to watch.
    pub(crate) fn watch(
        &self,
        socket: &impl AsRawFd,
        outbox: Arc<OutboxState>,
    ) -> Option<Registration> {
        let fd = socket.as_raw_fd();
        // SAFETY: `socket` is borrowed for the call, so `fd` is open.
        let endpoints = match endpoints(&unsafe { self::socket(fd) }) {
            Ok(endpoints) => endpoints,
            Err(e) => {
                log::warn!("cannot watch a connection: {e}");
                return None;
            }
        };
        let mut registry = lock(&self.registry);
        let id = registry.next_id;
        registry.next_id += 1;
        registry.entries.insert(
            id,
            Entry {
                fd,
                endpoints,
                outbox,
            },
        );
        Some(Registration {
            id,
            registry: Arc::downgrade(&self.registry),
        })
    }
}

/// One look at every watched connection.
fn scan(registry: &Mutex<Registry>, rule: FrozenRule, metrics: &Metrics) {
    let mut registry = lock(registry);
    registry.entries.retain(|_, entry| {
        let since_polled = entry.outbox.since_polled();
        if !rule.is_frozen(since_polled) {
            return true;
        }
        // SAFETY: under the registry lock, see `socket`.
        let fd = unsafe { socket(entry.fd) };
        match endpoints(&fd) {
            Ok(now) if now == entry.endpoints => {}
            // Closed already, or the descriptor now belongs to another
            // connection: ours is gone.
            _ => return false,
        }
        abort(&fd);
        metrics.frozen_closes.inc();
        log::info!(
            "connection from {}: its socket took nothing for {since_polled:?}, dropping it",
            entry.endpoints.peer,
        );
        false
    });
}

/// The session's frame stream as its connection sees it, watched.
pub(crate) struct Watched<S> {
    inner: Pin<Box<S>>,
    outbox: Arc<OutboxState>,
    /// The connection's socket, to end it after a client's close.
    fd: Option<RawFd>,
}

impl<S> Watched<S> {
    /// `fd`: the socket the frames go out on, owned by the caller, which
    /// polls this stream only while the socket is open.
    pub(crate) fn new(inner: S, outbox: Arc<OutboxState>, fd: Option<RawFd>) -> Self {
        Watched {
            inner: Box::pin(inner),
            outbox,
            fd,
        }
    }
}

impl<S> Watched<S> {
    /// The session gave up on its client: the socket was ended with a
    /// reset, nothing more is to be written or read.
    pub(crate) fn is_aborted(&self) -> bool {
        self.outbox.is_aborted()
    }
}

impl<S, E> Stream for Watched<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.outbox.polled();
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            // A chunk holds every frame the session has written so far.
            Poll::Ready(Some(Ok(_))) => self.outbox.handed_off(),
            Poll::Ready(None) => {
                if let (Some(fd), true) = (self.fd, self.outbox.is_aborted()) {
                    // The session gave up on a peer it no longer hears.
                    // SAFETY: inside the connection's poll, see `socket`.
                    abort(&unsafe { socket(fd) });
                } else if self.outbox.is_peer_closed() {
                    if let Some(fd) = self.fd {
                        // The client sent its Close and will send nothing
                        // more; the answer is in the chunk just yielded.
                        // The connection writes it, sends its FIN and then
                        // reads until the end of the stream (for up to a
                        // second) before it closes: ending the read side
                        // makes that read end at once.
                        // SAFETY: inside the connection's poll, see `socket`.
                        let fd = unsafe { socket(fd) };
                        let _ = SockRef::from(&fd).shutdown(Shutdown::Read);
                    }
                }
            }
            _ => {}
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: FrozenRule = FrozenRule {
        client_timeout: Duration::from_secs(5),
    };

    #[test]
    fn a_connection_polled_within_the_timeout_is_alive() {
        assert!(!RULE.is_frozen(Duration::ZERO));
        assert!(!RULE.is_frozen(Duration::from_secs(5)));
    }

    #[test]
    fn a_connection_not_polled_for_the_timeout_is_frozen() {
        assert!(RULE.is_frozen(Duration::from_millis(5001)));
    }
}
