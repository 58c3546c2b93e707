//! The latest-per-key table in the store file: the conformance suite in durable and fast
//! mode, rows that survive a reopen and a crash exactly as the events do, and the committed
//! format-3 fixture upgraded to format 4 with its table built from the retained events.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tidings_core::testing::{keyed_event, snapshot_conformance, unbounded};
use tidings_core::{DynStore, EventStore, SnapshotRules};
use tidings_proto::{EventType, Selector};
use tidings_store_redb::{Durability, RedbStore, StoreConfig};

use super::{config, format_version};

fn with_rules(path: &Path, durability: Durability, rules: SnapshotRules) -> StoreConfig {
    StoreConfig {
        snapshot: rules,
        ..config(path, durability, unbounded())
    }
}

fn removed_deletes() -> SnapshotRules {
    SnapshotRules {
        delete_types: vec![EventType::new("removed").unwrap()],
        ..SnapshotRules::default()
    }
}

/// `(seq, key, type)` of every row.
async fn rows(store: &RedbStore) -> (u64, Vec<(u64, String, String)>) {
    let read = store.snapshot(&Selector::all(), usize::MAX).await.unwrap();
    let rows = read
        .events
        .iter()
        .map(|e| {
            (
                e.seq(),
                e.event.key.as_ref().unwrap().as_str().to_owned(),
                e.event.event_type.as_str().to_owned(),
            )
        })
        .collect();
    (read.through, rows)
}

fn row(seq: u64, key: &str, ty: &str) -> (u64, String, String) {
    (seq, key.to_owned(), ty.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_conformance_durable_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    for durability in [
        Durability::Durable,
        Durability::Fast {
            fsync_interval: Duration::from_millis(5),
        },
    ] {
        snapshot_conformance(|retention, rules| {
            let path = dir
                .path()
                .join(format!("s{}.redb", n.fetch_add(1, Ordering::Relaxed)));
            let config = StoreConfig {
                retention,
                snapshot: rules,
                ..config(&path, durability, unbounded())
            };
            Arc::new(RedbStore::open(config).unwrap()) as DynStore
        })
        .await;
    }
}

/// Rows are committed with their events: after a reopen (durable) and after a crash in
/// durable mode, the table is exactly as of the last stored event.
#[tokio::test]
async fn rows_survive_a_reopen_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let open = || RedbStore::open(with_rules(&path, Durability::Durable, removed_deletes()));
    {
        let store = open().unwrap();
        let events = vec![
            keyed_event_for(&store, 1, "progress", "d1"),
            keyed_event_for(&store, 2, "progress", "d2"),
            keyed_event_for(&store, 3, "removed", "d1"),
        ];
        store.append(events, None).await.unwrap();
    }
    {
        let store = open().unwrap();
        assert_eq!(
            rows(&store).await,
            (3, vec![row(2, "d2", "progress")]),
            "the table is read back after a reopen"
        );
        store
            .append(vec![keyed_event_for(&store, 4, "complete", "d2")], None)
            .await
            .unwrap();
        store.simulate_crash();
    }
    let store = open().unwrap();
    assert_eq!(
        rows(&store).await,
        (4, vec![row(4, "d2", "complete")]),
        "an acknowledged durable append's row survives a crash"
    );
    let read = store.snapshot(&Selector::all(), usize::MAX).await.unwrap();
    assert_eq!(
        read.events[0].event.id.epoch,
        store.epoch().0,
        "rows carry the store's epoch"
    );
}

fn keyed_event_for(store: &RedbStore, seq: u64, ty: &str, key: &str) -> tidings_core::SharedEvent {
    keyed_event(store.epoch(), seq, "downloads", ty, key)
}

/// A ceiling lowered between runs takes effect at open: the keys updated longest ago go.
#[tokio::test]
async fn a_lowered_key_ceiling_applies_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let rules = |max_keys| SnapshotRules {
        max_keys,
        ..SnapshotRules::default()
    };
    {
        let store = RedbStore::open(with_rules(&path, Durability::Durable, rules(10))).unwrap();
        let events = (1..=6)
            .map(|seq| keyed_event_for(&store, seq, "progress", &format!("k{seq}")))
            .collect();
        store.append(events, None).await.unwrap();
    }
    let store = RedbStore::open(with_rules(&path, Durability::Durable, rules(2))).unwrap();
    assert_eq!(
        rows(&store).await,
        (6, vec![row(5, "k5", "progress"), row(6, "k6", "progress")])
    );
}

/// `tests/fixtures/v3.redb` was written by the format-3 code (see the fixtures README):
/// events 1..=12 on `downloads`, keys d1/d2/d3 by seq % 3 (seq 11 `removed` d2, seq 12
/// unkeyed), 1 and 2 trimmed. Opening it with `removed` as a delete type upgrades it to v4
/// and builds the table from the retained events 3..=12.
#[tokio::test]
async fn v3_fixture_committed_file_upgrades_to_v4_with_its_table_built() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.redb");
    std::fs::copy(&fixture, &path).unwrap();
    assert_eq!(format_version(&path), 3, "the fixture is a v3 file");
    let store = RedbStore::open(with_rules(&path, Durability::Durable, removed_deletes())).unwrap();
    assert_eq!(store.trimmed_through(), 2);
    assert_eq!(
        rows(&store).await,
        (12, vec![row(8, "d3", "progress"), row(9, "d1", "progress")]),
        "the table holds the newest retained event per key; the removed key is gone"
    );
    store
        .append(vec![keyed_event_for(&store, 13, "progress", "d2")], None)
        .await
        .unwrap();
    assert_eq!(
        rows(&store).await.1,
        vec![
            row(8, "d3", "progress"),
            row(9, "d1", "progress"),
            row(13, "d2", "progress"),
        ],
        "the upgraded file's table takes new events"
    );
    drop(store);
    assert_eq!(format_version(&path), 4, "opening upgraded the file");
}
