//! Cluster mode in the engine, without I/O: hubs over one in-memory log (`TestLog`, a `Bus`
//! that sequences and keeps history in a `MemoryStore` both hubs read). Same ids on every
//! hub, resume on another hub, redeliveries and gaps at ingest, a lagging hub catching up
//! with a cursor, a log that is down, and an idempotent retry through another hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_proto::{Cursor, Epoch, EventId, EventType, Pattern, Selector, Topic};

use super::*;
use crate::EventRecord;
use crate::bus::{Bus, BusError, DynBus};
use crate::clock::ManualClock;
use crate::request::NewEvent;
use crate::store::{EventStore, MemoryStore, Retention};
use crate::subscription::Step;

const E: Epoch = Epoch(0x5eed);

/// A log: assigns sequences under its own lock in call order, keeps the events in `history`,
/// deduplicates keyed publishes, and (when its future is polled, outside any hub's lock)
/// hands what is new to the hubs that follow it.
#[derive(Debug, Default)]
struct TestLog {
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    history: Option<Arc<MemoryStore>>,
    next: u64,
    keys: HashMap<String, (Vec<u64>, Fingerprint)>,
    followers: Vec<Hub>,
    down: bool,
}

impl TestLog {
    fn new() -> Arc<TestLog> {
        let log = Arc::new(TestLog::default());
        let mut inner = log.inner.lock().unwrap();
        inner.history = Some(Arc::new(MemoryStore::new(E, unbounded())));
        inner.next = 1;
        drop(inner);
        log
    }

    fn history(&self) -> Arc<MemoryStore> {
        self.inner.lock().unwrap().history.clone().unwrap()
    }

    /// A hub on this log; `follow`: it ingests every publish as soon as it is acknowledged
    /// (otherwise only through `pump`).
    fn hub(self: &Arc<Self>, follow: bool) -> Hub {
        let store: DynStore = self.history();
        let bus: DynBus = Arc::clone(self) as DynBus;
        let hub = Hub::clustered(
            store,
            bus,
            Limits::default(),
            ManualClock::new(1_000),
            Default::default(),
        );
        if follow {
            self.inner.lock().unwrap().followers.push(hub.clone());
        }
        hub
    }

    /// Hands `hub` everything after its head, as a consumer of the log would.
    async fn pump(&self, hub: &Hub) -> u64 {
        let events = self.history().read_after(hub.head(), 10_000).await.unwrap();
        hub.ingest(events).unwrap()
    }

    fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }
}

impl Bus for TestLog {
    fn publish(
        &self,
        events: Vec<SharedEvent>,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>> {
        let mut inner = self.inner.lock().unwrap();
        if inner.down {
            return Box::pin(std::future::ready(Err(BusError::Store(StoreError::Io(
                "log is down".into(),
            )))));
        }
        let key = key.map(|(k, fp)| (k.key.clone(), fp));
        if let Some((seqs, fp)) = key.as_ref().and_then(|(k, _)| inner.keys.get(k)) {
            let answer = if key.as_ref().is_some_and(|(_, mine)| mine == fp) {
                Ok(seqs.clone())
            } else {
                Err(BusError::IdempotencyConflict)
            };
            return Box::pin(std::future::ready(answer));
        }
        let mut seqs = Vec::new();
        let mut stored = Vec::new();
        for e in events {
            assert_eq!(e.seq(), 0, "the hub leaves sequencing to the log");
            let seq = inner.next;
            inner.next += 1;
            seqs.push(seq);
            let mut event = e.event.clone();
            event.id = EventId::new(E, seq);
            stored.push(EventRecord::with_conflation(event, e.conflatable));
        }
        let history = inner.history.clone().unwrap();
        drop(history.append(stored, None));
        if let Some((k, fp)) = key {
            inner.keys.insert(k, (seqs.clone(), fp));
        }
        let followers = inner.followers.clone();
        Box::pin(async move {
            for hub in followers {
                let events = history
                    .read_after(hub.head(), 10_000)
                    .await
                    .map_err(BusError::Store)?;
                hub.ingest(events).expect("same epoch");
            }
            Ok(seqs)
        })
    }
}

fn unbounded() -> Retention {
    Retention {
        max_events: None,
        max_bytes: None,
        max_age: None,
    }
}

fn batch(topic: &str, n: usize, key: Option<&str>) -> PublishBatch {
    PublishBatch {
        events: (0..n)
            .map(|i| NewEvent {
                topic: Topic::new(topic).unwrap(),
                event_type: EventType::new("changed").unwrap(),
                key: None,
                data: serde_json::value::RawValue::from_string(i.to_string()).unwrap(),
            })
            .collect(),
        origin: None,
        idempotency_key: key.map(|k| IdempotencyKey {
            scope: crate::IdempotencyScope::ANONYMOUS,
            key: k.to_owned(),
        }),
    }
}

fn everything(cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::All],
            types: vec![],
        },
        cursor,
        client_id: None,
    }
}

/// Every step ready now: the events' ids, and the other steps.
async fn ready(sub: &mut Subscription) -> (Vec<EventId>, Vec<Step>) {
    let mut ids = Vec::new();
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::from_millis(20), sub.next(&mut out)).await {
            Err(_) => return (ids, steps),
            Ok(Step::Events) => ids.extend(out.iter().map(|e| e.event.id)),
            Ok(step) => steps.push(step),
        }
    }
}

fn ids(seqs: std::ops::RangeInclusive<u64>) -> Vec<EventId> {
    seqs.map(|s| EventId::new(E, s)).collect()
}

#[tokio::test]
async fn publish_on_one_hub_reaches_every_hub_with_the_log_ids() {
    let log = TestLog::new();
    let (a, b) = (log.hub(true), log.hub(true));
    assert!(a.is_clustered());
    let mut on_a = a.subscribe(everything(None)).unwrap();
    let mut on_b = b.subscribe(everything(None)).unwrap();
    let answered = a.publish(batch("t", 3, None)).await.unwrap();
    assert_eq!(answered, ids(1..=3));
    let answered = b.publish(batch("u", 2, None)).await.unwrap();
    assert_eq!(answered, ids(4..=5));
    assert_eq!(ready(&mut on_a).await.0, ids(1..=5));
    assert_eq!(ready(&mut on_b).await.0, ids(1..=5));
    assert_eq!((a.head(), b.head()), (5, 5));
    assert_eq!(
        a.stats().published,
        5,
        "published counts what the hub ingested"
    );
}

#[tokio::test]
async fn a_cursor_from_one_hub_resumes_on_another_without_gap_or_duplicate() {
    let log = TestLog::new();
    let (a, b) = (log.hub(true), log.hub(true));
    a.publish(batch("t", 5, None)).await.unwrap();
    // A client saw up to 2 on A; it resumes on B.
    let mut on_b = b
        .subscribe(everything(Some(Cursor::After(EventId::new(E, 2)))))
        .unwrap();
    b.publish(batch("t", 1, None)).await.unwrap();
    let (got, steps) = ready(&mut on_b).await;
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(got, ids(3..=6));
}

#[tokio::test]
async fn ingest_skips_redeliveries_allows_gaps_and_refuses_another_epoch() {
    let log = TestLog::new();
    let hub = log.hub(false);
    let mut sub = hub.subscribe(everything(None)).unwrap();
    let ev = |epoch: u32, seq: u64| {
        EventRecord::new(tidings_proto::Event {
            id: EventId { epoch, seq },
            topic: Topic::new("t").unwrap(),
            event_type: EventType::new("x").unwrap(),
            key: None,
            origin: None,
            time: 1,
            data: serde_json::value::RawValue::from_string("1".into()).unwrap(),
        })
    };
    assert_eq!(hub.ingest([ev(E.0, 1), ev(E.0, 2)]), Ok(2));
    assert_eq!(
        hub.ingest([ev(E.0, 2), ev(E.0, 3)]),
        Ok(1),
        "2 was a redelivery"
    );
    assert_eq!(hub.ingest([ev(E.0, 7)]), Ok(1), "the log may skip numbers");
    let refused = hub.ingest([ev(E.0 + 1, 8)]);
    assert!(
        matches!(refused, Err(crate::IngestError::Epoch { .. })),
        "{refused:?}"
    );
    assert_eq!(hub.head(), 7);
    let (got, _) = ready(&mut sub).await;
    assert_eq!(
        got,
        vec![
            EventId::new(E, 1),
            EventId::new(E, 2),
            EventId::new(E, 3),
            EventId::new(E, 7)
        ]
    );
}

#[tokio::test]
async fn a_lagging_hub_catches_up_in_order_and_waits_for_a_cursor_ahead() {
    let log = TestLog::new();
    let (a, lagging) = (log.hub(true), log.hub(false));
    a.publish(batch("t", 4, None)).await.unwrap();
    assert_eq!(lagging.head(), 0);
    // A cursor seen on A is ahead of the lagging hub: waiting for it times out until the
    // hub ingests, then it holds at once.
    assert!(!lagging.await_head(3, Duration::from_millis(10)).await);
    let waiter = {
        let lagging = lagging.clone();
        tokio::spawn(async move { lagging.await_head(3, Duration::from_secs(5)).await })
    };
    assert_eq!(log.pump(&lagging).await, 4);
    assert!(waiter.await.unwrap());
    let mut sub = lagging
        .subscribe(everything(Some(Cursor::After(EventId::new(E, 3)))))
        .unwrap();
    a.publish(batch("t", 1, None)).await.unwrap();
    log.pump(&lagging).await;
    let (got, steps) = ready(&mut sub).await;
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(got, ids(4..=5));
}

#[tokio::test]
async fn a_log_that_is_down_refuses_publishes_and_leaves_streams_open() {
    let log = TestLog::new();
    let (a, b) = (log.hub(true), log.hub(true));
    let mut on_b = b.subscribe(everything(None)).unwrap();
    a.publish(batch("t", 1, None)).await.unwrap();
    log.set_down(true);
    let refused = a.publish(batch("t", 1, None)).await;
    assert!(
        matches!(refused, Err(PublishError::Store(_))),
        "{refused:?}"
    );
    log.set_down(false);
    a.publish(batch("t", 1, None)).await.unwrap();
    let (got, steps) = ready(&mut on_b).await;
    assert!(steps.is_empty(), "the stream stays open: {steps:?}");
    assert_eq!(got, ids(1..=2), "nothing of the refused publish, no gap");
}

#[tokio::test]
async fn a_keyed_retry_through_another_hub_gets_the_original_ids() {
    let log = TestLog::new();
    let (a, b) = (log.hub(true), log.hub(true));
    let first = a.publish(batch("t", 2, Some("k1"))).await.unwrap();
    let retry = b.publish(batch("t", 2, Some("k1"))).await.unwrap();
    assert_eq!(first, retry);
    assert_eq!(log.history().stats().last_seq, 2, "stored once");
}

#[tokio::test]
async fn a_key_reused_for_another_batch_through_another_hub_is_a_conflict() {
    let log = TestLog::new();
    let (a, b) = (log.hub(true), log.hub(true));
    a.publish(batch("t", 2, Some("k1"))).await.unwrap();
    let other = b.publish(batch("u", 2, Some("k1"))).await;
    assert!(
        matches!(other, Err(PublishError::IdempotencyConflict)),
        "{other:?}"
    );
    assert_eq!(log.history().stats().last_seq, 2, "nothing stored");
}
