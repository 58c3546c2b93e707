//! Credentials to grants. A `Grant` says which selectors a caller may publish to and
//! subscribe to; the `Authorizer` maps a presented credential (for now a static bearer token)
//! to its grant. Pure: no HTTP types, no I/O.
//!
//! Tokens are kept only as SHA-256 digests and looked up by the digest of what was presented,
//! so the lookup time does not depend on how much of a wrong token matched.

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

/// Maps credentials to grants.
#[derive(Debug, Clone)]
pub struct Authorizer {
    tokens: HashMap<[u8; 32], Arc<Grant>>,
    anonymous: Arc<Grant>,
}

impl Authorizer {
    /// An authorizer over static tokens. With no tokens, every caller is anonymous with
    /// every right (the server then listens on loopback only).
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|t| (digest(&t.secret), Arc::new(t.grant)))
            .collect();
        Authorizer {
            tokens,
            anonymous: Arc::new(Grant::everything("anonymous")),
        }
    }

    /// Whether any credential is configured.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The grant for a presented bearer token (`None`: nothing presented).
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Arc<Grant>, AuthError> {
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
