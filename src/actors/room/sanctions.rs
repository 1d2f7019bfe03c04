//! The mutes and bans in force in a room, with no actix in it. Loaded from
//! storage when the room starts and kept up to date from the `moderation`
//! changes the room delivers, its own and (in cluster mode) other nodes',
//! so every node enforces the same ones.

use std::collections::HashMap;

use crate::history::backend::Sanctions;
use crate::protocol::{ChangeKind, ChatMessage, ModAction, UserName};

/// A room's mutes and bans, each with when it ends (milliseconds since
/// the Unix epoch; a ban's `None`: until unbanned).
#[derive(Debug, Default)]
pub(crate) struct RoomSanctions {
    mutes: HashMap<UserName, i64>,
    bans: HashMap<UserName, Option<i64>>,
}

impl RoomSanctions {
    /// What storage holds in force when the room starts.
    pub(crate) fn loaded(&mut self, stored: Sanctions) {
        self.mutes = stored.mutes.into_iter().collect();
        self.bans = stored.bans.into_iter().collect();
    }

    /// A delivered change: a mute, ban or unban takes effect.
    pub(crate) fn apply(&mut self, change: &ChatMessage) {
        if change.kind != ChangeKind::Moderation {
            return;
        }
        let until_millis = change
            .until
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        let Some(subject) = change.subject.clone() else {
            return;
        };
        match change.action {
            Some(ModAction::Mute) => {
                self.mutes.insert(subject, until_millis.unwrap_or(0));
            }
            Some(ModAction::Ban) => {
                self.bans.insert(subject, until_millis);
            }
            Some(ModAction::Unban) => {
                self.bans.remove(&subject);
                self.mutes.remove(&subject);
            }
            _ => {}
        }
    }

    /// Whether `user` is banned at `now`; an ended ban is forgotten.
    pub(crate) fn is_banned(&mut self, user: &str, now: i64) -> bool {
        match self.bans.get(user) {
            Some(None) => true,
            Some(Some(until)) if *until > now => true,
            Some(Some(_)) => {
                self.bans.remove(user);
                false
            }
            None => false,
        }
    }

    /// Whether `user` is muted at `now`; an ended mute is forgotten.
    pub(crate) fn is_muted(&mut self, user: &str, now: i64) -> bool {
        match self.mutes.get(user) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.mutes.remove(user);
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moderation(action: ModAction, subject: &str, until: Option<i64>) -> ChatMessage {
        ChatMessage {
            kind: ChangeKind::Moderation,
            action: Some(action),
            subject: Some(subject.into()),
            until: until.map(crate::protocol::format_timestamp),
            ..ChatMessage::default()
        }
    }

    #[test]
    fn mutes_and_bans_last_until_they_end_or_are_lifted() {
        let mut sanctions = RoomSanctions::default();
        sanctions.apply(&moderation(ModAction::Mute, "bob", Some(1_000)));
        sanctions.apply(&moderation(ModAction::Ban, "eve", None));
        sanctions.apply(&moderation(ModAction::Ban, "tim", Some(500)));
        assert!(sanctions.is_muted("bob", 999));
        assert!(!sanctions.is_muted("bob", 1_000), "ended");
        assert!(!sanctions.is_muted("bob", 10), "and forgotten");
        assert!(sanctions.is_banned("eve", i64::MAX), "until unbanned");
        assert!(sanctions.is_banned("tim", 499) && !sanctions.is_banned("tim", 500));
        sanctions.apply(&moderation(ModAction::Unban, "eve", None));
        assert!(!sanctions.is_banned("eve", 0));
        sanctions.apply(&moderation(ModAction::Kick, "zed", None));
        assert!(!sanctions.is_banned("zed", 0) && !sanctions.is_muted("zed", 0));
    }

    #[test]
    fn storage_s_sanctions_are_in_force_at_start() {
        let mut sanctions = RoomSanctions::default();
        sanctions.loaded(Sanctions {
            mutes: vec![("bob".into(), 2_000)],
            bans: vec![("eve".into(), None)],
        });
        assert!(sanctions.is_muted("bob", 1_000));
        assert!(sanctions.is_banned("eve", 1_000));
    }
}
