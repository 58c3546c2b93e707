//! Config parsing, merging and validation messages.

use super::auth::parse_token_spec;
use super::*;
use crate::transport::frame::Shape;

fn validate(raw: RawConfig) -> Result<Config, String> {
    raw.validate().map_err(|e| e.to_string())
}

#[test]
fn defaults_need_no_config() {
    let c = validate(RawConfig::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:1700");
    assert_eq!(c.data_dir, PathBuf::from("./tidings-data"));
    assert_eq!(c.durability, Durability::Durable);
    assert_eq!(c.transport.keepalive, Some(Duration::from_secs(30)));
    assert_eq!(c.endpoints.len(), 1);
    assert_eq!(c.retention, Retention::default());
}

#[test]
fn file_is_below_flags_and_env() {
    let file = RawConfig::from_toml(
        r#"
        listen = "127.0.0.1:9000"
        data_dir = "/var/lib/tidings"
        [store]
        durability = "fast"
        fsync_interval = "250ms"
        cache_size = "8MiB"
        [retention]
        max_events = 10
        max_age = "2h"
        [[auth.tokens]]
        token = "0123456789"
        publish = ["downloads/*"]
        subscribe = ["*"]
        "#,
    )
    .unwrap();
    let flags = RawConfig {
        listen: Some("127.0.0.1:9100".into()),
        ..RawConfig::default()
    };
    let c = validate(layered([file, flags]).unwrap()).unwrap();
    assert_eq!(c.listen.port(), 9100);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/tidings"));
    assert_eq!(
        c.durability,
        Durability::Fast {
            interval: Duration::from_millis(250)
        }
    );
    assert_eq!(c.store_cache_size, 8 << 20);
    assert_eq!(c.retention.max_events, Some(10));
    assert_eq!(c.retention.max_age, Some(Duration::from_secs(7200)));
    assert_eq!(c.tokens.len(), 1);
    let flags = RawConfig {
        store: RawStore {
            cache_size: Some("1MiB".into()),
            ..RawStore::default()
        },
        ..RawConfig::default()
    };
    let file = RawConfig::from_toml("[store]\ncache_size = \"8MiB\"").unwrap();
    assert_eq!(
        validate(layered([file, flags]).unwrap())
            .unwrap()
            .store_cache_size,
        1 << 20
    );
    assert_eq!(
        validate(RawConfig::default()).unwrap().store_cache_size,
        64 << 20
    );
}

#[test]
fn errors_name_the_setting() {
    let cases: Vec<(RawConfig, &str)> = vec![
        (
            RawConfig {
                listen: Some("nope".into()),
                ..Default::default()
            },
            "listen: `nope` is not an IP:port address",
        ),
        (
            RawConfig {
                listen: Some("0.0.0.0:1700".into()),
                ..Default::default()
            },
            "listen: 0.0.0.0:1700 is not a loopback address and no auth tokens",
        ),
        (
            RawConfig {
                store: RawStore {
                    durability: Some("fsync".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            "store.durability: `fsync` is not one of",
        ),
        (
            RawConfig {
                retention: RawRetention {
                    max_age: Some("7 days".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            "retention.max_age: `7 days` is not a duration",
        ),
        (
            RawConfig {
                limits: RawLimits {
                    max_body_bytes: Some("1TB".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            "limits.max_body_bytes: `1TB` is not a size",
        ),
        (
            RawConfig {
                limits: RawLimits {
                    subscriber_queue: Some(0),
                    ..Default::default()
                },
                ..Default::default()
            },
            "limits.subscriber_queue: must be greater than 0",
        ),
        (
            RawConfig {
                auth: RawAuth {
                    tokens: vec!["short:publish=*".to_owned().into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            "auth.token[0]: token must be at least 8",
        ),
        (
            RawConfig {
                auth: RawAuth {
                    tokens: vec!["longenough:publish=a\n".to_owned().into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            "auth.token[0]: `a\n` must not contain control",
        ),
    ];
    for (raw, want) in cases {
        let err = validate(raw).unwrap_err();
        assert!(err.starts_with(want), "{err:?} should start with {want:?}");
    }
    let err = RawConfig::from_toml("listen = 1\nbogus = true")
        .unwrap_err()
        .to_string();
    assert!(err.contains("config file"), "{err}");
    let err = RawConfig::from_toml("[retention]\nmax_evnts = 3")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `max_evnts`"), "{err}");
}

#[test]
fn token_specs() {
    let t = parse_token_spec("abcdefgh:publish=downloads/*,system;subscribe=*", 0).unwrap();
    assert_eq!(t.secret.expose(), "abcdefgh");
    assert_eq!(t.grant.publish.len(), 2);
    assert_eq!(t.grant.subscribe, vec![Pattern::All]);
    assert!(!t.grant.admin);
    assert!(parse_token_spec("abcdefgh:write=*", 0).is_err());
    let t = parse_token_spec("abcdefgh:publish=*;subscribe=*;admin", 0).unwrap();
    assert!(t.grant.admin);
    let e = parse_token_spec("abcdefgh:admin=*", 0).unwrap_err();
    assert!(e.contains("admin"), "{e}");
}

/// A token's name is `name=` or its position, never a piece of the secret; a multi-byte
/// character where the old code cut the secret at byte 4 is no panic.
#[test]
fn token_names_never_come_from_the_secret() {
    let t = parse_token_spec("s3cretvalue:publish=*", 2).unwrap();
    assert_eq!(t.grant.name, "token-2");
    let t = parse_token_spec("s3cretvalue:name=nzbflow;publish=*", 0).unwrap();
    assert_eq!(t.grant.name, "nzbflow");
    assert_eq!(t.grant.publish, vec![Pattern::All]);
    // `é` is two bytes: byte 4 falls inside the first one.
    let t = parse_token_spec("abcééééé:subscribe=*", 0).unwrap();
    assert_eq!(t.grant.name, "token-0");
    assert!(parse_token_spec("s3cretvalue:name=;publish=*", 0).is_err());
    assert!(parse_token_spec("s3cretvalue:name=a\nb", 0).is_err());

    let raw = RawConfig {
        auth: RawAuth {
            tokens: vec![
                RawToken::Spec("abcééééé:publish=*".into()),
                RawToken::Spec("s3cretvalue:subscribe=*".into()),
            ],
            ..RawAuth::default()
        },
        ..RawConfig::default()
    };
    let names: Vec<_> = raw
        .validate()
        .unwrap()
        .tokens
        .into_iter()
        .map(|t| t.grant.name)
        .collect();
    assert_eq!(names, ["token-0", "token-1"]);
}

#[test]
fn the_shipped_example_is_valid_and_states_the_defaults() {
    let text = include_str!("../../../../examples/tidings.toml");
    let from_file = RawConfig::from_toml(text).unwrap().validate().unwrap();
    let defaults = RawConfig::default().validate().unwrap();
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
}

/// Every shipped profile validates, and all.toml serves each of the four as its own file
/// does (the conformance tests in crates/tidings/tests/it/profiles.rs run them).
/// A shipped profile, its relative paths (`[[schemas]] dir`) resolved against `profiles/`, as
/// `tidings serve --config profiles/NAME.toml` resolves them against the file's directory.
fn shipped(text: &str) -> Config {
    let mut raw = RawConfig::from_toml(text).unwrap();
    let base = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../profiles"));
    schemas::resolve(&mut raw.schemas, &mut raw.schema_dirs, base);
    raw.validate().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_shipped_profiles_are_valid_and_all_toml_is_the_four_together() {
    let profiles = [
        include_str!("../../../../profiles/downloads.toml"),
        include_str!("../../../../profiles/camera.toml"),
        include_str!("../../../../profiles/files.toml"),
        include_str!("../../../../profiles/tasks.toml"),
    ];
    let all = shipped(include_str!("../../../../profiles/all.toml"));
    let mut names = 0;
    let mut rules = Vec::new();
    for text in profiles {
        let c = shipped(text);
        for e in &c.endpoints[1..] {
            let same = all.endpoints.iter().find(|a| a.name == e.name).unwrap();
            assert_eq!(format!("{e:?}"), format!("{same:?}"), "{}", e.name);
            names += 1;
        }
        // Every profile carries its document's catalogue.
        assert!(!c.schemas.is_empty());
        rules.extend(c.coalesce.rules().iter().cloned());
        if !c.snapshot.delete_types.is_empty() {
            assert_eq!(c.snapshot, all.snapshot);
        }
    }
    assert_eq!(names + 1, all.endpoints.len(), "all.toml has nothing else");
    assert_eq!(
        rules,
        all.coalesce.rules(),
        "the profiles' rules, in all.toml"
    );
    let tasks = all.endpoints.iter().find(|e| e.name == "tasks").unwrap();
    assert_eq!(tasks.listen.unwrap().port(), 3001);
    assert_eq!(tasks.shape, Shape::Envelope);
    assert_eq!(tasks.query_token.as_deref(), Some("token"));
    assert!(tasks.transports.websocket && !tasks.transports.sse);
}

#[test]
fn endpoint_path_parameters_selector_param_and_credentials() {
    let c = RawConfig::from_toml(
        r#"
[[endpoints]]
name = "one"
path = "/api/cameras/{id}/events"
topics = ["camera/{id}"]
credentials = ["none"]
handshake_event = "connected"
handshake_data = '{"cameraId":"${id}"}'
publishable_events = ["connected"]
"#,
    )
    .unwrap()
    .validate()
    .unwrap_or_else(|e| panic!("{e}"));
    let one = &c.endpoints[1];
    assert!(one.template.has_params());
    assert!(one.credentials.is_none());
    assert_eq!(one.topic_templates, ["camera/{id}"]);
    assert_eq!(
        one.reserved_names(),
        ["subscribed", "resumed", "reconnect-required"]
    );
    assert_eq!(
        one.scope().unwrap(),
        [tidings_proto::Pattern::parse("camera/*").unwrap()]
    );
    let cases = [
        (
            r#"[[endpoints]]
name = "a"
path = "/c/{id}/e""#,
            "endpoints[0].topics: is required on a path with parameters",
        ),
        (
            r#"[[endpoints]]
name = "a"
path = "/c/{id}/e"
topics = ["camera/{cam}"]"#,
            "endpoints[0].topics[0]: `camera/{cam}` names a parameter the path does not have",
        ),
        (
            r#"[[endpoints]]
name = "a"
path = "/c/x{id}/e"
topics = ["c"]"#,
            "endpoints[0].path: segment `x{id}`: a parameter is a whole segment",
        ),
        (
            r#"[[endpoints]]
name = "a"
credentials = ["none"]"#,
            "endpoints[0].credentials: `none` needs a fixed selector",
        ),
        (
            r#"[[endpoints]]
name = "a"
credentials = ["none", "header"]"#,
            "endpoints[0].credentials: `none` stands alone",
        ),
        (
            r#"[[endpoints]]
name = "a"
credentials = ["headers"]"#,
            "endpoints[0].credentials: `headers` is not one of",
        ),
        (
            r#"[[endpoints]]
name = "a"
selector_param = "topic""#,
            "endpoints[0].selector_param: `topic` is a parameter the hub reads itself",
        ),
        (
            r#"[[endpoints]]
name = "a"
publishable_events = ["progress"]"#,
            "endpoints[0].publishable_events[0]: `progress` is not one of this endpoint's",
        ),
        (
            r#"listen = "0.0.0.0:7400"
[auth]
tokens = ["secret-123:subscribe=*"]
[[endpoints]]
name = "a"
listen = "0.0.0.0:8080"
topics = ["c/*"]
credentials = ["none"]"#,
            "endpoints[0].listen: 0.0.0.0:8080 is not a loopback address and the endpoint takes no credentials",
        ),
        (
            r#"[[endpoints]]
name = "a"
path = "/c/{id}/e"
topics = ["c/{id}"]
handshake_event = "h"
handshake_data = '{"x":"${nope}"}'"#,
            "endpoints[0].handshake_data: `${nope}` is not one of",
        ),
    ];
    for (text, want) in cases {
        let got = RawConfig::from_toml(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn endpoint_errors_name_the_setting() {
    let cases = [
        (
            "[[endpoints]]\nname = \"a\"\npath = \"/publish\"",
            "endpoints[0].path: `/publish` is a built-in route",
        ),
        (
            "[[endpoints]]\nname = \"events\"\npath = \"/x\"",
            "endpoints[0]: name or listen+path clashes with endpoint `events`",
        ),
        (
            "[[endpoints]]\nname = \"a\"\nshape = \"xml\"",
            "endpoints[0].shape: `xml` is not event or envelope",
        ),
        (
            "[[endpoints]]\nname = \"a\"\ntransports = [\"carrier-pigeon\"]",
            "endpoints[0].transports: `carrier-pigeon` is not one of",
        ),
        (
            "[[endpoints]]\nname = \"a\"\nlisten = \"0.0.0.0:3001\"",
            "endpoints[0].listen: 0.0.0.0:3001 is not a loopback address",
        ),
        (
            "[[endpoints]]\nname = \"a\"\npath = \"nope\"",
            "endpoints[0].path: `nope` must start with /",
        ),
        (
            "[websocket]\nping_interval = \"0s\"",
            "websocket.ping_interval: must be greater than 0",
        ),
    ];
    for (toml, want) in cases {
        let err = RawConfig::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{err:?} should start with {want:?}");
    }
}

#[test]
fn every_file_section_survives_layering_under_empty_flags() {
    let file = RawConfig::from_toml(
        r#"
        write_timeout = "7s"
        [websocket]
        ping_interval = "3s"
        pong_timeout = "2s"
        max_message_bytes = "2KiB"
        allowed_origins = ["https://a.example"]
        [poll]
        timeout = "9s"
        [[endpoints]]
        name = "x"
        path = "/x"
        "#,
    )
    .unwrap();
    let c = layered([file, RawConfig::default()])
        .unwrap()
        .validate()
        .unwrap();
    assert_eq!(c.transport.write_timeout, Duration::from_secs(7));
    assert_eq!(c.transport.ws_ping_interval, Duration::from_secs(3));
    assert_eq!(c.transport.ws_pong_timeout, Duration::from_secs(2));
    assert_eq!(c.transport.ws_max_message_bytes, 2048);
    assert_eq!(c.transport.poll_timeout, Duration::from_secs(9));
    assert_eq!(
        c.endpoints[0].origins,
        crate::endpoint::Origins::List(vec!["https://a.example".into()])
    );
    assert_eq!(c.endpoints[1].path, "/x");
}

#[test]
fn edge_settings_have_defaults_and_come_from_the_file() {
    let c = validate(RawConfig::default()).unwrap();
    assert_eq!(c.body_timeout, Duration::from_secs(30));
    assert_eq!(c.max_inflight_body_bytes, 64 << 20);
    assert!(c.allowed_hosts.is_empty());
    let file = RawConfig::from_toml(
        r#"
        body_timeout = "5s"
        allowed_hosts = ["hub.example.com", "*.example.org"]
        [limits]
        max_inflight_body_bytes = "8MiB"
        "#,
    )
    .unwrap();
    let c = validate(layered([file, RawConfig::default()]).unwrap()).unwrap();
    assert_eq!(c.body_timeout, Duration::from_secs(5));
    assert_eq!(c.max_inflight_body_bytes, 8 << 20);
    assert_eq!(c.allowed_hosts, ["hub.example.com", "*.example.org"]);
    let small = RawConfig {
        limits: RawLimits {
            max_inflight_body_bytes: Some("512KiB".into()),
            ..RawLimits::default()
        },
        ..RawConfig::default()
    };
    let err = validate(small).unwrap_err();
    assert!(err.starts_with("limits.max_inflight_body_bytes:"), "{err}");
    let host = RawConfig {
        allowed_hosts: vec!["http://x/".into()],
        ..RawConfig::default()
    };
    let err = validate(host).unwrap_err();
    assert!(err.starts_with("allowed_hosts[0]:"), "{err}");
}

#[test]
fn cors_origins_are_exact_origins() {
    let c = RawConfig::from_toml(
        "cors_origins = [\"https://app.example\", \"http://localhost:3000\"]\n\
         [[endpoints]]\nname = \"feed\"\npath = \"/feed\"\ncors_origins = [\"https://b.example\"]",
    )
    .unwrap()
    .validate()
    .unwrap();
    assert!(c.cors.allows("https://app.example"));
    assert!(c.endpoints[0].cors.allows("http://localhost:3000"));
    assert!(!c.endpoints[0].cors.allows("https://b.example"));
    assert!(c.endpoints[1].cors.allows("https://b.example"));
    for (toml, setting) in [
        ("cors_origins = [\"*\"]", "cors_origins[0]"),
        (
            "cors_origins = [\"https://a.example/path\"]",
            "cors_origins[0]",
        ),
        ("cors_origins = [\"app.example\"]", "cors_origins[0]"),
        ("cors_origins = [\"https://*.example\"]", "cors_origins[0]"),
        (
            "[[endpoints]]\nname = \"f\"\npath = \"/f\"\ncors_origins = [\"null\"]",
            "endpoints[0].cors_origins[0]",
        ),
    ] {
        let e = RawConfig::from_toml(toml).unwrap().validate().unwrap_err();
        assert_eq!(e.setting, setting, "{toml}: {e}");
        assert!(e.reason.contains("exact origin"), "{e}");
    }
}

#[test]
fn edge_and_rate_limits_are_checked() {
    let c = RawConfig::default().validate().unwrap();
    assert_eq!(c.max_connections_per_ip, 1024);
    assert_eq!(c.listen_backlog, 4096);
    assert_eq!(c.header_timeout, Duration::from_secs(10));
    assert_eq!(c.max_header_bytes, 16 << 10);
    assert_eq!(c.credentials.publish_rate, 10_000);
    assert_eq!(c.credentials.publish_burst, 20_000);
    assert_eq!(c.credentials.max_streams, 10_000);
    for (toml, setting) in [
        ("max_header_bytes = \"4KiB\"", "max_header_bytes"),
        ("max_header_bytes = \"2MiB\"", "max_header_bytes"),
        (
            "trusted_proxies = [\"proxy.example\"]",
            "trusted_proxies[0]",
        ),
        ("header_timeout = \"0s\"", "header_timeout"),
        ("listen_backlog = 0", "listen_backlog"),
        ("listen_backlog = 65536", "listen_backlog"),
        (
            "[limits]\npublish_rate = 5\npublish_burst = 10",
            "limits.publish_burst",
        ),
    ] {
        let e = RawConfig::from_toml(toml).unwrap().validate().unwrap_err();
        assert_eq!(e.setting, setting, "{toml}: {e}");
    }
    let c = RawConfig::from_toml(
        "trusted_proxies = [\"10.0.0.1\", \"::1\"]\n[limits]\npublish_rate = 0",
    )
    .unwrap()
    .validate()
    .unwrap();
    assert_eq!(c.trusted_proxies.len(), 2);
    assert_eq!(c.credentials.publish_rate, 0);
}

#[test]
fn session_event_names_rename_the_built_in_endpoint_and_default_the_others() {
    let c = validate(
        RawConfig::from_toml(
            r#"
            session_resumed_event = "session-resumed"
            [[endpoints]]
            name = "cameras"
            path = "/cameras"
            [[endpoints]]
            name = "files"
            path = "/files"
            resumed_event = "files-resumed"
            "#,
        )
        .unwrap(),
    )
    .unwrap();
    let names: Vec<(&str, &str)> = c
        .endpoints
        .iter()
        .map(|e| (e.session.subscribed.as_str(), e.session.resumed.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("subscribed", "session-resumed"),
            ("subscribed", "session-resumed"),
            ("subscribed", "files-resumed"),
        ]
    );
    let same = RawConfig::from_toml(r#"session_resumed_event = "subscribed""#).unwrap();
    let err = validate(same).unwrap_err();
    assert!(err.contains("session_resumed_event"), "{err}");
}

#[test]
fn the_coalescing_profiles_are_valid() {
    use tidings_core::Policy;
    let downloads = shipped(include_str!("../../../../profiles/downloads.toml"));
    let [rule] = downloads.coalesce.rules() else {
        panic!("one rule: {:?}", downloads.coalesce)
    };
    assert_eq!(rule.policy, Policy::Latest);
    assert_eq!(rule.key.as_deref(), Some("/DownloadID"));
    for t in ["complete", "error", "removed"] {
        assert!(rule.terminal.iter().any(|x| x.as_str() == t), "{t}");
    }
    let removed = tidings_proto::EventType::new("removed").unwrap();
    assert!(downloads.snapshot.deletes(&removed));
    let files = shipped(include_str!("../../../../profiles/files.toml"));
    let [rule] = files.coalesce.rules() else {
        panic!("one rule: {:?}", files.coalesce)
    };
    assert!(matches!(&rule.policy, Policy::Merge(f) if f.batch_type.as_str() == "event"));
}

#[test]
fn coalesce_errors_name_the_setting() {
    for (text, want) in [
        (
            "[[coalesce]]\npolicy = \"fastest\"",
            "coalesce[0].policy: `fastest` is not none, latest or merge",
        ),
        (
            "[[coalesce]]\npolicy = \"latest\"\nkey = \"DownloadID\"",
            "coalesce[0]: `DownloadID` is not a JSON pointer",
        ),
        (
            "[[coalesce]]\npolicy = \"latest\"\nwindow = \"0s\"",
            "coalesce[0].window: must be more than 0",
        ),
        (
            "[[coalesce]]\npolicy = \"latest\"\nmerge_type = \"event\"",
            "coalesce[0].merge_type: applies to policy = \"merge\" only",
        ),
        (
            "[[coalesce]]\npolicy = \"merge\"\nmerge_names = [\"a\"]",
            "coalesce[0].merge_names: must name create, modify, rename and delete",
        ),
        ("[[coalesce]]\ntopics = [\"\"]", "coalesce[0].topics"),
        ("[[coalesce]]\nmax_keys = 0", "coalesce[0].max_keys"),
        ("[[coalesce]]\nwindw = \"1s\"", "unknown field `windw`"),
    ] {
        let err = RawConfig::from_toml(text)
            .and_then(RawConfig::validate)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn cluster_credentials_are_read_at_startup_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("node.creds");
    let operator = tidings_cluster_nats::testing::Operator::new();
    let (text, seed) = operator.user_creds("node");
    std::fs::write(&creds, &text).unwrap();
    let validate = |toml: String| {
        RawConfig::from_toml(&format!(
            "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\n{toml}\n"
        ))
        .unwrap()
        .validate()
    };
    let path = creds.display().to_string();
    let c = validate(format!("credentials = {path:?}")).unwrap();
    let cluster = c.cluster.expect("cluster mode");
    assert_eq!(cluster.credentials.as_deref(), Some(creds.as_path()));
    assert!(!format!("{cluster:?}").contains(&seed));

    let both = validate(format!("token = \"nats-secret\"\ncredentials = {path:?}"))
        .unwrap_err()
        .to_string();
    assert!(
        both.starts_with("cluster.credentials: cannot be set with cluster.token"),
        "{both}"
    );
    let missing = dir.path().join("missing.creds");
    let err = validate(format!("credentials = {:?}", missing.display().to_string()))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cluster.credentials: {}: ", missing.display())),
        "{err}"
    );
    // The seed's block alone, without the JWT's: refused, and the message quotes none of it.
    let seed_only = &text[text.find("-----BEGIN USER NKEY SEED").unwrap()..];
    std::fs::write(&creds, seed_only).unwrap();
    let err = validate(format!("credentials = {path:?}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cluster.credentials: {path}: holds one block")),
        "{err}"
    );
    assert!(!err.contains(&seed), "{err}");
}

#[test]
fn cluster_settings_validate_name_the_setting_and_hide_the_token() {
    let none = RawConfig::default().validate().unwrap();
    assert_eq!(none.cluster, None, "without urls a node runs alone");
    let c = RawConfig::from_toml(
        "[cluster]\nurls = [\"nats://10.0.0.1:4222\", \"tls://10.0.0.2:4222\"]\n\
         replicas = 3\ntoken = \"nats-secret-0123456789\"\n",
    )
    .unwrap()
    .validate()
    .unwrap();
    let cluster = c.cluster.expect("cluster mode");
    assert_eq!(cluster.urls.len(), 2);
    assert_eq!((cluster.stream.as_str(), cluster.replicas), ("TIDINGS", 3));
    assert_eq!(cluster.token.as_deref(), Some("nats-secret-0123456789"));
    assert!(!format!("{cluster:?}").contains("nats-secret"));
    for (toml, want) in [
        (
            "urls = [\"http://x:4222\"]",
            "cluster.urls[0]: must be a nats://",
        ),
        (
            "urls = [\"nats://x\"]\nstream = \"a.b\"",
            "cluster.stream: `a.b` must be",
        ),
        (
            "urls = [\"nats://x\"]\nreplicas = 0",
            "cluster.replicas: must be at least 1",
        ),
    ] {
        let err = RawConfig::from_toml(&format!("[cluster]\n{toml}\n"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\ntoken = \"nats-secret-0123456789\"\n",
    )
    .unwrap();
    let printed = check(&file, std::iter::empty()).unwrap();
    assert!(!printed.contains("nats-secret"), "{printed}");
    assert!(printed.contains("token = \"<redacted>\""), "{printed}");
}
