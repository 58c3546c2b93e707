//! `[auth]` configuration: JWT keys and rules load or are refused naming the setting; secrets stay out of Debug.

use std::path::PathBuf;

use crate::config::{Config, ConfigError, RawConfig};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tidings-auth/src/jwt/testdata")
        .join(name)
}

fn config(toml: &str) -> Result<Config, ConfigError> {
    RawConfig::from_toml(toml).and_then(RawConfig::validate)
}

const SECRET: &str = "an-hs256-secret-that-is-32-bytes-long";

#[test]
fn jwt_keys_load_and_open_the_hub_to_non_loopback() {
    let toml = format!(
        r#"
        listen = "0.0.0.0:0"
        [auth]
        jwt_hs256_secret = "{SECRET}"
        jwt_public_keys = ["{}", "{}", "{}"]
        jwt_audience = ["tidings"]
        jwt_leeway = "10s"
        jwt_subscribe_templates = ["users/{{sub}}/*"]
        "#,
        testdata("rsa.pub").display(),
        testdata("p256.pub").display(),
        testdata("ed25519.pub").display(),
    );
    let c = config(&toml).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.jwt.is_some());
    assert!(c.tokens.is_empty());
    let debug = format!("{c:?}");
    assert!(!debug.contains(SECRET), "the secret is in Debug output");
    let raw = RawConfig::from_toml(&toml).unwrap();
    assert!(!format!("{raw:?}").contains(SECRET));
}

#[test]
fn static_token_secrets_are_not_in_debug_output() {
    // The spec form and the table form.
    for toml in [
        r#"[auth]
        tokens = ["spec-secret-1:publish=*;admin"]"#,
        r#"[[auth.tokens]]
        token = "table-secret-2"
        publish = ["*"]
        admin = true"#,
    ] {
        let raw = RawConfig::from_toml(toml).unwrap();
        assert!(!format!("{raw:?}").contains("secret-"), "{raw:?}");
        let c = raw.validate().unwrap();
        assert!(c.tokens[0].grant.admin);
        assert_eq!(c.tokens[0].grant.name, "token-0");
        assert!(!format!("{c:?}").contains("secret-"));
    }
}

#[test]
fn bad_jwt_settings_are_refused_naming_the_setting() {
    let cases = [
        (
            "[auth]\njwt_hs256_secret = \"short-secret\"".to_owned(),
            "auth.jwt_hs256_secret",
            "at least 32",
        ),
        (
            format!(
                "[auth]\njwt_public_keys = [\"{}\"]",
                testdata("rsa.key").display()
            ),
            "auth.jwt_public_keys[0]",
            "private key",
        ),
        (
            format!(
                "[auth]\njwt_public_keys = [\"{}\"]",
                testdata("p384.pub").display()
            ),
            "auth.jwt_public_keys[0]",
            "P-256",
        ),
        (
            "[auth]\njwt_public_keys = [\"/nonexistent/key.pem\"]".to_owned(),
            "auth.jwt_public_keys[0]",
            "/nonexistent/key.pem",
        ),
        (
            format!(
                "[auth]\njwks_files = [\"{}\"]",
                testdata("rsa.pub").display()
            ),
            "auth.jwks_files[0]",
            "not a JWKS",
        ),
        (
            format!("[auth]\njwt_hs256_secret = \"{SECRET}\"\njwt_leeway = \"1h\""),
            "auth.jwt_leeway",
            "5m",
        ),
        (
            format!(
                "[auth]\njwt_hs256_secret = \"{SECRET}\"\njwt_subscribe_templates = [\"a/*\", \"u/{{sub}}*\"]"
            ),
            "auth.jwt_subscribe_templates[1]",
            "u/{sub}*",
        ),
        (
            "[auth]\njwt_audience = [\"tidings\"]".to_owned(),
            "auth.jwt_audience",
            "without a JWT key",
        ),
    ];
    for (toml, setting, why) in cases {
        let e = config(&toml).expect_err(&toml);
        assert_eq!(e.setting, setting, "{toml}: {e}");
        assert!(e.reason.contains(why), "{toml}: {e}");
        assert!(!e.to_string().contains(SECRET));
    }
    // A short secret is refused without being echoed.
    let e = config("[auth]\njwt_hs256_secret = \"short-secret\"").unwrap_err();
    assert!(!e.to_string().contains("short-secret"), "{e}");
}

#[test]
fn ticket_ttl_cookie_name_and_cookie_publish_header() {
    let c = config("").unwrap();
    assert_eq!(c.credentials.ticket_ttl, std::time::Duration::from_secs(60));
    assert_eq!(c.credentials.cookie_name, "tidings_token");
    assert_eq!(c.credentials.cookie_publish_header, None);
    let c = config(
        "[auth]\nticket_ttl = \"5s\"\ncookie_name = \"sess\"\ncookie_publish_header = \"X-Csrf\"",
    )
    .unwrap();
    assert_eq!(c.credentials.ticket_ttl, std::time::Duration::from_secs(5));
    assert_eq!(c.credentials.cookie_name, "sess");
    assert_eq!(
        c.credentials
            .cookie_publish_header
            .as_ref()
            .map(|h| h.as_str()),
        Some("x-csrf")
    );
    for (toml, setting, why) in [
        ("[auth]\nticket_ttl = \"0s\"", "auth.ticket_ttl", "1s"),
        ("[auth]\nticket_ttl = \"1h\"", "auth.ticket_ttl", "10m"),
        (
            "[auth]\ncookie_name = \"a b\"",
            "auth.cookie_name",
            "not a cookie name",
        ),
        (
            "[auth]\ncookie_name = \"a=b\"",
            "auth.cookie_name",
            "not a cookie name",
        ),
        (
            "[auth]\ncookie_name = \"\"",
            "auth.cookie_name",
            "not a cookie name",
        ),
        (
            "[auth]\ncookie_publish_header = \"Content-Type\"",
            "auth.cookie_publish_header",
            "X-",
        ),
        (
            "[auth]\ncookie_publish_header = \"x y\"",
            "auth.cookie_publish_header",
            "not a header name",
        ),
    ] {
        let e = config(toml).expect_err(toml);
        assert_eq!(e.setting, setting, "{toml}: {e}");
        assert!(e.reason.contains(why), "{toml}: {e}");
    }
}
