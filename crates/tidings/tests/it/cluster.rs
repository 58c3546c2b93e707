//! Cluster mode end to end: a real `nats-server -js` (free loopback port, temporary store
//! directory, killed on drop) and three `tidings serve --cluster-nats` nodes. Publish on A,
//! receive on B and C over SSE with the same ids; resume on C with an id seen on B (no gap,
//! no duplicate); NATS down: publish 503 `store_unavailable` and `/readyz` 503, then back up
//! and resume with no gap; a client-id session resumed on another node (and back); snapshots
//! equal on every node, a deleted key included, and `snapshot=1` handing off on another node;
//! a keyed retry on another node; `latest` coalescing seen from another node.

use std::time::{Duration, Instant};

use serde_json::json;
use tidings_cluster_nats::testing::NatsServer as Nats;

use serde_json::Value;

use crate::support::{Server, SseClient, parse_id};

fn node(nats: &Nats, stream: &str) -> Server {
    Server::start(&["--cluster-nats", &nats.url(), "--cluster-stream", stream])
}

/// `GET path`'s status.
async fn status(server: &Server, path: &str) -> u16 {
    server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls until `path` answers `want`, for at most 30 s (a silent NATS path takes ~10 s to find).
pub(crate) async fn until_status(server: &Server, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if status(server, path).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_on_one_node_reaches_every_node_with_the_same_ids_and_resumes_on_another() {
    let nats = Nats::start();
    let (a, b, c) = (node(&nats, "E1"), node(&nats, "E1"), node(&nats, "E1"));
    let mut on_b = b.subscribe("").await;
    let mut on_c = c.subscribe("").await;
    on_b.expect_retry().await;
    on_c.expect_retry().await;
    b.wait_subscribers(1).await;
    c.wait_subscribers(1).await;
    // Topics NATS could not carry as they are: a space, `.`, `*`, `>`, empty segments.
    let topics = [
        "cloudreve://my/a b.jpg",
        "a.b/*x",
        "x/>",
        "plain/1",
        "plain/2",
    ];
    let mut published = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        published.push(a.publish_one(topic, "changed", json!({ "i": i })).await);
    }
    let (epoch, first) = parse_id(&published[0]);
    for (i, id) in published.iter().enumerate() {
        assert_eq!(
            parse_id(id),
            (epoch.clone(), first + i as u64),
            "one id space"
        );
    }
    let on_b_events = on_b.events(5).await;
    let on_c_events = on_c.events(5).await;
    for events in [&on_b_events, &on_c_events] {
        let ids: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
        assert_eq!(ids, published, "same ids on every node");
    }
    assert_eq!(on_c_events[0].data, r#"{"i":0}"#);
    // A client that saw up to published[1] on B resumes on C: exactly what it missed, then
    // what is published after, from any node.
    let mut resumed = c
        .subscribe_with("", &[("Last-Event-ID", &published[1])])
        .await;
    resumed.expect_retry().await;
    let later = b.publish_one("plain/3", "changed", json!({ "i": 5 })).await;
    let mut want: Vec<String> = published[2..].to_vec();
    want.push(later);
    assert_eq!(resumed.ids(4).await, want, "no gap, no duplicate");
    resumed.expect_no_event(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_refuses_publishes_and_readiness_then_streams_resume_without_gap() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, "E2"), node(&nats, "E2"));
    let mut on_b = b.subscribe("").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let before = a.publish_one("t/1", "changed", json!(1)).await;
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&before));
    nats.kill();
    until_status(&a, "/readyz", 503).await;
    let (code, body) = a
        .publish_raw(&json!({"topic": "t/1", "type": "changed", "data": 2}), &[])
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(
        !body.to_string().contains("NATS"),
        "the cause stays in the log: {body}"
    );
    nats.restart();
    until_status(&a, "/readyz", 200).await;
    until_status(&b, "/readyz", 200).await;
    let after = a.publish_one("t/1", "changed", json!(3)).await;
    // B's stream stayed open through the outage and continues with the next id.
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&after));
    assert_eq!(
        parse_id(&after).1,
        parse_id(&before).1 + 1,
        "nothing of the refused publish"
    );
}

/// The session notice a client-id stream starts with: its name and cursor.
async fn session_event(sub: &mut SseClient, client: &str) -> (String, String) {
    let ev = sub.next_event().await;
    let data: Value = serde_json::from_str(&ev.data).expect("session data is JSON");
    assert_eq!(data["clientId"], client, "{data}");
    (
        ev.event,
        data["cursor"].as_str().expect("cursor").to_owned(),
    )
}

async fn with_client_id(server: &Server, topic: &str, client: &str) -> SseClient {
    let mut sub = server
        .subscribe_with(&format!("topic={topic}"), &[("X-Client-Id", client)])
        .await;
    sub.expect_retry().await;
    sub
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_id_session_resumes_on_another_node_with_no_gap_and_no_duplicate() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "E3"), node(&nats, "E3"));
    let id = "3f7c3393-eecf-4c2a-9a6b-00000000e003";
    let topic = "rooms/1";
    let mut on_a = with_client_id(&a, topic, id).await;
    assert_eq!(session_event(&mut on_a, id).await.0, "subscribed");
    let seen = vec![
        a.publish_one(topic, "said", json!(1)).await,
        b.publish_one(topic, "said", json!(2)).await,
    ];
    assert_eq!(on_a.ids(2).await, seen);
    drop(on_a);
    a.wait_subscribers(0).await;
    let missed = vec![
        b.publish_one(topic, "said", json!(3)).await,
        a.publish_one(topic, "said", json!(4)).await,
    ];
    // The same client id on B, no Last-Event-ID: B reads the session A saved.
    let mut on_b = with_client_id(&b, topic, id).await;
    assert_eq!(
        session_event(&mut on_b, id).await,
        ("resumed".to_owned(), seen[1].clone())
    );
    assert_eq!(on_b.ids(2).await, missed, "what it missed, once, in order");
    on_b.expect_no_event(Duration::from_millis(300)).await;
    let later = a.publish_one(topic, "said", json!(5)).await;
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&later));
    drop(on_b);
    b.wait_subscribers(0).await;
    // Back on A, which still holds its own older place: B's newer one wins.
    let last = b.publish_one(topic, "said", json!(6)).await;
    let mut back = with_client_id(&a, topic, id).await;
    assert_eq!(
        session_event(&mut back, id).await,
        ("resumed".to_owned(), later.clone())
    );
    assert_eq!(back.ids(1).await, std::slice::from_ref(&last));
    back.expect_no_event(Duration::from_millis(300)).await;
}

async fn snapshot_of(server: &Server, query: &str) -> Value {
    let resp = server
        .http
        .get(server.url(&format!("/snapshot?{query}")))
        .send()
        .await
        .expect("snapshot request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("snapshot JSON");
    assert_eq!(status, 200, "{body}");
    body
}

/// `(key, id, type)` of a snapshot's events, in order.
fn rows(body: &Value) -> Vec<(String, String, String)> {
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["key"].as_str().expect("key").to_owned(),
                e["id"].as_str().expect("id").to_owned(),
                e["type"].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

async fn keyed(server: &Server, topic: &str, ty: &str, key: &str, n: u64) -> String {
    let ids = server
        .publish(&json!({"topic": topic, "type": ty, "key": key, "data": {"n": n}}))
        .await;
    ids.into_iter().next().expect("one id")
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_are_the_same_on_every_node_and_hand_off_on_another() {
    let nats = Nats::start();
    let args = |n: &Nats| {
        Server::start(&[
            "--cluster-nats",
            &n.url(),
            "--cluster-stream",
            "E4",
            "--snapshot-delete-type",
            "removed",
        ])
    };
    let (a, b, c) = (args(&nats), args(&nats), args(&nats));
    let topic = "dl/a.b*c";
    keyed(&a, topic, "progress", "d1", 1).await;
    keyed(&b, topic, "progress", "d2", 2).await;
    keyed(&c, topic, "progress", "d3", 3).await;
    let d1 = keyed(&a, topic, "progress", "d1", 4).await;
    let removed = keyed(&b, topic, "removed", "d2", 5).await;
    a.publish_one(topic, "note", json!("no key, no row")).await;
    keyed(&a, "elsewhere/x", "progress", "d1", 6).await;
    let first = snapshot_of(&a, &format!("topic={topic}")).await;
    let listed = rows(&first);
    let keys: Vec<&str> = listed.iter().map(|(k, ..)| k.as_str()).collect();
    assert_eq!(keys, ["d3", "d1"], "d2 was removed, in id order: {first}");
    assert_eq!(listed[1].1, d1, "d1's newest");
    assert!(parse_id(first["cursor"].as_str().unwrap()).1 > parse_id(&removed).1);
    for node in [&b, &c] {
        assert_eq!(
            snapshot_of(node, &format!("topic={topic}")).await,
            first,
            "the same snapshot on every node"
        );
    }
    // A prefix selector and every topic read the same rows.
    let all = snapshot_of(&c, "topic=dl/*").await;
    assert_eq!(rows(&all), listed);
    assert_eq!(rows(&snapshot_of(&b, "topic=*").await).len(), 3);

    // `snapshot=1` on C, then live events published on A: no gap, no duplicate.
    let mut sub = c.subscribe(&format!("topic={topic}&snapshot=1")).await;
    sub.expect_retry().await;
    let got = sub.events(3).await;
    assert_eq!(
        got.iter()
            .map(|e| e.last_event_id.clone())
            .collect::<Vec<_>>()[..2],
        [listed[0].1.clone(), listed[1].1.clone()]
    );
    assert_eq!(got[2].event, "snapshot");
    let cursor = got[2].last_event_id.clone();
    c.wait_subscribers(1).await;
    let next = vec![
        keyed(&a, topic, "progress", "d3", 7).await,
        keyed(&b, topic, "progress", "d4", 8).await,
    ];
    assert!(parse_id(&next[0]).1 > parse_id(&cursor).1);
    assert_eq!(sub.ids(2).await, next, "live right after the handoff");
    sub.expect_no_event(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyed_retry_on_another_node_gets_the_same_ids_and_a_reused_key_conflicts() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "E5"), node(&nats, "E5"));
    let mut on_b = b.subscribe("topic=orders/*").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let batch = json!([
        {"topic": "orders/1", "type": "placed", "data": {"n": 1}},
        {"topic": "orders/2", "type": "placed", "data": {"n": 2}},
    ]);
    let key = [("Idempotency-Key", "order-batch-1")];
    let (status, first) = a.publish_raw(&batch, &key).await;
    assert_eq!(status, 200, "{first}");
    let (status, retry) = b.publish_raw(&batch, &key).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["ids"], first["ids"], "the original ids");
    // The same key with another body, on another node: a conflict, and nothing stored.
    let other = json!([
        {"topic": "orders/1", "type": "placed", "data": {"n": 9}},
        {"topic": "orders/2", "type": "placed", "data": {"n": 2}},
    ]);
    let (status, conflict) = b.publish_raw(&other, &key).await;
    assert_eq!(status, 422, "as on one node: {conflict}");
    assert_eq!(
        conflict["error"]["code"], "idempotency_conflict",
        "{conflict}"
    );
    let after = b.publish_one("orders/3", "placed", json!({"n": 3})).await;
    let mut want = crate::support::ids_of(&first);
    want.push(after.clone());
    assert_eq!(on_b.ids(3).await, want, "stored once");
    assert_eq!(
        parse_id(&after).1,
        parse_id(&want[1]).1 + 1,
        "the retry took no sequence"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_coalescing_on_one_node_reaches_another_with_leading_and_final_values() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        r#"
[[coalesce]]
types = ["progress"]
topics = ["downloads/*"]
policy = "latest"
window = "200ms"
key = "/id"
"#,
    )
    .expect("write config");
    let file = file.to_str().expect("utf-8 path").to_owned();
    let with_rules = || {
        Server::start(&[
            "--config",
            &file,
            "--cluster-nats",
            &nats.url(),
            "--cluster-stream",
            "E6",
            "--publish-rate",
            "0",
        ])
    };
    let (a, b) = (with_rules(), with_rules());
    let mut on_b = b.subscribe("topic=downloads/*").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    // Two keys at 200 Hz for about a second, all published on A.
    let ticks = 200u64;
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    for tick in 1..=ticks {
        interval.tick().await;
        let batch = json!([
            {"topic": "downloads/x", "type": "progress", "data": {"id": "k1", "n": tick}},
            {"topic": "downloads/x", "type": "progress", "data": {"id": "k2", "n": tick}},
        ]);
        let (status, answer) = a.publish_raw(&batch, &[]).await;
        assert_eq!(status, 200, "{answer}");
    }
    // B sees each key's leading value, then at most about one per window, ending with the
    // final value.
    let mut last: std::collections::HashMap<String, Vec<u64>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while last
        .values()
        .map(|v| v.last() == Some(&ticks))
        .filter(|d| *d)
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "final values never came: {last:?}"
        );
        let e = on_b.next_event().await;
        let data: Value = serde_json::from_str(&e.data).expect("JSON");
        let key = data["id"].as_str().expect("id").to_owned();
        last.entry(key)
            .or_default()
            .push(data["n"].as_u64().expect("n"));
    }
    // The leading value, then at most one per 200 ms window that passed.
    let most = started.elapsed().as_millis() / 200 + 2;
    for (key, seen) in &last {
        assert_eq!(seen[0], 1, "{key}: the leading value goes out at once");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{key}: in order: {seen:?}"
        );
        assert!(
            (seen.len() as u128) <= most && seen.len() < ticks as usize / 2,
            "{key}: at most one per window ({most}), not {} events",
            seen.len()
        );
    }
    drop(dir);
}
