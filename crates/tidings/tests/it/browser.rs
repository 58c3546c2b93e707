//! A real browser: Debian's chromium, driven by playwright-core (tests/browser/eventsource.cjs),
//! opens a native `EventSource` first with the credential cookie and then with a one-time
//! ticket it mints itself, and receives the events published meanwhile.
//!
//! Needs `TIDINGS_TEST_PLAYWRIGHT` (the playwright-core package directory, installed by
//! `./scripts/test` into target/test-deps/node) and chromium at `/usr/bin/chromium`
//! (`TIDINGS_TEST_CHROMIUM` to override); without them the test fails, it does not skip.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::support::Server;

const TOKEN: &str = "browser-token-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn chromium_eventsource_receives_events_with_a_cookie_and_then_with_a_ticket() {
    let playwright = std::env::var("TIDINGS_TEST_PLAYWRIGHT").unwrap_or_else(|_| {
        panic!(
            "TIDINGS_TEST_PLAYWRIGHT is not set: run ./scripts/test, which installs \
             playwright-core into target/test-deps/node"
        )
    });
    let chromium =
        std::env::var("TIDINGS_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test installs Debian's chromium with apt-get"
    );
    let spec = format!("{TOKEN}:publish=browser/*;subscribe=browser/*");
    let server = Server::start(&["--token", &spec]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/eventsource.cjs");
    let mut node = Command::new("node")
        .arg(script)
        .arg(format!("http://{}", server.addr))
        .arg(TOKEN)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut stdin = node.stdin.take().expect("stdin");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the browser reports within 60 s")
            .expect("read the browser's report")
            .expect("the browser script ended early");
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert!(v.get("failed").is_none(), "the browser script failed: {v}");
        v
    };
    let publish = async |topic: &str, n: u64| -> String {
        let (status, v) = server
            .publish_raw(
                &json!({"topic": topic, "type": "t", "data": {"n": n}}),
                &[("authorization", &format!("Bearer {TOKEN}"))],
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["ids"][0].as_str().expect("id").to_owned()
    };

    // The cookie stream is open (the hub answered 200 to the browser's own request).
    assert_eq!(next().await, json!({"open": "cookie"}));
    let id = publish("browser/cookie", 1).await;
    stdin
        .write_all(b"published\n")
        .await
        .expect("tell the browser");
    let got = next().await;
    assert_eq!(got["cookie"]["id"], id, "{got}");
    assert_eq!(got["cookie"]["data"], r#"{"n":1}"#, "{got}");

    // The page mints a ticket, drops the cookie, and opens a stream with the ticket alone.
    let minted = next().await;
    assert_eq!(minted, json!({"minted": 200, "expires_in": 60}));
    assert_eq!(next().await, json!({"open": "ticket"}));
    let id = publish("browser/ticket", 2).await;
    stdin
        .write_all(b"published\n")
        .await
        .expect("tell the browser");
    let got = next().await;
    assert_eq!(got["ticket"]["id"], id, "{got}");
    assert_eq!(got["ticket"]["data"], r#"{"n":2}"#, "{got}");

    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("the browser closes")
        .expect("node exit");
    assert!(status.success(), "node exited with {status}");
}
