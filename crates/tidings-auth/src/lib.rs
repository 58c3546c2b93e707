//! Credentials to grants. A `Grant` says which selectors a caller may publish to and
//! subscribe to; the `Authorizer` maps a presented credential (for now a static bearer token)
//! to its grant. Pure: no HTTP types, no I/O.
//!
//! Tokens are kept only as SHA-256 digests and looked up by the digest of what was presented,
//! so the lookup time does not depend on how much of a wrong token matched.
//!
//! Each credential also has a `CredentialId`, for state kept per credential (the server scopes
//! idempotency keys with it). It is derived from the token's digest, never from its name
//! (names are chosen freely and need not be unique), and reveals nothing of the secret that
//! the digest does not.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidings_proto::{ErrorCode, Pattern, Selector, Topic};

/// What a credential may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A name for logs (never the secret).
    pub name: String,
    /// Topics it may publish to.
    pub publish: Vec<Pattern>,
    /// Topics it may subscribe to.
    pub subscribe: Vec<Pattern>,
}

impl Grant {
    /// Everything: what an anonymous caller gets when no credentials are configured.
    pub fn everything(name: &str) -> Self {
        Grant {
            name: name.to_owned(),
            publish: vec![Pattern::All],
            subscribe: vec![Pattern::All],
        }
    }

    /// Whether this grant may publish to `topic`.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// `Ok` when every pattern of `selector` is covered by a subscribe grant; otherwise the
    /// first pattern that is not.
    pub fn check_subscribe<'a>(&self, selector: &'a Selector) -> Result<(), &'a Pattern> {
        match selector
            .patterns
            .iter()
            .find(|want| !self.subscribe.iter().any(|g| g.covers(want)))
        {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }
}

/// One configured static token.
#[derive(Debug, Clone)]
pub struct StaticToken {
    /// The secret as presented in `Authorization: Bearer <secret>`.
    pub secret: String,
    /// What it grants.
    pub grant: Grant,
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Credentials are configured and none was presented.
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    Missing,
    /// The presented credential is unknown.
    #[error("the bearer token is not valid")]
    Invalid,
}

impl AuthError {
    /// The stable wire code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }
}

/// Identifies a credential for per-credential state: the same token always has the same id
/// (across restarts and config reorders), two tokens have different ids, and an open hub's
/// anonymous caller has [`CredentialId::ANONYMOUS`]. Not a secret, but not for display either.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialId(pub [u8; 32]);

impl CredentialId {
    /// The id of the anonymous caller of an open hub.
    pub const ANONYMOUS: CredentialId = CredentialId([0; 32]);

    /// SHA-256 of a tag and the token's digest (so it differs from the digest itself).
    fn of_token(token_digest: &[u8; 32]) -> CredentialId {
        let mut h = Sha256::new();
        h.update(b"tidings credential id v1\0");
        h.update(token_digest);
        CredentialId(h.finalize().into())
    }
}

impl std::fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialId(..)")
    }
}

/// An authenticated caller: what it may do and which credential it used.
#[derive(Debug, Clone)]
pub struct Caller {
    /// What the credential grants.
    pub grant: Arc<Grant>,
    /// Which credential it is.
    pub id: CredentialId,
}

/// Maps credentials to grants.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// Token digest → the caller it authenticates.
    tokens: HashMap<[u8; 32], Caller>,
    anonymous: Caller,
}

impl Authorizer {
    /// An authorizer over static tokens. With no tokens, every caller is anonymous with
    /// every right (the server then listens on loopback only).
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|t| {
                let digest = digest(&t.secret);
                let caller = Caller {
                    grant: Arc::new(t.grant),
                    id: CredentialId::of_token(&digest),
                };
                (digest, caller)
            })
            .collect();
        Authorizer {
            tokens,
            anonymous: Caller {
                grant: Arc::new(Grant::everything("anonymous")),
                id: CredentialId::ANONYMOUS,
            },
        }
    }

    /// Whether any credential is configured.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The grant for a presented bearer token (`None`: nothing presented).
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Arc<Grant>, AuthError> {
        self.identify(bearer).map(|caller| caller.grant)
    }

    /// The caller a presented bearer token authenticates (`None`: nothing presented): its
    /// grant and its credential id.
    pub fn identify(&self, bearer: Option<&str>) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(self.anonymous.clone());
        }
        let token = bearer.ok_or(AuthError::Missing)?;
        self.tokens
            .get(&digest(token))
            .cloned()
            .ok_or(AuthError::Invalid)
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<Pattern> {
        p.iter().map(|s| Pattern::parse(s).unwrap()).collect()
    }

    fn authorizer() -> Authorizer {
        Authorizer::new(vec![StaticToken {
            secret: "s3cret".into(),
            grant: Grant {
                name: "dl".into(),
                publish: pats(&["downloads/*"]),
                subscribe: pats(&["downloads/*", "system"]),
            },
        }])
    }

    #[test]
    fn tokens_map_to_grants() {
        let a = authorizer();
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(a.authenticate(Some("s3cre")), Err(AuthError::Invalid));
        let g = a.authenticate(Some("s3cret")).unwrap();
        assert!(g.may_publish(&Topic::new("downloads/a").unwrap()));
        assert!(!g.may_publish(&Topic::new("system").unwrap()));
        let sel = |p: &[&str]| Selector {
            patterns: pats(p),
            types: vec![],
        };
        assert!(
            g.check_subscribe(&sel(&["downloads/a", "downloads/x/*", "system"]))
                .is_ok()
        );
        assert_eq!(
            g.check_subscribe(&sel(&["downloads/a", "*"])),
            Err(&Pattern::All)
        );
    }

    #[test]
    fn each_token_has_its_own_stable_id_that_is_not_its_digest() {
        let token = |secret: &str, name: &str| StaticToken {
            secret: secret.into(),
            grant: Grant::everything(name),
        };
        let a = Authorizer::new(vec![
            token("secret-one", "same"),
            token("secret-two", "same"),
        ]);
        let one = a.identify(Some("secret-one")).unwrap().id;
        let two = a.identify(Some("secret-two")).unwrap().id;
        assert_ne!(one, two, "same name, different tokens: different ids");
        assert_ne!(one, CredentialId::ANONYMOUS);
        assert_ne!(one.0, digest("secret-one"));
        // Reordered, and with another token added: the same token keeps its id.
        let b = Authorizer::new(vec![
            token("secret-three", "x"),
            token("secret-two", "y"),
            token("secret-one", "z"),
        ]);
        assert_eq!(b.identify(Some("secret-one")).unwrap().id, one);
        assert_eq!(format!("{one:?}"), "CredentialId(..)");
        assert_eq!(
            Authorizer::new(vec![]).identify(None).unwrap().id,
            CredentialId::ANONYMOUS
        );
    }

    #[test]
    fn no_tokens_means_anonymous_with_every_right() {
        let a = Authorizer::new(vec![]);
        assert!(a.is_open());
        assert!(
            a.authenticate(None)
                .unwrap()
                .may_publish(&Topic::new("x").unwrap())
        );
    }
}
