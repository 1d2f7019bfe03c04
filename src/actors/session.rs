//! `ChatSession`: one actor per WebSocket connection. It turns client frames
//! into typed requests (answering bad ones with the protocol's `error`),
//! enforces the per-connection limits (rooms, chat rate, join/leave rate,
//! message size, outbox), keeps the connection alive with pings, and writes what rooms
//! send it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::web::{Bytes, BytesMut};
use actix_web_actors::ws::{self, CloseCode, CloseReason};

use super::messages::room::{FromMember, MemberRequest};
use super::messages::server::{Connect, Disconnect, JoinError, JoinRoom, LeaveRoom};
use super::messages::session::{Disconnected, GoingAway, Outgoing};
use super::outbox::{Outbox, OutboxState, Reserve};
use super::server::ChatServer;
use super::SessionId;
use crate::auth;
use crate::backlog::Backlog;
use crate::caps::ConnectionSlot;
use crate::config::Config;
use crate::direct::{self, Pair};
use crate::history::NewChange;
use crate::metrics::Metrics;
use crate::permissions::Grants;
use crate::protocol::{
    decode_client_frame, format_timestamp, now_millis, ClientFrame, ErrorCode, RoomName,
    ServerFrame, UserName,
};
use crate::rate_limit::TokenBucket;

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// The close code of a connection whose token expired (CLOSE_EXPIRED).
const EXPIRED_CLOSE_CODE: u16 = 4001;

/// A message arriving in fragments, gathered until its last frame.
struct Fragments {
    is_text: bool,
    data: BytesMut,
}

/// Who a connection speaks as, and what its token allows.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub user: UserName,
    pub grants: Grants,
    /// The token's `exp` (seconds since the epoch); `None` without
    /// `AUTH_SECRET`, where nothing expires.
    pub expires: Option<u64>,
}

pub(crate) struct ChatSession {
    id: SessionId,
    user: UserName,
    /// What the connection's token allows (moderation, rooms); replaced
    /// by each `refresh`.
    grants: Grants,
    /// The `exp` of the connection's latest token; replaced by each
    /// `refresh`.
    expires: Option<u64>,
    /// With CLOSE_EXPIRED: the timer that closes the connection (4001) at
    /// `expires`, re-armed by each `refresh`.
    expiry_timer: Option<SpawnHandle>,
    server: Addr<ChatServer>,
    config: Arc<Config>,
    /// The rooms this connection is in, and where to send what it asks.
    rooms: HashMap<RoomName, Recipient<FromMember>>,
    /// Shared with the rooms that queue frames for this connection.
    outbox: Arc<OutboxState>,
    /// Last time anything arrived from the client; any frame counts.
    last_heard: Instant,
    rate: TokenBucket,
    /// The server's bound on chat accepted and not yet stored.
    backlog: Arc<Backlog>,
    /// Spent by joins and leaves: each one is broadcast to a whole room, so
    /// presence churn has a budget of its own.
    join_rate: TokenBucket,
    fragments: Option<Fragments>,
    metrics: Arc<Metrics>,
    /// This connection's place under the connection caps, given back when
    /// the actor is dropped.
    _slot: Option<ConnectionSlot>,
}

impl ChatSession {
    pub(crate) fn new(
        identity: Identity,
        server: Addr<ChatServer>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        backlog: Arc<Backlog>,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        ChatSession {
            id: SessionId(NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed)),
            user: identity.user,
            grants: identity.grants,
            expires: identity.expires,
            expiry_timer: None,
            server,
            rate: TokenBucket::new(config.rate_limit, config.rate_burst),
            backlog,
            join_rate: TokenBucket::new(config.join_rate_limit, config.join_rate_burst),
            config,
            rooms: HashMap::new(),
            outbox: Arc::new(OutboxState::default()),
            last_heard: Instant::now(),
            fragments: None,
            metrics,
            _slot: slot,
        }
    }

    /// What this connection queues for writing; the stream that
    /// hands the frames over and the watchdog share it.
    pub(crate) fn outbox(&self) -> Arc<OutboxState> {
        self.outbox.clone()
    }

    fn send_error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        code: ErrorCode,
        message: &str,
        reference: Option<&str>,
    ) {
        self.metrics.error(code);
        let frame = ServerFrame::Error {
            code,
            message,
            reference,
        };
        self.send_own(ctx, |ctx| ctx.text(frame.encode()));
    }

    /// Writes one of the session's own frames (an error, a ping, a pong):
    /// they count against OUTBOX_LIMIT like the rooms' frames, so a client
    /// that sends without reading cannot pile up answers. Past the bound
    /// the connection is closed with 1008.
    fn send_own(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        write: impl FnOnce(&mut ws::WebsocketContext<Self>),
    ) {
        match self.outbox.reserve(1, self.config.outbox_limit) {
            Reserve::Queued => {
                self.outbox.written(1);
                write(ctx);
            }
            Reserve::Overflowed => self.overflowed(ctx),
            Reserve::Closed => {}
        }
    }

    /// The outbox passed OUTBOX_LIMIT: close with 1008.
    fn overflowed(&self, ctx: &mut ws::WebsocketContext<Self>) {
        self.metrics.slow_client_closes.inc();
        log::info!(
            "connection {} of {}: outbox passed {} frames, closing (1008)",
            self.id,
            self.user,
            self.config.outbox_limit
        );
        self.close(ctx, CloseCode::Policy, "reading too slowly");
    }

    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, why: &str) {
        ctx.close(Some(CloseReason {
            code,
            description: Some(why.to_string()),
        }));
        ctx.stop();
    }

    /// Handles one complete text message.
    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let frame = match decode_client_frame(text, self.config.max_message_len) {
            Ok(frame) => frame,
            Err(e) => return self.send_error(ctx, e.code, &e.message, e.reference.as_deref()),
        };
        match frame {
            ClientFrame::Join {
                room,
                since,
                reference,
            } => self.join(room, None, since, reference, ctx),
            ClientFrame::JoinDirect {
                with,
                since,
                reference,
            } => {
                let pair = Pair::new(&self.user, &with);
                self.join(pair.room(), Some(pair), since, reference, ctx)
            }
            ClientFrame::Leave { room, reference } => self.leave(room, reference, ctx),
            ClientFrame::Chat {
                room,
                text,
                reference,
                reply_to,
                key,
            } => {
                let change = NewChange::Chat {
                    text,
                    reply_to,
                    key,
                };
                self.change(room, change, reference, ctx)
            }
            ClientFrame::Edit {
                room,
                target,
                text,
                reference,
            } => self.change(room, NewChange::Edit { target, text }, reference, ctx),
            ClientFrame::Delete {
                room,
                target,
                reference,
            } => {
                let as_moderator = self.grants.moderates(&room);
                let change = NewChange::Delete {
                    target,
                    as_moderator,
                };
                self.change(room, change, reference, ctx)
            }
            ClientFrame::Moderate {
                room,
                action,
                user,
                seconds,
                reason,
                reference,
            } => {
                if !self.grants.moderates(&room) {
                    return self.send_error(
                        ctx,
                        ErrorCode::Forbidden,
                        &format!("only a moderator of room {room} may {}", action.as_str()),
                        reference.as_deref(),
                    );
                }
                let until = seconds.map(|s| now_millis() + i64::from(s) * 1000);
                let change = NewChange::Moderate {
                    action,
                    subject: user,
                    until,
                    reason,
                };
                self.change(room, change, reference, ctx)
            }
            ClientFrame::React {
                room,
                target,
                emoji,
                on,
                reference,
            } => {
                let change = NewChange::React { target, emoji, on };
                self.change(room, change, reference, ctx)
            }
            ClientFrame::Typing { room, reference } => {
                self.ask(room, MemberRequest::Typing, reference, ctx)
            }
            ClientFrame::Read {
                room,
                id,
                reference,
            } => self.ask(room, MemberRequest::Read { id }, reference, ctx),
            ClientFrame::Refresh { token, reference } => self.refresh(&token, reference, ctx),
        }
    }

    /// A fresh token for this connection's user. Taken, it replaces the
    /// connection's expiry and grants, and the rooms the new grants no
    /// longer allow are left (the client is told which in `refreshed`):
    /// narrowing `rooms` is how an integrator takes a room away. Refused,
    /// nothing changes.
    fn refresh(
        &mut self,
        token: &str,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(secret) = self.config.auth_secret.as_ref() else {
            return self.send_error(
                ctx,
                ErrorCode::Forbidden,
                "this server does not verify names (no AUTH_SECRET), so there is no token to \
                 refresh",
                reference.as_deref(),
            );
        };
        let claims = match auth::verify_refresh(
            secret.expose(),
            token,
            self.config.max_token_lifetime,
            &self.user,
        ) {
            Ok(claims) => claims,
            Err(e) => {
                return self.send_error(
                    ctx,
                    ErrorCode::InvalidToken,
                    &format!("{e}; the connection keeps its current token"),
                    reference.as_deref(),
                )
            }
        };
        self.grants = claims.grants();
        self.expires = Some(claims.exp);
        let mut left: Vec<RoomName> = self
            .rooms
            .keys()
            .filter(|room| !self.grants.may_join(room))
            .cloned()
            .collect();
        left.sort();
        for room in &left {
            self.rooms.remove(room);
            self.server.do_send(LeaveRoom {
                session: self.id,
                room: room.clone(),
            });
        }
        let exp =
            format_timestamp(i64::try_from(claims.exp.saturating_mul(1000)).unwrap_or(i64::MAX));
        let frame = ServerFrame::Refreshed {
            exp: &exp,
            left: &left,
            reference: reference.as_deref(),
        };
        self.send_own(ctx, |ctx| ctx.text(frame.encode()));
        self.arm_expiry(ctx);
    }

    /// With CLOSE_EXPIRED, (re)starts the timer that closes the connection
    /// with 4001 when its token's `exp` passes (at once if it has).
    fn arm_expiry(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(timer) = self.expiry_timer.take() {
            ctx.cancel_future(timer);
        }
        let (true, Some(exp)) = (self.config.close_expired, self.expires) else {
            return;
        };
        let delay = auth::until_expiry(exp, SystemTime::now());
        self.expiry_timer = Some(ctx.run_later(delay, |session, ctx| {
            log::info!(
                "connection {} of {}: token expired without a refresh, closing (4001)",
                session.id,
                session.user
            );
            session.close(ctx, CloseCode::Other(EXPIRED_CLOSE_CODE), "token expired");
        }));
    }

    /// Passes a request to the room it is about, or answers `not_joined`.
    fn ask(
        &mut self,
        room: RoomName,
        request: MemberRequest,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let Some(addr) = self.rooms.get(&room) else {
            return self.send_error(
                ctx,
                ErrorCode::NotJoined,
                &format!("join room {room} first"),
                reference.as_deref(),
            );
        };
        addr.do_send(FromMember {
            session: self.id,
            request,
            reference,
            received: Instant::now(),
        });
    }

    /// A chat, edit, delete or reaction: checked against membership, the
    /// backlog and the chat rate (in that order, so a refused one spends no
    /// token), then passed to the room to store.
    fn change(
        &mut self,
        room: RoomName,
        change: NewChange,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.rooms.contains_key(&room) {
            let what = match change {
                NewChange::Chat { .. } => "chatting",
                NewChange::Edit { .. } => "editing",
                NewChange::Delete { .. } => "deleting",
                NewChange::React { .. } => "reacting",
                NewChange::Moderate { .. } => "moderating",
            };
            return self.send_error(
                ctx,
                ErrorCode::NotJoined,
                &format!("join room {room} before {what} in it"),
                reference.as_deref(),
            );
        }
        let size = match &change {
            NewChange::React { emoji, .. } => emoji.len(),
            other => other.text().len(),
        };
        let admitted = match self.backlog.admit(size) {
            Ok(admitted) => admitted,
            Err(overloaded) => {
                return self.send_error(
                    ctx,
                    ErrorCode::Overloaded,
                    &overloaded.to_string(),
                    reference.as_deref(),
                )
            }
        };
        if !self.rate.try_take() {
            self.metrics.rate_limited.inc();
            return self.send_error(
                ctx,
                ErrorCode::RateLimited,
                &format!(
                    "more than {} messages a second (bursts of {}); this one was dropped",
                    self.config.rate_limit, self.config.rate_burst
                ),
                reference.as_deref(),
            );
        }
        self.metrics.messages_received.inc();
        self.ask(
            room,
            MemberRequest::Change { change, admitted },
            reference,
            ctx,
        );
    }

    /// A `join`, by name or (`dm`) of the direct-message room of this
    /// user and another.
    fn join(
        &mut self,
        room: RoomName,
        dm: Option<Pair>,
        since: Option<i64>,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        // Without AUTH_SECRET anyone can take any name, so no room can be
        // kept to two users: direct messages, by `dm` or by name, are off.
        if self.config.auth_secret.is_none() && (dm.is_some() || direct::is_direct(&room)) {
            return self.send_error(
                ctx,
                ErrorCode::Forbidden,
                "direct messages need verified names (AUTH_SECRET), which this server does not have",
                reference.as_deref(),
            );
        }
        if self.rooms.contains_key(&room) {
            return self.send_error(
                ctx,
                ErrorCode::AlreadyJoined,
                &format!("you are already in room {room}"),
                reference.as_deref(),
            );
        }
        if !self.grants.may_join(&room) {
            return self.send_error(
                ctx,
                ErrorCode::Forbidden,
                &format!("your token does not allow room {room}"),
                reference.as_deref(),
            );
        }
        if self.rooms.len() >= self.config.max_rooms_per_connection {
            return self.send_error(
                ctx,
                ErrorCode::TooManyRooms,
                &format!(
                    "a connection may be in at most {} rooms",
                    self.config.max_rooms_per_connection
                ),
                reference.as_deref(),
            );
        }
        if !self.join_rate.try_take() {
            return self.join_rate_limited("join", &room, reference.as_deref(), ctx);
        }
        let request = self.server.send(JoinRoom {
            session: self.id,
            user: self.user.clone(),
            room: room.clone(),
            since,
            outbox: Outbox::new(self.outbox.clone(), ctx.address().recipient()),
            dm,
        });
        // Nothing else from this client is handled until the server answers,
        // so a chat right after a join finds the room joined.
        ctx.wait(
            request
                .into_actor(self)
                .map(move |answer, session, ctx| match answer {
                    Ok(Ok(joined)) => {
                        session.rooms.insert(room.clone(), joined.room);
                        // And nothing until the room has sent `history`, so
                        // joins sent back to back are answered in order.
                        let admitted = joined.admitted.into_actor(session).map(
                            move |admission, session, ctx| {
                                if let Ok(Err((code, message))) = admission {
                                    session.rooms.remove(&room);
                                    session.send_error(ctx, code, &message, reference.as_deref());
                                }
                            },
                        );
                        ctx.wait(admitted);
                    }
                    Ok(Err(e @ JoinError::TooManyRooms(_))) => {
                        // Refused for another reason than the budget: the
                        // token taken above is not spent.
                        session.join_rate.give_back();
                        session.send_error(
                            ctx,
                            ErrorCode::TooManyRooms,
                            &e.to_string(),
                            reference.as_deref(),
                        )
                    }
                    Ok(Err(JoinError::Forbidden(why))) => {
                        session.join_rate.give_back();
                        session.send_error(ctx, ErrorCode::Forbidden, &why, reference.as_deref())
                    }
                    Ok(Err(JoinError::ShuttingDown)) | Err(_) => {
                        session.close(ctx, CloseCode::Away, "server shutting down")
                    }
                }),
        );
    }

    fn leave(
        &mut self,
        room: RoomName,
        reference: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.rooms.contains_key(&room) {
            return self.send_error(
                ctx,
                ErrorCode::NotJoined,
                &format!("you are not in room {room}"),
                reference.as_deref(),
            );
        }
        if !self.join_rate.try_take() {
            return self.join_rate_limited("leave", &room, reference.as_deref(), ctx);
        }
        self.rooms.remove(&room);
        self.server.do_send(LeaveRoom {
            session: self.id,
            room,
        });
    }

    /// A join or leave past the join/leave budget: refused, nothing changes.
    fn join_rate_limited(
        &self,
        what: &str,
        room: &str,
        reference: Option<&str>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.send_error(
            ctx,
            ErrorCode::RateLimited,
            &format!(
                "more than {} joins and leaves a second (bursts of {}); this {what} of room \
                 {room} was refused and changed nothing",
                self.config.join_rate_limit, self.config.join_rate_burst
            ),
            reference,
        );
    }

    /// Gathers a fragmented message; the size limit applies to the whole.
    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (first, is_text, chunk, last) = match item {
            Item::FirstText(b) => (true, true, b, false),
            Item::FirstBinary(b) => (true, false, b, false),
            Item::Continue(b) => (false, false, b, false),
            Item::Last(b) => (false, false, b, true),
        };
        match (&mut self.fragments, first) {
            (None, true) => {
                self.fragments = Some(Fragments {
                    is_text,
                    data: BytesMut::from(&chunk[..]),
                })
            }
            (Some(fragments), false) => fragments.data.extend_from_slice(&chunk),
            _ => return self.close(ctx, CloseCode::Protocol, "unexpected continuation frame"),
        }
        let size = self.fragments.as_ref().map_or(0, |f| f.data.len());
        if size > self.config.max_frame_bytes {
            return self.close(ctx, CloseCode::Size, "message larger than 64 KiB");
        }
        if last {
            if let Some(Fragments { is_text, data }) = self.fragments.take() {
                self.on_message(is_text, data.freeze(), ctx);
            }
        }
    }

    fn on_message(&mut self, is_text: bool, data: Bytes, ctx: &mut ws::WebsocketContext<Self>) {
        if !is_text {
            return self.send_error(
                ctx,
                ErrorCode::BinaryUnsupported,
                "binary frames are not supported; send JSON in text frames",
                None,
            );
        }
        match std::str::from_utf8(&data) {
            Ok(text) => self.on_text(text, ctx),
            Err(_) => self.close(ctx, CloseCode::Invalid, "text frame is not valid UTF-8"),
        }
    }
}

impl Actor for ChatSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.server.do_send(Connect {
            session: self.id,
            user: self.user.clone(),
            closer: ctx.address().recipient(),
            disconnect: ctx.address().recipient(),
            outbox: Outbox::new(self.outbox.clone(), ctx.address().recipient()),
        });
        let timeout = self.config.client_timeout;
        ctx.run_interval(self.config.heartbeat_interval, move |session, ctx| {
            if session.last_heard.elapsed() > timeout {
                log::info!(
                    "connection {} of {}: no frame for {timeout:?}, dropping it",
                    session.id,
                    session.user
                );
                session.metrics.heartbeat_timeouts.inc();
                // No close frame: it would not be read. The TCP connection
                // ends as the session does.
                session.outbox.abort();
                ctx.stop();
            } else {
                session.send_own(ctx, |ctx| ctx.ping(b""));
            }
        });
        self.arm_expiry(ctx);
        log::debug!("connection {} of {} opened", self.id, self.user);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.server.do_send(Disconnect {
            session: self.id,
            rooms: self.rooms.drain().map(|(room, _)| room).collect(),
        });
        log::debug!("connection {} of {} closed", self.id, self.user);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ChatSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let message = match item {
            Ok(message) => message,
            Err(ws::ProtocolError::Overflow) => {
                return self.close(ctx, CloseCode::Size, "message larger than 64 KiB")
            }
            Err(e) => {
                log::debug!("connection {}: protocol error: {e}", self.id);
                return self.close(ctx, CloseCode::Protocol, "WebSocket protocol error");
            }
        };
        self.last_heard = Instant::now();
        match message {
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(data) => self.on_message(false, data, ctx),
            ws::Message::Continuation(item) => self.on_fragment(item, ctx),
            ws::Message::Ping(payload) => self.send_own(ctx, |ctx| ctx.pong(&payload)),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                // The closing handshake is the client's: once the answer is
                // out the TCP connection ends at once (see `watchdog`).
                self.outbox.peer_closed();
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}

impl Handler<Outgoing> for ChatSession {
    type Result = ();

    fn handle(&mut self, outgoing: Outgoing, ctx: &mut Self::Context) {
        match outgoing {
            // The frames stay counted in the outbox until the connection
            // takes them off the context.
            Outgoing::Frame(frame) => {
                // After an overflow, what is still queued is dropped: the
                // close follows the data already written.
                if self.outbox.is_closed() {
                    self.outbox.dropped(1);
                } else {
                    self.outbox.written(1);
                    ctx.text(frame);
                }
            }
            Outgoing::Frames(frames, receipt) => {
                if self.outbox.is_closed() {
                    self.outbox.dropped(frames.len());
                } else {
                    self.outbox.written(frames.len());
                    // Encoded into the context's buffer back to back: one
                    // socket write for the whole batch.
                    for frame in frames.iter() {
                        ctx.text(frame.clone());
                    }
                }
                // Written (or dropped): the room may count this member.
                drop(receipt);
            }
            Outgoing::Overflowed => self.overflowed(ctx),
            Outgoing::Removed(room, leave) => {
                if let Some(leave) = leave {
                    if self.outbox.is_closed() {
                        self.outbox.dropped(1);
                    } else {
                        self.outbox.written(1);
                        ctx.text(leave);
                    }
                }
                self.rooms.remove(&room);
            }
        }
    }
}

/// The close code of a connection ended by the server API.
const CLOSE_DISCONNECTED: u16 = 4000;

impl Handler<Disconnected> for ChatSession {
    type Result = ();

    fn handle(&mut self, _: Disconnected, ctx: &mut Self::Context) {
        log::info!(
            "connection {} of {}: disconnected through the server API",
            self.id,
            self.user
        );
        self.close(
            ctx,
            CloseCode::Other(CLOSE_DISCONNECTED),
            "disconnected by the server",
        );
    }
}

impl Handler<GoingAway> for ChatSession {
    type Result = ();

    fn handle(&mut self, _: GoingAway, ctx: &mut Self::Context) {
        self.close(ctx, CloseCode::Away, "server shutting down");
    }
}
