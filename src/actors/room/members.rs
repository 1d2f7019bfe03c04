//! A room's members and per-user presence, with no actix in it: which
//! connection belongs to which user, the outbox the room feeds it, and how
//! many connections each user has here. Presence and `join`/`leave` are per
//! user, so a user with two tabs open joins with the first and leaves with
//! the last.
//!
//! Generic over the outbox ([`Outlet`]) so the rules are tested, and the
//! fan-out benchmarked, without a session behind each member.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::actors::outbox::{Outbox, Overflow, Receipt};
use crate::actors::SessionId;
use crate::protocol::UserName;

/// Where a room puts a member's frames: an [`Outbox`] in the server. Both
/// calls refuse what would pass `limit`, a batch whole.
pub trait Outlet {
    /// What the member's side drops once it has written a delivery (the
    /// server's [`Receipt`]); `()` where nobody waits for that.
    type Receipt;
    fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow>;
    fn push_all(
        &self,
        frames: Arc<[ByteString]>,
        receipt: Self::Receipt,
        limit: usize,
    ) -> Result<(), Overflow>;
}

impl Outlet for Outbox {
    type Receipt = Receipt;

    fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
        Outbox::push(self, frame, limit)
    }

    fn push_all(
        &self,
        frames: Arc<[ByteString]>,
        receipt: Receipt,
        limit: usize,
    ) -> Result<(), Overflow> {
        Outbox::push_all(self, frames, receipt, limit)
    }
}

/// One connection in the room.
pub struct Member<O> {
    pub(crate) user: UserName,
    pub outbox: O,
    /// When its last `typing` was passed on.
    last_typing: Option<Instant>,
}

/// How often one connection's `typing` is passed on in one room.
pub(crate) const TYPING_EVERY: Duration = Duration::from_secs(2);

/// Who gets a frame about one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience<'a> {
    /// That user's connections (a read marker).
    User(&'a str),
    /// Everyone else's (a typing notice).
    Others(&'a str),
}

/// The room's connections and, per user, how many of them it has.
pub struct Members<O> {
    sessions: HashMap<SessionId, Member<O>>,
    /// Connections per user. A BTreeMap because presence is sorted by code
    /// point, which is byte order for UTF-8 strings.
    users: BTreeMap<UserName, usize>,
}

impl<O> Default for Members<O> {
    fn default() -> Self {
        Members {
            sessions: HashMap::new(),
            users: BTreeMap::new(),
        }
    }
}

impl<O> Members<O> {
    /// Adds a connection; true when it is the user's first in the room
    /// (the others are to hear `join`).
    pub fn insert(&mut self, session: SessionId, user: UserName, outbox: O) -> bool {
        let count = self.users.entry(user.clone()).or_default();
        *count += 1;
        let first = *count == 1;
        self.sessions.insert(
            session,
            Member {
                user,
                outbox,
                last_typing: None,
            },
        );
        first
    }

    /// Removes a connection; returns it and whether it was its user's last
    /// in the room (the others are to hear `leave`).
    pub(crate) fn remove(&mut self, session: SessionId) -> Option<(Member<O>, bool)> {
        let member = self.sessions.remove(&session)?;
        let last = match self.users.get_mut(&member.user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                self.users.remove(&member.user);
                true
            }
        };
        Some((member, last))
    }

    pub fn get(&self, session: SessionId) -> Option<&Member<O>> {
        self.sessions.get(&session)
    }

    /// The throttle on typing notices: the user of `session` if its
    /// `typing` is to be passed on at `now` (the first, or the first
    /// [`TYPING_EVERY`] after the last one passed on); `None` for a
    /// connection not here or one that typed too recently.
    pub(crate) fn typing(&mut self, session: SessionId, now: Instant) -> Option<&UserName> {
        let member = self.sessions.get_mut(&session)?;
        if member
            .last_typing
            .is_some_and(|last| now.saturating_duration_since(last) < TYPING_EVERY)
        {
            return None;
        }
        member.last_typing = Some(now);
        Some(&member.user)
    }

    /// How many connections the room has.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Member<O>)> {
        self.sessions
            .iter()
            .map(|(&session, member)| (session, member))
    }

    /// The room's distinct users, sorted by code point: its presence.
    pub(crate) fn users(&self) -> impl Iterator<Item = &UserName> {
        self.users.keys()
    }
}

impl<O: Outlet> Members<O> {
    /// Pushes `frame` to every member but `except`; returns the members
    /// whose outbox overflowed, for the room to drop.
    pub(crate) fn push_each(
        &self,
        frame: &ByteString,
        except: Option<SessionId>,
        limit: usize,
    ) -> Vec<SessionId> {
        let mut overflowed = Vec::new();
        for (session, member) in self.iter() {
            if Some(session) != except && member.outbox.push(frame.clone(), limit).is_err() {
                overflowed.push(session);
            }
        }
        overflowed
    }

    /// Pushes `frame` to the members of `audience`, and `own` instead to
    /// the one connection it names; returns the members whose outbox
    /// overflowed.
    pub(crate) fn push_about(
        &self,
        audience: Audience<'_>,
        frame: &ByteString,
        own: Option<(SessionId, ByteString)>,
        limit: usize,
    ) -> Vec<SessionId> {
        let mut overflowed = Vec::new();
        for (session, member) in self.iter() {
            let included = match audience {
                Audience::User(user) => member.user == user,
                Audience::Others(user) => member.user != user,
            };
            if !included {
                continue;
            }
            let frame = match &own {
                Some((to, own)) if *to == session => own.clone(),
                _ => frame.clone(),
            };
            if member.outbox.push(frame, limit).is_err() {
                overflowed.push(session);
            }
        }
        overflowed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// An outbox that keeps what it is given, bounded like the real one
    /// (by frames queued, a batch refused whole) but never drained.
    #[derive(Clone, Default)]
    pub(crate) struct Queue(Rc<RefCell<Vec<ByteString>>>);

    impl Queue {
        pub(crate) fn frames(&self) -> Vec<ByteString> {
            self.0.borrow().clone()
        }
    }

    impl Outlet for Queue {
        type Receipt = ();

        fn push(&self, frame: ByteString, limit: usize) -> Result<(), Overflow> {
            self.push_all(Arc::from(vec![frame]), (), limit)
        }

        fn push_all(&self, frames: Arc<[ByteString]>, _: (), limit: usize) -> Result<(), Overflow> {
            let mut queue = self.0.borrow_mut();
            if queue.len() + frames.len() > limit {
                return Err(Overflow);
            }
            queue.extend(frames.iter().cloned());
            Ok(())
        }
    }

    fn presence(members: &Members<Queue>) -> Vec<&str> {
        members.users().map(String::as_str).collect()
    }

    #[test]
    fn a_second_tab_does_not_join_again_and_the_last_tab_leaves() {
        let mut members = Members::default();
        assert!(members.insert(SessionId(1), "alice".into(), Queue::default()));
        assert!(
            !members.insert(SessionId(2), "alice".into(), Queue::default()),
            "alice's second tab is not a new join"
        );
        assert_eq!(presence(&members), ["alice"]);
        assert_eq!(members.len(), 2);

        let (member, last) = members.remove(SessionId(1)).expect("a member");
        assert_eq!((member.user.as_str(), last), ("alice", false));
        assert_eq!(presence(&members), ["alice"], "one tab is still open");

        let (_, last) = members.remove(SessionId(2)).expect("a member");
        assert!(last, "closing the last tab is alice's leave");
        assert!(presence(&members).is_empty());
        assert!(members.is_empty());
    }

    #[test]
    fn presence_is_sorted_by_code_point() {
        let mut members = Members::default();
        for (id, user) in [
            (1, "bob"),
            (2, "alice"),
            (3, "Carol"),
            (4, "bob"),
            (5, "_x"),
        ] {
            members.insert(SessionId(id), user.into(), Queue::default());
        }
        assert_eq!(presence(&members), ["Carol", "_x", "alice", "bob"]);
    }

    #[test]
    fn removing_an_unknown_connection_changes_nothing() {
        let mut members = Members::default();
        members.insert(SessionId(1), "alice".into(), Queue::default());
        assert!(members.remove(SessionId(9)).is_none());
        assert_eq!(presence(&members), ["alice"]);
        assert!(members.get(SessionId(1)).is_some());
    }

    #[test]
    fn push_each_skips_the_excepted_member_and_reports_full_outboxes() {
        let mut members = Members::default();
        let (a, b, c) = (Queue::default(), Queue::default(), Queue::default());
        members.insert(SessionId(1), "alice".into(), a.clone());
        members.insert(SessionId(2), "bob".into(), b.clone());
        members.insert(SessionId(3), "carol".into(), c.clone());
        c.push(ByteString::from("old"), 1).expect("room for one");

        let overflowed = members.push_each(&ByteString::from("join"), Some(SessionId(1)), 1);
        assert_eq!(overflowed, [SessionId(3)], "carol's outbox was full");
        assert!(a.frames().is_empty(), "the joiner hears no join of its own");
        assert_eq!(b.frames(), [ByteString::from("join")]);
        assert_eq!(c.frames(), [ByteString::from("old")]);
    }

    #[test]
    fn typing_is_passed_on_at_most_once_per_connection_every_two_seconds() {
        let mut members = Members::default();
        members.insert(SessionId(1), "alice".into(), Queue::default());
        members.insert(SessionId(2), "alice".into(), Queue::default());
        let start = Instant::now();
        let typed = |members: &mut Members<Queue>, session, after: u64| {
            members
                .typing(SessionId(session), start + Duration::from_millis(after))
                .cloned()
        };
        assert_eq!(typed(&mut members, 1, 0), Some("alice".into()));
        assert_eq!(typed(&mut members, 1, 1_999), None, "too soon");
        assert_eq!(
            typed(&mut members, 2, 1_000),
            Some("alice".into()),
            "per connection: alice's other tab has its own throttle"
        );
        assert_eq!(typed(&mut members, 1, 2_000), Some("alice".into()));
        assert_eq!(typed(&mut members, 9, 0), None, "not a member");
    }

    #[test]
    fn frames_about_a_user_reach_that_user_or_everyone_else() {
        let mut members = Members::default();
        let queues: Vec<Queue> = (0..3).map(|_| Queue::default()).collect();
        members.insert(SessionId(1), "alice".into(), queues[0].clone());
        members.insert(SessionId(2), "alice".into(), queues[1].clone());
        members.insert(SessionId(3), "bob".into(), queues[2].clone());
        let (read, own) = (ByteString::from("read"), ByteString::from("read+ref"));
        members.push_about(
            Audience::User("alice"),
            &read,
            Some((SessionId(1), own.clone())),
            10,
        );
        assert_eq!(queues[0].frames(), [own]);
        assert_eq!(queues[1].frames(), [read]);
        assert!(queues[2].frames().is_empty());
        members.push_about(
            Audience::Others("bob"),
            &ByteString::from("typing"),
            None,
            10,
        );
        assert_eq!(
            queues[2].frames().len(),
            0,
            "bob's own typing is not sent back"
        );
        assert_eq!(queues[1].frames().len(), 2);
    }
}
