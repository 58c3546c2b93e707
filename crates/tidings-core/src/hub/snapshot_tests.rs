//! Snapshots against a store that acknowledges late (`LateStore`): the table can run ahead of
//! what the hub has delivered, and both ways of taking a snapshot must still hand off exactly.
//! `Hub::snapshot` waits for delivery to reach its cursor; a subscription that loads one
//! skips the live events the snapshot already holds.

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::{Cursor, Epoch, EventType, Key, Pattern, Selector, Topic};

use super::*;
use crate::request::NewEvent;
use crate::store::MemoryStore;
use crate::subscription::Step;
use crate::testing::{LateStore, unbounded};

fn keyed(key: &str, n: u64) -> PublishBatch {
    PublishBatch {
        events: vec![NewEvent {
            topic: Topic::new("d").unwrap(),
            event_type: EventType::new("progress").unwrap(),
            key: Some(Key::new(key).unwrap()),
            data: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
        }],
        origin: None,
        idempotency_key: None,
    }
}

fn all() -> Selector {
    Selector {
        patterns: vec![Pattern::All],
        types: vec![],
    }
}

fn request(cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: all(),
        cursor,
        client_id: None,
    }
}

/// Publishes `(key, n)` one batch each, waiting until each append reached the store (but is
/// not acknowledged).
async fn publish_held(hub: &Hub, store: &LateStore, batches: &[(&str, u64)]) {
    let before = store.waiting().len();
    for (i, (key, n)) in batches.iter().enumerate() {
        let hub = hub.clone();
        let batch = keyed(key, *n);
        tokio::spawn(async move { hub.publish(batch).await });
        store.wait_appends(before + i + 1).await;
    }
}

fn seqs(events: &[SharedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq()).collect()
}

#[tokio::test]
async fn snapshot_waits_until_the_hub_delivered_through_its_cursor() {
    let store = LateStore::new(Arc::new(MemoryStore::new(Epoch(3), unbounded())));
    let hub = Hub::new(store.clone(), Limits::default());
    publish_held(&hub, &store, &[("a", 1), ("b", 2), ("a", 3)]).await;

    let taking = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.snapshot(all()).await })
    };
    assert!(store.complete(2).await && store.complete(3).await);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !taking.is_finished(),
        "the table holds seq 3 but seq 1 is not delivered: the snapshot waits"
    );
    assert!(store.complete(1).await);
    let snapshot = tokio::time::timeout(Duration::from_secs(5), taking)
        .await
        .expect("the snapshot is answered once delivery reaches its cursor")
        .expect("task")
        .expect("snapshot");
    assert_eq!(snapshot.cursor, EventId::new(Epoch(3), 3));
    assert_eq!(
        seqs(&snapshot.events),
        vec![2, 3],
        "b@2 and a@3, in seq order"
    );

    // Its cursor is accepted and continues exactly after it.
    let mut sub = hub
        .subscribe(request(Some(Cursor::After(snapshot.cursor))))
        .expect("subscribe");
    publish_held(&hub, &store, &[("c", 4)]).await;
    assert!(store.complete(4).await);
    let mut out = Vec::new();
    assert_eq!(sub.next(&mut out).await, Step::Events, "no reset");
    assert_eq!(seqs(&out), vec![4]);
}

#[tokio::test]
async fn a_loaded_snapshot_skips_the_live_events_it_holds() {
    let store = LateStore::new(Arc::new(MemoryStore::new(Epoch(3), unbounded())));
    let hub = Hub::new(store.clone(), Limits::default());
    publish_held(&hub, &store, &[("a", 1)]).await;
    assert!(store.complete(1).await);
    // 2 and 3 are in the table, not yet delivered: the subscription registers at head 1.
    publish_held(&hub, &store, &[("b", 2), ("a", 3)]).await;
    let mut sub = hub.subscribe(request(None)).expect("subscribe");
    sub.load_snapshot().await.expect("snapshot");
    let mut out = Vec::new();
    assert_eq!(sub.next(&mut out).await, Step::Events);
    assert_eq!(seqs(&out), vec![2, 3], "the snapshot: b@2, a@3");
    out.clear();
    assert_eq!(
        sub.next(&mut out).await,
        Step::Snapshot {
            cursor: EventId::new(Epoch(3), 3)
        }
    );
    assert_eq!(sub.position(), EventId::new(Epoch(3), 3));
    assert!(store.complete(2).await && store.complete(3).await);
    publish_held(&hub, &store, &[("b", 4)]).await;
    assert!(store.complete(4).await);
    assert_eq!(sub.next(&mut out).await, Step::Events);
    assert_eq!(
        seqs(&out),
        vec![4],
        "2 and 3 were in the snapshot: skipped live"
    );
}

#[tokio::test]
async fn a_snapshot_over_its_byte_bound_is_refused() {
    let store: DynStore = Arc::new(MemoryStore::new(Epoch(3), unbounded()));
    let limits = Limits {
        snapshot_max_bytes: 300,
        ..Limits::default()
    };
    let hub = Hub::new(store, limits);
    for n in 0..5 {
        hub.publish(keyed(&format!("k{n}"), n)).await.unwrap();
    }
    assert!(matches!(
        hub.snapshot(all()).await,
        Err(SnapshotError::TooLarge { max: 300 })
    ));
    let mut sub = hub.subscribe(request(None)).expect("subscribe");
    assert!(matches!(
        sub.load_snapshot().await,
        Err(SnapshotError::TooLarge { max: 300 })
    ));
    let narrow = Selector {
        patterns: vec![Pattern::All],
        types: vec![EventType::new("other").unwrap()],
    };
    let empty = hub
        .snapshot(narrow)
        .await
        .expect("a narrower selector fits");
    assert!(empty.events.is_empty());
    assert_eq!(empty.cursor, EventId::new(Epoch(3), 5));
}

#[tokio::test]
async fn a_snapshot_holds_its_bytes_of_the_replay_budget_until_dropped() {
    let store: DynStore = Arc::new(MemoryStore::new(Epoch(3), unbounded()));
    let hub = Hub::new(store, Limits::default());
    for n in 0..5 {
        hub.publish(keyed(&format!("k{n}"), n)).await.unwrap();
    }
    let budget = &hub.shared.subs.replay_budget;
    let full = budget.available_permits();
    let snapshot = hub.snapshot(all()).await.expect("snapshot");
    let kept: usize = snapshot.events.iter().map(|e| e.size()).sum();
    assert!(kept > 0);
    assert_eq!(
        budget.available_permits(),
        full - kept,
        "the events' bytes are held, the rest of the read's share is given back"
    );
    drop(snapshot);
    assert_eq!(budget.available_permits(), full);
}
