//! What an operator scrapes from `GET /metrics`, in the Prometheus text
//! format (the `prometheus` crate does the bookkeeping and the encoding).
//!
//! One [`Metrics`] per server, in its own registry, shared as an `Arc` by the
//! actors that move the numbers. Not a process-wide global, so two servers
//! in one process (the tests) count separately.
//!
//! Names follow Prometheus conventions: the `chatterbox_` prefix, `_total`
//! for counters, seconds for time. docs/OPERATIONS.md lists the queries
//! that matter.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::protocol::ErrorCode;

/// Why an upgrade to `/ws` was refused, as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest,
    Origin,
    Unauthorized,
    UserMismatch,
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Origin => "origin",
            Refusal::Unauthorized => "unauthorized",
            Refusal::UserMismatch => "user_mismatch",
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

pub(crate) struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// MAX_CONNECTIONS, so dashboards can show how close the server is.
    pub max_connections: IntGauge,
    /// WebSocket connections accepted since start.
    pub connections_opened: IntCounter,
    /// Rooms with at least one member.
    pub rooms: IntGauge,
    /// Chat messages accepted from clients (valid and within the rate
    /// limit) and handed to their room for storing.
    pub messages_received: IntCounter,
    /// Chat messages committed to SQLite.
    pub messages_stored: IntCounter,
    /// Chat frames handed to members' queues (one per recipient, the
    /// sender's echo included).
    pub messages_delivered: IntCounter,
    /// Deliveries made by rooms: each hands every member a batch of stored
    /// chats in one write, so delivered / deliveries / members is the
    /// average batch.
    pub room_deliveries: IntCounter,
    /// Webhook events by outcome: delivered, refused (a 4xx), failed
    /// (given up after retries), dropped (the queue was full).
    pub webhook_events: IntCounterVec,
    /// `error` frames sent, by protocol code.
    pub errors: IntCounterVec,
    /// Chat messages refused by the rate limit (also in `errors`).
    pub rate_limited: IntCounter,
    /// Connections closed with 1008 because they read too slowly.
    pub slow_client_closes: IntCounter,
    /// Connections dropped because nothing arrived for CLIENT_TIMEOUT.
    pub heartbeat_timeouts: IntCounter,
    /// Connections whose socket stopped taking data, dropped by the
    /// watchdog (their session could no longer run to close them).
    pub frozen_closes: IntCounter,
    /// `typing` notices passed on to a room (each once, however many
    /// members hear it); extras inside the throttle are not counted.
    pub typing_forwarded: IntCounter,
    /// Read markers moved forward and stored.
    pub read_markers_stored: IntCounter,
    /// Refused `/ws` upgrades, by reason.
    pub upgrades_refused: IntCounterVec,
    /// Time of one group commit attempt (the transaction and its fsync; a
    /// failed attempt and, after start or a failure, opening the database
    /// count too).
    pub store_commit_seconds: Histogram,
    /// Chat messages in one group commit.
    pub store_batch_size: Histogram,
    /// Chat messages accepted and not yet handed, stored, to their room's
    /// members (bounded by MAX_PENDING_MESSAGES).
    pub pending_messages: IntGauge,
    /// Bytes of text of those messages (bounded by MAX_PENDING_BYTES).
    pub pending_bytes: IntGauge,
    /// From receiving a chat to handing it to the last member's queue:
    /// storing it durably plus the fan-out.
    pub delivery_seconds: Histogram,
    /// 1 while the last write attempt to SQLite (a batch, or `/health`'s
    /// check write) succeeded, 0 while it failed or the file is gone.
    pub store_writable: IntGauge,
    /// Cluster mode: notifications this node's commits sent (one per room
    /// per batch).
    pub cluster_notifications_sent: IntCounter,
    /// Cluster mode: notifications this node's listener received.
    pub cluster_notifications_received: IntCounter,
    /// Cluster mode: reads of messages other nodes stored, and how long
    /// each took.
    pub cluster_catch_up_reads: IntCounter,
    pub cluster_catch_up_seconds: Histogram,
    /// Cluster mode: 1 while the listener's connection is up.
    pub cluster_listener_up: IntGauge,
    /// Cluster mode: nodes with a recent heartbeat, this one included.
    pub cluster_nodes: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let registry = Registry::new();
        let latency = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5,
        ];
        let metrics = Metrics {
            connections: IntGauge::new("chatterbox_connections", "Open WebSocket connections.")
                .expect("valid metric"),
            max_connections: IntGauge::new(
                "chatterbox_max_connections",
                "The MAX_CONNECTIONS cap on open WebSocket connections.",
            )
            .expect("valid metric"),
            connections_opened: IntCounter::new(
                "chatterbox_connections_opened_total",
                "WebSocket connections accepted.",
            )
            .expect("valid metric"),
            rooms: IntGauge::new("chatterbox_rooms_active", "Rooms with at least one member.")
                .expect("valid metric"),
            messages_received: IntCounter::new(
                "chatterbox_messages_received_total",
                "Chat messages accepted from clients for storing.",
            )
            .expect("valid metric"),
            messages_stored: IntCounter::new(
                "chatterbox_messages_stored_total",
                "Chat messages committed to SQLite.",
            )
            .expect("valid metric"),
            messages_delivered: IntCounter::new(
                "chatterbox_messages_delivered_total",
                "Chat frames handed to members' queues, one per recipient.",
            )
            .expect("valid metric"),
            webhook_events: IntCounterVec::new(
                Opts::new(
                    "chatterbox_webhook_events_total",
                    "Webhook events by outcome: delivered, refused, failed, dropped.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            room_deliveries: IntCounter::new(
                "chatterbox_room_deliveries_total",
                "Batches of stored chats rooms handed to their members, one write each.",
            )
            .expect("valid metric"),
            errors: IntCounterVec::new(
                Opts::new(
                    "chatterbox_errors_total",
                    "Protocol error frames sent, by code.",
                ),
                &["code"],
            )
            .expect("valid metric"),
            rate_limited: IntCounter::new(
                "chatterbox_rate_limited_total",
                "Chat messages refused by the per-connection rate limit.",
            )
            .expect("valid metric"),
            slow_client_closes: IntCounter::new(
                "chatterbox_slow_client_closes_total",
                "Connections closed with 1008 for reading too slowly.",
            )
            .expect("valid metric"),
            heartbeat_timeouts: IntCounter::new(
                "chatterbox_heartbeat_timeouts_total",
                "Connections dropped after CLIENT_TIMEOUT of silence.",
            )
            .expect("valid metric"),
            frozen_closes: IntCounter::new(
                "chatterbox_frozen_closes_total",
                "Connections whose socket stopped taking data, dropped by the watchdog.",
            )
            .expect("valid metric"),
            typing_forwarded: IntCounter::new(
                "chatterbox_typing_forwarded_total",
                "Typing notices passed on to a room's other users (after the 2 s throttle).",
            )
            .expect("valid metric"),
            read_markers_stored: IntCounter::new(
                "chatterbox_read_markers_stored_total",
                "Read markers moved forward and stored.",
            )
            .expect("valid metric"),
            upgrades_refused: IntCounterVec::new(
                Opts::new(
                    "chatterbox_upgrades_refused_total",
                    "Refused /ws upgrades, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            store_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chatterbox_store_commit_seconds",
                    "Time of one group commit attempt to SQLite, fsync included.",
                )
                .buckets(latency.clone()),
            )
            .expect("valid metric"),
            store_batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "chatterbox_store_batch_size",
                    "Chat messages stored in one group commit.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
                ]),
            )
            .expect("valid metric"),
            pending_messages: IntGauge::new(
                "chatterbox_pending_messages",
                "Chat messages accepted and not yet stored and handed to members.",
            )
            .expect("valid metric"),
            pending_bytes: IntGauge::new(
                "chatterbox_pending_bytes",
                "Bytes of text of the chat messages accepted and not yet stored and handed to members.",
            )
            .expect("valid metric"),
            delivery_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chatterbox_delivery_seconds",
                    "From receiving a chat to handing it to the last member's queue.",
                )
                .buckets(latency.clone()),
            )
            .expect("valid metric"),
            store_writable: IntGauge::new(
                "chatterbox_store_writable",
                "1 while the last write to SQLite succeeded, 0 while writes fail or the file is gone.",
            )
            .expect("valid metric"),
            cluster_notifications_sent: IntCounter::new(
                "chatterbox_cluster_notifications_sent_total",
                "Cluster mode: notifications sent by this node's commits, one per room per batch.",
            )
            .expect("valid metric"),
            cluster_notifications_received: IntCounter::new(
                "chatterbox_cluster_notifications_received_total",
                "Cluster mode: notifications received by this node's listener.",
            )
            .expect("valid metric"),
            cluster_catch_up_reads: IntCounter::new(
                "chatterbox_cluster_catch_up_reads_total",
                "Cluster mode: reads of messages stored by other nodes.",
            )
            .expect("valid metric"),
            cluster_catch_up_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chatterbox_cluster_catch_up_seconds",
                    "Cluster mode: how long a read of messages stored by other nodes took.",
                )
                .buckets(latency.clone()),
            )
            .expect("valid metric"),
            cluster_listener_up: IntGauge::new(
                "chatterbox_cluster_listener_up",
                "Cluster mode: 1 while the notification listener's connection is up.",
            )
            .expect("valid metric"),
            cluster_nodes: IntGauge::new(
                "chatterbox_cluster_nodes",
                "Cluster mode: nodes with a recent heartbeat, this one included.",
            )
            .expect("valid metric"),
            registry,
        };
        metrics.register_all();
        // Every code and reason is present from the start, at zero, so a
        // rate() over a fresh server has a series to work on.
        for code in ErrorCode::ALL {
            metrics.errors.with_label_values(&[code.as_str()]);
        }
        for refusal in [
            Refusal::BadRequest,
            Refusal::Origin,
            Refusal::Unauthorized,
            Refusal::UserMismatch,
            Refusal::MaxConnections,
            Refusal::MaxConnectionsPerIp,
        ] {
            metrics
                .upgrades_refused
                .with_label_values(&[refusal.label()]);
        }
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 29] = [
            Box::new(self.connections.clone()),
            Box::new(self.max_connections.clone()),
            Box::new(self.connections_opened.clone()),
            Box::new(self.rooms.clone()),
            Box::new(self.messages_received.clone()),
            Box::new(self.messages_stored.clone()),
            Box::new(self.messages_delivered.clone()),
            Box::new(self.room_deliveries.clone()),
            Box::new(self.webhook_events.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.slow_client_closes.clone()),
            Box::new(self.heartbeat_timeouts.clone()),
            Box::new(self.frozen_closes.clone()),
            Box::new(self.typing_forwarded.clone()),
            Box::new(self.read_markers_stored.clone()),
            Box::new(self.upgrades_refused.clone()),
            Box::new(self.store_commit_seconds.clone()),
            Box::new(self.store_batch_size.clone()),
            Box::new(self.pending_messages.clone()),
            Box::new(self.pending_bytes.clone()),
            Box::new(self.delivery_seconds.clone()),
            Box::new(self.store_writable.clone()),
            Box::new(self.cluster_notifications_sent.clone()),
            Box::new(self.cluster_notifications_received.clone()),
            Box::new(self.cluster_catch_up_reads.clone()),
            Box::new(self.cluster_catch_up_seconds.clone()),
            Box::new(self.cluster_listener_up.clone()),
            Box::new(self.cluster_nodes.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("metric names are unique");
        }
    }

    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors_sent(code, 1);
    }

    /// `n` error frames of one code.
    pub(crate) fn errors_sent(&self, code: ErrorCode, n: u64) {
        self.errors.with_label_values(&[code.as_str()]).inc_by(n);
    }

    pub(crate) fn refused(&self, refusal: Refusal) {
        self.upgrades_refused
            .with_label_values(&[refusal.label()])
            .inc();
    }

    /// The text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which
        // the fixed set above never produces.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_prefix() {
        let metrics = Metrics::new();
        metrics.error(ErrorCode::RateLimited);
        let text = metrics.render();
        assert!(text.contains("chatterbox_errors_total{code=\"rate_limited\"} 1"));
        assert!(text.contains("chatterbox_upgrades_refused_total{reason=\"max_connections\"} 0"));
        assert!(text.contains("chatterbox_store_commit_seconds_bucket"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("chatterbox_"), "{line}");
        }
    }
}
