//! `tidings check-config FILE`: the settings `tidings serve --config FILE` would run with
//! (the file over the defaults, under the `TIDINGS_*` environment), validated offline (no
//! port bound, no store opened) and printed as TOML with every secret redacted.
//!
//! The defaults come from `examples/tidings.toml`, which states every setting with its
//! default (tests in `config` hold it to both).

use std::ffi::OsString;
use std::path::Path;

use serde_json::Value;

use super::layers::{ServeArgs, load};
use super::{ConfigError, RawConfig, bad, layered};

/// What replaces a secret in the printout.
pub const REDACTED: &str = "<redacted>";

const DEFAULTS: &str = include_str!("../../../../examples/tidings.toml");

/// Validates `file` as `serve` would read it (with `env`), and renders the effective
/// settings as TOML, secrets redacted.
pub fn check(
    file: &Path,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<String, ConfigError> {
    let flags = ServeArgs {
        config: Some(file.to_owned()),
        ..ServeArgs::default()
    };
    let raw = load(flags, env)?;
    let defaults = RawConfig::from_toml(DEFAULTS)?;
    let effective = layered([defaults, raw])?;
    effective.clone().validate()?;
    let mut value =
        serde_json::to_value(&effective).map_err(|e| bad("configuration", e.to_string()))?;
    redact(&mut value);
    let value: toml::Value = serde_json::from_value(strip_nulls(value))
        .map_err(|e| bad("configuration", e.to_string()))?;
    toml::to_string(&value).map_err(|e| bad("configuration", e.to_string()))
}

/// Replaces every secret: the bearer part of token specs, token tables' `token`,
/// `auth.jwt_hs256_secret`, `metrics.token` and `cluster.token`.
fn redact(config: &mut Value) {
    if let Some(tokens) = config
        .pointer_mut("/auth/tokens")
        .and_then(Value::as_array_mut)
    {
        for token in tokens {
            match token {
                Value::String(spec) => {
                    let grants = spec.split_once(':').map_or("", |(_, g)| g);
                    *spec = format!("{REDACTED}:{grants}");
                }
                Value::Object(table) => {
                    table.insert("token".into(), Value::from(REDACTED));
                }
                _ => {}
            }
        }
    }
    for pointer in ["/metrics/token", "/auth/jwt_hs256_secret", "/cluster/token"] {
        if let Some(secret) = config.pointer_mut(pointer)
            && !secret.is_null()
        {
            *secret = Value::from(REDACTED);
        }
    }
}

/// TOML has no null: unset optional settings are left out.
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str) -> Result<String, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        check(&path, std::iter::empty())
    }

    #[test]
    fn prints_defaults_and_the_file_with_secrets_redacted() {
        let out = check_text(
            "listen = \"127.0.0.1:4000\"\n\
             [auth]\ntokens = [\"spec-secret-123456:publish=a/*;subscribe=*\", \
             {token = \"table-secret-123456\", name = \"t\", publish = [\"b\"]}]\n\
             jwt_hs256_secret = \"jwt-secret-0123456789-0123456789-0123\"\n\
             [metrics]\ntoken = \"metrics-secret-123456\"\n",
        )
        .unwrap();
        for secret in [
            "spec-secret",
            "table-secret",
            "metrics-secret",
            "jwt-secret",
        ] {
            assert!(!out.contains(secret), "{secret} printed:\n{out}");
        }
        let v: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:4000"));
        assert_eq!(
            v["retention"]["max_age"].as_str(),
            Some("7d"),
            "defaults filled in"
        );
        assert_eq!(
            v["auth"]["tokens"][0].as_str(),
            Some("<redacted>:publish=a/*;subscribe=*")
        );
        assert_eq!(v["auth"]["tokens"][1]["token"].as_str(), Some(REDACTED));
        assert_eq!(v["auth"]["tokens"][1]["name"].as_str(), Some("t"));
        assert_eq!(v["metrics"]["token"].as_str(), Some(REDACTED));
        assert_eq!(v["auth"]["jwt_hs256_secret"].as_str(), Some(REDACTED));
    }

    #[test]
    fn an_invalid_file_is_refused_naming_the_setting() {
        let e = check_text("[retention]\nmax_age = \"soon\"\n").unwrap_err();
        assert_eq!(e.setting, "retention.max_age", "{e}");
        let e = check_text("nonsense = 1\n").unwrap_err();
        assert!(e.reason.contains("nonsense"), "{e}");
    }
}
