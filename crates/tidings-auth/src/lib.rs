//! Credentials to grants. A `Grant` says which selectors a caller may publish to and
//! subscribe to, and whether it has the admin right; the `Authorizer` maps a presented bearer
//! credential (a static token or a JWT) to its grant. Pure: no HTTP types, no I/O (key files
//! are read by the caller and handed over as bytes).
//!
//! Static tokens are kept only as SHA-256 digests and looked up by the digest of what was
//! presented, so the lookup time does not depend on how much of a wrong token matched.
//!
//! Telling them apart: a presented token is first looked up in the static table; if it is not
//! there, JWT verification is configured, and it has the JWS compact shape (`eyJ…` then two
//! more base64url parts after dots), it is verified as a JWT. So a static token keeps working
//! whatever it looks like, and a JWT's refusal names its reason.

mod grant;
mod jwt;
mod secret;

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidings_proto::ErrorCode;

pub use grant::{Grant, GrantTemplate, MAX_CLAIM_BYTES, TemplateError};
pub use jwt::{
    JwtError, JwtKey, JwtRules, JwtVerifier, MAX_JWT_BYTES, MIN_HS256_SECRET_BYTES, MIN_RSA_BITS,
    SigningKey, TokenSpec,
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

/// Maps credentials to grants.
#[derive(Debug, Clone)]
pub struct Authorizer {
    tokens: HashMap<[u8; 32], Arc<Grant>>,
    jwt: Option<JwtVerifier>,
    anonymous: Arc<Grant>,
}

impl Authorizer {
    /// An authorizer over static tokens. With no tokens (and no JWT keys), every caller is
    /// anonymous with every right (the server then listens on loopback only).
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        let tokens = tokens
            .into_iter()
            .map(|t| (digest(t.secret.expose()), Arc::new(t.grant)))
            .collect();
        Authorizer {
            tokens,
            jwt: None,
            anonymous: Arc::new(Grant::everything("anonymous")),
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
        if self.is_open() {
            return Ok(self.anonymous.clone());
        }
        let token = bearer.ok_or(AuthError::Missing)?;
        if let Some(grant) = self.tokens.get(&digest(token)) {
            return Ok(grant.clone());
        }
        match &self.jwt {
            Some(jwt) if JwtVerifier::looks_like_jwt(token) => {
                jwt.verify(token).map(Arc::new).map_err(AuthError::Jwt)
            }
            _ => Err(AuthError::Invalid),
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests;
