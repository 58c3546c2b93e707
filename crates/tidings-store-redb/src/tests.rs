//! Unit tests of what cannot be provoked through the public API with real files: a commit
//! that fails, and the poisoning that must follow; and the hub over this store when its
//! appends complete late and out of order.

use std::sync::atomic::Ordering;

use serde_json::value::RawValue;
use tidings_core::{EventRecord, EventStore, Retention, SharedEvent, StoreError};
use tidings_proto::{Event, EventId, EventType, Topic};

use crate::{Durability, RedbStore, StoreConfig};

fn event(seq: u64) -> SharedEvent {
    EventRecord::new(Event {
        id: EventId { epoch: 0, seq },
        topic: Topic::new("t").unwrap(),
        event_type: EventType::new("e").unwrap(),
        key: None,
        origin: None,
        time: tidings_core::clock::now_ms(),
        data: RawValue::from_string("{}".into()).unwrap(),
    })
}

#[tokio::test]
async fn a_failed_commit_poisons_every_later_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(StoreConfig {
        path: dir.path().join("events.redb"),
        durability: Durability::Durable,
        // No age bound: its once-a-second check would commit (and fail) on its own, racing
        // the append this test makes fail.
        retention: Retention {
            max_events: None,
            max_bytes: None,
            max_age: None,
        },
    })
    .unwrap();
    store.append(vec![event(1)], None).await.unwrap();
    assert!(store.health().is_none());

    store.shared.fail_commits.store(true, Ordering::Relaxed);
    let failed = store.append(vec![event(2)], None).await;
    assert!(matches!(failed, Err(StoreError::Io(_))), "{failed:?}");
    assert!(matches!(store.health(), Some(StoreError::Io(_))));

    // Even once the disk "recovers", nothing after the lost event may be accepted.
    store.shared.fail_commits.store(false, Ordering::Relaxed);
    let refused = store.append(vec![event(3)], None).await;
    assert!(
        matches!(refused, Err(StoreError::Poisoned(_))),
        "{refused:?}"
    );
    assert!(matches!(store.flush().await, Err(StoreError::Poisoned(_))));
    // What was committed before the failure is still readable.
    let read = store.read_after(0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(store.stats().last_seq, 1);
}

/// The hub over this store, completing its appends late and out of order, still delivers in
/// seq order and only what the store acknowledged.
#[tokio::test]
async fn a_hub_over_late_completions_delivers_the_committed_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    tidings_core::testing::hub_delivers_committed_prefix(|| {
        std::sync::Arc::new(
            RedbStore::open(StoreConfig {
                path: path.clone(),
                durability: Durability::Durable,
                retention: Retention::default(),
            })
            .unwrap(),
        ) as tidings_core::DynStore
    })
    .await;
}
