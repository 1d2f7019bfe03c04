//! What the load tester counts, kept free of sockets so it can be tested:
//! the text a sender puts in each chat (who sent it, its sequence number,
//! when), the cheap reading of the server's frames, and the per-receiver
//! bookkeeping that finds lost, duplicated and out-of-order deliveries.

use std::borrow::Cow;
use std::collections::HashMap;

use chatterbox::protocol::MessageId;
use serde::Deserialize;

/// Index of a sending connection within one run.
pub type SenderId = u32;

/// What a sender carries in each chat text: `lt <sender> <seq> <due_us> xxx…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: SenderId,
    /// 1, 2, 3… per sender, in the order sent.
    pub seq: u64,
    /// When it was due to be sent (its sender's schedule: `start +
    /// (seq - 1) / rate`), in microseconds since the run's clock started.
    /// Latency is measured from here, not from when the frame was actually
    /// written, so a sender held back by a slow server (catching up late,
    /// blocked on a full socket) shows the delay instead of hiding it.
    pub due_us: u64,
}

/// The chat text for `stamp`, padded with `x` to at least `size` bytes.
pub fn make_text(stamp: Stamp, size: usize) -> String {
    let mut text = format!("lt {} {} {} ", stamp.sender, stamp.seq, stamp.due_us);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Reads a [`make_text`] text back; `None` for anybody else's text.
pub fn parse_text(text: &str) -> Option<Stamp> {
    let mut parts = text.strip_prefix("lt ")?.splitn(4, ' ');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let due_us = parts.next()?.parse().ok()?;
    Some(Stamp {
        sender,
        seq,
        due_us,
    })
}

/// A stored change other than a chat (protocol 1.1): each takes its id
/// from the same sequence as chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    Edit,
    Delete,
    Reaction,
}

/// A server frame, as much of it as the load tester needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Chat {
        id: MessageId,
        text: Cow<'a, str>,
        reference: Option<Cow<'a, str>>,
    },
    /// `edit`, `delete` or `reaction`. `id` 0 is a reaction that changed
    /// nothing, answered to its sender alone.
    Change {
        kind: ChangeKind,
        id: MessageId,
        user: Cow<'a, str>,
        target: MessageId,
        /// The new text of an edit; empty otherwise.
        text: Cow<'a, str>,
        /// A reaction's emoji and state; empty and false otherwise.
        emoji: Cow<'a, str>,
        on: bool,
        reference: Option<Cow<'a, str>>,
    },
    /// Another member is typing (never stored).
    Typing { user: Cow<'a, str> },
    /// This user's read marker in a room; `ref` on the sender's copy.
    Read {
        id: MessageId,
        reference: Option<Cow<'a, str>>,
    },
    Error {
        code: Cow<'a, str>,
        reference: Option<Cow<'a, str>>,
    },
    /// The end of a join: `presence` comes right after `history`.
    Presence { room: Cow<'a, str> },
    Leave {
        room: Cow<'a, str>,
        user: Cow<'a, str>,
    },
    /// `history`, `join`, or a type this tool does not know.
    Other,
    /// Not a JSON object with a string `type`.
    Malformed,
}

#[derive(Deserialize)]
struct AnyFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    id: Option<MessageId>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(rename = "ref", borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    target: Option<MessageId>,
    #[serde(borrow)]
    emoji: Option<Cow<'a, str>>,
    on: Option<bool>,
}

/// Reads one server frame. Chat frames, nearly all of the traffic, take a
/// fast path that relies on the server's field order (`type`, `id`, `room`,
/// `user`, `text`, `timestamp`, `ref`) and on escape-free texts; anything
/// else goes through serde, so a different but valid encoding still works.
pub fn classify(frame: &str) -> Incoming<'_> {
    if let Some(chat) = fast_chat(frame) {
        return chat;
    }
    let Ok(any) = serde_json::from_str::<AnyFrame<'_>>(frame) else {
        return Incoming::Malformed;
    };
    match any.kind.as_ref() {
        "chat" => match (any.id, any.text) {
            (Some(id), Some(text)) => Incoming::Chat {
                id,
                text,
                reference: any.reference,
            },
            _ => Incoming::Malformed,
        },
        "error" => Incoming::Error {
            code: any.code.unwrap_or(Cow::Borrowed("?")),
            reference: any.reference,
        },
        "presence" => Incoming::Presence {
            room: any.room.unwrap_or_default(),
        },
        "leave" => Incoming::Leave {
            room: any.room.unwrap_or_default(),
            user: any.user.unwrap_or_default(),
        },
        kind @ ("edit" | "delete" | "reaction") => {
            let kind = match kind {
                "edit" => ChangeKind::Edit,
                "delete" => ChangeKind::Delete,
                _ => ChangeKind::Reaction,
            };
            let complete = match kind {
                ChangeKind::Edit => any.text.is_some(),
                ChangeKind::Delete => true,
                ChangeKind::Reaction => any.emoji.is_some() && any.on.is_some(),
            };
            match (any.id, any.target, any.user) {
                (Some(id), Some(target), Some(user)) if complete => Incoming::Change {
                    kind,
                    id,
                    user,
                    target,
                    text: any.text.unwrap_or_default(),
                    emoji: any.emoji.unwrap_or_default(),
                    on: any.on.unwrap_or(false),
                    reference: any.reference,
                },
                _ => Incoming::Malformed,
            }
        }
        "typing" => match any.user {
            Some(user) => Incoming::Typing { user },
            None => Incoming::Malformed,
        },
        "read" => match any.id {
            Some(id) => Incoming::Read {
                id,
                reference: any.reference,
            },
            None => Incoming::Malformed,
        },
        _ => Incoming::Other,
    }
}

fn fast_chat(frame: &str) -> Option<Incoming<'_>> {
    let rest = frame.strip_prefix(r#"{"type":"chat","id":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse().ok()?;
    let mut rest = &rest[digits..];
    // Each field is `,"key":"value"`; names and our texts hold no quote or
    // backslash, so the value ends at the next quote (a one-byte search).
    let mut field = |key: &str| -> Option<&str> {
        let after = rest
            .strip_prefix(",\"")?
            .strip_prefix(key)?
            .strip_prefix("\":\"")?;
        let end = after.find('"')?;
        let value = &after[..end];
        if value.ends_with('\\') {
            return None;
        }
        rest = &after[end + 1..];
        Some(value)
    };
    field("room")?;
    field("user")?;
    let text = field("text")?;
    field("timestamp")?;
    let reference = match field("ref") {
        Some(r) => Some(Cow::Borrowed(r)),
        None if rest == "}" => None,
        None => return None,
    };
    if text.contains('\\') || reference.as_deref().is_some_and(|r| r.contains('\\')) {
        return None;
    }
    Some(Incoming::Chat {
        id,
        text: Cow::Borrowed(text),
        reference,
    })
}

/// What one receiving connection saw, checked as it arrives.
#[derive(Debug, Default, Clone)]
pub struct Receipts {
    /// Per sender: the last sequence number delivered in order.
    last_seq: HashMap<SenderId, u64>,
    /// Per sender: deliveries that arrived in order (each counted once).
    pub in_order: HashMap<SenderId, u64>,
    /// Per sender: a fingerprint of the ids its in-order deliveries came
    /// with (a sum of a hash of each (seq, id) pair). Two receivers that got
    /// the same messages of a sender under the same ids have the same one,
    /// whatever node each is on; see [`Receipts::same_ids`].
    ids: HashMap<SenderId, u64>,
    /// Highest chat id seen: ids must rise in broadcast order.
    last_id: Option<MessageId>,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Chat frames from this run's senders, whatever their fate.
    pub delivered: u64,
    /// Per (sender, kind): the last sequence number of that sender's
    /// changes of that kind delivered in order (see [`Receipts::record_change`]).
    change_seq: HashMap<(SenderId, ChangeKind), u64>,
    /// Per (sender, kind): changes delivered in order.
    pub changes_in_order: HashMap<(SenderId, ChangeKind), u64>,
    /// Edit, delete and reaction frames from this run's senders.
    pub changes_delivered: u64,
}

/// How one delivery was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    InOrder,
    Duplicate,
    OutOfOrder,
}

impl Receipts {
    /// Judges one chat delivery with id `id` carrying `stamp`.
    ///
    /// The same id twice is a duplicate and a lower id a reordering (ids rise
    /// in broadcast order). A new id carrying a sender's sequence number that
    /// was already delivered is a duplicate too (stored twice), and a lower
    /// one breaks the sender's order. Gaps are not judged here: a sender's
    /// refused (rate-limited) messages leave gaps; losses are found at the
    /// end by comparing counts with what senders had acknowledged.
    pub fn record(&mut self, id: MessageId, stamp: Stamp) -> Verdict {
        self.delivered += 1;
        let verdict = match self.last_id {
            Some(last) if id == last => Verdict::Duplicate,
            Some(last) if id < last => Verdict::OutOfOrder,
            _ => {
                self.last_id = Some(id);
                let last_seq = self.last_seq.entry(stamp.sender).or_insert(0);
                if stamp.seq == *last_seq {
                    Verdict::Duplicate
                } else if stamp.seq < *last_seq {
                    Verdict::OutOfOrder
                } else {
                    *last_seq = stamp.seq;
                    *self.in_order.entry(stamp.sender).or_insert(0) += 1;
                    let fingerprint = self.ids.entry(stamp.sender).or_insert(0);
                    *fingerprint = fingerprint.wrapping_add(mix(stamp.seq, id));
                    Verdict::InOrder
                }
            }
        };
        match verdict {
            Verdict::Duplicate => self.duplicated += 1,
            Verdict::OutOfOrder => self.out_of_order += 1,
            Verdict::InOrder => {}
        }
        verdict
    }

    /// Judges one delivery of another kind of change (edit, delete,
    /// reaction) with id `id`: the `seq`-th change of that kind its sender
    /// sent. Ids come from the same sequence as chats, so they must rise
    /// across every kind together; per sender and kind, sequence numbers
    /// must rise too (the same one again is a change stored twice).
    pub fn record_change(
        &mut self,
        id: MessageId,
        sender: SenderId,
        kind: ChangeKind,
        seq: u64,
    ) -> Verdict {
        self.changes_delivered += 1;
        let verdict = match self.last_id {
            Some(last) if id == last => Verdict::Duplicate,
            Some(last) if id < last => Verdict::OutOfOrder,
            _ => {
                self.last_id = Some(id);
                let last_seq = self.change_seq.entry((sender, kind)).or_insert(0);
                if seq == *last_seq {
                    Verdict::Duplicate
                } else if seq < *last_seq {
                    Verdict::OutOfOrder
                } else {
                    *last_seq = seq;
                    *self.changes_in_order.entry((sender, kind)).or_insert(0) += 1;
                    Verdict::InOrder
                }
            }
        };
        match verdict {
            Verdict::Duplicate => self.duplicated += 1,
            Verdict::OutOfOrder => self.out_of_order += 1,
            Verdict::InOrder => {}
        }
        verdict
    }

    /// Whether this receiver got `sender`'s messages under the same ids as
    /// `other` did: `None` when they did not get the same number of them in
    /// order (a loss, counted as such, leaves nothing to compare).
    pub fn same_ids(&self, other: &Receipts, sender: SenderId) -> Option<bool> {
        let count = |r: &Receipts| r.in_order.get(&sender).copied().unwrap_or(0);
        let fingerprint = |r: &Receipts| r.ids.get(&sender).copied().unwrap_or(0);
        (count(self) == count(other)).then(|| fingerprint(self) == fingerprint(other))
    }

    /// Deliveries missing at this receiver: for each sender it should hear,
    /// what that sender had acknowledged minus what arrived in order.
    pub fn lost(&self, senders: impl IntoIterator<Item = (SenderId, u64)>) -> u64 {
        senders
            .into_iter()
            .map(|(sender, acked)| {
                acked.saturating_sub(self.in_order.get(&sender).copied().unwrap_or(0))
            })
            .sum()
    }
}

/// A 64-bit hash of one delivery's sequence number and id (splitmix64's
/// finaliser over both): summed per sender, it tells whether two receivers
/// saw the same ids for the same messages, with collisions left to chance
/// (2^-64 per pair).
fn mix(seq: u64, id: MessageId) -> u64 {
    let mut z = seq
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(id as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sender: SenderId, seq: u64) -> Stamp {
        Stamp {
            sender,
            seq,
            due_us: 1000 + seq,
        }
    }

    #[test]
    fn texts_round_trip_and_pad_to_size() {
        let s = stamp(7, 42);
        let text = make_text(s, 100);
        assert_eq!(text.len(), 100);
        assert_eq!(parse_text(&text), Some(s));
        // Shorter than the stamp itself: never truncated.
        assert_eq!(parse_text(&make_text(s, 1)), Some(s));
        assert_eq!(parse_text("hello"), None);
        assert_eq!(parse_text("lt a b c"), None);
    }

    #[test]
    fn the_fast_path_reads_what_the_server_encodes() {
        use chatterbox::protocol::{ChatMessage, ServerFrame};
        let message = ChatMessage {
            id: 91,
            room: "r-1".into(),
            user: "u.2".into(),
            text: make_text(stamp(3, 4), 40),
            timestamp: "2026-11-25T19:30:24.123Z".into(),
            ..ChatMessage::default()
        };
        for reference in [None, Some("17")] {
            let frame = ServerFrame::chat(&message, reference).encode();
            let fast = fast_chat(&frame).expect("the fast path takes server chat frames");
            assert_eq!(
                fast,
                Incoming::Chat {
                    id: 91,
                    text: Cow::Borrowed(message.text.as_str()),
                    reference: reference.map(Cow::Borrowed),
                }
            );
            assert_eq!(classify(&frame), fast);
        }
    }

    #[test]
    fn other_frames_and_escaped_texts_go_through_serde() {
        let escaped = r#"{"type":"chat","id":5,"room":"r","user":"u","text":"a \"q\"","timestamp":"t","ref":"9"}"#;
        assert_eq!(
            classify(escaped),
            Incoming::Chat {
                id: 5,
                text: Cow::Owned("a \"q\"".into()),
                reference: Some(Cow::Borrowed("9")),
            }
        );
        // Another field order is still understood.
        let reordered = r#"{"id":6,"type":"chat","text":"hi","room":"r"}"#;
        assert!(matches!(classify(reordered), Incoming::Chat { id: 6, .. }));
        assert_eq!(
            classify(r#"{"type":"error","code":"rate_limited","message":"m","ref":"3"}"#),
            Incoming::Error {
                code: "rate_limited".into(),
                reference: Some("3".into())
            }
        );
        assert_eq!(
            classify(r#"{"type":"presence","room":"r","users":["a"]}"#),
            Incoming::Presence { room: "r".into() }
        );
        assert_eq!(
            classify(r#"{"type":"history","room":"r","messages":[{"id":1}],"more":false}"#),
            Incoming::Other
        );
        assert_eq!(classify("nope"), Incoming::Malformed);
        assert_eq!(classify(r#"{"type":"chat"}"#), Incoming::Malformed);
    }

    #[test]
    fn the_chat_feature_frames_are_understood_not_malformed() {
        let edit = r#"{"type":"edit","id":12,"room":"r","user":"u","target":3,"text":"new","timestamp":"t","ref":"e1"}"#;
        assert_eq!(
            classify(edit),
            Incoming::Change {
                kind: ChangeKind::Edit,
                id: 12,
                user: "u".into(),
                target: 3,
                text: "new".into(),
                emoji: "".into(),
                on: false,
                reference: Some("e1".into()),
            }
        );
        let delete =
            r#"{"type":"delete","id":13,"room":"r","user":"u","target":3,"timestamp":"t"}"#;
        assert!(matches!(
            classify(delete),
            Incoming::Change {
                kind: ChangeKind::Delete,
                id: 13,
                target: 3,
                reference: None,
                ..
            }
        ));
        let reaction = r#"{"type":"reaction","id":0,"room":"r","user":"u","target":3,"emoji":"👍","on":true,"timestamp":"t","ref":"r2"}"#;
        match classify(reaction) {
            Incoming::Change {
                kind: ChangeKind::Reaction,
                id: 0,
                emoji,
                on: true,
                ..
            } => {
                assert_eq!(emoji, "👍")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(r#"{"type":"typing","room":"r","user":"v"}"#),
            Incoming::Typing { user: "v".into() }
        );
        assert_eq!(
            classify(r#"{"type":"read","room":"r","id":40,"ref":"m1"}"#),
            Incoming::Read {
                id: 40,
                reference: Some("m1".into())
            }
        );
        // History with typed items, last_read and unread: not a change.
        let history = r#"{"type":"history","room":"r","messages":[{"type":"edit","id":5,"target":1}],"more":false,"last_read":4,"unread":1}"#;
        assert_eq!(classify(history), Incoming::Other);
        // A chat that replies: still a chat (through serde).
        let reply = r#"{"type":"chat","id":9,"room":"r","user":"u","text":"hi","timestamp":"t","reply_to":3,"ref":"4"}"#;
        assert!(matches!(classify(reply), Incoming::Chat { id: 9, .. }));
        // Missing what the kind needs: malformed.
        assert_eq!(
            classify(r#"{"type":"edit","id":1,"user":"u","target":2}"#),
            Incoming::Malformed
        );
        assert_eq!(
            classify(r#"{"type":"reaction","id":1,"user":"u","target":2,"emoji":"x"}"#),
            Incoming::Malformed
        );
    }

    #[test]
    fn changes_share_the_id_order_with_chats_and_count_once_per_kind() {
        let mut r = Receipts::default();
        assert_eq!(r.record(1, stamp(0, 1)), Verdict::InOrder);
        assert_eq!(r.record_change(2, 0, ChangeKind::Edit, 1), Verdict::InOrder);
        assert_eq!(
            r.record_change(3, 1, ChangeKind::Reaction, 1),
            Verdict::InOrder
        );
        // The same id again, or a lower one, whatever the kind.
        assert_eq!(
            r.record_change(3, 1, ChangeKind::Reaction, 1),
            Verdict::Duplicate
        );
        assert_eq!(r.record(2, stamp(0, 2)), Verdict::OutOfOrder);
        // Stored twice: a new id for a change already delivered.
        assert_eq!(
            r.record_change(4, 0, ChangeKind::Edit, 1),
            Verdict::Duplicate
        );
        // Per kind, sequence numbers are separate.
        assert_eq!(
            r.record_change(5, 0, ChangeKind::Delete, 1),
            Verdict::InOrder
        );
        assert_eq!((r.duplicated, r.out_of_order), (2, 1));
        assert_eq!(r.changes_in_order[&(0, ChangeKind::Edit)], 1);
        assert_eq!(r.changes_in_order[&(1, ChangeKind::Reaction)], 1);
        assert_eq!(r.delivered, 2, "chats only");
        assert_eq!(r.changes_delivered, 5);
    }

    #[test]
    fn in_order_deliveries_count_once_each() {
        let mut r = Receipts::default();
        assert_eq!(r.record(1, stamp(0, 1)), Verdict::InOrder);
        assert_eq!(r.record(2, stamp(1, 1)), Verdict::InOrder);
        assert_eq!(r.record(3, stamp(0, 2)), Verdict::InOrder);
        // A gap (a refused message) is not judged on arrival.
        assert_eq!(r.record(7, stamp(0, 5)), Verdict::InOrder);
        assert_eq!((r.duplicated, r.out_of_order, r.delivered), (0, 0, 4));
        assert_eq!(r.in_order[&0], 3);
    }

    #[test]
    fn duplicates_are_found_by_id_and_by_sequence() {
        let mut r = Receipts::default();
        r.record(1, stamp(0, 1));
        assert_eq!(r.record(1, stamp(0, 1)), Verdict::Duplicate);
        // Stored twice: a new id carrying a sequence number already seen.
        assert_eq!(r.record(2, stamp(0, 1)), Verdict::Duplicate);
        assert_eq!(r.duplicated, 2);
        assert_eq!(r.in_order[&0], 1);
    }

    #[test]
    fn reorderings_are_found_by_id_and_by_sequence() {
        let mut r = Receipts::default();
        r.record(5, stamp(0, 2));
        // A lower id: broadcast order broken.
        assert_eq!(r.record(4, stamp(1, 1)), Verdict::OutOfOrder);
        // Rising ids, but the sender's own order broken.
        assert_eq!(r.record(6, stamp(0, 1)), Verdict::OutOfOrder);
        assert_eq!(r.out_of_order, 2);
    }

    #[test]
    fn receivers_agree_on_ids_only_when_every_message_came_with_the_same_id() {
        let got = |deliveries: &[(MessageId, SenderId, u64)]| {
            let mut r = Receipts::default();
            for &(id, sender, seq) in deliveries {
                r.record(id, stamp(sender, seq));
            }
            r
        };
        let a = got(&[(10, 0, 1), (11, 1, 1), (12, 0, 2)]);
        // Another node's member: sender 1's message under another id, but
        // sender 0's the same.
        let b = got(&[(10, 0, 1), (12, 0, 2), (13, 1, 1)]);
        assert_eq!(a.same_ids(&b, 0), Some(true));
        assert_eq!(a.same_ids(&b, 1), Some(false));
        // Other ids with the same sum: not mistaken for the same ones.
        let same_sum = got(&[(9, 0, 1), (11, 1, 1), (13, 0, 2)]);
        assert_eq!(a.same_ids(&same_sum, 0), Some(false));
        // One of sender 0's lost: a loss, not an id to compare.
        let short = got(&[(10, 0, 1), (11, 1, 1)]);
        assert_eq!(a.same_ids(&short, 0), None);
        assert_eq!(a.same_ids(&short, 1), Some(true));
        // A sender neither heard from agrees trivially.
        assert_eq!(a.same_ids(&b, 7), Some(true));
    }

    #[test]
    fn losses_compare_acknowledged_with_delivered() {
        let mut r = Receipts::default();
        r.record(1, stamp(0, 1));
        r.record(2, stamp(0, 2));
        r.record(3, stamp(1, 1));
        // Sender 0 had 3 acknowledged, sender 1 had 1, sender 2 had 2 (none here).
        assert_eq!(r.lost([(0, 3), (1, 1), (2, 2)]), 3);
        // More delivered than acknowledged (an ack still in flight) is no loss.
        assert_eq!(r.lost([(0, 1)]), 0);
    }
}
