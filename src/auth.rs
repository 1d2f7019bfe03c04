//! Signed identities: HS256 JSON Web Tokens whose `sub` is the user name.
//!
//! With `AUTH_SECRET` set, `/ws` trusts a name only when it comes in a token
//! signed with that secret. The cryptography and the claim checks are
//! jsonwebtoken's (which compares signatures in constant time); this module
//! only fixes the policy: HS256 and nothing else, `exp` required and not
//! further ahead than `MAX_TOKEN_LIFETIME`, a little leeway for clocks that
//! disagree, and a `sub` that is a valid user name.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::format_duration;
use crate::permissions::{Grants, ModClaim, RoomPattern};
use crate::protocol::{is_valid_user, UserName};

/// How far apart the server's clock and the token issuer's may be.
pub(crate) const LEEWAY: Duration = Duration::from_secs(30);

/// The claims chatterbox reads and writes. Other claims in a token are
/// ignored, so tokens from an existing identity provider work if they carry
/// `sub` and `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name, under the protocol's NAME rules.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at; written by [`mint`], not required when reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Control plane: a moderator everywhere (`true`) or in the rooms
    /// matching these patterns.
    #[serde(default, rename = "mod", skip_serializing_if = "Option::is_none")]
    pub moderator: Option<ModClaim>,
    /// Control plane: the only rooms this token may join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<RoomPattern>>,
}

impl Claims {
    /// What the token allows its connection.
    pub fn grants(&self) -> Grants {
        Grants::from_claims(self.moderator.clone(), self.rooms.clone())
    }
}

/// Why a token was refused. The messages go to the client as they are, so
/// they never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "a token is required (AUTH_SECRET is set): pass token=JWT or an Authorization: Bearer \
         JWT header"
    )]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error(
        "the token's exp is more than {} ahead, longer than this server accepts \
         (MAX_TOKEN_LIFETIME); ask for a shorter-lived token",
        format_duration(*.0)
    )]
    LivesTooLong(Duration),
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    #[error("the token's sub is not a valid user name")]
    BadSubject,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("cannot sign a token: {0}")]
    Signing(String),
    #[error("the token is for another user ({0}); a refresh must be for this connection's user")]
    OtherUser(String),
}

/// Checks `token` against `secret` and returns its claims. A token whose
/// `exp` is more than `max_lifetime` (plus the leeway) from now is refused:
/// it could not be revoked for too long.
pub fn verify(secret: &str, token: &str, max_lifetime: Duration) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY.as_secs();
    // Identity providers put their own `aud` in tokens; chatterbox has no
    // audience of its own to check it against, so it is ignored rather than
    // refused. A token not valid yet (`nbf`) is refused.
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        _ => AuthError::Malformed(e.to_string()),
    })?;
    if !is_valid_user(&data.claims.sub) {
        return Err(AuthError::BadSubject);
    }
    let latest = now_secs()
        .saturating_add(max_lifetime.as_secs())
        .saturating_add(LEEWAY.as_secs());
    if data.claims.exp > latest {
        return Err(AuthError::LivesTooLong(max_lifetime));
    }
    Ok(data.claims)
}

/// Checks the token of a `refresh` on a connection of `user`: as
/// [`verify`] does for the upgrade, and its `sub` must be `user` (a
/// connection cannot change who it speaks as).
pub fn verify_refresh(
    secret: &str,
    token: &str,
    max_lifetime: Duration,
    user: &str,
) -> Result<Claims, AuthError> {
    let claims = verify(secret, token, max_lifetime)?;
    if claims.sub != user {
        return Err(AuthError::OtherUser(claims.sub));
    }
    Ok(claims)
}

/// How long from `now` until `exp` (seconds since the epoch) passes; zero
/// when it has. A connection closed at expiry is closed then, with no
/// leeway: the leeway forgives clocks that disagree when a token is
/// checked, and a client that refreshes ahead of `exp` never meets it.
pub(crate) fn until_expiry(exp: u64, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(exp).saturating_sub(now)
}

/// What a minted token allows besides its user (`chatterbox token`'s
/// `--mod`, `--mod-rooms` and `--rooms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub moderator: Option<ModClaim>,
    pub rooms: Option<Vec<RoomPattern>>,
}

/// Signs a token for `user`, valid for `ttl` from now.
pub fn mint(secret: &str, user: &UserName, ttl: Duration) -> Result<String, AuthError> {
    mint_with(secret, user, ttl, Extra::default())
}

/// Signs a token for `user`, valid for `ttl` from now, with `extra` claims.
pub fn mint_with(
    secret: &str,
    user: &UserName,
    ttl: Duration,
    extra: Extra,
) -> Result<String, AuthError> {
    if !is_valid_user(user) {
        return Err(AuthError::BadSubject);
    }
    let now = now_secs();
    let claims = Claims {
        sub: user.clone(),
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
        moderator: extra.moderator,
        rooms: extra.rooms,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Signing(e.to_string()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-reasonable-length";
    const DAY: Duration = Duration::from_secs(86400);

    fn verify(secret: &str, token: &str) -> Result<Claims, AuthError> {
        super::verify(secret, token, DAY)
    }

    #[test]
    fn a_token_living_longer_than_the_maximum_is_refused() {
        let user = "alice".to_string();
        let week = mint(SECRET, &user, 7 * DAY).unwrap();
        assert_eq!(verify(SECRET, &week), Err(AuthError::LivesTooLong(DAY)));
        let message = AuthError::LivesTooLong(DAY).to_string();
        assert!(message.contains("1d") && message.contains("MAX_TOKEN_LIFETIME"));
        // Exactly the maximum is fine, and so is a longer one when allowed.
        let day = mint(SECRET, &user, DAY).unwrap();
        assert_eq!(verify(SECRET, &day).unwrap().sub, "alice");
        assert!(super::verify(SECRET, &week, 7 * DAY).is_ok());
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let token = mint(SECRET, &"alice".to_string(), Duration::from_secs(60)).unwrap();
        assert_eq!(verify(SECRET, &token).unwrap().sub, "alice");
    }

    #[test]
    fn another_secret_is_a_bad_signature() {
        let token = mint(SECRET, &"alice".to_string(), Duration::from_secs(60)).unwrap();
        assert_eq!(verify("other", &token), Err(AuthError::BadSignature));
    }

    #[test]
    fn an_invalid_name_is_neither_minted_nor_accepted() {
        assert_eq!(
            mint(SECRET, &"no spaces".to_string(), Duration::from_secs(60)),
            Err(AuthError::BadSubject)
        );
        let claims = Claims {
            sub: "<script>".into(),
            exp: u64::MAX / 2,
            iat: None,
            moderator: None,
            rooms: None,
        };
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(SECRET, &token), Err(AuthError::BadSubject));
    }

    #[test]
    fn a_refresh_must_be_for_the_same_user() {
        let ttl = Duration::from_secs(60);
        let bob = mint(SECRET, &"bob".to_string(), ttl).unwrap();
        assert_eq!(
            verify_refresh(SECRET, &bob, DAY, "alice"),
            Err(AuthError::OtherUser("bob".into()))
        );
        assert_eq!(verify_refresh(SECRET, &bob, DAY, "bob").unwrap().sub, "bob");
        assert_eq!(
            verify_refresh("other", &bob, DAY, "bob"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn expiry_is_counted_from_now_and_never_negative() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(until_expiry(1060, now), Duration::from_secs(60));
        assert_eq!(until_expiry(1000, now), Duration::ZERO);
        assert_eq!(until_expiry(10, now), Duration::ZERO);
        let later = now + Duration::from_millis(400);
        assert_eq!(until_expiry(1001, later), Duration::from_millis(600));
    }

    #[test]
    fn extra_claims_are_minted_and_read_back() {
        let extra = Extra {
            moderator: Some(ModClaim::Rooms(vec!["team-*"
                .to_string()
                .try_into()
                .unwrap()])),
            rooms: Some(vec!["help".to_string().try_into().unwrap()]),
        };
        let token = mint_with(SECRET, &"mo".to_string(), Duration::from_secs(60), extra).unwrap();
        let grants = verify(SECRET, &token).unwrap().grants();
        assert!(grants.moderates("team-a") && !grants.moderates("help"));
        assert!(grants.may_join("help") && !grants.may_join("team-a"));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            verify(SECRET, "not.a.token"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(verify(SECRET, ""), Err(AuthError::Malformed(_))));
    }
}
