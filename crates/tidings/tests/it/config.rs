//! Configuration: defaults, TOML file < env < flags precedence, and refusal of invalid
//! configuration with exit code 64 naming the setting.

use std::time::Duration;

use crate::support::{Launch, Server};

#[tokio::test(flavor = "multi_thread")]
async fn defaults_listen_on_1700_and_create_data_dir_in_cwd() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let server = Server::launch(Launch::new(&[]).bare().cwd(cwd.path()));
    assert_eq!(server.addr.to_string(), "127.0.0.1:1700");
    let data = cwd.path().join("tidings-data");
    assert!(data.is_dir(), "{} was not created", data.display());
    assert!(
        std::fs::read_dir(&data)
            .expect("read data dir")
            .next()
            .is_some(),
        "the default data dir is empty"
    );
    let mut sub = server.subscribe("").await;
    assert_eq!(sub.expect_retry().await, 2000, "default sse retry");
    server.assert_works().await;
}

/// `sse.retry` is visible as the stream's `retry:` line, so it shows which source won.
async fn retry_of(launch: Launch) -> u64 {
    let server = Server::launch(launch);
    let mut sub = server.subscribe("").await;
    sub.expect_retry().await
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_is_honoured_and_overridden_by_env_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("from-file-data");
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[sse]\nretry = \"1111ms\"\nkeepalive = \"0s\"\n\n[limits]\nmax_batch_events = 2\n",
            data.display()
        ),
    )
    .expect("write config");
    let file_arg = file.to_str().expect("utf-8 path");

    // File only: listen, data_dir, sse.retry and limits come from it.
    let server = Server::launch(Launch::new(&["--config", file_arg]).bare());
    let mut sub = server.subscribe("").await;
    assert_eq!(sub.expect_retry().await, 1111);
    assert!(data.is_dir(), "data_dir from the file was not used");
    let batch = serde_json::json!([
        {"topic": "a", "type": "t"}, {"topic": "a", "type": "t"}, {"topic": "a", "type": "t"}
    ]);
    let (status, body) = server.publish_raw(&batch, &[]).await;
    assert_eq!(status, 413, "limits.max_batch_events from the file: {body}");
    assert_eq!(body["error"]["code"], "batch_too_large");
    drop(sub);
    drop(server);

    // Env beats file.
    let launch = Launch::new(&["--config", file_arg])
        .bare()
        .env("TIDINGS_SSE_RETRY", "2222ms");
    assert_eq!(retry_of(launch).await, 2222);

    // Flag beats env and file.
    let launch = Launch::new(&["--config", file_arg, "--sse-retry", "3333ms"])
        .bare()
        .env("TIDINGS_SSE_RETRY", "2222ms");
    assert_eq!(retry_of(launch).await, 3333);

    // TIDINGS_CONFIG names the file too.
    let launch = Launch::new(&[]).bare().env("TIDINGS_CONFIG", file_arg);
    assert_eq!(retry_of(launch).await, 1111);
}

#[test]
fn invalid_configuration_exits_64_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[sse]\nretry = \"1s\"\nbogus_key = 1\n").expect("write");
    let unknown_top = dir.path().join("unknown-top.toml");
    std::fs::write(&unknown_top, "colour = \"blue\"\n").expect("write");
    let bad_dur_file = dir.path().join("bad-duration.toml");
    std::fs::write(&bad_dur_file, "[retention]\nmax_age = \"forever\"\n").expect("write");
    let p = |f: &std::path::Path| f.to_str().expect("utf-8").to_owned();

    let cases: Vec<(Launch, &[&str])> = vec![
        (Launch::new(&["--config", &p(&unknown)]), &["bogus_key"]),
        (Launch::new(&["--config", &p(&unknown_top)]), &["colour"]),
        (
            Launch::new(&["--config", &p(&bad_dur_file)]),
            &["retention.max_age", "forever"],
        ),
        (
            Launch::new(&["--sse-keepalive", "10 parsecs"]),
            &["sse.keepalive"],
        ),
        (Launch::new(&["--sse-retry", "5x"]), &["sse.retry"]),
        (
            Launch::new(&["--shutdown-grace", "soon"]),
            &["shutdown_grace"],
        ),
        (
            Launch::new(&["--max-body-bytes", "lots"]),
            &["limits.max_body_bytes"],
        ),
        (
            Launch::new(&["--durability", "sometimes"]),
            &["store.durability", "sometimes"],
        ),
        (Launch::new(&["--max-topics", "0"]), &["limits.max_topics"]),
        (
            Launch::new(&["--max-data-bytes", "2MiB", "--max-body-bytes", "1MiB"]),
            &["limits.max_data_bytes"],
        ),
        (
            Launch::new(&["--token", "short:publish=*"]),
            &["auth.token[0]", "8 characters"],
        ),
        (
            Launch::new(&["--token", "longenough:admin=*"]),
            &["auth.token[0]", "admin"],
        ),
        (
            Launch::new(&["--listen", "not-an-address"]).bare(),
            &["listen", "not-an-address"],
        ),
        (
            Launch::new(&["--listen", "0.0.0.0:0"]).bare(),
            &["listen", "loopback"],
        ),
        (
            Launch::new(&[]).env("TIDINGS_RETENTION_MAX_AGE", "1 week"),
            &["retention.max_age"],
        ),
        (
            Launch::new(&["--max-connections", "lots"]),
            &["--max-connections", "lots"],
        ),
        (
            Launch::new(&[]).env("TIDINGS_MAX_TOPICS", "lots"),
            &["TIDINGS_MAX_TOPICS", "lots"],
        ),
    ];
    for (launch, needles) in cases {
        let started = std::time::Instant::now();
        let (code, stderr) = launch.run_to_exit();
        assert_eq!(
            code,
            Some(64),
            "args {:?} env {:?}: stderr {stderr}",
            launch.args,
            launch.env
        );
        assert!(
            stderr.contains("tidings: invalid configuration: "),
            "args {:?}: stderr {stderr}",
            launch.args
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "args {:?}: {needle:?} not in {stderr}",
                launch.args
            );
        }
        assert!(
            !stderr.contains("Tidings is listening"),
            "bound before validating: {stderr}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

/// Runs `tidings check-config FILE` with `env` (and no other TIDINGS_* variable).
fn check_config(file: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.arg("check-config").arg(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDINGS_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run tidings check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:1800\"\n\
         [auth]\ntokens = [\"file-secret-0123456789:publish=a/*;subscribe=*\"]\n\
         [metrics]\ntoken = \"metrics-secret-0123456789\"\n",
    )
    .expect("write config");
    let (code, out, err) = check_config(&file, &[("TIDINGS_SSE_RETRY", "3s")]);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(
        out.starts_with(&format!("# {} is valid.", file.display())),
        "{out}"
    );
    for secret in ["file-secret", "metrics-secret"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.contains("listen = \"0.0.0.0:1800\""), "{out}");
    assert!(
        out.contains("retry = \"3s\""),
        "the environment applies:\n{out}"
    );
    assert!(
        out.contains("max_events = 1000000"),
        "defaults are filled in:\n{out}"
    );
    assert!(
        out.contains("\"<redacted>:publish=a/*;subscribe=*\""),
        "a token's grants stay readable:\n{out}"
    );
    assert!(out.contains("token = \"<redacted>\""), "{out}");
    // Offline: nothing listens on the address.
    assert!(std::net::TcpStream::connect("127.0.0.1:1800").is_err());

    std::fs::write(&file, "[limits]\nsubscriber_queue = 0\n").expect("write config");
    let (code, out, err) = check_config(&file, &[]);
    assert_eq!(code, Some(64), "stdout: {out}");
    assert!(
        err.starts_with("tidings: invalid configuration: limits.subscriber_queue"),
        "{err}"
    );
    let (code, _, err) = check_config(&dir.path().join("missing.toml"), &[]);
    assert_eq!(code, Some(64));
    assert!(err.contains("missing.toml"), "{err}");
}
