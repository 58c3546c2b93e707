//! Unit tests of what cannot be provoked through the public API with real files: a commit
//! that fails, and the poisoning that must follow; the hub over this store when its appends
//! complete late and out of order; and the page cache's size as redb sees it.

use std::sync::atomic::Ordering;

use serde_json::value::RawValue;
use tidings_core::{EventRecord, EventStore, Retention, SharedEvent, StoreError};
use tidings_proto::{Event, EventId, EventType, Topic};

use crate::{Durability, RedbStore, StoreConfig};

fn event(seq: u64) -> SharedEvent {
    event_with(seq, "{}")
}

fn event_with(seq: u64, data: &str) -> SharedEvent {
    EventRecord::new(Event {
        id: EventId { epoch: 0, seq },
        topic: Topic::new("t").unwrap(),
        event_type: EventType::new("e").unwrap(),
        key: None,
        origin: None,
        time: tidings_core::clock::now_ms(),
        data: RawValue::from_string(data.into()).unwrap(),
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
        cache_size: crate::DEFAULT_CACHE_SIZE,
        snapshot: tidings_core::SnapshotRules::default(),
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
                cache_size: 64 << 20,
                snapshot: tidings_core::SnapshotRules::default(),
            })
            .unwrap(),
        ) as tidings_core::DynStore
    })
    .await;
}

/// The configured cache size reaches redb: after writing and reading back 16 times as much as
/// a 1 MiB cache, redb holds no more than that in memory (its default would hold it all).
#[tokio::test]
async fn the_page_cache_stays_within_its_configured_size() {
    use redb::ReadableDatabase;
    const CACHE: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(StoreConfig {
        path: dir.path().join("events.redb"),
        durability: Durability::Durable,
        retention: Retention {
            max_events: None,
            max_bytes: None,
            max_age: None,
        },
        cache_size: CACHE,
        snapshot: tidings_core::SnapshotRules::default(),
    })
    .unwrap();
    let data = format!("\"{}\"", "x".repeat(8 << 10));
    for batch in 0..32u64 {
        let events = (1..=64)
            .map(|i| event_with(batch * 64 + i, &data))
            .collect();
        store.append(events, None).await.unwrap();
    }
    let mut after = 0;
    loop {
        let chunk = store.read_after(after, 256).await.unwrap();
        let Some(last) = chunk.last() else { break };
        after = last.seq();
    }
    assert_eq!(after, 32 * 64);
    let used = store.shared.db.cache_stats().used_bytes();
    assert!(used > 0, "cache metrics are on in tests");
    assert!(
        used <= CACHE,
        "redb caches {used} bytes with a {CACHE}-byte cache"
    );
}
