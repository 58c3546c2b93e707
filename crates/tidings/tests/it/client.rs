//! The Rust client against the real binary over real sockets: publish then subscribe (both
//! framings); a `kill -9` and restart mid-stream with 10 publishers running, after which
//! every acknowledged event has arrived exactly once and in order per topic (over SSE and
//! WebSocket); a slow-consumer `reconnect-required` followed at once by a resuming reconnect;
//! a graceful shutdown's `reconnect-required`; the WebSocket transport; a 401 that stops
//! retrying; and `Since::Snapshot` / `Client::snapshot` handing off to live events exactly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::json;
use tidings_client::{
    Client, DisconnectCause, ErrorKind, Event, Framing, Item, NewEvent, Since, SubscribeOptions,
};
use tokio::sync::{Mutex, mpsc};

use crate::support::{Server, WAIT};

fn client(server: &Server) -> Client {
    Client::new(&format!("http://{}", server.addr)).expect("client")
}

/// The next item within `WAIT`; panics on a permanent error or the end of the stream.
async fn next_item<S>(stream: &mut S) -> Item
where
    S: futures_util::Stream<Item = Result<Item, tidings_client::Error>> + Unpin,
{
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no item in time")
        .expect("the stream ended")
        .expect("a permanent error")
}

/// The next event, skipping connection notices.
async fn next_event<S>(stream: &mut S) -> Event
where
    S: futures_util::Stream<Item = Result<Item, tidings_client::Error>> + Unpin,
{
    loop {
        match next_item(stream).await {
            Item::Event(e) => return e,
            Item::Reset(r) => panic!("unexpected reset {r:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_then_subscribe() {
    let server = Server::start(&["--durability", "memory"]);
    let client = client(&server);
    let one = NewEvent::new("d/abc", "progress", &json!({"Downloaded": 5}))
        .expect("event")
        .key("abc")
        .expect("key");
    let first = client.publish(&one).await.expect("publish").expect("an id");
    let done = NewEvent::new("d/abc", "complete", &json!({})).expect("event");
    let other = NewEvent::new("x/1", "note", &json!("hi")).expect("event");
    let ids = client
        .publish_batch(&[done, other])
        .await
        .expect("publish batch");
    let ids: Vec<_> = ids.into_iter().map(|id| id.expect("an id")).collect();
    assert_eq!(ids.len(), 2);
    assert!(first < ids[0] && ids[0] < ids[1], "{first} {ids:?}");

    // SSE: id, type and data.
    let sse = client.subscribe_with(SubscribeOptions::new(["d/*"]).since(Since::Earliest));
    let mut sse = std::pin::pin!(sse);
    let a = next_event(&mut sse).await;
    let b = next_event(&mut sse).await;
    assert_eq!(
        (a.id.as_str(), a.event_type.as_str()),
        (first.to_string().as_str(), "progress")
    );
    assert_eq!(a.data, r#"{"Downloaded":5}"#);
    assert_eq!(a.topic, None);
    assert_eq!(
        (b.event_id(), b.event_type.as_str()),
        (Some(ids[0]), "complete")
    );

    // JSON lines: also topic and key; type filter.
    let options = SubscribeOptions::new(["*"])
        .types(["progress", "note"])
        .since(Since::Earliest)
        .framing(Framing::Ndjson);
    let mut lines = std::pin::pin!(client.subscribe_with(options));
    let a = next_event(&mut lines).await;
    assert_eq!(a.topic.as_deref(), Some("d/abc"));
    assert_eq!(a.key.as_deref(), Some("abc"));
    let c = next_event(&mut lines).await;
    assert_eq!(
        (c.topic.as_deref(), c.data.as_str()),
        (Some("x/1"), r#""hi""#)
    );
    assert_eq!(c.data_as::<String>().expect("a string"), "hi");

    // Live: a subscriber from now on gets the next publish.
    let mut live = std::pin::pin!(client.subscribe(["x/1"]));
    assert!(matches!(next_item(&mut live).await, Item::Connected(_)));
    let id = client
        .publish(&NewEvent::new("x/1", "note", &json!(2)).expect("event"))
        .await
        .expect("publish");
    assert_eq!(next_event(&mut live).await.event_id(), id);
}

/// One acknowledged publish: publisher, sequence number, id.
type Acked = (usize, u64, String);

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_mid_stream_loses_and_repeats_nothing() {
    restart_mid_stream(Framing::Sse).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_mid_stream_over_websocket() {
    restart_mid_stream(Framing::WebSocket).await;
}

async fn restart_mid_stream(framing: Framing) {
    const PUBLISHERS: usize = 10;
    let mut server = Server::start(&["--durability", "durable"]);
    // The restarted hub must come back where the client knows it: same port, same data.
    let addr = server.addr.to_string();
    server.launch.auto_listen = false;
    server.launch.args.extend(["--listen".to_owned(), addr]);
    let client = client(&server);
    let epoch = server.readyz().await["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();

    // The subscriber forwards every item it sees.
    let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
    let sub = client.subscribe_with(
        SubscribeOptions::new(["load/*"])
            .since(Since::Earliest)
            .framing(framing),
    );
    let subscriber = tokio::spawn(async move {
        let mut sub = std::pin::pin!(sub);
        while let Some(item) = sub.next().await {
            let item = item.expect("no permanent error");
            if tx.send(item).is_err() {
                return;
            }
        }
    });

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (client, acked, count, stop) =
            (client.clone(), acked.clone(), count.clone(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut failures = 0;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let event = NewEvent::new(&format!("load/{p}"), "tick", &json!({"p": p, "n": n}))
                    .expect("event");
                match client.publish(&event).await {
                    Ok(id) => {
                        let id = id.expect("no coalescing configured: an id");
                        acked.lock().await.push((p, n, id.to_string()));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // Retries outlasted the restart: not acknowledged, so it may or may
                    // not be stored; it must never be stored twice.
                    Err(e) => {
                        assert!(!e.is_permanent(), "{e}");
                        failures += 1;
                    }
                }
                n += 1;
            }
            failures
        }));
    }
    let wait_for = |target: usize| {
        let count = count.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while count.load(Ordering::Relaxed) < target {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "publishing is stuck"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(300).await;
    server.restart();
    let after = count.load(Ordering::Relaxed);
    wait_for(after + 300).await;
    stop.store(true, Ordering::Relaxed);
    let mut unacked = 0;
    for p in publishers {
        unacked += p.await.expect("publisher");
    }
    let acked = std::mem::take(&mut *acked.lock().await);
    assert_eq!(
        server.readyz().await["epoch"].as_str(),
        Some(epoch.as_str()),
        "a durable restart keeps the epoch"
    );

    // Read until every acknowledged event has arrived.
    let mut want: HashSet<&str> = acked.iter().map(|(_, _, id)| id.as_str()).collect();
    let mut events = Vec::new();
    let mut reconnect_resumed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !want.is_empty() {
        let item = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{} acknowledged events never arrived", want.len()))
            .expect("the subscriber ended");
        match item {
            Item::Event(e) => {
                want.remove(e.id.as_str());
                events.push(e);
            }
            Item::Connected(c) if c.opened_before > 0 => {
                reconnect_resumed = c.resumed_from.is_some_and(|id| id != "earliest");
            }
            Item::Reset(r) => panic!("a durable restart must not reset: {r:?}"),
            _ => {}
        }
    }
    subscriber.abort();
    assert!(
        reconnect_resumed,
        "the subscriber never reconnected with its last id"
    );

    // Exactly once: no id twice, no (publisher, n) twice; in order per topic.
    let mut ids = HashSet::new();
    let mut last_n: HashMap<u64, u64> = HashMap::new();
    for e in &events {
        assert!(ids.insert(e.id.clone()), "duplicate id {}", e.id);
        let v: serde_json::Value = e.data_as().expect("json");
        let (p, n) = (v["p"].as_u64().expect("p"), v["n"].as_u64().expect("n"));
        if let Some(prev) = last_n.insert(p, n) {
            assert!(
                n > prev,
                "publisher {p}: {n} after {prev} (duplicate or reordered)"
            );
        }
    }
    let by_key: HashMap<(u64, u64), &str> = events
        .iter()
        .map(|e| {
            let v: serde_json::Value = e.data_as().expect("json");
            (
                (v["p"].as_u64().unwrap_or(0), v["n"].as_u64().unwrap_or(0)),
                e.id.as_str(),
            )
        })
        .collect();
    for (p, n, id) in &acked {
        assert_eq!(
            by_key.get(&(*p as u64, *n)),
            Some(&id.as_str()),
            "event {p}/{n}"
        );
    }
    eprintln!(
        "restart ({framing:?}): {} acknowledged, {} received, {unacked} publishes failed during the restart",
        acked.len(),
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_consumer_is_told_to_reconnect_and_comes_back_at_once() {
    let server = Server::start(&["--durability", "memory", "--subscriber-queue", "16"]);
    let client = client(&server);
    let mut stream = std::pin::pin!(client.subscribe(["slow/*"]));
    assert!(matches!(next_item(&mut stream).await, Item::Connected(_)));
    // Not reading the stream while the hub publishes far more than the socket holds.
    const N: usize = 400;
    let payload = "p".repeat(50_000);
    let mut published = Vec::with_capacity(N);
    for i in 0..N {
        published.push(
            server
                .publish_one(&format!("slow/{}", i % 3), "big", json!(payload))
                .await,
        );
    }
    let mut received = Vec::new();
    let mut told = None;
    let mut came_back = None;
    while received.len() < N {
        match next_item(&mut stream).await {
            Item::Event(e) => received.push(e.id),
            Item::Disconnected(d) => {
                let DisconnectCause::ReconnectRequired(reason) = &d.cause else {
                    panic!("unexpected disconnect {:?}", d.cause);
                };
                assert_eq!(reason, "slow_consumer");
                assert_eq!(d.retry_in, Duration::ZERO);
                told = Some((tokio::time::Instant::now(), received.last().cloned()));
            }
            Item::Connected(c) => {
                let (at, last) = told.clone().expect("a reconnect without a notice");
                came_back = Some(at.elapsed());
                assert_eq!(c.resumed_from, last, "resumes from the last id it saw");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        told.is_some(),
        "the hub never found the subscriber slow; the test did not work"
    );
    // The backoff would wait at least 1 s (the hub's retry hint is 2 s).
    let came_back = came_back.expect("it reconnected");
    assert!(
        came_back < Duration::from_millis(500),
        "reconnected after {came_back:?}"
    );
    assert_eq!(received, published, "every event once, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_shutdown_says_reconnect_required() {
    let mut server = Server::start(&["--durability", "memory"]);
    let client = client(&server);
    let mut stream = std::pin::pin!(client.subscribe(["*"]));
    assert!(matches!(next_item(&mut stream).await, Item::Connected(_)));
    server.sigterm();
    match next_item(&mut stream).await {
        Item::Disconnected(d) => {
            assert!(
                matches!(&d.cause, DisconnectCause::ReconnectRequired(r) if r == "shutdown"),
                "{:?}",
                d.cause
            );
            assert_eq!(d.retry_in, Duration::ZERO);
        }
        other => panic!("expected reconnect-required, got {other:?}"),
    }
    assert!(server.wait_exit().success());
    // Nobody listens now: the client backs off instead of spinning.
    match next_item(&mut stream).await {
        Item::Disconnected(d) => {
            assert!(
                matches!(&d.cause, DisconnectCause::Failed(e) if e.kind() == ErrorKind::Connect)
            );
            assert!(d.retry_in >= Duration::from_millis(500), "{:?}", d.retry_in);
        }
        other => panic!("expected a failed reconnect, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_websocket_too() {
    let mut server = Server::start(&[
        "--durability",
        "memory",
        "--token",
        "ws-secret-1:publish=*;subscribe=*",
    ]);
    let url = format!("http://{}", server.addr);
    let client = Client::builder(&url)
        .token("ws-secret-1")
        .build()
        .expect("client");
    let first = client
        .publish(
            &NewEvent::new("w/1", "t", &json!({"a": 1}))
                .expect("event")
                .key("k")
                .expect("key"),
        )
        .await
        .expect("publish");
    let options = SubscribeOptions::new(["w/*"])
        .since(Since::Earliest)
        .framing(Framing::WebSocket);
    let mut stream = std::pin::pin!(client.subscribe_with(options.clone()));
    let e = next_event(&mut stream).await;
    assert_eq!(e.event_id(), first);
    assert_eq!(
        (e.topic.as_deref(), e.key.as_deref()),
        (Some("w/1"), Some("k"))
    );
    assert_eq!(e.data, r#"{"a":1}"#);
    let second = client
        .publish(&NewEvent::new("w/2", "t", &2).expect("event"))
        .await
        .expect("publish");
    assert_eq!(next_event(&mut stream).await.event_id(), second);

    // A refused upgrade is permanent.
    let anonymous = Client::new(&url).expect("client");
    let mut refused = std::pin::pin!(anonymous.subscribe_with(options));
    let err = tokio::time::timeout(WAIT, refused.next())
        .await
        .expect("in time")
        .expect("an item")
        .expect_err("401");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(refused.next().await.is_none());

    // Shutdown: the JSON notice, then the close; the client would come back at once.
    server.sigterm();
    match next_item(&mut stream).await {
        Item::Disconnected(d) => {
            assert!(
                matches!(&d.cause, DisconnectCause::ReconnectRequired(r) if r == "shutdown"),
                "{:?}",
                d.cause
            );
            assert_eq!(d.retry_in, Duration::ZERO);
        }
        other => panic!("expected reconnect-required, got {other:?}"),
    }
    assert!(server.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_stops_retrying_and_says_so() {
    let server = Server::start(&["--token", "right-secret-1:publish=*;subscribe=*"]);
    let anonymous = client(&server);
    let wrong = Client::builder(&format!("http://{}", server.addr))
        .token("wrong-secret-1")
        .build()
        .expect("client");
    for c in [&anonymous, &wrong] {
        let mut stream = std::pin::pin!(c.subscribe(["*"]));
        let err = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("in time")
            .expect("an item")
            .expect_err("401");
        assert_eq!(
            (err.kind(), err.status()),
            (ErrorKind::Unauthorized, Some(401))
        );
        assert!(err.is_permanent());
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(
            stream.next().await.is_none(),
            "the stream ends after a permanent error"
        );

        // A publish is not retried either: the first retry alone would wait 125 ms or more.
        let started = tokio::time::Instant::now();
        let event = NewEvent::new("a", "b", &1).expect("event");
        let err = c.publish(&event).await.expect_err("401");
        assert_eq!(err.kind(), ErrorKind::Unauthorized);
        assert!(
            started.elapsed() < Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
    }
    let right = Client::builder(&format!("http://{}", server.addr))
        .token("right-secret-1")
        .build()
        .expect("client");
    right
        .publish(&NewEvent::new("a", "b", &1).expect("event"))
        .await
        .expect("the right token publishes");
}

/// Publishes `progress` for keys `k0..k{keys}` `rounds` times over (`n` counts up across all).
async fn publish_keyed(client: &Client, keys: usize, rounds: usize, from: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in from..from + keys * rounds {
        let key = format!("k{}", n % keys);
        let event = NewEvent::new("snap/t", "progress", &json!({"n": n, "key": key}))
            .expect("event")
            .key(&key)
            .expect("key");
        let id = client
            .publish(&event)
            .await
            .expect("publish")
            .expect("an id");
        ids.push(id.to_string());
    }
    ids
}

/// `Since::Snapshot` on every framing, and `Client::snapshot` then `Since::After(cursor)`:
/// the snapshot is the newest event per key, `Item::Snapshot` carries the cursor, and the
/// events published meanwhile follow it exactly once, in order, with nothing missed.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_then_live_on_every_framing_with_no_gap_or_duplicate() {
    let server = Server::start(&["--durability", "durable"]);
    let client = client(&server);
    let keys = 5;
    let before = publish_keyed(&client, keys, 4, 0).await;
    // The newest of each key: the last `keys` published, in publish order.
    let newest: Vec<String> = before[before.len() - keys..].to_vec();

    // GET /snapshot, then a subscription from its cursor.
    let snap = client
        .snapshot(["snap/*"], [] as [&str; 0])
        .await
        .expect("snapshot");
    assert_eq!(
        snap.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        newest
    );
    assert_eq!(snap.cursor, *before.last().expect("some"));
    let first = &snap.events[0];
    assert_eq!(first.topic.as_deref(), Some("snap/t"));
    assert_eq!(first.key.as_deref(), Some("k0"));
    let refused = client.snapshot([""], [] as [&str; 0]).await;
    assert_eq!(
        refused.expect_err("a bad selector").kind(),
        ErrorKind::InvalidInput
    );

    let mut streams = Vec::new();
    for framing in [Framing::Sse, Framing::Ndjson, Framing::WebSocket] {
        let opts = SubscribeOptions::new(["snap/*"])
            .since(Since::Snapshot)
            .framing(framing);
        streams.push((framing, Box::pin(client.subscribe_with(opts))));
    }
    let mut after_cursor =
        Box::pin(client.subscribe_with(SubscribeOptions::new(["snap/*"]).since(snap.since())));

    // Publishers keep going while the snapshots are taken.
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move { publish_keyed(&client, keys, 6, 1000).await })
    };
    let mut cursors = Vec::new();
    for (framing, stream) in &mut streams {
        let mut got = Vec::new();
        let cursor = loop {
            match next_item(stream).await {
                Item::Event(e) => got.push(e.id),
                Item::Snapshot(end) => break end.cursor,
                Item::Reset(r) => panic!("{framing:?}: unexpected reset {r:?}"),
                _ => {}
            }
        };
        // One event per key, each its key's newest as of the cursor, oldest first.
        assert_eq!(got.len(), keys, "{framing:?}: {got:?}");
        assert_eq!(got.last(), Some(&cursor), "{framing:?}");
        assert!(
            got.windows(2).all(|w| seq(&w[0]) < seq(&w[1])),
            "{framing:?}: {got:?}"
        );
        cursors.push(cursor);
    }
    let later = publisher.await.expect("publisher");
    let all: Vec<String> = before.iter().chain(&later).cloned().collect();
    // After its handoff, each stream has every later event once, in order.
    for ((framing, stream), cursor) in streams.iter_mut().zip(&cursors) {
        let mut live = Vec::new();
        while live.last() != all.last() {
            live.push(next_event(stream).await.id);
        }
        let at = all
            .iter()
            .position(|id| id == cursor)
            .unwrap_or_else(|| panic!("{framing:?}: cursor {cursor} was not published"));
        assert_eq!(
            live,
            all[at + 1..].to_vec(),
            "{framing:?}: a gap or a duplicate"
        );
    }
    let mut live = Vec::new();
    while live.last() != all.last() {
        live.push(next_event(&mut after_cursor).await.id);
    }
    assert_eq!(
        live, later,
        "after GET /snapshot's cursor: exactly the later events"
    );
}

fn seq(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("an id")
}
