//! What the load tester counts, kept free of sockets so it can be tested:
//! the text a sender puts in each chat (who sent it, its sequence number,
//! when), the cheap reading of the server's frames, and the per-receiver
//! bookkeeping that finds lost, duplicated and out-of-order deliveries.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Reads a [`make_text`] text back; `None` for anybody else's text. Read
/// byte by byte: it runs once per delivery.
pub fn parse_text(text: &str) -> Option<Stamp> {
    let rest = text.as_bytes().strip_prefix(b"lt ")?;
    let (sender, rest) = decimal(rest)?;
    let (seq, rest) = decimal(rest)?;
    let (due_us, _) = decimal(rest)?;
    Some(Stamp {
        sender: SenderId::try_from(sender).ok()?,
        seq,
        due_us,
    })
}

/// A decimal `u64` at the front of `bytes`, ended by a space (skipped) or
/// the end of the text: the number and what follows.
fn decimal(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &bytes[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    match bytes.get(digits) {
        None => Some((n, &bytes[digits..])),
        Some(b' ') => Some((n, &bytes[digits + 1..])),
        Some(_) => None,
    }
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
/// fast path (see [`fast_chat`]); anything else goes through serde, so a
/// different but valid encoding still works.
pub fn classify(frame: &str) -> Incoming<'_> {
    if let Some(chat) = fast_chat(frame) {
        return chat;
    }
    classify_with_serde(frame)
}

/// [`classify`] without the fast path: a full parse of the frame.
fn classify_with_serde(frame: &str) -> Incoming<'_> {
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

/// A chat frame as the server encodes it, read with byte scans instead of
/// a JSON parse: `{"type":"chat","id":N,"room":"…","user":"…","text":"…",
/// "timestamp":"…"` and an optional `,"ref":"…"`, then `}`. Each string
/// value ends at the first `"` or `\\`; a backslash (an escape) anywhere,
/// another field order, or any other field (`reply_to`, `key`) answers
/// `None`, and [`classify`] falls back to serde. So the fast path is only
/// ever taken where it gives serde's answer (the tests check that).
fn fast_chat(frame: &str) -> Option<Incoming<'_>> {
    let rest = frame.strip_prefix(r#"{"type":"chat","id":"#)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    // No leading zero (not JSON) and no overflow: serde would refuse both.
    if digits == 0 || (digits > 1 && rest.starts_with('0')) {
        return None;
    }
    let id = rest[..digits].parse().ok()?;
    let mut rest = &rest[digits..];
    let rest = &mut rest;
    string_field(rest, "room")?;
    string_field(rest, "user")?;
    let text = string_field(rest, "text")?;
    string_field(rest, "timestamp")?;
    let reference = if *rest == "}" {
        None
    } else {
        let r = string_field(rest, "ref")?;
        if *rest != "}" {
            return None;
        }
        Some(Cow::Borrowed(r))
    };
    Some(Incoming::Chat {
        id,
        text: Cow::Borrowed(text),
        reference,
    })
}

/// Reads `,"key":"value"` off the front of `rest`: the value, when it has
/// no escape (it ends at the first `"`, and holds no `\\`).
fn string_field<'a>(rest: &mut &'a str, key: &str) -> Option<&'a str> {
    let after = rest
        .strip_prefix(",\"")?
        .strip_prefix(key)?
        .strip_prefix("\":\"")?;
    let end = memchr::memchr2(b'"', b'\\', after.as_bytes())?;
    if after.as_bytes()[end] != b'"' {
        return None;
    }
    // `end` is an ASCII quote, so a char boundary.
    *rest = &after[end + 1..];
    Some(&after[..end])
}

/// What one receiving connection saw, checked as it arrives.
#[derive(Debug, Default, Clone)]
pub struct Receipts {
    /// Per sender, looked up once per delivery (with a hash fit for small
    /// integers: this is on the load tester's hot path).
    senders: HashMap<SenderId, FromSender, BuildHasherDefault<SenderHasher>>,
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

/// What one receiver got from one sender.
#[derive(Debug, Default, Clone, Copy)]
struct FromSender {
    /// The last sequence number delivered in order.
    last_seq: u64,
    /// Deliveries that arrived in order (each counted once).
    in_order: u64,
    /// A fingerprint of the ids its in-order deliveries came with (a sum of
    /// a hash of each (seq, id) pair). Two receivers that got the same
    /// messages of a sender under the same ids have the same one, whatever
    /// node each is on; see [`Receipts::same_ids`].
    ids: u64,
}

/// The hash of a [`SenderId`]: one multiplication (Fibonacci hashing).
/// Sender ids are this run's own small integers, not attacker-chosen keys,
/// so SipHash's protection buys nothing and costs a few percent of the
/// load tester's CPU.
#[derive(Debug, Default, Clone, Copy)]
pub struct SenderHasher(u64);

impl Hasher for SenderHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
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
                let from = self.senders.entry(stamp.sender).or_default();
                if stamp.seq == from.last_seq {
                    Verdict::Duplicate
                } else if stamp.seq < from.last_seq {
                    Verdict::OutOfOrder
                } else {
                    from.last_seq = stamp.seq;
                    from.in_order += 1;
                    from.ids = from.ids.wrapping_add(mix(stamp.seq, id));
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

    /// `sender`'s deliveries that arrived in order (each counted once).
    pub fn in_order(&self, sender: SenderId) -> u64 {
        self.senders.get(&sender).map_or(0, |f| f.in_order)
    }

    /// Whether this receiver got `sender`'s messages under the same ids as
    /// `other` did: `None` when they did not get the same number of them in
    /// order (a loss, counted as such, leaves nothing to compare).
    pub fn same_ids(&self, other: &Receipts, sender: SenderId) -> Option<bool> {
        let count = |r: &Receipts| r.in_order(sender);
        let fingerprint = |r: &Receipts| r.senders.get(&sender).map_or(0, |f| f.ids);
        (count(self) == count(other)).then(|| fingerprint(self) == fingerprint(other))
    }

    /// Deliveries missing at this receiver: for each sender it should hear,
    /// what that sender had acknowledged minus what arrived in order.
    pub fn lost(&self, senders: impl IntoIterator<Item = (SenderId, u64)>) -> u64 {
        senders
            .into_iter()
            .map(|(sender, acked)| acked.saturating_sub(self.in_order(sender)))
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

    /// The first reading of a stamp, with `str::split` and `parse`: the
    /// byte-by-byte one must agree with it.
    fn parse_text_with_split(text: &str) -> Option<Stamp> {
        let mut parts = text.strip_prefix("lt ")?.splitn(4, ' ');
        Some(Stamp {
            sender: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            due_us: parts.next()?.parse().ok()?,
        })
    }

    #[test]
    fn stamps_are_read_as_split_and_parse_read_them() {
        let texts = [
            make_text(stamp(7, 42), 100),
            make_text(stamp(0, 1), 1),
            make_text(
                Stamp {
                    sender: u32::MAX,
                    seq: u64::MAX,
                    due_us: u64::MAX,
                },
                80,
            ),
            "lt 1 2 3".into(),
            "lt 1 2 3 ".into(),
            "lt 1 2 3x".into(),
            "lt 1 2".into(),
            "lt 1  2 3".into(),
            "lt  1 2 3".into(),
            "lt 4294967296 2 3".into(),
            "lt 1 18446744073709551616 3".into(),
            "lt 1 2 ü".into(),
            "lt 1 2 3 ü tail".into(),
            "lt 01 002 3".into(),
            "lt -1 2 3".into(),
            "LT 1 2 3".into(),
            "lt".into(),
            String::new(),
            "hello".into(),
        ];
        for text in &texts {
            assert_eq!(parse_text(text), parse_text_with_split(text), "{text:?}");
        }
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

    /// The fast path must give serde's answer for every chat the server
    /// can encode, whichever of them it takes (and fall back otherwise).
    #[test]
    fn the_fast_path_agrees_with_serde_on_every_kind_of_chat() {
        use chatterbox::protocol::{ChatMessage, ServerFrame};
        let texts = [
            make_text(stamp(3, 4), 64),
            "plain".to_string(),
            String::new(),
            "quote \" inside".to_string(),
            "back\\slash".to_string(),
            "ends with a backslash \\".to_string(),
            "new\nline and tab\t and \u{1} control".to_string(),
            "ünïcødé ✓ 👍 日本語".to_string(),
            "\u{2028} line separator".to_string(),
            "{\"type\":\"chat\",\"id\":1}".to_string(),
            format!("{} \"x\"", make_text(stamp(1, 2), 30)),
        ];
        let names = ["r", "room \"q\"", "rüm", "a\\b"];
        let mut fast_taken = 0;
        for (i, text) in texts.iter().enumerate() {
            for name in names {
                for reference in [None, Some("17"), Some("r\"ef"), Some("ü")] {
                    for reply_to in [None, Some(3)] {
                        let message = ChatMessage {
                            id: 90 + i as i64,
                            room: name.into(),
                            user: name.into(),
                            text: text.clone(),
                            timestamp: "2026-11-25T19:30:24.123Z".into(),
                            reply_to,
                            ..ChatMessage::default()
                        };
                        let frame = ServerFrame::chat(&message, reference).encode();
                        let slow = classify_with_serde(&frame);
                        assert!(matches!(slow, Incoming::Chat { .. }), "{frame}");
                        if let Some(fast) = fast_chat(&frame) {
                            assert_eq!(fast, slow, "{frame}");
                            fast_taken += 1;
                        }
                        assert_eq!(classify(&frame), slow, "{frame}");
                    }
                }
            }
        }
        assert!(fast_taken > 0, "the fast path is taken for plain chats");
        // Another field order, extra or missing fields, numbers serde
        // refuses: never the fast path's to answer.
        for frame in [
            r#"{"id":6,"type":"chat","room":"r","user":"u","text":"hi","timestamp":"t"}"#,
            r#"{"type":"chat","id":6,"user":"u","room":"r","text":"hi","timestamp":"t"}"#,
            r#"{"type":"chat","id":6,"room":"r","user":"u","text":"hi","timestamp":"t","key":"k"}"#,
            r#"{"type":"chat","id":6,"room":"r","user":"u","text":"hi","timestamp":"t","ref":"1","x":2}"#,
            r#"{"type":"chat","id":6,"room":"r","user":"u","text":"hi"}"#,
            r#"{"type":"chat","id":06,"room":"r","user":"u","text":"hi","timestamp":"t"}"#,
            r#"{"type":"chat","id":99999999999999999999,"room":"r","user":"u","text":"hi","timestamp":"t"}"#,
            r#"{"type":"chat","id":-1,"room":"r","user":"u","text":"hi","timestamp":"t"}"#,
            r#"{"type":"chat","id":6,"room":"r","user":"u","text":"hi","timestamp":"t"} "#,
        ] {
            assert_eq!(fast_chat(frame), None, "{frame}");
            assert_eq!(classify(frame), classify_with_serde(frame), "{frame}");
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
        assert_eq!(r.in_order(0), 3);
    }

    #[test]
    fn duplicates_are_found_by_id_and_by_sequence() {
        let mut r = Receipts::default();
        r.record(1, stamp(0, 1));
        assert_eq!(r.record(1, stamp(0, 1)), Verdict::Duplicate);
        // Stored twice: a new id carrying a sequence number already seen.
        assert_eq!(r.record(2, stamp(0, 1)), Verdict::Duplicate);
        assert_eq!(r.duplicated, 2);
        assert_eq!(r.in_order(0), 1);
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
