//! Direct-message rooms, with no actix in it: the room of two users is
//! `dm-` and the first 16 hex digits of SHA-256 of their names, sorted and
//! joined by a newline, so every node derives the same name without asking
//! anyone. The name cannot be turned back into the two users, so the first
//! `join` with `dm` stores the pair (see [`crate::history::direct_rooms`]),
//! and a room that starts reads it.
//!
//! Every room name that starts with `dm-` is reserved for them: it is never
//! listed, never served over REST, and joined by name only by one of its
//! two users (see docs/PROTOCOL.md).

use sha2::{Digest, Sha256};

use crate::protocol::{RoomName, UserName};

/// What every direct-message room's name starts with.
pub const PREFIX: &str = "dm-";

/// The two users of a direct-message room, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair([UserName; 2]);

impl Pair {
    /// The pair of `a` and `b`, in either order. The same name twice is a
    /// room of one (notes to yourself).
    pub fn new(a: &str, b: &str) -> Pair {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        Pair([first.to_string(), second.to_string()])
    }

    /// The two names, sorted: the `dm` field of `history`.
    pub fn users(&self) -> &[UserName; 2] {
        &self.0
    }

    /// Whether `user` is one of the two.
    pub fn contains(&self, user: &str) -> bool {
        self.0.iter().any(|u| u == user)
    }

    /// The room's name: `dm-` and the first 16 hex digits of SHA-256 of
    /// the two names joined by a newline.
    pub fn room(&self) -> RoomName {
        let digest = Sha256::digest(format!("{}\n{}", self.0[0], self.0[1]).as_bytes());
        let mut name = String::with_capacity(PREFIX.len() + 16);
        name.push_str(PREFIX);
        for byte in &digest[..8] {
            name.push_str(&format!("{byte:02x}"));
        }
        name
    }
}

/// Whether `room` is reserved for direct messages (it starts with `dm-`).
pub fn is_direct(room: &str) -> bool {
    room.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_name_is_the_start_of_the_sha256_of_the_sorted_names() {
        // printf 'alice\nbob' | sha256sum
        //   1cb15457d1ddab60e205c0fe3ca2f65d1e27e1b06a5efa0beb2921834771a669
        assert_eq!(Pair::new("alice", "bob").room(), "dm-1cb15457d1ddab60");
        assert_eq!(Pair::new("bob", "alice").room(), "dm-1cb15457d1ddab60");
        assert_eq!(Pair::new("bob", "alice").users(), &["alice", "bob"]);
        // Sorted by bytes: upper case before lower case.
        assert_eq!(Pair::new("bob", "Zed").users(), &["Zed", "bob"]);
    }

    #[test]
    fn only_the_two_are_in_the_pair() {
        let pair = Pair::new("alice", "bob");
        assert!(pair.contains("alice") && pair.contains("bob"));
        assert!(!pair.contains("carol") && !pair.contains("Alice"));
        let alone = Pair::new("alice", "alice");
        assert!(alone.contains("alice") && !alone.contains("bob"));
        assert_ne!(alone.room(), pair.room());
    }

    #[test]
    fn a_room_name_of_the_right_shape_is_valid_and_reserved() {
        let room = Pair::new("a", "b").room();
        assert!(crate::protocol::is_valid_room(&room));
        assert_eq!(room.len(), 19);
        assert!(is_direct(&room) && is_direct("dm-anything"));
        assert!(!is_direct("general") && !is_direct("dm") && !is_direct("adm-x"));
    }
}
