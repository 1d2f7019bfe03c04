//! Cluster mode: the room's users on other nodes, with no actix in it.
//!
//! A room's users, cluster-wide, are its local members' users plus these.
//! `join` and `leave` go out once per user across the cluster: when a user
//! appears here or elsewhere and was in neither before, and when they are
//! gone from both.

use std::collections::BTreeSet;

use crate::protocol::UserName;

/// The users other nodes have in the room, and the read that refreshes it.
#[derive(Default)]
pub(crate) struct Elsewhere {
    users: BTreeSet<UserName>,
    /// A read is in flight.
    reading: bool,
    /// Presence changed again while it was: read once more after it.
    stale: bool,
}

/// Who a refresh brought in and who it took away, among users with no
/// connection here (for those, nothing changed cluster-wide).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub joined: Vec<UserName>,
    pub left: Vec<UserName>,
}

impl Elsewhere {
    pub(crate) fn contains(&self, user: &str) -> bool {
        self.users.contains(user)
    }

    /// Presence changed: whether to start a read now (one at a time).
    pub(crate) fn wants_read(&mut self) -> bool {
        if self.reading {
            self.stale = true;
            false
        } else {
            self.reading = true;
            true
        }
    }

    /// A read came back with `users`; `here` says whether a user has a
    /// connection in the room on this node. Returns what changed, and
    /// whether to read again (presence changed meanwhile).
    pub(crate) fn read(
        &mut self,
        users: Vec<UserName>,
        here: impl Fn(&str) -> bool,
    ) -> (Changes, bool) {
        let new: BTreeSet<UserName> = users.into_iter().collect();
        let changes = Changes {
            joined: new
                .difference(&self.users)
                .filter(|u| !here(u))
                .cloned()
                .collect(),
            left: self
                .users
                .difference(&new)
                .filter(|u| !here(u))
                .cloned()
                .collect(),
        };
        self.users = new;
        self.reading = false;
        (changes, std::mem::take(&mut self.stale))
    }

    /// A read failed: try again on the next change.
    pub(crate) fn read_failed(&mut self) -> bool {
        self.reading = false;
        std::mem::take(&mut self.stale)
    }

    /// The room's users cluster-wide, sorted: `local` (sorted) and these.
    pub(crate) fn with<'a>(&'a self, local: impl Iterator<Item = &'a UserName>) -> Vec<&'a str> {
        let all: BTreeSet<&str> = local
            .map(String::as_str)
            .chain(self.users.iter().map(String::as_str))
            .collect();
        all.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<UserName> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn users_with_a_connection_here_never_join_or_leave_through_other_nodes() {
        let mut elsewhere = Elsewhere::default();
        assert!(elsewhere.wants_read());
        let here = |u: &str| u == "alice";
        let (changes, again) = elsewhere.read(names(&["alice", "bob"]), here);
        assert_eq!(changes.joined, names(&["bob"]), "alice is here already");
        assert!(!again);
        assert!(elsewhere.wants_read());
        let (changes, _) = elsewhere.read(names(&["carol"]), here);
        assert_eq!(changes.joined, names(&["carol"]));
        assert_eq!(changes.left, names(&["bob"]), "alice is still here");
        assert!(elsewhere.contains("carol") && !elsewhere.contains("alice"));
    }

    #[test]
    fn one_read_at_a_time_and_another_if_presence_changed_meanwhile() {
        let mut elsewhere = Elsewhere::default();
        assert!(elsewhere.wants_read());
        assert!(!elsewhere.wants_read());
        let (_, again) = elsewhere.read(Vec::new(), |_| false);
        assert!(again);
        assert!(elsewhere.wants_read());
        assert!(!elsewhere.read_failed());
    }

    #[test]
    fn the_room_lists_each_user_once() {
        let mut elsewhere = Elsewhere::default();
        elsewhere.wants_read();
        elsewhere.read(names(&["bob", "alice"]), |_| false);
        let local = names(&["alice", "dave"]);
        assert_eq!(elsewhere.with(local.iter()), ["alice", "bob", "dave"]);
    }
}
