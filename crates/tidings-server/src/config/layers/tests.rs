//! Layering: every setting that has a flag also has a `TIDINGS_*` variable and a file key,
//! each source carries it, and the precedence is file < env < flags — driven from clap's own
//! list of arguments, so a new setting that is not layered fails here.

use std::ffi::OsString;
use std::time::Duration;

use clap::FromArgMatches as _;
use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::endpoint::Origins;

/// A valid value for a setting, by clap's value name, different for each layer
/// (0: file, 1: environment, 2: flag).
fn sample(value_name: &str, layer: usize) -> String {
    let n = 11 + layer;
    match value_name {
        "ADDR" => format!("127.0.0.{}:{}", layer + 1, 1700 + layer),
        "DIR" => format!("/tmp/layer-{layer}"),
        "FILTER" => format!("layer{layer}=debug"),
        "DURATION" => format!("{n}s"),
        "N" => n.to_string(),
        "SIZE" => format!("{n}KiB"),
        "MODE" => ["durable", "fast", "memory"][layer].to_owned(),
        "ORIGIN" => format!("https://layer-{layer}.example"),
        "SPEC" => format!("secret-of-layer-{layer}:publish=*"),
        "SECRET" => format!("an-hs256-secret-of-layer-{layer}-of-32-bytes"),
        "FILE" => format!("/tmp/layer-{layer}.pem"),
        "AUD" => format!("audience-{layer}"),
        "ISS" => format!("https://issuer-{layer}.example"),
        "TEMPLATE" => format!("layer-{layer}/{{sub}}/*"),
        "HOST" => format!("layer-{layer}.example"),
        "PREFIX" => format!("layer-{layer}/"),
        "FORMAT" => ["pretty", "json", "pretty"][layer].to_owned(),
        "IP" => format!("10.0.0.{layer}"),
        "HEADER" => format!("x-csrf-layer-{layer}"),
        "NAME" => format!("layer-{layer}-event"),
        "TOPIC" => format!("layer-{layer}/topic"),
        "URL" => format!("nats://127.0.0.{}:4222", layer + 1),
        "CREDS" => format!("/etc/tidings/layer-{layer}.creds"),
        other => panic!("no sample value for value name {other}: add one to `sample`"),
    }
}

/// Parses `flags` as `tidings serve` does: clap without the environment.
fn flags(args: &[OsString]) -> ServeArgs {
    let matches = without_env(ServeArgs::command())
        .no_binary_name(true)
        .try_get_matches_from(args)
        .unwrap_or_else(|e| panic!("flags {args:?}: {e}"));
    ServeArgs::from_arg_matches(&matches).expect("serve args")
}

fn json(raw: RawConfig) -> Value {
    serde_json::to_value(raw).expect("RawConfig serializes")
}

/// The dotted paths of every value that is set (not null, not an empty list).
fn set_paths(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                set_paths(v, &path, out);
            }
        }
        Value::Null => {}
        Value::Array(a) if a.is_empty() => {}
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// A TOML file setting `path` (`key` or `section.key`) to `value`. JSON scalars and lists of
/// them are written the same way in TOML.
fn toml_file(path: &str, value: &Value) -> String {
    match path.split_once('.') {
        None => format!("{path} = {value}\n"),
        Some((section, key)) => format!("[{section}]\n{key} = {value}\n"),
    }
}

#[test]
fn every_setting_can_be_given_by_file_env_and_flag_with_file_below_env_below_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = ServeArgs::command();
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "config" {
            continue; // names the file itself
        }
        let long = arg
            .get_long()
            .unwrap_or_else(|| panic!("setting {id} has no flag"));
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{long} has no TIDINGS_* variable"))
            .to_owned();
        let value_name = arg.get_value_names().expect("value name")[0].as_str();
        let flag = |layer: usize| OsString::from(format!("--{long}={}", sample(value_name, layer)));
        // What each layer's value looks like once parsed, and the file key it lives under.
        let want: Vec<Value> = (0..3)
            .map(|layer| json(flags(&[flag(layer)]).settings))
            .collect();
        let mut leaves = Vec::new();
        set_paths(&want[0], "", &mut leaves);
        assert_eq!(
            leaves.len(),
            1,
            "--{long} sets {leaves:?}, not one file key"
        );
        let (key, file_value) = &leaves[0];

        // The file key is accepted (unknown keys are refused) and carries the value.
        let file = dir.path().join(format!("{id}.toml"));
        std::fs::write(&file, toml_file(key, file_value)).expect("write file");
        let config_flag = || OsString::from(format!("--config={}", file.display()));
        let env_var = || (OsString::from(&env), OsString::from(sample(value_name, 1)));

        let file_only = load(flags(&[config_flag()]), []).expect("file only");
        assert_eq!(json(file_only), want[0], "file key `{key}` for --{long}");
        let env_only = load(ServeArgs::default(), [env_var()]).expect("env only");
        assert_eq!(json(env_only), want[1], "{env:?} for --{long}");
        let flag_only = load(flags(&[flag(2)]), []).expect("flag only");
        assert_eq!(json(flag_only), want[2], "--{long}");

        let env_over_file = load(flags(&[config_flag()]), [env_var()]).expect("file+env");
        assert_eq!(json(env_over_file), want[1], "{env:?} over `{key}`");
        let flag_over_all = load(flags(&[config_flag(), flag(2)]), [env_var()]).expect("all");
        assert_eq!(
            json(flag_over_all),
            want[2],
            "--{long} over {env:?} and `{key}`"
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} settings found");
}

/// The file key of the setting behind flag `arg`, found by serializing what the flag sets.
fn file_key(arg: &clap::Arg) -> String {
    let long = arg.get_long().expect("a flag");
    let value_name = arg.get_value_names().expect("value name")[0].as_str();
    let parsed = flags(&[format!("--{long}={}", sample(value_name, 0)).into()]);
    let mut leaves = Vec::new();
    set_paths(&json(parsed.settings), "", &mut leaves);
    assert_eq!(
        leaves.len(),
        1,
        "--{long} sets {leaves:?}, not one file key"
    );
    leaves.remove(0).0
}

#[test]
fn the_shipped_example_names_every_setting() {
    let text = include_str!("../../../../../examples/tidings.toml");
    let example: Value = toml::from_str(text).expect("the example is TOML");
    for arg in ServeArgs::command().get_arguments() {
        if arg.get_id() == "config" {
            continue;
        }
        let key = file_key(arg);
        if matches!(
            key.as_str(),
            "auth.tokens"
                | "auth.jwt_hs256_secret"
                | "metrics.listen"
                | "metrics.token"
                | "cluster.token"
        ) {
            continue; // unset by default; the example shows them commented out
        }
        if key == "cluster.credentials" {
            // Unset by default (and not with a token); shown commented out.
            assert!(text.contains("# credentials = "), "{key}");
            continue;
        }
        if key == "default_topic" {
            // Unset by default (a publish names its topic); shown commented out.
            assert!(text.contains("# default_topic = "), "{key}");
            continue;
        }
        if key == "auth.cookie_publish_header" {
            // Unset by default (a cookie alone never publishes); the example shows it
            // commented out, since any value it states turns cookie publishing on.
            assert!(text.contains("# cookie_publish_header = "), "{key}");
            continue;
        }
        let found = key.split('.').try_fold(&example, |v, part| v.get(part));
        assert!(
            found.is_some(),
            "examples/tidings.toml does not state `{key}`"
        );
    }
}

fn config_of(file: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
    if let Some(text) = file {
        let path = dir.path().join("tidings.toml");
        std::fs::write(&path, text).expect("write file");
        argv.push(format!("--config={}", path.display()).into());
    }
    let env = env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    load(flags(&argv), env)
        .and_then(RawConfig::validate)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn precedence_reaches_the_validated_config() {
    let file = r#"
        max_connections = 5
        [retention]
        max_age = "1h"
        [websocket]
        allowed_origins = ["https://file.example"]
        [[auth.tokens]]
        token = "file-secret"
        name = "from-file"
        publish = ["*"]
        "#;
    let env = [
        ("TIDINGS_RETENTION_MAX_AGE", "2h"),
        (
            "TIDINGS_WS_ALLOWED_ORIGINS",
            "https://env-a.example https://env-b.example",
        ),
        (
            "TIDINGS_TOKENS",
            "env-secret-1:publish=* env-secret-2:subscribe=*",
        ),
    ];

    let c = config_of(Some(file), &[], &[]);
    assert_eq!(c.max_connections, 5);
    assert_eq!(c.retention.max_age, Some(Duration::from_secs(3600)));
    assert_eq!(
        c.endpoints[0].origins,
        Origins::List(vec!["https://file.example".into()])
    );
    assert_eq!(c.tokens.len(), 1);
    assert_eq!(c.tokens[0].grant.name, "from-file");

    let c = config_of(Some(file), &env, &[]);
    assert_eq!(c.max_connections, 5, "set only in the file");
    assert_eq!(c.retention.max_age, Some(Duration::from_secs(7200)));
    assert_eq!(
        c.endpoints[0].origins,
        Origins::List(vec![
            "https://env-a.example".into(),
            "https://env-b.example".into()
        ])
    );
    let secrets: Vec<&str> = c.tokens.iter().map(|t| t.secret.expose()).collect();
    assert_eq!(
        secrets,
        ["env-secret-1", "env-secret-2"],
        "env tokens replace the file's"
    );

    let c = config_of(
        Some(file),
        &env,
        &[
            "--retention-max-age=3h",
            "--ws-allowed-origin=*",
            "--token=flag-secret:publish=*",
        ],
    );
    assert_eq!(c.max_connections, 5);
    assert_eq!(c.retention.max_age, Some(Duration::from_secs(3 * 3600)));
    assert_eq!(c.endpoints[0].origins, Origins::Any);
    let secrets: Vec<&str> = c.tokens.iter().map(|t| t.secret.expose()).collect();
    assert_eq!(secrets, ["flag-secret"]);

    // [[endpoints]] are file-only and survive the other layers.
    let c = config_of(
        Some("[[endpoints]]\nname = \"x\"\npath = \"/x\"\n"),
        &env,
        &["--sse-retry=1s"],
    );
    assert_eq!(c.endpoints[1].path, "/x");
    assert_eq!(c.transport.retry, Duration::from_secs(1));
}

#[test]
fn the_environment_is_read_by_load_alone() {
    let cmd = without_env(ServeArgs::command());
    for arg in cmd.get_arguments() {
        assert!(
            arg.get_env().is_none(),
            "clap would read {:?}",
            arg.get_env()
        );
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if arg.get_id() != "help" {
            assert!(
                help.contains("[env: TIDINGS_"),
                "--help of {}: {help}",
                arg.get_id()
            );
        }
    }
}

#[test]
fn environment_errors_name_the_variable_and_empty_ones_are_unset() {
    let err = load(
        ServeArgs::default(),
        [("TIDINGS_MAX_CONNECTIONS".into(), "lots".into())],
    )
    .unwrap_err();
    assert_eq!(err.setting, "TIDINGS_MAX_CONNECTIONS");
    assert!(err.reason.contains("lots"), "{err}");

    let raw = load(
        ServeArgs::default(),
        [
            ("TIDINGS_LISTEN".into(), "".into()),
            ("UNRELATED".into(), "x".into()),
        ],
    )
    .unwrap();
    assert!(raw.listen.is_none());
}

#[test]
fn a_missing_or_invalid_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let err = load(
        flags(&[format!("--config={}", missing.display()).into()]),
        [],
    )
    .unwrap_err();
    assert!(err.setting.contains("missing.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[poll]\ntimout = \"1s\"\n").expect("write");
    let env = [(
        OsString::from("TIDINGS_CONFIG"),
        bad.clone().into_os_string(),
    )];
    let err = load(ServeArgs::default(), env).unwrap_err();
    assert!(err.setting.contains("bad.toml"), "{err}");
    assert!(err.reason.contains("unknown field `timout`"), "{err}");
}
