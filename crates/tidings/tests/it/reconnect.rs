//! Server-initiated reconnects end to end: a drain of 1,000 streams spread over the window
//! (measured), refusal in-band while draining, `POST /admin/reconnect` by client id and by
//! topic with the camera server's handshake and synthetic `disconnected` event, both
//! keep-alive styles, the admin right, and Cloudreve's reconnect loop (backoff 1 s → 32 s,
//! immediate reconnect on `reconnect-required`, the same client id) through a drain and a hub
//! restart without losing a change.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tidings_proto::sse::{Decoder, SseItem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{Server, SseClient, unique};

const WAIT: Duration = Duration::from_secs(20);

async fn wait_subscribers(server: &Server, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v: Value = server
            .http
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["subscribers"].as_u64() == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "subscribers never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn admin(server: &Server, path: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = server.http.post(server.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Opens a raw HTTP/1.0 SSE stream (one socket, no client library), its head sent.
async fn raw_stream(server: &Server, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("GET /events?{query} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// Reads until the stream says `reconnect-required`; when it did.
async fn until_reconnect(mut s: TcpStream) -> Instant {
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("reconnect-required in time")
            .unwrap();
        assert!(n > 0, "closed without reconnect-required");
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(25).any(|w| w == b"event: reconnect-required") {
            return Instant::now();
        }
        if seen.len() > 8192 {
            seen.drain(..4096);
        }
    }
}

#[tokio::test]
async fn a_drain_of_1000_streams_is_spread_evenly_over_the_window() {
    const N: usize = 1000;
    let spread = Duration::from_secs(3);
    let server = Server::start(&["--drain-spread", "3s", "--sse-retry", "2s"]);
    let mut streams = Vec::with_capacity(N);
    for _ in 0..N {
        streams.push(raw_stream(&server, "topic=drain").await);
    }
    wait_subscribers(&server, N as u64).await;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(until_reconnect(s)))
        .collect();
    let started = Instant::now();
    let (status, v) = admin(&server, "/admin/drain", json!({}), None).await;
    assert_eq!(
        (status, v["streams"].as_u64()),
        (200, Some(N as u64)),
        "{v}"
    );
    // While draining: new subscriptions are refused in-band, with a retry of the window.
    let mut late = server.get_events("topic=drain", &[]).await;
    let mut text = String::new();
    while let Some(chunk) = late.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        text.contains("retry: 3000") && text.contains("reconnect-required"),
        "{text}"
    );
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        503,
        "a draining node leaves rotation"
    );
    let mut at: Vec<Duration> = Vec::with_capacity(N);
    for r in readers {
        at.push(r.await.unwrap().duration_since(started));
    }
    at.sort();
    let (first, last) = (at[0], at[N - 1]);
    let span = last - first;
    eprintln!("drain of {N}: first {first:?}, last {last:?}, span {span:?}");
    // Spread over the window, not all at once (tolerance: 20% of the window).
    assert!(span >= spread.mul_f64(0.8), "span {span:?}");
    assert!(last <= spread + spread.mul_f64(0.2), "last {last:?}");
    // Evenly: each quarter of the window closes about a quarter of the streams.
    for q in 0..4u32 {
        let lo = spread * q / 4;
        let hi = spread * (q + 1) / 4;
        let n = at.iter().filter(|t| **t >= lo && **t < hi).count();
        assert!(
            (N / 4 - N / 10..=N / 4 + N / 10).contains(&n),
            "quarter {q}: {n} of {N} closes"
        );
    }
}

fn camera_and_cloudreve(dir: &std::path::Path) -> String {
    let path = dir.join("profiles.toml");
    std::fs::write(
        &path,
        r#"
        [[endpoints]]
        name = "camera"
        path = "/api/events"
        transports = ["sse", "ndjson"]
        handshake_event = "connected"
        handshake_data = '{"cameraId":"${selector}"}'
        disconnect_event = "disconnected"
        disconnect_data = '{"cameraId":"${selector}","reason":"${reason}"}'
        keepalive_interval = "200ms"

        [[endpoints]]
        name = "cloudreve"
        path = "/api/v4/file/events"
        transports = ["sse"]
        client_id_header = "X-Cr-Client-Id"
        client_id_uuid = true
        keepalive_event = "keep-alive"
        keepalive_data = '{"ok":true}'
        keepalive_interval = "200ms"
        "#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

async fn open(server: &Server, path: &str, headers: &[(&str, &str)]) -> SseClient {
    let mut req = reqwest::Client::new().get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    let mut sub = SseClient::new(resp);
    sub.expect_retry().await;
    sub
}

#[tokio::test]
async fn camera_handshake_synthetic_disconnect_admin_reconnect_and_both_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--config", &camera_and_cloudreve(dir.path())]);
    let mut all = open(&server, "/api/events", &[]).await;
    let hello = all.next_event().await;
    assert_eq!(
        (hello.event.as_str(), hello.data.as_str()),
        ("connected", r#"{"cameraId":"*"}"#)
    );
    let mut cam = open(&server, "/api/events?topic=cam-1&clientId=app-1", &[]).await;
    let hello = cam.next_event().await;
    assert_eq!(hello.data, r#"{"cameraId":"cam-1"}"#);
    assert_eq!(cam.next_event().await.event, "subscribed");
    // The comment keep-alive on its 200 ms interval.
    cam.keep_raw = true;
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&cam.raw).contains(": keepalive\n\n") {
        assert!(Instant::now() < deadline, "no keepalive comment");
        let _item = cam.next_item().await;
    }
    // Cloudreve's named keep-alive.
    let id = "3f7c3393-eecf-4c2a-9a6b-00000000000a";
    let mut cr = open(&server, "/api/v4/file/events", &[("X-Cr-Client-Id", id)]).await;
    assert_eq!(cr.next_event().await.event, "subscribed");
    let beat = cr.next_event().await;
    assert_eq!(
        (beat.event.as_str(), beat.data.as_str()),
        ("keep-alive", r#"{"ok":true}"#)
    );
    // Reconnect by client id: only that stream, with the synthetic event first.
    let (s, v) = admin(
        &server,
        "/admin/reconnect",
        json!({"clientId": "app-1"}),
        None,
    )
    .await;
    assert_eq!((s, v["closed"].as_u64()), (200, Some(1)), "{v}");
    let bye = cam.next_event().await;
    assert_eq!(bye.event, "disconnected");
    assert_eq!(bye.data, r#"{"cameraId":"cam-1","reason":"reconnect"}"#);
    assert_eq!(cam.next_event().await.event, "reconnect-required");
    assert!(cam.next_item().await.is_none(), "closed after it");
    // Reconnect by topic: the `*` stream overlaps `cam-2`.
    let (s, v) = admin(&server, "/admin/reconnect", json!({"topic": "cam-2"}), None).await;
    assert_eq!((s, v["closed"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(all.next_event().await.event, "disconnected");
    assert_eq!(all.next_event().await.event, "reconnect-required");
    let (s, v) = admin(
        &server,
        "/admin/reconnect",
        json!({"clientId": "a", "topic": "b"}),
        None,
    )
    .await;
    assert_eq!(s, 422, "{v}");
    // The handshake and synthetic names are the hub's own.
    for ty in ["connected", "disconnected", "keep-alive"] {
        let (s, v) = server
            .publish_raw(&json!({"topic": "cam-1", "type": ty}), &[])
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("reserved_type")),
            "{ty}"
        );
    }
}

#[tokio::test]
async fn admin_routes_need_the_admin_right() {
    let server = Server::start(&[
        "--token",
        "sub-only-secret-1:subscribe=*;publish=*",
        "--token",
        "operator-secret-22:subscribe=*;admin",
    ]);
    for path in ["/admin/reconnect", "/admin/drain"] {
        let body = json!({"topic": "*"});
        let (s, v) = admin(&server, path, body.clone(), None).await;
        assert_eq!(s, 401, "{path} {v}");
        let (s, v) = admin(&server, path, body.clone(), Some("sub-only-secret-1")).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path} {v}"
        );
        let (s, v) = admin(&server, path, body, Some("operator-secret-22")).await;
        assert_eq!(s, 200, "{path} {v}");
    }
}

/// Cloudreve's client (seed 002): the same client id on every attempt; backoff 1 s doubling
/// to 32 s after a failed attempt, reset once a stream opens (`subscribed`/`resumed`);
/// reconnect at once on `reconnect-required`. Records every change id it gets.
async fn cloudreve_client(
    url: Arc<Mutex<String>>,
    id: String,
    got: Arc<Mutex<BTreeSet<String>>>,
    opened: Arc<Mutex<Vec<String>>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        let base = url.lock().unwrap().clone();
        let attempt = async {
            let resp = reqwest::Client::new()
                .get(format!("{base}/api/v4/file/events"))
                .header("X-Cr-Client-Id", &id)
                .send()
                .await
                .ok()?;
            if resp.status().as_u16() != 200 {
                return None;
            }
            let mut body = resp;
            let mut decoder = Decoder::new(1 << 20);
            let mut is_open = false;
            loop {
                let chunk = match body.chunk().await {
                    Ok(Some(c)) => c,
                    _ => return Some(is_open),
                };
                let mut out = Vec::new();
                decoder.feed(&chunk, &mut out).ok()?;
                for item in out {
                    let SseItem::Event(e) = item else { continue };
                    match e.event.as_str() {
                        "subscribed" | "resumed" => {
                            is_open = true;
                            opened.lock().unwrap().push(e.event.clone());
                        }
                        // Reconnect at once, unless the hub refused this attempt outright.
                        "reconnect-required" => return Some(is_open),
                        "change" => {
                            got.lock().unwrap().insert(e.last_event_id);
                        }
                        _ => {}
                    }
                }
            }
        };
        let outcome = tokio::select! {
            o = attempt => o,
            () = stop.notified() => return,
        };
        match outcome {
            Some(true) => delay = Duration::from_secs(1),
            _ => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.notified() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(32));
            }
        }
    }
}

#[tokio::test]
async fn cloudreves_reconnect_loop_loses_no_change_through_a_drain_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = camera_and_cloudreve(dir.path());
    let mut server = Server::start(&["--config", &config, "--drain-spread", "500ms"]);
    let url = Arc::new(Mutex::new(server.url("")));
    let got = Arc::new(Mutex::new(BTreeSet::new()));
    let opened = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let id = format!("3f7c3393-eecf-4c2a-9a6b-{:012x}", unique() + 0x100);
    let client = tokio::spawn(cloudreve_client(
        url.clone(),
        id,
        got.clone(),
        opened.clone(),
        stop.clone(),
    ));
    wait_subscribers(&server, 1).await;
    let mut published = BTreeSet::new();
    let topic = format!("files{}", unique());
    for i in 0..10 {
        published.insert(server.publish_one(&topic, "change", json!({"i": i})).await);
    }
    // A drain: the stream is told to reconnect; this node refuses it from then on.
    let (s, _) = admin(&server, "/admin/drain", json!({}), None).await;
    assert_eq!(s, 200);
    for i in 10..20 {
        published.insert(server.publish_one(&topic, "change", json!({"i": i})).await);
    }
    // The node goes down (sessions saved) and comes back on another port.
    assert!(server.terminate().success());
    server.restart();
    *url.lock().unwrap() = server.url("");
    for i in 20..30 {
        published.insert(server.publish_one(&topic, "change", json!({"i": i})).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while *got.lock().unwrap() != published {
        assert!(
            Instant::now() < deadline,
            "missing: {:?}",
            published
                .difference(&got.lock().unwrap())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.notify_waiters();
    stop.notify_one();
    client.await.unwrap();
    let opened = opened.lock().unwrap().clone();
    assert_eq!(opened.first().map(String::as_str), Some("subscribed"));
    assert_eq!(
        opened.last().map(String::as_str),
        Some("resumed"),
        "{opened:?}"
    );
}
