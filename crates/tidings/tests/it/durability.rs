//! Durability: acknowledged publishes survive `kill -9` in durable mode; SIGTERM closes
//! streams with `reconnect-required` (shutdown), exits 0 and keeps epoch and head; memory
//! mode starts a new epoch; count retention is visible through `earliest`; an
//! Idempotency-Key is as durable as its events; events acknowledged from the store's log and
//! not yet indexed survive `kill -9` once each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{Server, parse_id};

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_publishes_survive_kill_9() {
    let mut server = Server::start(&["--durability", "durable"]);
    let url = server.url("/publish");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (url, acked, count, stop) = (url.clone(), acked.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let size = 1 + (n % 3) as usize;
                let batch: Vec<Value> = (0..size)
                    .map(|k| json!({"topic": format!("d/{w}"), "type": "t", "data": {"w": w, "n": n, "k": k}}))
                    .collect();
                let sent = client.post(&url).json(&batch).send().await;
                let Ok(resp) = sent else { break };
                if resp.status().as_u16() != 200 {
                    break;
                }
                let Ok(v) = resp.json::<Value>().await else { break };
                let ids = crate::support::ids_of(&v);
                let mut a = acked.lock().await;
                for (id, ev) in ids.into_iter().zip(&batch) {
                    a.push((id, ev["data"].to_string()));
                }
                count.fetch_add(size, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // Kill while publishers are running, once a fair number of acks is in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count.load(Ordering::Relaxed) < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing is stuck"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("publisher task");
    }
    let acked = std::mem::take(&mut *acked.lock().await);
    assert!(acked.len() >= 500);

    server.restart();
    let ready = server.readyz().await;
    let head = ready["head"].as_u64().expect("head");
    let epoch = ready["epoch"].as_str().expect("epoch").to_owned();
    let mut stored: HashMap<String, String> = HashMap::new();
    let mut sub = server.subscribe("lastEventId=earliest").await;
    let mut last_seq = 0;
    while last_seq < head {
        let ev = sub.next_event().await;
        let (e, seq) = parse_id(&ev.last_event_id);
        assert_eq!(e, epoch);
        assert!(
            seq > last_seq,
            "replay out of order: {seq} after {last_seq}"
        );
        last_seq = seq;
        let data: Value = serde_json::from_str(&ev.data).expect("json");
        stored.insert(ev.last_event_id, data.to_string());
    }
    let mut missing = 0;
    for (id, data) in &acked {
        match stored.get(id) {
            None => missing += 1,
            Some(d) => assert_eq!(d, data, "{id} changed"),
        }
        assert_eq!(parse_id(id).0, epoch, "the epoch changed across kill -9");
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged events were lost",
        acked.len()
    );
    // Acknowledged order survives too: ids of one publisher increase with its n.
    server.assert_works().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_streams_exits_0_and_keeps_epoch_and_head() {
    let mut server = Server::start(&["--shutdown-grace", "5s"]);
    for i in 0..3 {
        server.publish_one("s/x", "n", json!(i)).await;
    }
    let before = server.readyz().await;
    let mut sub = server.subscribe("topic=s/*").await;
    sub.expect_retry().await;
    let mut sub2 = server.subscribe("lastEventId=earliest").await;
    let old = sub2.events(3).await;

    server.sigterm();
    let ev = sub.next_event().await;
    assert_eq!(ev.event, "reconnect-required");
    let v: Value = serde_json::from_str(&ev.data).expect("json");
    assert_eq!(v["reason"], "shutdown");
    let rest = sub.read_to_end().await;
    assert!(rest.is_empty(), "events after reconnect-required: {rest:?}");
    let ev2 = sub2.next_event().await;
    assert_eq!(ev2.event, "reconnect-required");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());

    server.restart();
    let after = server.readyz().await;
    assert_eq!(after["epoch"], before["epoch"]);
    assert_eq!(after["head"], before["head"]);
    let mut sub3 = server
        .subscribe(&format!("lastEventId={}", old[0].last_event_id))
        .await;
    let got: Vec<String> = sub3.ids(2).await;
    assert_eq!(
        got,
        vec![old[1].last_event_id.clone(), old[2].last_event_id.clone()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_mode_restart_starts_a_new_epoch() {
    let mut server = Server::start(&["--durability", "memory"]);
    let id = server.publish_one("m/x", "n", json!(1)).await;
    let (epoch, _) = parse_id(&id);
    server.restart();
    let ready = server.readyz().await;
    assert_ne!(ready["epoch"], epoch.as_str(), "memory mode kept its epoch");
    assert_eq!(ready["head"], 0);
    let mut sub = server.subscribe_with("", &[("Last-Event-ID", &id)]).await;
    let ev = sub.next_event().await;
    assert_eq!(ev.event, "reset");
    let v: Value = serde_json::from_str(&ev.data).expect("json");
    assert_eq!(v["reason"], "epoch_mismatch");
    let new_id = server.publish_one("m/x", "n", json!(2)).await;
    assert_eq!(sub.next_event().await.last_event_id, new_id);
    assert_ne!(parse_id(&new_id).0, epoch);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_by_count_is_visible_via_earliest() {
    for mode in ["durable", "memory"] {
        let mut server = Server::start(&["--durability", mode, "--retention-max-events", "5"]);
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(server.publish_one("ret/x", "n", json!(i)).await);
        }
        let mut sub = server.subscribe("lastEventId=earliest").await;
        let got: Vec<String> = sub.ids(5).await;
        assert_eq!(got, ids[7..].to_vec(), "{mode}");
        sub.expect_no_event(Duration::from_millis(200)).await;
        if mode == "durable" {
            server.restart();
            let mut sub = server.subscribe("lastEventId=earliest").await;
            let got: Vec<String> = sub.ids(5).await;
            assert_eq!(got, ids[7..].to_vec(), "after restart");
            sub.expect_no_event(Duration::from_millis(200)).await;
        }
    }
}

/// A publisher whose request was cut off by a crash retries with the same Idempotency-Key
/// after the restart: it gets the original ids and nothing is published twice.
#[tokio::test]
async fn an_idempotency_key_survives_kill_9() {
    let mut server = Server::start(&["--durability", "durable"]);
    let batch = json!([
        {"topic": "orders/1", "type": "created", "data": {"n": 1}},
        {"topic": "orders/1", "type": "paid", "data": {"n": 2}}
    ]);
    let key = [("idempotency-key", "order-1-attempt")];
    let (status, first) = server.publish_raw(&batch, &key).await;
    assert_eq!(status, 200, "{first}");
    server.publish_one("orders/2", "created", json!({})).await;
    let head = server.readyz().await["head"].clone();
    server.restart(); // kill -9, then start on the same data dir
    assert_eq!(server.readyz().await["head"], head);
    let (status, again) = server.publish_raw(&batch, &key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the retry gets the original ids");
    assert_eq!(
        server.readyz().await["head"],
        head,
        "nothing was published twice"
    );
    let other = json!({"topic": "orders/1", "type": "created", "data": {"n": 9}});
    let (status, body) = server.publish_raw(&other, &key).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "idempotency_conflict");
}

/// Frames in a store log (`<data dir>/events.redb.log`): a 12-byte header, then frames of
/// `len u32 | crc u32 | seq u64 | len bytes` with seqs following each other (the zeros the
/// log is created with end them).
fn log_frames(log: &[u8]) -> usize {
    let mut pos = 12;
    let mut frames = 0;
    let mut last = 0;
    while pos + 16 <= log.len() {
        let len = u32::from_le_bytes(log[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(log[pos + 8..pos + 16].try_into().expect("8 bytes"));
        if seq != last + 1 {
            break;
        }
        last = seq;
        pos += 16 + len;
        frames += 1;
    }
    frames
}

/// Publishes acknowledged from the store's log, before the background index puts them into
/// the store file, survive `kill -9` exactly once each, and the next publish follows them.
#[tokio::test]
async fn a_log_tail_not_yet_indexed_survives_kill_9_once() {
    const EVENTS: usize = 30;
    let mut server = Server::start(&["--durability", "durable"]);
    let mut acked = Vec::new();
    for n in 0..EVENTS {
        acked.push(server.publish_one("tail/1", "t", json!({"n": n})).await);
    }
    server.kill9();
    let log = std::fs::read(server.dir.path().join("data/events.redb.log")).expect("the store log");
    assert_eq!(
        log_frames(&log),
        EVENTS,
        "every acknowledged event was still in the log only when the process died"
    );

    server.restart();
    let ready = server.readyz().await;
    assert_eq!(ready["head"].as_u64(), Some(EVENTS as u64));
    let mut sub = server.subscribe("lastEventId=earliest").await;
    let got = sub.events(EVENTS).await;
    let ids: Vec<String> = got.iter().map(|e| e.last_event_id.clone()).collect();
    assert_eq!(ids, acked, "every acknowledged event, once, in order");
    for (n, e) in got.iter().enumerate() {
        let data: Value = serde_json::from_str(&e.data).expect("json");
        assert_eq!(data["n"], n);
    }
    let next = server
        .publish_one("tail/1", "t", json!({"n": EVENTS}))
        .await;
    assert_eq!(parse_id(&next).1, EVENTS as u64 + 1);
    // Live after the replay, with nothing repeated in between.
    assert_eq!(sub.next_event().await.last_event_id, next);
}
