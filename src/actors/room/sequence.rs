//! Cluster mode: a room's messages put back in their order, with no actix
//! in it.
//!
//! On one node the writer answers in the order the room queued, so stored
//! chats go out as they come back. In a cluster, other nodes store into the
//! same room: their messages reach this node only as a notification (the
//! room's new `last_seq`) and a read. Every message of a room has a `seq`,
//! 1, 2, 3, ... with no gap (see [`crate::history::postgres`]), so the room
//! delivers in `seq` order: a message waits here until every lower `seq`
//! has been delivered, and a gap is read from the database.
//!
//! When to read: a gap below a message already here is another node's
//! (this node's own answers come back in commit order, so none of its own
//! is missing below them), so it is read at once. A notification past
//! everything here may also be about this node's own chats still waiting
//! for their answer, so it is read only once none is in flight; until then
//! the answers themselves reveal any gap.

use std::collections::BTreeMap;

use super::delivery::StoredChat;
use crate::protocol::{ChatMessage, MessageId};

/// Where a room's delivery stands and what waits for a gap to be filled.
#[derive(Default)]
pub struct Sequence {
    /// The `seq` and id of the last message delivered (0 and 0: none).
    delivered: i64,
    delivered_id: MessageId,
    /// Messages that arrived before a lower `seq` was delivered.
    held: BTreeMap<i64, StoredChat>,
    /// Answers without a stored change (an error, a repeated key's
    /// original, an unchanged reaction), each waiting behind the own
    /// changes answered before it, so its sender reads them in order.
    errors: Vec<(i64, StoredChat)>,
    /// The highest `seq` committed that this room knows of.
    known: i64,
    /// The highest `seq` among this node's own answers.
    own: i64,
    /// A read is in flight, taking messages up to this `seq`: past it, a
    /// message may be one of this node's own whose answer has not come
    /// back yet, and the sender's copy (with its `ref`) must be the one
    /// delivered.
    reading: Option<i64>,
    /// Read to the end of the room however far `known` says, once: after
    /// the listener reconnected, notifications may have been missed.
    read_all: bool,
}

/// What the room should read: the messages with an id above `after_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub after_id: MessageId,
}

impl Sequence {
    /// Starts at the newest stored message (`None`: the room is empty).
    pub fn starting_at(last: Option<&ChatMessage>) -> Sequence {
        let (seq, id) = last.map_or((0, 0), |m| (m.seq.unwrap_or(0), m.id));
        Sequence {
            delivered: seq,
            delivered_id: id,
            known: seq,
            own: seq,
            ..Sequence::default()
        }
    }

    /// The `seq` of the last message delivered.
    #[cfg(test)]
    pub fn delivered(&self) -> i64 {
        self.delivered
    }

    /// One of this room's own chats, answered: a stored message waits for
    /// its `seq`, an error behind the messages answered before it.
    pub fn answered(&mut self, chat: StoredChat) {
        match chat.message().and_then(|m| m.seq) {
            Some(seq) => {
                self.own = self.own.max(seq);
                self.known = self.known.max(seq);
                if seq > self.delivered {
                    self.held.insert(seq, chat);
                }
            }
            None => self.errors.push((self.own, chat)),
        }
    }

    /// Another node committed into the room up to `last_seq`.
    pub fn notified(&mut self, last_seq: i64) {
        self.known = self.known.max(last_seq);
    }

    /// The listener reconnected: what was committed meanwhile is unknown.
    pub fn read_to_end(&mut self) {
        self.read_all = true;
    }

    /// The next read to make, if any; `in_flight` is how many of this
    /// room's chats wait for their answer. Marks the read as started.
    pub fn next_read(&mut self, in_flight: usize) -> Option<Read> {
        if self.reading.is_some() {
            return None;
        }
        let gap_below_held = self
            .held
            .keys()
            .next()
            .is_some_and(|&first| first > self.delivered + 1);
        let behind = (self.known > self.delivered || self.read_all) && self.held.is_empty();
        let up_to = if gap_below_held {
            // Everything below this node's newest answer that is not here
            // is another node's.
            self.own
        } else if behind && in_flight == 0 {
            // Nothing of this node's is in flight: what is committed up to
            // now is others'. (After a reconnect, anything; a chat sent
            // while this read runs is the one race left, see docs/CLUSTER.md.)
            if self.read_all {
                i64::MAX
            } else {
                self.known
            }
        } else {
            return None;
        };
        self.reading = Some(up_to);
        Some(Read {
            after_id: self.delivered_id,
        })
    }

    /// A read came back: `messages` in id order, and whether more exist
    /// past them. Messages this room already has (delivered, or its own
    /// answer held) are skipped; the others become chats for everyone.
    pub fn read(&mut self, messages: Vec<ChatMessage>, more: bool) {
        let up_to = self.reading.take().unwrap_or(i64::MAX);
        for message in messages {
            let Some(seq) = message.seq else { continue };
            if seq > up_to {
                break;
            }
            self.known = self.known.max(seq);
            if seq > self.delivered && !self.held.contains_key(&seq) {
                self.held.insert(seq, StoredChat::remote(message));
            }
        }
        if !more {
            self.read_all = false;
        }
    }

    /// A read failed; it is tried again on the next event.
    pub fn read_failed(&mut self) {
        self.reading = None;
    }

    /// Moves every chat whose turn has come to `out`, in order.
    pub fn release(&mut self, out: &mut Vec<StoredChat>) {
        loop {
            while let Some(entry) = self.held.first_entry() {
                if *entry.key() != self.delivered + 1 {
                    break;
                }
                let chat = entry.remove();
                self.delivered += 1;
                if let Some(message) = chat.message() {
                    self.delivered_id = message.id;
                }
                out.push(chat);
            }
            // Errors whose preceding own messages are all out.
            let before = out.len();
            let delivered = self.delivered;
            let mut i = 0;
            while i < self.errors.len() {
                if self.errors[i].0 <= delivered {
                    out.push(self.errors.remove(i).1);
                } else {
                    i += 1;
                }
            }
            if out.len() == before {
                break;
            }
        }
    }

    /// Whether messages the room knows of are still to be delivered (read
    /// or waiting for a gap): a `leave` waits until they are, so a user's
    /// last messages are not shown after they left.
    pub fn is_behind(&self) -> bool {
        self.reading.is_some() || self.known > self.delivered || !self.held.is_empty()
    }

    /// Messages held, errors waiting included: bounded by what this node
    /// has in flight plus one read page.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len() + self.errors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::room::delivery::{InFlight, Sender};
    use crate::actors::SessionId;
    use std::time::Instant;

    fn message(id: MessageId, seq: i64) -> ChatMessage {
        ChatMessage {
            id,
            room: "general".into(),
            user: "alice".into(),
            text: format!("seq {seq}"),
            timestamp: "2026-12-01T00:00:00.000Z".into(),
            seq: Some(seq),
            ..ChatMessage::default()
        }
    }

    fn own(id: MessageId, seq: i64) -> StoredChat {
        let chat = InFlight {
            sender: Sender::Member(SessionId(1)),
            reference: Some(format!("r{seq}")),
            received: Instant::now(),
        };
        StoredChat::answer::<()>(chat, Ok(crate::history::Stored::New(message(id, seq))))
    }

    fn failed() -> StoredChat {
        let chat = InFlight {
            sender: Sender::Member(SessionId(1)),
            reference: None,
            received: Instant::now(),
        };
        StoredChat::answer(chat, Err(()))
    }

    fn released(sequence: &mut Sequence) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        sequence.release(&mut out);
        out.iter()
            .map(|c| c.message().and_then(|m| m.seq))
            .collect()
    }

    #[test]
    fn own_answers_in_order_go_out_at_once_without_a_read() {
        let mut s = Sequence::starting_at(Some(&message(10, 3)));
        s.answered(own(11, 4));
        s.answered(own(12, 5));
        assert_eq!(s.next_read(0), None);
        assert_eq!(released(&mut s), vec![Some(4), Some(5)]);
        assert_eq!(s.delivered(), 5);
    }

    #[test]
    fn a_gap_below_an_own_answer_is_read_first_and_delivered_before_it() {
        let mut s = Sequence::starting_at(Some(&message(10, 3)));
        // Seq 4 was another node's; this node's answer is seq 5.
        s.answered(own(14, 5));
        assert_eq!(released(&mut s), vec![]);
        assert_eq!(s.next_read(3), Some(Read { after_id: 10 }));
        assert_eq!(s.next_read(3), None, "one read at a time");
        // The read finds the other node's message and this one's own.
        s.read(vec![message(12, 4), message(14, 5)], false);
        let out = {
            let mut out = Vec::new();
            s.release(&mut out);
            out
        };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].message().and_then(|m| m.seq), Some(4));
        // The own copy (with its ref) is the one kept for seq 5.
        assert!(out[1].is_own(), "the sender's answer, not the read copy");
    }

    #[test]
    fn a_notification_waits_for_own_chats_in_flight_then_reads() {
        let mut s = Sequence::starting_at(None);
        s.notified(2);
        assert_eq!(s.next_read(1), None, "may be this node's own chat");
        s.answered(own(5, 1));
        assert_eq!(released(&mut s), vec![Some(1)]);
        assert_eq!(s.next_read(0), Some(Read { after_id: 5 }));
        s.read(vec![message(7, 2)], false);
        assert_eq!(released(&mut s), vec![Some(2)]);
        assert_eq!(s.next_read(0), None);
    }

    #[test]
    fn messages_read_twice_or_already_delivered_go_out_once() {
        let mut s = Sequence::starting_at(Some(&message(3, 3)));
        s.notified(5);
        assert!(s.next_read(0).is_some());
        s.read(vec![message(2, 2), message(3, 3), message(4, 4)], true);
        assert_eq!(released(&mut s), vec![Some(4)]);
        assert!(s.next_read(0).is_some(), "more were left to read");
        s.read(vec![message(4, 4), message(9, 5)], false);
        assert_eq!(released(&mut s), vec![Some(5)]);
        assert_eq!(s.next_read(0), None);
    }

    #[test]
    fn an_error_waits_behind_the_own_messages_answered_before_it() {
        let mut s = Sequence::starting_at(None);
        s.answered(own(8, 2)); // seq 1 is another node's, not read yet
        s.answered(failed());
        assert_eq!(released(&mut s), vec![]);
        assert!(s.next_read(1).is_some());
        s.read(vec![message(6, 1)], false);
        assert_eq!(released(&mut s), vec![Some(1), Some(2), None]);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn after_a_reconnect_the_room_reads_to_the_end() {
        let mut s = Sequence::starting_at(Some(&message(3, 1)));
        s.read_to_end();
        assert_eq!(s.next_read(0), Some(Read { after_id: 3 }));
        s.read(vec![], false);
        assert_eq!(s.next_read(0), None, "nothing was missed");
    }

    #[test]
    fn a_read_never_takes_an_own_message_whose_answer_is_still_coming() {
        let mut s = Sequence::starting_at(None);
        s.answered(own(8, 2));
        assert!(s.next_read(1).is_some());
        // Seq 3 is this node's next chat, committed, its answer on the way.
        s.read(vec![message(6, 1), message(8, 2), message(9, 3)], false);
        assert_eq!(released(&mut s), vec![Some(1), Some(2)]);
        s.answered(own(9, 3));
        let mut out = Vec::new();
        s.release(&mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_own(), "the sender gets its copy with its ref");
    }

    #[test]
    fn a_failed_read_is_tried_again() {
        let mut s = Sequence::starting_at(None);
        s.notified(1);
        assert!(s.next_read(0).is_some());
        s.read_failed();
        assert!(s.next_read(0).is_some());
    }
}
