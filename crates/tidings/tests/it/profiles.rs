//! The shipped profiles (`profiles/*.toml`) against the seed documents' own client code:
//! each test starts `tidings serve --config profiles/NAME.toml` (its fixed ports: 1700, 8080,
//! 5212, 3001; only the publish listener and the data directory are moved by flags), runs
//! the document's example in Node (tests/profiles/*.cjs: npm's `eventsource` 2, whose options
//! take the documents' `headers`, and `ws`), publishes the document's example payloads and
//! checks what the document's code printed and received: names, payload bytes, handshake,
//! keep-alive style, envelope. `all_four_profiles_in_one_process` runs the same checks
//! against `profiles/all.toml`. The browser's side is in `profiles_browser.rs`.
//!
//! Needs `TIDINGS_TEST_NODE_MODULES` (installed by `./scripts/test`); without it the tests
//! fail, they do not skip. The profiles' ports are fixed, so these tests take turns.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};

use crate::support::{BIN, Launch, Server, SseClient};

/// The profiles bind fixed ports: one test at a time (here and in `profiles_browser.rs`).
pub(crate) static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The documents' placeholder token, which the profiles ship.
pub(crate) const TOKEN: &str = "YOUR_TOKEN";
/// The files profile's placeholder JWT secret.
pub(crate) const JWT_SECRET: &str = "replace-me-with-32-random-bytes-or-more!";

pub(crate) fn profile(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../profiles")
        .join(format!("{name}.toml"));
    p.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .display()
        .to_string()
}

/// Starts a profile as shipped; the publish listener moves to a free port (`--listen`) and
/// the store to a temporary directory, and `extra` flags follow.
pub(crate) fn start(name: &str, extra: &[&str]) -> Server {
    let config = profile(name);
    let mut args = vec!["--config", config.as_str()];
    args.extend_from_slice(extra);
    Server::launch(Launch::new(&args))
}

fn node_modules() -> String {
    std::env::var("TIDINGS_TEST_NODE_MODULES").unwrap_or_else(|_| {
        panic!(
            "TIDINGS_TEST_NODE_MODULES is not set: run ./scripts/test, which installs \
             eventsource, ws and playwright-core into target/test-deps/node"
        )
    })
}

/// A seed document's client running in Node, reporting JSON lines.
struct Node {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
}

impl Node {
    fn start(script: &str, args: &[&str]) -> Node {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profiles/");
        let mut child = Command::new("node")
            .arg(format!("{path}{script}"))
            .args(args)
            .env("TIDINGS_TEST_NODE_MODULES", node_modules())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (Node.js 20 or newer is required)");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads reports until `done` holds over all of them so far (polled, with a deadline).
    async fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(_) => panic!("node ended before {what}; saw {:#?}", self.seen),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(v.get("failed").is_none(), "the script failed: {v}");
            self.seen.push(v);
        }
    }

    async fn opens(&mut self, n: usize) {
        self.until(&format!("{n} open streams"), |s| {
            s.iter().filter(|v| v.get("open").is_some()).count() >= n
        })
        .await;
    }

    /// The events `label`'s recorder got, as (name, data).
    fn recorded(&self, label: &str) -> Vec<(String, String)> {
        self.seen
            .iter()
            .filter(|v| v["label"] == label)
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or_default().to_owned(),
                    v["data"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// What the document's code printed (console.log and console.error), each call's
    /// arguments.
    fn printed(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|v| v.get("log").or_else(|| v.get("error")).cloned())
            .collect()
    }

    async fn stop(mut self) {
        crate::support::ignore(self.child.kill().await);
    }
}

/// Publishes one event whose `data` is the exact JSON text `data`, as a publisher would
/// write it; `headers` add to the bearer token. Returns the status and body.
pub(crate) async fn publish_text(
    server: &Server,
    topic: &str,
    ty: &str,
    data: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    // No topic at all when `topic` is empty: the profile's default topic takes it.
    let body = if topic.is_empty() {
        format!("{{\"type\":{},\"data\":{data}}}", json!(ty))
    } else {
        format!(
            "{{\"topic\":{},\"type\":{},\"data\":{data}}}",
            json!(topic),
            json!(ty)
        )
    };
    let mut req = reqwest::Client::new()
        .post(server.url("/publish"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("publish");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The profile's `[[schemas]]` refuse a payload that breaks the document's field table: 422
/// `schema_mismatch`.
async fn schema_refuses(server: &Server, topic: &str, ty: &str, data: &str) {
    let (status, v) = publish_text(server, topic, ty, data, &[]).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("schema_mismatch")),
        "{ty} {data}: {v}"
    );
}

pub(crate) async fn publish_ok(server: &Server, topic: &str, ty: &str, data: &str) {
    let (status, v) = publish_text(server, topic, ty, data, &[]).await;
    assert_eq!(status, 200, "publish {ty} to {topic}: {v}");
}

/// Opens `path` on `port` with `headers` and waits for `beat` (the endpoint's keep-alive):
/// it must come at about 30 s, not before. Returns the bytes before it.
async fn keepalive_at_30s(
    port: u16,
    path: &'static str,
    headers: String,
    beat: &'static [u8],
) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(beat.len()).any(|w| w == beat) {
        let n = tokio::time::timeout(Duration::from_secs(45), s.read(&mut chunk))
            .await
            .expect("a keep-alive within 45 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a keep-alive: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let at = start.elapsed();
    assert!(
        (Duration::from_secs(29)..Duration::from_secs(36)).contains(&at),
        "the keep-alive came after {at:?}, not 30 s"
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// A keep-alive check running beside the rest of a profile's checks (`keepalive_at_30s`).
type KeepAlive = tokio::task::JoinHandle<String>;

fn downloads_keepalive() -> KeepAlive {
    tokio::spawn(keepalive_at_30s(
        1700,
        "/events",
        "Authorization: Bearer YOUR_TOKEN\r\n".to_owned(),
        b"\n: keepalive\n\n",
    ))
}

fn camera_keepalive() -> KeepAlive {
    tokio::spawn(keepalive_at_30s(
        8080,
        "/api/events",
        String::new(),
        b"\n: keepalive\n\n",
    ))
}

fn files_keepalive() -> KeepAlive {
    tokio::spawn(keepalive_at_30s(
        5212,
        "/api/v4/file/events?uri=cloudreve://my",
        format!("Authorization: Bearer {}\r\n", files_jwt()),
        b"\nevent: keep-alive\ndata: {}\n\n",
    ))
}

/// A raw request's status line and headers (lower-cased names).
async fn head_of(port: u16, request: &str) -> (u16, Vec<(String, String)>) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    crate::support::read_until(&mut s, &mut buf, Duration::from_secs(10), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = crate::support::status_of(&buf).expect("a status line");
    lines.next();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

// ---------------------------------------------------------------- downloads (seed 000)

/// The document's example payloads, in the order a download lives them. `request` and
/// `system` are published as the document's publisher would: a type and data, no topic.
pub(crate) const DOWNLOADS: [(&str, &str, &str); 10] = [
    (
        "downloads/abc-123",
        "queued",
        r#"{"DownloadID":"abc-123","Filename":"file.zip","URL":"https://example.com/file.zip","DestPath":"/home/user/downloads/file.zip"}"#,
    ),
    (
        "downloads/abc-123",
        "started",
        r#"{"DownloadID":"abc-123","URL":"https://example.com/file.zip","Filename":"file.zip","Total":104857600,"DestPath":"/home/user/downloads/file.zip"}"#,
    ),
    (
        "downloads/abc-123",
        "progress",
        r#"{"DownloadID":"abc-123","Downloaded":52428800,"Total":104857600,"Speed":10485760,"Elapsed":5000000000,"ActiveConnections":8,"ChunkBitmap":[],"BitmapWidth":0,"ActualChunkSize":0,"ChunkProgress":[]}"#,
    ),
    (
        "downloads/abc-123",
        "paused",
        r#"{"DownloadID":"abc-123","Filename":"file.zip","Downloaded":52428800}"#,
    ),
    (
        "downloads/abc-123",
        "resumed",
        r#"{"DownloadID":"abc-123","Filename":"file.zip"}"#,
    ),
    (
        "downloads/abc-123",
        "complete",
        r#"{"DownloadID":"abc-123","Filename":"file.zip","Elapsed":10000000000,"Total":104857600,"AvgSpeed":10485760}"#,
    ),
    (
        "downloads/abc-123",
        "error",
        r#"{"DownloadID":"abc-123","Filename":"file.zip","Err":"connection timeout"}"#,
    ),
    (
        "downloads/abc-123",
        "removed",
        r#"{"DownloadID":"abc-123","Filename":"file.zip"}"#,
    ),
    (
        "",
        "request",
        r#"{"ID":"req-123","URL":"https://example.com/file.zip","Filename":"file.zip","Path":"/downloads","Mirrors":[],"Headers":{}}"#,
    ),
    ("", "system", r#"{"Message":"Server started on port 1700"}"#),
];

async fn conform_downloads(server: &Server, keepalive: KeepAlive) {
    // The response head as the document lists it; no token, no stream.
    let (status, headers) = head_of(
        1700,
        "GET /events HTTP/1.1\r\nHost: localhost:1700\r\nAuthorization: Bearer YOUR_TOKEN\r\n\
         Accept: text/event-stream\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{headers:?}");
    for (name, value) in [
        ("content-type", "text/event-stream"),
        ("cache-control", "no-cache"),
        ("connection", "keep-alive"),
    ] {
        assert!(
            headers.iter().any(|(k, v)| k == name && v == value),
            "{name}: {value} missing from {headers:?}"
        );
    }
    let (status, _) = head_of(1700, "GET /events HTTP/1.1\r\nHost: localhost:1700\r\n\r\n").await;
    assert_eq!(status, 401, "a stream needs the token");

    let mut node = Node::start("downloads.cjs", &[]);
    node.opens(3).await;
    for (topic, ty, data) in DOWNLOADS {
        publish_ok(server, topic, ty, data).await;
    }
    node.until("the ten events and the examples' output", |s| {
        s.iter().filter(|v| v["label"] == "recorder").count() >= 10
            && s.iter()
                .filter(|v| v["log"][0] == "Active downloads:")
                .count()
                >= 5
            && s.iter()
                .any(|v| v["log"][0] == "Download complete: file.zip")
            && s.iter()
                .any(|v| v["error"][0] == "Download error: connection timeout")
            && s.iter().any(|v| v["error"][0] == "SSE connection error:")
    })
    .await;
    // Every type, in order, with the document's payload byte for byte.
    let want: Vec<(String, String)> = DOWNLOADS
        .iter()
        .map(|(_, ty, data)| ((*ty).to_owned(), (*data).to_owned()))
        .collect();
    assert_eq!(node.recorded("recorder"), want);
    let printed = node.printed();
    assert!(
        printed.contains(&json!(["Progress: 52428800/104857600 bytes"])),
        "{printed:#?}"
    );
    // The dashboard tracked the download through queued, started, progress, paused and
    // complete (the five events it listens to).
    assert_eq!(
        printed
            .iter()
            .filter(|p| **p == json!(["Active downloads:", 1]))
            .count(),
        5,
        "{printed:#?}"
    );
    // The document's `onerror` also hears the `error` event (as in a browser: it is the
    // handler of every event named `error`), and nothing else: the connection never failed.
    let connection_errors: Vec<&Value> = printed
        .iter()
        .filter(|p| p[0] == "SSE connection error:")
        .collect();
    assert_eq!(connection_errors.len(), 1, "{printed:#?}");
    let error_id = node
        .seen
        .iter()
        .find(|v| v["label"] == "recorder" && v["event"] == "error")
        .map(|v| v["id"].clone());
    assert_eq!(
        Some(connection_errors[0][1]["lastEventId"].clone()),
        error_id,
        "{printed:#?}"
    );
    coalesced_and_listed(server, &mut node).await;
    node.stop().await;
    let before = keepalive.await.expect("keep-alive task");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
}

/// A `progress` payload in the document's shape.
fn progress_of(id: &str, downloaded: u64) -> String {
    format!(
        r#"{{"DownloadID":"{id}","Downloaded":{downloaded},"Total":1000000,"Speed":1000,"Elapsed":1000,"ActiveConnections":1,"ChunkBitmap":[],"BitmapWidth":0,"ActualChunkSize":0,"ChunkProgress":[]}}"#
    )
}

fn queued_of(id: &str) -> String {
    format!(
        r#"{{"DownloadID":"{id}","Filename":"{id}.zip","URL":"https://example.com/{id}.zip","DestPath":"/home/user/downloads/{id}.zip"}}"#
    )
}

/// The profile's `[[coalesce]]`, `[snapshot]` and `[[schemas]]`, seen by the document's
/// client (after `conform_downloads`' ten events, whose `removed` took abc-123 off the List):
/// progress published at 200 Hz reaches it at most about 4 times a second, the first at once
/// and the final value exact before `complete`; the List is `GET /snapshot` and
/// `/events?snapshot=1`, each download's newest event, a removed one gone.
async fn coalesced_and_listed(server: &Server, node: &mut Node) {
    // The field tables: a progress whose `Downloaded` is no integer is refused.
    schema_refuses(
        server,
        "downloads/def-456",
        "progress",
        r#"{"DownloadID":"def-456","Downloaded":"half"}"#,
    )
    .await;

    publish_ok(server, "downloads/def-456", "queued", &queued_of("def-456")).await;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(1) {
        tick.tick().await;
        n += 1;
        publish_ok(
            server,
            "downloads/def-456",
            "progress",
            &progress_of("def-456", n),
        )
        .await;
    }
    let elapsed = start.elapsed();
    let complete = r#"{"DownloadID":"def-456","Filename":"def-456.zip","Elapsed":1000,"Total":1000000,"AvgSpeed":1000}"#;
    publish_ok(server, "downloads/def-456", "complete", complete).await;
    node.until("def-456 complete", |s| {
        s.iter().any(|v| {
            v["label"] == "recorder"
                && v["event"] == "complete"
                && v["data"].as_str().is_some_and(|d| d.contains("def-456"))
        })
    })
    .await;
    let seen: Vec<(String, String)> = node
        .recorded("recorder")
        .into_iter()
        .filter(|(_, d)| d.contains(r#""def-456""#))
        .collect();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert_eq!(names.last(), Some(&"complete"), "{names:?}");
    let progress: Vec<&str> = seen[1..seen.len() - 1]
        .iter()
        .map(|(name, d)| {
            assert_eq!(name, "progress");
            d.as_str()
        })
        .collect();
    // The first at once, then at most one per 250 ms window, the last one exact.
    let most = 2 + usize::try_from(elapsed.as_millis() / 250).unwrap_or(usize::MAX);
    assert!(
        progress.len() >= 2 && progress.len() <= most,
        "{} deliveries of {n} in {elapsed:?}",
        progress.len()
    );
    assert_eq!(progress[0], progress_of("def-456", 1), "the leading edge");
    assert_eq!(
        progress.last().copied(),
        Some(progress_of("def-456", n).as_str()),
        "the final value, before complete"
    );

    // A download still going.
    publish_ok(server, "downloads/ghi-789", "queued", &queued_of("ghi-789")).await;
    publish_ok(
        server,
        "downloads/ghi-789",
        "progress",
        &progress_of("ghi-789", 7),
    )
    .await;
    // The List: each download's newest event, in id order; abc-123 was removed.
    let list: Value = reqwest::Client::new()
        .get(server.url("/snapshot?topic=downloads&topic=downloads/*"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /snapshot")
        .json()
        .await
        .expect("snapshot JSON");
    let rows: Vec<(Value, Value, Value)> = list["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|e| (e["key"].clone(), e["type"].clone(), e["data"].clone()))
        .collect();
    let data = |text: &str| serde_json::from_str::<Value>(text).expect("JSON");
    let want = vec![
        (json!("def-456"), json!("complete"), data(complete)),
        (
            json!("ghi-789"),
            json!("progress"),
            data(&progress_of("ghi-789", 7)),
        ),
    ];
    assert_eq!(rows, want, "{list}");

    // The same List first on the profile's own stream, then the stream from its cursor.
    let resp = reqwest::Client::new()
        .get("http://127.0.0.1:1700/events?snapshot=1")
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /events?snapshot=1");
    assert_eq!(resp.status().as_u16(), 200);
    let mut sub = SseClient::new(resp);
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = sub.next_event_within(Duration::from_secs(20)).await;
        got.push((e.event, data(&e.data), e.last_event_id));
    }
    assert_eq!(
        got.iter()
            .map(|(n, d, _)| (n.clone(), d.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("complete".to_owned(), want[0].2.clone()),
            ("progress".to_owned(), want[1].2.clone()),
            ("snapshot".to_owned(), json!({"cursor": list["cursor"]})),
        ]
    );
    assert_eq!(
        json!(got[2].2),
        list["cursor"],
        "the handoff's id is the cursor"
    );
    publish_ok(
        server,
        "downloads/ghi-789",
        "removed",
        r#"{"DownloadID":"ghi-789","Filename":"ghi-789.zip"}"#,
    )
    .await;
    let e = sub.next_event_within(Duration::from_secs(20)).await;
    assert_eq!(e.event, "removed", "then the stream, live");
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_profile_serves_the_documents_client() {
    let _ports = PORTS.lock().await;
    let server = start("downloads", &[]);
    conform_downloads(&server, downloads_keepalive()).await;
}

// ---------------------------------------------------------------- camera (seed 001)

/// One of each of the document's nine event names, for camera SN42 (payloads in the
/// document's shapes).
pub(crate) const CAMERA: [(&str, &str); 9] = [
    (
        "connected",
        r#"{"cameraId":"SN42","model":"ILCE-7M4","connection":"usb"}"#,
    ),
    (
        "propertyChanged",
        r#"{"cameraId":"SN42","codes":[256,257]}"#,
    ),
    ("afStatus", r#"{"state":"focused","source":"SN42"}"#),
    (
        "downloadComplete",
        r#"{"cameraId":"SN42","filename":"DSC00001.JPG","savedPath":"/home/user/photos/DSC00001.JPG"}"#,
    ),
    (
        "transferProgress",
        r#"{"cameraId":"SN42","contentId":7,"fileId":1,"percent":50}"#,
    ),
    (
        "contentsTransfer",
        r#"{"cameraId":"SN42","files":["DSC00001.JPG","DSC00002.JPG"]}"#,
    ),
    (
        "operationResult",
        r#"{"cameraId":"SN42","operation":"shutter","result":"ok"}"#,
    ),
    (
        "error",
        r#"{"cameraId":"SN42","code":33281,"message":"device busy"}"#,
    ),
    (
        "disconnected",
        r#"{"cameraId":"SN42","reason":"usb unplugged"}"#,
    ),
];

/// Ends with the server shutting down (the synthetic `disconnected`).
async fn conform_camera(server: &mut Server, keepalive: KeepAlive) {
    // A path parameter that is not one safe segment is refused before anything opens.
    let (status, _) = head_of(
        8080,
        "GET /api/cameras/a*b/events HTTP/1.1\r\nHost: localhost:8080\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    schema_refuses(
        server,
        "camera/SN42",
        "downloadComplete",
        r#"{"cameraId":"SN42"}"#,
    )
    .await;
    let (status, v) = publish_text(server, "camera/SN42", "reconnect-required", "{}", &[]).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("reserved_type")),
        "{v}"
    );
    let mut node = Node::start("camera.cjs", &[]);
    node.opens(3).await;
    for (ty, data) in CAMERA {
        publish_ok(server, "camera/SN42", ty, data).await;
    }
    let other = r#"{"cameraId":"SN7","codes":[1]}"#;
    publish_ok(server, "camera/SN7", "propertyChanged", other).await;
    node.until("every event on both streams", |s| {
        s.iter().filter(|v| v["label"] == "all").count() >= 11
            && s.iter().filter(|v| v["label"] == "SN42").count() >= 10
            && s.iter().any(|v| v.get("log").is_some())
    })
    .await;
    // First the handshake with the subscription's camera id (or `*`), then the events.
    let mut all = vec![("connected".to_owned(), r#"{"cameraId":"*"}"#.to_owned())];
    all.extend(
        CAMERA
            .iter()
            .map(|(t, d)| ((*t).to_owned(), (*d).to_owned())),
    );
    let mut one = vec![("connected".to_owned(), r#"{"cameraId":"SN42"}"#.to_owned())];
    one.extend(
        CAMERA
            .iter()
            .map(|(t, d)| ((*t).to_owned(), (*d).to_owned())),
    );
    all.push(("propertyChanged".to_owned(), other.to_owned()));
    assert_eq!(node.recorded("all"), all);
    assert_eq!(
        node.recorded("SN42"),
        one,
        "one camera's stream has only its events"
    );
    assert_eq!(
        node.printed(),
        vec![json!(["File saved:", "/home/user/photos/DSC00001.JPG"])]
    );
    let before = keepalive.await.expect("keep-alive task");
    assert!(
        before.contains("event: connected\ndata: {\"cameraId\":\"*\"}\n\n"),
        "{before}"
    );

    // A clean shutdown: each stream gets a synthetic `disconnected` first.
    server.sigterm();
    node.until("the synthetic disconnected events", |s| {
        s.iter()
            .filter(|v| {
                v["event"] == "disconnected"
                    && v["data"].as_str().is_some_and(|d| d.contains("shutdown"))
            })
            .count()
            >= 2
    })
    .await;
    let last = |label: &str| node.recorded(label).last().cloned();
    assert_eq!(
        last("all"),
        Some((
            "disconnected".to_owned(),
            r#"{"cameraId":"*","reason":"shutdown"}"#.to_owned()
        ))
    );
    assert_eq!(
        last("SN42"),
        Some((
            "disconnected".to_owned(),
            r#"{"cameraId":"SN42","reason":"shutdown"}"#.to_owned()
        ))
    );
    node.stop().await;
    server.wait_exit();
}

#[tokio::test(flavor = "multi_thread")]
async fn camera_profile_serves_the_documents_client() {
    let _ports = PORTS.lock().await;
    let mut server = start("camera", &[]);
    conform_camera(&mut server, camera_keepalive()).await;
}

// ---------------------------------------------------------------- tasks (seed 003)

pub(crate) const TASKS: [(&str, &str, &str); 3] = [
    (
        "tasks/queue",
        "queue-update",
        r#"{"compressionActive":true,"uploadActive":true,"compressionRunning":2,"compressionRunningConfigs":[{"id":"t1"},{"id":"t2"}],"uploadRunning":1,"uploadRunningConfigs":[{"id":"t0"}],"compressionQueued":5,"compressionQueuedConfigs":[],"uploadQueued":3,"uploadQueuedConfigs":[]}"#,
    ),
    (
        "tasks/task-uuid",
        "command-progress",
        r#"{"id":"task-uuid","currentStep":"COMPRESSION","percentage":45.67}"#,
    ),
    (
        "tasks/task-uuid",
        "task-finished",
        r#"{"taskConfig":{"id":"task-uuid","name":"my-post","status":"completed"}}"#,
    ),
];

async fn conform_tasks(server: &Server) {
    schema_refuses(
        server,
        "tasks/task-uuid",
        "command-progress",
        r#"{"id":"task-uuid","currentStep":"upload","percentage":"45%"}"#,
    )
    .await;
    let mut node = Node::start("tasks.cjs", &[]);
    node.opens(1).await;
    for (topic, ty, data) in TASKS {
        publish_ok(server, topic, ty, data).await;
    }
    node.until("three messages and the example's output", |s| {
        s.iter().filter(|v| v.get("message").is_some()).count() >= 3
            && s.iter().filter(|v| v.get("log").is_some()).count() >= 3
    })
    .await;
    let messages: Vec<String> = node
        .seen
        .iter()
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect();
    for (text, (_, ty, data)) in messages.iter().zip(TASKS) {
        // `{"success":true,…,"data":{"type":"<type>",<the payload's fields>}}`, the payload's
        // fields byte for byte after the type.
        let want_data = format!("{{\"type\":\"{ty}\",{}", &data[1..]);
        assert!(text.starts_with("{\"success\":true,"), "{text}");
        assert!(text.ends_with(&format!("\"data\":{want_data}}}")), "{text}");
        let v: Value = serde_json::from_str(text).expect("JSON");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.iter().all(|k| ["success", "data", "id"].contains(k)),
            "{keys:?}"
        );
    }
    let mut queue: Value = serde_json::from_str(TASKS[0].2).expect("JSON");
    queue["type"] = json!("queue-update");
    assert_eq!(
        node.printed(),
        vec![
            json!(["Queue status:", queue]),
            json!(["Task task-uuid: 45.67%"]),
            json!(["Task completed:", "my-post"]),
        ]
    );
    node.stop().await;

    // Without the token, no upgrade.
    let err = tokio_tungstenite::connect_async("ws://localhost:3001/?token=wrong-token")
        .await
        .expect_err("a wrong token is refused");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_profile_serves_the_documents_client() {
    let _ports = PORTS.lock().await;
    let server = start("tasks", &[]);
    conform_tasks(&server).await;
}

// ---------------------------------------------------------------- files (seed 002)

pub(crate) fn files_jwt() -> String {
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "--hs256-secret",
            JWT_SECRET,
            "--subscribe",
            "cloudreve://my/*",
        ])
        .env_remove("TIDINGS_JWT_HS256_SECRET")
        .output()
        .expect("run tidings token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

pub(crate) fn change(ty: &str, from: &str, to: &str) -> String {
    format!(r#"[{{"type":"{ty}","from":"{from}","to":"{to}"}}]"#)
}

/// Restarts `server` cleanly (the document's reconnect loop must survive it).
async fn conform_files(server: &mut Server, keepalive: KeepAlive) {
    let jwt = files_jwt();
    // The hub's own names stay reserved where this endpoint's streams carry them.
    let (status, v) = publish_text(server, "cloudreve://my/x", "resumed", "{}", &[]).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("reserved_type")),
        "{v}"
    );
    schema_refuses(
        server,
        "cloudreve://my/docs",
        "rename",
        r#"{"type":"rename","from":"cloudreve://my/docs/a.txt"}"#,
    )
    .await;
    let mut node = Node::start("files.cjs", &[&jwt]);
    node.until("the subscription", |s| {
        s.iter().any(|v| v["log"][0] == "Subscription established")
            && s.iter().any(|v| v["log"][0] == "clientId")
    })
    .await;
    let client_id = node
        .printed()
        .iter()
        .find(|p| p[0] == "clientId")
        .and_then(|p| p[1].as_str().map(str::to_owned))
        .expect("the client's id");
    assert_eq!(node.recorded("doc")[0].0, "subscribed");

    // A change in the watched tree reaches the client as the document shows it; its own
    // change does not; one outside the tree does not either.
    let a = change("create", "", "cloudreve://my/docs/a.txt");
    publish_ok(server, "cloudreve://my/docs/a.txt", "event", &a).await;
    let own = change(
        "modify",
        "cloudreve://my/docs/a.txt",
        "cloudreve://my/docs/a.txt",
    );
    let (status, v) = publish_text(
        server,
        "cloudreve://my/docs/a.txt",
        "event",
        &own,
        &[("x-client-id", &client_id)],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let b = change(
        "rename",
        "cloudreve://my/docs/a.txt",
        "cloudreve://my/docs/b.txt",
    );
    publish_ok(server, "cloudreve://my/docs/a.txt", "event", &b).await;
    node.until("two changes, printed", |s| {
        s.iter().filter(|v| v["event"] == "event").count() >= 2
            && s.iter().any(|v| {
                v["log"][0] == "rename: cloudreve://my/docs/a.txt -> cloudreve://my/docs/b.txt"
            })
    })
    .await;
    let events: Vec<String> = node
        .recorded("doc")
        .into_iter()
        .filter(|(n, _)| n == "event")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(
        events,
        vec![a.clone(), b.clone()],
        "its own change is not echoed"
    );
    let printed = node.printed();
    assert!(
        printed.contains(&json!(["create:  -> cloudreve://my/docs/a.txt"])),
        "{printed:#?}"
    );
    assert!(
        printed.contains(&json!([
            "rename: cloudreve://my/docs/a.txt -> cloudreve://my/docs/b.txt"
        ])),
        "{printed:#?}"
    );
    let before = keepalive.await.expect("keep-alive task");
    assert!(
        !before.contains(": keepalive"),
        "an event, not a comment: {before}"
    );

    // The hub restarts cleanly: the client is told `reconnect-required`, its loop reconnects
    // (immediately, then every 5 s while the hub is down). A change published after the
    // restart, before the client is back, reaches it with `resumed`.
    server.sigterm();
    server.wait_exit();
    server.restart();
    let c = change("delete", "cloudreve://my/docs/b.txt", "");
    publish_ok(server, "cloudreve://my/docs/b.txt", "event", &c).await;
    node.until(
        "the resumed subscription and the change made while away",
        |s| {
            s.iter().any(|v| v["log"][0] == "Subscription resumed")
                && s.iter().filter(|v| v["event"] == "event").count() >= 3
        },
    )
    .await;
    let recorded = node.recorded("doc");
    assert!(
        recorded.iter().any(|(n, _)| n == "reconnect-required"),
        "the hub said reconnect-required before it went: {recorded:?}"
    );
    let events: Vec<String> = recorded
        .into_iter()
        .filter(|(n, _)| n == "event")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(events, vec![a, b, c], "nothing lost, nothing twice");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_profile_serves_the_documents_client_across_a_restart() {
    let _ports = PORTS.lock().await;
    let mut server = start("files", &["--drain-spread", "200ms"]);
    conform_files(&mut server, files_keepalive()).await;
}

// ------------------------------------------------------- files, fed by `tidings watch`

/// Starts `tidings watch dir --topic-root cloudreve://my`, publishing to `server` with the
/// profile's token; returns once it says it is watching (its other lines are drained).
async fn watch_into(server: &Server, dir: &std::path::Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("watch")
        .arg(dir)
        .args(["--topic-root", "cloudreve://my", "--token", TOKEN])
        .arg("--url")
        .arg(format!("http://{}", server.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDINGS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn tidings watch");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("tidings watch says it is watching in time")
        .expect("read its stderr")
        .unwrap_or_default();
    assert!(first.starts_with("tidings: watching "), "{first}");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    child
}

/// The `event` batches the document's client received, in order.
fn batches(node: &Node) -> Vec<String> {
    node.recorded("doc")
        .into_iter()
        .filter(|(n, _)| n == "event")
        .map(|(_, d)| d)
        .collect()
}

fn append(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open to append");
    f.write_all(bytes).expect("append");
}

/// Real file operations in a temp directory, seen by `tidings watch`, published one change per
/// event, merged by the files profile's `[[coalesce]] policy = "merge"` and received by the
/// document's own client as one `event` batch in Cloudreve's shape, per the algebra: create
/// then modify then rename is a create at the new path, create then delete cancels out,
/// renames chain, modify then delete is a delete.
#[tokio::test(flavor = "multi_thread")]
async fn files_profile_merges_what_tidings_watch_sees_into_the_documents_batches() {
    let _ports = PORTS.lock().await;
    let server = start("files", &[]);
    let jwt = files_jwt();
    let mut node = Node::start("files.cjs", &[&jwt]);
    node.until("the subscription", |s| {
        s.iter().any(|v| v["log"][0] == "Subscription established")
    })
    .await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_owned();
    let mut watch = watch_into(&server, &dir).await;
    let printed_has = |line: String| move |s: &[Value]| s.iter().any(|v| v["log"] == json!([line]));

    // Two files exist before the burst (written: a create and a modify each, one create).
    std::fs::write(dir.join("a.txt"), b"a").expect("write");
    std::fs::write(dir.join("old.txt"), b"old").expect("write");
    node.until("the files made before the burst", |s| {
        printed_has("create: cloudreve://my/a.txt -> ".into())(s)
            && printed_has("create: cloudreve://my/old.txt -> ".into())(s)
    })
    .await;
    let before = batches(&node).len();

    // The burst, well within one 500 ms window.
    std::fs::write(dir.join("new.txt"), b"1").expect("write");
    append(&dir.join("new.txt"), b"2");
    std::fs::rename(dir.join("new.txt"), dir.join("fresh.txt")).expect("rename");
    std::fs::write(dir.join("tmp.part"), b"x").expect("write");
    std::fs::remove_file(dir.join("tmp.part")).expect("remove");
    std::fs::rename(dir.join("a.txt"), dir.join("b.txt")).expect("rename");
    std::fs::rename(dir.join("b.txt"), dir.join("c.txt")).expect("rename");
    append(&dir.join("old.txt"), b"er");
    std::fs::remove_file(dir.join("old.txt")).expect("remove");
    let merged = concat!(
        r#"[{"type":"create","from":"cloudreve://my/fresh.txt","to":""},"#,
        r#"{"type":"rename","from":"cloudreve://my/a.txt","to":"cloudreve://my/c.txt"},"#,
        r#"{"type":"delete","from":"cloudreve://my/old.txt","to":""}]"#
    );
    node.until("the burst's batch", |s| {
        s.iter()
            .any(|v| v["event"] == "event" && v["data"] == merged)
    })
    .await;
    // A later change, in a window of its own, comes after it on the same topic: so the burst
    // was one batch and nothing of it was left for another.
    std::fs::write(dir.join("z.txt"), b"z").expect("write");
    node.until(
        "the later change",
        printed_has("create: cloudreve://my/z.txt -> ".into()),
    )
    .await;
    let after: Vec<String> = batches(&node).split_off(before);
    assert_eq!(
        after,
        [
            merged.to_owned(),
            r#"[{"type":"create","from":"cloudreve://my/z.txt","to":""}]"#.to_owned()
        ],
        "one merged batch for the burst"
    );
    // The document's loop printed each change of the batch.
    let printed = node.printed();
    for line in [
        "create: cloudreve://my/fresh.txt -> ",
        "rename: cloudreve://my/a.txt -> cloudreve://my/c.txt",
        "delete: cloudreve://my/old.txt -> ",
    ] {
        assert!(printed.contains(&json!([line])), "{line}: {printed:#?}");
    }
    assert!(
        !printed
            .iter()
            .any(|p| p[0].as_str().is_some_and(|l| l.contains("tmp.part"))),
        "create then delete cancels out: {printed:#?}"
    );
    crate::support::ignore(watch.kill().await);
    node.stop().await;
}

// ---------------------------------------------------------------- all four at once

#[tokio::test(flavor = "multi_thread")]
async fn all_four_profiles_in_one_process() {
    let _ports = PORTS.lock().await;
    let mut server = start("all", &["--drain-spread", "200ms"]);
    // The three keep-alive checks take 30 s each: they run at once, beside the other checks.
    let downloads = downloads_keepalive();
    let files = files_keepalive();
    let camera = camera_keepalive();
    conform_downloads(&server, downloads).await;
    conform_tasks(&server).await;
    // The camera checks end with a shutdown, which would close the files' stream: its
    // keep-alive is settled first, and the files' checks (with their own restart) come last.
    let files = files.await.expect("keep-alive task");
    conform_camera(&mut server, camera).await;
    server.restart();
    conform_files(&mut server, tokio::spawn(async move { files })).await;
}
