//! Credentials to grants. A `Grant` says which selectors a caller may publish to and
//! subscribe to, and whether it has the admin right; the `Authorizer` maps a presented bearer
//! credential (a static token or a JWT) to its grant. Pure: no HTTP types, no I/O (key files
//! are read by the caller and handed over as bytes).
//!
//! Static tokens are kept only as SHA-256 digests. The digest of what was presented is
//! compared with every one of them in constant time (`subtle`), so the time taken depends
//! neither on how much of a wrong token matched nor on which token it was.
//!
//! Telling them apart: a presented token is first looked up in the static table; if it is not
//! there, JWT verification is configured, and it has the JWS compact shape (`eyJ…` then two
//! more base64url parts after dots), it is verified as a JWT. So a static token keeps working
//! whatever it looks like, and a JWT's refusal names its reason.
//!
//! Each credential also has a `CredentialId`, for state kept per credential (the server scopes
//! idempotency keys with it). A static token's is derived from the token's digest, never from
//! its name (names are chosen freely and need not be unique), and reveals nothing of the
//! secret that the digest does not. A JWT's is derived from its issuer and subject when it
//! names a subject (so a refreshed token is the same credential), else from its digest.

mod grant;
mod jwt;
mod secret;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConstantTimeEq, CtOption};
use tidings_proto::ErrorCode;

pub use grant::{Grant, GrantTemplate, MAX_CLAIM_BYTES, TemplateError};
pub use jwt::{
    JwtError, JwtKey, JwtRules, JwtVerifier, MAX_JWT_BYTES, MIN_HS256_SECRET_BYTES, MIN_RSA_BITS,
    SigningKey, TokenSpec, Verified,
};
pub use secret::Secret;

/// One configured static token.
#[derive(Debug, Clone)]
pub struct StaticToken {
    /// The secret as presented in `Authorization: Bearer <secret>`.
    pub secret: Secret,
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
    /// The presented JWT was refused.
    #[error("the bearer token (a JWT) was refused: {0}")]
    Jwt(JwtError),
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

    /// A JWT subject's id: SHA-256 of a tag, the issuer and the subject, each length-prefixed
    /// so no two (issuer, subject) pairs share one.
    fn of_subject(issuer: &str, subject: &str) -> CredentialId {
        let mut h = Sha256::new();
        h.update(b"tidings jwt subject v1\0");
        for part in [issuer, subject] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
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
    /// When the credential stops being valid, in seconds since the Unix epoch (a JWT's `exp`);
    /// `None` for a credential that does not expire (a static token, the anonymous caller).
    pub expires_at: Option<u64>,
}

/// Maps credentials to grants.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// Static token digests and the callers they authenticate. Few (they are configured by
    /// hand), so a lookup compares against every one in constant time (`digest_matches`).
    tokens: Vec<([u8; 32], Caller)>,
    jwt: Option<JwtVerifier>,
    anonymous: Caller,
}

impl Authorizer {
    /// An authorizer over static tokens. With no tokens (and no JWT keys), every caller is
    /// anonymous with every right (the server then listens on loopback only).
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|t| {
                let digest = digest(t.secret.expose());
                let caller = Caller {
                    grant: Arc::new(t.grant),
                    id: CredentialId::of_token(&digest),
                    expires_at: None,
                };
                (digest, caller)
            })
            .collect();
        Authorizer {
            tokens,
            jwt: None,
            anonymous: Caller {
                grant: Arc::new(Grant::everything("anonymous")),
                id: CredentialId::ANONYMOUS,
                expires_at: None,
            },
        }
    }

    /// Also accepts JWTs verified by `jwt`.
    pub fn with_jwt(mut self, jwt: Option<JwtVerifier>) -> Self {
        self.jwt = jwt;
        self
    }

    /// Whether no credential is configured (every caller is anonymous).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// The grant for a presented bearer token (`None`: nothing presented).
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<Arc<Grant>, AuthError> {
        self.identify(bearer).map(|caller| caller.grant)
    }

    /// The caller a presented bearer token authenticates (`None`: nothing presented): its
    /// grant, its credential id and when it expires.
    pub fn identify(&self, bearer: Option<&str>) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(self.anonymous.clone());
        }
        let token = bearer.ok_or(AuthError::Missing)?;
        let digest = digest(token);
        if let Some(caller) = self.static_token(&digest) {
            return Ok(caller.clone());
        }
        match &self.jwt {
            Some(jwt) if JwtVerifier::looks_like_jwt(token) => {
                let verified = jwt.verify_full(token).map_err(AuthError::Jwt)?;
                let id = match &verified.subject {
                    Some(sub) => {
                        CredentialId::of_subject(verified.issuer.as_deref().unwrap_or(""), sub)
                    }
                    None => CredentialId::of_token(&digest),
                };
                Ok(Caller {
                    grant: Arc::new(verified.grant),
                    id,
                    expires_at: Some(verified.expires_at),
                })
            }
            _ => Err(AuthError::Invalid),
        }
    }
}

impl Authorizer {
    /// The static token with this digest. Every configured digest is compared, each in
    /// constant time, and the scan never stops early: how long it takes tells nothing of how
    /// much of a presented token matched, or which token.
    fn static_token(&self, digest: &[u8; 32]) -> Option<&Caller> {
        let mut found = None;
        for (known, caller) in &self.tokens {
            let same = known.ct_eq(digest);
            found = Option::from(CtOption::new(caller, same)).or(found);
        }
        found
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests;
