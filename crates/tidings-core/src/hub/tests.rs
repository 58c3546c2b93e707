//! Engine tests: the handoff, resets, slow consumers, idempotency, and a property test of
//! publish / subscribe / disconnect / resume against a simple model.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tidings_proto::{Cursor, Epoch, EventId, EventType, Pattern, Selector, Topic};

use super::*;
use crate::request::NewEvent;
use crate::store::{MemoryStore, Retention};
use crate::subscription::Step;

fn hub_with(retention: Retention, limits: Limits) -> Hub {
    Hub::new(Arc::new(MemoryStore::new(Epoch(7), retention)), limits)
}

fn hub() -> Hub {
    hub_with(
        Retention {
            max_events: None,
            max_bytes: None,
            max_age: None,
        },
        Limits::default(),
    )
}

fn ev(topic: &str, ty: &str, data: &str) -> NewEvent {
    NewEvent {
        topic: Topic::new(topic).unwrap(),
        event_type: EventType::new(ty).unwrap(),
        key: None,
        data: serde_json::value::RawValue::from_string(data.to_owned()).unwrap(),
    }
}

fn batch(events: Vec<NewEvent>) -> PublishBatch {
    PublishBatch {
        events,
        origin: None,
        idempotency_key: None,
    }
}

fn sel(patterns: &[&str]) -> Selector {
    Selector {
        patterns: patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect(),
        types: vec![],
    }
}

fn req(patterns: &[&str], cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: sel(patterns),
        cursor,
        client_id: None,
    }
}

/// Everything ready now, without waiting.
async fn ready(sub: &mut Subscription) -> (Vec<u64>, Vec<Step>) {
    let mut seqs = Vec::new();
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::ZERO, sub.next(&mut out)).await {
            Err(_) => return (seqs, steps),
            Ok(Step::Events) => seqs.extend(out.iter().map(|e| e.seq())),
            Ok(step @ Step::Closed(_)) => {
                steps.push(step);
                return (seqs, steps);
            }
            Ok(step) => steps.push(step),
        }
    }
}

#[tokio::test]
async fn live_delivery_follows_selectors_and_types() {
    let hub = hub();
    let mut all = hub.subscribe(req(&["*"], None)).unwrap();
    let mut dl = hub.subscribe(req(&["downloads/*"], None)).unwrap();
    let mut one = hub
        .subscribe(req(&["downloads/a", "downloads/*"], None))
        .unwrap();
    let mut typed = hub
        .subscribe(SubscribeRequest {
            selector: Selector {
                patterns: vec![Pattern::All],
                types: vec![EventType::new("complete").unwrap()],
            },
            cursor: None,
            client_id: None,
        })
        .unwrap();
    hub.publish(batch(vec![
        ev("downloads/a", "progress", "1"),
        ev("camera/1", "complete", "2"),
    ]))
    .await
    .unwrap();
    assert_eq!(ready(&mut all).await.0, vec![1, 2]);
    assert_eq!(ready(&mut dl).await.0, vec![1]);
    // Overlapping patterns deliver once.
    assert_eq!(ready(&mut one).await.0, vec![1]);
    assert_eq!(ready(&mut typed).await.0, vec![2]);
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed_then_goes_live() {
    let hub = hub();
    let ids = hub
        .publish(batch(
            (0..5).map(|i| ev("t", "x", &i.to_string())).collect(),
        ))
        .await
        .unwrap();
    let mut sub = hub
        .subscribe(req(&["t"], Some(Cursor::After(ids[1]))))
        .unwrap();
    hub.publish(batch(vec![ev("t", "x", "5")])).await.unwrap();
    assert_eq!(ready(&mut sub).await.0, vec![3, 4, 5, 6]);
    let mut earliest = hub.subscribe(req(&["t"], Some(Cursor::Earliest))).unwrap();
    assert_eq!(ready(&mut earliest).await.0, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn bad_cursors_get_a_reset_never_a_silent_gap() {
    let hub = hub_with(
        Retention {
            max_events: Some(3),
            max_bytes: None,
            max_age: None,
        },
        Limits::default(),
    );
    hub.publish(batch(
        (0..10).map(|i| ev("t", "x", &i.to_string())).collect(),
    ))
    .await
    .unwrap();
    let cases = [
        (
            Cursor::After(EventId { epoch: 7, seq: 2 }),
            ResetReason::CursorExpired,
        ),
        (
            Cursor::After(EventId { epoch: 8, seq: 9 }),
            ResetReason::EpochMismatch,
        ),
        (
            Cursor::After(EventId { epoch: 7, seq: 99 }),
            ResetReason::CursorAhead,
        ),
        (Cursor::Invalid, ResetReason::InvalidCursor),
    ];
    for (cursor, reason) in cases {
        let head = hub.stats().head;
        let mut sub = hub.subscribe(req(&["*"], Some(cursor))).unwrap();
        let (seqs, steps) = ready(&mut sub).await;
        assert_eq!(
            steps,
            vec![Step::Reset {
                reason,
                resume_after: EventId {
                    epoch: 7,
                    seq: head
                }
            }]
        );
        assert!(seqs.is_empty());
        hub.publish(batch(vec![ev("t", "x", "1")])).await.unwrap();
        assert_eq!(
            ready(&mut sub).await.0.len(),
            1,
            "live continues after a reset"
        );
    }
    // The oldest retained cursor still resumes.
    let head = hub.stats().head;
    let mut sub = hub
        .subscribe(req(
            &["*"],
            Some(Cursor::After(EventId {
                epoch: 7,
                seq: head - 2,
            })),
        ))
        .unwrap();
    assert_eq!(ready(&mut sub).await.0, vec![head - 1, head]);
}

#[tokio::test]
async fn a_slow_subscriber_is_closed_without_slowing_anyone() {
    let limits = Limits {
        subscriber_queue_events: 4,
        ..Limits::default()
    };
    let hub = hub_with(Retention::default(), limits);
    let mut slow = hub.subscribe(req(&["*"], None)).unwrap();
    let mut fast = hub.subscribe(req(&["*"], None)).unwrap();
    for i in 0..10 {
        hub.publish(batch(vec![ev("t", "x", &i.to_string())]))
            .await
            .unwrap();
        assert_eq!(ready(&mut fast).await.0, vec![i + 1]);
    }
    let (seqs, steps) = ready(&mut slow).await;
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(steps, vec![Step::Closed(CloseReason::SlowConsumer)]);
    // It resumes from history with its last id and misses nothing.
    drop(slow);
    let mut again = hub
        .subscribe(req(
            &["*"],
            Some(Cursor::After(EventId { epoch: 7, seq: 4 })),
        ))
        .unwrap();
    assert_eq!(ready(&mut again).await.0, (5..=10).collect::<Vec<_>>());
    assert_eq!(hub.stats().subscribers, 2);
}

#[tokio::test]
async fn own_events_are_not_echoed() {
    let hub = hub();
    let me = tidings_proto::Key::new("client-1").unwrap();
    let mut sub = hub
        .subscribe(SubscribeRequest {
            selector: sel(&["*"]),
            cursor: None,
            client_id: Some(me.clone()),
        })
        .unwrap();
    hub.publish(PublishBatch {
        events: vec![ev("t", "x", "1")],
        origin: Some(me),
        idempotency_key: None,
    })
    .await
    .unwrap();
    hub.publish(batch(vec![ev("t", "x", "2")])).await.unwrap();
    assert_eq!(ready(&mut sub).await.0, vec![2]);
}

#[tokio::test]
async fn idempotency_key_returns_the_original_ids() {
    let hub = hub();
    let keyed = |data: &str| PublishBatch {
        events: vec![ev("t", "x", data)],
        origin: None,
        idempotency_key: Some(crate::IdempotencyKey {
            scope: crate::IdempotencyScope::ANONYMOUS,
            key: "k1".into(),
        }),
    };
    let first = hub.publish(keyed("1")).await.unwrap();
    let again = hub.publish(keyed("1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(hub.stats().head, 1);
    assert!(matches!(
        hub.publish(keyed("2")).await,
        Err(PublishError::IdempotencyConflict)
    ));
}

#[tokio::test]
async fn limits_refuse_before_anything_is_stored() {
    let limits = Limits {
        max_batch_events: 2,
        max_data_bytes: 4,
        ..Limits::default()
    };
    let hub = hub_with(Retention::default(), limits);
    let too_many = batch(vec![
        ev("t", "x", "1"),
        ev("t", "x", "2"),
        ev("t", "x", "3"),
    ]);
    assert!(matches!(
        hub.publish(too_many).await,
        Err(PublishError::BatchTooLarge { count: 3, max: 2 })
    ));
    let big = batch(vec![ev("t", "x", "1"), ev("t", "x", "\"long\"")]);
    match hub.publish(big).await {
        Err(PublishError::EventTooLarge { field, .. }) => assert_eq!(field, "events[1].data"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        hub.publish(batch(vec![])).await,
        Err(PublishError::Empty)
    ));
    assert_eq!(hub.stats().head, 0);
}

#[tokio::test]
async fn shutdown_closes_every_subscription_after_its_queue() {
    let hub = hub();
    let mut sub = hub.subscribe(req(&["*"], None)).unwrap();
    hub.publish(batch(vec![ev("t", "x", "1")])).await.unwrap();
    hub.shutdown();
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(seqs, vec![1]);
    assert_eq!(steps, vec![Step::Closed(CloseReason::Shutdown)]);
    assert!(matches!(
        hub.publish(batch(vec![ev("t", "x", "1")])).await,
        Err(PublishError::ShuttingDown)
    ));
    assert!(hub.subscribe(req(&["*"], None)).is_err());
}

/// Many publishers and resuming subscribers at once, on a multi-threaded runtime: every
/// subscriber sees each matching event once, in order, across all its reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publish_and_resume_have_no_gap_and_no_duplicate() {
    let hub = hub();
    let topics = ["a/1", "a/2", "b/1"];
    let mut publishers = Vec::new();
    for p in 0..4 {
        let hub = hub.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..300 {
                let topic = topics[(p + i) % 3];
                hub.publish(batch(vec![ev(topic, "x", &i.to_string())]))
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for pattern in ["*", "a/*", "b/1"] {
        let hub = hub.clone();
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<u64> = Vec::new();
            let mut cursor = Some(Cursor::After(EventId { epoch: 7, seq: 0 }));
            for round in 0..40 {
                let mut sub = hub.subscribe(req(&[pattern], cursor.clone())).unwrap();
                for _ in 0..(round % 5 + 1) {
                    let mut out = Vec::new();
                    match tokio::time::timeout(Duration::from_millis(5), sub.next(&mut out)).await {
                        Ok(Step::Events) => seen.extend(out.iter().map(|e| e.seq())),
                        Ok(other) => panic!("unexpected {other:?}"),
                        Err(_) => {}
                    }
                }
                if let Some(&last) = seen.last() {
                    cursor = Some(Cursor::After(EventId {
                        epoch: 7,
                        seq: last,
                    }));
                }
            }
            (pattern, seen)
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let head = hub.stats().head;
    let everything: Vec<_> = {
        let mut sub = hub.subscribe(req(&["*"], Some(Cursor::Earliest))).unwrap();
        let mut all = Vec::new();
        while all.len() < head as usize {
            let mut out = Vec::new();
            assert_eq!(sub.next(&mut out).await, Step::Events);
            all.extend(out);
        }
        all
    };
    for r in readers {
        let (pattern, seen) = r.await.unwrap();
        let pattern = Pattern::parse(pattern).unwrap();
        let expected: Vec<u64> = everything
            .iter()
            .filter(|e| pattern.matches(&e.event.topic))
            .map(|e| e.seq())
            .take(seen.len())
            .collect();
        assert_eq!(
            seen, expected,
            "{pattern}: a prefix of the matching events, in order"
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish { topic: usize, count: usize },
    Connect { client: usize },
    Disconnect { client: usize },
    Read { client: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..4usize).prop_map(|(topic, count)| Op::Publish { topic, count }),
        1 => (0..3usize).prop_map(|client| Op::Connect { client }),
        1 => (0..3usize).prop_map(|client| Op::Disconnect { client }),
        2 => (0..3usize).prop_map(|client| Op::Read { client }),
    ]
}

const TOPICS: [&str; 3] = ["a/1", "a/2", "b/1"];
const SELECTORS: [&[&str]; 3] = [&["*"], &["a/*"], &["b/1", "a/2"]];

struct Client {
    sub: Option<Subscription>,
    /// Seqs received, across every connection.
    seen: Vec<u64>,
    /// The first handoff: the model expects every matching event after it.
    start: Option<u64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Model: a client that resumes with the id of the last event it saw receives every
    /// matching event published after its first handoff, once, in publish order.
    #[test]
    fn resume_matches_the_model(ops in proptest::collection::vec(op(), 1..60), queue in 2usize..8) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async move {
            let limits = Limits { subscriber_queue_events: queue, replay_chunk: 3, delivery_batch: 2, ..Limits::default() };
            let hub = hub_with(Retention { max_events: None, max_bytes: None, max_age: None }, limits);
            let mut published: Vec<(u64, usize)> = Vec::new();
            let mut clients: Vec<Client> = (0..3).map(|_| Client { sub: None, seen: vec![], start: None }).collect();
            for op in ops.iter().cloned().chain((0..3).flat_map(|client| [Op::Connect { client }, Op::Read { client }])) {
                match op {
                    Op::Publish { topic, count } => {
                        let ids = hub.publish(batch((0..count).map(|_| ev(TOPICS[topic], "x", "0")).collect())).await.unwrap();
                        published.extend(ids.iter().map(|id| (id.seq, topic)));
                    }
                    Op::Connect { client } => {
                        let c = &mut clients[client];
                        if c.sub.is_none() {
                            let cursor = c.seen.last().or(c.start.as_ref()).map(|&seq| Cursor::After(EventId { epoch: 7, seq }));
                            let sub = hub.subscribe(req(SELECTORS[client], cursor)).unwrap();
                            c.start.get_or_insert(sub.handoff().seq);
                            c.sub = Some(sub);
                        }
                    }
                    Op::Disconnect { client } => clients[client].sub = None,
                    Op::Read { client } => {
                        let c = &mut clients[client];
                        if let Some(sub) = c.sub.as_mut() {
                            let (seqs, steps) = ready(sub).await;
                            c.seen.extend(seqs);
                            for step in steps {
                                assert_eq!(step, Step::Closed(CloseReason::SlowConsumer));
                                c.sub = None;
                            }
                        }
                    }
                }
            }
            // A client closed as slow in the final read reconnects until it is caught up.
            for (client, c) in clients.iter_mut().enumerate() {
                while c.sub.is_none() {
                    let cursor = c.seen.last().or(c.start.as_ref()).map(|&seq| Cursor::After(EventId { epoch: 7, seq }));
                    let mut sub = hub.subscribe(req(SELECTORS[client], cursor)).unwrap();
                    let (seqs, steps) = ready(&mut sub).await;
                    c.seen.extend(seqs);
                    if steps.is_empty() { c.sub = Some(sub); }
                }
                let patterns: Vec<Pattern> = SELECTORS[client].iter().map(|p| Pattern::parse(p).unwrap()).collect();
                let start = c.start.unwrap();
                let expected: Vec<u64> = published.iter()
                    .filter(|(seq, t)| *seq > start && patterns.iter().any(|p| p.matches(&Topic::new(TOPICS[*t]).unwrap())))
                    .map(|(seq, _)| *seq)
                    .collect();
                assert_eq!(&c.seen, &expected, "client {client}");
            }
        });
    }
}

#[tokio::test]
async fn a_byte_bound_closes_a_slow_subscriber_of_large_events() {
    let limits = Limits {
        subscriber_queue_events: 1000,
        subscriber_queue_bytes: 10_000,
        ..Limits::default()
    };
    let hub = hub_with(Retention::default(), limits);
    let mut slow = hub.subscribe(req(&["*"], None)).unwrap();
    let big = format!("\"{}\"", "x".repeat(3000));
    for _ in 0..5 {
        hub.publish(batch(vec![ev("t", "x", &big)])).await.unwrap();
    }
    // Three ~3 KB events fit in 10,000 bytes; the fourth does not.
    let (seqs, steps) = ready(&mut slow).await;
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(steps, vec![Step::Closed(CloseReason::SlowConsumer)]);
}

/// The engine takes time only from its injected clock: event timestamps, and age-based
/// retention in `MemoryStore`, follow a `ManualClock` with no waiting.
#[tokio::test]
async fn time_comes_from_the_injected_clock() {
    let clock = crate::clock::ManualClock::new(1_000_000);
    let store = MemoryStore::with_clock(
        Epoch(7),
        Retention {
            max_events: None,
            max_bytes: None,
            max_age: Some(Duration::from_secs(60)),
        },
        clock.clone(),
    );
    let hub = Hub::with_clock(Arc::new(store), Limits::default(), clock.clone());
    let mut sub = hub.subscribe(req(&["*"], None)).unwrap();
    hub.publish(batch(vec![ev("t", "x", "1")])).await.unwrap();
    let mut out = Vec::new();
    assert_eq!(sub.next(&mut out).await, Step::Events);
    assert_eq!(
        out[0].event.time, 1_000_000,
        "stamped with the clock's time"
    );

    clock.advance(61_000);
    hub.publish(batch(vec![ev("t", "x", "2")])).await.unwrap();
    assert_eq!(
        hub.stats().store.trimmed_through,
        1,
        "the first is past max_age"
    );
    let mut late = hub
        .subscribe(req(
            &["*"],
            Some(Cursor::After(EventId { epoch: 7, seq: 0 })),
        ))
        .unwrap();
    let (_, steps) = ready(&mut late).await;
    assert_eq!(
        steps,
        vec![Step::Reset {
            reason: ResetReason::CursorExpired,
            resume_after: EventId { epoch: 7, seq: 2 },
        }]
    );
}

/// Fault: every resuming subscriber read its own 1,024-event chunk whatever the events'
/// size, so thousands resuming at once held thousands of chunks. Each read is now bounded by
/// bytes, and what replay holds across all subscribers by `Limits::replay_memory_bytes`.
#[tokio::test]
async fn replay_memory_is_bounded_across_subscribers() {
    let limits = Limits {
        max_data_bytes: 100,
        replay_chunk_bytes: 4_000,
        replay_memory_bytes: 4_000,
        ..Limits::default()
    };
    let hub = hub_with(Retention::default(), limits);
    let data = format!("\"{}\"", "x".repeat(60));
    for _ in 0..10 {
        hub.publish(batch((0..10).map(|_| ev("t", "x", &data)).collect()))
            .await
            .unwrap();
    }
    let mut first = hub.subscribe(req(&["*"], Some(Cursor::Earliest))).unwrap();
    let mut out = Vec::new();
    assert_eq!(first.next(&mut out).await, Step::Events);
    let bytes: usize = out.iter().map(|e| e.size()).sum();
    assert!(
        bytes <= 4_000,
        "one step holds at most a chunk ({bytes} bytes)"
    );
    assert!(
        out.len() < 100,
        "a chunk is bounded by bytes, not only by count"
    );

    // The budget is held by `first` until it asks for more: a second replay waits.
    let mut second = hub.subscribe(req(&["*"], Some(Cursor::Earliest))).unwrap();
    let mut other = Vec::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(50), second.next(&mut other))
            .await
            .is_err(),
        "a replay waits while the budget is spent"
    );
    // A cancelled wait keeps its place in line: `third`, asking later, comes after it.
    let mut third = hub.subscribe(req(&["*"], Some(Cursor::Earliest))).unwrap();
    let mut third_out = Vec::new();
    assert!(
        tokio::time::timeout(Duration::ZERO, third.next(&mut third_out))
            .await
            .is_err()
    );
    drop(first);
    let step = tokio::time::timeout(Duration::from_secs(5), second.next(&mut other)).await;
    assert_eq!(
        step,
        Ok(Step::Events),
        "the first in line goes on once it is free"
    );
    assert_eq!(other.first().map(|e| e.seq()), Some(1));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), third.next(&mut third_out))
            .await
            .is_err(),
        "the later one waits its turn"
    );
    // Live subscribers never wait on the replay budget.
    let mut live = hub.subscribe(req(&["*"], None)).unwrap();
    hub.publish(batch(vec![ev("t", "x", "1")])).await.unwrap();
    let mut got = Vec::new();
    assert_eq!(live.next(&mut got).await, Step::Events);
}
