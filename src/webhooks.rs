//! Webhooks: with `WEBHOOK_URL` set, the server POSTs a JSON event there
//! when a room becomes occupied or vacated on this node and when a chat is
//! stored, so the product's backend can react (notify, index, moderate)
//! without holding a WebSocket open.
//!
//! Events go out one at a time, in the order they happened, from one
//! thread with a bounded queue, so a slow or absent receiver never slows
//! a room: when the queue is full, new events are dropped and counted
//! (`chatterbox_webhook_events_total{outcome="dropped"}`). A failed POST
//! (no connection, a timeout, 5xx or 429) is retried after 0.5, 1, 2 and 4
//! seconds, then given up (`outcome="failed"`); other answers are final.
//! Each request is signed: `X-Chatterbox-Signature: sha256=HEX` is the
//! HMAC-SHA256 of the body under `WEBHOOK_SECRET` (see docs/OPERATIONS.md).
//!
//! [`Schedule`] and [`signature`] are the rules, with no thread or network
//! in them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::metrics::Metrics;
use crate::protocol::{format_timestamp, now_millis, ChatMessage};

/// Events waiting to be sent; past this, new ones are dropped.
pub(crate) const QUEUE: usize = 10_000;

/// How long one POST may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiver is told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The room's first member on this node joined.
    RoomOccupied { room: String },
    /// The room's last member on this node left.
    RoomVacated { room: String },
    /// A chat was stored (by a member of this node, or the server API).
    Message(Box<ChatMessage>),
}

impl Event {
    /// The event's name, also sent as `X-Chatterbox-Event`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::RoomOccupied { .. } => "room.occupied",
            Event::RoomVacated { .. } => "room.vacated",
            Event::Message(_) => "message",
        }
    }

    /// The JSON body: the event, its room, this node, when, and for a
    /// message the chat as members receive it.
    fn body(&self, id: &str, node: &str, at_millis: i64) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            id: &'a str,
            event: &'static str,
            room: &'a str,
            node: &'a str,
            timestamp: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<Chat<'a>>,
        }
        #[derive(Serialize)]
        struct Chat<'a> {
            id: i64,
            user: &'a str,
            text: &'a str,
            timestamp: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reply_to: Option<i64>,
        }
        let (room, message) = match self {
            Event::RoomOccupied { room } | Event::RoomVacated { room } => (room.as_str(), None),
            Event::Message(m) => (
                m.room.as_str(),
                Some(Chat {
                    id: m.id,
                    user: &m.user,
                    text: &m.text,
                    timestamp: &m.timestamp,
                    reply_to: m.reply_to,
                }),
            ),
        };
        let body = Body {
            id,
            event: self.name(),
            room,
            node,
            timestamp: format_timestamp(at_millis),
            message,
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`: what the
/// receiver recomputes to know the request came from this server.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    let code = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + code.len() * 2);
    out.push_str("sha256=");
    for byte in code.iter() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// How one POST ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// 2xx.
    Delivered,
    /// No connection, a timeout, 5xx or 429: worth another try.
    Retry,
    /// Any other answer: the receiver refused it, and will again.
    Refused,
}

impl Attempt {
    pub(crate) fn of_status(status: u16) -> Attempt {
        match status {
            200..=299 => Attempt::Delivered,
            429 | 500..=599 => Attempt::Retry,
            _ => Attempt::Refused,
        }
    }
}

/// The retry rule: after a failed attempt, how long to wait before the
/// next, or `None` to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    attempts: u32,
}

/// Tries per event, the first included.
pub(crate) const ATTEMPTS: u32 = 5;

impl Schedule {
    pub(crate) fn new() -> Schedule {
        Schedule { attempts: 0 }
    }

    /// One attempt was made and failed: the wait before the next (0.5 s,
    /// then doubling), or `None` after [`ATTEMPTS`].
    pub(crate) fn failed(&mut self) -> Option<Duration> {
        self.attempts += 1;
        (self.attempts < ATTEMPTS).then(|| Duration::from_millis(500 << (self.attempts - 1)))
    }
}

/// Where the server hands its events; cheap to clone.
#[derive(Clone)]
pub(crate) struct Webhooks {
    queue: SyncSender<Event>,
    /// Events queued and not yet finished with (delivered or given up).
    unfinished: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: String,
    pub secret: String,
    /// This node's name, in every event.
    pub node: String,
}

impl Webhooks {
    /// Starts the sending thread.
    pub(crate) fn start(target: Target, metrics: Arc<Metrics>) -> std::io::Result<Webhooks> {
        let (queue, events) = sync_channel(QUEUE);
        let unfinished = Arc::new(AtomicUsize::new(0));
        let sender = Sending {
            target,
            agent: ureq::AgentBuilder::new()
                .timeout(REQUEST_TIMEOUT)
                .redirects(0)
                .build(),
            unfinished: unfinished.clone(),
            metrics: metrics.clone(),
        };
        thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || sender.run(events))?;
        Ok(Webhooks {
            queue,
            unfinished,
            metrics,
        })
    }

    /// Queues `event`, or drops it (counted, logged) when the queue is
    /// full or the thread has gone.
    pub(crate) fn send(&self, event: Event) {
        self.unfinished.fetch_add(1, Ordering::AcqRel);
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event) | TrySendError::Disconnected(event)) => {
                self.unfinished.fetch_sub(1, Ordering::AcqRel);
                let dropped = self.metrics.webhook_events.with_label_values(&["dropped"]);
                if dropped.get() % 1000 == 0 {
                    log::warn!(
                        "webhooks: queue full ({QUEUE} events), dropping {} events and more",
                        event.name()
                    );
                }
                dropped.inc();
            }
        }
    }

    /// At shutdown: waits up to `limit` for the queued events to be sent.
    pub(crate) async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.unfinished.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        let left = self.unfinished.load(Ordering::Acquire);
        if left > 0 {
            log::warn!("webhooks: {left} events not sent at shutdown");
        }
    }
}

/// The sending thread's state.
struct Sending {
    target: Target,
    agent: ureq::Agent,
    unfinished: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Sending {
    fn run(self, events: Receiver<Event>) {
        let started = now_millis();
        // Unique per event (node, start, count), the same on every retry:
        // the receiver can drop repeats.
        for (n, event) in events.iter().enumerate() {
            let id = format!("{}-{started}-{n}", self.target.node);
            let body = event.body(&id, &self.target.node, now_millis());
            let outcome = self.deliver(&event, &id, &body);
            self.metrics
                .webhook_events
                .with_label_values(&[outcome])
                .inc();
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// POSTs one event until it is delivered, refused or given up.
    fn deliver(&self, event: &Event, id: &str, body: &str) -> &'static str {
        let signature = signature(self.target.secret.as_bytes(), body.as_bytes());
        let mut schedule = Schedule::new();
        loop {
            let answer = self
                .agent
                .post(&self.target.url)
                .set("content-type", "application/json")
                .set("x-chatterbox-event", event.name())
                .set("x-chatterbox-delivery", id)
                .set("x-chatterbox-signature", &signature)
                .send_string(body);
            let (attempt, why) = match answer {
                Ok(response) => (Attempt::of_status(response.status()), String::new()),
                Err(ureq::Error::Status(status, _)) => {
                    (Attempt::of_status(status), format!("answered {status}"))
                }
                Err(ureq::Error::Transport(e)) => (Attempt::Retry, e.to_string()),
            };
            match attempt {
                Attempt::Delivered => return "delivered",
                Attempt::Refused => {
                    log::warn!("webhooks: {} {id} refused: {why}", event.name());
                    return "refused";
                }
                Attempt::Retry => match schedule.failed() {
                    Some(wait) => thread::sleep(wait),
                    None => {
                        log::warn!(
                            "webhooks: {} {id} given up after {ATTEMPTS} attempts: {why}",
                            event.name()
                        );
                        return "failed";
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn failures_are_retried_four_times_with_doubling_waits() {
        let mut schedule = Schedule::new();
        let waits: Vec<_> = std::iter::from_fn(|| schedule.failed()).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000].map(Duration::from_millis),
            "five attempts in all"
        );
    }

    #[test]
    fn only_unavailable_answers_are_retried() {
        assert_eq!(Attempt::of_status(200), Attempt::Delivered);
        assert_eq!(Attempt::of_status(204), Attempt::Delivered);
        assert_eq!(Attempt::of_status(503), Attempt::Retry);
        assert_eq!(Attempt::of_status(429), Attempt::Retry);
        assert_eq!(Attempt::of_status(400), Attempt::Refused);
        assert_eq!(Attempt::of_status(404), Attempt::Refused);
        assert_eq!(Attempt::of_status(301), Attempt::Refused);
    }

    #[test]
    fn a_message_event_carries_the_chat_as_members_see_it() {
        let event = Event::Message(Box::new(ChatMessage {
            id: 7,
            room: "general".into(),
            user: "alice".into(),
            text: "hi \"there\"".into(),
            timestamp: "2026-12-01T10:00:00.000Z".into(),
            reply_to: Some(3),
            ..ChatMessage::default()
        }));
        let body: serde_json::Value =
            serde_json::from_str(&event.body("n-1-0", "n", 0)).expect("JSON");
        assert_eq!(body["event"], "message");
        assert_eq!(body["id"], "n-1-0");
        assert_eq!(body["room"], "general");
        assert_eq!(body["node"], "n");
        assert_eq!(body["message"]["id"], 7);
        assert_eq!(body["message"]["text"], "hi \"there\"");
        assert_eq!(body["message"]["reply_to"], 3);
        let occupied: serde_json::Value = serde_json::from_str(
            &Event::RoomOccupied {
                room: "general".into(),
            }
            .body("x", "n", 0),
        )
        .expect("JSON");
        assert_eq!(occupied["event"], "room.occupied");
        assert!(occupied.get("message").is_none());
    }
}
