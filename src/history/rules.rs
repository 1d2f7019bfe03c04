//! Which changes of a batch may be stored, with no database in it: the
//! rules of edit, delete, reactions, replies and idempotent chat.
//!
//! A backend asks [`wanted`] what the batch refers to, reads that inside
//! the batch's transaction into a [`Known`], and lets [`judge`] decide each
//! change in order. The verdicts see the batch's own earlier changes (a
//! delete then a reaction, two sends of one key), so a batch decides
//! exactly as the same changes one transaction each would.

use std::collections::{HashMap, HashSet};

use super::backend::{NewChange, NewRow, Refusal};
use crate::protocol::{ChangeKind, ChatMessage, MessageId};

/// What the rules need to know of a stored change a batch refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub room: String,
    pub user: String,
    pub kind: ChangeKind,
    pub deleted: bool,
}

/// A chat's identity for idempotency: room, user, key.
pub type KeyOf = (String, String, String);

/// A user's reaction: the chat, the user, the emoji.
pub type ReactionOf = (MessageId, String, String);

/// What a batch refers to, for the backend to read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Targets and `reply_to`s.
    pub ids: Vec<MessageId>,
    /// Keys of chats that carry one.
    pub keys: Vec<KeyOf>,
    /// Reactions that may already be on.
    pub reactions: Vec<ReactionOf>,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.keys.is_empty() && self.reactions.is_empty()
    }
}

/// What the backend found of what the batch wants.
#[derive(Debug, Default)]
pub struct Known {
    pub targets: HashMap<MessageId, Target>,
    /// Chats stored within the key window under a wanted key, as they were
    /// broadcast.
    pub keys: HashMap<KeyOf, ChatMessage>,
    /// Wanted reactions that are on.
    pub reactions: HashSet<ReactionOf>,
}

/// The decision on one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Store,
    Refuse(Refusal),
    /// A chat whose key was used before it: this stored chat.
    Repeat(Box<ChatMessage>),
    /// A chat whose key an earlier chat of the same batch used: the one at
    /// this position.
    RepeatOfRow(usize),
    /// A reaction already in the asked state.
    Unchanged {
        on: bool,
    },
    /// A moderator's delete of `author`'s chat: stored as a `moderation`.
    ModeratorDelete {
        author: String,
    },
}

/// Puts the chats found under wanted keys into `known`: `found` is every
/// candidate with its key, oldest first (a lookup by room, user and key
/// separately may find more than was wanted); the oldest of each wanted
/// key is the original.
pub fn remember_keys(
    known: &mut Known,
    wanted: &Wanted,
    found: impl IntoIterator<Item = (Option<String>, ChatMessage)>,
) {
    let wanted: HashSet<&KeyOf> = wanted.keys.iter().collect();
    for (key, chat) in found {
        let Some(key) = key else { continue };
        let key = (chat.room.clone(), chat.user.clone(), key);
        if wanted.contains(&key) && !known.keys.contains_key(&key) {
            known.keys.insert(key, chat);
        }
    }
}

/// What `batch` refers to.
pub fn wanted(batch: &[NewRow<'_>]) -> Wanted {
    let mut wanted = Wanted::default();
    for row in batch {
        match row.change {
            NewChange::Chat { reply_to, key, .. } => {
                wanted.ids.extend(reply_to);
                if let Some(key) = key {
                    wanted
                        .keys
                        .push((row.room.into(), row.user.into(), key.clone()));
                }
            }
            NewChange::Edit { target, .. } | NewChange::Delete { target, .. } => {
                wanted.ids.push(*target)
            }
            NewChange::Moderate { .. } => {}
            NewChange::React { target, emoji, .. } => {
                wanted.ids.push(*target);
                wanted
                    .reactions
                    .push((*target, row.user.into(), emoji.clone()));
            }
        }
    }
    wanted.ids.sort_unstable();
    wanted.ids.dedup();
    wanted
}

/// A chat of `room` that is still there, or why not.
fn live_chat<'k>(known: &'k Known, room: &str, id: MessageId) -> Result<&'k Target, Refusal> {
    match known.targets.get(&id) {
        Some(t) if t.room == room && t.kind == ChangeKind::Chat && !t.deleted => Ok(t),
        _ => Err(Refusal::NotFound),
    }
}

/// Decides each change of `batch` in order, updating `known` with the
/// effects of those it lets through.
pub fn judge(batch: &[NewRow<'_>], known: &mut Known) -> Vec<Verdict> {
    // Keys stored earlier in this batch: the position of their chat.
    let mut batch_keys: HashMap<KeyOf, usize> = HashMap::new();
    batch
        .iter()
        .enumerate()
        .map(|(position, row)| match row.change {
            NewChange::Chat { reply_to, key, .. } => {
                let key = key
                    .as_ref()
                    .map(|k| (row.room.to_string(), row.user.to_string(), k.clone()));
                if let Some(key) = &key {
                    if let Some(original) = known.keys.get(key) {
                        return Verdict::Repeat(Box::new(original.clone()));
                    }
                    if let Some(&earlier) = batch_keys.get(key) {
                        return Verdict::RepeatOfRow(earlier);
                    }
                }
                if let Some(reply_to) = reply_to {
                    if let Err(refusal) = live_chat(known, row.room, *reply_to) {
                        return Verdict::Refuse(refusal);
                    }
                }
                if let Some(key) = key {
                    batch_keys.insert(key, position);
                }
                Verdict::Store
            }
            NewChange::Edit { target, .. } => match live_chat(known, row.room, *target) {
                Err(refusal) => Verdict::Refuse(refusal),
                Ok(chat) if chat.user != row.user => Verdict::Refuse(Refusal::Forbidden),
                Ok(_) => Verdict::Store,
            },
            NewChange::Delete {
                target,
                as_moderator,
            } => {
                let verdict = match live_chat(known, row.room, *target) {
                    Err(refusal) => return Verdict::Refuse(refusal),
                    Ok(chat) if chat.user == row.user => Verdict::Store,
                    Ok(chat) if *as_moderator => Verdict::ModeratorDelete {
                        author: chat.user.clone(),
                    },
                    Ok(_) => return Verdict::Refuse(Refusal::Forbidden),
                };
                if let Some(chat) = known.targets.get_mut(target) {
                    chat.deleted = true;
                }
                known.reactions.retain(|(id, _, _)| id != target);
                verdict
            }
            NewChange::Moderate { .. } => Verdict::Store,
            NewChange::React { target, emoji, on } => {
                if let Err(refusal) = live_chat(known, row.room, *target) {
                    return Verdict::Refuse(refusal);
                }
                let reaction = (*target, row.user.to_string(), emoji.clone());
                let changed = if *on {
                    known.reactions.insert(reaction)
                } else {
                    known.reactions.remove(&reaction)
                };
                if changed {
                    Verdict::Store
                } else {
                    Verdict::Unchanged { on: *on }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(user: &str) -> Target {
        Target {
            room: "general".into(),
            user: user.into(),
            kind: ChangeKind::Chat,
            deleted: false,
        }
    }

    fn row<'a>(user: &'a str, change: &'a NewChange) -> NewRow<'a> {
        NewRow {
            room: "general",
            user,
            change,
            created_at: 0,
        }
    }

    fn known(targets: &[(MessageId, Target)]) -> Known {
        Known {
            targets: targets.iter().cloned().collect(),
            ..Known::default()
        }
    }

    fn verdicts(batch: &[(&str, NewChange)], known: &mut Known) -> Vec<Verdict> {
        let rows: Vec<NewRow<'_>> = batch.iter().map(|(u, c)| row(u, c)).collect();
        judge(&rows, known)
    }

    fn edit(target: MessageId) -> NewChange {
        NewChange::Edit {
            target,
            text: "new".into(),
        }
    }

    fn delete(target: MessageId) -> NewChange {
        NewChange::Delete {
            target,
            as_moderator: false,
        }
    }

    #[test]
    fn a_moderator_deletes_anyones_chat_and_its_own_plainly() {
        let mut known = known(&[(1, chat("alice")), (2, chat("mod"))]);
        let by_mod = |target| NewChange::Delete {
            target,
            as_moderator: true,
        };
        let got = verdicts(
            &[("mod", by_mod(1)), ("mod", by_mod(2)), ("mod", by_mod(1))],
            &mut known,
        );
        assert_eq!(
            got,
            [
                Verdict::ModeratorDelete {
                    author: "alice".into()
                },
                Verdict::Store,
                Verdict::Refuse(Refusal::NotFound),
            ]
        );
    }

    fn react(target: MessageId, emoji: &str, on: bool) -> NewChange {
        NewChange::React {
            target,
            emoji: emoji.into(),
            on,
        }
    }

    fn keyed(key: &str) -> NewChange {
        NewChange::Chat {
            text: "hi".into(),
            reply_to: None,
            key: Some(key.into()),
        }
    }

    #[test]
    fn only_the_author_edits_or_deletes_a_chat_of_this_room() {
        let mut other_room = chat("alice");
        other_room.room = "elsewhere".into();
        let mut an_edit = chat("alice");
        an_edit.kind = ChangeKind::Edit;
        let mut known = known(&[(1, chat("alice")), (2, other_room), (3, an_edit)]);
        let got = verdicts(
            &[
                ("alice", edit(1)),
                ("bob", edit(1)),
                ("bob", delete(1)),
                ("alice", edit(2)),
                ("alice", edit(3)),
                ("alice", edit(404)),
            ],
            &mut known,
        );
        use Verdict::*;
        assert_eq!(
            got,
            [
                Store,
                Refuse(Refusal::Forbidden),
                Refuse(Refusal::Forbidden),
                Refuse(Refusal::NotFound),
                Refuse(Refusal::NotFound),
                Refuse(Refusal::NotFound),
            ]
        );
    }

    #[test]
    fn a_deleted_chat_takes_no_edit_reaction_or_reply_even_in_the_same_batch() {
        let mut known = known(&[(1, chat("alice"))]);
        known.reactions.insert((1, "bob".into(), "👍".into()));
        let got = verdicts(
            &[
                ("alice", delete(1)),
                ("alice", edit(1)),
                ("bob", react(1, "🎉", true)),
                (
                    "bob",
                    NewChange::Chat {
                        text: "re".into(),
                        reply_to: Some(1),
                        key: None,
                    },
                ),
                ("alice", delete(1)),
            ],
            &mut known,
        );
        assert_eq!(got[0], Verdict::Store);
        assert!(got[1..]
            .iter()
            .all(|v| *v == Verdict::Refuse(Refusal::NotFound)));
        assert!(known.reactions.is_empty(), "a delete takes its reactions");
    }

    #[test]
    fn a_reaction_is_stored_only_when_it_changes_something() {
        let mut known = known(&[(1, chat("alice"))]);
        known.reactions.insert((1, "bob".into(), "👍".into()));
        let got = verdicts(
            &[
                ("bob", react(1, "👍", true)),
                ("bob", react(1, "👍", false)),
                ("bob", react(1, "👍", false)),
                ("carol", react(1, "👍", true)),
                ("carol", react(1, "🎉", false)),
            ],
            &mut known,
        );
        use Verdict::*;
        assert_eq!(
            got,
            [
                Unchanged { on: true },
                Store,
                Unchanged { on: false },
                Store,
                Unchanged { on: false },
            ]
        );
    }

    #[test]
    fn a_key_used_before_or_earlier_in_the_batch_repeats_the_original() {
        let original = ChatMessage {
            id: 7,
            text: "first".into(),
            ..ChatMessage::default()
        };
        let mut known = Known::default();
        known.keys.insert(
            ("general".into(), "alice".into(), "k1".into()),
            original.clone(),
        );
        let got = verdicts(
            &[
                ("alice", keyed("k1")),
                ("alice", keyed("k2")),
                ("alice", keyed("k2")),
                ("bob", keyed("k1")),
            ],
            &mut known,
        );
        assert_eq!(
            got,
            [
                Verdict::Repeat(Box::new(original)),
                Verdict::Store,
                Verdict::RepeatOfRow(1),
                Verdict::Store,
            ],
            "keys are per user"
        );
    }

    #[test]
    fn a_refused_keyed_chat_does_not_claim_its_key() {
        let mut known = Known::default();
        let reply = NewChange::Chat {
            text: "re".into(),
            reply_to: Some(9),
            key: Some("k".into()),
        };
        let got = verdicts(&[("alice", reply), ("alice", keyed("k"))], &mut known);
        assert_eq!(got, [Verdict::Refuse(Refusal::NotFound), Verdict::Store]);
    }

    #[test]
    fn wanted_lists_what_the_batch_refers_to_once() {
        let changes = [
            ("alice", edit(3)),
            ("bob", react(3, "x", true)),
            ("bob", keyed("k")),
            ("carol", delete(1)),
        ];
        let rows: Vec<NewRow<'_>> = changes.iter().map(|(u, c)| row(u, c)).collect();
        let wanted = wanted(&rows);
        assert_eq!(wanted.ids, [1, 3]);
        assert_eq!(wanted.keys, [("general".into(), "bob".into(), "k".into())]);
        assert_eq!(wanted.reactions, [(3, "bob".into(), "x".into())]);
        let plain = NewChange::Chat {
            text: "t".into(),
            reply_to: None,
            key: None,
        };
        assert!(super::wanted(&[row("a", &plain)]).is_empty());
    }
}
