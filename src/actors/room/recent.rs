//! The room's recent history, with no actix in it: its last `max_history`
//! broadcast messages, and the rule deciding where a joiner's `history`
//! comes from. A join is answered from this window when it holds all the
//! joiner asks for; otherwise from the database, but only up to the last
//! message broadcast, so `history` and the live stream meet exactly there:
//! every message once, in `history` or live, never both.

use std::collections::VecDeque;

use crate::protocol::{ChatMessage, MessageId};

/// The last broadcast messages of a room, oldest first.
pub(crate) struct Recent {
    max: usize,
    messages: VecDeque<ChatMessage>,
    /// Whether stored messages older than `messages` exist.
    has_older: bool,
    /// The newest message broadcast (or found stored at start).
    last_broadcast: Option<MessageId>,
}

/// Where the `history` for a join comes from.
#[derive(Debug, PartialEq)]
pub(crate) enum HistorySource {
    /// From the window: these messages, and whether older ones exist.
    Cache {
        messages: Vec<ChatMessage>,
        more: bool,
    },
    /// From the database: what is stored after `after`, up to `up_to`
    /// (what has been broadcast; anything newer reaches the joiner live).
    Database {
        after: MessageId,
        up_to: Option<MessageId>,
    },
}

impl Recent {
    /// An empty window of at most `max` messages.
    pub(crate) fn new(max: usize) -> Self {
        Recent {
            max,
            messages: VecDeque::new(),
            has_older: false,
            last_broadcast: None,
        }
    }

    /// The most messages the window holds (`MAX_HISTORY`).
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The room's newest stored messages, read when it starts, and whether
    /// older ones exist.
    pub(crate) fn loaded(&mut self, messages: Vec<ChatMessage>, more: bool) {
        self.last_broadcast = messages.last().map(|m| m.id);
        self.has_older = more || (self.max == 0 && self.last_broadcast.is_some());
        self.messages = messages.into();
    }

    /// The start-up read failed: older messages may exist, so a join
    /// recovering with `since` reads the database, and one without is told
    /// there is more.
    pub(crate) fn load_failed(&mut self) {
        self.has_older = true;
    }

    /// A message was broadcast: it joins the window, and the oldest leaves
    /// once the window is full.
    pub(crate) fn remember(&mut self, message: &ChatMessage) {
        self.last_broadcast = Some(message.id);
        if self.max == 0 {
            self.has_older = true;
            return;
        }
        if self.messages.len() == self.max {
            self.messages.pop_front();
            self.has_older = true;
        }
        self.messages.push_back(message.clone());
    }

    /// Where the `history` for a join with `since` comes from.
    pub(crate) fn source(&self, since: Option<MessageId>) -> HistorySource {
        match since {
            None => HistorySource::Cache {
                messages: self.messages.iter().cloned().collect(),
                more: self.has_older,
            },
            // Everything after `since` is in the cache when nothing older
            // than the cache exists, or the cache reaches back to `since`.
            Some(since)
                if !self.has_older || self.messages.front().is_some_and(|m| m.id <= since) =>
            {
                HistorySource::Cache {
                    messages: self
                        .messages
                        .iter()
                        .filter(|m| m.id > since)
                        .cloned()
                        .collect(),
                    more: false,
                }
            }
            // Otherwise read what the client missed, but only up to what has
            // been broadcast: anything newer reaches the joiner live.
            Some(since) => HistorySource::Database {
                after: since,
                up_to: self.last_broadcast,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId) -> ChatMessage {
        ChatMessage {
            id,
            room: "general".into(),
            user: "alice".into(),
            text: format!("message {id}"),
            timestamp: "2026-11-26T01:00:00.000Z".into(),
            seq: None,
        }
    }

    fn cached(source: HistorySource) -> (Vec<MessageId>, bool) {
        match source {
            HistorySource::Cache { messages, more } => {
                (messages.iter().map(|m| m.id).collect(), more)
            }
            other => panic!("expected the cache, got {other:?}"),
        }
    }

    fn window(max: usize, ids: impl IntoIterator<Item = MessageId>) -> Recent {
        let mut recent = Recent::new(max);
        for id in ids {
            recent.remember(&message(id));
        }
        recent
    }

    #[test]
    fn keeps_the_last_max_messages_oldest_first() {
        let recent = window(3, 1..=5);
        assert_eq!(cached(recent.source(None)), (vec![3, 4, 5], true));
    }

    #[test]
    fn a_window_not_yet_full_has_nothing_older() {
        let recent = window(3, 1..=2);
        assert_eq!(cached(recent.source(None)), (vec![1, 2], false));
    }

    #[test]
    fn a_recovery_the_window_covers_gets_only_what_it_missed() {
        let recent = window(3, 1..=5);
        assert_eq!(cached(recent.source(Some(3))), (vec![4, 5], false));
        assert_eq!(cached(recent.source(Some(5))), (vec![], false));
    }

    #[test]
    fn a_recovery_with_nothing_older_stored_is_answered_from_the_window() {
        let recent = window(3, 4..=5);
        assert_eq!(cached(recent.source(Some(1))), (vec![4, 5], false));
    }

    #[test]
    fn a_recovery_past_the_window_reads_the_database_up_to_the_last_broadcast() {
        let recent = window(3, 1..=5);
        assert_eq!(
            recent.source(Some(1)),
            HistorySource::Database {
                after: 1,
                up_to: Some(5)
            },
            "history ends where the live stream starts"
        );
    }

    #[test]
    fn the_meeting_point_moves_with_each_broadcast() {
        let mut recent = window(2, 1..=3);
        recent.remember(&message(4));
        assert_eq!(
            recent.source(Some(1)),
            HistorySource::Database {
                after: 1,
                up_to: Some(4)
            }
        );
    }

    #[test]
    fn with_no_window_every_recovery_reads_the_database() {
        let recent = window(0, 1..=2);
        assert_eq!(cached(recent.source(None)), (vec![], true));
        assert_eq!(
            recent.source(Some(1)),
            HistorySource::Database {
                after: 1,
                up_to: Some(2)
            }
        );
    }

    #[test]
    fn the_start_up_read_sets_the_window_and_the_meeting_point() {
        let mut recent = Recent::new(3);
        recent.loaded(vec![message(7), message(8), message(9)], true);
        assert_eq!(cached(recent.source(None)), (vec![7, 8, 9], true));
        assert_eq!(
            recent.source(Some(2)),
            HistorySource::Database {
                after: 2,
                up_to: Some(9)
            }
        );

        let mut none_kept = Recent::new(0);
        none_kept.loaded(vec![message(9)], false);
        assert!(cached(none_kept.source(None)).1, "message 9 is older");
    }

    #[test]
    fn after_a_failed_start_up_read_a_recovery_reads_the_database() {
        let mut recent = Recent::new(3);
        recent.load_failed();
        assert_eq!(cached(recent.source(None)), (vec![], true));
        assert_eq!(
            recent.source(Some(4)),
            HistorySource::Database {
                after: 4,
                up_to: None
            }
        );
    }
}
