//! The `tidings publish` and `tidings subscribe` commands as a user runs them: 100k events
//! piped through `publish --ndjson` and read back with `subscribe --since earliest --output
//! json`; the pretty tail against a snapshot (colours off, times redacted); exit codes.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use crate::support::{BIN, Server, WAIT, parse_id};

/// `tidings <args>` aimed at `server`, with a clean environment and no colours.
fn tidings(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDINGS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TIDINGS_URL", format!("http://{}", server.addr))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs to exit (killed after `limit`), feeding `input` to stdin.
async fn run(mut cmd: Command, input: Option<Vec<u8>>, limit: Duration) -> (i32, String, String) {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn tidings");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        tokio::spawn(async move {
            stdin.write_all(&input).await.expect("write stdin");
        });
    }
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tidings did not finish within {limit:?}"))
        .expect("wait");
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_events_through_publish_ndjson_and_back() {
    const N: usize = 100_000;
    let server = Server::start(&["--durability", "durable"]);
    let mut input = Vec::with_capacity(N * 80);
    let mut sent = Vec::with_capacity(N);
    for i in 0..N {
        let mut event = json!({"topic": format!("bulk/{}", i % 10), "type": "n", "data": {"i": i}});
        if i % 7 == 0 {
            event["key"] = json!(format!("k{i}"));
        }
        input.extend_from_slice(event.to_string().as_bytes());
        input.push(b'\n');
        sent.push(event);
    }
    let (code, stdout, stderr) = run(
        tidings(&server, &["publish", "--ndjson"]),
        Some(input),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(code, 0, "stderr: {stderr}");
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), N);
    assert!(
        stderr.contains(&format!("{N} events published")),
        "{stderr}"
    );
    // One ordered stream: ids increase with the input.
    let seqs: Vec<u64> = ids.iter().map(|id| parse_id(id).1).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids out of input order"
    );

    let (code, stdout, stderr) = run(
        tidings(
            &server,
            &[
                "subscribe",
                "--since",
                "earliest",
                "--output",
                "json",
                "-n",
                "100000",
            ],
        ),
        None,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(code, 0, "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), N);
    for (i, ((line, mut want), id)) in lines.iter().zip(sent).zip(&ids).enumerate() {
        want["id"] = json!(id);
        let got: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(got, want, "line {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pretty_tail_matches_its_snapshot() {
    let server = Server::start(&["--durability", "memory"]);
    for (args, data) in [
        (
            vec![
                "publish",
                "downloads/abc-123",
                "progress",
                "--key",
                "abc-123",
            ],
            Some(
                r#"{ "DownloadID": "abc-123",
            "Downloaded": 52428800 }"#,
            ),
        ),
        (
            vec![
                "publish",
                "downloads/abc-123",
                "complete",
                r#"{"DownloadID":"abc-123"}"#,
            ],
            None,
        ),
        (
            vec![
                "publish",
                "cloudreve://my/photos/a.jpg",
                "event",
                r#"[{"type":"create","to":"a.jpg"}]"#,
            ],
            None,
        ),
        (vec!["publish", "system", "system", r#""déjà vu ✓""#], None),
    ] {
        let mut cmd = tidings(&server, &args);
        let (code, _, stderr) = run(
            {
                if data.is_some() {
                    cmd.stdin(Stdio::piped());
                }
                cmd
            },
            data.map(|d| d.as_bytes().to_vec()),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let (code, stdout, stderr) = run(
        tidings(&server, &["subscribe", "--since", "earliest", "-n", "4"]),
        None,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("tidings: connected to http://"), "{stderr}");
    let want = "\
HH:MM:SS.mmm downloads/abc-123 progress {\"DownloadID\":\"abc-123\",\"Downloaded\":52428800}
HH:MM:SS.mmm downloads/abc-123 complete {\"DownloadID\":\"abc-123\"}
HH:MM:SS.mmm cloudreve://my/photos/a.jpg event [{\"type\":\"create\",\"to\":\"a.jpg\"}]
HH:MM:SS.mmm system system \"déjà vu ✓\"
";
    assert_eq!(redact_times(&stdout), want);
    assert!(!stdout.contains('\x1b'), "no colours on a pipe");

    // A cursor from another store: the tail says `reset`, then goes on live.
    let epoch = server.readyz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let mut child = tidings(&server, &["subscribe", "--since", "0badc0de-1", "-n", "1"])
        .spawn()
        .expect("spawn");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    tokio::time::timeout(WAIT, stderr.read_line(&mut line))
        .await
        .expect("the tail connects")
        .expect("read stderr");
    assert!(line.starts_with("tidings: connected"), "{line}");
    server
        .publish_one("system", "system", json!({"ok": true}))
        .await;
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the tail exits after one event")
        .expect("wait");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        redact_times(&stdout).replace(&epoch, "EPOCH"),
        "\
HH:MM:SS.mmm reset (epoch_mismatch): events were missed; continuing after EPOCH-4
HH:MM:SS.mmm system system {\"ok\":true}
"
    );
}

/// Replaces the leading `HH:MM:SS.mmm` of each line, after checking its shape.
fn redact_times(text: &str) -> String {
    text.lines()
        .map(|l| {
            let (time, rest) = l.split_at(12);
            assert!(
                time.bytes().enumerate().all(|(i, b)| match i {
                    2 | 5 => b == b':',
                    8 => b == b'.',
                    _ => b.is_ascii_digit(),
                }),
                "time column {time:?}"
            );
            format!("HH:MM:SS.mmm{rest}\n")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_survives_a_restart_and_says_so() {
    let mut server = Server::start(&["--durability", "durable"]);
    let addr = server.addr.to_string();
    server.launch.auto_listen = false;
    server.launch.args.extend(["--listen".to_owned(), addr]);
    let mut child = tidings(
        &server,
        &["subscribe", "r/*", "--output", "json", "-n", "2"],
    )
    .spawn()
    .expect("spawn");
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    tokio::time::timeout(WAIT, stderr.read_line(&mut line))
        .await
        .expect("the tail connects")
        .expect("read stderr");
    assert!(line.starts_with("tidings: connected"), "{line}");
    let first = server.publish_one("r/1", "t", json!(1)).await;
    server.sigterm();
    assert!(server.wait_exit().success());
    server.restart();
    let second = server.publish_one("r/1", "t", json!(2)).await;
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the tail comes back and exits after two events")
        .expect("wait");
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut rest)
        .await
        .expect("stderr");
    assert!(out.status.success(), "{rest}");
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids, [first.clone(), second]);
    assert!(
        rest.contains("the hub asked to reconnect (shutdown); reconnecting now"),
        "{rest}"
    );
    assert!(rest.contains("reconnecting in"), "{rest}");
    assert!(
        rest.contains(&format!("reconnected, resuming after {first}")),
        "{rest}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_say_what_went_wrong() {
    let server = Server::start(&["--token", "cli-secret-1:publish=*;subscribe=*"]);
    let code = |args: &'static [&'static str], token: Option<&'static str>| {
        let mut cmd = tidings(&server, args);
        if let Some(t) = token {
            cmd.env("TIDINGS_TOKEN", t);
        }
        async move { run(cmd, None, Duration::from_secs(20)).await }
    };
    let (c, _, err) = code(&["publish", "a", "b", "1"], None).await;
    assert_eq!(c, 77, "{err}");
    let (c, _, err) = code(&["subscribe", "*"], Some("wrong-secret-2")).await;
    assert_eq!(c, 77, "{err}");
    assert!(
        !err.contains("wrong-secret-2"),
        "the token is never printed: {err}"
    );
    let (c, _, err) = code(&["publish", "a", "b", "{not json"], Some("cli-secret-1")).await;
    assert_eq!(c, 65, "{err}");
    assert!(err.contains("data:"), "{err}");
    let (c, out, err) = code(&["publish", "a", "b", "[1]"], Some("cli-secret-1")).await;
    assert_eq!(c, 0, "{err}");
    assert_eq!(parse_id(out.trim()).1, 1);
    // A bad line stops the input there: what came before it is published.
    let mut cmd = tidings(&server, &["publish", "--ndjson"]);
    cmd.env("TIDINGS_TOKEN", "cli-secret-1");
    let input = b"{\"topic\":\"a\",\"type\":\"b\"}\n{\"topic\":\"a\",\"typo\":\"b\"}\n{\"topic\":\"a\",\"type\":\"c\"}\n";
    let (c, out, err) = run(cmd, Some(input.to_vec()), Duration::from_secs(20)).await;
    assert_eq!(c, 65, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("stdin line 2: unknown field `typo`"), "{err}");
    let (c, _, err) = code(&["subscribe", "--since", "yesterday"], None).await;
    assert_eq!(c, 64, "{err}");
    assert!(err.contains("--since"), "{err}");
    let (c, _, err) = code(
        &["publish", "--url", "http://127.0.0.1:1", "a", "b", "1"],
        None,
    )
    .await;
    assert_eq!(c, 69, "{err}");
}
