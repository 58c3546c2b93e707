//! Integration tests of `RedbStore` on real files in temp dirs: the core conformance suite,
//! reopening, group commit under concurrent publishers, retention, the fast-mode epoch rule,
//! format versions and the committed v1 and v2 fixtures, and damaged files (`damage`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable};
use tidings_core::testing::{store_conformance, test_event, test_event_at, unbounded};
use tidings_core::{
    DynStore, EventStore, Fingerprint, IdempotencyKey, IdempotencyScope, KeyedBatch, Retention,
    StoreError,
};
use tidings_proto::EventId;
use tidings_store_redb::{Durability, RedbStore, StoreConfig};

mod damage;
mod sessions;
mod snapshot;
mod wal;

pub(crate) fn config(path: &Path, durability: Durability, retention: Retention) -> StoreConfig {
    StoreConfig {
        path: path.to_path_buf(),
        durability,
        retention,
        cache_size: tidings_store_redb::DEFAULT_CACHE_SIZE,
        snapshot: tidings_core::SnapshotRules::default(),
    }
}

fn durable(path: &Path) -> RedbStore {
    RedbStore::open(config(path, Durability::Durable, unbounded())).unwrap()
}

fn fast(path: &Path) -> RedbStore {
    let durability = Durability::Fast {
        fsync_interval: Duration::from_millis(50),
    };
    RedbStore::open(config(path, durability, unbounded())).unwrap()
}

async fn append_range(store: &RedbStore, seqs: std::ops::RangeInclusive<u64>) {
    store
        .append(seqs.map(test_event).collect(), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_durable_and_fast() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    for durability in [
        Durability::Durable,
        Durability::Fast {
            fsync_interval: Duration::from_millis(5),
        },
    ] {
        store_conformance(|retention| {
            let path = dir
                .path()
                .join(format!("s{}.redb", n.fetch_add(1, Ordering::Relaxed)));
            Arc::new(RedbStore::open(config(&path, durability, retention)).unwrap()) as DynStore
        })
        .await;
    }
}

#[tokio::test]
async fn round_trip_keeps_every_field_and_the_store_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let store = durable(&dir.path().join("nested/dir/events.redb"));
    append_range(&store, 1..=6).await;
    let read = store.read_after(0, 100).await.unwrap();
    assert_eq!(read.len(), 6);
    for got in read {
        let want = test_event(got.seq());
        assert_eq!(got.event.id, EventId::new(store.epoch(), got.seq()));
        assert_eq!(got.event.topic, want.event.topic);
        assert_eq!(got.event.event_type, want.event.event_type);
        assert_eq!(got.event.key, want.event.key);
        assert_eq!(got.event.origin, want.event.origin);
        assert_eq!(got.event.data.get(), want.event.data.get());
    }
    // Both present and absent optional fields were covered.
    assert!(test_event(1).event.key.is_none() && test_event(2).event.key.is_some());
    assert!(test_event(1).event.origin.is_none() && test_event(3).event.origin.is_some());
}

#[tokio::test]
async fn reopen_keeps_epoch_last_seq_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let (epoch, stats) = {
        let store = durable(&path);
        assert_eq!(store.last_seq(), 0);
        append_range(&store, 1..=10).await;
        append_range(&store, 11..=12).await;
        (store.epoch(), store.stats())
    };
    let store = durable(&path);
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.last_seq(), 12);
    assert_eq!(store.stats(), stats);
    append_range(&store, 13..=13).await;
    let seqs: Vec<u64> = store
        .read_after(10, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq())
        .collect();
    assert_eq!(seqs, vec![11, 12, 13]);
}

/// 64 publishers, each appending one event at a time, sequenced the way the hub does it: the
/// seq is taken and the append enqueued under one lock, the wait happens outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_share_commits() {
    const PUBLISHERS: u64 = 64;
    const EACH: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(durable(&dir.path().join("events.redb")));
    let sequencer = Arc::new(Mutex::new(0u64));
    let commits_before = store.commits();
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (store, sequencer) = (Arc::clone(&store), Arc::clone(&sequencer));
            tokio::spawn(async move {
                for _ in 0..EACH {
                    let done = {
                        let mut seq = sequencer.lock().unwrap();
                        *seq += 1;
                        store.append(vec![test_event(*seq)], None)
                    };
                    done.await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = PUBLISHERS * EACH;
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let commits = store.commits() - commits_before;
    let per_commit = total as f64 / commits as f64;
    eprintln!(
        "{total} durable appends by {PUBLISHERS} publishers: {rate:.0} events/s, \
         {commits} commits ({per_commit:.1} events each)"
    );
    // Sharing: one commit per append would be `total` commits. While one fsync runs, the
    // other publishers' appends queue up and go into the next commit together.
    assert!(
        commits * 8 <= total,
        "{commits} commits for {total} appends: commits are not shared"
    );
    let read = store.read_after(0, usize::MAX).await.unwrap();
    let seqs: Vec<u64> = read.iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert_eq!(store.stats().events, total);
}

#[tokio::test]
async fn retention_by_count_is_amortised_then_exact_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let retention = Retention {
        max_events: Some(640),
        ..unbounded()
    };
    {
        let store = RedbStore::open(config(&path, Durability::Durable, retention.clone())).unwrap();
        for seq in 1..=1000 {
            append_range(&store, seq..=seq).await;
            // Never more than the bound plus its slack (1/64), plus the one batch that was
            // acknowledged before the writer trimmed after it.
            assert!(store.stats().events <= 651, "{:?}", store.stats());
        }
        store.flush().await.unwrap();
        assert_eq!(store.stats().events, 640);
        assert_eq!(store.trimmed_through(), 360);
    }
    let store = RedbStore::open(config(&path, Durability::Durable, retention)).unwrap();
    assert_eq!(store.trimmed_through(), 360);
    assert_eq!(store.last_seq(), 1000);
    assert_eq!(store.stats().events, 640);
    let first = store.read_after(0, 1).await.unwrap();
    assert_eq!(first[0].seq(), 361);
}

#[tokio::test]
async fn retention_by_bytes_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let by_bytes = Retention {
        max_bytes: Some(10_000),
        ..unbounded()
    };
    let store = RedbStore::open(config(
        &dir.path().join("b.redb"),
        Durability::Durable,
        by_bytes,
    ))
    .unwrap();
    append_range(&store, 1..=500).await;
    store.flush().await.unwrap();
    let stats = store.stats();
    assert!(stats.bytes <= 10_000 && stats.bytes > 9_000, "{stats:?}");
    assert_eq!(stats.trimmed_through + stats.events, 500);

    let by_age = Retention {
        max_age: Some(Duration::from_secs(60)),
        ..unbounded()
    };
    let path = dir.path().join("a.redb");
    let store = RedbStore::open(config(&path, Durability::Durable, by_age.clone())).unwrap();
    let hour_ago = tidings_core::clock::now_ms() - 3_600_000;
    store
        .append((1..=50).map(|s| test_event_at(s, hour_ago)).collect(), None)
        .await
        .unwrap();
    append_range(&store, 51..=60).await;
    // The writer checks age on its own about once a second, without a flush.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.trimmed_through() < 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.trimmed_through(), 50);
    assert_eq!(store.stats().events, 10);
    drop(store);
    let store = RedbStore::open(config(&path, Durability::Durable, by_age)).unwrap();
    assert_eq!(store.trimmed_through(), 50);
    // Everything trimmed still leaves the hub continuing after the last seq.
    let all_old = Retention {
        max_age: Some(Duration::from_secs(60)),
        ..unbounded()
    };
    let path = dir.path().join("all-old.redb");
    {
        let store = RedbStore::open(config(&path, Durability::Durable, all_old.clone())).unwrap();
        store
            .append((1..=3).map(|s| test_event_at(s, hour_ago)).collect(), None)
            .await
            .unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.stats().events, 0);
    }
    let store = RedbStore::open(config(&path, Durability::Durable, all_old)).unwrap();
    assert_eq!((store.last_seq(), store.trimmed_through()), (3, 3));
}

#[tokio::test]
async fn fast_mode_takes_a_new_epoch_after_an_unclean_shutdown_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = fast(&path);
    let first = store.epoch();
    append_range(&store, 1..=5).await;
    drop(store); // clean: the final commit sets the marker

    let store = fast(&path);
    assert_eq!(store.epoch(), first, "a clean shutdown keeps the epoch");
    append_range(&store, 6..=6).await;
    store.flush().await.unwrap();
    append_range(&store, 7..=8).await; // acknowledged after the flush: the marker must go
    store.simulate_crash();

    let store = fast(&path);
    assert_ne!(
        store.epoch(),
        first,
        "an unclean shutdown in fast mode changes the epoch"
    );
    let second = store.epoch();
    let read = store.read_after(0, 100).await.unwrap();
    assert!(read.iter().all(|e| e.event.id.epoch == second.0));
    drop(store);
    assert_eq!(
        fast(&path).epoch(),
        second,
        "and the new epoch is kept after that"
    );
}

#[tokio::test]
async fn durable_mode_keeps_the_epoch_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = durable(&path);
    let epoch = store.epoch();
    append_range(&store, 1..=3).await;
    store.simulate_crash();
    let store = durable(&path);
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.last_seq(), 3);
}

#[tokio::test]
async fn unknown_format_version_and_foreign_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    drop(durable(&path));
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = tx.open_table(meta).unwrap();
            meta.insert("format_version", 5u32.to_le_bytes().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let err = RedbStore::open(config(&path, Durability::Durable, unbounded())).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("format version 5")),
        "{err}"
    );

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = RedbStore::open(config(&garbage, Durability::Durable, unbounded())).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[tokio::test]
async fn an_undecodable_event_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    {
        let store = durable(&path);
        append_range(&store, 1..=2).await;
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let events: redb::TableDefinition<'_, u64, &[u8]> =
                redb::TableDefinition::new("events");
            let mut events = tx.open_table(events).unwrap();
            events.insert(2, [0xff, 1, 2].as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let store = durable(&path);
    // What precedes the damage is handed out; a read starting at it fails.
    assert_eq!(store.read_after(0, 10).await.unwrap().len(), 1);
    let err = store.read_after(1, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(matches!(store.health(), Some(StoreError::Corrupt(_))));
}

// === v1 format fixture ===

const FIXTURE_EVENTS: u64 = 12;
/// Fixed publish time of fixture event `seq`, so the fixture's content is known.
fn fixture_time(seq: u64) -> u64 {
    1_700_000_000_000 + seq
}

/// Writes a small store at `path` with the contents of the committed v1 fixture: events 1..=12
/// with fixed times, the first 2 trimmed by count, closed cleanly. It writes in the current
/// format: the committed `tests/fixtures/v1.redb` was written this way by format version 1,
/// and is never regenerated, since it stands for files written by that version.
async fn write_v1_fixture(path: &Path) {
    let retention = Retention {
        max_events: Some(10),
        ..unbounded()
    };
    let store = RedbStore::open(config(path, Durability::Durable, retention)).unwrap();
    let events = (1..=FIXTURE_EVENTS)
        .map(|s| test_event_at(s, fixture_time(s)))
        .collect();
    store.append(events, None).await.unwrap();
    store.flush().await.unwrap();
}

async fn check_v1_fixture(path: &Path) {
    let store = durable(path);
    assert_eq!(store.last_seq(), FIXTURE_EVENTS);
    assert_eq!(store.trimmed_through(), 2);
    assert_eq!(store.stats().events, 10);
    let read = store.read_after(0, 100).await.unwrap();
    assert_eq!(read.len(), 10);
    for got in &read {
        let want = test_event_at(got.seq(), fixture_time(got.seq()));
        assert_eq!(got.event.id, EventId::new(store.epoch(), got.seq()));
        assert_eq!(got.event.time, want.event.time);
        assert_eq!(got.event.topic, want.event.topic);
        assert_eq!(got.event.key, want.event.key);
        assert_eq!(got.event.origin, want.event.origin);
        assert_eq!(got.event.data.get(), want.event.data.get());
    }
    let epoch = store.epoch();
    drop(store);
    assert_eq!(durable(path).epoch(), epoch, "the fixture's epoch is kept");
}

fn committed_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.redb")
}

/// The fixture's contents written by this build, in the current format (not v1: the
/// committed file is what proves a v1 file still opens), pass the same checks.
#[tokio::test]
async fn fixture_contents_written_in_the_current_format_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("current.redb");
    write_v1_fixture(&path).await;
    check_v1_fixture(&path).await;
}

/// The committed file was written by format version 1; every later build must read it.
#[tokio::test]
async fn v1_fixture_committed_file_still_reads() {
    let fixture = committed_fixture();
    assert!(
        fixture.exists(),
        "missing {}: see write_v1_fixture",
        fixture.display()
    );
    // Opening writes (markers), so work on a copy.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.redb");
    std::fs::copy(&fixture, &path).unwrap();
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
        let meta = tx.open_table(meta).unwrap();
        let version = meta
            .get("format_version")
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(version, 1u32.to_le_bytes(), "the fixture is a v1 file");
    }
    check_v1_fixture(&path).await;
    // Opening upgraded it to the current format in place: keyed batches work on it now.
    assert_eq!(format_version(&path), 4);
    let store = durable(&path);
    let keyed = keyed_batch(IdempotencyScope::ANONYMOUS, "after-upgrade", 13, 1);
    store
        .append(
            vec![test_event_at(13, fixture_time(13))],
            Some(keyed.clone()),
        )
        .await
        .unwrap();
    assert_eq!(store.find_keyed(&keyed.key).await.unwrap(), Some(keyed));
}

/// The `format_version` row of the file at `path` (opened raw, without the store).
pub(crate) fn format_version(path: &Path) -> u32 {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let meta: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
    let meta = tx.open_table(meta).unwrap();
    let version = meta.get("format_version").unwrap().unwrap();
    u32::from_le_bytes(version.value().try_into().unwrap())
}

fn idem_key(scope: IdempotencyScope, key: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope,
        key: key.into(),
    }
}

fn keyed_batch(scope: IdempotencyScope, key: &str, first_seq: u64, count: u32) -> KeyedBatch {
    KeyedBatch {
        key: idem_key(scope, key),
        fingerprint: Fingerprint([0xfe; 32]),
        first_seq,
        count,
    }
}

// === v2 format fixture ===

/// Rows of the v2 `idempotency` table, read raw (the table the v3 upgrade drops).
fn v2_idempotency_rows(path: &Path) -> Vec<String> {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let table: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("idempotency");
    let table = tx.open_table(table).unwrap();
    table
        .iter()
        .unwrap()
        .map(|row| row.unwrap().0.value().to_owned())
        .collect()
}

/// `tests/fixtures/v2.redb` was written by the format-v2 code (see the fixtures README): events
/// 1..=12 with the v1 fixture's contents, 1 and 2 trimmed, and two keyed batches remembered
/// (`v2-order-1`: seqs 3..=5, `v2-order-2`: 11..=12). Opening it upgrades it to v3 in place:
/// the events, epoch and counters are kept, the v2 keys are dropped (they have no scope and a
/// 64-bit fingerprint; see `migrate::v3`), and keyed batches and retention work afterwards.
#[tokio::test]
async fn v2_fixture_committed_file_upgrades_to_v3() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.redb");
    std::fs::copy(&fixture, &path).unwrap();
    assert_eq!(format_version(&path), 2, "the fixture is a v2 file");
    assert_eq!(
        v2_idempotency_rows(&path),
        ["v2-order-1", "v2-order-2"],
        "the fixture remembers two v2 keys"
    );

    check_v1_fixture(&path).await;
    assert_eq!(format_version(&path), 4, "opening upgraded the file");
    let retention = Retention {
        max_events: Some(10),
        ..unbounded()
    };
    let store = RedbStore::open(config(&path, Durability::Durable, retention)).unwrap();
    assert_eq!(store.epoch().to_string(), "55b95389", "the fixture's epoch");
    for key in ["v2-order-1", "v2-order-2"] {
        assert_eq!(
            store
                .find_keyed(&idem_key(IdempotencyScope::ANONYMOUS, key))
                .await
                .unwrap(),
            None,
            "v2 key `{key}` must not survive the upgrade"
        );
    }
    // Keyed batches work, in their scope only, and leave with their events.
    let scope = IdempotencyScope([1; 32]);
    let keyed = keyed_batch(scope, "v2-order-1", 13, 2);
    let events = (13..=14)
        .map(|s| test_event_at(s, fixture_time(s)))
        .collect();
    store.append(events, Some(keyed.clone())).await.unwrap();
    assert_eq!(
        store.find_keyed(&keyed.key).await.unwrap(),
        Some(keyed.clone())
    );
    let other_scope = idem_key(IdempotencyScope::ANONYMOUS, "v2-order-1");
    assert_eq!(store.find_keyed(&other_scope).await.unwrap(), None);
    let events = (15..=24)
        .map(|s| test_event_at(s, fixture_time(s)))
        .collect();
    store.append(events, None).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.trimmed_through(), 14);
    assert_eq!(store.find_keyed(&keyed.key).await.unwrap(), None);
    drop(store);
    let err = redb::Database::open(&path)
        .unwrap()
        .begin_read()
        .unwrap()
        .open_table(redb::TableDefinition::<'_, &str, &[u8]>::new("idempotency"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, redb::TableError::TableDoesNotExist(_)),
        "the v2 table is gone: {err}"
    );
}

#[tokio::test]
async fn keyed_batches_survive_a_reopen_and_leave_with_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let retention = Retention {
        max_events: Some(4),
        ..unbounded()
    };
    let scope = IdempotencyScope([9; 32]);
    let keyed = |key: &str, first_seq, count| keyed_batch(scope, key, first_seq, count);
    let find = |store: &RedbStore, key: &str| store.find_keyed(&idem_key(scope, key));
    {
        let store = RedbStore::open(config(&path, Durability::Durable, retention.clone())).unwrap();
        store
            .append((1..=2).map(test_event).collect(), Some(keyed("a", 1, 2)))
            .await
            .unwrap();
        store.append(vec![test_event(3)], None).await.unwrap();
        store
            .append(vec![test_event(4)], Some(keyed("b", 4, 1)))
            .await
            .unwrap();
        assert_eq!(find(&store, "a").await.unwrap(), Some(keyed("a", 1, 2)));
        assert_eq!(find(&store, "nope").await.unwrap(), None);
        // Crash: no flush, no clean close.
        store.simulate_crash();
    }
    let store = RedbStore::open(config(&path, Durability::Durable, retention)).unwrap();
    assert_eq!(find(&store, "a").await.unwrap(), Some(keyed("a", 1, 2)));
    assert_eq!(find(&store, "b").await.unwrap(), Some(keyed("b", 4, 1)));
    // Retention to 4 events drops seq 1 and 2, and key `a` with them.
    store
        .append((5..=6).map(test_event).collect(), None)
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.trimmed_through(), 2);
    assert_eq!(find(&store, "a").await.unwrap(), None);
    assert_eq!(find(&store, "b").await.unwrap(), Some(keyed("b", 4, 1)));
}
