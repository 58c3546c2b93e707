//! The event store as an operator meets it: a damaged file surfaces on every transport and in
//! `/readyz`, `tidings store verify` reports the damage, long-poll `timeout=0` answers the
//! history that exists, and the page cache setting bounds memory however much is stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tidings_proto::sse::SseItem;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::support::{BIN, Rng, Server, WAIT};

const EVENTS: u64 = 3000;
const DAMAGED: u64 = 2500;

fn marker(n: u64) -> String {
    format!("MARK-{n:06}-END")
}

/// Publishes events 1..=EVENTS, each carrying its unique marker, and stops the server cleanly.
async fn write_marked(server: &mut Server) {
    for first in (1..=EVENTS).step_by(500) {
        let batch: Vec<Value> = (first..first + 500)
            .map(|n| json!({"topic": "damage", "type": "tick", "data": {"marker": marker(n)}}))
            .collect();
        let ids = server.publish(&Value::Array(batch)).await;
        assert_eq!(ids.len(), 500);
    }
    assert!(server.terminate().success());
}

fn data_dir(server: &Server) -> PathBuf {
    server.dir.path().join("data")
}

/// Overwrites event `n`'s marker in the store file with bytes that are not UTF-8: every copy
/// of it, since a page rewritten by a later commit can leave an older copy in a free page.
fn damage(dir: &Path, n: u64) {
    let path = dir.join("events.redb");
    let mut file = std::fs::read(&path).expect("read the store file");
    let needle = marker(n);
    let hits: Vec<usize> = file
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert!(!hits.is_empty(), "marker of event {n} not in the file");
    for at in hits {
        file[at..at + 4].copy_from_slice(&[0xff; 4]);
    }
    std::fs::write(&path, &file).expect("write the store file");
}

/// Runs `tidings store verify DIR`: exit code and stdout.
fn verify(dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(["store", "verify"])
        .arg(dir)
        .output()
        .expect("run tidings store verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(server: &Server, path: &str) -> (u16, String) {
    let resp = server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// No body may carry the store's own error text (fault 7): only the stable code.
fn assert_no_cause(body: &str) {
    for cause in ["UTF-8", "event 2500", "corrupt", "damaged"] {
        assert!(!body.contains(cause), "`{cause}` leaked into {body}");
    }
}

fn assert_store_unavailable(status: u16, body: &str) {
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(body).expect("JSON error body");
    assert_eq!(v["error"]["code"], "store_unavailable", "{body}");
    assert_no_cause(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_surfaces_everywhere_and_verify_reports_it() {
    let mut server = Server::start(&[]);
    write_marked(&mut server).await;
    let dir = data_dir(&server);
    let (code, out, err) = verify(&dir);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok: every event reads"), "{out}");

    damage(&dir, DAMAGED);
    let (code, out, err) = verify(&dir);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("damaged: seq 2500..=2500 (1 events)"), "{out}");
    assert!(
        out.contains(&format!("seq 1..={EVENTS} ({} readable)", EVENTS - 1)),
        "{out}"
    );

    // SSE: everything before the damage, then an in-band notice, then the end.
    server.restart();
    assert_eq!(
        get(&server, "/readyz").await.0,
        200,
        "nothing has been read yet"
    );
    // A live subscriber at the head, opened while the store still looks healthy.
    let mut live = server.subscribe("").await;
    live.expect_retry().await;
    let mut sse = server
        .subscribe_with("", &[("Last-Event-ID", "earliest")])
        .await;
    sse.expect_retry().await;
    let events = sse.events((DAMAGED - 1) as usize).await;
    assert!(events.last().unwrap().last_event_id.ends_with("-2499"));
    match sse.next_item().await {
        Some(SseItem::Event(e)) => {
            assert_eq!(e.event, "reconnect-required");
            assert_eq!(e.data, r#"{"reason":"store_unavailable"}"#);
        }
        other => panic!("expected reconnect-required, got {other:?}"),
    }
    assert!(
        sse.next_item().await.is_none(),
        "the stream ends after the notice"
    );

    // The store is poisoned: not ready, and every request says so with the stable code only.
    let (status, body) = get(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reason"], "store_unavailable", "{body}");
    assert_no_cause(&body);
    let (status, body) = get(&server, "/events?poll=1&timeout=0").await;
    assert_store_unavailable(status, &body);
    let (status, body) = get(&server, "/events").await;
    assert_store_unavailable(status, &body);
    let (status, body) = server
        .publish_raw(&json!({"topic": "damage", "type": "tick"}), &[])
        .await;
    assert_store_unavailable(status, &body.to_string());
    // The refused publish tells every open stream that nothing more will come.
    let notice = live.next_event().await;
    assert_eq!(notice.event, "reconnect-required");
    assert_eq!(notice.data, r#"{"reason":"store_unavailable"}"#);
    assert!(live.next_item().await.is_none(), "the live stream ends");
    // Logged once, where it was found; not per request.
    let log = server.stderr();
    assert_eq!(log.matches("data is not UTF-8").count(), 1, "{log}");

    // Long-poll from the start: pages up to the damage, then 503. (Stopped cleanly first:
    // after a crash, redb's repair at open would find the damage before any read does.)
    server.terminate();
    server.restart();
    let mut cursor = "earliest".to_owned();
    let mut seen = 0;
    let (status, body) = loop {
        let (status, body) = get(
            &server,
            &format!("/events?poll=1&timeout=0&lastEventId={cursor}"),
        )
        .await;
        if status != 200 {
            break (status, body);
        }
        let v: Value = serde_json::from_str(&body).unwrap();
        let n = v["events"].as_array().unwrap().len();
        assert!(n > 0, "an empty page before the damage: {body}");
        seen += n;
        cursor = v["cursor"].as_str().unwrap().to_owned();
    };
    assert_eq!(seen as u64, DAMAGED - 1);
    assert_store_unavailable(status, &body);

    // NDJSON: the lines before the damage, then the notice as the last line.
    server.terminate();
    server.restart();
    let (status, body) = get(&server, "/events?format=ndjson&lastEventId=earliest").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len() as u64, DAMAGED, "2,499 events and the notice");
    assert_eq!(
        lines.last().copied(),
        Some(r#"{"type":"reconnect-required","data":{"reason":"store_unavailable"}}"#)
    );

    // WebSocket: the frames before the damage, then close 1011.
    server.terminate();
    server.restart();
    let url = format!("ws://{}/events?lastEventId=earliest", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let mut frames = 0u64;
    let code = loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a WebSocket message in time");
        match msg {
            Some(Ok(Message::Text(_))) => frames += 1,
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => {}
            other => panic!("WebSocket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1011);
    // 2,499 events and the reconnect-required frame.
    assert_eq!(frames, DAMAGED);
    assert_eq!(get(&server, "/readyz").await.0, 503);
}

/// `timeout=0` with events after the cursor answers them: it raced the store's read against
/// the timer and answered `{"events":[]}` whenever the read lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_timeout_zero_answers_the_events_after_the_cursor() {
    let server = Server::start(&[]);
    let pad = "p".repeat(1500);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let batch: Vec<Value> = (0..500)
            .map(|_| json!({"topic": "poll", "type": "tick", "data": {"pad": pad}}))
            .collect();
        ids.extend(server.publish(&Value::Array(batch)).await);
    }
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.0);
    let mut empty = 0;
    for _ in 0..60 {
        let at = rng.below(ids.len() as u64 - 1) as usize;
        let (status, body) = get(
            &server,
            &format!("/events?poll=1&timeout=0&lastEventId={}", ids[at]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if v["events"].as_array().unwrap().is_empty() {
            empty += 1;
        }
    }
    assert_eq!(empty, 0, "{empty} of 60 polls answered nothing");
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// Publishing 24 times the store cache leaves the server's memory near its cache, not near
/// what is stored (redb's own default cache is 1 GiB: 720 MB published gave 1 GiB of RSS).
/// The fixed costs (the 4 MiB cache, the 16 MiB replay ring, the allocator's retained pages)
/// are paid in the first half; the second 48 MiB stored must add well under half of itself.
/// Memory that followed what is stored would grow by about as much as is stored; on a loaded
/// machine the allocator's retained pages alone swing by 15 MiB between runs, so the bounds
/// leave room for that and still fail a store that keeps what it stores in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_near_the_store_cache_whatever_is_stored() {
    const CACHE_MIB: u64 = 4;
    const STORED_MIB: u64 = 96;
    let server = Server::start(&["--store-cache-size", "4MiB"]);
    let pad = "m".repeat(60_000);
    let publish_mib = |mib: u64| {
        let server = &server;
        let pad = &pad;
        async move {
            for _ in 0..mib * (1 << 20) / (16 * 60_000) {
                let batch: Vec<Value> = (0..16)
                    .map(|_| json!({"topic": "mem", "type": "tick", "data": {"pad": pad}}))
                    .collect();
                server.publish(&Value::Array(batch)).await;
            }
        }
    };
    let before = rss_bytes(server.pid());
    publish_mib(STORED_MIB / 2).await;
    let half = rss_bytes(server.pid());
    publish_mib(STORED_MIB / 2).await;
    let after = rss_bytes(server.pid());
    eprintln!(
        "RSS {} MiB at start, {} MiB after {} MiB, {} MiB after storing {STORED_MIB} MiB with a {CACHE_MIB} MiB cache",
        before >> 20,
        half >> 20,
        STORED_MIB / 2,
        after >> 20
    );
    assert!(
        after < before + (64 << 20),
        "RSS grew from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
    assert!(
        after < half + (24 << 20),
        "the second {} MiB stored grew RSS from {} MiB to {} MiB",
        STORED_MIB / 2,
        half >> 20,
        after >> 20
    );
}

/// After a crash redb repairs the file at open, and may roll back a damaged last commit: the
/// log says a repair happened (a clean stop and start does not).
#[tokio::test]
async fn a_repair_at_open_is_logged() {
    let mut server = Server::start(&[]);
    server.publish_one("repair", "tick", json!(1)).await;
    assert!(server.terminate().success());
    server.restart();
    assert!(
        !server.stderr().contains("repaired at open"),
        "{}",
        server.stderr()
    );
    server.publish_one("repair", "tick", json!(2)).await;
    server.restart(); // SIGKILL, then start again
    let log = server.stderr();
    assert!(
        log.contains("was not closed cleanly and was repaired at open"),
        "{log}"
    );
    server.assert_works().await;
}
