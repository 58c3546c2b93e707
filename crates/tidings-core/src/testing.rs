//! Conformance suites every backend runs: `store_conformance` checks an `EventStore` against
//! the contract in `store.rs` (order, `read_after` semantics and limits, retention from the
//! front with a monotone `trimmed_through`, stats), `snapshot_conformance` the latest-per-key
//! table (`snapshot`), `hub_delivers_committed_prefix` checks a
//! hub over a store that completes appends late and out of order, plus helpers to build test
//! events and the test stores `HeldStore` (commits held) and `LateStore` (late completions).

mod held;
mod late;
mod snapshot;

pub use held::HeldStore;
pub use late::{LateStore, hub_delivers_committed_prefix};
pub use snapshot::{keyed_event, snapshot_conformance};

use std::time::Duration;

use serde_json::value::RawValue;
use tidings_proto::{Epoch, Event, EventId, EventType, Key, Topic};

use crate::record::{EventRecord, SharedEvent};
use crate::store::{DynStore, ReadLimit, Retention};

/// Retention with every bound off.
pub fn unbounded() -> Retention {
    Retention {
        max_events: None,
        max_bytes: None,
        max_age: None,
    }
}

/// A test event with seq `seq` in epoch 0, published now. Even seqs carry a key, seqs
/// divisible by 3 an origin, so optional fields are exercised.
pub fn test_event(seq: u64) -> SharedEvent {
    test_event_in(Epoch(0), seq, crate::clock::now_ms())
}

/// Like [`test_event`], published at `time` (ms since the Unix epoch).
pub fn test_event_at(seq: u64, time: u64) -> SharedEvent {
    test_event_in(Epoch(0), seq, time)
}

/// The test event `seq` with an id in `epoch` (as the hub builds it from the store's epoch),
/// published at `time`.
///
/// # Panics
/// Never for valid input: every name and the JSON are fixed and valid.
pub fn test_event_in(epoch: Epoch, seq: u64, time: u64) -> SharedEvent {
    let data = format!(
        r#"{{"seq":{seq},"pad":"{}"}}"#,
        "x".repeat((seq % 7) as usize)
    );
    EventRecord::new(Event {
        id: EventId::new(epoch, seq),
        topic: Topic::new(&format!("conformance/{}", seq % 3)).expect("valid topic"),
        event_type: EventType::new("tick").expect("valid type"),
        key: seq
            .is_multiple_of(2)
            .then(|| Key::new(&format!("k{seq}")).expect("valid key")),
        origin: seq
            .is_multiple_of(3)
            .then(|| Key::new("publisher-1").expect("valid key")),
        time,
        data: RawValue::from_string(data).expect("valid JSON"),
    })
}

/// The test event `seq` for `store`: in its epoch, published now.
fn event_for(store: &DynStore, seq: u64) -> SharedEvent {
    test_event_in(store.epoch(), seq, crate::clock::now_ms())
}

/// Runs the store contract against fresh, empty stores made by `make` (one per scenario,
/// with the retention given). Panics with a message naming the broken rule.
pub async fn store_conformance(make: impl Fn(Retention) -> DynStore) {
    empty_store(&make(unbounded())).await;
    order_and_read_after(&make(unbounded())).await;
    many_appends_in_flight(&make(unbounded())).await;
    retention_by_count(&make(Retention {
        max_events: Some(5),
        ..unbounded()
    }))
    .await;
    retention_by_bytes(&make(Retention {
        max_bytes: Some(2_000),
        ..unbounded()
    }))
    .await;
    retention_by_age(&make(Retention {
        max_age: Some(Duration::from_secs(60)),
        ..unbounded()
    }))
    .await;
}

async fn append(store: &DynStore, seqs: std::ops::RangeInclusive<u64>) {
    let events = seqs.map(|seq| event_for(store, seq)).collect();
    store.append(events, None).await.expect("append succeeds");
}

async fn seqs_after(store: &DynStore, after: u64, limit: usize) -> Vec<u64> {
    let events = store.read_after(after, limit).await.expect("read succeeds");
    events.iter().map(|e| e.seq()).collect()
}

async fn empty_store(store: &DynStore) {
    assert_eq!(store.last_seq(), 0, "a new store is empty");
    assert_eq!(
        store.trimmed_through(),
        0,
        "a new store has trimmed nothing"
    );
    assert!(
        seqs_after(store, 0, 10).await.is_empty(),
        "a new store reads nothing"
    );
    let stats = store.stats();
    assert_eq!(
        (stats.events, stats.bytes, stats.last_seq),
        (0, 0, 0),
        "empty stats"
    );
    assert!(store.health().is_none(), "a new store is healthy");
    store
        .flush()
        .await
        .expect("flush of an empty store succeeds");
}

async fn order_and_read_after(store: &DynStore) {
    append(store, 1..=1).await;
    append(store, 2..=4).await;
    append(store, 5..=10).await;
    store
        .append(Vec::new(), None)
        .await
        .expect("an empty append succeeds");

    let all = store.read_after(0, 100).await.expect("read succeeds");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq()).collect();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "everything, in seq order"
    );
    for got in &all {
        let want = test_event(got.seq());
        let (got, want) = (&got.event, &want.event);
        assert_eq!(
            got.id,
            EventId::new(store.epoch(), want.id.seq),
            "ids carry the store epoch"
        );
        assert_eq!(got.topic, want.topic, "topic kept");
        assert_eq!(got.event_type, want.event_type, "type kept");
        assert_eq!(got.key, want.key, "key (or its absence) kept");
        assert_eq!(got.origin, want.origin, "origin (or its absence) kept");
        assert_eq!(got.data.get(), want.data.get(), "data kept byte for byte");
    }

    assert_eq!(
        seqs_after(store, 4, 3).await,
        vec![5, 6, 7],
        "after is exclusive, limit holds"
    );
    assert_eq!(seqs_after(store, 9, 100).await, vec![10], "the tail");
    assert!(
        seqs_after(store, 10, 100).await.is_empty(),
        "nothing after the last"
    );
    assert!(
        seqs_after(store, 1000, 100).await.is_empty(),
        "nothing after the future"
    );
    assert!(
        seqs_after(store, u64::MAX, 100).await.is_empty(),
        "u64::MAX is fine"
    );
    assert!(
        seqs_after(store, 0, 0).await.is_empty(),
        "limit 0 reads nothing"
    );

    read_chunk_holds_its_byte_bound(store, &all).await;

    store.flush().await.expect("flush succeeds");
    let stats = store.stats();
    assert_eq!(stats.events, 10, "stats count events");
    assert_eq!(stats.last_seq, 10, "stats know the last seq");
    assert_eq!(stats.trimmed_through, 0, "nothing trimmed without bounds");
    assert!(stats.bytes > 0, "stats count bytes");
}

async fn many_appends_in_flight(store: &DynStore) {
    // Appends are issued in seq order (as the hub does, under its sequencer lock) but awaited
    // only afterwards, so the store has many in flight at once.
    let pending: Vec<_> = (1..=200)
        .map(|seq| store.append(vec![event_for(store, seq)], None))
        .collect();
    for done in pending {
        done.await.expect("every append in flight is acknowledged");
    }
    assert_eq!(
        seqs_after(store, 0, 1000).await,
        (1..=200).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(store.stats().last_seq, 200);
}

/// `read_chunk` stops before the event that would pass the byte bound (counted as
/// `EventRecord::size`), but always returns the first. `all` is events 1..=10 as stored.
async fn read_chunk_holds_its_byte_bound(store: &DynStore, all: &[SharedEvent]) {
    let chunk = |bytes: usize, events: usize| async move {
        let read = store
            .read_chunk(4, ReadLimit { events, bytes })
            .await
            .expect("read succeeds");
        read.iter().map(|e| e.seq()).collect::<Vec<_>>()
    };
    let two = all[4].size() + all[5].size();
    assert_eq!(chunk(two, 100).await, vec![5, 6], "exactly two events fit");
    assert_eq!(
        chunk(two - 1, 100).await,
        vec![5],
        "the second does not fit"
    );
    assert_eq!(chunk(1, 100).await, vec![5], "the first event always comes");
    assert_eq!(
        chunk(usize::MAX, 2).await,
        vec![5, 6],
        "the count bound holds"
    );
    assert!(
        chunk(usize::MAX, 0).await.is_empty(),
        "limit 0 reads nothing"
    );
}

/// Appends 1..=`n` one by one, checking after each flush that `trimmed_through` never goes
/// back and that what is readable is exactly the contiguous range after it.
async fn append_checking_front(store: &DynStore, n: u64) {
    let mut trimmed = 0;
    for seq in 1..=n {
        append(store, seq..=seq).await;
        store.flush().await.expect("flush succeeds");
        let now = store.trimmed_through();
        assert!(
            now >= trimmed,
            "trimmed_through is monotone ({trimmed} then {now})"
        );
        trimmed = now;
        let stats = store.stats();
        assert_eq!(stats.trimmed_through, now, "stats agree on trimmed_through");
        let seqs = seqs_after(store, 0, 1000).await;
        assert_eq!(
            seqs,
            (now + 1..=seq).collect::<Vec<_>>(),
            "retention removes from the front only"
        );
        assert_eq!(
            stats.events,
            seqs.len() as u64,
            "stats count what is readable"
        );
    }
}

async fn retention_by_count(store: &DynStore) {
    append_checking_front(store, 20).await;
    assert_eq!(store.stats().events, 5, "max_events holds after flush");
    assert_eq!(store.trimmed_through(), 15);
}

async fn retention_by_bytes(store: &DynStore) {
    append_checking_front(store, 60).await;
    let stats = store.stats();
    assert!(
        stats.bytes <= 2_000,
        "max_bytes holds after flush ({} bytes)",
        stats.bytes
    );
    assert!(stats.trimmed_through > 0, "something was trimmed");
    assert!(stats.events > 0, "the newest events are kept");
}

async fn retention_by_age(store: &DynStore) {
    let now = crate::clock::now_ms();
    let old = (1..=5)
        .map(|seq| test_event_in(store.epoch(), seq, now - 3_600_000))
        .collect();
    store.append(old, None).await.expect("append succeeds");
    append(store, 6..=7).await;
    store.flush().await.expect("flush succeeds");
    assert_eq!(
        store.trimmed_through(),
        5,
        "events older than max_age are gone"
    );
    assert_eq!(
        seqs_after(store, 0, 100).await,
        vec![6, 7],
        "recent events are kept"
    );
    assert_eq!(
        seqs_after(store, 2, 100).await,
        vec![6, 7],
        "a cursor below the trim skips"
    );
}
