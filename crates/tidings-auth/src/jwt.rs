//! JWT: verifying a presented token into a `Grant`, and minting one (`tidings token`).
//!
//! The algorithm is pinned by the key, never taken from the token: an HS256 secret verifies
//! only HS256, an RSA key only RS256, a P-256 key only ES256, an Ed25519 key only EdDSA. The
//! token's `alg` merely picks which configured keys to try (those pinned to it), so `none`
//! and HS/RS confusion (an HS256 token "signed" with the RSA public key) find no key or fail
//! the signature. A `kid` naming a JWKS key selects that key alone.
//!
//! `exp` is required; `exp` and `nbf` are checked with the configured leeway; `aud` and `iss`
//! are required and checked when configured (a token carrying an `aud` is refused when no
//! audience is configured, as RFC 7519 §4.1.3 asks).
//!
//! The grant is the `tidings` claim (`{"publish": [...], "subscribe": [...], "admin": bool}`,
//! selectors as in a subscription) plus the configured templates filled from the claims.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use tidings_proto::Pattern;

use crate::grant::{Grant, GrantTemplate, TemplateError};

/// Longest token looked at as a JWT, in bytes.
pub const MAX_JWT_BYTES: usize = 8 << 10;
/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a JWT was refused. The message names the reason and never echoes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a well-formed JWS compact token.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not one Tidings verifies (`none`, HS384, ...).
    #[error("unsupported algorithm{}; accepted: HS256, RS256, ES256, EdDSA", .0.as_ref().map(|a| format!(" `{a}`")).unwrap_or_default())]
    UnsupportedAlgorithm(Option<String>),
    /// No configured key is pinned to the token's algorithm.
    #[error("unsupported algorithm: no configured key verifies {0} tokens")]
    NoKey(&'static str),
    /// No key of the token's algorithm verified the signature.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("expired (exp)")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("not yet valid (nbf)")]
    NotYetValid,
    /// `aud` does not name a configured audience.
    #[error("wrong audience (aud)")]
    WrongAudience,
    /// `iss` is not a configured issuer.
    #[error("wrong issuer (iss)")]
    WrongIssuer,
    /// A required claim is absent.
    #[error("the claim `{0}` is required")]
    MissingClaim(String),
    /// A claim has the wrong shape.
    #[error("bad claim {0}")]
    BadClaim(String),
    /// A claim cannot fill a grant template.
    #[error("{0}")]
    Template(TemplateError),
}

/// One verification key, pinned to one algorithm.
#[derive(Debug, Clone)]
pub struct JwtKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl JwtKey {
    /// The HS256 shared secret.
    pub fn hs256(secret: &[u8]) -> Result<JwtKey, String> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(format!(
                "is {} bytes; an HS256 secret needs at least {MIN_HS256_SECRET_BYTES}",
                secret.len()
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        Ok(JwtKey {
            kid: None,
            alg: Algorithm::HS256,
            key,
        })
    }

    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 `RSA PUBLIC KEY`). RSA gives
    /// RS256, P-256 gives ES256, Ed25519 gives EdDSA; anything else is refused.
    pub fn from_public_pem(pem: &[u8]) -> Result<JwtKey, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "is not a PEM file".to_owned())?;
        let label = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        });
        match label {
            Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
            Some(l) if l.contains("PRIVATE") => {
                return Err("is a private key; give its public half \
                            (`openssl pkey -in KEY -pubout`)"
                    .into());
            }
            _ => return Err("expected a PEM public key (-----BEGIN PUBLIC KEY-----)".into()),
        }
        let (alg, key) = if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, k)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            let bytes = k.try_get_as_bytes().map_err(|e| e.to_string())?;
            let utils = &provider().key_utils;
            let (n, e) = (utils.rsa_pub_components_from_public_key)(bytes)
                .map_err(|e| format!("is not a valid RSA public key: {e}"))?;
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        } else {
            return Err("is not an RSA, P-256 or Ed25519 public key".into());
        };
        JwtKey {
            kid: None,
            alg,
            key,
        }
        .checked()
    }

    /// Every signing key of a JWKS document (`{"keys": [...]}`), each with its `kid`. Keys
    /// Tidings does not verify with (`"use": "enc"`, other algorithms or curves) are skipped;
    /// a file with no usable key is refused.
    pub fn from_jwks(json: &[u8]) -> Result<Vec<JwtKey>, String> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<Value>,
        }
        let set: Set = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, raw) in set.keys.into_iter().enumerate() {
            let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("keys[{i}]: {e}"))?;
            if let Some(key) = Self::from_jwk(&jwk).map_err(|e| format!("keys[{i}]: {e}"))? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err("has no signing key for HS256, RS256, ES256 or EdDSA".into());
        }
        Ok(keys)
    }

    /// `Ok(None)`: a key Tidings does not verify with.
    fn from_jwk(jwk: &Jwk) -> Result<Option<JwtKey>, String> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return Ok(None);
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => return Ok(None),
        };
        let stated = jwk.common.key_algorithm;
        let agrees = match stated {
            None => true,
            Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
            Some(KeyAlgorithm::HS256) => alg == Algorithm::HS256,
            Some(_) => return Ok(None),
        };
        if !agrees {
            return Err(format!("`alg` does not match the key type ({alg:?})"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        JwtKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        }
        .checked()
        .map(Some)
    }

    /// Refuses a key that could not verify anything (or would fail inside the library).
    fn checked(self) -> Result<JwtKey, String> {
        match (self.alg, self.key.kind()) {
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, .. }) => {
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "is an RSA key of about {bits} bits; at least {MIN_RSA_BITS} are required"
                    ));
                }
            }
            (Algorithm::ES256, DecodingKeyKind::SecretOrDer(b)) if b.len() != 65 => {
                return Err("is not a P-256 key (ES256); other curves are not supported".into());
            }
            (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(b)) if b.len() != 32 => {
                return Err("is not an Ed25519 public key".into());
            }
            (Algorithm::HS256, DecodingKeyKind::SecretOrDer(b))
                if b.len() < MIN_HS256_SECRET_BYTES =>
            {
                return Err(format!(
                    "is an HS256 key of {} bytes; at least {MIN_HS256_SECRET_BYTES} are required",
                    b.len()
                ));
            }
            _ => {}
        }
        // Builds the verifier once, so a key the library cannot use fails here, not per token.
        jsonwebtoken::crypto::verify("", b"", &self.key, self.alg)
            .map_err(|e| format!("is not a usable {:?} key: {e}", self.alg))?;
        Ok(self)
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// The JWKS key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// How tokens are checked, besides the keys.
#[derive(Debug, Clone, Default)]
pub struct JwtRules {
    /// Accepted audiences; empty: no `aud` check, and a token carrying one is refused.
    pub audience: Vec<String>,
    /// Accepted issuers; empty: no `iss` check.
    pub issuer: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Publish selectors every valid token gets, filled from its claims.
    pub publish_templates: Vec<GrantTemplate>,
    /// Subscribe selectors every valid token gets, filled from its claims.
    pub subscribe_templates: Vec<GrantTemplate>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its rights: the `tidings` claim plus the configured templates.
    pub grant: Grant,
    /// The `sub` claim, if it is a string.
    pub subject: Option<String>,
    /// The `iss` claim, if it is a string.
    pub issuer: Option<String>,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Verifies JWTs against the configured keys.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    keys: Vec<(JwtKey, Validation)>,
    rules: JwtRules,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Value,
    #[serde(default)]
    kid: Option<Value>,
}

/// The `tidings` claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TidingsClaim {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    admin: bool,
}

impl JwtVerifier {
    /// A verifier over `keys` (at least one).
    pub fn new(keys: Vec<JwtKey>, rules: JwtRules) -> Result<JwtVerifier, String> {
        if keys.is_empty() {
            return Err("no JWT key is configured".into());
        }
        let keys = keys
            .into_iter()
            .map(|key| {
                let mut v = Validation::new(key.alg);
                v.leeway = rules.leeway.as_secs();
                v.validate_exp = true;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if !rules.audience.is_empty() {
                    v.set_audience(&rules.audience);
                    required.push("aud");
                }
                if !rules.issuer.is_empty() {
                    v.set_issuer(&rules.issuer);
                    required.push("iss");
                }
                v.set_required_spec_claims(&required);
                (key, v)
            })
            .collect();
        Ok(JwtVerifier { keys, rules })
    }

    /// Whether `token` has the shape of a JWT (JWS compact: three base64url parts, the first
    /// a JSON object), as opposed to a static token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.len() <= MAX_JWT_BYTES
            && token.starts_with("eyJ")
            && token.split('.').count() == 3
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// The grant of a valid token.
    pub fn verify(&self, token: &str) -> Result<Grant, JwtError> {
        self.verify_full(token).map(|v| v.grant)
    }

    /// What a valid token says: its grant, subject, issuer and expiry.
    pub fn verify_full(&self, token: &str) -> Result<Verified, JwtError> {
        if !Self::looks_like_jwt(token) {
            return Err(JwtError::Malformed);
        }
        let header = token.split('.').next().unwrap_or_default();
        let header: RawHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(JwtError::Malformed)?;
        let alg = match header.alg.as_str() {
            Some(s @ ("HS256" | "RS256" | "ES256" | "EdDSA")) => {
                s.parse::<Algorithm>().map_err(|_| JwtError::Malformed)?
            }
            Some(s) if s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                return Err(JwtError::UnsupportedAlgorithm(Some(s.to_owned())));
            }
            _ => return Err(JwtError::UnsupportedAlgorithm(None)),
        };
        let kid = header
            .kid
            .as_ref()
            .and_then(Value::as_str)
            .filter(|k| self.keys.iter().any(|(key, _)| key.kid() == Some(*k)));
        let mut tried = false;
        for (key, validation) in &self.keys {
            if key.kid() != kid || key.alg != alg {
                continue;
            }
            tried = true;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => {
                    let claims = &data.claims;
                    let text =
                        |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
                    return Ok(Verified {
                        grant: self.grant(claims)?,
                        subject: text("sub"),
                        issuer: text("iss"),
                        // `exp` is required and checked above, so it is a number here.
                        expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
                    });
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(refusal(e.into_kind())),
            }
        }
        Err(if tried {
            JwtError::BadSignature
        } else {
            JwtError::NoKey(alg_name(alg))
        })
    }

    fn grant(&self, claims: &Map<String, Value>) -> Result<Grant, JwtError> {
        let mut grant = Grant {
            name: match claims.get("sub").and_then(Value::as_str) {
                Some(sub) => format!("jwt:{}", sub.chars().take(64).collect::<String>()),
                None => "jwt".to_owned(),
            },
            publish: Vec::new(),
            subscribe: Vec::new(),
            admin: false,
        };
        if let Some(value) = claims.get("tidings") {
            let claim = TidingsClaim::deserialize(value)
                .map_err(|e| JwtError::BadClaim(format!("`tidings`: {e}")))?;
            let parse = |list: &[String], what: &str| {
                list.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        Pattern::parse(s)
                            .map_err(|e| JwtError::BadClaim(format!("`tidings.{what}[{i}]`: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            grant.publish = parse(&claim.publish, "publish")?;
            grant.subscribe = parse(&claim.subscribe, "subscribe")?;
            grant.admin = claim.admin;
        }
        let fill = |templates: &[GrantTemplate], into: &mut Vec<Pattern>| {
            for t in templates {
                if let Some(p) = t
                    .render(|name| claims.get(name))
                    .map_err(JwtError::Template)?
                {
                    into.push(p);
                }
            }
            Ok(())
        };
        fill(&self.rules.publish_templates, &mut grant.publish)?;
        fill(&self.rules.subscribe_templates, &mut grant.subscribe)?;
        Ok(grant)
    }
}

fn refusal(kind: ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c),
        ErrorKind::InvalidClaimFormat(c) => JwtError::BadClaim(format!("`{c}`: wrong type")),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            JwtError::UnsupportedAlgorithm(None)
        }
        _ => JwtError::Malformed,
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "another algorithm",
    }
}

fn provider() -> &'static jsonwebtoken::crypto::CryptoProvider {
    jsonwebtoken::crypto::CryptoProvider::try_get_default()
        .expect("jsonwebtoken is built with exactly one crypto provider (rust_crypto)")
}

/// A key that signs tokens (`tidings token`).
#[derive(Debug)]
pub struct SigningKey {
    alg: Algorithm,
    key: EncodingKey,
}

/// What a minted token says.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// Selectors it may publish to.
    pub publish: Vec<String>,
    /// Selectors it may subscribe to.
    pub subscribe: Vec<String>,
    /// The admin right.
    pub admin: bool,
    /// Lifetime from now.
    pub ttl: Duration,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`.
    pub aud: Option<String>,
    /// `iss`.
    pub iss: Option<String>,
    /// The header's `kid` (to pick a JWKS key).
    pub kid: Option<String>,
}

impl SigningKey {
    /// An HS256 key from the shared secret.
    pub fn hs256(secret: &[u8]) -> Result<SigningKey, String> {
        JwtKey::hs256(secret)?;
        Ok(SigningKey {
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(secret).map_err(|e| e.to_string())?,
        })
    }

    /// A PKCS#8 PEM private key (or PKCS#1 `RSA PRIVATE KEY`): RSA signs RS256, P-256 ES256,
    /// Ed25519 EdDSA.
    pub fn from_private_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "is not a PEM file".to_owned())?;
        if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            return Err("is a SEC1 EC key; convert it to PKCS#8 \
                        (`openssl pkcs8 -topk8 -nocrypt -in KEY`)"
                .into());
        }
        let (alg, key) = if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, k)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, k)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, k)
        } else {
            return Err("is not a PEM RSA, P-256 or Ed25519 private key".into());
        };
        let key = SigningKey { alg, key };
        // Signs once, so a key of another curve fails here with a clear message.
        key.sign(&Map::new(), None)
            .map_err(|e| format!("cannot sign {}: {e}", key.algorithm()))?;
        Ok(key)
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> &'static str {
        alg_name(self.alg)
    }

    /// A signed token for `spec`, issued at `now` (seconds since the Unix epoch).
    pub fn mint(&self, spec: &TokenSpec, now: u64) -> Result<String, String> {
        let mut claims = Map::new();
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + spec.ttl.as_secs()).into());
        for (name, value) in [("sub", &spec.sub), ("aud", &spec.aud), ("iss", &spec.iss)] {
            if let Some(v) = value {
                claims.insert(name.into(), v.clone().into());
            }
        }
        for (what, list) in [("publish", &spec.publish), ("subscribe", &spec.subscribe)] {
            for s in list {
                Pattern::parse(s).map_err(|e| format!("{what} `{s}`: {e}"))?;
            }
        }
        claims.insert(
            "tidings".into(),
            serde_json::json!({
                "publish": spec.publish,
                "subscribe": spec.subscribe,
                "admin": spec.admin,
            }),
        );
        self.sign(&claims, spec.kid.clone())
    }

    fn sign(&self, claims: &Map<String, Value>, kid: Option<String>) -> Result<String, String> {
        let mut header = Header::new(self.alg);
        header.typ = Some("JWT".into());
        header.kid = kid;
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
