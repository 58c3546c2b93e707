//! `[auth]`: static bearer tokens, given as `SECRET:publish=SEL;subscribe=SEL` specs
//! (`--token`, `TIDINGS_TOKENS`, or strings in `auth.tokens`) or as `[[auth.tokens]]` tables.

use std::fmt;

use clap::Args;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tidings_auth::{Grant, StaticToken};
use tidings_proto::Pattern;

use super::{ConfigError, bad, patterns};

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
}

/// One entry of `auth.tokens`: a spec string or a table.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RawToken {
    /// `SECRET:publish=SEL,SEL;subscribe=SEL`.
    Spec(String),
    /// `[[auth.tokens]]`.
    Table(RawTokenTable),
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
    pub token: String,
    /// A name for logs [default: token-N].
    #[serde(default)]
    pub name: Option<String>,
    /// Selectors it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Selectors it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

impl RawAuth {
    /// The tokens; a spec is named `auth.token[i]` in errors, a table `auth.tokens[i]`.
    pub(super) fn validate(self) -> Result<Vec<StaticToken>, ConfigError> {
        let mut tokens = Vec::new();
        for (i, raw) in self.tokens.into_iter().enumerate() {
            let token = match raw {
                RawToken::Spec(spec) => {
                    parse_token_spec(&spec, i).map_err(|r| bad(&format!("auth.token[{i}]"), r))?
                }
                RawToken::Table(raw) => {
                    let setting = format!("auth.tokens[{i}]");
                    if raw.token.len() < 8 {
                        return Err(bad(&setting, "token must be at least 8 characters"));
                    }
                    let grant = Grant {
                        name: raw.name.unwrap_or_else(|| format!("token-{i}")),
                        publish: patterns(&format!("{setting}.publish"), &raw.publish)?,
                        subscribe: patterns(&format!("{setting}.subscribe"), &raw.subscribe)?,
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
}

/// `SECRET:name=NAME;publish=SEL,SEL;subscribe=SEL`, the `index`th token. The grant's name
/// (what logs show) is the `name=` part, else `token-<index>`: never derived from the secret.
pub(super) fn parse_token_spec(spec: &str, index: usize) -> Result<StaticToken, String> {
    let (secret, rights) = spec
        .split_once(':')
        .ok_or("expected SECRET:publish=SEL,...;subscribe=SEL,...")?;
    if secret.len() < 8 {
        return Err("token must be at least 8 characters".into());
    }
    let mut grant = Grant {
        name: format!("token-{index}"),
        publish: vec![],
        subscribe: vec![],
    };
    for part in rights.split(';').filter(|p| !p.is_empty()) {
        let (right, sels) = part
            .split_once('=')
            .ok_or(format!("`{part}` is not RIGHT=SEL,..."))?;
        let list = match right {
            "name" if !sels.is_empty() && !sels.chars().any(char::is_control) => {
                grant.name = sels.to_owned();
                continue;
            }
            "name" => return Err("name: must be non-empty text without control characters".into()),
            "publish" | "pub" => &mut grant.publish,
            "subscribe" | "sub" => &mut grant.subscribe,
            other => return Err(format!("`{other}` is not name, publish or subscribe")),
        };
        for sel in sels.split(',').filter(|s| !s.is_empty()) {
            list.push(Pattern::parse(sel).map_err(|e| format!("`{sel}` {e}"))?);
        }
    }
    Ok(StaticToken {
        secret: secret.to_owned(),
        grant,
    })
}
