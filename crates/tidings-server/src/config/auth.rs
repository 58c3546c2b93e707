//! `[auth]`: static bearer tokens, given as `SECRET:name=N;publish=SEL;subscribe=SEL;admin`
//! specs (`--token`, `TIDINGS_TOKENS`, or strings in `auth.tokens`) or as `[[auth.tokens]]`
//! tables;
//! and JWT verification: an HS256 secret, PEM public keys, JWKS files, the `aud`/`iss` to
//! require, the clock leeway, and grant templates filled from each token's claims; and where
//! browsers present credentials: the connect-ticket TTL, the cookie name, and the header that
//! lets a cookie-authenticated publish through.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tidings_auth::{Grant, GrantTemplate, JwtKey, JwtRules, JwtVerifier, Secret, StaticToken};
use tidings_proto::Pattern;

use super::{ConfigError, bad, duration, patterns};
use crate::credential::CredentialOptions;

/// Shortest and longest ticket TTL.
const MIN_TICKET_TTL: Duration = Duration::from_secs(1);
const MAX_TICKET_TTL: Duration = Duration::from_secs(600);
/// Largest clock leeway accepted for `exp`/`nbf`.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Largest key or JWKS file read.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// `[auth]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// A static token: `SECRET:publish=SEL,SEL;subscribe=SEL` (repeatable; in the environment,
    /// several separated by spaces; in the file, `[[auth.tokens]]` tables or spec strings).
    #[arg(
        long = "token",
        env = "TIDINGS_TOKENS",
        value_name = "SPEC",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// The HS256 secret JWTs may be signed with (at least 32 bytes). Prefer the environment
    /// variable: a flag's value is visible to other local users.
    #[arg(long, env = "TIDINGS_JWT_HS256_SECRET", value_name = "SECRET")]
    pub jwt_hs256_secret: Option<Secret>,
    /// A PEM public key JWTs may be signed with; its type fixes the algorithm: RSA → RS256,
    /// P-256 → ES256, Ed25519 → EdDSA (repeatable).
    #[arg(
        long = "jwt-public-key",
        env = "TIDINGS_JWT_PUBLIC_KEYS",
        value_name = "FILE",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub jwt_public_keys: Vec<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`); a token's `kid` selects its key (repeatable).
    #[arg(
        long = "jwks-file",
        env = "TIDINGS_JWKS_FILES",
        value_name = "FILE",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub jwks_files: Vec<PathBuf>,
    /// An accepted JWT audience; when set, `aud` is required (repeatable).
    #[arg(
        long = "jwt-audience",
        env = "TIDINGS_JWT_AUDIENCE",
        value_name = "AUD",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub jwt_audience: Vec<String>,
    /// An accepted JWT issuer; when set, `iss` is required (repeatable).
    #[arg(
        long = "jwt-issuer",
        env = "TIDINGS_JWT_ISSUER",
        value_name = "ISS",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub jwt_issuer: Vec<String>,
    /// Clock skew allowed on a JWT's `exp` and `nbf` [default: 30s; at most 5m].
    #[arg(long, env = "TIDINGS_JWT_LEEWAY", value_name = "DURATION")]
    pub jwt_leeway: Option<String>,
    /// A publish selector every valid JWT gets, `{claim}` filled from its claims, e.g.
    /// `users/{sub}/*` (repeatable; comma-separated).
    #[arg(
        long = "jwt-publish-template",
        env = "TIDINGS_JWT_PUBLISH_TEMPLATES",
        value_name = "TEMPLATE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub jwt_publish_templates: Vec<String>,
    /// A subscribe selector every valid JWT gets, `{claim}` filled from its claims, e.g.
    /// `users/{sub}/*` (repeatable; comma-separated).
    #[arg(
        long = "jwt-subscribe-template",
        env = "TIDINGS_JWT_SUBSCRIBE_TEMPLATES",
        value_name = "TEMPLATE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub jwt_subscribe_templates: Vec<String>,
    /// How long a connect ticket from `POST /tickets` stays valid for its one connection
    /// [default: 60s; 1s to 10m].
    #[arg(long, env = "TIDINGS_TICKET_TTL", value_name = "DURATION")]
    pub ticket_ttl: Option<String>,
    /// The cookie a browser's `EventSource` (`withCredentials`) presents its token in
    /// [default: tidings_token].
    #[arg(long, env = "TIDINGS_COOKIE_NAME", value_name = "NAME")]
    pub cookie_name: Option<String>,
    /// A request header whose presence lets a publish be authenticated by the cookie alone
    /// (a cross-site page cannot add it without a CORS preflight) [default: none: a cookie
    /// alone never authenticates a publish].
    #[arg(long, env = "TIDINGS_COOKIE_PUBLISH_HEADER", value_name = "HEADER")]
    pub cookie_publish_header: Option<String>,
}

/// One entry of `auth.tokens`: a spec string or a table.
#[derive(Clone, Serialize)]
#[serde(untagged)]
pub enum RawToken {
    /// `SECRET:publish=SEL,SEL;subscribe=SEL`.
    Spec(String),
    /// `[[auth.tokens]]`.
    Table(RawTokenTable),
}

/// Never shows the secret.
impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawToken::Spec(spec) => {
                let rights = spec.split_once(':').map_or("", |(_, r)| r);
                write!(f, "Spec(\"[redacted]:{rights}\")")
            }
            RawToken::Table(t) => t.fmt(f),
        }
    }
}

impl From<String> for RawToken {
    fn from(spec: String) -> RawToken {
        RawToken::Spec(spec)
    }
}

/// Deserialized by hand rather than `untagged`, so an unknown key inside a table is still
/// reported by name.
impl<'de> Deserialize<'de> for RawToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawToken, D::Error> {
        struct TokenVisitor;
        impl<'de> Visitor<'de> for TokenVisitor {
            type Value = RawToken;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token spec string or a token table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawToken, E> {
                Ok(RawToken::Spec(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawToken, A::Error> {
                RawTokenTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawToken::Table)
            }
        }
        d.deserialize_any(TokenVisitor)
    }
}

/// `[[auth.tokens]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenTable {
    /// The bearer secret.
    pub token: Secret,
    /// A name for logs [default: token-N].
    #[serde(default)]
    pub name: Option<String>,
    /// Selectors it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Selectors it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// The admin right.
    #[serde(default)]
    pub admin: bool,
}

impl RawAuth {
    /// Where credentials come from: the ticket TTL, the cookie, the cookie-publish header.
    pub(super) fn credentials(&self) -> Result<CredentialOptions, ConfigError> {
        let defaults = CredentialOptions::default();
        let ticket_ttl = duration("auth.ticket_ttl", self.ticket_ttl.as_deref(), "60s")?;
        if !(MIN_TICKET_TTL..=MAX_TICKET_TTL).contains(&ticket_ttl) {
            return Err(bad("auth.ticket_ttl", "must be between 1s and 10m"));
        }
        let cookie_name = match &self.cookie_name {
            None => defaults.cookie_name.clone(),
            Some(name) => {
                // A cookie name is an HTTP token (RFC 6265 and 9110).
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    return Err(bad(
                        "auth.cookie_name",
                        format!("`{name}` is not a cookie name (letters, digits, -_.!#$%&'*+^`|~)"),
                    ));
                }
                name.clone()
            }
        };
        let cookie_publish_header = match &self.cookie_publish_header {
            None => None,
            Some(name) => {
                let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    bad(
                        "auth.cookie_publish_header",
                        format!("`{name}` is not a header name"),
                    )
                })?;
                if !header.as_str().starts_with("x-") {
                    // A simple (CORS-safelisted) header would let a cross-site form send it.
                    return Err(bad(
                        "auth.cookie_publish_header",
                        "must be a custom header starting with X-, which a cross-site page \
                         cannot send without a CORS preflight",
                    ));
                }
                Some(header)
            }
        };
        Ok(CredentialOptions {
            ticket_ttl,
            cookie_name,
            cookie_publish_header,
            // Set from `[limits]` by the caller.
            ..defaults
        })
    }

    /// The static tokens and the JWT verifier (`None`: JWTs are not accepted). Key files are
    /// read here, so a bad key is refused before any port is bound.
    pub(super) fn validate(self) -> Result<(Vec<StaticToken>, Option<JwtVerifier>), ConfigError> {
        let jwt = jwt(&self);
        let tokens = static_tokens(self.tokens)?;
        Ok((tokens, jwt?))
    }
}

fn read_key_file(setting: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;
    let fail = |e: String| bad(setting, format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_KEY_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

fn jwt(raw: &RawAuth) -> Result<Option<JwtVerifier>, ConfigError> {
    let mut keys = Vec::new();
    if let Some(secret) = &raw.jwt_hs256_secret {
        keys.push(
            JwtKey::hs256(secret.expose().as_bytes())
                .map_err(|r| bad("auth.jwt_hs256_secret", r))?,
        );
    }
    for (i, path) in raw.jwt_public_keys.iter().enumerate() {
        let setting = format!("auth.jwt_public_keys[{i}]");
        let pem = read_key_file(&setting, path)?;
        keys.push(
            JwtKey::from_public_pem(&pem)
                .map_err(|r| bad(&setting, format!("{}: {r}", path.display())))?,
        );
    }
    for (i, path) in raw.jwks_files.iter().enumerate() {
        let setting = format!("auth.jwks_files[{i}]");
        let json = read_key_file(&setting, path)?;
        keys.extend(
            JwtKey::from_jwks(&json)
                .map_err(|r| bad(&setting, format!("{}: {r}", path.display())))?,
        );
    }
    let leeway = duration("auth.jwt_leeway", raw.jwt_leeway.as_deref(), "30s")?;
    if leeway > MAX_LEEWAY {
        return Err(bad("auth.jwt_leeway", "must be at most 5m"));
    }
    let templates = |setting: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, t)| GrantTemplate::parse(t).map_err(|r| bad(&format!("{setting}[{i}]"), r)))
            .collect::<Result<Vec<_>, _>>()
    };
    let rules = JwtRules {
        audience: raw.jwt_audience.clone(),
        issuer: raw.jwt_issuer.clone(),
        leeway,
        publish_templates: templates("auth.jwt_publish_templates", &raw.jwt_publish_templates)?,
        subscribe_templates: templates(
            "auth.jwt_subscribe_templates",
            &raw.jwt_subscribe_templates,
        )?,
    };
    if keys.is_empty() {
        let set = [
            ("auth.jwt_audience", !rules.audience.is_empty()),
            ("auth.jwt_issuer", !rules.issuer.is_empty()),
            (
                "auth.jwt_publish_templates",
                !rules.publish_templates.is_empty(),
            ),
            (
                "auth.jwt_subscribe_templates",
                !rules.subscribe_templates.is_empty(),
            ),
        ];
        if let Some((setting, _)) = set.iter().find(|(_, on)| *on) {
            return Err(bad(
                setting,
                "has no effect without a JWT key (--jwt-hs256-secret, --jwt-public-key or \
                 --jwks-file)",
            ));
        }
        return Ok(None);
    }
    JwtVerifier::new(keys, rules)
        .map(Some)
        .map_err(|r| bad("auth", r))
}

/// The static tokens; a spec is named `auth.token[i]` in errors, a table `auth.tokens[i]`.
fn static_tokens(raw_tokens: Vec<RawToken>) -> Result<Vec<StaticToken>, ConfigError> {
    let mut tokens = Vec::new();
    for (i, raw) in raw_tokens.into_iter().enumerate() {
        let token = match raw {
            RawToken::Spec(spec) => {
                parse_token_spec(&spec, i).map_err(|r| bad(&format!("auth.token[{i}]"), r))?
            }
            RawToken::Table(raw) => {
                let setting = format!("auth.tokens[{i}]");
                if raw.token.expose().len() < 8 {
                    return Err(bad(&setting, "token must be at least 8 characters"));
                }
                let grant = Grant {
                    name: raw.name.unwrap_or_else(|| format!("token-{i}")),
                    publish: patterns(&format!("{setting}.publish"), &raw.publish)?,
                    subscribe: patterns(&format!("{setting}.subscribe"), &raw.subscribe)?,
                    admin: raw.admin,
                };
                StaticToken {
                    secret: raw.token,
                    grant,
                }
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// `SECRET:name=NAME;publish=SEL,SEL;subscribe=SEL;admin`, the `index`th token. The grant's
/// name (what logs show) is the `name=` part, else `token-<index>`: never derived from the
/// secret.
pub(super) fn parse_token_spec(spec: &str, index: usize) -> Result<StaticToken, String> {
    let (secret, rights) = spec
        .split_once(':')
        .ok_or("expected SECRET:publish=SEL,...;subscribe=SEL,...;admin")?;
    if secret.len() < 8 {
        return Err("token must be at least 8 characters".into());
    }
    let mut grant = Grant {
        name: format!("token-{index}"),
        publish: vec![],
        subscribe: vec![],
        admin: false,
    };
    for part in rights.split(';').filter(|p| !p.is_empty()) {
        if part == "admin" {
            grant.admin = true;
            continue;
        }
        let (right, sels) = part
            .split_once('=')
            .ok_or(format!("`{part}` is not RIGHT=SEL,... or admin"))?;
        let list = match right {
            "name" if !sels.is_empty() && !sels.chars().any(char::is_control) => {
                grant.name = sels.to_owned();
                continue;
            }
            "name" => return Err("name: must be non-empty text without control characters".into()),
            "publish" | "pub" => &mut grant.publish,
            "subscribe" | "sub" => &mut grant.subscribe,
            "admin" => return Err("`admin` takes no selectors; write `admin` alone".into()),
            other => {
                return Err(format!(
                    "`{other}` is not name, publish, subscribe or admin"
                ));
            }
        };
        for sel in sels.split(',').filter(|s| !s.is_empty()) {
            list.push(Pattern::parse(sel).map_err(|e| format!("`{sel}` {e}"))?);
        }
    }
    Ok(StaticToken {
        secret: Secret::new(secret),
        grant,
    })
}

#[cfg(test)]
mod tests;
