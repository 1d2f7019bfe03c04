//! The five scenarios as tasks, one per simulated connection (or churn
//! worker). They all follow the run's [`Phase`]: set up (connect, join),
//! send, drain, close.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::accounting::SenderId;
use crate::client::{Event, Member, Outcome, Phase, Shared};

/// What every task needs to know about the run's shape.
pub struct Plan {
    /// Prefix of this run's room and user names, so runs never mix.
    pub run: String,
    /// Rooms (1 for fanout, 0 for connect).
    pub rooms: usize,
    /// Members per room.
    pub members: usize,
    /// Senders per room (fanout: `--senders`; rooms: every member).
    pub senders_per_room: usize,
    /// Chat messages per second per sender.
    pub sender_rate: f64,
    /// Bytes of chat text.
    pub message_size: usize,
    /// Churn: messages per session.
    pub churn_messages: usize,
    /// Connection attempts (TCP + upgrade + join) in flight at once.
    pub handshakes: Arc<Semaphore>,
    /// Every chat carries a `key` (fanout `--keyed`; features always).
    pub keyed: bool,
    /// The features scenario: senders mix every kind of operation.
    pub features: bool,
}

impl Plan {
    pub fn room_name(&self, room: usize) -> String {
        format!("{}-{room}", self.run)
    }

    pub fn user_name(&self, index: usize) -> String {
        format!("{}-{index}", self.run)
    }

    /// Fanout and rooms: the sender id of member `index`, if it sends.
    /// Senders are the first members of each room.
    pub fn sender_of(&self, index: usize) -> Option<SenderId> {
        let within = index % self.members.max(1);
        (self.rooms > 0 && within < self.senders_per_room).then_some(index as SenderId)
    }
}

/// A member of a room for the whole run (fanout, rooms), or an idle
/// connection (connect: `plan.rooms == 0`).
pub async fn member(shared: Arc<Shared>, plan: Arc<Plan>, index: usize) -> Outcome {
    let room_index = if plan.rooms == 0 {
        0
    } else {
        index / plan.members
    };
    let node = shared.node_of(index);
    let failed = Outcome {
        room: room_index,
        node,
        ..Outcome::default()
    };
    let Ok(permit) = plan.handshakes.clone().acquire_owned().await else {
        return failed;
    };
    // Setup is over (timed out): do not open a connection mid-run.
    if shared.phase() != Phase::Setup {
        return failed;
    }
    let user = plan.user_name(index);
    let Some(ws) = shared.connect(&user, node).await else {
        shared.settled();
        return failed;
    };
    let mut m = Member::new(&shared, ws, user, plan.sender_of(index), node);
    m.keyed = plan.keyed;
    if plan.features {
        // The last member keeps every id it receives, for the replay check.
        let witness = index + 1 == plan.rooms * plan.members;
        m.features = Some(Box::new(crate::features::State::new(witness)));
    }
    let room = (plan.rooms > 0).then(|| plan.room_name(room_index));
    if let Some(room) = &room {
        if !m.join(room).await {
            shared.counters.join_failed.fetch_add(1, Ordering::Relaxed);
            shared.settled();
            return m.finish(room_index).await;
        }
    }
    drop(permit);
    if !shared.ready() {
        // Joined after sending started: it would miss earlier messages
        // through no fault of the server. Counted as late, and closed.
        return m.finish(room_index).await;
    }

    let mut phase = shared.phase.clone();
    // Keep reading while the others join: their `join` frames arrive here.
    while *phase.borrow_and_update() < Phase::Sending {
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { break },
            event = m.read_burst() => if event == Event::Gone { return ready(m.finish(room_index).await) },
        }
    }

    let rate = plan.sender_rate;
    let sending = m.sender.is_some() && rate > 0.0 && room.is_some();
    let period = Duration::from_secs_f64((1.0 / rate.max(1e-3)).max(0.001));
    // Spread the senders evenly over one period (golden-ratio phases), so
    // they do not fire together: with phases by position in the room, the
    // senders of 200 rooms fired in 10 bursts of 200.
    let offset = period.mul_f64((index as f64 * 0.618_033_988_749_895).fract());
    let start = Instant::now() + offset;
    // Message `seq` is due at start + (seq - 1) / rate: its latency counts
    // from then, however late it actually goes out.
    let start_us = shared.us_at(start.into_std());
    let due_us = |seq: u64| start_us + ((seq - 1) as f64 / rate * 1e6) as u64;
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase >= Phase::Done {
            break;
        }
        let may_send = sending && now_phase == Phase::Sending;
        tokio::select! {
            // A phase change wins over a due tick: nothing is sent once
            // the run has started draining.
            biased;
            changed = phase.changed() => if changed.is_err() { break },
            _ = tick.tick(), if may_send => {
                // Open loop: send what the rate says is due by now, even if
                // the server is behind, so slowness shows as latency.
                let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                let done = if plan.features { m.feature_ops() } else { m.seq };
                let missing = due.saturating_sub(done).min(10_000);
                for _ in 0..missing {
                    // A long catch-up must not run on into the drain.
                    if shared.phase() != Phase::Sending {
                        break;
                    }
                    if let Some(room) = &room {
                        let sent = if plan.features {
                            let due = due_us(m.feature_ops() + 1);
                            m.send_feature(room, plan.message_size, due).await
                        } else {
                            m.send_chat(room, plan.message_size, due_us(m.seq + 1)).await
                        };
                        if !sent {
                            break;
                        }
                    }
                }
            },
            event = m.read_burst() => if event == Event::Gone { break },
        }
    }
    ready(m.finish(room_index).await)
}

/// The outcome of a member that was ready when sending started.
fn ready(outcome: Outcome) -> Outcome {
    Outcome {
        ready: true,
        ..outcome
    }
}

/// Churn: one worker that, until the run stops, connects, joins a room,
/// sends a few messages and waits for their echoes, leaves, and closes.
pub async fn churner(shared: Arc<Shared>, plan: Arc<Plan>, worker: usize) -> Outcome {
    // A worker keeps to one node, session after session.
    let node = shared.node_of(worker);
    let mut total = Outcome {
        sender: Some(worker as SenderId),
        node,
        ..Outcome::default()
    };
    let mut seq = 0;
    // A small xorshift: which room each session picks.
    let mut rng = (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut first = true;
    let rate = plan.sender_rate.max(1e-3);
    let period = Duration::from_secs_f64(1.0 / rate);
    while shared.phase() <= Phase::Sending {
        if !first && shared.phase() != Phase::Sending {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let room = plan.room_name((rng % plan.rooms.max(1) as u64) as usize);
        let Ok(permit) = plan.handshakes.clone().acquire_owned().await else {
            break;
        };
        let user = plan.user_name(worker);
        let Some(ws) = shared.connect(&user, node).await else {
            if first {
                shared.settled();
                first = false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut m = Member::new(&shared, ws, user, Some(worker as SenderId), node);
        m.seq = seq;
        let joined = m.join(&room).await;
        drop(permit);
        if !joined {
            shared.counters.join_failed.fetch_add(1, Ordering::Relaxed);
        }
        if first {
            if joined {
                total.ready = shared.ready();
            } else {
                shared.settled();
            }
            first = false;
            // All workers start chatting together.
            let mut phase = shared.phase.clone();
            while *phase.borrow_and_update() < Phase::Sending {
                tokio::select! {
                    changed = phase.changed() => if changed.is_err() { break },
                    event = m.read() => if event == Event::Gone { break },
                }
            }
        }
        let completed = joined && !m.gone && session(&shared, &mut m, &room, &plan, period).await;
        seq = m.seq;
        let outcome = m.finish(0).await;
        total.connected = true;
        total.sent += outcome.sent;
        total.acked += outcome.acked;
        total.refused += outcome.refused;
        total.receipts.duplicated += outcome.receipts.duplicated;
        total.receipts.out_of_order += outcome.receipts.out_of_order;
        total.receipts.delivered += outcome.receipts.delivered;
        if completed {
            shared.counters.sessions.fetch_add(1, Ordering::Relaxed);
        }
    }
    total
}

/// One churn session after the join: chat (until `churn_messages` are sent
/// or sending stops), wait for every answer, leave. True when it left the
/// room normally: a completed session.
async fn session(
    shared: &Shared,
    m: &mut Member<'_>,
    room: &str,
    plan: &Plan,
    period: Duration,
) -> bool {
    let answered = |m: &Member<'_>| m.acked + m.refused >= m.sent;
    let mut phase = shared.phase.clone();
    // Message k of the session is due at start + k periods; its latency
    // counts from then, however late it actually goes out.
    let start = Instant::now();
    // One period after the last message too, as the session always paced.
    for k in 0..=plan.churn_messages {
        let due = start + period * k as u32;
        while Instant::now() < due && *phase.borrow_and_update() == Phase::Sending {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {},
                changed = phase.changed() => if changed.is_err() { return false },
                event = m.read() => if event == Event::Gone { return false },
            }
        }
        // --duration is over: send no more, but finish the session.
        if k == plan.churn_messages || *phase.borrow_and_update() != Phase::Sending {
            break;
        }
        if !m
            .send_chat(room, plan.message_size, shared.us_at(due.into_std()))
            .await
        {
            return false;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answered(m) && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {},
            _ = phase.wait_for(|p| *p >= Phase::Done) => return false,
            event = m.read() => if event == Event::Gone { return false },
        }
    }
    if !m
        .send_json(serde_json::json!({"type": "leave", "room": room}))
        .await
    {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            _ = phase.wait_for(|p| *p >= Phase::Done) => return false,
            event = m.read() => match event {
                Event::LeftRoom(r) if r == room => return true,
                Event::Gone => return false,
                _ => {}
            },
        }
    }
}
