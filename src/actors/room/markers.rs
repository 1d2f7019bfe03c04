//! The room's read markers, with no actix in it: per user with a
//! connection here, the marker last stored and the one write in flight.
//!
//! Every `read` that moves a marker forward costs a durable write, so the
//! room writes at most one per user at a time: a `read` arriving while one
//! is in flight waits in a single slot (the highest id wins; a requester it
//! displaces is acknowledged at once with the stored marker). A `read` at
//! or below the stored marker costs nothing. So a client flooding `read`
//! frames makes at most one write per round trip to the database.

use std::collections::HashMap;

use crate::actors::SessionId;
use crate::protocol::{MessageId, UserName};

/// Who asked for a marker: the connection and its `ref`.
pub(crate) type Requester = (SessionId, Option<String>);

#[derive(Debug, Default)]
struct UserMarker {
    stored: MessageId,
    /// The write in flight, and who asked for it.
    writing: Option<Requester>,
    /// The next write, once the one in flight is done.
    next: Option<(MessageId, Requester)>,
}

/// What to do with one `read`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadStep {
    /// Nothing to write: acknowledge to the sender with this marker.
    Acknowledge(MessageId),
    /// Store this marker (then call [`ReadMarkers::written`]).
    Write(MessageId),
    /// Queued behind the write in flight; `displaced` (an earlier queued
    /// requester) is to be acknowledged now with `stored`.
    Queued {
        displaced: Option<Requester>,
        stored: MessageId,
    },
}

/// What [`ReadMarkers::written`] says to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Who asked for the write that finished, to acknowledge with `stored`.
    pub asked: Option<Requester>,
    /// A queued requester the stored marker already covers, likewise.
    pub covered: Option<Requester>,
    /// The next marker to write (for the queued requester).
    pub next: Option<MessageId>,
    /// The user's stored marker.
    pub stored: MessageId,
}

/// The markers of the room's users.
#[derive(Debug, Default)]
pub(crate) struct ReadMarkers {
    users: HashMap<UserName, UserMarker>,
}

impl ReadMarkers {
    /// `user`'s stored marker is at least `marker` (read at a join, or told
    /// by another node).
    pub(crate) fn known(&mut self, user: &UserName, marker: MessageId) {
        let entry = self.users.entry(user.clone()).or_default();
        entry.stored = entry.stored.max(marker);
    }

    /// `requester`, a connection of `user`, read the room up to `id`.
    pub(crate) fn request(
        &mut self,
        user: &UserName,
        requester: Requester,
        id: MessageId,
    ) -> ReadStep {
        let entry = self.users.entry(user.clone()).or_default();
        let queued_above = entry.next.as_ref().map_or(entry.stored, |(next, _)| *next);
        if id <= entry.stored || (entry.writing.is_some() && id <= queued_above) {
            return ReadStep::Acknowledge(entry.stored);
        }
        if entry.writing.is_none() {
            entry.writing = Some(requester);
            return ReadStep::Write(id);
        }
        let displaced = entry.next.replace((id, requester)).map(|(_, r)| r);
        ReadStep::Queued {
            displaced,
            stored: entry.stored,
        }
    }

    /// The write in flight for `user` is done (`Some`: the marker now
    /// stored; `None`: it failed). Says whom to acknowledge and what to
    /// write next.
    pub(crate) fn written(&mut self, user: &UserName, stored: Option<MessageId>) -> Written {
        let Some(entry) = self.users.get_mut(user) else {
            return Written::default();
        };
        if let Some(stored) = stored {
            entry.stored = entry.stored.max(stored);
        }
        let mut done = Written {
            asked: entry.writing.take(),
            stored: entry.stored,
            ..Written::default()
        };
        match entry.next.take() {
            Some((id, requester)) if id > entry.stored => {
                entry.writing = Some(requester);
                done.next = Some(id);
            }
            Some((_, requester)) => done.covered = Some(requester),
            None => {}
        }
        done
    }

    /// `user`'s last connection here left: nothing of it is kept, unless a
    /// write is still in flight (its answer still needs the entry).
    pub(crate) fn forget(&mut self, user: &UserName) {
        if self
            .users
            .get(user)
            .is_some_and(|entry| entry.writing.is_none())
        {
            self.users.remove(user);
        }
    }

    #[cfg(test)]
    fn stored(&self, user: &str) -> Option<MessageId> {
        self.users.get(user).map(|e| e.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(n: u64) -> Requester {
        (SessionId(n), Some(format!("r{n}")))
    }

    #[test]
    fn a_read_at_or_below_the_stored_marker_writes_nothing() {
        let mut markers = ReadMarkers::default();
        let alice = "alice".to_string();
        markers.known(&alice, 10);
        assert_eq!(
            markers.request(&alice, who(1), 7),
            ReadStep::Acknowledge(10)
        );
        assert_eq!(
            markers.request(&alice, who(1), 10),
            ReadStep::Acknowledge(10)
        );
        assert_eq!(markers.request(&alice, who(1), 11), ReadStep::Write(11));
    }

    #[test]
    fn one_write_at_a_time_per_user_and_the_highest_queued_id_wins() {
        let mut markers = ReadMarkers::default();
        let alice = "alice".to_string();
        assert_eq!(markers.request(&alice, who(1), 5), ReadStep::Write(5));
        assert_eq!(
            markers.request(&alice, who(2), 8),
            ReadStep::Queued {
                displaced: None,
                stored: 0
            }
        );
        assert_eq!(
            markers.request(&alice, who(3), 9),
            ReadStep::Queued {
                displaced: Some(who(2)),
                stored: 0
            },
            "the slot holds one: the displaced requester is answered at once"
        );
        assert_eq!(
            markers.request(&alice, who(4), 9),
            ReadStep::Acknowledge(0),
            "already queued"
        );
        let done = markers.written(&alice, Some(5));
        assert_eq!(
            done,
            Written {
                asked: Some(who(1)),
                covered: None,
                next: Some(9),
                stored: 5
            }
        );
        let done = markers.written(&alice, Some(9));
        assert_eq!(
            (done.asked, done.next, done.stored),
            (Some(who(3)), None, 9)
        );
        assert_eq!(markers.stored("alice"), Some(9));
    }

    #[test]
    fn a_queued_read_another_node_already_covered_is_just_acknowledged() {
        let mut markers = ReadMarkers::default();
        let bob = "bob".to_string();
        markers.request(&bob, who(1), 5);
        markers.request(&bob, who(2), 8);
        markers.known(&bob, 12);
        let done = markers.written(&bob, Some(12));
        assert_eq!(
            (done.covered, done.next, done.stored),
            (Some(who(2)), None, 12)
        );
    }

    #[test]
    fn a_failed_write_keeps_the_marker_and_forget_waits_for_the_write() {
        let mut markers = ReadMarkers::default();
        let carol = "carol".to_string();
        markers.request(&carol, who(1), 5);
        markers.forget(&carol);
        assert_eq!(markers.stored("carol"), Some(0), "kept while writing");
        let done = markers.written(&carol, None);
        assert_eq!((done.asked, done.stored), (Some(who(1)), 0));
        markers.forget(&carol);
        assert_eq!(markers.stored("carol"), None);
    }
}
