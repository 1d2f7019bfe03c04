//! The room's recent history, with no actix in it: its last `max_history`
//! chats in their current state (what a joiner without `since` gets), its
//! last `max_history` changes as they were broadcast (what a reconnecting
//! client missed), and the rule deciding where a joiner's `history` comes
//! from. A join is answered from this window when it holds all the joiner
//! asks for; otherwise from the database, but only up to the last change
//! broadcast, so `history` and the live stream meet exactly there: every
//! change once, in `history` or live, never both.

use std::collections::VecDeque;

use crate::history::Start;
use crate::protocol::{ChangeKind, ChatMessage, MessageId};

/// The last broadcast changes of a room, oldest first.
pub(crate) struct Recent {
    max: usize,
    /// The newest chats, in their current state.
    chats: VecDeque<ChatMessage>,
    /// Whether stored chats older than `chats` exist.
    has_older: bool,
    /// The newest changes of every kind, as broadcast.
    log: VecDeque<ChatMessage>,
    /// `log` holds every change with an id above this one (`None`: it may
    /// not, after a failed start-up read).
    log_from: Option<MessageId>,
    /// The newest change broadcast (or found stored at start).
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
    /// An empty window of at most `max` chats and `max` changes.
    pub(crate) fn new(max: usize) -> Self {
        Recent {
            max,
            chats: VecDeque::new(),
            has_older: false,
            log: VecDeque::new(),
            log_from: Some(0),
            last_broadcast: None,
        }
    }

    /// The most messages the window holds (`MAX_HISTORY`).
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The newest change broadcast: the room's last id, as far as its
    /// members can know.
    pub(crate) fn last_id(&self) -> MessageId {
        self.last_broadcast.unwrap_or(0)
    }

    /// What the room read when it started (its newest chats and changes,
    /// each page at most `max` long unless `max` is 0, when it may hold
    /// the one newest change that tells where the room stands).
    pub(crate) fn loaded(&mut self, start: Start) {
        let Start {
            chats: (chats, older_chats),
            changes: (mut changes, older_changes),
            ..
        } = start;
        self.last_broadcast = changes.last().map(|m| m.id);
        let excess = changes.len().saturating_sub(self.max);
        let older_changes = older_changes || excess > 0;
        changes.drain(..excess);
        let excess = chats.len().saturating_sub(self.max);
        self.has_older = older_chats || excess > 0;
        self.chats = chats.into_iter().skip(excess).collect();
        self.log_from = Some(match (older_changes, changes.first()) {
            // Everything before the first change kept is stored, not here.
            (true, Some(first)) => first.id - 1,
            (true, None) => self.last_broadcast.unwrap_or(0),
            (false, _) => 0,
        });
        self.log = changes.into();
    }

    /// The start-up read failed: older messages may exist, so a join
    /// recovering with `since` reads the database, and one without is told
    /// there is more.
    pub(crate) fn load_failed(&mut self) {
        self.has_older = true;
        self.log_from = None;
    }

    /// A change was broadcast: it joins the log (the oldest leaving once
    /// it is full), and a chat joins the window of chats, while any other
    /// change updates the chat it is about if that is in the window.
    pub(crate) fn remember(&mut self, change: &ChatMessage) {
        self.last_broadcast = Some(change.id);
        match change.kind {
            ChangeKind::Chat => {
                if self.max == 0 {
                    self.has_older = true;
                } else {
                    if self.chats.len() == self.max {
                        self.chats.pop_front();
                        self.has_older = true;
                    }
                    self.chats.push_back(change.clone());
                }
            }
            kind => {
                if let Some(chat) = self.chats.iter_mut().find(|c| Some(c.id) == change.target) {
                    chat.apply(change);
                }
                let deletes = kind == ChangeKind::Delete
                    || (kind == ChangeKind::Moderation
                        && change.action == Some(crate::protocol::ModAction::Delete));
                if deletes {
                    // The deleted text goes from the log too, as from storage.
                    for earlier in self.log.iter_mut().filter(|c| {
                        c.id == change.target.unwrap_or_default()
                            || (c.kind == ChangeKind::Edit && c.target == change.target)
                    }) {
                        earlier.text.clear();
                    }
                }
            }
        }
        if self.max == 0 {
            self.log_from = Some(change.id);
            return;
        }
        if self.log.len() == self.max {
            if let Some(oldest) = self.log.pop_front() {
                self.log_from = self.log_from.map(|from| from.max(oldest.id));
            }
        }
        self.log.push_back(change.clone());
    }

    /// Where the `history` for a join with `since` comes from.
    pub(crate) fn source(&self, since: Option<MessageId>) -> HistorySource {
        match since {
            None => HistorySource::Cache {
                messages: self.chats.iter().cloned().collect(),
                more: self.has_older,
            },
            // Everything after `since` is in the log when the log reaches
            // back to `since`.
            Some(since) if self.log_from.is_some_and(|from| from <= since) => {
                HistorySource::Cache {
                    messages: self.log.iter().filter(|m| m.id > since).cloned().collect(),
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
            ..ChatMessage::default()
        }
    }

    fn start(chats: Vec<ChatMessage>, more: bool) -> Start {
        Start {
            changes: (chats.clone(), more),
            chats: (chats, more),
            ..Start::default()
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
        recent.loaded(start(vec![message(7), message(8), message(9)], true));
        assert_eq!(cached(recent.source(None)), (vec![7, 8, 9], true));
        assert_eq!(
            recent.source(Some(2)),
            HistorySource::Database {
                after: 2,
                up_to: Some(9)
            }
        );

        let mut none_kept = Recent::new(0);
        none_kept.loaded(start(vec![message(9)], false));
        assert!(cached(none_kept.source(None)).1, "message 9 is older");
    }

    fn change(id: MessageId, kind: ChangeKind, target: MessageId) -> ChatMessage {
        ChatMessage {
            kind,
            target: Some(target),
            text: if kind == ChangeKind::Edit {
                format!("edit {id}")
            } else {
                String::new()
            },
            emoji: Some("👍".into()),
            on: true,
            ..message(id)
        }
    }

    #[test]
    fn a_fresh_join_sees_each_chat_in_its_current_state() {
        let mut recent = window(3, 1..=3);
        recent.remember(&change(4, ChangeKind::Edit, 2));
        recent.remember(&change(5, ChangeKind::Reaction, 3));
        recent.remember(&change(6, ChangeKind::Delete, 1));
        recent.remember(&change(7, ChangeKind::Edit, 99));
        let HistorySource::Cache { messages, more } = recent.source(None) else {
            panic!("from the cache")
        };
        assert!(!more);
        let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 3], "only chats, each in its place");
        assert!(messages[0].deleted && messages[0].text.is_empty());
        assert_eq!(messages[1].text, "edit 4");
        assert_eq!(messages[2].reactions["👍"], ["alice"]);
        assert_eq!(recent.last_id(), 7);
    }

    #[test]
    fn a_recovery_replays_every_change_as_broadcast_with_deleted_text_erased() {
        let mut recent = window(10, 1..=2);
        recent.remember(&change(3, ChangeKind::Edit, 1));
        recent.remember(&change(4, ChangeKind::Edit, 2));
        recent.remember(&change(5, ChangeKind::Delete, 1));
        let (ids, more) = cached(recent.source(Some(1)));
        assert_eq!((ids, more), (vec![2, 3, 4, 5], false));
        let HistorySource::Cache { messages, .. } = recent.source(Some(0)) else {
            panic!("from the cache")
        };
        assert_eq!(messages[0].text, "", "chat 1 was deleted");
        assert_eq!(messages[1].text, "message 2");
        assert_eq!(messages[2].text, "", "an edit of chat 1");
        assert_eq!(messages[3].text, "edit 4");
        assert_eq!(messages[2].kind, ChangeKind::Edit);
    }

    #[test]
    fn a_recovery_older_than_the_log_reads_the_database_even_if_the_chats_fit() {
        let mut recent = window(3, 1..=2);
        for id in 3..=6 {
            recent.remember(&change(id, ChangeKind::Reaction, 1));
        }
        assert_eq!(cached(recent.source(Some(3))), (vec![4, 5, 6], false));
        assert_eq!(
            recent.source(Some(2)),
            HistorySource::Database {
                after: 2,
                up_to: Some(6)
            }
        );
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
