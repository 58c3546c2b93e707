//! WebSocket, NDJSON and long-poll end to end over real sockets: live delivery, resume without
//! gap or duplicate, selectors, auth and Origin refusal, oversized client frames, ping/pong
//! timeout, a slow WebSocket reader that slows nobody, endpoints on their own port, and a
//! WebSocket client from another ecosystem (Python's `websockets`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{Server, strip_ansi, unique};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);

fn ws_url(addr: SocketAddr, path_and_query: &str) -> String {
    format!("ws://{addr}{path_and_query}")
}

async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("header name"),
            v.parse().expect("header value"),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Err(_) => panic!("WebSocket connect to {url} timed out"),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("WebSocket connect to {url}: {e}"),
    }
}

/// The next text frame as JSON (pings and pongs skipped); panics on close or timeout.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no WebSocket message in time")
            .expect("WebSocket ended")
            .expect("WebSocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("frame is JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and every JSON text frame before it.
async fn read_to_close(ws: &mut Ws) -> (u16, Vec<Value>) {
    let mut frames = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                frames.push(serde_json::from_str(t.as_str()).expect("JSON"))
            }
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frames),
            Some(Ok(Message::Close(None))) => return (1005, frames),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("WebSocket error before close: {e}"),
            None => panic!("WebSocket ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn websocket_live_selectors_and_frame_shape() {
    let server = Server::start(&["--durability", "memory"]);
    let t = format!("tasks{}", unique());
    let mut ws = ws_connect(
        &ws_url(server.addr, &format!("/events?topic={t}/*&type=done")),
        &[],
    )
    .await
    .expect("connect");
    // Wait until the subscription is registered: a first event proves it.
    let mut id = String::new();
    for _ in 0..50 {
        id = server
            .publish_one(&format!("{t}/a"), "done", json!({"n": 0}))
            .await;
        if let Ok(Some(Ok(Message::Text(_)))) =
            tokio::time::timeout(Duration::from_millis(100), ws.next()).await
        {
            break;
        }
    }
    assert!(!id.is_empty());
    server.publish_one("elsewhere", "done", json!({})).await;
    server
        .publish_one(&format!("{t}/a"), "progress", json!({}))
        .await;
    let key_id = server
        .publish(&json!({"topic": format!("{t}/b"), "type": "done", "key": "k1", "data": {"Queued": [1, 2]}}))
        .await
        .remove(0);
    let frame = next_json(&mut ws).await;
    assert_eq!(
        frame,
        json!({"id": key_id, "topic": format!("{t}/b"), "type": "done", "key": "k1", "data": {"Queued": [1, 2]}})
    );
}

#[tokio::test]
async fn websocket_resume_has_no_gap_and_no_duplicate() {
    let server = Server::start(&[]);
    let topic = format!("r{}", unique());
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(server.publish_one(&topic, "x", json!(i)).await);
    }
    let mut ws = ws_connect(
        &ws_url(
            server.addr,
            &format!("/events?topic={topic}&lastEventId={}", ids[2]),
        ),
        &[],
    )
    .await
    .expect("connect");
    for want in &ids[3..] {
        assert_eq!(next_json(&mut ws).await["id"], json!(want));
    }
    let live = server.publish_one(&topic, "x", json!(6)).await;
    assert_eq!(next_json(&mut ws).await["id"], json!(live));
    // A cursor from another store gets a reset frame, then live.
    let mut ws2 = ws_connect(
        &ws_url(
            server.addr,
            &format!("/events?topic={topic}&lastEventId=00000000-3"),
        ),
        &[],
    )
    .await
    .expect("connect");
    let reset = next_json(&mut ws2).await;
    assert_eq!(reset["type"], "reset");
    assert_eq!(reset["data"]["reason"], "epoch_mismatch");
    assert!(reset.get("topic").is_none());
}

#[tokio::test]
async fn websocket_refuses_bad_credentials_and_foreign_origins_before_the_upgrade() {
    let server = Server::start(&["--token", "sub-secret-1:subscribe=allowed/*;publish=*"]);
    let url = ws_url(server.addr, "/events?topic=allowed/*");
    assert_eq!(ws_connect(&url, &[]).await.err(), Some(401));
    assert_eq!(
        ws_connect(&url, &[("authorization", "Bearer wrong-secret")])
            .await
            .err(),
        Some(401)
    );
    let auth = ("authorization", "Bearer sub-secret-1");
    let denied = ws_url(server.addr, "/events?topic=secret/*");
    assert_eq!(ws_connect(&denied, &[auth]).await.err(), Some(403));
    assert_eq!(
        ws_connect(&url, &[auth, ("origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    let own = format!("http://{}", server.addr);
    assert!(ws_connect(&url, &[auth, ("origin", &own)]).await.is_ok());
    assert!(
        ws_connect(&url, &[auth]).await.is_ok(),
        "no Origin: not a browser, allowed"
    );
    // The default endpoint takes no token from the query string.
    let in_query = ws_url(server.addr, "/events?topic=allowed/*&token=sub-secret-1");
    assert_eq!(ws_connect(&in_query, &[]).await.err(), Some(400));
}

#[tokio::test]
async fn websocket_allowed_origins_are_configurable() {
    let server = Server::start(&["--ws-allowed-origin", "https://app.example"]);
    let url = ws_url(server.addr, "/events");
    assert!(
        ws_connect(&url, &[("origin", "https://app.example")])
            .await
            .is_ok()
    );
    assert_eq!(
        ws_connect(&url, &[("origin", "https://other.example")])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test]
async fn websocket_oversized_client_message_is_closed_with_1009() {
    let server = Server::start(&["--ws-max-message-bytes", "1KiB"]);
    let mut ws = ws_connect(&ws_url(server.addr, "/events"), &[])
        .await
        .expect("connect");
    ws.send(Message::Text("small".into())).await.expect("send");
    ws.send(Message::Text("x".repeat(4096).into()))
        .await
        .expect("send");
    let (code, _) = read_to_close(&mut ws).await;
    assert_eq!(code, 1009);
    server.assert_works().await;
}

#[tokio::test]
async fn websocket_without_pongs_is_closed_with_4001_and_a_live_one_is_kept() {
    let server = Server::start(&["--ws-ping-interval", "200ms", "--ws-pong-timeout", "300ms"]);
    let mut silent = ws_connect(&ws_url(server.addr, "/events"), &[])
        .await
        .expect("connect");
    let mut live = ws_connect(&ws_url(server.addr, "/events"), &[])
        .await
        .expect("connect");
    // The live client reads (and so answers pings) for well over several ping intervals.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(msg) = tokio::time::timeout_at(until, live.next()).await {
        match msg {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the live client got {other:?}"),
        }
    }
    assert!(pings >= 3, "pings arrive ({pings})");
    // The silent one never read, so never answered: it was closed with 4001.
    let (code, _) = read_to_close(&mut silent).await;
    assert_eq!(code, 4001);
}

#[tokio::test]
async fn a_slow_websocket_reader_slows_nobody_and_is_closed_with_4000() {
    let server = Server::start(&["--subscriber-queue", "16", "--durability", "memory"]);
    let topic = format!("slow{}", unique());
    let url = ws_url(server.addr, &format!("/events?topic={topic}"));
    let mut slow = ws_connect(&url, &[]).await.expect("connect");
    let mut fast = ws_connect(&url, &[]).await.expect("connect");
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 300 {
            if next_json(&mut fast).await["type"] == "big" {
                n += 1;
            }
        }
        n
    });
    server.wait_subscribers(2).await;
    let blob = "y".repeat(50_000);
    for i in 0..300 {
        server
            .publish_one(&topic, "big", json!({"i": i, "blob": blob}))
            .await;
    }
    assert_eq!(
        tokio::time::timeout(WAIT, reader)
            .await
            .expect("fast reader in time")
            .unwrap(),
        300
    );
    let (code, frames) = read_to_close(&mut slow).await;
    assert_eq!(code, 4000);
    assert!(
        frames.len() < 300,
        "the slow reader was cut off ({} frames)",
        frames.len()
    );
    let last = frames.last().expect("frames before the close");
    assert_eq!(last["type"], "reconnect-required");
    assert_eq!(last["data"]["reason"], "slow_consumer");
}

#[tokio::test]
async fn ndjson_streams_resumes_and_keeps_alive() {
    let server = Server::start(&["--sse-keepalive", "300ms"]);
    let topic = format!("nd{}", unique());
    let first = server.publish_one(&topic, "a", json!({"k": 1})).await;
    let second = server.publish_one(&topic, "b", json!([1])).await;
    let resp = server
        .get_events(
            &format!("topic={topic}&lastEventId={first}"),
            &[("accept", "application/x-ndjson")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut lines = Vec::new();
    let mut published_live = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while lines.iter().filter(|l: &&String| l.is_empty()).count() < 1
        || lines.iter().filter(|l| !l.is_empty()).count() < 2
    {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("ndjson in time")
            .expect("open")
            .expect("ok");
        text.push_str(std::str::from_utf8(&chunk).expect("utf8"));
        while let Some(pos) = text.find('\n') {
            lines.push(text[..pos].to_owned());
            text.drain(..=pos);
        }
        if !published_live && !lines.is_empty() {
            published_live = true;
            server.publish_one(&topic, "c", json!(null)).await;
        }
    }
    let events: Vec<Value> = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        events[0],
        json!({"id": second, "topic": topic, "type": "b", "data": [1]})
    );
    assert_eq!(events[1]["type"], "c");
    let via_query = server
        .get_events(
            &format!("topic={topic}&format=ndjson&lastEventId=earliest"),
            &[],
        )
        .await;
    assert_eq!(via_query.headers()["content-type"], "application/x-ndjson");
}

async fn poll(server: &Server, query: &str) -> Value {
    let resp = server
        .http
        .get(server.url(&format!("/events?poll=1&{query}")))
        .send()
        .await
        .expect("poll");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.expect("poll JSON")
}

#[tokio::test]
async fn long_poll_answers_at_once_waits_for_news_and_times_out() {
    let server = Server::start(&["--poll-timeout", "2s"]);
    let topic = format!("lp{}", unique());
    let id = server.publish_one(&topic, "x", json!(1)).await;
    let now = poll(&server, &format!("topic={topic}&lastEventId=earliest")).await;
    assert_eq!(now["events"][0]["id"], json!(id));
    assert_eq!(now["cursor"], json!(id));
    // Nothing new: it waits, and the next publish answers it.
    let waiting = {
        let url = server.url(&format!("/events?poll=1&topic={topic}&lastEventId={id}"));
        let http = server.http.clone();
        tokio::spawn(async move {
            http.get(url)
                .send()
                .await
                .expect("poll")
                .json::<Value>()
                .await
                .expect("JSON")
        })
    };
    // The poll is parked on a subscription, not answered.
    server.wait_subscribers(1).await;
    assert!(!waiting.is_finished(), "a poll with nothing new waits");
    let next = server.publish_one(&topic, "x", json!(2)).await;
    let answer = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(answer["events"][0]["id"], json!(next));
    assert_eq!(answer["cursor"], json!(next));
    // The timeout (capped by the server) answers an empty list with the same cursor.
    let started = std::time::Instant::now();
    let empty = poll(
        &server,
        &format!("topic={topic}&lastEventId={next}&timeout=60"),
    )
    .await;
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["cursor"], json!(next));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server caps the client's timeout"
    );
}

#[tokio::test]
async fn a_long_poll_loop_misses_nothing_while_publishers_publish() {
    let server = Server::start(&["--durability", "memory"]);
    let base = format!("lpl{}", unique());
    let publisher = {
        let http = server.http.clone();
        let url = server.url("/publish");
        let base = base.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..400 {
                let topic = format!("{base}/{}", i % 3);
                let v: Value = http
                    .post(&url)
                    .json(&json!({"topic": topic, "type": "x", "data": i}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                ids.push((topic, v["ids"][0].as_str().unwrap().to_owned()));
            }
            ids
        })
    };
    let mut seen = Vec::new();
    let mut cursor = "earliest".to_owned();
    let selector = format!("{base}/0");
    let selector2 = format!("{base}/2");
    loop {
        // Checked before the poll: once the publisher is done, every event is published, so
        // an empty answer after that means the client has caught up.
        let done = publisher.is_finished();
        let answer = poll(
            &server,
            &format!("topic={selector}&topic={selector2}&lastEventId={cursor}&timeout=1"),
        )
        .await;
        let events = answer["events"].as_array().unwrap();
        for e in events {
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        cursor = answer["cursor"].as_str().unwrap().to_owned();
        if done && events.is_empty() {
            break;
        }
    }
    let published = publisher.await.unwrap();
    let expected: Vec<String> = published
        .into_iter()
        .filter(|(t, _)| *t == selector || *t == selector2)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(seen, expected);
}

fn endpoint_addr(server: &Server, name: &str) -> SocketAddr {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log = server.stderr();
        for line in log.lines().map(strip_ansi) {
            if line.contains("Endpoint is listening.") && line.contains(&format!("endpoint={name}"))
            {
                let at = line.find("addr=").expect("addr field") + 5;
                let rest = &line[at..];
                let end = rest.find(' ').unwrap_or(rest.len());
                return rest[..end].parse().expect("endpoint addr");
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "endpoint {name} did not listen:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tasks_server() -> (Server, SocketAddr, tempfile::TempDir) {
    tasks_server_with(&[])
}

fn tasks_server_with(extra: &[&str]) -> (Server, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tasks.toml");
    std::fs::write(
        &config,
        r#"
        [[auth.tokens]]
        token = "nzbflow-token-1"
        publish = ["tasks/*"]
        subscribe = ["tasks/*"]

        [[endpoints]]
        name = "tasks"
        listen = "127.0.0.1:0"
        path = "/"
        topics = ["tasks/*"]
        shape = "envelope"
        query_token = "token"
        transports = ["websocket"]
        allowed_origins = ["*"]
        "#,
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let addr = endpoint_addr(&server, "tasks");
    (server, addr, dir)
}

async fn publish_task(server: &Server, ty: &str, data: Value) -> String {
    let resp = server
        .http
        .post(server.url("/publish"))
        .bearer_auth("nzbflow-token-1")
        .json(&json!({"topic": "tasks/queue", "type": ty, "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json::<Value>().await.unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_endpoint_on_its_own_port_speaks_nzb_flow() {
    let (server, addr, _dir) = tasks_server();
    // No token or a wrong one → 401. (The seed's literal `ws://host:3001?token=…` form is
    // what the Python client below uses; tungstenite needs the explicit `/`.)
    assert_eq!(
        ws_connect(&format!("ws://{addr}"), &[]).await.err(),
        Some(401)
    );
    assert_eq!(
        ws_connect(&format!("ws://{addr}/?token=nope-nope"), &[])
            .await
            .err(),
        Some(401)
    );
    // Only what the endpoint serves.
    assert_eq!(
        ws_connect(
            &format!("ws://{addr}/?token=nzbflow-token-1&topic=other/*"),
            &[]
        )
        .await
        .err(),
        Some(403)
    );
    // WebSocket only: a plain GET is refused with a JSON error.
    let plain = server
        .http
        .get(format!("http://{addr}/?token=nzbflow-token-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 400);
    assert_eq!(
        plain.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_parameter"
    );
    let mut ws = ws_connect(&format!("ws://{addr}/?token=nzbflow-token-1"), &[])
        .await
        .expect("connect");
    server.wait_subscribers(1).await;
    let id = publish_task(
        &server,
        "queue-update",
        json!({"compressionActive": true, "uploadQueued": 3}),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"success": true, "id": id, "data": {"type": "queue-update", "compressionActive": true, "uploadQueued": 3}})
    );
}

#[tokio::test]
async fn a_python_websockets_client_reads_the_envelope() {
    let python = std::env::var("TIDINGS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("TIDINGS_TEST_PYTHON is not set: run ./scripts/test, which installs Python's `websockets` client")
    });
    let (server, addr, _dir) = tasks_server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ws_read.py");
    let mut child = Command::new(python)
        .args([script, &format!("ws://{addr}?token=nzbflow-token-1"), "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    assert_eq!(rx.recv_timeout(WAIT).expect("python connected"), "READY");
    server.wait_subscribers(1).await;
    let a = publish_task(&server, "command-progress", json!({"progress": 50})).await;
    let b = publish_task(&server, "task-finished", json!({})).await;
    let got: Vec<Value> = (0..2)
        .map(|_| {
            serde_json::from_str(&rx.recv_timeout(WAIT).expect("python printed a message")).unwrap()
        })
        .collect();
    assert_eq!(
        got[0],
        json!({"success": true, "id": a, "data": {"type": "command-progress", "progress": 50}})
    );
    assert_eq!(
        got[1],
        json!({"success": true, "id": b, "data": {"type": "task-finished"}})
    );
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let server = Server::start(&[
        "--write-timeout",
        "1s",
        "--subscriber-queue",
        "100000",
        "--subscriber-queue-bytes",
        "1GiB",
        "--durability",
        "memory",
    ]);
    let topic = format!("stall{}", unique());
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(
        format!("GET /events?topic={topic} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..100 {
        if server.readyz().await["subscribers"].as_u64() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let blob = "z".repeat(60_000);
    for i in 0..200 {
        server
            .publish_one(&topic, "big", json!({"i": i, "blob": blob}))
            .await;
    }
    // The socket never reads; its subscription is dropped once writes stall for 1 s.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if server.readyz().await["subscribers"].as_u64() == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled connection was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(raw);
    server.assert_works().await;
}

#[tokio::test]
async fn ndjson_and_long_poll_refuse_credentials_and_selectors_like_sse() {
    let server = Server::start(&[
        "--token",
        "sub-secret-2:subscribe=ok/*;publish=*",
        "--poll-timeout",
        "1s",
    ]);
    let auth = ("authorization", "Bearer sub-secret-2");
    for transport in ["format=ndjson", "poll=1"] {
        let none = server
            .get_events(&format!("{transport}&topic=ok/*"), &[])
            .await;
        assert_eq!(none.status().as_u16(), 401, "{transport}");
        assert_eq!(
            none.json::<Value>().await.unwrap()["error"]["code"],
            "unauthorized"
        );
        let wrong = server
            .get_events(
                &format!("{transport}&topic=ok/*"),
                &[("authorization", "Bearer nope-nope-nope")],
            )
            .await;
        assert_eq!(wrong.status().as_u16(), 401, "{transport}");
        let denied = server
            .get_events(&format!("{transport}&topic=secret/*"), &[auth])
            .await;
        assert_eq!(denied.status().as_u16(), 403, "{transport}");
        let bad = server
            .get_events(&format!("{transport}&topic=a%0Ab"), &[auth])
            .await;
        assert_eq!(bad.status().as_u16(), 422, "{transport}");
        let ok = server
            .get_events(&format!("{transport}&topic=ok/*"), &[auth])
            .await;
        assert_eq!(ok.status().as_u16(), 200, "{transport}");
    }
    let bad_format = server.get_events("format=xml", &[auth]).await;
    assert_eq!(bad_format.status().as_u16(), 400);
}

/// Sends a raw request and reads until `until` appears in the answer (or 10 s pass).
async fn raw_exchange(server: &Server, request: &[u8], until: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(until) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn both_connection_paths_serve_the_same_stream() {
    let server = Server::start(&["--durability", "memory"]);
    let topic = format!("paths{}", unique());
    let id = server.publish_one(&topic, "hello", json!({"a": 1})).await;
    let frame = format!("id: {id}\nevent: hello\ndata: {{\"a\":1}}\n\n");
    let get = |extra: &str| {
        format!(
            "GET /events?topic={topic}&lastEventId=earliest HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
        )
    };
    // Small head: the lean path.
    let lean = raw_exchange(&server, get("").as_bytes(), "data: {\"a\":1}").await;
    // A head larger than the lean reader takes goes to hyper.
    let big = get(&format!("x-pad: {}\r\n", "p".repeat(9000)));
    let hyper = raw_exchange(&server, big.as_bytes(), "data: {\"a\":1}").await;
    for (name, answer) in [("lean", &lean), ("hyper", &hyper)] {
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{name}: {answer:?}"));
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok"), "{name}: {head}");
        for h in [
            "content-type: text/event-stream",
            "cache-control: no-cache",
            "x-accel-buffering: no",
            "transfer-encoding: chunked",
        ] {
            assert!(head.contains(h), "{name} lacks {h}: {head}");
        }
        assert!(
            body.contains("retry: 2000\n\n") && body.contains(&frame),
            "{name}: {body:?}"
        );
    }
    // Both carry `date`; the lean path, which never keeps a connection, says it closes.
    for (name, answer) in [("lean", &lean), ("hyper", &hyper)] {
        assert!(
            answer.to_ascii_lowercase().contains("\r\ndate:"),
            "{name}: {answer}"
        );
    }
    assert!(
        lean.to_ascii_lowercase().contains("\r\nconnection: close"),
        "the lean path answered"
    );
    assert!(
        !hyper.to_ascii_lowercase().contains("\r\nconnection: close"),
        "hyper answered"
    );
    // HTTP/1.0 gets a close-delimited stream.
    let old = format!("GET /events?topic={topic}&lastEventId=earliest HTTP/1.0\r\n\r\n");
    let answer = raw_exchange(&server, old.as_bytes(), "data: {\"a\":1}").await;
    assert!(
        answer.starts_with("HTTP/1.0 200 OK\r\n") && answer.contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains(&frame), "{answer}");
    // Errors on the lean path are JSON, like everywhere else.
    let bad = raw_exchange(
        &server,
        b"GET /events?topic=%00 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "}}",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 422"), "{bad}");
    assert!(bad.contains("\"code\":\"invalid_topic\""), "{bad}");
    server.assert_works().await;
}

#[tokio::test]
async fn a_query_token_never_reaches_the_logs() {
    let (server, addr, _dir) = tasks_server_with(&["--log", "trace"]);
    let mut ws = ws_connect(&format!("ws://{addr}/?token=nzbflow-token-1"), &[])
        .await
        .expect("connect");
    assert_eq!(
        ws_connect(&format!("ws://{addr}/?token=wrong-token-42"), &[])
            .await
            .err(),
        Some(401)
    );
    server.wait_subscribers(1).await;
    publish_task(&server, "queue-update", json!({})).await;
    next_json(&mut ws).await;
    drop(ws);
    // The connection's close is logged once the hub has let go of its subscription.
    server.wait_subscribers(0).await;
    let log = server.stderr();
    assert!(log.contains("DEBUG"), "verbose logging is on:\n{log}");
    for secret in ["nzbflow-token-1", "wrong-token-42"] {
        assert!(!log.contains(secret), "`{secret}` was logged:\n{log}");
    }
}

#[tokio::test]
async fn a_python_websockets_client_closes_cleanly_and_gets_its_code_back() {
    use std::io::Write;
    let python = std::env::var("TIDINGS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("TIDINGS_TEST_PYTHON is not set: run ./scripts/test, which installs Python's `websockets` client")
    });
    let server = Server::start(&["--durability", "memory"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ws_close.py");
    let url = ws_url(server.addr, "/events");
    let mut child = Command::new(python)
        .args([script, &url, "1000", "done reading"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    assert_eq!(rx.recv_timeout(WAIT).expect("python connected"), "READY");
    // The subscription is open on the server; now the client closes.
    writeln!(child.stdin.take().unwrap(), "close").unwrap();
    let line = rx.recv_timeout(WAIT).expect("python reported the close");
    let report: Value = serde_json::from_str(&line).unwrap();
    // What a browser's CloseEvent would say: the server's Close echoed the client's code, so
    // the close was clean (not 1006), and the server hung up at once instead of making the
    // client wait out its close timeout.
    assert_eq!(report["code"], 1000, "{report}");
    assert_eq!(report["reason"], "done reading", "{report}");
    assert_eq!(report["clean"], true, "{report}");
    assert!(report["seconds"].as_f64().unwrap() < 5.0, "{report}");
    assert!(child.wait().unwrap().success());
    server.assert_works().await;
}
