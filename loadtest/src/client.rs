//! One simulated user: a WebSocket connection (the load tester's own
//! client, [`crate::wire`]: one `read(2)` brings in many frames, read in
//! place), the frames it sends and the bookkeeping of what it receives. Every connection of a
//! run shares one [`Shared`]: atomic counters for the live progress line and
//! the histograms and tallies merged into the final report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::accounting::{
    classify, make_text, parse_text, ChangeKind, Incoming, Receipts, SenderId, Stamp,
};
use crate::features::{self, FeatureOutcome, Hub, Planned};
use crate::wire::{Received, WireError};

pub type Ws = crate::wire::Conn;

/// Where a run is; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Opening connections and joining rooms.
    Setup,
    /// Senders send.
    Sending,
    /// Senders stopped; receivers keep reading what is still on its way.
    Draining,
    /// Close everything.
    Done,
}

/// Counters read by the progress line while the run goes.
#[derive(Default)]
pub struct Counters {
    pub connect_attempts: AtomicU64,
    pub connected: AtomicU64,
    pub connect_failed: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// Connections that had joined their room (connect: had opened) before
    /// sending started: the only ones expected to receive the run's messages.
    pub ready: AtomicU64,
    /// Connections that opened (and joined) only after setup had ended:
    /// closed at once, neither sending nor expected to receive.
    pub late: AtomicU64,
    /// Connections that opened but whose join failed.
    pub join_failed: AtomicU64,
    /// Connections given up on because a frame could not be written (the
    /// server stopped reading) within [`SEND_TIMEOUT`] or before the end.
    pub send_stalled: AtomicU64,
    /// Requests that expect an answer (chats; features: every kind but
    /// typing), and their answers.
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    /// Acknowledged changes every member should receive (chats, and in
    /// features edits, deletes and reactions; not resends or reads).
    pub broadcasts: AtomicU64,
    /// Deliveries of this run's changes (the sender's echo included).
    pub delivered: AtomicU64,
    /// Connections the server closed or lost before the run ended.
    pub dropped: AtomicU64,
    /// Churn: sessions that connected, joined, chatted, left and closed.
    pub sessions: AtomicU64,
    /// Connections done with setup, joined or not.
    pub settled: AtomicU64,
    /// When the latest connection opened, in µs of the run's clock.
    pub last_connected_us: AtomicU64,
}

/// Everything the connections of one run share.
pub struct Shared {
    /// The run's clock: chat texts carry microseconds since this instant.
    pub clock: Instant,
    pub counters: Counters,
    /// Send to each receiver, in microseconds.
    pub latency: Mutex<Histogram<u64>>,
    /// TCP connect plus WebSocket upgrade, in microseconds.
    pub connect_latency: Mutex<Histogram<u64>>,
    /// `error` frames received, by code.
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Connections ended by the server before the run ended, by close code
    /// (`1006` when no close frame came).
    pub closes: Mutex<BTreeMap<String, u64>>,
    /// Why connections could not be opened.
    pub connect_errors: Mutex<BTreeMap<String, u64>>,
    pub phase: watch::Receiver<Phase>,
    /// The nodes, each `ws://host:port` without a path: connection `index`
    /// goes to node `index % len` (see [`Shared::node_of`]).
    pub base_urls: Vec<String>,
    /// Bytes of read buffer per connection.
    pub read_buffer: usize,
    /// The server's AUTH_SECRET: connect with minted tokens, not names.
    pub auth_secret: Option<String>,
    /// The features scenario's shared state.
    pub features: Option<Hub>,
}

/// Tokens outlive any run: setup, sending and draining are all bounded.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

pub fn histogram() -> Histogram<u64> {
    // 1 µs to one hour, 3 significant figures.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("the histogram bounds are valid")
}

fn tally(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    *map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key.to_string())
        .or_insert(0) += 1;
}

impl Shared {
    pub fn now_us(&self) -> u64 {
        self.clock.elapsed().as_micros() as u64
    }

    /// `at` in microseconds of the run's clock.
    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.clock).as_micros() as u64
    }

    /// A connection finished its setup (opened and joined). True when that
    /// was before sending started: only then can it be expected to receive
    /// every message. False (a late connection) once setup has ended.
    pub fn ready(&self) -> bool {
        self.settled();
        if self.phase() == Phase::Setup {
            self.counters.ready.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.counters.late.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// A connection finished its setup, successfully or not.
    pub fn settled(&self) {
        self.counters.settled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// The node connection (or churn worker) `index` uses: round-robin, so
    /// consecutive members of a room, and a room's senders, are on
    /// different nodes.
    pub fn node_of(&self, index: usize) -> usize {
        index % self.base_urls.len().max(1)
    }

    /// Opens a connection as `user` to node `node`, counting the attempt
    /// and its outcome.
    pub async fn connect(&self, user: &str, node: usize) -> Option<Ws> {
        self.counters
            .connect_attempts
            .fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match self.try_connect(user, node).await {
            Ok(ws) => {
                let us = started.elapsed().as_micros() as u64;
                let _ = self
                    .connect_latency
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(us.max(1));
                self.counters.connected.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .last_connected_us
                    .fetch_max(self.now_us(), Ordering::Relaxed);
                self.counters.open.fetch_add(1, Ordering::Relaxed);
                Some(ws)
            }
            Err(why) => {
                self.counters.connect_failed.fetch_add(1, Ordering::Relaxed);
                tally(&self.connect_errors, &why);
                None
            }
        }
    }

    /// Opens a connection without counting it (the features replay).
    pub async fn try_connect(&self, user: &str, node: usize) -> Result<Ws, String> {
        let base_url = self
            .base_urls
            .get(node)
            .ok_or_else(|| format!("no node {node}"))?;
        let path = match &self.auth_secret {
            Some(secret) => {
                let token = chatterbox::auth::mint(secret, &user.to_string(), TOKEN_TTL)
                    .map_err(|e| format!("cannot mint a token: {e}"))?;
                format!("/ws?token={token}")
            }
            None => format!("/ws?user={user}"),
        };
        let authority = base_url
            .split_once("://")
            .map_or(base_url.as_str(), |(_, rest)| rest);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority))
            .await
            .map_err(|_| "TCP connect timed out".to_string())?
            .map_err(|e| format!("TCP connect: {}", e.kind()))?;
        // Chat frames are small; the load tester must not add Nagle delays.
        let _ = tcp.set_nodelay(true);
        let ws = tokio::time::timeout(
            CONNECT_TIMEOUT,
            crate::wire::Conn::handshake(tcp, authority, &path, self.read_buffer),
        )
        .await
        .map_err(|_| "WebSocket upgrade timed out".to_string())??;
        Ok(ws)
    }

    fn closed(&self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long writing one frame may take before the connection is given up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a join may take to be answered with `presence`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one connection did, merged into the report at the end.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The connection opened (churn: at least one did).
    pub connected: bool,
    /// Opened and joined before sending started: only such members are
    /// expected to receive their room's messages (and only such senders send).
    pub ready: bool,
    pub sender: Option<SenderId>,
    pub room: usize,
    /// The node it connected to (an index into the run's `--url`s).
    pub node: usize,
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub receipts: Receipts,
    /// The features scenario: everything but chats.
    pub features: Option<FeatureOutcome>,
}

/// A connection's reading side: the frames it has been told to expect and
/// what it received.
pub struct Member<'a> {
    shared: &'a Shared,
    pub ws: Ws,
    pub sender: Option<SenderId>,
    pub user: String,
    /// The node it is connected to.
    pub node: usize,
    pub receipts: Receipts,
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    /// The sender's sequence counter (continues across churn sessions).
    pub seq: u64,
    latencies: Vec<u64>,
    /// When the frames being booked were read, in µs of the run's clock.
    now: u64,
    /// Set when the server ended the connection.
    pub gone: bool,
    /// A join is outstanding: an `error` now is its refusal.
    joining: bool,
    /// Every chat carries a `key` (fanout `--keyed`, features).
    pub keyed: bool,
    /// The features scenario's state (senders and receivers alike).
    pub features: Option<Box<features::State>>,
}

/// What a frame meant for the member's own requests.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Nothing,
    Joined(String),
    /// An `error` while a join was outstanding: the join was refused.
    JoinRefused,
    LeftRoom(String),
    /// The connection is over (closed by the server or failed).
    Gone,
}

impl<'a> Member<'a> {
    pub fn new(
        shared: &'a Shared,
        ws: Ws,
        user: String,
        sender: Option<SenderId>,
        node: usize,
    ) -> Self {
        Member {
            shared,
            ws,
            sender,
            user,
            node,
            receipts: Receipts::default(),
            sent: 0,
            acked: 0,
            refused: 0,
            seq: 0,
            latencies: Vec::with_capacity(LATENCY_BATCH),
            now: 0,
            gone: false,
            joining: false,
            keyed: false,
            features: None,
        }
    }

    pub async fn send_json(&mut self, frame: serde_json::Value) -> bool {
        self.send_text(frame.to_string()).await
    }

    /// Writes one frame. A write the server does not take (it stopped
    /// reading, the socket is full) is given up after [`SEND_TIMEOUT`], or
    /// when the run is over, so no task waits on it forever.
    async fn send_text(&mut self, text: String) -> bool {
        let mut phase = self.shared.phase.clone();
        let result = tokio::select! {
            biased;
            sent = tokio::time::timeout(SEND_TIMEOUT, self.ws.send_text(&text)) => sent.ok(),
            _ = phase.wait_for(|p| *p >= Phase::Done) => None,
        };
        match result {
            Some(Ok(())) => true,
            Some(Err(_)) => {
                self.lost_connection(None);
                false
            }
            None => {
                // The frame may be half written: this connection is unusable.
                self.shared
                    .counters
                    .send_stalled
                    .fetch_add(1, Ordering::Relaxed);
                self.gone = true;
                self.shared.closed();
                false
            }
        }
    }

    /// Sends the next chat of this sender to `room`; `due_us` is when the
    /// schedule said it should go (see [`Stamp::due_us`]).
    pub async fn send_chat(&mut self, room: &str, size: usize, due_us: u64) -> bool {
        self.send_chat_replying(room, size, due_us, None).await
    }

    /// [`Member::send_chat`], optionally replying to chat `reply_to`.
    async fn send_chat_replying(
        &mut self,
        room: &str,
        size: usize,
        due_us: u64,
        reply_to: Option<chatterbox::protocol::MessageId>,
    ) -> bool {
        let Some(sender) = self.sender else {
            return false;
        };
        self.seq += 1;
        let stamp = Stamp {
            sender,
            seq: self.seq,
            due_us,
        };
        let mut frame = serde_json::json!({
            "type": "chat",
            "room": room,
            "text": make_text(stamp, size),
            "ref": self.seq.to_string(),
        });
        if self.keyed {
            frame["key"] = features::chat_key(self.seq).into();
        }
        if let Some(reply_to) = reply_to {
            frame["reply_to"] = reply_to.into();
        }
        // Counted before it is written, so the drain never sees an echo
        // arrive for a message it has not counted.
        self.sent += 1;
        self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.send_json(frame).await
    }

    /// Features: sends this sender's next operation (see
    /// [`features::MIX`]), due at `due_us`.
    pub async fn send_feature(&mut self, room: &str, size: usize, due_us: u64) -> bool {
        let (Some(sender), Some(hub), Some(state)) =
            (self.sender, &self.shared.features, &mut self.features)
        else {
            return false;
        };
        match state.plan(hub, sender, room, size, self.seq, due_us) {
            Planned::Chat { reply_to } => {
                self.send_chat_replying(room, size, due_us, reply_to).await
            }
            Planned::Request(frame) => {
                self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                self.send_json(frame).await
            }
            Planned::Quiet(frame) => self.send_json(frame).await,
        }
    }

    /// Operations a features sender has scheduled so far.
    pub fn feature_ops(&self) -> u64 {
        self.features.as_ref().map_or(0, |f| f.ops)
    }

    /// Reads one frame, then the frames that came in with it (up to
    /// [`BURST`], without another read from the socket), so a caller's
    /// select runs once per burst instead of once per frame. Only `Gone` is
    /// reported; use [`Member::read`] to see each event.
    pub async fn read_burst(&mut self) -> Event {
        if self.read().await == Event::Gone {
            return Event::Gone;
        }
        for _ in 1..BURST {
            match self.ws.next_buffered() {
                Ok(Some(received)) => {
                    if self.on_received(Ok(received)) == Event::Gone {
                        return Event::Gone;
                    }
                }
                Ok(None) => break,
                Err(e) => return self.on_received(Err(e)),
            }
        }
        Event::Nothing
    }

    /// Reads one frame and books it.
    pub async fn read(&mut self) -> Event {
        let received = self.ws.next().await;
        // One clock reading per read from the socket: the frames that came
        // in together arrived together, whatever order they are booked in.
        self.now = self.shared.now_us();
        self.on_received(received)
    }

    fn on_received(&mut self, received: Result<Received, WireError>) -> Event {
        match received {
            Ok(Received::Text(range)) => {
                // The frame is read in place, in the connection's buffer.
                let buffer = self.ws.take_buffer();
                let event = match std::str::from_utf8(&buffer[range]) {
                    Ok(text) => self.on_text(text),
                    Err(_) => self.on_text_not_utf8(),
                };
                self.ws.put_buffer(buffer);
                event
            }
            Ok(Received::AssembledText(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => self.on_text(&text),
                Err(_) => self.on_text_not_utf8(),
            },
            Ok(Received::Binary) => Event::Nothing,
            Ok(Received::Close(code)) => {
                self.lost_connection(Some(code.unwrap_or(1005)));
                Event::Gone
            }
            Err(_) => {
                self.lost_connection(None);
                Event::Gone
            }
        }
    }

    fn on_text_not_utf8(&mut self) -> Event {
        tally(&self.shared.errors, "(text frame from server not UTF-8)");
        Event::Nothing
    }

    fn on_text(&mut self, text: &str) -> Event {
        match classify(text) {
            Incoming::Chat {
                id,
                text,
                reference,
            } => {
                let Some(stamp) = parse_text(&text) else {
                    return Event::Nothing;
                };
                let now = self.now;
                // The answer to a resend is the original chat again: no
                // delivery, judged by its id alone.
                if let (Some(state), Some(hub), Some(r)) = (
                    &mut self.features,
                    &self.shared.features,
                    reference.as_deref(),
                ) {
                    if state.on_resend_answer(hub, r, id, now) {
                        self.shared.counters.acked.fetch_add(1, Ordering::Relaxed);
                        return Event::Nothing;
                    }
                }
                self.latencies.push(now.saturating_sub(stamp.due_us).max(1));
                if self.latencies.len() >= LATENCY_BATCH {
                    self.flush_latencies();
                }
                self.receipts.record(id, stamp);
                self.shared
                    .counters
                    .delivered
                    .fetch_add(1, Ordering::Relaxed);
                let own_echo = reference.is_some() && Some(stamp.sender) == self.sender;
                if own_echo {
                    self.acked += 1;
                    self.shared.counters.acked.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .counters
                        .broadcasts
                        .fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(state), Some(hub)) = (&mut self.features, &self.shared.features) {
                    let own = if own_echo { reference.as_deref() } else { None };
                    state.on_chat(hub, id, stamp, own, now);
                }
                Event::Nothing
            }
            Incoming::Change {
                kind,
                id,
                user,
                target,
                text,
                emoji,
                on,
                reference,
            } => {
                self.on_change(
                    kind,
                    id,
                    &user,
                    target,
                    &text,
                    &emoji,
                    on,
                    reference.as_deref(),
                );
                Event::Nothing
            }
            Incoming::Typing { user } => {
                if let Some(hub) = &self.shared.features {
                    hub.typing_forwarded.fetch_add(1, Ordering::Relaxed);
                    let sender = hub.sender_of_user(&user);
                    if let Some(state) = &mut self.features {
                        state.on_typing(sender, user == self.user);
                    }
                }
                Event::Nothing
            }
            Incoming::Read { id, reference } => {
                let now = self.now;
                if let (Some(state), Some(hub)) = (&mut self.features, &self.shared.features) {
                    if state.on_read(hub, id, reference.as_deref(), now) {
                        self.shared.counters.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Nothing
            }
            Incoming::Error { code, .. } if self.joining => {
                // Counted with the connections that failed, which
                // --max-connect-failures may excuse, not as a run error.
                tally(
                    &self.shared.connect_errors,
                    &format!("join refused: {code}"),
                );
                Event::JoinRefused
            }
            Incoming::Error { code, reference } => {
                tally(&self.shared.errors, &code);
                let Some(reference) = reference.filter(|_| self.sender.is_some()) else {
                    return Event::Nothing;
                };
                if reference.parse::<u64>().is_ok() {
                    self.refused += 1;
                    self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    if let Some(state) = &mut self.features {
                        state.on_chat_refused(&reference);
                    }
                } else if let Some(state) = &mut self.features {
                    if state.on_error(&reference) {
                        self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Nothing
            }
            Incoming::Presence { room } => Event::Joined(room.into_owned()),
            Incoming::Leave { room, user } if user == self.user => {
                Event::LeftRoom(room.into_owned())
            }
            Incoming::Leave { .. } | Incoming::Other => Event::Nothing,
            Incoming::Malformed => {
                tally(&self.shared.errors, "(malformed frame from server)");
                Event::Nothing
            }
        }
    }

    /// An edit, delete or reaction. Only this run's changes are judged:
    /// an edit by the stamp in its text, a delete or reaction by what its
    /// sender registered (see [`features::Hub`]). Outside the features
    /// scenario (no hub), there are none of this run's.
    #[allow(clippy::too_many_arguments)]
    fn on_change(
        &mut self,
        kind: ChangeKind,
        id: chatterbox::protocol::MessageId,
        user: &str,
        target: chatterbox::protocol::MessageId,
        text: &str,
        emoji: &str,
        on: bool,
        reference: Option<&str>,
    ) {
        let Some(hub) = &self.shared.features else {
            return;
        };
        let now = self.now;
        if id == 0 {
            // A reaction that changed nothing: its sender's answer alone.
            if let Some(state) = &mut self.features {
                if state.on_reaction_noop(reference) {
                    self.shared.counters.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        let Some(sender) = hub.sender_of_user(user) else {
            return;
        };
        let identified = match kind {
            ChangeKind::Edit => parse_text(text)
                .filter(|stamp| stamp.sender == sender)
                .map(|stamp| (sender, stamp.seq, stamp.due_us)),
            _ => hub.identify(kind, user, target, emoji, on),
        };
        let Some((sender, seq, due_us)) = identified else {
            if let Some(state) = &mut self.features {
                state.outcome.unknown_changes += 1;
            }
            return;
        };
        // Latency per kind goes to the hub; `latencies` stays chats only.
        self.receipts.record_change(id, sender, kind, seq);
        self.shared
            .counters
            .delivered
            .fetch_add(1, Ordering::Relaxed);
        let own = reference.filter(|_| Some(sender) == self.sender);
        if let Some(state) = &mut self.features {
            if state.on_change(hub, kind, id, own, due_us, now) {
                let c = &self.shared.counters;
                c.acked.fetch_add(1, Ordering::Relaxed);
                c.broadcasts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Joins `room` and waits for its `presence`.
    pub async fn join(&mut self, room: &str) -> bool {
        if !self
            .send_json(serde_json::json!({"type": "join", "room": room}))
            .await
        {
            return false;
        }
        self.joining = true;
        let mut phase = self.shared.phase.clone();
        let wait = async {
            loop {
                match self.read().await {
                    Event::Joined(r) if r == room => return true,
                    Event::Gone | Event::JoinRefused => return false,
                    _ => {}
                }
            }
        };
        let joined = tokio::select! {
            joined = tokio::time::timeout(JOIN_TIMEOUT, wait) => match joined {
                Ok(joined) => joined,
                Err(_) => {
                    tally(&self.shared.connect_errors, "join not answered in time");
                    false
                }
            },
            // The run is over: waiting on would only hold up its end.
            _ = phase.wait_for(|p| *p >= Phase::Done) => {
                tally(&self.shared.connect_errors, "join not answered by the end of the run");
                false
            }
        };
        self.joining = false;
        joined
    }

    /// The server ended the connection (close code, or none).
    fn lost_connection(&mut self, code: Option<u16>) {
        if self.gone {
            return;
        }
        self.gone = true;
        self.shared.closed();
        if self.shared.phase() < Phase::Done {
            self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let key = match code {
                Some(code) => code.to_string(),
                None => "1006 (no close frame)".to_string(),
            };
            tally(&self.shared.closes, &key);
        }
    }

    fn flush_latencies(&mut self) {
        let mut histogram = self
            .shared
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for us in self.latencies.drain(..) {
            let _ = histogram.record(us);
        }
    }

    /// Closes the connection normally (if still open) and returns what it saw.
    pub async fn finish(mut self, room: usize) -> Outcome {
        self.flush_latencies();
        if let (Some(state), Some(hub)) = (&mut self.features, &self.shared.features) {
            state.flush(hub);
        }
        if !self.gone {
            self.gone = true;
            self.shared.closed();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.ws.close(1000, "load test done"),
            )
            .await;
        }
        Outcome {
            connected: true,
            ready: false,
            sender: self.sender,
            room,
            node: self.node,
            sent: self.sent,
            acked: self.acked,
            refused: self.refused,
            receipts: self.receipts,
            features: self.features.map(|state| state.outcome),
        }
    }
}

/// Frames [`Member::read_burst`] books at most before letting its caller's
/// select look at the phase and the send schedule again.
const BURST: usize = 256;

/// Latencies a connection gathers before taking the shared histogram's lock.
const LATENCY_BATCH: usize = 256;
