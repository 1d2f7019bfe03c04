//! The `features` scenario (protocol 1.1, issue 12): each sender mixes keyed
//! chats (some replying to others' chats), edits and deletes of its own
//! chats, reactions on and off to others' chats, typing frames and read
//! markers, and deliberately resends some keyed chats.
//!
//! What a receiver cannot read off a frame, and the sender knows, lives in
//! the run's [`Hub`]: the sequence number and due time of every delete and
//! reaction, keyed by what the frame carries (its user, target, emoji and
//! state). Edits carry a [`Stamp`] in their text as chats do. So every
//! change gets the same exactly-once and order checks as chats (see
//! [`Receipts::record_change`]).
//!
//! Races the scenario avoids by construction, so that any `error` is the
//! server's fault: a chat whose sequence number is a multiple of
//! [`DELETE_EVERY`] is the only kind its sender ever deletes, and nobody
//! replies or reacts to such a chat; each (target, emoji) pair of a sender
//! is turned on once and off once, so no reaction is ever a no-op.
//!
//! [`Receipts::record_change`]: crate::accounting::Receipts::record_change

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chatterbox::protocol::MessageId;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accounting::{ChangeKind, SenderId, Stamp};
use crate::client::{histogram, Shared};

/// Emoji the senders react with (each one Unicode scalar value).
pub const EMOJI: [&str; 4] = ["👍", "🎉", "😂", "🔥"];

/// Chat sequence numbers that are multiples of this may be deleted by their
/// sender; nobody replies or reacts to them.
pub const DELETE_EVERY: u64 = 8;

pub fn deletable(seq: u64) -> bool {
    seq % DELETE_EVERY == 0
}

/// One scheduled operation of a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat,
    /// A keyed chat sent again with its key: the original comes back.
    Resend,
    Edit,
    Delete,
    React,
    Typing,
    Read,
}

/// The mix, one cycle of 20 operations: 8 chats (2 of them replies), 1
/// resend, 3 edits, 1 delete, 4 reactions, 2 typing frames, 1 read marker.
/// An operation that is not possible yet (nothing to edit, to react to...)
/// is sent as a chat instead, so the rate holds.
pub const MIX: [Op; 20] = [
    Op::Chat,
    Op::React,
    Op::Edit,
    Op::Chat,
    Op::Typing,
    Op::Chat,
    Op::React,
    Op::Resend,
    Op::Chat,
    Op::Edit,
    Op::Delete,
    Op::Chat,
    Op::React,
    Op::Read,
    Op::Chat,
    Op::Edit,
    Op::Chat,
    Op::Typing,
    Op::React,
    Op::Chat,
];

/// Of each [`MIX`] cycle, the operations that spend the server's chat rate
/// tokens (all but typing and read).
pub const TOKEN_SHARE: f64 = 17.0 / 20.0;

/// Latency histograms, in the report's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    ChatEcho,
    ChatDelivery,
    EditEcho,
    EditDelivery,
    DeleteEcho,
    DeleteDelivery,
    ReactionEcho,
    ReactionDelivery,
    ResendEcho,
    ReadEcho,
}
const SLOTS: usize = 10;

impl Slot {
    pub fn of(kind: ChangeKind, echo: bool) -> Slot {
        match (kind, echo) {
            (ChangeKind::Edit, true) => Slot::EditEcho,
            (ChangeKind::Edit, false) => Slot::EditDelivery,
            (ChangeKind::Delete, true) => Slot::DeleteEcho,
            (ChangeKind::Delete, false) => Slot::DeleteDelivery,
            (ChangeKind::Reaction, true) => Slot::ReactionEcho,
            (ChangeKind::Reaction, false) => Slot::ReactionDelivery,
        }
    }
}

/// What identifies a delete or a reaction on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ChangeKey {
    Delete {
        sender: SenderId,
        target: MessageId,
    },
    Reaction {
        sender: SenderId,
        target: MessageId,
        emoji: String,
        on: bool,
    },
}

/// What the connections of a features run share.
pub struct Hub {
    /// The run's user name prefix: `{run}-{index}` is sender `index`.
    run: String,
    /// Per delete and reaction sent: (its sequence number among its
    /// sender's changes of that kind, when it was due in µs). Written by
    /// the sender before the frame goes out, so a receiver always finds it.
    registry: Mutex<HashMap<ChangeKey, (u64, u64)>>,
    latency: Mutex<Vec<Histogram<u64>>>,
    /// Typing frames received by any member.
    pub typing_forwarded: AtomicU64,
}

impl Hub {
    pub fn new(run: &str) -> Hub {
        Hub {
            run: run.to_string(),
            registry: Mutex::new(HashMap::new()),
            latency: Mutex::new((0..SLOTS).map(|_| histogram()).collect()),
            typing_forwarded: AtomicU64::new(0),
        }
    }

    /// The sender index of one of this run's user names.
    pub fn sender_of_user(&self, user: &str) -> Option<SenderId> {
        user.strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    fn register(&self, key: ChangeKey, seq: u64, due_us: u64) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (seq, due_us));
    }

    /// A delete's or reaction's (sequence number, due time), if this run
    /// sent it.
    fn lookup(&self, key: &ChangeKey) -> Option<(u64, u64)> {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// (sender, its sequence number, due time) of a delete or reaction frame.
    #[allow(clippy::too_many_arguments)]
    pub fn identify(
        &self,
        kind: ChangeKind,
        user: &str,
        target: MessageId,
        emoji: &str,
        on: bool,
    ) -> Option<(SenderId, u64, u64)> {
        let sender = self.sender_of_user(user)?;
        let key = match kind {
            ChangeKind::Delete => ChangeKey::Delete { sender, target },
            ChangeKind::Reaction => ChangeKey::Reaction {
                sender,
                target,
                emoji: emoji.to_string(),
                on,
            },
            ChangeKind::Edit => return None,
        };
        let (seq, due) = self.lookup(&key)?;
        Some((sender, seq, due))
    }

    fn flush(&self, samples: &mut Vec<(Slot, u64)>) {
        let mut histograms = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, us) in samples.drain(..) {
            let _ = histograms[slot as usize].record(us.max(1));
        }
    }

    pub fn latency(&self, slot: Slot) -> crate::report::Latency {
        let histograms = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        crate::report::Latency::from_micros(&histograms[slot as usize])
    }
}

/// Sent, answered and refused operations of one kind, by one sender.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
}

/// What one connection of a features run did besides chatting (chats are
/// in the [`Outcome`](crate::client::Outcome)'s own counts).
#[derive(Debug, Default, Clone)]
pub struct FeatureOutcome {
    pub edits: Tally,
    pub deletes: Tally,
    pub reactions: Tally,
    pub resends: Tally,
    /// Resends answered with the original chat's id.
    pub resends_original: u64,
    /// Resends answered with another id: the server stored the chat again.
    pub resends_new_id: u64,
    pub reads: Tally,
    /// Read acknowledgements below the id sent: the marker moved back.
    pub reads_moved_back: u64,
    pub typing_sent: u64,
    /// Typing frames this member received, by sender.
    pub typing_from: BTreeMap<SenderId, u64>,
    /// Typing frames naming this member's own user (must be none).
    pub typing_from_self: u64,
    /// Reactions answered with `id: 0` (nothing changed): the scenario
    /// never sends one, so the server's state disagrees with its sender's.
    pub reaction_noops: u64,
    /// Changes from this run's users that no sender registered.
    pub unknown_changes: u64,
    /// Every change id this member received, in order (the witness only).
    pub witness_ids: Option<Vec<MessageId>>,
}

impl FeatureOutcome {
    pub fn tally(&self, kind: ChangeKind) -> Tally {
        match kind {
            ChangeKind::Edit => self.edits,
            ChangeKind::Delete => self.deletes,
            ChangeKind::Reaction => self.reactions,
        }
    }

    fn tally_mut(&mut self, kind: ChangeKind) -> &mut Tally {
        match kind {
            ChangeKind::Edit => &mut self.edits,
            ChangeKind::Delete => &mut self.deletes,
            ChangeKind::Reaction => &mut self.reactions,
        }
    }
}

/// A request waiting for its answer, by `ref`.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Chat { reply_to: Option<MessageId> },
    Change { kind: ChangeKind },
    Resend { original: MessageId, due_us: u64 },
    Read { id: MessageId, due_us: u64 },
}

/// One of the sender's own chats, once echoed.
#[derive(Debug, Clone, Copy)]
struct OwnChat {
    id: MessageId,
    seq: u64,
    due_us: u64,
    reply_to: Option<MessageId>,
    resent: bool,
}

/// How many of its own chats a sender remembers to edit or resend.
const OWN_KEPT: usize = 256;
/// How many of others' chats it remembers to react and reply to.
const TARGETS_KEPT: usize = 64;

/// A frame for the sender to write, with what it means for the counts.
pub enum Planned {
    /// Send an ordinary keyed chat (the caller stamps it), replying to
    /// `reply_to` if given.
    Chat { reply_to: Option<MessageId> },
    /// Send `frame`, which expects an answer.
    Request(serde_json::Value),
    /// Send `frame`, which expects none (typing).
    Quiet(serde_json::Value),
}

/// One member's features state: what it may act on, and what it waits for.
pub struct State {
    /// Operations scheduled so far: the open loop's count.
    pub ops: u64,
    next_ref: u64,
    pending: HashMap<String, Pending>,
    /// Own chats echoed and not deleted, oldest first.
    own: VecDeque<OwnChat>,
    /// Others' chats nobody will delete, oldest first.
    targets: VecDeque<MessageId>,
    /// (target, emoji index) this sender has turned on and not yet off.
    reactions_on: VecDeque<(MessageId, usize)>,
    /// Every (target, emoji index) ever turned on: never reused.
    reacted: HashSet<(MessageId, usize)>,
    edit_seq: u64,
    delete_seq: u64,
    reaction_seq: u64,
    react_turns: u64,
    /// The highest change id seen: what a read marker may name.
    last_id: MessageId,
    latencies: Vec<(Slot, u64)>,
    pub outcome: FeatureOutcome,
}

impl State {
    pub fn new(witness: bool) -> State {
        State {
            ops: 0,
            next_ref: 0,
            pending: HashMap::new(),
            own: VecDeque::new(),
            targets: VecDeque::new(),
            reactions_on: VecDeque::new(),
            reacted: HashSet::new(),
            edit_seq: 0,
            delete_seq: 0,
            reaction_seq: 0,
            react_turns: 0,
            last_id: 0,
            latencies: Vec::with_capacity(256),
            outcome: FeatureOutcome {
                witness_ids: witness.then(Vec::new),
                ..FeatureOutcome::default()
            },
        }
    }

    fn reference(&mut self, letter: char) -> String {
        self.next_ref += 1;
        format!("{letter}{}", self.next_ref)
    }

    /// Picks and builds the next operation; `sender`'s frames go to
    /// `room`. Chats are built by the caller (they carry the stamp and the
    /// sequence number); the others here.
    pub fn plan(
        &mut self,
        hub: &Hub,
        sender: SenderId,
        room: &str,
        size: usize,
        chat_seq: u64,
        due_us: u64,
    ) -> Planned {
        let op = MIX[(self.ops % MIX.len() as u64) as usize];
        self.ops += 1;
        let planned = match op {
            Op::Chat => None,
            Op::Resend => self.resend(room, sender, size, due_us),
            Op::Edit => self.edit(room, sender, size, due_us),
            Op::Delete => self.delete(hub, room, sender, due_us),
            Op::React => self.react(hub, room, sender, due_us),
            Op::Typing => {
                self.outcome.typing_sent += 1;
                Some(Planned::Quiet(
                    serde_json::json!({"type": "typing", "room": room}),
                ))
            }
            Op::Read => self.read(room, due_us),
        };
        planned.unwrap_or_else(|| {
            // Every fourth chat replies to someone else's (or its own).
            let next = chat_seq + 1;
            let reply_to = (next % 4 == 1)
                .then(|| {
                    self.targets.back().copied().or_else(|| {
                        self.own
                            .iter()
                            .rev()
                            .find(|c| !deletable(c.seq))
                            .map(|c| c.id)
                    })
                })
                .flatten();
            self.pending
                .insert(next.to_string(), Pending::Chat { reply_to });
            Planned::Chat { reply_to }
        })
    }

    fn resend(&mut self, room: &str, sender: SenderId, size: usize, _due: u64) -> Option<Planned> {
        let chat = self
            .own
            .iter_mut()
            .rev()
            .find(|c| !c.resent && !deletable(c.seq))?;
        chat.resent = true;
        let chat = *chat;
        let reference = self.reference('k');
        // The same frame as the first time: same text, key and reply.
        let text = crate::accounting::make_text(
            Stamp {
                sender,
                seq: chat.seq,
                due_us: chat.due_us,
            },
            size,
        );
        let mut frame = serde_json::json!({
            "type": "chat", "room": room, "text": text,
            "key": chat_key(chat.seq), "ref": reference,
        });
        if let Some(reply_to) = chat.reply_to {
            frame["reply_to"] = reply_to.into();
        }
        self.pending.insert(
            reference,
            Pending::Resend {
                original: chat.id,
                // A resend's latency counts from when it was sent.
                due_us: _due,
            },
        );
        self.outcome.resends.sent += 1;
        Some(Planned::Request(frame))
    }

    fn edit(&mut self, room: &str, sender: SenderId, size: usize, due_us: u64) -> Option<Planned> {
        if self.own.is_empty() {
            return None;
        }
        // Round the last few own chats.
        let back = (self.edit_seq as usize) % self.own.len().min(8);
        let target = self.own[self.own.len() - 1 - back].id;
        self.edit_seq += 1;
        let text = crate::accounting::make_text(
            Stamp {
                sender,
                seq: self.edit_seq,
                due_us,
            },
            size,
        );
        let reference = self.reference('e');
        let frame = serde_json::json!({
            "type": "edit", "room": room, "target": target, "text": text, "ref": reference,
        });
        self.pending.insert(
            reference,
            Pending::Change {
                kind: ChangeKind::Edit,
            },
        );
        self.outcome.edits.sent += 1;
        Some(Planned::Request(frame))
    }

    fn delete(&mut self, hub: &Hub, room: &str, sender: SenderId, due_us: u64) -> Option<Planned> {
        let at = self.own.iter().position(|c| deletable(c.seq))?;
        let chat = self.own.remove(at)?;
        self.delete_seq += 1;
        hub.register(
            ChangeKey::Delete {
                sender,
                target: chat.id,
            },
            self.delete_seq,
            due_us,
        );
        let reference = self.reference('d');
        let frame = serde_json::json!({
            "type": "delete", "room": room, "target": chat.id, "ref": reference,
        });
        self.pending.insert(
            reference,
            Pending::Change {
                kind: ChangeKind::Delete,
            },
        );
        self.outcome.deletes.sent += 1;
        Some(Planned::Request(frame))
    }

    fn react(&mut self, hub: &Hub, room: &str, sender: SenderId, due_us: u64) -> Option<Planned> {
        self.react_turns += 1;
        // Every other turn takes the oldest reaction off again.
        let (target, emoji, on) = if self.react_turns % 2 == 0 && !self.reactions_on.is_empty() {
            let (target, emoji) = self.reactions_on.pop_front()?;
            (target, emoji, false)
        } else {
            let (target, emoji) = self.targets.iter().rev().find_map(|&target| {
                (0..EMOJI.len())
                    .find(|&e| !self.reacted.contains(&(target, e)))
                    .map(|e| (target, e))
            })?;
            self.reacted.insert((target, emoji));
            self.reactions_on.push_back((target, emoji));
            (target, emoji, true)
        };
        self.reaction_seq += 1;
        hub.register(
            ChangeKey::Reaction {
                sender,
                target,
                emoji: EMOJI[emoji].to_string(),
                on,
            },
            self.reaction_seq,
            due_us,
        );
        let reference = self.reference('r');
        let frame = serde_json::json!({
            "type": "react", "room": room, "target": target,
            "emoji": EMOJI[emoji], "on": on, "ref": reference,
        });
        self.pending.insert(
            reference,
            Pending::Change {
                kind: ChangeKind::Reaction,
            },
        );
        self.outcome.reactions.sent += 1;
        Some(Planned::Request(frame))
    }

    fn read(&mut self, room: &str, due_us: u64) -> Option<Planned> {
        if self.last_id == 0 {
            return None;
        }
        let reference = self.reference('m');
        let frame = serde_json::json!({
            "type": "read", "room": room, "id": self.last_id, "ref": reference,
        });
        self.pending.insert(
            reference,
            Pending::Read {
                id: self.last_id,
                due_us,
            },
        );
        self.outcome.reads.sent += 1;
        Some(Planned::Request(frame))
    }

    fn latency(&mut self, hub: &Hub, slot: Slot, now_us: u64, due_us: u64) {
        self.latencies.push((slot, now_us.saturating_sub(due_us)));
        if self.latencies.len() >= 256 {
            hub.flush(&mut self.latencies);
        }
    }

    pub fn flush(&mut self, hub: &Hub) {
        hub.flush(&mut self.latencies);
    }

    /// A chat echo with `reference`: true when it answers a resend (then it
    /// is judged here, and is no delivery).
    pub fn on_resend_answer(
        &mut self,
        hub: &Hub,
        reference: &str,
        id: MessageId,
        now_us: u64,
    ) -> bool {
        let Some(&Pending::Resend { original, due_us }) = self.pending.get(reference) else {
            return false;
        };
        self.pending.remove(reference);
        self.outcome.resends.acked += 1;
        if id == original {
            self.outcome.resends_original += 1;
        } else {
            self.outcome.resends_new_id += 1;
        }
        self.latency(hub, Slot::ResendEcho, now_us, due_us);
        true
    }

    /// A chat from this run (after the receipts judged it).
    #[allow(clippy::too_many_arguments)]
    pub fn on_chat(
        &mut self,
        hub: &Hub,
        id: MessageId,
        stamp: Stamp,
        own_echo: Option<&str>,
        now_us: u64,
    ) {
        self.last_id = self.last_id.max(id);
        if let Some(ids) = &mut self.outcome.witness_ids {
            ids.push(id);
        }
        match own_echo {
            Some(reference) => {
                let reply_to = match self.pending.remove(reference) {
                    Some(Pending::Chat { reply_to }) => reply_to,
                    _ => None,
                };
                self.own.push_back(OwnChat {
                    id,
                    seq: stamp.seq,
                    due_us: stamp.due_us,
                    reply_to,
                    resent: false,
                });
                if self.own.len() > OWN_KEPT {
                    // Keep the deletable ones: each is deleted once.
                    if let Some(at) = self.own.iter().position(|c| !deletable(c.seq)) {
                        self.own.remove(at);
                    }
                }
                self.latency(hub, Slot::ChatEcho, now_us, stamp.due_us);
            }
            None => {
                if !deletable(stamp.seq) {
                    self.targets.push_back(id);
                    if self.targets.len() > TARGETS_KEPT {
                        self.targets.pop_front();
                    }
                }
                self.latency(hub, Slot::ChatDelivery, now_us, stamp.due_us);
            }
        }
    }

    /// A chat refused with `error` (its `ref` is its sequence number).
    pub fn on_chat_refused(&mut self, reference: &str) {
        self.pending.remove(reference);
    }

    /// An edit, delete or reaction with `id > 0` from this run, already
    /// identified and judged: `own_echo` when it answers this member's
    /// request with that `ref`. True when it was such an answer.
    #[allow(clippy::too_many_arguments)]
    pub fn on_change(
        &mut self,
        hub: &Hub,
        kind: ChangeKind,
        id: MessageId,
        own_echo: Option<&str>,
        due_us: u64,
        now_us: u64,
    ) -> bool {
        self.last_id = self.last_id.max(id);
        if let Some(ids) = &mut self.outcome.witness_ids {
            ids.push(id);
        }
        let answered = own_echo.is_some_and(|r| {
            matches!(self.pending.remove(r), Some(Pending::Change { kind: k, .. }) if k == kind)
        });
        if answered {
            self.outcome.tally_mut(kind).acked += 1;
        }
        self.latency(hub, Slot::of(kind, answered), now_us, due_us);
        answered
    }

    /// A `reaction` with `id: 0`: true when it answers one of this
    /// member's requests.
    pub fn on_reaction_noop(&mut self, reference: Option<&str>) -> bool {
        let answered = reference.is_some_and(|r| self.pending.remove(r).is_some());
        if answered {
            // Answered, but no change: not among the acknowledged ones
            // every member should receive.
            self.outcome.reaction_noops += 1;
        }
        answered
    }

    /// A `read` frame: true when it answers one of this member's requests.
    pub fn on_read(
        &mut self,
        hub: &Hub,
        id: MessageId,
        reference: Option<&str>,
        now_us: u64,
    ) -> bool {
        let Some(reference) = reference else {
            return false;
        };
        let Some(Pending::Read { id: sent, due_us }) = self.pending.remove(reference) else {
            return false;
        };
        self.outcome.reads.acked += 1;
        if id < sent {
            self.outcome.reads_moved_back += 1;
        }
        self.latency(hub, Slot::ReadEcho, now_us, due_us);
        true
    }

    pub fn on_typing(&mut self, sender: Option<SenderId>, from_self: bool) {
        if from_self {
            self.outcome.typing_from_self += 1;
        }
        if let Some(sender) = sender {
            *self.outcome.typing_from.entry(sender).or_insert(0) += 1;
        }
    }

    /// An `error` naming `reference`: true when it refused one of this
    /// member's non-chat requests.
    pub fn on_error(&mut self, reference: &str) -> bool {
        let Some(pending) = self.pending.remove(reference) else {
            return false;
        };
        match pending {
            Pending::Chat { .. } => return false,
            Pending::Change { kind, .. } => self.outcome.tally_mut(kind).refused += 1,
            Pending::Resend { .. } => self.outcome.resends.refused += 1,
            Pending::Read { .. } => self.outcome.reads.refused += 1,
        }
        true
    }
}

/// The idempotency key of a sender's chat `seq` (unique per user and room).
pub fn chat_key(seq: u64) -> String {
    format!("k{seq}")
}

/// What a `since` replay of the room, read at the end of the run, held.
#[derive(Debug, Default, Serialize)]
pub struct Replay {
    /// Joins made (each one page of history).
    pub pages: u64,
    pub items: u64,
    /// The last page said `more: false`.
    pub complete: bool,
    pub by_type: BTreeMap<String, u64>,
    /// Items of type `typing` (never stored: must be none).
    pub typing_items: u64,
    /// Items carrying a `ref` (never stored: must be none).
    pub ref_items: u64,
    /// Items whose id was not above the one before.
    pub not_rising: u64,
    /// Whether the ids replayed are those the witness (a member that was in
    /// the room all along) received live, over the replayed range.
    pub matches_live: Option<bool>,
    /// The first difference, when they do not match.
    pub difference: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub ids: Vec<MessageId>,
}

/// How long one replay page (join, history, leave) may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Reads every change of `room` with `since`, page after page (at most
/// `max_pages` joins, which the server's join budget also bounds), as a
/// new user on node 0.
pub async fn replay(shared: &Shared, user: &str, room: &str, max_pages: u64) -> Replay {
    let mut replay = Replay::default();
    let mut ws = match shared.try_connect(user, 0).await {
        Ok(ws) => ws,
        Err(e) => {
            replay.error = Some(format!("cannot connect: {e}"));
            return replay;
        }
    };
    let mut since: MessageId = 0;
    while replay.pages < max_pages {
        let join = serde_json::json!({"type": "join", "room": room, "since": since});
        let page = tokio::time::timeout(PAGE_TIMEOUT, async {
            ws.send_text(&join.to_string())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let mut more = None;
            loop {
                let frame = ws.next_string().await.map_err(|e| format!("read: {e}"))?;
                let value: serde_json::Value =
                    serde_json::from_str(&frame).map_err(|e| format!("bad frame: {e}"))?;
                match value["type"].as_str() {
                    Some("history") => {
                        more = Some(value["more"].as_bool().unwrap_or(false));
                        for item in value["messages"].as_array().into_iter().flatten() {
                            replay.items += 1;
                            let kind = item["type"].as_str().unwrap_or("(none)").to_string();
                            if kind == "typing" {
                                replay.typing_items += 1;
                            }
                            if item.get("ref").is_some() {
                                replay.ref_items += 1;
                            }
                            *replay.by_type.entry(kind).or_insert(0) += 1;
                            let id = item["id"].as_i64().unwrap_or(0);
                            if replay.ids.last().is_some_and(|&last| id <= last) {
                                replay.not_rising += 1;
                            }
                            replay.ids.push(id);
                            since = since.max(id);
                        }
                    }
                    Some("presence") => break,
                    Some("error") => {
                        return Err(format!(
                            "join answered with error {}",
                            value["code"].as_str().unwrap_or("?")
                        ))
                    }
                    _ => {}
                }
            }
            ws.send_text(&serde_json::json!({"type": "leave", "room": room}).to_string())
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                let text = ws.next_string().await.map_err(|e| format!("read: {e}"))?;
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
                if value["type"] == "leave" && value["user"] == user {
                    break;
                }
                if value["type"] == "error" {
                    return Err(format!(
                        "leave answered with error {}",
                        value["code"].as_str().unwrap_or("?")
                    ));
                }
            }
            Ok(more.unwrap_or(false))
        })
        .await;
        replay.pages += 1;
        match page {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                replay.complete = true;
                break;
            }
            Ok(Err(e)) => {
                replay.error = Some(e);
                break;
            }
            Err(_) => {
                replay.error = Some(format!("a page took more than {PAGE_TIMEOUT:?}"));
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(1000, "replay done")).await;
    replay
}

impl Replay {
    /// Compares the replayed ids with what the witness received live, over
    /// the range the replay covered (all of it when complete).
    pub fn compare(&mut self, live: &[MessageId]) {
        let Some(&last) = self.ids.last() else {
            self.matches_live = Some(live.is_empty());
            if !live.is_empty() {
                self.difference = Some(format!("nothing replayed; {} live", live.len()));
            }
            return;
        };
        let live: Vec<MessageId> = if self.complete {
            live.to_vec()
        } else {
            live.iter().copied().filter(|&id| id <= last).collect()
        };
        let first_difference = self
            .ids
            .iter()
            .zip(&live)
            .position(|(a, b)| a != b)
            .or_else(|| (self.ids.len() != live.len()).then(|| self.ids.len().min(live.len())));
        self.matches_live = Some(first_difference.is_none());
        self.difference = first_difference.map(|at| {
            format!(
                "at item {at}: replayed {:?}, received live {:?} ({} replayed, {} live)",
                self.ids.get(at),
                live.get(at),
                self.ids.len(),
                live.len()
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_the_documented_share_of_each_operation() {
        let count = |op| MIX.iter().filter(|&&o| o == op).count();
        assert_eq!(
            [
                count(Op::Chat),
                count(Op::Resend),
                count(Op::Edit),
                count(Op::Delete),
                count(Op::React),
                count(Op::Typing),
                count(Op::Read)
            ],
            [8, 1, 3, 1, 4, 2, 1]
        );
        let spending = MIX
            .iter()
            .filter(|o| !matches!(o, Op::Typing | Op::Read))
            .count();
        assert_eq!(spending as f64 / MIX.len() as f64, TOKEN_SHARE);
    }

    #[test]
    fn a_sender_with_nothing_to_act_on_sends_chats() {
        let hub = Hub::new("lt1");
        let mut s = State::new(false);
        let mut chats = 0;
        for _ in 0..MIX.len() {
            match s.plan(&hub, 0, "r", 40, chats, 1) {
                Planned::Chat { reply_to } => {
                    assert_eq!(reply_to, None);
                    chats += 1;
                }
                Planned::Quiet(frame) => assert_eq!(frame["type"], "typing"),
                Planned::Request(frame) => panic!("nothing to act on, yet {frame}"),
            }
        }
        assert_eq!(chats, 18);
    }

    #[test]
    fn reactions_go_on_then_off_and_are_never_a_no_op() {
        let hub = Hub::new("lt1");
        let mut s = State::new(false);
        // Someone else's chats 10 and 11 (seq 1 and 2: not deletable).
        for (id, seq) in [(10, 1), (11, 2)] {
            let stamp = Stamp {
                sender: 5,
                seq,
                due_us: 0,
            };
            s.on_chat(&hub, id, stamp, None, 0);
        }
        let mut seen = Vec::new();
        for _ in 0..8 {
            if let Some(Planned::Request(f)) = s.react(&hub, "r", 0, 1) {
                seen.push((
                    f["target"].as_i64().unwrap(),
                    f["emoji"].to_string(),
                    f["on"] == true,
                ));
            }
        }
        // on, off, on, off...: each (target, emoji) once on and once off.
        let ons: HashSet<_> = seen
            .iter()
            .filter(|s| s.2)
            .map(|s| (s.0, s.1.clone()))
            .collect();
        let offs: Vec<_> = seen
            .iter()
            .filter(|s| !s.2)
            .map(|s| (s.0, s.1.clone()))
            .collect();
        assert_eq!(ons.len(), seen.iter().filter(|s| s.2).count());
        assert!(offs.iter().all(|o| ons.contains(o)));
        assert!(!offs.is_empty());
        let (seq, _) = hub
            .lookup(&ChangeKey::Reaction {
                sender: 0,
                target: seen[0].0,
                emoji: serde_json::from_str(&seen[0].1).unwrap(),
                on: true,
            })
            .expect("registered before it is sent");
        assert_eq!(seq, 1);
    }

    #[test]
    fn only_deletable_chats_are_deleted_and_never_reacted_to() {
        let hub = Hub::new("lt1");
        let mut s = State::new(false);
        let own = |seq| Stamp {
            sender: 0,
            seq,
            due_us: 0,
        };
        s.on_chat(&hub, 1, own(7), Some("7"), 0);
        assert!(s.delete(&hub, "r", 0, 1).is_none());
        s.on_chat(&hub, 2, own(8), Some("8"), 0);
        let Some(Planned::Request(frame)) = s.delete(&hub, "r", 0, 1) else {
            panic!("chat 8 is deletable");
        };
        assert_eq!(frame["target"], 2);
        assert!(s.delete(&hub, "r", 0, 1).is_none(), "deleted once");
        assert_eq!(
            hub.identify(ChangeKind::Delete, "lt1-0", 2, "", false),
            Some((0, 1, 1))
        );
        // Someone else's deletable chat is no target.
        let other = Stamp {
            sender: 3,
            seq: 16,
            due_us: 0,
        };
        s.on_chat(&hub, 3, other, None, 0);
        assert!(s.react(&hub, "r", 0, 1).is_none());
    }

    #[test]
    fn a_resend_carries_the_original_text_and_key_and_expects_its_id() {
        let hub = Hub::new("lt1");
        let mut s = State::new(false);
        let stamp = Stamp {
            sender: 0,
            seq: 3,
            due_us: 77,
        };
        s.pending
            .insert("3".into(), Pending::Chat { reply_to: Some(9) });
        s.on_chat(&hub, 40, stamp, Some("3"), 100);
        let Some(Planned::Request(frame)) = s.resend("r", 0, 30, 500) else {
            panic!("chat 3 can be resent");
        };
        assert_eq!(frame["key"], "k3");
        assert_eq!(frame["reply_to"], 9);
        assert_eq!(frame["text"], crate::accounting::make_text(stamp, 30));
        assert!(s.resend("r", 0, 30, 500).is_none(), "each chat resent once");
        let reference = frame["ref"].as_str().unwrap().to_string();
        assert!(s.on_resend_answer(&hub, &reference, 40, 600));
        assert_eq!(s.outcome.resends_original, 1);
        // A second answer to the same ref is not a resend answer.
        assert!(!s.on_resend_answer(&hub, &reference, 41, 600));
    }

    #[test]
    fn a_replay_matches_the_live_ids_over_the_range_it_covered() {
        let mut r = Replay {
            ids: vec![3, 4, 6],
            complete: true,
            ..Replay::default()
        };
        r.compare(&[3, 4, 6, 7]);
        assert_eq!(r.matches_live, Some(false), "complete, yet 7 missing");
        r.complete = false;
        r.compare(&[3, 4, 6, 7]);
        assert_eq!(
            r.matches_live,
            Some(true),
            "a partial replay covers up to 6"
        );
        r.compare(&[3, 5, 6]);
        assert_eq!(r.matches_live, Some(false));
        assert!(r.difference.as_deref().unwrap().starts_with("at item 1"));
    }
}
