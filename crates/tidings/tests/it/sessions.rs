//! Client-id sessions end to end over real sockets: `subscribed` vs `resumed` on SSE and
//! NDJSON, what was missed arriving once and in order with no `Last-Event-ID`, a server
//! socket reset under queued events (nothing lost with the client id alone), `Last-Event-ID`
//! winning after a close with unread data, self-echo suppression live and in replay, sessions
//! across a restart, expiry, eviction at `--max-sessions`, bad client ids, and forged system
//! events.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tidings_proto::sse::{Decoder, SseItem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::support::{Server, SseClient, parse_id, unique};

const WAIT: Duration = Duration::from_secs(15);

fn uuid(n: u64) -> String {
    format!("3f7c3393-eecf-4c2a-9a6b-{n:012x}")
}

/// Polls `/readyz` until `field` equals `want`.
async fn wait_for(server: &Server, field: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = server.readyz().await;
        if v[field].as_u64() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{field} never became {want}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sse(server: &Server, topic: &str, client: &str, extra: &[(&str, &str)]) -> SseClient {
    let mut headers = vec![("X-Client-Id", client)];
    headers.extend_from_slice(extra);
    let mut sub = server
        .subscribe_with(&format!("topic={topic}"), &headers)
        .await;
    sub.expect_retry().await;
    sub
}

/// The session event: its name, and its data's cursor (checked against the event's id).
async fn session_event(sub: &mut SseClient, client: &str) -> (String, String) {
    let ev = sub.next_event().await;
    let data: Value = serde_json::from_str(&ev.data).expect("session data is JSON");
    assert_eq!(data["clientId"], client, "{data}");
    let cursor = data["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(ev.last_event_id, cursor, "the event's id is the cursor");
    (ev.event, cursor)
}

async fn publish_n(server: &Server, topic: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(server.publish_one(topic, "changed", json!({"i": i})).await);
    }
    ids
}

#[tokio::test]
async fn sse_is_subscribed_then_resumed_with_what_it_missed_once_and_in_order() {
    let server = Server::start(&[]);
    let topic = format!("files{}", unique());
    let id = uuid(unique());
    let mut sub = sse(&server, &topic, &id, &[]).await;
    let (name, cursor) = session_event(&mut sub, &id).await;
    assert_eq!(name, "subscribed");
    let first = server.publish_one(&topic, "changed", json!(0)).await;
    assert!(parse_id(&cursor).1 < parse_id(&first).1);
    assert_eq!(sub.next_event().await.last_event_id, first);
    drop(sub);
    wait_for(&server, "subscribers", 0).await;
    let missed = publish_n(&server, &topic, 3).await;
    // No Last-Event-ID: only the client id.
    let mut sub = sse(&server, &topic, &id, &[]).await;
    let (name, cursor) = session_event(&mut sub, &id).await;
    assert_eq!(name, "resumed");
    assert_eq!(
        cursor, first,
        "the client's TCP stack acknowledged the first event"
    );
    assert_eq!(sub.ids(3).await, missed);
    let live = server.publish_one(&topic, "changed", json!("live")).await;
    assert_eq!(sub.next_event().await.last_event_id, live);
    // Another id on the same stream is a new session.
    let mut other = sse(&server, &topic, &uuid(unique()), &[]).await;
    assert_eq!(other.next_event().await.event, "subscribed");
}

/// NDJSON lines of a streaming response, each read bounded by `WAIT`.
struct Lines {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    text: String,
}

impl Lines {
    async fn open(server: &Server, query: &str) -> Lines {
        let resp = server
            .get_events(&format!("{query}&format=ndjson"), &[])
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        Lines {
            body: resp.bytes_stream().boxed(),
            text: String::new(),
        }
    }

    /// The next non-empty line, as JSON.
    async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(pos) = self.text.find('\n') {
                let line: String = self.text.drain(..=pos).collect();
                if line.trim().is_empty() {
                    continue;
                }
                return serde_json::from_str(&line).expect("JSON line");
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("a line in time")
                .expect("stream open")
                .expect("chunk");
            self.text
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test]
async fn ndjson_with_the_client_id_parameter_resumes_the_same_way() {
    let server = Server::start(&[]);
    let topic = format!("nd{}", unique());
    let id = format!("tab-{}", unique());
    let query = format!("topic={topic}&clientId={id}");
    let mut lines = Lines::open(&server, &query).await;
    let first = lines.next().await;
    assert_eq!(first["type"], "subscribed", "{first}");
    assert_eq!(first["data"]["clientId"], id.as_str());
    assert_eq!(first["data"]["cursor"], first["id"]);
    let a = server.publish_one(&topic, "changed", json!(1)).await;
    assert_eq!(lines.next().await["id"], a.as_str());
    drop(lines);
    wait_for(&server, "subscribers", 0).await;
    let missed = publish_n(&server, &topic, 4).await;
    let mut lines = Lines::open(&server, &query).await;
    let resumed = lines.next().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["cursor"], a.as_str());
    for want in &missed {
        assert_eq!(lines.next().await["id"], want.as_str());
    }
}

/// The server-side socket of the connection from local port `client_port`.
fn ss_filter(server: &Server, client_port: u16) -> String {
    format!(
        "( sport = :{} and dport = :{} )",
        server.addr.port(),
        client_port
    )
}

/// Bytes queued in the server's send queue for that connection.
fn send_queue(server: &Server, client_port: u16) -> u64 {
    let out = std::process::Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &ss_filter(server, client_port),
        ])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}

/// Resets the server's socket of that connection (what a crashed middlebox or a dropped path
/// ends in): everything queued on it is gone.
fn reset_server_socket(server: &Server, client_port: u16) {
    let out = std::process::Command::new("ss")
        .args([
            "-K",
            "-tn",
            "state",
            "established",
            &ss_filter(server, client_port),
        ])
        .output()
        .expect("run ss -K");
    assert!(out.status.success(), "ss -K: {out:?}");
}

/// Publishes events `range` of 4 kB each on `topic`; their ids.
async fn publish_blobs(server: &Server, topic: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let blob = "q".repeat(4000);
    let mut ids = Vec::new();
    for i in range {
        let data = json!({"i": i, "blob": blob});
        ids.push(server.publish_one(topic, "changed", data).await);
    }
    ids
}

/// Waits until the server has handed most of what it wrote to its kernel, unacknowledged
/// (200 kB in the socket's send queue), then resets that socket.
async fn reset_once_queued(server: &Server, client_port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while send_queue(server, client_port) < 200_000 {
        assert!(tokio::time::Instant::now() < deadline, "nothing queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reset_server_socket(server, client_port);
}

/// Reads a raw HTTP/1.0 SSE response until the connection ends; the event ids in it.
async fn read_ids_to_end(raw: &mut tokio::net::TcpStream, decoder: &mut Decoder) -> Vec<String> {
    let mut ids = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match tokio::time::timeout(WAIT, raw.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return ids,
            Ok(Ok(n)) => n,
            Err(_) => panic!("the reset connection did not end"),
        };
        let mut out = Vec::new();
        decoder.feed(&buf[..n], &mut out).expect("SSE");
        for item in out {
            if let SseItem::Event(e) = item
                && e.event == "changed"
            {
                ids.push(e.last_event_id);
            }
        }
    }
}

#[tokio::test]
async fn a_server_socket_reset_under_queued_events_loses_nothing_with_the_client_id_alone() {
    let server = Server::start(&["--subscriber-queue-bytes", "64MiB"]);
    let topic = format!("cut{}", unique());
    let id = uuid(unique());
    // A client with a small receive window, so the server's queue holds most of what is sent.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut raw = socket.connect(server.addr).await.unwrap();
    let client_port = raw.local_addr().unwrap().port();
    raw.write_all(
        format!(
            "GET /events?topic={topic} HTTP/1.0\r\nHost: localhost\r\nX-Client-Id: {id}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Read up to the `subscribed` event, then stop reading.
    let mut decoder = Decoder::new(1 << 20);
    let mut head = Vec::new();
    let mut seen_subscribed = false;
    let mut buf = [0u8; 512];
    while !seen_subscribed {
        let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
            .await
            .expect("head in time")
            .unwrap();
        assert!(n > 0, "closed early");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut out = Vec::new();
            decoder.feed(&head[end + 4..], &mut out).unwrap();
            head.truncate(end + 4);
            seen_subscribed = out
                .iter()
                .any(|i| matches!(i, SseItem::Event(e) if e.event == "subscribed"));
        }
    }
    let published = publish_blobs(&server, &topic, 0..300).await;
    reset_once_queued(&server, client_port).await;
    // What had reached the client's host is still readable; the rest is gone.
    let got = read_ids_to_end(&mut raw, &mut decoder).await;
    assert!(
        got.len() < published.len(),
        "the reset lost nothing in transit ({} of {})",
        got.len(),
        published.len()
    );
    assert_eq!(got[..], published[..got.len()], "in order, from the start");
    wait_for(&server, "subscribers", 0).await;
    // Resume with only the client id.
    let mut sub = sse(&server, &topic, &id, &[]).await;
    let (name, cursor) = session_event(&mut sub, &id).await;
    assert_eq!(name, "resumed");
    let after = parse_id(&cursor).1;
    let last_read = got.last().map_or(0, |i| parse_id(i).1);
    assert!(
        after <= last_read,
        "the place {after} claims more than was read ({last_read})"
    );
    let rest: Vec<String> = published
        .iter()
        .filter(|i| parse_id(i).1 > after)
        .cloned()
        .collect();
    assert_eq!(
        sub.ids(rest.len()).await,
        rest,
        "every event after the place, once, in order"
    );
}

#[tokio::test]
async fn last_event_id_wins_even_after_a_close_with_unread_data() {
    let server = Server::start(&[]);
    let topic = format!("lei{}", unique());
    let id = uuid(unique());
    let mut sub = sse(&server, &topic, &id, &[]).await;
    assert_eq!(session_event(&mut sub, &id).await.0, "subscribed");
    let published = publish_n(&server, &topic, 20).await;
    // The client reads five events and goes away with the rest unread.
    let read = sub.ids(5).await;
    drop(sub);
    wait_for(&server, "subscribers", 0).await;
    let mut sub = sse(&server, &topic, &id, &[("Last-Event-ID", &read[4])]).await;
    let (name, cursor) = session_event(&mut sub, &id).await;
    assert_eq!(
        (name.as_str(), cursor.as_str()),
        ("resumed", read[4].as_str())
    );
    assert_eq!(sub.ids(15).await, published[5..]);
}

#[tokio::test]
async fn own_publishes_are_not_echoed_live_or_in_replay() {
    let server = Server::start(&[]);
    let topic = format!("echo{}", unique());
    let (me, other) = (uuid(unique()), uuid(unique()));
    let mut mine = sse(&server, &topic, &me, &[]).await;
    let mut theirs = sse(&server, &topic, &other, &[]).await;
    assert_eq!(session_event(&mut mine, &me).await.0, "subscribed");
    assert_eq!(session_event(&mut theirs, &other).await.0, "subscribed");
    let event = |i: i32| json!({"topic": topic, "type": "changed", "data": i});
    let (s, v) = server.publish_raw(&event(1), &[("X-Client-Id", &me)]).await;
    assert_eq!(s, 200, "{v}");
    let by_header = v["ids"][0].as_str().unwrap().to_owned();
    let mut with_origin = event(2);
    with_origin["origin"] = json!(me);
    let (s, v) = server.publish_raw(&with_origin, &[]).await;
    assert_eq!(s, 200, "{v}");
    let by_field = v["ids"][0].as_str().unwrap().to_owned();
    let foreign = server.publish_one(&topic, "changed", json!(3)).await;
    assert_eq!(theirs.ids(3).await, [by_header, by_field, foreign.clone()]);
    assert_eq!(
        mine.next_event().await.last_event_id,
        foreign,
        "no echo, live"
    );
    // In replay: published while away, with the client's own id and with another.
    drop(mine);
    wait_for(&server, "subscribers", 1).await;
    let (s, _) = server.publish_raw(&event(4), &[("X-Client-Id", &me)]).await;
    assert_eq!(s, 200);
    let (s, v) = server
        .publish_raw(&event(5), &[("X-Client-Id", &other)])
        .await;
    assert_eq!(s, 200);
    let from_other = v["ids"][0].as_str().unwrap().to_owned();
    let mut mine = sse(&server, &topic, &me, &[]).await;
    assert_eq!(session_event(&mut mine, &me).await.0, "resumed");
    assert_eq!(
        mine.next_event().await.last_event_id,
        from_other,
        "no echo, in replay"
    );
    // A bad origin is refused, naming it.
    let mut bad = event(6);
    bad["origin"] = json!("has space");
    let (s, v) = server.publish_raw(&bad, &[]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_client_id"))
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("origin"),
        "{v}"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_in_durable_mode_and_expire_after_their_ttl() {
    let mut server = Server::start(&["--durability", "durable", "--session-ttl", "2s"]);
    let topic = format!("restart{}", unique());
    let id = uuid(unique());
    let mut sub = sse(&server, &topic, &id, &[]).await;
    assert_eq!(session_event(&mut sub, &id).await.0, "subscribed");
    let seen = server.publish_one(&topic, "changed", json!(1)).await;
    assert_eq!(sub.next_event().await.last_event_id, seen);
    drop(sub);
    wait_for(&server, "subscribers", 0).await;
    let missed = publish_n(&server, &topic, 2).await;
    assert!(server.terminate().success());
    server.restart();
    assert_eq!(
        server.readyz().await["sessions"],
        1,
        "the session came back"
    );
    let mut sub = sse(&server, &topic, &id, &[]).await;
    let (name, cursor) = session_event(&mut sub, &id).await;
    assert_eq!((name.as_str(), cursor.as_str()), ("resumed", seen.as_str()));
    assert_eq!(sub.ids(2).await, missed);
    drop(sub);
    // Away longer than the TTL: a new session.
    wait_for(&server, "subscribers", 0).await;
    wait_for(&server, "sessions", 0).await;
    let mut sub = sse(&server, &topic, &id, &[]).await;
    assert_eq!(session_event(&mut sub, &id).await.0, "subscribed");
}

#[tokio::test]
async fn sessions_survive_a_crash_in_durable_mode_from_their_last_checkpoint() {
    let mut server = Server::start(&["--durability", "durable", "--session-checkpoint", "100ms"]);
    let topic = format!("crash{}", unique());
    let (away, held) = (uuid(unique()), uuid(unique()));
    let mut sub = sse(&server, &topic, &away, &[]).await;
    assert_eq!(session_event(&mut sub, &away).await.0, "subscribed");
    let mut attached = sse(&server, &topic, &held, &[]).await;
    assert_eq!(session_event(&mut attached, &held).await.0, "subscribed");
    let seen = server.publish_one(&topic, "changed", json!(1)).await;
    assert_eq!(sub.next_event().await.last_event_id, seen);
    assert_eq!(attached.next_event().await.last_event_id, seen);
    drop(sub);
    wait_for(&server, "subscribers", 1).await;
    let missed = publish_n(&server, &topic, 2).await;
    // A checkpoint is a timer inside the hub, with nothing outside to poll: give it ten
    // periods, then kill the process without letting it save anything more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    assert_eq!(
        server.readyz().await["sessions"],
        2,
        "both sessions came back"
    );
    // The client that was away resumes where it was and gets what was stored meanwhile.
    let mut sub = sse(&server, &topic, &away, &[]).await;
    let (name, cursor) = session_event(&mut sub, &away).await;
    assert_eq!((name.as_str(), cursor.as_str()), ("resumed", seen.as_str()));
    assert_eq!(sub.ids(2).await, missed);
    // The one still connected at the crash resumes too, never a false `subscribed`: from its
    // place at the last checkpoint, so nothing after it is lost.
    drop(attached);
    let mut again = sse(&server, &topic, &held, &[]).await;
    let (name, cursor) = session_event(&mut again, &held).await;
    assert_eq!(name, "resumed");
    // Its place moves as the client's TCP stack acknowledges, so the checkpoint may hold
    // the place before `seen`: then `seen` comes again. Either way nothing is lost.
    let mut expected = missed.clone();
    if cursor != seen {
        expected.insert(0, seen.clone());
    }
    assert_eq!(
        again.ids(expected.len()).await,
        expected,
        "resumed after {cursor}"
    );
}

#[tokio::test]
async fn a_full_table_evicts_the_session_idle_longest() {
    let server = Server::start(&["--max-sessions", "2"]);
    let topic = format!("evict{}", unique());
    let (a, b, c) = (uuid(unique()), uuid(unique()), uuid(unique()));
    for id in [&a, &b] {
        let mut sub = sse(&server, &topic, id, &[]).await;
        assert_eq!(session_event(&mut sub, id).await.0, "subscribed");
        drop(sub);
        wait_for(&server, "subscribers", 0).await;
    }
    let mut held = sse(&server, &topic, &c, &[]).await;
    assert_eq!(session_event(&mut held, &c).await.0, "subscribed");
    assert_eq!(server.readyz().await["sessions"], 2);
    let mut sub = sse(&server, &topic, &b, &[]).await;
    assert_eq!(
        session_event(&mut sub, &b).await.0,
        "resumed",
        "b was idle less long"
    );
    let mut sub_a = sse(&server, &topic, &a, &[]).await;
    assert_eq!(
        session_event(&mut sub_a, &a).await.0,
        "subscribed",
        "a was evicted: never a false resumed"
    );
    drop((sub, held));
}

fn cloudreve_config(dir: &std::path::Path) -> String {
    let path = dir.join("cloudreve.toml");
    std::fs::write(
        &path,
        r#"
        [[endpoints]]
        name = "cloudreve"
        path = "/api/v4/file/events"
        transports = ["sse"]
        client_id_header = "X-Cr-Client-Id"
        client_id_uuid = true
        subscribed_event = "hello"
        "#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn client_ids_are_checked_per_endpoint_and_system_events_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--config", &cloudreve_config(dir.path())]);
    let client = reqwest::Client::new();
    let get = |id: &str, query: &str| {
        client
            .get(server.url(&format!("/api/v4/file/events{query}")))
            .header("X-Cr-Client-Id", id)
            .send()
    };
    let resp = get("not-a-uuid", "").await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_client_id");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .starts_with("x-cr-client-id"),
        "{v}"
    );
    let resp = get(&uuid(1), "").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut sub = SseClient::new(resp);
    sub.expect_retry().await;
    assert_eq!(sub.next_event().await.event, "hello", "the endpoint's name");
    // On /events any printable id of up to 64 bytes, by header or parameter.
    for (query, header) in [("clientId=a%20b", None), ("", Some("x".repeat(65)))] {
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("X-Client-Id", h)])
            .unwrap_or_default();
        let resp = server.get_events(query, &headers).await;
        assert_eq!(resp.status().as_u16(), 400, "{query} {header:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_client_id");
    }
    // Names the hub sends itself, built in or configured, cannot be published.
    for ty in [
        "subscribed",
        "resumed",
        "reset",
        "reconnect-required",
        "hello",
    ] {
        let (s, v) = server
            .publish_raw(&json!({"topic": "t", "type": ty, "data": 1}), &[])
            .await;
        assert_eq!(s, 422, "{ty}: {v}");
        assert_eq!(v["error"]["code"], "reserved_type");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("type:") && msg.contains(ty), "{msg}");
    }
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The next JSON text frame of `ws`; `None` once the connection ended (or failed).
async fn ws_frame(ws: &mut RawWs) -> Option<Value> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a WebSocket frame, or the end, in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("frame is JSON"));
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A WebSocket subscription over `socket`, with only the client id; its first frame (the
/// session event) is checked and returned with the cursor it carries.
async fn ws_session(
    server: &Server,
    socket: TcpSocket,
    topic: &str,
    client: &str,
) -> (RawWs, String, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = socket.connect(server.addr).await.unwrap();
    let mut req = format!("ws://{}/events?topic={topic}", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-Client-Id", client.parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tcp))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    let first = ws_frame(&mut ws).await.expect("a session frame");
    assert_eq!(first["data"]["clientId"], client, "{first}");
    let cursor = first["data"]["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(first["id"], cursor, "the frame's id is the cursor: {first}");
    let name = first["type"].as_str().expect("type").to_owned();
    (ws, name, cursor)
}

/// The same cut as above on WebSocket, where the session's place also comes from what the
/// client's TCP stack acknowledged: the events the client read before it stopped reading are
/// not sent again, and nothing after them is skipped.
#[tokio::test]
async fn a_websocket_reset_under_queued_events_resumes_after_what_the_client_acknowledged() {
    let server = Server::start(&["--subscriber-queue-bytes", "64MiB"]);
    let topic = format!("wscut{}", unique());
    let id = uuid(unique());
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let (mut ws, name, _) = ws_session(&server, socket, &topic, &id).await;
    assert_eq!(name, "subscribed");
    let client_port = ws.get_ref().local_addr().unwrap().port();
    let mut published = Vec::new();
    let mut got = Vec::new();
    // The first ten are read by the client; then it stops reading.
    for i in 0..10 {
        published.extend(publish_blobs(&server, &topic, i..i + 1).await);
        let frame = ws_frame(&mut ws).await.expect("an event");
        got.push(frame["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(got, published);
    published.extend(publish_blobs(&server, &topic, 10..300).await);
    reset_once_queued(&server, client_port).await;
    // What had reached the client's host is still readable; the rest is gone.
    while let Some(frame) = ws_frame(&mut ws).await {
        got.push(frame["id"].as_str().expect("id").to_owned());
    }
    assert!(
        got.len() < published.len(),
        "the reset lost nothing in transit ({} of {})",
        got.len(),
        published.len()
    );
    assert_eq!(got[..], published[..got.len()], "in order, from the start");
    wait_for(&server, "subscribers", 0).await;
    // Resume with only the client id.
    let (mut ws, name, cursor) =
        ws_session(&server, TcpSocket::new_v4().unwrap(), &topic, &id).await;
    assert_eq!(name, "resumed");
    let after = parse_id(&cursor).1;
    let last_read = parse_id(got.last().expect("read ten")).1;
    assert!(
        after <= last_read,
        "the place {after} claims more than was read ({last_read})"
    );
    assert!(
        after >= parse_id(&published[9]).1,
        "the place {after} is not past the ten events the client read and acknowledged"
    );
    let rest: Vec<String> = published
        .iter()
        .filter(|i| parse_id(i).1 > after)
        .cloned()
        .collect();
    let mut again = Vec::new();
    for _ in 0..rest.len() {
        let frame = ws_frame(&mut ws).await.expect("an event");
        again.push(frame["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(again, rest, "every event after the place, once, in order");
    // And then live, with nothing repeated in between.
    let live = server
        .publish_one(&topic, "changed", json!({"i": "live"}))
        .await;
    let frame = ws_frame(&mut ws).await.expect("the live event");
    assert_eq!(frame["id"], live, "{frame}");
}
