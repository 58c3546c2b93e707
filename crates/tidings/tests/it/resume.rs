//! Resume: `Last-Event-ID` header and `lastEventId` query replay exactly what was missed and
//! then continue live; `earliest`; gapless reconnects under load; `reset` for expired,
//! foreign-epoch, ahead and garbage cursors; the replay tail and the store stitched together
//! across a restart.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Rng, Server, SseClient, parse_id};

#[tokio::test(flavor = "multi_thread")]
async fn header_and_query_cursors_replay_the_missed_matching_events_then_live() {
    let server = Server::start(&[]);
    let mut ids = Vec::new();
    for i in 0..10 {
        let topic = if i % 2 == 0 { "r/even" } else { "r/odd" };
        ids.push(server.publish_one(topic, "n", json!(i)).await);
    }
    // Missed after ids[3] on r/even: 4, 6, 8.
    let want: Vec<String> = vec![ids[4].clone(), ids[6].clone(), ids[8].clone()];
    let by_header = server
        .subscribe_with("topic=r/even", &[("Last-Event-ID", &ids[3])])
        .await;
    let by_query = server
        .subscribe(&format!("topic=r/even&lastEventId={}", ids[3]))
        .await;
    // The header wins over the query.
    let both = server
        .subscribe_with(
            &format!("topic=r/even&lastEventId={}", ids[0]),
            &[("Last-Event-ID", &ids[3])],
        )
        .await;
    let mut subs = vec![("header", by_header), ("query", by_query), ("both", both)];
    for (name, sub) in &mut subs {
        let got: Vec<String> = sub.ids(3).await;
        assert_eq!(got, want, "{name}");
        sub.expect_no_event(Duration::from_millis(200)).await;
    }
    // Then live, with no duplicate at the handoff.
    server.publish_one("r/odd", "n", json!(10)).await;
    let live = server.publish_one("r/even", "n", json!(11)).await;
    for (name, sub) in &mut subs {
        let ev = sub.next_event().await;
        assert_eq!(ev.last_event_id, live, "{name}");
        assert_eq!(ev.data, "11");
    }
    // The newest id: nothing to replay.
    let mut at_head = server.subscribe(&format!("lastEventId={live}")).await;
    at_head.expect_no_event(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn earliest_replays_all_history_then_live() {
    let server = Server::start(&[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(server.publish_one("e/x", "n", json!(i)).await);
    }
    for query in ["lastEventId=earliest", "topic=e/*&lastEventId=earliest"] {
        let mut sub = server.subscribe(query).await;
        let got: Vec<String> = sub.ids(5).await;
        assert_eq!(got, ids, "{query}");
    }
    let mut sub = server
        .subscribe_with("topic=e/x", &[("Last-Event-ID", "earliest")])
        .await;
    let got: Vec<String> = sub.ids(5).await;
    assert_eq!(got, ids);
    let live = server.publish_one("e/x", "n", json!(5)).await;
    assert_eq!(sub.next_event().await.last_event_id, live);
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_subscriber_sees_every_event_once_in_order_under_load() {
    let server = Arc::new(Server::start(&["--durability", "memory"]));
    const TOTAL: usize = 2000;
    let topics = ["g/a", "g/b", "g/c"];
    // Matching: g/a and g/b, and of those only types "x" — every third event is type "y".
    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut published: Vec<(String, String, String)> = Vec::with_capacity(TOTAL);
            let mut i = 0;
            while i < TOTAL {
                let n = (i % 4) + 1; // batches of 1..=4
                let batch: Vec<Value> = (i..(i + n).min(TOTAL))
                    .map(|j| {
                        let ty = if j % 3 == 0 { "y" } else { "x" };
                        json!({"topic": topics[j % 3], "type": ty, "data": {"i": j}})
                    })
                    .collect();
                let ids = server.publish(&Value::Array(batch.clone())).await;
                for (id, ev) in ids.into_iter().zip(batch) {
                    published.push((
                        id,
                        ev["topic"].as_str().expect("topic").to_owned(),
                        ev["type"].as_str().expect("type").to_owned(),
                    ));
                }
                i += n;
            }
            published
        })
    };
    let mut rng = Rng::from_time();
    eprintln!("rng seed {}", rng.0);
    let query = "topic=g/a&topic=g/b&type=x";
    let mut seen: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    let mut published: Option<Vec<(String, String, String)>> = None;
    let mut publisher = Some(publisher);
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up: saw {} events",
            seen.len()
        );
        if let Some(p) = publisher.as_ref()
            && p.is_finished()
        {
            published = Some(publisher.take().expect("task").await.expect("publisher"));
        }
        let want_total = published.as_ref().map(|p| {
            p.iter()
                .filter(|(_, t, ty)| (t == "g/a" || t == "g/b") && ty == "x")
                .count()
        });
        if want_total == Some(seen.len()) {
            break;
        }
        let headers: Vec<(&str, &str)> = match &last {
            Some(id) => vec![("Last-Event-ID", id.as_str())],
            None => vec![("Last-Event-ID", "earliest")],
        };
        let mut sub: SseClient = server.subscribe_with(query, &headers).await;
        reconnects += 1;
        let take = 1 + rng.below(40);
        for _ in 0..take {
            if want_total == Some(seen.len()) {
                break;
            }
            // Once everything is published, the rest must arrive; before that, wait a bit.
            let ev = match tokio::time::timeout(Duration::from_secs(5), sub.next_event()).await {
                Ok(ev) => ev,
                Err(_) => break,
            };
            assert_ne!(ev.event, "reset", "unexpected reset: {}", ev.data);
            seen.push(ev.last_event_id.clone());
            last = Some(ev.last_event_id);
        }
        drop(sub);
    }
    let published = published.expect("published");
    let want: Vec<String> = published
        .iter()
        .filter(|(_, t, ty)| (t == "g/a" || t == "g/b") && ty == "x")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert!(reconnects > 10, "only {reconnects} reconnects");
    assert_eq!(seen.len(), want.len(), "count differs");
    assert_eq!(seen, want, "gap, duplicate or reorder");
}

async fn expect_reset(sub: &mut SseClient, reason: &str, cursor: &str) -> String {
    let ev = sub.next_event().await;
    assert_eq!(ev.event, "reset", "expected a reset, got {ev:?}");
    let v: Value = serde_json::from_str(&ev.data).expect("reset data");
    assert_eq!(v["reason"], reason, "{v}");
    assert_eq!(v["cursor"], cursor, "{v}");
    assert_eq!(
        ev.last_event_id, cursor,
        "the reset's id is the cursor it continues after"
    );
    ev.last_event_id
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cursors_get_reset_then_live() {
    let server = Server::start(&["--retention-max-events", "5"]);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(server.publish_one("x/y", "n", json!(i)).await);
    }
    let head = ids[19].clone();
    let (epoch, head_seq) = parse_id(&head);
    let foreign_epoch = if epoch == "00000001" {
        "00000002"
    } else {
        "00000001"
    };
    let cases = [
        (ids[0].clone(), "cursor_expired"),
        (format!("{foreign_epoch}-3"), "epoch_mismatch"),
        (format!("{epoch}-{}", head_seq + 100), "cursor_ahead"),
        ("garbage".to_owned(), "invalid_cursor"),
        ("0000000g-1".to_owned(), "invalid_cursor"),
    ];
    let mut subs = Vec::new();
    for (cursor, reason) in &cases {
        let mut sub = server
            .subscribe_with("topic=x/y", &[("Last-Event-ID", cursor)])
            .await;
        sub.expect_retry().await;
        expect_reset(&mut sub, reason, &head).await;
        subs.push(sub);
    }
    // The query form gives the same.
    let mut q = server.subscribe("topic=x/y&lastEventId=garbage").await;
    expect_reset(&mut q, "invalid_cursor", &head).await;
    subs.push(q);
    // Then live: the next event, nothing replayed.
    let live = server.publish_one("x/y", "n", json!(20)).await;
    for sub in &mut subs {
        let ev = sub.next_event().await;
        assert_eq!(ev.last_event_id, live);
    }
    // A cursor still inside the retained history resumes without reset.
    let mut ok = server
        .subscribe_with("topic=x/y", &[("Last-Event-ID", &ids[18])])
        .await;
    let got: Vec<String> = ok.ids(2).await;
    assert_eq!(got, vec![ids[19].clone(), live]);
}

/// The replay tail (`--replay-cache-bytes`) and the store stitch together exactly: after a
/// restart the tail starts at the head, and a tail small enough to evict leaves the older part
/// to the store, so a resume may read the store, then the tail. From every kind of place, with
/// the tail on and off, a resume gets every matching event after its cursor once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_stitches_the_store_and_the_replay_tail_exactly() {
    for cache in ["2KiB", "0"] {
        let mut server = Server::start(&["--durability", "durable", "--replay-cache-bytes", cache]);
        let topic = |i: usize| if i.is_multiple_of(2) { "st/a" } else { "st/b" };
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(server.publish_one(topic(i), "n", json!(i)).await);
        }
        server.restart();
        // About 75 bytes each: a 2 KiB tail keeps the newest ~27 of these 40.
        for i in 10..50 {
            ids.push(server.publish_one(topic(i), "n", json!(i)).await);
        }
        // Before the restart, just below the new tail's start, evicted from it, inside it.
        for from in [0usize, 8, 9, 15, 30, 47] {
            let mut sub = server
                .subscribe_with("topic=st/a", &[("Last-Event-ID", &ids[from])])
                .await;
            let want: Vec<String> = (from + 1..50)
                .filter(|i| i.is_multiple_of(2))
                .map(|i| ids[i].clone())
                .collect();
            assert_eq!(
                sub.ids(want.len()).await,
                want,
                "tail {cache}, after #{from}"
            );
            sub.expect_no_event(Duration::from_millis(50)).await;
        }
    }
}
