//! Coalescing and conflation through the hub: `latest` leading and trailing edges on the
//! injected clock, terminals, the key ceiling, idempotent retries of held events, `merge`
//! batches, a lagging subscriber's conflation, and a property test of `latest` against a model
//! (final value per key, every terminal, order per key, resume from any delivered id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::value::RawValue;
use tidings_proto::{Cursor, Epoch, EventId, EventType, Pattern, Selector, Topic};

use super::*;
use crate::EventRecord;
use crate::clock::ManualClock;
use crate::coalesce::{CoalesceRule, Coalescing, MergeFormat, Policy};
use crate::idempotency::{IdempotencyKey, IdempotencyScope};
use crate::request::NewEvent;
use crate::store::{MemoryStore, Retention};
use crate::subscription::Step;

fn types(names: &[&str]) -> Vec<EventType> {
    names.iter().map(|t| EventType::new(t).unwrap()).collect()
}

fn latest(window_ms: u64, max_keys: usize) -> CoalesceRule {
    CoalesceRule {
        types: types(&["progress"]),
        topics: vec![Pattern::parse("downloads*").unwrap()],
        policy: Policy::Latest,
        window_ms,
        key: Some("/id".into()),
        terminal: types(&["complete", "error"]),
        max_keys,
    }
}

fn hub_with(rules: Vec<CoalesceRule>, limits: Limits) -> (Hub, Arc<ManualClock>) {
    let clock = ManualClock::new(1_000);
    let store = MemoryStore::new(
        Epoch(7),
        Retention {
            max_events: None,
            max_bytes: None,
            max_age: None,
        },
    );
    let hub = Hub::with_coalescing(
        Arc::new(store),
        limits,
        clock.clone(),
        Coalescing::new(rules).unwrap(),
    );
    (hub, clock)
}

fn ev(topic: &str, ty: &str, data: &str) -> NewEvent {
    NewEvent {
        topic: Topic::new(topic).unwrap(),
        event_type: EventType::new(ty).unwrap(),
        key: None,
        data: RawValue::from_string(data.to_owned()).unwrap(),
    }
}

fn progress(id: &str, n: u64) -> NewEvent {
    ev(
        "downloads",
        "progress",
        &format!(r#"{{"id":"{id}","n":{n}}}"#),
    )
}

fn batch(events: Vec<NewEvent>) -> PublishBatch {
    PublishBatch {
        events,
        origin: None,
        idempotency_key: None,
    }
}

fn all(cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::All],
            types: vec![],
        },
        cursor,
        client_id: None,
    }
}

/// Every event ready now, as (seq, type, data).
async fn ready(sub: &mut Subscription) -> (Vec<(u64, String, String)>, Vec<Step>) {
    let mut got = Vec::new();
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::ZERO, sub.next(&mut out)).await {
            Err(_) => return (got, steps),
            Ok(Step::Events) => got.extend(out.iter().map(|e| {
                (
                    e.seq(),
                    e.event.event_type.as_str().to_owned(),
                    e.event.data.get().to_owned(),
                )
            })),
            Ok(step @ Step::Closed(_)) => {
                steps.push(step);
                return (got, steps);
            }
            Ok(step) => steps.push(step),
        }
    }
}

fn datas(got: &[(u64, String, String)]) -> Vec<&str> {
    got.iter().map(|g| g.2.as_str()).collect()
}

#[tokio::test]
async fn latest_sends_the_first_at_once_and_the_newest_when_the_window_closes() {
    let (hub, clock) = hub_with(vec![latest(250, 100)], Limits::default());
    let mut sub = hub.subscribe(all(None)).unwrap();
    let answer = hub
        .publish_each(batch(vec![progress("a", 1)]))
        .await
        .unwrap();
    assert!(answer[0].is_some(), "the leading edge is stored at once");
    for n in 2..=5 {
        clock.advance(10);
        let answer = hub
            .publish_each(batch(vec![progress("a", n)]))
            .await
            .unwrap();
        assert_eq!(answer, vec![None], "held by the window");
    }
    assert_eq!(datas(&ready(&mut sub).await.0), [r#"{"id":"a","n":1}"#]);
    assert_eq!(hub.next_coalesce_deadline(), Some(1_250));
    assert_eq!(hub.flush_coalesced().await.unwrap(), 0, "not due yet");
    clock.set(1_250);
    assert_eq!(hub.flush_coalesced().await.unwrap(), 1);
    let (got, _) = ready(&mut sub).await;
    assert_eq!(datas(&got), [r#"{"id":"a","n":5}"#]);
    // The event carries the key from the pointer, in history too.
    let stats = hub.stats();
    assert_eq!(stats.coalesced, 3, "n=2,3,4 were superseded");
    assert_eq!(
        stats.coalescing_keys, 1,
        "the key stays in a window after a trailing edge"
    );
    // A quiet window ends the key's window; the next event is a leading edge again.
    clock.set(1_500);
    assert_eq!(hub.flush_coalesced().await.unwrap(), 0);
    assert_eq!(hub.stats().coalescing_keys, 0);
    let answer = hub
        .publish_each(batch(vec![progress("a", 6)]))
        .await
        .unwrap();
    assert!(answer[0].is_some());
}

#[tokio::test]
async fn a_terminal_flushes_its_key_first_and_is_never_coalesced() {
    let (hub, clock) = hub_with(vec![latest(250, 100)], Limits::default());
    let mut sub = hub.subscribe(all(None)).unwrap();
    hub.publish(batch(vec![progress("a", 1)])).await.unwrap();
    clock.advance(5);
    hub.publish(batch(vec![progress("a", 2), progress("b", 1)]))
        .await
        .unwrap();
    let answer = hub
        .publish_each(batch(vec![
            progress("a", 3),
            ev("downloads", "complete", r#"{"id":"a"}"#),
            ev("downloads", "complete", r#"{"id":"a"}"#),
        ]))
        .await
        .unwrap();
    // a=3 went out just before its terminal, in this publish.
    assert!(answer.iter().all(Option::is_some), "{answer:?}");
    let (got, _) = ready(&mut sub).await;
    assert_eq!(
        datas(&got),
        [
            r#"{"id":"a","n":1}"#,
            r#"{"id":"b","n":1}"#,
            r#"{"id":"a","n":3}"#,
            r#"{"id":"a"}"#,
            r#"{"id":"a"}"#,
        ]
    );
    // History holds exactly that.
    let mut replay = hub
        .subscribe(all(Some(Cursor::After(EventId::new(Epoch(7), 0)))))
        .unwrap();
    assert_eq!(ready(&mut replay).await.0, got);
}

#[tokio::test]
async fn at_the_key_ceiling_a_new_key_goes_out_uncoalesced() {
    let (hub, _clock) = hub_with(vec![latest(250, 2)], Limits::default());
    for k in ["a", "b"] {
        hub.publish(batch(vec![progress(k, 1)])).await.unwrap();
    }
    assert_eq!(hub.stats().coalescing_keys, 2);
    for n in 1..=3 {
        let answer = hub
            .publish_each(batch(vec![progress("c", n)]))
            .await
            .unwrap();
        assert!(answer[0].is_some(), "never held, never lost");
    }
    assert_eq!(hub.stats().coalescing_keys, 2);
}

#[tokio::test]
async fn a_retry_of_a_held_publish_gets_the_same_answer() {
    let (hub, clock) = hub_with(vec![latest(250, 100)], Limits::default());
    hub.publish(batch(vec![progress("a", 1)])).await.unwrap();
    let keyed = |events| PublishBatch {
        events,
        origin: None,
        idempotency_key: Some(IdempotencyKey {
            scope: IdempotencyScope::ANONYMOUS,
            key: "k1".into(),
        }),
    };
    let first = hub
        .publish_each(keyed(vec![progress("a", 2), progress("b", 1)]))
        .await
        .unwrap();
    assert_eq!(first[0], None);
    assert!(first[1].is_some());
    let again = hub
        .publish_each(keyed(vec![progress("a", 2), progress("b", 1)]))
        .await
        .unwrap();
    assert_eq!(again, first);
    clock.advance(300);
    hub.flush_coalesced().await.unwrap();
    assert_eq!(hub.stats().head, 3, "a=1, b=1, then a=2 once");
}

#[tokio::test]
async fn shutdown_stores_what_windows_hold() {
    let (hub, _clock) = hub_with(vec![latest(250, 100)], Limits::default());
    hub.publish(batch(vec![progress("a", 1)])).await.unwrap();
    hub.publish(batch(vec![progress("a", 2)])).await.unwrap();
    assert_eq!(hub.stats().head, 1);
    hub.shutdown();
    hub.flush().await.unwrap();
    assert_eq!(hub.stats().head, 2);
    assert_eq!(hub.next_coalesce_deadline(), None);
}

#[tokio::test]
async fn merge_sends_a_burst_of_file_operations_as_one_batch() {
    let rule = CoalesceRule {
        types: types(&["file"]),
        topics: vec![],
        policy: Policy::Merge(MergeFormat::default()),
        window_ms: 500,
        key: Some("/from".into()),
        terminal: vec![],
        max_keys: 100,
    };
    let (hub, clock) = hub_with(vec![rule], Limits::default());
    let mut sub = hub.subscribe(all(None)).unwrap();
    let op = |t: &str, from: &str, to: &str| {
        ev(
            "files/u1",
            "file",
            &format!(r#"{{"type":"{t}","from":"{from}","to":"{to}"}}"#),
        )
    };
    let answer = hub
        .publish_each(batch(vec![
            op("create", "/tmp.txt", ""),
            op("delete", "/tmp.txt", ""),
            op("modify", "/a.txt", ""),
            op("modify", "/a.txt", ""),
            op("create", "/b.txt", ""),
            op("modify", "/b.txt", ""),
            op("rename", "/c.txt", "/d.txt"),
            op("rename", "/d.txt", "/e.txt"),
            op("modify", "/f.txt", ""),
            op("delete", "/f.txt", ""),
            op("create", "/g.txt", ""),
            op("rename", "/g.txt", "/h.txt"),
        ]))
        .await
        .unwrap();
    assert!(answer.iter().all(Option::is_none));
    assert!(ready(&mut sub).await.0.is_empty(), "held for the window");
    clock.advance(500);
    assert_eq!(hub.flush_coalesced().await.unwrap(), 1);
    let (got, _) = ready(&mut sub).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "event");
    assert_eq!(
        got[0].2,
        concat!(
            r#"[{"type":"modify","from":"/a.txt","to":""},"#,
            r#"{"type":"create","from":"/b.txt","to":""},"#,
            r#"{"type":"rename","from":"/c.txt","to":"/e.txt"},"#,
            r#"{"type":"delete","from":"/f.txt","to":""},"#,
            r#"{"type":"create","from":"/h.txt","to":""}]"#
        )
    );
}

#[tokio::test]
async fn merge_at_its_path_ceiling_lets_batches_out_early_and_loses_nothing() {
    let rule = CoalesceRule {
        types: types(&["file"]),
        topics: vec![],
        policy: Policy::Merge(MergeFormat::default()),
        window_ms: 500,
        key: None,
        terminal: vec![],
        max_keys: 2,
    };
    let (hub, _clock) = hub_with(vec![rule], Limits::default());
    let mut sub = hub.subscribe(all(None)).unwrap();
    let op = |topic: &str, path: &str| {
        ev(
            topic,
            "file",
            &format!(r#"{{"type":"modify","from":"{path}","to":""}}"#),
        )
    };
    hub.publish(batch(vec![op("files/u1", "/a"), op("files/u1", "/b")]))
        .await
        .unwrap();
    assert_eq!(hub.stats().coalescing_keys, 2);
    // u2's operation finds every path held by u1's window: it goes out at once, alone.
    hub.publish(batch(vec![op("files/u2", "/x")]))
        .await
        .unwrap();
    let (got, _) = ready(&mut sub).await;
    assert_eq!(datas(&got), [r#"[{"type":"modify","from":"/x","to":""}]"#]);
    // u1 itself at the ceiling: its batch goes out, the op starts the next.
    hub.publish(batch(vec![op("files/u1", "/c")]))
        .await
        .unwrap();
    let (got, _) = ready(&mut sub).await;
    assert_eq!(
        datas(&got),
        [r#"[{"type":"modify","from":"/a","to":""},{"type":"modify","from":"/b","to":""}]"#]
    );
    assert_eq!(hub.stats().coalescing_keys, 1);
    hub.shutdown();
    hub.flush().await.unwrap();
    assert_eq!(hub.stats().coalescing_keys, 0);
}

fn keyed(topic: &str, key: &str, ty: &str, n: u64, conflatable: bool, seq: u64) -> SharedEvent {
    EventRecord::with_conflation(
        tidings_proto::Event {
            id: EventId::new(Epoch(7), seq),
            topic: Topic::new(topic).unwrap(),
            event_type: EventType::new(ty).unwrap(),
            key: Some(tidings_proto::Key::new(key).unwrap()),
            origin: None,
            time: 0,
            data: RawValue::from_string(n.to_string()).unwrap(),
        },
        conflatable,
    )
}

#[test]
fn a_lagging_queue_keeps_the_newest_per_key_and_every_terminal() {
    let q = SubscriberQueue::new(1, Selector::all(), None, 100, usize::MAX, 10);
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    let mut conflated = 0;
    for n in 0..30u64 {
        let key = ["a", "b", "c"][(n % 3) as usize];
        let e = if n == 13 {
            keyed("t", "b", "complete", n, false, next())
        } else {
            keyed("t", key, "progress", n, true, next())
        };
        if let Offered::Conflated(c) = q.offer(&e) {
            conflated += c;
        }
    }
    let mut out = Vec::new();
    q.drain(&mut out, usize::MAX);
    let got: Vec<(u64, &str, &str)> = out
        .iter()
        .map(|e| {
            (
                e.seq(),
                e.event.key.as_ref().unwrap().as_str(),
                e.event.data.get(),
            )
        })
        .collect();
    assert!(conflated > 0);
    assert_eq!(
        got.len() + conflated,
        30,
        "every event delivered or counted"
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "ids still rise: {got:?}"
    );
    // Final values are exact and the terminal is there, after b's last progress before it.
    for (key, last) in [("a", "27"), ("b", "28"), ("c", "29")] {
        assert_eq!(got.iter().rfind(|g| g.1 == key).unwrap().2, last);
    }
    assert!(got.iter().any(|g| g.2 == "13"));
    let before_terminal = got.iter().position(|g| g.2 == "13").unwrap();
    assert!(
        got[..before_terminal].iter().any(|g| g.2 == "10"),
        "b's newest before its terminal stays before it: {got:?}"
    );
}

#[tokio::test]
async fn a_lagging_subscriber_is_conflated_then_closed_only_at_the_hard_bound() {
    let rule = CoalesceRule {
        policy: Policy::None,
        ..latest(0, 100)
    };
    let limits = Limits {
        subscriber_queue_events: 50,
        subscriber_queue_soft_events: 20,
        ..Limits::default()
    };
    let (hub, _clock) = hub_with(vec![rule], limits);
    let mut slow = hub.subscribe(all(None)).unwrap();
    let mut last = HashMap::new();
    for n in 0..1_000u64 {
        let id = format!("k{}", n % 10);
        last.insert(id.clone(), n);
        hub.publish(batch(vec![progress(&id, n)])).await.unwrap();
    }
    let (got, steps) = ready(&mut slow).await;
    assert!(steps.is_empty(), "not closed: {steps:?}");
    assert!(got.len() < 60, "conflated to about the keys: {}", got.len());
    for (id, n) in &last {
        let want = format!(r#"{{"id":"{id}","n":{n}}}"#);
        assert!(got.iter().any(|g| g.2 == want), "{id} ends at {n}");
    }
    let stats = hub.stats();
    assert_eq!(stats.conflated as usize + got.len(), 1_000);
    assert_eq!(stats.dropped, 0);
    // Its last id resumes exactly: what history has after it, nothing else.
    let last_seq = got.last().unwrap().0;
    let mut again = hub
        .subscribe(all(Some(Cursor::After(EventId::new(Epoch(7), last_seq)))))
        .unwrap();
    assert!(ready(&mut again).await.0.is_empty());
    // Unkeyed events are never conflated: past the hard bound it is closed as before.
    for n in 0..100 {
        hub.publish(batch(vec![ev("other", "x", &n.to_string())]))
            .await
            .unwrap();
    }
    let (_, steps) = ready(&mut slow).await;
    assert_eq!(steps, vec![Step::Closed(CloseReason::SlowConsumer)]);
    assert!(hub.stats().dropped > 0);
}

#[derive(Debug, Clone)]
enum Op {
    Publish { key: usize, terminal: bool },
    Advance { ms: u64 },
    Flush,
    Read { client: usize },
    Reconnect { client: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize, prop::bool::weighted(0.1)).prop_map(|(key, terminal)| Op::Publish { key, terminal }),
        2 => (0..400u64).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Flush),
        2 => (0..2usize).prop_map(|client| Op::Read { client }),
        1 => Just(Op::Reconnect { client: 1 }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Model of `latest` (window 250 ms, terminals `complete`): after the windows are flushed,
    /// each key's last event seen is the last one published; every terminal arrives; events
    /// of a key arrive in publish order, the last one before each terminal before it; and a
    /// client that reconnects with its last id at random sees exactly what a client that
    /// stayed connected sees.
    #[test]
    fn latest_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async move {
            let (hub, clock) = hub_with(vec![CoalesceRule { terminal: types(&["complete"]), ..latest(250, 100) }], Limits::default());
            // Client 0 stays connected; client 1 may reconnect with its last id.
            let mut subs = [Some(hub.subscribe(all(None)).unwrap()), Some(hub.subscribe(all(None)).unwrap())];
            let start = subs[1].as_ref().unwrap().handoff().seq;
            let mut seen: [Vec<(u64, String, String)>; 2] = [vec![], vec![]];
            let mut n = 0u64;
            let mut published: Vec<(usize, bool, u64)> = Vec::new();
            for op in ops.iter().cloned().chain([Op::Advance { ms: 1_000 }, Op::Flush, Op::Advance { ms: 1_000 }, Op::Flush, Op::Read { client: 0 }, Op::Read { client: 1 }]) {
                match op {
                    Op::Publish { key, terminal } => {
                        n += 1;
                        let ty = if terminal { "complete" } else { "progress" };
                        hub.publish(batch(vec![ev("downloads", ty, &format!(r#"{{"id":"k{key}","n":{n}}}"#))])).await.unwrap();
                        published.push((key, terminal, n));
                    }
                    Op::Advance { ms } => clock.advance(ms),
                    Op::Flush => { hub.flush_coalesced().await.unwrap(); }
                    Op::Read { client } => {
                        if subs[client].is_none() {
                            let last = seen[client].last().map_or(start, |g| g.0);
                            let cursor = Some(Cursor::After(EventId::new(Epoch(7), last)));
                            subs[client] = Some(hub.subscribe(all(cursor)).unwrap());
                        }
                        let (got, steps) = ready(subs[client].as_mut().unwrap()).await;
                        assert!(steps.is_empty(), "{steps:?}");
                        seen[client].extend(got);
                    }
                    Op::Reconnect { client } => {
                        if let Some(sub) = subs[client].as_mut() {
                            let (got, _) = ready(sub).await;
                            seen[client].extend(got);
                        }
                        subs[client] = None;
                    }
                }
            }
            assert_eq!(seen[0], seen[1], "resume from a delivered id = staying connected");
            let parsed: Vec<(String, bool, u64)> = seen[0].iter().map(|(_, ty, data)| {
                let v: serde_json::Value = serde_json::from_str(data).unwrap();
                (v["id"].as_str().unwrap().to_owned(), ty == "complete", v["n"].as_u64().unwrap())
            }).collect();
            for key in 0..4 {
                let id = format!("k{key}");
                let sent: Vec<&(usize, bool, u64)> = published.iter().filter(|p| p.0 == key).collect();
                let got: Vec<&(String, bool, u64)> = parsed.iter().filter(|p| p.0 == id).collect();
                assert!(got.windows(2).all(|w| w[0].2 < w[1].2), "order per key: {got:?}");
                assert_eq!(sent.last().map(|p| p.2), got.last().map(|g| g.2), "final value of {id}");
                let terminals_sent: Vec<u64> = sent.iter().filter(|p| p.1).map(|p| p.2).collect();
                let terminals_got: Vec<u64> = got.iter().filter(|g| g.1).map(|g| g.2).collect();
                assert_eq!(terminals_sent, terminals_got, "terminals of {id}");
                // Every event sent before a terminal and after the previous one: the last of
                // them arrives before the terminal.
                let mut run_last = None;
                for p in &sent {
                    if p.1 {
                        if let Some(last) = run_last.take() {
                            assert!(got.iter().any(|g| g.2 == last), "{id}: {last} before its terminal");
                        }
                    } else {
                        run_last = Some(p.2);
                    }
                }
            }
        });
    }
}
