//! Snapshots end to end: `GET /snapshot` and `snapshot=1` while a publisher keeps publishing
//! (every client's snapshot plus stream accounts for every event exactly once), the same
//! handoff on SSE, NDJSON, WebSocket and long-poll, a snapshot after a restart in durable
//! mode (with history trimmed under it), a delete type removing its key, the key ceiling, the
//! byte ceiling, and bad input.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::support::{Server, SseClient, WAIT, parse_id, unique};

/// `GET /snapshot?<query>`: status and JSON body.
async fn snapshot_raw(server: &Server, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = server.http.get(server.url(&format!("/snapshot?{query}")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("snapshot request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("snapshot body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("snapshot answer is not JSON ({e}): {text:?}"));
    (status, body)
}

async fn snapshot(server: &Server, query: &str) -> Value {
    let (status, body) = snapshot_raw(server, query, &[]).await;
    assert_eq!(status, 200, "snapshot failed: {body}");
    body
}

/// `key → (id, type, data)` of a snapshot body, checking each event's shape.
fn rows(body: &Value) -> BTreeMap<String, (String, String, Value)> {
    let events = body["events"].as_array().expect("events array");
    let mut out = BTreeMap::new();
    let mut last = 0;
    for e in events {
        let id = e["id"].as_str().expect("id").to_owned();
        let (_, seq) = parse_id(&id);
        assert!(seq > last, "snapshot events are in id order: {body}");
        last = seq;
        assert!(e["topic"].is_string(), "each event has its topic: {e}");
        let key = e["key"]
            .as_str()
            .expect("each event has its key")
            .to_owned();
        let ty = e["type"].as_str().expect("type").to_owned();
        assert!(
            out.insert(key, (id, ty, e["data"].clone())).is_none(),
            "one event per key: {body}"
        );
    }
    out
}

async fn publish_keyed(server: &Server, topic: &str, ty: &str, key: &str, data: Value) -> String {
    let ids = server
        .publish(&json!({"topic": topic, "type": ty, "key": key, "data": data}))
        .await;
    ids.into_iter().next().expect("one id")
}

/// What one client saw: the snapshot (`n` of each key's newest event), its cursor, and the
/// `n` of every event the stream delivered after it.
struct Seen {
    snapshot: BTreeMap<String, u64>,
    snapshot_ids: Vec<String>,
    cursor: String,
    stream: Vec<u64>,
}

const KEYS: u64 = 10;

fn n_of(data: &str) -> u64 {
    let v: Value = serde_json::from_str(data).expect("data is JSON");
    v["n"].as_u64().expect("n")
}

/// Reads an SSE stream until the event with `n == last`; the stream's events after the
/// `snapshot` handoff are the stream part.
async fn read_sse_until(sub: &mut SseClient, last: u64) -> (Vec<(String, u64, String)>, String) {
    // (id, n, key) of the snapshot part, then the handoff's id.
    let mut snap = Vec::new();
    loop {
        let e = sub.next_event().await;
        if e.event == "snapshot" {
            let notice: Value = serde_json::from_str(&e.data).expect("notice JSON");
            assert_eq!(
                notice["cursor"].as_str(),
                Some(e.last_event_id.as_str()),
                "the handoff's id is its cursor"
            );
            return (snap, e.last_event_id);
        }
        assert_eq!(e.event, "progress", "snapshot events are ordinary events");
        let n = n_of(&e.data);
        snap.push((e.last_event_id.clone(), n, format!("k{}", n % KEYS)));
        assert!(n <= last);
    }
}

async fn stream_until(sub: &mut SseClient, last: u64) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let e = sub.next_event_within(Duration::from_secs(60)).await;
        assert_eq!(e.event, "progress", "only data events after the handoff");
        let n = n_of(&e.data);
        out.push(n);
        if n == last {
            return out;
        }
    }
}

/// A client that takes `GET /snapshot`, then subscribes with `Last-Event-ID: cursor`.
async fn client_by_cursor(server: &Server, topic: &str, last: u64) -> Seen {
    let body = snapshot(server, &format!("topic={topic}")).await;
    let cursor = body["cursor"].as_str().expect("cursor").to_owned();
    let rows = rows(&body);
    let snapshot_ids = rows.values().map(|(id, ..)| id.clone()).collect();
    let snapshot = rows
        .into_iter()
        .map(|(k, (_, _, data))| (k, data["n"].as_u64().expect("n")))
        .collect();
    let mut sub = server
        .subscribe_with(&format!("topic={topic}"), &[("last-event-id", &cursor)])
        .await;
    let stream = if snapshot_last(&snapshot) == last {
        Vec::new()
    } else {
        stream_until(&mut sub, last).await
    };
    Seen {
        snapshot,
        snapshot_ids,
        cursor,
        stream,
    }
}

fn snapshot_last(snapshot: &BTreeMap<String, u64>) -> u64 {
    snapshot.values().copied().max().unwrap_or(0)
}

/// A client on `/events?snapshot=1`.
async fn client_by_stream(server: &Server, topic: &str, last: u64) -> Seen {
    let mut sub = server.subscribe(&format!("topic={topic}&snapshot=1")).await;
    sub.expect_retry().await;
    let (snap, cursor) = read_sse_until(&mut sub, last).await;
    let mut snapshot = BTreeMap::new();
    for (_, n, key) in &snap {
        assert!(
            snapshot.insert(key.clone(), *n).is_none(),
            "one event per key in the snapshot"
        );
    }
    let stream = if snapshot_last(&snapshot) == last {
        Vec::new()
    } else {
        stream_until(&mut sub, last).await
    };
    Seen {
        snapshot,
        snapshot_ids: snap.into_iter().map(|(id, ..)| id).collect(),
        cursor,
        stream,
    }
}

/// Snapshot plus stream account for every event exactly once: the snapshot is each key's
/// newest event up to the last one before the cursor, and the stream is every event after
/// it, in order, ending at `last`.
fn check_exact(seen: &Seen, last: u64, who: &str) {
    let m = snapshot_last(&seen.snapshot);
    for k in 0..KEYS {
        let newest = (1..=m).rev().find(|n| n % KEYS == k);
        assert_eq!(
            seen.snapshot.get(&format!("k{k}")).copied(),
            newest,
            "{who}: key k{k}'s snapshot value is its newest event up to {m}"
        );
    }
    if m > 0 {
        let newest_id = seen
            .snapshot_ids
            .iter()
            .max_by_key(|id| parse_id(id).1)
            .expect("an id");
        assert_eq!(
            &seen.cursor, newest_id,
            "{who}: the cursor is the snapshot's newest event (every event is keyed)"
        );
    }
    let want: Vec<u64> = (m + 1..=last).collect();
    assert_eq!(
        seen.stream, want,
        "{who}: the stream continues right after the snapshot: no gap, no duplicate"
    );
}

/// The handoff test: a publisher keeps publishing while clients take snapshot and
/// stream, both ways; each accounts for every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handoff_under_concurrent_publishing_has_no_gap_and_no_duplicate() {
    let server = std::sync::Arc::new(Server::start(&[]));
    let topic = format!("snap{}/downloads", unique());
    const LAST: u64 = 400;
    const CLIENTS: u64 = 12;
    let publisher = {
        let server = server.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for n in 1..=LAST {
                let key = format!("k{}", n % KEYS);
                publish_keyed(&server, &topic, "progress", &key, json!({"n": n})).await;
            }
        })
    };
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        // Start the clients spread over the publishing run.
        let server = server.clone();
        let topic = topic.clone();
        clients.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let head = server.readyz().await["head"].as_u64().unwrap_or(0);
                if head >= c * LAST / CLIENTS {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "publisher stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let seen = if c % 2 == 0 {
                client_by_cursor(&server, &topic, LAST).await
            } else {
                client_by_stream(&server, &topic, LAST).await
            };
            (c, seen)
        }));
    }
    publisher.await.expect("publisher");
    let mut mid_run = 0;
    for client in clients {
        let (c, seen) = client.await.expect("client");
        let kind = if c % 2 == 0 {
            "GET /snapshot"
        } else {
            "snapshot=1"
        };
        check_exact(&seen, LAST, &format!("client {c} ({kind})"));
        if !seen.stream.is_empty() && snapshot_last(&seen.snapshot) > 0 {
            mid_run += 1;
        }
    }
    assert!(
        mid_run >= 2,
        "at least two clients took their snapshot while events were still being published"
    );
}

fn readyz_head(v: &Value) -> u64 {
    v["head"].as_u64().expect("head")
}

/// `snapshot=1` on NDJSON, WebSocket and long-poll: the snapshot's events in the endpoint's
/// shape, then a `snapshot` control frame whose id is the cursor, then what comes after.
#[tokio::test]
async fn every_transport_sends_the_snapshot_then_the_handoff_then_live() {
    let server = Server::start(&["--durability", "memory"]);
    let topic = format!("snapt{}", unique());
    publish_keyed(&server, &topic, "progress", "a", json!({"n": 1})).await;
    publish_keyed(&server, &topic, "progress", "b", json!({"n": 2})).await;
    let newest_a = publish_keyed(&server, &topic, "progress", "a", json!({"n": 3})).await;
    let cursor = newest_a.clone();
    let head = readyz_head(&server.readyz().await);
    assert_eq!(parse_id(&cursor).1, head);

    // Long-poll: the answer is the snapshot and its handoff; its cursor polls on from there.
    let url = server.url(&format!("/events?poll=1&snapshot=1&topic={topic}"));
    let body: Value = server
        .http
        .get(&url)
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("poll JSON");
    let frames = body["events"].as_array().expect("events");
    let summary: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["type"].clone(), f["data"]["n"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!("progress"), json!(2)),
            (json!("progress"), json!(3)),
            (json!("snapshot"), Value::Null),
        ],
        "long-poll: {body}"
    );
    assert_eq!(frames[2]["id"], json!(cursor));
    assert_eq!(frames[2]["data"]["cursor"], json!(cursor));
    assert_eq!(
        body["cursor"],
        json!(cursor),
        "the next poll continues after it"
    );

    // NDJSON.
    let resp = server
        .get_events(&format!("topic={topic}&snapshot=1&format=ndjson"), &[])
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut lines: Vec<Value> = Vec::new();
    let mut published_live = false;
    while lines.len() < 4 {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("ndjson in time")
            .expect("ndjson open")
            .expect("ndjson chunk");
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            if line.len() > 1 {
                lines.push(serde_json::from_slice(&line).expect("a JSON line"));
            }
        }
        if lines.len() == 3 && !published_live {
            published_live = true;
            publish_keyed(&server, &topic, "progress", "b", json!({"n": 4})).await;
        }
    }
    let kinds: Vec<(Value, Value)> = lines
        .iter()
        .map(|l| (l["type"].clone(), l["data"]["n"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!("progress"), json!(2)),
            (json!("progress"), json!(3)),
            (json!("snapshot"), Value::Null),
            (json!("progress"), json!(4)),
        ],
        "NDJSON: {lines:?}"
    );
    assert_eq!(lines[2]["id"], json!(cursor));
    let cursor = lines[3]["id"].as_str().expect("id").to_owned();

    // WebSocket.
    let url = format!("ws://{}/events?topic={topic}&snapshot=1", server.addr);
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("ws connect in time")
        .expect("ws connect");
    let mut frames = Vec::new();
    while frames.len() < 4 {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("ws frame in time")
            .expect("ws open")
            .expect("ws frame");
        if let Message::Text(t) = msg {
            frames.push(serde_json::from_str::<Value>(&t).expect("JSON frame"));
            if frames.len() == 3 {
                publish_keyed(&server, &topic, "progress", "c", json!({"n": 5})).await;
            }
        }
    }
    let kinds: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["type"].clone(), f["data"]["n"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!("progress"), json!(3)),
            (json!("progress"), json!(4)),
            (json!("snapshot"), Value::Null),
            (json!("progress"), json!(5)),
        ],
        "WebSocket: {frames:?}"
    );
    assert_eq!(frames[2]["id"], json!(cursor));
    assert_eq!(frames[0]["key"], json!("a"), "events carry their key");
}

/// With a cursor, `snapshot=1` resumes instead (an `EventSource` reconnects to the same URL
/// with `Last-Event-ID`): no second snapshot, exactly the events after the cursor.
#[tokio::test]
async fn a_cursor_resumes_instead_of_taking_a_second_snapshot() {
    let server = Server::start(&["--durability", "memory"]);
    let topic = format!("snapr{}", unique());
    let first = publish_keyed(&server, &topic, "progress", "a", json!({"n": 1})).await;
    let second = publish_keyed(&server, &topic, "progress", "a", json!({"n": 2})).await;
    let mut sub = server
        .subscribe_with(
            &format!("topic={topic}&snapshot=1"),
            &[("last-event-id", &first)],
        )
        .await;
    sub.expect_retry().await;
    let e = sub.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.last_event_id.as_str()),
        ("progress", second.as_str())
    );
    sub.expect_no_event(Duration::from_millis(200)).await;
}

/// In durable mode the table is on disk with the events: after a SIGKILL and a restart the
/// snapshot is the same, including keys whose events retention trimmed, and its cursor
/// resumes exactly.
#[tokio::test]
async fn snapshot_after_a_restart_in_durable_mode() {
    let mut server = Server::start(&["--durability", "durable", "--retention-max-events", "3"]);
    let topic = format!("snapd{}", unique());
    for (n, key) in ["a", "b", "c", "d", "a", "e", "f", "g"].iter().enumerate() {
        publish_keyed(&server, &topic, "progress", key, json!({"n": n + 1})).await;
    }
    let before = snapshot(&server, &format!("topic={topic}")).await;
    let keys: Vec<String> = rows(&before).into_keys().collect();
    assert_eq!(
        keys,
        ["a", "b", "c", "d", "e", "f", "g"],
        "every key: {before}"
    );
    assert_eq!(rows(&before)["a"].2, json!({"n": 5}), "a's newest value");

    server.restart();
    let after = snapshot(&server, &format!("topic={topic}")).await;
    assert_eq!(after, before, "the snapshot survives a restart unchanged");
    // History before the last 3 events is gone, yet `b`'s only event is still listed.
    let (status, old) = snapshot_raw(&server, &format!("topic={topic}&type=progress"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&old)["b"].2, json!({"n": 2}));

    let cursor = after["cursor"].as_str().expect("cursor").to_owned();
    let mut sub = server
        .subscribe_with(&format!("topic={topic}"), &[("last-event-id", &cursor)])
        .await;
    sub.expect_retry().await;
    let next = publish_keyed(&server, &topic, "progress", "a", json!({"n": 9})).await;
    let e = sub.next_event().await;
    assert_eq!(e.last_event_id, next, "the restored cursor resumes exactly");
    sub.expect_no_event(Duration::from_millis(200)).await;
}

/// `--snapshot-delete-type removed`: a removed download leaves the snapshot, a completed one
/// stays; the removal itself is still an ordinary event on the stream.
#[tokio::test]
async fn a_removed_key_disappears_from_the_snapshot() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--snapshot-delete-type",
        "removed",
    ]);
    let topic = format!("snapx{}", unique());
    publish_keyed(&server, &topic, "progress", "d1", json!({"pct": 10})).await;
    publish_keyed(&server, &topic, "progress", "d2", json!({"pct": 50})).await;
    publish_keyed(&server, &topic, "complete", "d2", json!({"pct": 100})).await;
    let listed = rows(&snapshot(&server, &format!("topic={topic}")).await);
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["d1", "d2"]);

    let mut sub = server.subscribe(&format!("topic={topic}&snapshot=1")).await;
    sub.expect_retry().await;
    assert_eq!(sub.events(3).await[2].event, "snapshot");
    let removed = publish_keyed(&server, &topic, "removed", "d1", json!({})).await;
    let e = sub.next_event().await;
    assert_eq!(
        (e.event.as_str(), e.last_event_id.as_str()),
        ("removed", removed.as_str())
    );

    let body = snapshot(&server, &format!("topic={topic}")).await;
    let listed = rows(&body);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["d2"],
        "d1 is gone: {body}"
    );
    assert_eq!(
        listed["d2"].1, "complete",
        "a completed download stays listed"
    );
    assert_eq!(
        body["cursor"],
        json!(removed),
        "the cursor is past the removal"
    );
}

/// `--snapshot-max-keys 3`: a publisher inventing keys keeps the table at 3 (the newest);
/// `--snapshot-max-bytes`: a snapshot larger than it is 422 `snapshot_too_large`, on
/// `GET /snapshot` and on `snapshot=1`, while a narrower selector still fits.
#[tokio::test]
async fn the_key_and_byte_ceilings_hold() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--snapshot-max-keys",
        "3",
        "--snapshot-max-bytes",
        "1KiB",
    ]);
    let topic = format!("snapc{}", unique());
    for n in 0..50 {
        publish_keyed(
            &server,
            &topic,
            "progress",
            &format!("invented-{n}"),
            json!({"n": n}),
        )
        .await;
    }
    let listed = rows(&snapshot(&server, &format!("topic={topic}")).await);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["invented-47", "invented-48", "invented-49"],
        "at the ceiling a new key evicts the key updated longest ago"
    );

    let big = "x".repeat(400);
    for key in ["a", "b", "c"] {
        publish_keyed(
            &server,
            &format!("{topic}/big"),
            "progress",
            key,
            json!({"pad": big}),
        )
        .await;
    }
    let (status, body) = snapshot_raw(&server, &format!("topic={topic}/big"), &[]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "snapshot_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("topic"),
        "the message names the field: {body}"
    );
    let resp = server
        .get_events(&format!("topic={topic}/big&snapshot=1"), &[])
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    let (status, _) = snapshot_raw(&server, &format!("topic={topic}/big&type=other"), &[]).await;
    assert_eq!(status, 200, "a narrower selector fits");
}

/// Bad input is a 4xx JSON answer with a stable code and a message naming the field; the
/// snapshot needs the subscribe grant for its selector.
#[tokio::test]
async fn bad_input_and_missing_grants_are_refused() {
    let server = Server::start(&[
        "--token",
        "snap-pub-secret:publish=*;subscribe=*",
        "--token",
        "snap-sub-secret:subscribe=mine/*",
    ]);
    let all = ("authorization", "Bearer snap-pub-secret");
    let mine = ("authorization", "Bearer snap-sub-secret");
    /// Query, headers, then the status, code and field the answer must name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        ("topic=mine/*", &[], 401, "unauthorized", ""),
        ("topic=other", &[mine], 403, "forbidden", "topic"),
        ("", &[mine], 403, "forbidden", "topic"),
        ("topic=a%0Ab", &[all], 422, "invalid_topic", "topic"),
        ("topic=a&type=", &[all], 422, "invalid_type", "type"),
        (
            "topic=a&lastEventId=x",
            &[all],
            400,
            "invalid_parameter",
            "lastEventId",
        ),
    ];
    for (query, headers, status, code, field) in cases {
        let (got, body) = snapshot_raw(&server, query, headers).await;
        assert_eq!(got, *status, "{query}: {body}");
        assert_eq!(body["error"]["code"], *code, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(field),
            "{query}: the message names `{field}`: {body}"
        );
    }
    let (status, body) = snapshot_raw(&server, "topic=mine/*", &[mine]).await;
    assert_eq!(status, 200, "{body}");

    for (query, field) in [
        ("topic=a&snapshot=2", "snapshot"),
        ("topic=a&snapshot=1&clientId=c1", "snapshot"),
    ] {
        let resp = server.get_events(query, &[all]).await;
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: Value = resp.json().await.expect("error JSON");
        assert_eq!(
            body["error"]["code"], "invalid_parameter",
            "{query}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(field),
            "{query}: {body}"
        );
    }
    let (status, body) = server
        .publish_raw(
            &json!({"topic": "a", "type": "snapshot", "data": {}}),
            &[all],
        )
        .await;
    assert_eq!(status, 422, "`snapshot` is the hub's own event: {body}");
    assert_eq!(body["error"]["code"], "reserved_type");
}
