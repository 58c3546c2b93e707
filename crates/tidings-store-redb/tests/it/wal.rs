//! The append log in front of redb, on real files: acknowledged events survive a crash at
//! each stage (in the log only; in redb with the log not yet reset; after the reset), a torn
//! or damaged log loses exactly the frames from the damage on, reads see the unindexed tail
//! and redb as one sequence, keyed batches and snapshots are exact with a tail, retention
//! bounds what a reader sees, and a property test checks random appends, crashes, reopens and
//! reads against a model.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use tidings_core::testing::{test_event, unbounded};
use tidings_core::{
    EventStore, Fingerprint, IdempotencyScope, ReadLimit, Retention, SnapshotRules,
};
use tidings_proto::Selector;
use tidings_store_redb::{Durability, RedbStore};

use super::{config, idem_key, keyed_batch};

fn log_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// Bytes before the first frame: the magic and this open's salt.
const HEADER: usize = 12;

fn open(path: &Path, durability: Durability, retention: Retention) -> RedbStore {
    RedbStore::open(config(path, durability, retention)).unwrap()
}

fn durable(path: &Path) -> RedbStore {
    open(path, Durability::Durable, unbounded())
}

fn fast(path: &Path) -> RedbStore {
    open(
        path,
        Durability::Fast {
            fsync_interval: Duration::from_millis(20),
        },
        unbounded(),
    )
}

/// Appends `seqs` one event per append (one frame each), waiting for each.
async fn append_each(store: &RedbStore, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        store.append(vec![test_event(seq)], None).await.unwrap();
    }
}

async fn seqs(store: &RedbStore) -> Vec<u64> {
    let read = store.read_after(0, usize::MAX).await.unwrap();
    read.iter().map(|e| e.seq()).collect()
}

/// The byte offsets where each frame of the log's current round starts, and its end: frames
/// end where the seqs stop following each other (the zeros the log is created with, or the
/// frames of an earlier round, whose seqs are lower). (No CRC check: the store's own scan
/// checks those; the tests damage frames on purpose.)
fn frame_starts(log: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = HEADER;
    let mut last: Option<u64> = None;
    while pos + 16 <= log.len() {
        let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(log[pos + 8..pos + 16].try_into().unwrap());
        if seq == 0 || last.is_some_and(|l| l + 1 != seq) {
            break;
        }
        starts.push(pos);
        last = Some(seq);
        pos += 16 + len;
    }
    starts.push(pos);
    starts
}

/// Frames in the log's current round.
fn frames_in(path: &Path) -> usize {
    frame_starts(&std::fs::read(log_path(path)).unwrap()).len() - 1
}

/// A store with events 1..=n acknowledged and left in the log only, then crashed.
async fn crashed_with_tail(path: &Path, n: u64) {
    let store = durable(path);
    store.hold_index(true);
    append_each(&store, 1..=n).await;
    assert_eq!(
        store.unindexed(),
        n as usize,
        "the events are in the log only"
    );
    store.simulate_crash();
    let log = std::fs::read(log_path(path)).unwrap();
    assert_eq!(
        frame_starts(&log).len(),
        n as usize + 1,
        "one frame per event"
    );
}

#[tokio::test]
async fn acknowledged_events_survive_a_crash_at_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");

    // 1. In the log only: the next open indexes them.
    crashed_with_tail(&path, 20).await;
    let logged = std::fs::read(log_path(&path)).unwrap();
    let store = durable(&path);
    assert_eq!(store.last_seq(), 20);
    assert_eq!(store.unindexed(), 0);
    assert_eq!(seqs(&store).await, (1..=20).collect::<Vec<_>>());
    let reopened = std::fs::read(log_path(&path)).unwrap();
    assert_ne!(
        reopened[8..HEADER],
        logged[8..HEADER],
        "indexed at open, then the log gets a new salt: its old frames are no longer its own"
    );
    drop(store);

    // 2. In redb with the log not reset (a crash between the durable commit and the reset):
    // nothing is indexed twice, and the next seq follows.
    std::fs::write(log_path(&path), &logged).unwrap();
    let store = durable(&path);
    assert_eq!(store.last_seq(), 20);
    assert_eq!(store.stats().events, 20);
    assert_eq!(seqs(&store).await, (1..=20).collect::<Vec<_>>());
    store.hold_index(true);
    append_each(&store, 21..=25).await;
    store.simulate_crash();

    // 3. A new round of frames over an earlier one (the log is reused, not truncated): the
    // earlier round's frames behind the new ones fail the seq check.
    let mut log = std::fs::read(log_path(&path)).unwrap();
    let end = *frame_starts(&log).last().unwrap();
    assert_eq!(frames_in(&path), 5);
    log.truncate(end);
    log.extend_from_slice(&logged[end..]);
    std::fs::write(log_path(&path), &log).unwrap();
    let store = durable(&path);
    assert_eq!(seqs(&store).await, (1..=25).collect::<Vec<_>>());
    assert_eq!(store.stats().events, 25);

    // 4. After the reset, a crash leaves nothing to recover and loses nothing.
    store.simulate_crash();
    let store = durable(&path);
    assert_eq!(seqs(&store).await, (1..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn fast_mode_keeps_what_the_log_holds_after_a_process_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = fast(&path);
    store.hold_index(true);
    append_each(&store, 1..=10).await;
    assert_eq!(store.unindexed(), 10);
    store.simulate_crash();
    // The process died, the kernel did not: the written log is all there.
    let store = fast(&path);
    assert_eq!(seqs(&store).await, (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_torn_tail_or_a_flipped_byte_drops_exactly_the_frames_from_the_damage_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    crashed_with_tail(&path, 10).await;
    let log = std::fs::read(log_path(&path)).unwrap();
    let starts = frame_starts(&log);
    let original = std::fs::read(&path).unwrap();

    // Torn: the last frame cut anywhere inside it.
    for cut in [starts[9] + 1, starts[9] + 15, starts[10] - 1] {
        std::fs::write(&path, &original).unwrap();
        std::fs::write(log_path(&path), &log[..cut]).unwrap();
        let store = durable(&path);
        assert_eq!(
            seqs(&store).await,
            (1..=9).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        drop(store);
    }
    // A flipped byte in frame 5 (header or event bytes): frames 5..=10 are dropped.
    for at in [starts[4], starts[4] + 5, starts[4] + 12, starts[5] - 1] {
        std::fs::write(&path, &original).unwrap();
        let mut bad = log.clone();
        bad[at] ^= 0x40;
        std::fs::write(log_path(&path), &bad).unwrap();
        let store = durable(&path);
        assert_eq!(
            seqs(&store).await,
            (1..=4).collect::<Vec<_>>(),
            "flip at {at}"
        );
        // What was dropped stays dropped: the log was reset, the next seq is 5.
        assert_eq!(store.last_seq(), 4);
        drop(store);
    }
}

#[tokio::test]
async fn reads_see_the_tail_and_redb_as_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = durable(&path);
    store.hold_index(true);
    append_each(&store, 1..=20).await;
    store.flush().await.unwrap();
    assert_eq!(store.unindexed(), 0, "a flush indexes the tail");
    append_each(&store, 21..=40).await;
    assert_eq!(store.unindexed(), 20);
    assert_eq!(seqs(&store).await, (1..=40).collect::<Vec<_>>());
    let stats = store.stats();
    assert_eq!((stats.events, stats.last_seq), (40, 40));
    for (after, limit) in [
        (0, 5),
        (15, 10),
        (19, 1),
        (20, 3),
        (30, 100),
        (40, 5),
        (99, 5),
    ] {
        let read = store.read_after(after, limit).await.unwrap();
        let got: Vec<u64> = read.iter().map(|e| e.seq()).collect();
        let want: Vec<u64> = (after + 1..=40).take(limit).collect();
        assert_eq!(got, want, "after {after}, limit {limit}");
    }
    // The byte bound holds across the boundary, and nothing is skipped after a cut.
    let size = store.read_after(0, 1).await.unwrap()[0].size();
    let mut after = 0;
    let mut all = Vec::new();
    loop {
        let limit = ReadLimit {
            events: 7,
            bytes: size * 3,
        };
        let chunk = store.read_chunk(after, limit).await.unwrap();
        let Some(last) = chunk.last() else { break };
        assert!(chunk.len() == 1 || chunk.iter().map(|e| e.size()).sum::<usize>() <= size * 3);
        after = last.seq();
        all.extend(chunk.iter().map(|e| e.seq()));
    }
    assert_eq!(all, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn keyed_batches_and_snapshots_are_exact_with_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = durable(&path);
    store.hold_index(true);
    // Even seqs carry a key, so the latest-per-key table has rows from the tail.
    append_each(&store, 1..=6).await;
    assert_eq!(store.unindexed(), 6);
    let scope = IdempotencyScope([3; 32]);
    store
        .append(
            vec![test_event(7), test_event(8)],
            Some(keyed_batch(scope, "order-1", 7, 2)),
        )
        .await
        .unwrap();
    assert_eq!(
        store.unindexed(),
        0,
        "a keyed append indexes the tail with its batch"
    );
    let found = store.find_keyed(&idem_key(scope, "order-1")).await.unwrap();
    assert_eq!(found.map(|k| (k.first_seq, k.count)), Some((7, 2)));
    assert_eq!(
        found_fingerprint(&store, scope).await,
        Some(Fingerprint([0xfe; 32]))
    );

    append_each(&store, 9..=12).await;
    assert_eq!(store.unindexed(), 4);
    let read = store.snapshot(&Selector::all(), usize::MAX).await.unwrap();
    assert_eq!(
        read.through, 12,
        "a snapshot is exact as of the last acknowledged event"
    );
    let rows: Vec<u64> = read.events.iter().map(|e| e.seq()).collect();
    assert_eq!(rows, vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(store.unindexed(), 0);

    // And after a crash with a tail, the rows come back with the events.
    append_each(&store, 13..=14).await;
    store.simulate_crash();
    let store = durable(&path);
    let read = store.snapshot(&Selector::all(), usize::MAX).await.unwrap();
    assert_eq!(read.through, 14);
    assert_eq!(read.events.last().map(|e| e.seq()), Some(14));
    assert_eq!(seqs(&store).await, (1..=14).collect::<Vec<_>>());
}

async fn found_fingerprint(store: &RedbStore, scope: IdempotencyScope) -> Option<Fingerprint> {
    store
        .find_keyed(&idem_key(scope, "order-1"))
        .await
        .unwrap()
        .map(|k| k.fingerprint)
}

#[tokio::test]
async fn retention_bounds_what_a_reader_sees_with_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let retention = Retention {
        max_events: Some(64),
        ..unbounded()
    };
    let store = open(&path, Durability::Durable, retention.clone());
    // Held: only retention makes the writer index.
    store.hold_index(true);
    // The bound plus its slack (64 / 64 = 1).
    for seq in 1..=300 {
        store.append(vec![test_event(seq)], None).await.unwrap();
        let stats = store.stats();
        assert!(stats.events <= 65, "{stats:?} after {seq}");
        assert_eq!(stats.trimmed_through + stats.events, seq);
    }
    let read = store.read_after(0, usize::MAX).await.unwrap();
    assert!(read.len() <= 65);
    assert_eq!(read.last().map(|e| e.seq()), Some(300));
    store.flush().await.unwrap();
    assert_eq!(store.stats().events, 64);
    drop(store);
    let store = open(&path, Durability::Durable, retention);
    assert_eq!(store.stats().events, 64);
    assert_eq!(store.trimmed_through(), 236);
}

#[tokio::test]
async fn indexing_on_its_own_empties_the_tail_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let store = durable(&path);
    append_each(&store, 1..=5).await;
    // The writer indexes a tail older than its bound without any request (poll, no sleep).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.unindexed() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.unindexed(), 0);
    assert_eq!(seqs(&store).await, (1..=5).collect::<Vec<_>>());
    // The indexed round stays in the reused log; a crash now indexes nothing twice.
    store.simulate_crash();
    let store = durable(&path);
    assert_eq!(seqs(&store).await, (1..=5).collect::<Vec<_>>());
    assert_eq!(store.stats().events, 5);
}

#[tokio::test]
async fn verify_reads_the_log_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    {
        let store = durable(&path);
        append_each(&store, 1..=3).await;
    }
    // A clean close leaves nothing in the log; then a crash leaves a tail.
    crashed_tail_over(&path, 4..=6).await;
    // redb itself was closed by the crash hook without a repair pending (durable commits).
    let report = tidings_store_redb::verify::verify(dir.path()).unwrap();
    assert_eq!(report.expected, 1..=6);
    assert_eq!(report.readable, 6);
    assert_eq!(report.log_events, 3);
    assert!(report.is_intact(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("3 acknowledged events not yet in the file"),
        "{text}"
    );

    std::fs::write(log_path(&path), b"something else entirely").unwrap();
    let report = tidings_store_redb::verify::verify(dir.path()).unwrap();
    assert!(!report.is_intact());
    assert!(report.to_string().contains("the log cannot be read"));
}

async fn crashed_tail_over(path: &Path, seqs: std::ops::RangeInclusive<u64>) {
    let store = durable(path);
    store.hold_index(true);
    append_each(&store, seqs).await;
    store.simulate_crash();
}

#[derive(Debug, Clone)]
enum Op {
    /// Append this many events in one batch.
    Append(u8),
    /// Stop as a crash would.
    Crash,
    /// Close cleanly and reopen.
    Reopen,
    /// Read after the given fraction of the last seq, at most this many.
    Read(u8, u8),
    /// Let the writer index on its own again, or hold it.
    Hold(bool),
    /// Flush.
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Append),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
        2 => (0u8..=10, 1u8..20).prop_map(|(a, l)| Op::Read(a, l)),
        1 => any::<bool>().prop_map(Op::Hold),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the order of appends, crashes, reopens and reads, the store holds exactly
    /// the acknowledged events, once each, in order, in durable and in fast mode.
    #[test]
    fn random_appends_crashes_and_reads_equal_a_model(
        ops in proptest::collection::vec(op(), 1..24),
        fast_mode in any::<bool>(),
    ) {
        // (A crash of the process keeps what fast mode wrote: it is in the kernel's cache.)
        let open = |path: &Path| if fast_mode { fast(path) } else { durable(path) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("events.redb");
            let mut model: Vec<u64> = Vec::new();
            let mut store = Some(open(&path));
            for op in ops {
                let s = store.as_ref().unwrap();
                match op {
                    Op::Append(n) => {
                        let first = model.last().copied().unwrap_or(0) + 1;
                        let events = (first..first + u64::from(n)).map(test_event).collect();
                        s.append(events, None).await.unwrap();
                        model.extend(first..first + u64::from(n));
                    }
                    Op::Crash => {
                        store.take().unwrap().simulate_crash();
                        store = Some(open(&path));
                    }
                    Op::Reopen => {
                        drop(store.take());
                        store = Some(open(&path));
                    }
                    Op::Read(at, limit) => {
                        let last = model.last().copied().unwrap_or(0);
                        let after = last * u64::from(at) / 10;
                        let got: Vec<u64> = s
                            .read_after(after, usize::from(limit))
                            .await
                            .unwrap()
                            .iter()
                            .map(|e| e.seq())
                            .collect();
                        let want: Vec<u64> = model
                            .iter()
                            .copied()
                            .filter(|&q| q > after)
                            .take(usize::from(limit))
                            .collect();
                        assert_eq!(got, want, "read after {after}");
                    }
                    Op::Hold(h) => {
                        s.hold_index(h);
                    }
                    Op::Flush => {
                        s.flush().await.unwrap();
                        assert_eq!(s.unindexed(), 0);
                    }
                }
                let s = store.as_ref().unwrap();
                assert_eq!(s.stats().events, model.len() as u64);
                assert_eq!(s.stats().last_seq, model.last().copied().unwrap_or(0));
            }
            let s = store.take().unwrap();
            assert_eq!(seqs(&s).await, model);
            s.simulate_crash();
            let s = open(&path);
            assert_eq!(s.last_seq(), model.last().copied().unwrap_or(0));
            assert_eq!(seqs(&s).await, model);
        });
    }
}

#[tokio::test]
async fn snapshot_rules_apply_to_recovered_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let rules = SnapshotRules {
        max_keys: 2,
        ..SnapshotRules::default()
    };
    {
        let store = RedbStore::open(tidings_store_redb::StoreConfig {
            snapshot: rules.clone(),
            ..config(&path, Durability::Durable, unbounded())
        })
        .unwrap();
        store.hold_index(true);
        append_each(&store, 1..=8).await;
        store.simulate_crash();
    }
    let store = RedbStore::open(tidings_store_redb::StoreConfig {
        snapshot: rules,
        ..config(&path, Durability::Durable, unbounded())
    })
    .unwrap();
    let read = store.snapshot(&Selector::all(), usize::MAX).await.unwrap();
    let rows: Vec<u64> = read.events.iter().map(|e| e.seq()).collect();
    assert_eq!(
        rows,
        vec![6, 8],
        "the ceiling keeps the two keys updated last"
    );
}
