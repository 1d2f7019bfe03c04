//! `MAX_PENDING_MESSAGES` and `MAX_PENDING_BYTES`: how much chat the server
//! holds between accepting it from a client and handing it, stored, to the
//! room's members.
//!
//! Storage is the one stage that can stall for seconds (another process
//! holding SQLite's write lock, a slow disk). Without a bound, everything
//! clients send meanwhile piles up in memory and goes out in one burst when
//! the store comes back. So a session takes an [`Admitted`] for each chat
//! before passing it on, and refuses the chat with `overloaded` when the
//! bound is reached. The permit travels with the chat to the writer's
//! queue, back to the room with the stored answer, and gives its share back
//! when it is dropped: once the room has handed the stored chat to its
//! members (or dropped it on any other path). Counting by ownership, as
//! [`crate::caps`] does for connections, means no path can leak a place.

use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::Metrics;

/// The bound was reached: the chat must be refused, neither stored nor
/// broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server is overloaded: {messages} messages ({bytes} bytes) are waiting to be stored \
     (limits {max_messages} and {max_bytes} bytes); this one was dropped, try again shortly"
)]
pub(crate) struct Overloaded {
    pub messages: usize,
    pub bytes: usize,
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// What is accepted and not yet handed to the members, in messages and in
/// bytes of text. One per server, shared by every session and room.
pub(crate) struct Backlog {
    max_messages: usize,
    max_bytes: usize,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    messages: usize,
    bytes: usize,
}

impl Backlog {
    /// Both limits must be at least 1 (the configuration refuses 0).
    pub(crate) fn new(max_messages: usize, max_bytes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Backlog {
            max_messages,
            max_bytes,
            counts: Mutex::new(Counts::default()),
            metrics,
        })
    }

    /// Takes a place for one chat of `bytes` bytes of text, or says the
    /// bound is reached. A chat bigger than `max_bytes` on its own is
    /// admitted when nothing else is pending, so no valid chat is refused
    /// forever.
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Result<Admitted, Overloaded> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let fits = counts.messages < self.max_messages
            && (counts.messages == 0 || counts.bytes.saturating_add(bytes) <= self.max_bytes);
        if !fits {
            return Err(Overloaded {
                messages: counts.messages,
                bytes: counts.bytes,
                max_messages: self.max_messages,
                max_bytes: self.max_bytes,
            });
        }
        counts.messages += 1;
        counts.bytes += bytes;
        self.publish(*counts);
        Ok(Admitted {
            backlog: self.clone(),
            messages: 1,
            bytes,
        })
    }

    /// Messages and bytes pending right now (for the tests: the server
    /// needs only `admit`'s verdict).
    #[cfg(test)]
    pub fn pending(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        (counts.messages, counts.bytes)
    }

    fn release(&self, messages: usize, bytes: usize) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.messages = counts.messages.saturating_sub(messages);
        counts.bytes = counts.bytes.saturating_sub(bytes);
        self.publish(*counts);
    }

    fn publish(&self, counts: Counts) {
        self.metrics.pending_messages.set(counts.messages as i64);
        self.metrics.pending_bytes.set(counts.bytes as i64);
    }
}

/// The places of one or more admitted chats, given back when dropped.
#[must_use = "dropping the permit releases the chat's place at once"]
pub(crate) struct Admitted {
    backlog: Arc<Backlog>,
    messages: usize,
    bytes: usize,
}

impl Admitted {
    /// Takes over `other`'s places, so a batch holds one permit and is
    /// released with one lock.
    pub(crate) fn merge(&mut self, mut other: Admitted) {
        debug_assert!(Arc::ptr_eq(&self.backlog, &other.backlog));
        self.messages += std::mem::take(&mut other.messages);
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// How many chats this permit holds places for.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.messages
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if self.messages > 0 || self.bytes > 0 {
            self.backlog.release(self.messages, self.bytes);
        }
    }
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("messages", &self.messages)
            .field("bytes", &self.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(max_messages: usize, max_bytes: usize) -> Arc<Backlog> {
        Backlog::new(max_messages, max_bytes, Arc::new(Metrics::new()))
    }

    #[test]
    fn refuses_past_the_message_bound_and_admits_again_once_released() {
        let backlog = backlog(2, 1000);
        let a = backlog.admit(10).unwrap();
        let _b = backlog.admit(10).unwrap();
        let refused = backlog.admit(10).unwrap_err();
        assert_eq!((refused.messages, refused.max_messages), (2, 2));
        drop(a);
        assert!(backlog.admit(10).is_ok());
    }

    #[test]
    fn refuses_past_the_byte_bound() {
        let backlog = backlog(100, 1000);
        let _a = backlog.admit(600).unwrap();
        let refused = backlog.admit(401).unwrap_err();
        assert_eq!(refused.bytes, 600);
        let _b = backlog.admit(400).unwrap();
        assert_eq!(backlog.pending(), (2, 1000));
    }

    #[test]
    fn a_chat_bigger_than_the_byte_bound_passes_alone() {
        let backlog = backlog(100, 1000);
        let big = backlog.admit(5000).unwrap();
        assert!(backlog.admit(1).is_err());
        drop(big);
        assert_eq!(backlog.pending(), (0, 0));
    }

    #[test]
    fn a_merged_permit_releases_everything_once() {
        let metrics = Arc::new(Metrics::new());
        let backlog = Backlog::new(10, 1000, metrics.clone());
        let mut batch = backlog.admit(100).unwrap();
        batch.merge(backlog.admit(200).unwrap());
        batch.merge(backlog.admit(300).unwrap());
        assert_eq!(batch.messages(), 3);
        assert_eq!(backlog.pending(), (3, 600));
        assert_eq!(metrics.pending_messages.get(), 3);
        assert_eq!(metrics.pending_bytes.get(), 600);
        drop(batch);
        assert_eq!(backlog.pending(), (0, 0));
        assert_eq!(metrics.pending_messages.get(), 0);
    }
}
