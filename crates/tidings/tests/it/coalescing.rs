//! Coalescing over real sockets: `latest` progress from 100 downloads at 200 Hz reaches a
//! subscriber at the window's rate with every final value exact; a burst of file operations
//! arrives as one merged batch; a subscriber that stops reading for 10 s while 100 keys
//! update at 200 Hz gets conflated state, not every event, and the server's memory stays
//! bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ops::scrape;
use crate::support::{Launch, Server, dechunk, read_until};

/// A server with `rules` as its configuration file (plus `args`).
fn server_with(rules: &str, args: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tidings.toml");
    std::fs::write(&file, rules).expect("write config");
    let file = file.to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["--config", file.as_str()];
    all.extend_from_slice(args);
    let server = Server::launch(Launch::new(&all));
    // The file was read at start.
    drop(dir);
    server
}

const KEYS: usize = 100;

fn progress_batch(tick: u64) -> Value {
    Value::Array(
        (0..KEYS)
            .map(|k| {
                json!({"topic": "downloads/all", "type": "progress",
                       "data": {"DownloadID": format!("d{k}"), "Downloaded": tick}})
            })
            .collect(),
    )
}

/// Publishes one event per key every 5 ms (200 Hz per key) for `duration`, from two
/// publishers; returns the last tick published (the final value of every key) and the events
/// published.
async fn publish_progress(server: &Server, duration: Duration) -> (u64, u64) {
    let start = Instant::now();
    let mut tick = 0u64;
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while start.elapsed() < duration {
        interval.tick().await;
        tick += 1;
        let (status, answer) = server.publish_raw(&progress_batch(tick), &[]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["ids"].as_array().map(Vec::len), Some(KEYS));
    }
    (tick, tick * KEYS as u64)
}

fn field(data: &str, name: &str) -> Value {
    let v: Value = serde_json::from_str(data).expect("JSON data");
    v[name].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reaches_a_subscriber_at_the_window_rate_with_exact_final_values() {
    let server = server_with(
        r#"
[[coalesce]]
types = ["progress"]
topics = ["downloads/*"]
policy = "latest"
window = "250ms"
key = "/DownloadID"
terminal = ["complete", "error"]
"#,
        &["--durability", "memory", "--publish-rate", "0"],
    );
    let mut sub = server.subscribe("topic=downloads/*").await;
    sub.expect_retry().await;
    server.wait_subscribers(1).await;
    let started = Instant::now();
    let (last, published) = publish_progress(&server, Duration::from_millis(2_500)).await;
    let elapsed = started.elapsed();
    // Half the downloads complete at once (the terminal lets out their held progress first);
    // the other half end on the window's trailing edge.
    let done: Vec<Value> = (0..KEYS / 2)
        .map(|k| json!({"topic": "downloads/all", "type": "complete", "data": {"DownloadID": format!("d{k}")}}))
        .collect();
    let ids = server.publish(&Value::Array(done)).await;
    assert!(
        ids.iter().all(|id| !id.is_empty()),
        "terminals are never held"
    );

    let mut per_key: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    let finished = |per_key: &HashMap<String, Vec<(String, Value)>>| {
        per_key.len() == KEYS
            && per_key.values().all(|evs| {
                evs.last().is_some_and(|(ty, n)| {
                    ty == "complete" || (ty == "progress" && n.as_u64() == Some(last))
                })
            })
            && per_key
                .iter()
                .filter(|(_, evs)| evs.last().unwrap().0 == "complete")
                .count()
                == KEYS / 2
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut received = 0usize;
    let mut last_id = 0u64;
    while !finished(&per_key) {
        assert!(
            Instant::now() < deadline,
            "final values never arrived: {per_key:?}"
        );
        let e = sub.next_event().await;
        received += 1;
        let seq = crate::support::parse_id(&e.last_event_id).1;
        assert!(seq > last_id, "ids rise");
        last_id = seq;
        let key = field(&e.data, "DownloadID")
            .as_str()
            .expect("id")
            .to_owned();
        per_key
            .entry(key)
            .or_default()
            .push((e.event.clone(), field(&e.data, "Downloaded")));
    }
    // At most a leading edge plus one event per window per key (and its terminal).
    let windows = (elapsed.as_millis() / 250) as usize + 3;
    for (key, evs) in &per_key {
        let progress: Vec<u64> = evs
            .iter()
            .filter(|e| e.0 == "progress")
            .map(|e| e.1.as_u64().unwrap())
            .collect();
        assert!(
            progress.len() <= windows,
            "{key}: {} events for {windows} windows",
            progress.len()
        );
        assert!(
            progress.windows(2).all(|w| w[0] < w[1]),
            "{key}: in order: {progress:?}"
        );
        // The final value is exact, and a completed key's comes before its terminal.
        assert_eq!(progress.last(), Some(&last), "{key}");
    }
    assert!(
        received * 20 < published as usize,
        "{received} events delivered for {published} published"
    );
    // Nothing more comes: history holds just what was sent.
    sub.expect_no_event(Duration::from_millis(600)).await;
    let stats = server.readyz().await;
    assert_eq!(stats["head"].as_u64(), Some(last_id), "{stats}");
    let coalesced = stats["coalesced"].as_u64().unwrap();
    assert!(coalesced > 0, "{stats}");
    // The operators' view counts the same, read with Prometheus' own parser.
    let metrics = scrape(&server.url("/metrics"), None).await;
    assert_eq!(
        metrics.value("tidings_events_coalesced_total", &[]),
        coalesced as f64,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_file_operations_arrives_as_one_merged_batch() {
    let server = server_with(
        r#"
[[coalesce]]
types = ["file"]
topics = ["files/*"]
policy = "merge"
window = "400ms"
merge_type = "event"
"#,
        &["--durability", "memory", "--publish-rate", "0"],
    );
    let mut sub = server.subscribe("topic=files/*").await;
    sub.expect_retry().await;
    server.wait_subscribers(1).await;
    let op = |ty: &str, from: &str, to: &str| json!({"topic": "files/u1", "type": "file", "data": {"type": ty, "from": from, "to": to}});
    let burst = [
        op("create", "cloudreve://my/tmp.part", ""),
        op("modify", "cloudreve://my/tmp.part", ""),
        op("delete", "cloudreve://my/tmp.part", ""),
        op("modify", "cloudreve://my/a.txt", ""),
        op("modify", "cloudreve://my/a.txt", ""),
        op("create", "cloudreve://my/b.txt", ""),
        op("modify", "cloudreve://my/b.txt", ""),
        op("rename", "cloudreve://my/c.txt", "cloudreve://my/d.txt"),
        op("rename", "cloudreve://my/d.txt", "cloudreve://my/e.txt"),
        op("modify", "cloudreve://my/f.txt", ""),
        op("delete", "cloudreve://my/f.txt", ""),
        op("create", "cloudreve://my/g.txt", ""),
        op("rename", "cloudreve://my/g.txt", "cloudreve://my/h.txt"),
    ];
    // One operation per request, as a file store sends them.
    for event in &burst {
        let (status, answer) = server.publish_raw(event, &[]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer,
            json!({"ids": [""], "coalesced": 1}),
            "held for the window"
        );
    }
    let e = sub.next_event().await;
    assert_eq!(e.event, "event");
    let batch: Value = serde_json::from_str(&e.data).expect("JSON");
    assert_eq!(
        batch,
        json!([
            {"type": "modify", "from": "cloudreve://my/a.txt", "to": ""},
            {"type": "create", "from": "cloudreve://my/b.txt", "to": ""},
            {"type": "rename", "from": "cloudreve://my/c.txt", "to": "cloudreve://my/e.txt"},
            {"type": "delete", "from": "cloudreve://my/f.txt", "to": ""},
            {"type": "create", "from": "cloudreve://my/h.txt", "to": ""},
        ])
    );
    assert!(
        e.data.starts_with(r#"[{"type":"modify","from":"#),
        "fields in Cloudreve's order: {}",
        e.data
    );
    // One batch, nothing else.
    sub.expect_no_event(Duration::from_millis(800)).await;
    // A resume from before it gets the batch, exactly as sent.
    let mut again = server.subscribe("topic=files/*&lastEventId=earliest").await;
    let replayed = again.next_event().await;
    assert_eq!(
        (replayed.data, replayed.last_event_id),
        (e.data, e.last_event_id)
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_stops_reading_gets_conflated_state_not_every_event() {
    // Conflation only: no window holds anything, every update is stored and sent, and the
    // lagging subscriber's queue keeps the newest per key.
    let server = server_with(
        r#"
[[coalesce]]
types = ["progress"]
topics = ["downloads/*"]
policy = "none"
key = "/DownloadID"
terminal = ["complete"]
"#,
        &[
            "--durability",
            "memory",
            "--retention-max-events",
            "20000",
            "--publish-rate",
            "0",
        ],
    );
    // The lagging one: a small receive buffer, reads the head, then stops reading.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut slow = socket.connect(server.addr).await.expect("connect");
    slow.write_all(
        b"GET /events?topic=downloads/* HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut raw = Vec::new();
    read_until(&mut slow, &mut raw, Duration::from_secs(10), |b| {
        b.windows(9).any(|w| w == b"retry: 20")
    })
    .await;
    server.wait_subscribers(1).await;
    let rss_before = rss_bytes(server.pid());
    let (last, published) = publish_progress(&server, Duration::from_secs(10)).await;
    let rss_after = rss_bytes(server.pid());
    // Now read everything that waits for it: until the stream has been quiet for 2 s (the
    // publishers are done; the keep-alive comes every 15 s), then decode it once.
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the stream never went quiet");
        match tokio::time::timeout(Duration::from_secs(2), slow.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => panic!(
                "the stream ended: {}",
                String::from_utf8_lossy(&raw[raw.len().saturating_sub(500)..])
            ),
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let (_, body, _) = dechunk(&raw);
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut per_key: HashMap<String, u64> = HashMap::new();
    let mut events = 0usize;
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(line).expect("JSON data");
        events += 1;
        let (Some(id), Some(n)) = (v["DownloadID"].as_str(), v["Downloaded"].as_u64()) else {
            panic!("unexpected data {v}");
        };
        let before = per_key.insert(id.to_owned(), n);
        assert!(before.is_none_or(|b| b < n), "{id}: {before:?} then {n}");
    }
    assert_eq!(per_key.len(), KEYS);
    for (id, n) in &per_key {
        assert_eq!(*n, last, "{id}'s final value");
    }
    assert!(
        !text.contains("reconnect-required"),
        "conflated, not dropped"
    );
    // What it gets is what the kernel's socket buffers had taken before it stopped reading
    // (up to a few MB on loopback, ~25k of these events) plus the conflated queue: a fraction
    // of what was published. Every published event was either delivered or conflated away.
    assert!(
        events * 3 < published as usize,
        "{events} events delivered for {published} published"
    );
    let stats = server.readyz().await;
    assert_eq!(
        stats["conflated"].as_u64(),
        Some(published - events as u64),
        "{stats}"
    );
    assert_eq!(stats["dropped_deliveries"].as_u64(), Some(0), "{stats}");
    let metrics = scrape(&server.url("/metrics"), None).await;
    assert_eq!(
        metrics.value("tidings_deliveries_conflated_total", &[]),
        (published - events as u64) as f64,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.value("tidings_deliveries_dropped_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert!(
        rss_after < rss_before + (96 << 20),
        "RSS grew from {rss_before} to {rss_after}"
    );
}
