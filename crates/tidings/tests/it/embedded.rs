//! `crates/tidings-server/examples/embedded.rs` run as its own process: an SSE subscriber to
//! its `/tidings/events` receives every event the application publishes in-process, in each
//! download's order and with the downloads API's fields; the application's own routes answer
//! beside the hub's; and SIGTERM closes the stream with `reconnect-required` and ends the
//! process cleanly.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tidings_client::{Client, DisconnectCause, Item, Since, SubscribeOptions};

use crate::support::{WAIT, ignore};

/// Builds the example (a no-op when it is fresh) and returns its path beside this test.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/it-… → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "tidings-server",
        "--example",
        "embedded",
    ]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building the embedded example failed");
    profile_dir.join("examples").join("embedded")
}

/// The running example, killed on drop.
struct Example {
    child: Child,
    addr: String,
}

impl Drop for Example {
    fn drop(&mut self) {
        ignore(self.child.kill());
        ignore(self.child.wait());
    }
}

fn start() -> Example {
    let mut child = Command::new(example_binary())
        .args(["--listen", "127.0.0.1:0", "--tick-ms", "20", "--demo", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            ignore(tx.send(line));
        }
    });
    let line = rx
        .recv_timeout(WAIT * 3)
        .expect("the example says where it listens");
    let addr = line
        .strip_prefix("embedded: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Example { child, addr }
}

/// The download an event is about: `DownloadID`, or `ID` `req-N` for a `request`.
fn download_of(data: &Value) -> String {
    if let Some(id) = data["DownloadID"].as_str() {
        return id.to_owned();
    }
    let request = data["ID"].as_str().expect("a request has an ID");
    request.replacen("req-", "dl-", 1)
}

const COMPLETES: [&str; 10] = [
    "request", "queued", "started", "progress", "progress", "paused", "resumed", "progress",
    "progress", "complete",
];
const FAILS: [&str; 6] = [
    "request", "queued", "started", "progress", "error", "removed",
];

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_example_serves_its_in_process_publishes_over_sse() {
    let mut example = start();
    let base = format!("http://{}", example.addr);
    let client = Client::new(&format!("{base}/tidings")).expect("client");
    let options = SubscribeOptions::new(["downloads/*", "system"]).since(Since::Earliest);
    let mut stream = std::pin::pin!(client.subscribe_with(options));

    // The three demo downloads, then one added through the application's own route.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut system = None;
    let mut added = None;
    let http = reqwest::Client::new();
    let done = |seen: &BTreeMap<String, Vec<String>>, id: &str, want: &[&str]| {
        seen.get(id).is_some_and(|types| types.len() == want.len())
    };
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let item = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("not every event arrived; so far {seen:?}"))
            .expect("the stream goes on")
            .expect("no permanent error");
        let Item::Event(e) = item else { continue };
        let data: Value = e.data_as().expect("JSON data");
        assert!(e.event_id().is_some(), "a Tidings id: {}", e.id);
        if e.event_type == "system" {
            system = Some(data["Message"].as_str().expect("Message").to_owned());
            continue;
        }
        match e.event_type.as_str() {
            "progress" => {
                let d = data["Downloaded"].as_u64().expect("Downloaded");
                assert!(d <= data["Total"].as_u64().expect("Total"), "{data}");
                assert_eq!(data["ChunkProgress"].as_array().map(Vec::len), Some(8));
            }
            "started" => assert_eq!(data["Total"], json!(104_857_600)),
            "error" => assert_eq!(data["Err"], json!("connection timeout")),
            _ => {}
        }
        seen.entry(download_of(&data))
            .or_default()
            .push(e.event_type);
        if added.is_none()
            && done(&seen, "dl-1", &COMPLETES)
            && done(&seen, "dl-2", &COMPLETES)
            && done(&seen, "dl-3", &FAILS)
        {
            let answer: Value = http
                .post(format!("{base}/downloads"))
                .json(&json!({"url": "https://example.com/debian.iso"}))
                .send()
                .await
                .expect("POST /downloads")
                .json()
                .await
                .expect("JSON answer");
            added = Some(answer["DownloadID"].as_str().expect("an id").to_owned());
        }
        if let Some(id) = &added
            && done(&seen, id, &COMPLETES)
        {
            break;
        }
    }
    let port = example.addr.rsplit(':').next().expect("a port");
    assert_eq!(system, Some(format!("Server started on port {port}")));
    for (id, want) in [
        ("dl-1", &COMPLETES[..]),
        ("dl-2", &COMPLETES),
        ("dl-3", &FAILS),
    ] {
        assert_eq!(seen[id], want, "{id}'s events, in order");
    }
    let added = added.expect("added a download");
    assert_eq!(added, "dl-4");
    assert_eq!(seen[&added], COMPLETES);

    // The application's own route reports what it published.
    let list: Value = http
        .get(format!("{base}/downloads"))
        .send()
        .await
        .expect("GET /downloads")
        .json()
        .await
        .expect("JSON");
    let statuses: Vec<&str> = list["downloads"]
        .as_array()
        .expect("downloads")
        .iter()
        .map(|d| d["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["complete", "complete", "removed", "complete"]);

    // The application's own signal: the stream is told to reconnect, the process ends well.
    let pid = example.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    loop {
        let item = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("the shutdown notice in time")
            .expect("the stream goes on")
            .expect("no permanent error");
        if let Item::Disconnected(d) = item {
            match d.cause {
                DisconnectCause::ReconnectRequired(reason) => {
                    assert_eq!(reason, "shutdown");
                    break;
                }
                other => panic!("expected reconnect-required, got {other}"),
            }
        }
    }
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = example.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the example did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
