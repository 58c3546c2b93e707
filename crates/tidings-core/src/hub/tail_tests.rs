//! The replay tail in the hub: a resume near the head replays the fan-out's own records
//! without a store read (on one node and in cluster mode), a resume from further back reads
//! the store only up to where the tail starts, and a property test that a replay from any
//! cursor gives exactly the store's answer, with the tail on (of any size) and off, across
//! restarts and retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tidings_proto::{Cursor, Epoch, EventId, EventType, Pattern, Selector, Topic};

use super::*;
use crate::EventRecord;
use crate::bus::{Bus, BusError};
use crate::clock::ManualClock;
use crate::request::NewEvent;
use crate::store::{EventStore, MemoryStore, ReadLimit, Retention};
use crate::subscription::Step;

const E: Epoch = Epoch(9);

/// A `MemoryStore` whose reads count themselves and hand out fresh records, as a store that
/// decodes from disk does (so a replayed record shares nothing with the fan-out's).
#[derive(Debug)]
struct CountingStore {
    inner: MemoryStore,
    reads: AtomicUsize,
    /// Events handed out by reads.
    read_events: AtomicUsize,
}

impl CountingStore {
    fn new(retention: Retention) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner: MemoryStore::new(E, retention),
            reads: AtomicUsize::new(0),
            read_events: AtomicUsize::new(0),
        })
    }

    fn reads(&self) -> (usize, usize) {
        (
            self.reads.load(Ordering::SeqCst),
            self.read_events.load(Ordering::SeqCst),
        )
    }
}

impl crate::store::StoreLayer for CountingStore {
    fn inner(&self) -> &dyn EventStore {
        &self.inner
    }
    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let read = self.inner.read_chunk(after, limit);
        let counted = &self.read_events;
        let events = futures_util::FutureExt::now_or_never(read)
            .expect("a memory read is ready")
            .map(|events| {
                counted.fetch_add(events.len(), Ordering::SeqCst);
                events
                    .iter()
                    .map(|e| EventRecord::with_conflation(e.event.clone(), e.conflatable))
                    .collect()
            });
        Box::pin(std::future::ready(events))
    }
}

fn unbounded() -> Retention {
    Retention {
        max_events: None,
        max_bytes: None,
        max_age: None,
    }
}

fn ev(topic: &str, data_len: usize) -> NewEvent {
    NewEvent {
        topic: Topic::new(topic).unwrap(),
        event_type: EventType::new("x").unwrap(),
        key: None,
        data: serde_json::value::RawValue::from_string(format!("\"{}\"", "d".repeat(data_len)))
            .unwrap(),
    }
}

fn batch(events: Vec<NewEvent>) -> PublishBatch {
    PublishBatch {
        events,
        origin: None,
        idempotency_key: None,
    }
}

fn req(patterns: &[&str], after: Option<u64>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
            types: vec![],
        },
        cursor: after.map(|seq| Cursor::After(EventId::new(E, seq))),
        client_id: None,
    }
}

/// Everything ready now, without waiting: the events and the other steps.
async fn ready(sub: &mut Subscription) -> (Vec<SharedEvent>, Vec<Step>) {
    let mut events = Vec::new();
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::ZERO, sub.next(&mut out)).await {
            Err(_) => return (events, steps),
            Ok(Step::Events) => events.append(&mut out),
            Ok(step @ Step::Closed(_)) => {
                steps.push(step);
                return (events, steps);
            }
            Ok(step) => steps.push(step),
        }
    }
}

fn seqs(events: &[SharedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq()).collect()
}

#[tokio::test]
async fn a_resume_near_the_head_replays_the_fan_outs_records_without_reading_the_store() {
    for cache in [16 << 20, 0] {
        let store = CountingStore::new(unbounded());
        let limits = Limits {
            replay_cache_bytes: cache,
            ..Limits::default()
        };
        let hub = Hub::new(Arc::clone(&store) as DynStore, limits);
        let mut live = hub.subscribe(req(&["*"], None)).unwrap();
        for i in 0..30 {
            let topic = ["a", "b", "c"][i % 3];
            hub.publish(batch(vec![ev(topic, 8)])).await.unwrap();
        }
        let (delivered, _) = ready(&mut live).await;
        assert_eq!(delivered.len(), 30);
        let mut resumed = hub.subscribe(req(&["b"], Some(10))).unwrap();
        let (replayed, steps) = ready(&mut resumed).await;
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(seqs(&replayed), vec![11, 14, 17, 20, 23, 26, 29]);
        if cache > 0 {
            assert_eq!(store.reads(), (0, 0), "the tail answered");
            for e in &replayed {
                let original = &delivered[e.seq() as usize - 1];
                assert!(
                    Arc::ptr_eq(e, original),
                    "event {} is the live record, its encodings shared",
                    e.seq()
                );
            }
        } else {
            assert!(store.reads().0 > 0, "without the tail the store answers");
            assert!(replayed.iter().all(|e| !Arc::ptr_eq(e, &delivered[0])));
        }
    }
}

#[tokio::test]
async fn after_a_restart_the_store_is_read_only_up_to_where_the_tail_starts() {
    let store = CountingStore::new(unbounded());
    let hub = Hub::new(Arc::clone(&store) as DynStore, Limits::default());
    for _ in 0..50 {
        hub.publish(batch(vec![ev("t", 8)])).await.unwrap();
    }
    drop(hub);
    // The new hub's tail starts empty, at the head (50).
    let hub = Hub::new(Arc::clone(&store) as DynStore, Limits::default());
    for _ in 0..100 {
        hub.publish(batch(vec![ev("t", 8)])).await.unwrap();
    }
    let mut sub = hub.subscribe(req(&["t"], Some(45))).unwrap();
    let (replayed, steps) = ready(&mut sub).await;
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(seqs(&replayed), (46..=150).collect::<Vec<_>>());
    assert_eq!(
        store.reads(),
        (1, 5),
        "one store read, of the 5 events below the tail; the 100 after it from the tail"
    );
}

#[tokio::test]
async fn the_tail_evicts_by_bytes_and_the_store_answers_below_it() {
    let store = CountingStore::new(unbounded());
    let size = {
        let hub = Hub::new(
            Arc::new(MemoryStore::new(E, unbounded())),
            Limits::default(),
        );
        hub.publish(batch(vec![ev("t", 8)])).await.unwrap();
        let mut sub = hub.subscribe(req(&["t"], Some(0))).unwrap();
        ready(&mut sub).await.0[0].size()
    };
    let limits = Limits {
        replay_cache_bytes: 10 * size,
        ..Limits::default()
    };
    let hub = Hub::new(Arc::clone(&store) as DynStore, limits);
    for _ in 0..40 {
        hub.publish(batch(vec![ev("t", 8)])).await.unwrap();
    }
    // The tail holds 31..=40.
    let mut near = hub.subscribe(req(&["t"], Some(30))).unwrap();
    assert_eq!(
        seqs(&ready(&mut near).await.0),
        (31..=40).collect::<Vec<_>>()
    );
    assert_eq!(store.reads(), (0, 0));
    let mut far = hub.subscribe(req(&["t"], Some(20))).unwrap();
    assert_eq!(
        seqs(&ready(&mut far).await.0),
        (21..=40).collect::<Vec<_>>()
    );
    assert_eq!(store.reads(), (1, 10), "the store gave 21..=30 only");
}

/// A log that is never asked: the cluster test below only ingests.
#[derive(Debug)]
struct NoBus;

impl Bus for NoBus {
    fn publish(
        &self,
        _events: Vec<SharedEvent>,
        _key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>> {
        Box::pin(std::future::ready(Err(BusError::Store(StoreError::Closed))))
    }
}

#[tokio::test]
async fn a_clustered_hub_replays_what_it_ingested_from_its_tail() {
    let store = CountingStore::new(unbounded());
    // The log already holds 1..=3 when the node starts.
    let record = |seq: u64| {
        EventRecord::new(tidings_proto::Event {
            id: EventId::new(E, seq),
            topic: Topic::new("t").unwrap(),
            event_type: EventType::new("x").unwrap(),
            key: None,
            origin: None,
            time: 1,
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
        })
    };
    let before: Vec<SharedEvent> = (1..=3).map(record).collect();
    drop(store.append(before, None));
    let hub = Hub::clustered(
        Arc::clone(&store) as DynStore,
        Arc::new(NoBus),
        Limits::default(),
        ManualClock::new(1_000),
        Default::default(),
    );
    // The log skips numbers (deleted messages); the follower ingests what it holds.
    let ingested: Vec<SharedEvent> = [4, 5, 8, 9, 12].into_iter().map(record).collect();
    drop(store.append(ingested.clone(), None));
    assert_eq!(hub.ingest(ingested.clone()), Ok(5));
    let mut sub = hub.subscribe(req(&["t"], Some(5))).unwrap();
    let (replayed, steps) = ready(&mut sub).await;
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(seqs(&replayed), vec![8, 9, 12]);
    assert_eq!(store.reads(), (0, 0), "from the tail");
    assert!(Arc::ptr_eq(&replayed[0], &ingested[2]));
    // From before the node started: the store for 1..=3, the tail after.
    let mut sub = hub.subscribe(req(&["t"], Some(1))).unwrap();
    assert_eq!(seqs(&ready(&mut sub).await.0), vec![2, 3, 4, 5, 8, 9, 12]);
    assert_eq!(store.reads(), (1, 2));
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        topic: usize,
        count: usize,
        data: usize,
    },
    Restart,
    Resume {
        selector: usize,
        back: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..5usize, 0..120usize)
            .prop_map(|(topic, count, data)| Op::Publish { topic, count, data }),
        1 => Just(Op::Restart),
        3 => (0..SELECTORS.len(), 0..40u64).prop_map(|(selector, back)| Op::Resume { selector, back }),
    ]
}

const TOPICS: [&str; 3] = ["a/1", "a/2", "b/1"];
const SELECTORS: [&[&str]; 4] = [&["*"], &["a/*"], &["b/1", "a/2"], &["a/1"]];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A replay from any cursor hands out exactly what the store holds after it, up to the
    /// handoff, under the selector (or, below the retained history, a `cursor_expired` reset
    /// and nothing), whatever the tail's size (0: off), across restarts, with chunks bounded
    /// by count and by bytes.
    #[test]
    fn a_replay_from_any_cursor_is_the_stores_answer(
        ops in proptest::collection::vec(op(), 1..50),
        cache in prop_oneof![Just(0usize), 100..600usize, 600..4000usize, Just(16usize << 20)],
        retained in prop_oneof![Just(None), (5..60u64).prop_map(Some)],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async move {
            let limits = Limits {
                replay_cache_bytes: cache,
                replay_chunk: 3,
                max_data_bytes: 200,
                replay_chunk_bytes: 300,
                delivery_batch: 2,
                ..Limits::default()
            };
            let store = CountingStore::new(Retention { max_events: retained, max_bytes: None, max_age: None });
            let mut hub = Hub::new(Arc::clone(&store) as DynStore, limits.clone());
            for op in ops {
                match op {
                    Op::Publish { topic, count, data } => {
                        hub.publish(batch((0..count).map(|_| ev(TOPICS[topic], data)).collect())).await.unwrap();
                    }
                    Op::Restart => hub = Hub::new(Arc::clone(&store) as DynStore, limits.clone()),
                    Op::Resume { selector, back } => {
                        let after = hub.head().saturating_sub(back);
                        let mut sub = hub.subscribe(req(SELECTORS[selector], Some(after))).unwrap();
                        let until = sub.handoff().seq;
                        let (got, steps) = ready(&mut sub).await;
                        let patterns: Vec<Pattern> = SELECTORS[selector].iter().map(|p| Pattern::parse(p).unwrap()).collect();
                        if after < store.trimmed_through() {
                            assert_eq!(steps, vec![Step::Reset { reason: ResetReason::CursorExpired, resume_after: EventId::new(E, until) }]);
                            assert!(got.is_empty());
                            continue;
                        }
                        assert!(steps.is_empty(), "{steps:?}");
                        let stored = store.inner.read_after(after, usize::MAX).await.unwrap();
                        let expected: Vec<u64> = stored.iter()
                            .filter(|e| e.seq() <= until && patterns.iter().any(|p| p.matches(&e.event.topic)))
                            .map(|e| e.seq())
                            .collect();
                        assert_eq!(seqs(&got), expected, "after {after}, until {until}, tail {cache}");
                        for (e, s) in got.iter().zip(stored.iter().filter(|s| expected.contains(&s.seq()))) {
                            assert_eq!(e.event.data.get(), s.event.data.get());
                        }
                    }
                }
            }
        });
    }
}
