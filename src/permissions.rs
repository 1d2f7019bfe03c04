//! What a connection's verified token allows, with no actix in it: the
//! control plane's claims (`mod`, `rooms`) read into [`Grants`], and the
//! rules that check them. Without `AUTH_SECRET` names are not verified, so
//! a connection has the [`Grants::unverified`] ones: every room, no
//! moderation.

use serde::{Deserialize, Serialize};

use crate::protocol::is_valid_room;

/// A room pattern of a claim: a room name, or a prefix followed by `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomPattern {
    prefix: String,
    wildcard: bool,
}

impl RoomPattern {
    /// Whether `room` matches: the same name, or one starting with the
    /// prefix of a `prefix*` pattern.
    pub fn matches(&self, room: &str) -> bool {
        if self.wildcard {
            room.starts_with(&self.prefix)
        } else {
            room == self.prefix
        }
    }
}

impl TryFrom<String> for RoomPattern {
    type Error = String;

    /// A room name, or a prefix of one followed by `*` (`*` alone matches
    /// every room).
    fn try_from(pattern: String) -> Result<Self, String> {
        let (prefix, wildcard) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix.to_string(), true),
            None => (pattern.clone(), false),
        };
        let prefix_ok = prefix.is_empty() || is_valid_room(&prefix);
        if !prefix_ok || (!wildcard && prefix.is_empty()) {
            return Err(format!(
                "{pattern:?} is not a room name or a room-name prefix followed by *"
            ));
        }
        Ok(RoomPattern { prefix, wildcard })
    }
}

impl From<RoomPattern> for String {
    fn from(pattern: RoomPattern) -> String {
        if pattern.wildcard {
            format!("{}*", pattern.prefix)
        } else {
            pattern.prefix
        }
    }
}

/// The `mod` claim: `true` (everywhere), `false`, or room patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModClaim {
    Everywhere(bool),
    Rooms(Vec<RoomPattern>),
}

/// What one connection may do, from its token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Rooms it moderates (`None`: none).
    moderates: Option<ModClaim>,
    /// The only rooms it may join (`None`: all).
    rooms: Option<Vec<RoomPattern>>,
}

impl Grants {
    /// A connection whose name is not verified (no `AUTH_SECRET`): every
    /// room, and no moderation, whatever it claims.
    pub fn unverified() -> Grants {
        Grants::default()
    }

    /// The grants of a verified token's claims.
    pub fn from_claims(moderates: Option<ModClaim>, rooms: Option<Vec<RoomPattern>>) -> Grants {
        Grants { moderates, rooms }
    }

    /// Whether this connection moderates `room`.
    pub fn moderates(&self, room: &str) -> bool {
        match &self.moderates {
            Some(ModClaim::Everywhere(all)) => *all,
            Some(ModClaim::Rooms(patterns)) => patterns.iter().any(|p| p.matches(room)),
            None => false,
        }
    }

    /// Whether the token's `rooms` let this connection join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        match &self.rooms {
            Some(patterns) => patterns.iter().any(|p| p.matches(room)),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> RoomPattern {
        RoomPattern::try_from(p.to_string()).expect("a valid pattern")
    }

    #[test]
    fn a_pattern_is_a_name_or_a_prefix_and_star() {
        assert!(pattern("general").matches("general"));
        assert!(!pattern("general").matches("general-2"));
        assert!(pattern("team-*").matches("team-red"));
        assert!(pattern("team-*").matches("team-"));
        assert!(!pattern("team-*").matches("teams"));
        assert!(pattern("*").matches("anything"));
        for bad in ["", "a b", "team.*", "**", "é*"] {
            assert!(RoomPattern::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_mod_claim_is_true_false_or_patterns() {
        let everywhere: ModClaim = serde_json::from_str("true").unwrap();
        let nowhere: ModClaim = serde_json::from_str("false").unwrap();
        let some: ModClaim = serde_json::from_str(r#"["team-*", "help"]"#).unwrap();
        assert!(Grants::from_claims(Some(everywhere), None).moderates("x"));
        assert!(!Grants::from_claims(Some(nowhere), None).moderates("x"));
        let grants = Grants::from_claims(Some(some), None);
        assert!(grants.moderates("team-a") && grants.moderates("help"));
        assert!(!grants.moderates("general"));
        assert!(serde_json::from_str::<ModClaim>(r#"["no room!"]"#).is_err());
        assert!(serde_json::from_str::<ModClaim>("3").is_err());
    }

    #[test]
    fn rooms_restrict_joins_and_no_claim_restricts_nothing() {
        assert!(Grants::unverified().may_join("anything"));
        assert!(!Grants::unverified().moderates("anything"));
        let grants = Grants::from_claims(None, Some(vec![pattern("team-*")]));
        assert!(grants.may_join("team-blue"));
        assert!(!grants.may_join("general"));
        let none = Grants::from_claims(None, Some(vec![]));
        assert!(!none.may_join("general"), "an empty list allows no room");
    }
}
