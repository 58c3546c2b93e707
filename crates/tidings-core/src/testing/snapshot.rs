//! `snapshot_conformance`: the latest-per-key table's contract (`EventStore::snapshot`),
//! run against every store: newest event per `(topic, key)` as of `through`, unkeyed events
//! left out, selector and type filters, delete types, the `max_keys` ceiling, the byte bound,
//! and rows that outlive the history retention trims.

use serde_json::value::RawValue;
use tidings_proto::{Epoch, Event, EventId, EventType, Key, Pattern, Selector, Topic};

use super::unbounded;
use crate::record::{EventRecord, SharedEvent};
use crate::store::{DynStore, Retention, SnapshotRead, SnapshotRules};

/// An event `seq` on `topic` of type `ty` with key `key` (none if empty), in `epoch`.
pub fn keyed_event(epoch: Epoch, seq: u64, topic: &str, ty: &str, key: &str) -> SharedEvent {
    EventRecord::new(Event {
        id: EventId::new(epoch, seq),
        topic: Topic::new(topic).expect("valid topic"),
        event_type: EventType::new(ty).expect("valid type"),
        key: (!key.is_empty()).then(|| Key::new(key).expect("valid key")),
        origin: None,
        time: crate::clock::now_ms(),
        data: RawValue::from_string(format!(r#"{{"seq":{seq}}}"#)).expect("valid JSON"),
    })
}

fn selector(patterns: &[&str], types: &[&str]) -> Selector {
    Selector {
        patterns: patterns
            .iter()
            .map(|p| Pattern::parse(p).expect("valid pattern"))
            .collect(),
        types: types
            .iter()
            .map(|t| EventType::new(t).expect("valid type"))
            .collect(),
    }
}

async fn read(store: &DynStore, sel: &Selector) -> SnapshotRead {
    store
        .snapshot(sel, usize::MAX)
        .await
        .expect("snapshot read succeeds")
}

/// `(seq, topic, key)` of each row read, in order.
fn rows(read: &SnapshotRead) -> Vec<(u64, String, String)> {
    read.events
        .iter()
        .map(|e| {
            (
                e.seq(),
                e.event.topic.as_str().to_owned(),
                e.event.key.as_ref().map_or("", |k| k.as_str()).to_owned(),
            )
        })
        .collect()
}

fn row(seq: u64, topic: &str, key: &str) -> (u64, String, String) {
    (seq, topic.to_owned(), key.to_owned())
}

/// Runs the latest-per-key contract against fresh, empty stores made by `make` (one per
/// scenario, with the retention and rules given). Panics naming the broken rule.
pub async fn snapshot_conformance(make: impl Fn(Retention, SnapshotRules) -> DynStore) {
    latest_per_key(&make(unbounded(), SnapshotRules::default())).await;
    delete_types(&make(
        unbounded(),
        SnapshotRules {
            delete_types: vec![EventType::new("removed").expect("valid type")],
            ..SnapshotRules::default()
        },
    ))
    .await;
    key_ceiling(&make(
        unbounded(),
        SnapshotRules {
            max_keys: 3,
            ..SnapshotRules::default()
        },
    ))
    .await;
    outlives_retention(&make(
        Retention {
            max_events: Some(2),
            ..unbounded()
        },
        SnapshotRules::default(),
    ))
    .await;
    byte_bound(&make(unbounded(), SnapshotRules::default())).await;
}

async fn latest_per_key(store: &DynStore) {
    let empty = read(store, &Selector::all()).await;
    assert_eq!(
        (empty.through, empty.events.len(), empty.overflow),
        (0, 0, false),
        "an empty store has an empty table"
    );
    let batch = vec![
        keyed_event(store.epoch(), 1, "downloads/a", "progress", "d1"),
        keyed_event(store.epoch(), 2, "downloads/a", "progress", "d2"),
        keyed_event(store.epoch(), 3, "downloads/a", "progress", ""),
        keyed_event(store.epoch(), 4, "downloads/b", "progress", "d1"),
    ];
    store.append(batch, None).await.expect("append succeeds");
    let batch = vec![
        keyed_event(store.epoch(), 5, "downloads/a", "complete", "d1"),
        keyed_event(store.epoch(), 6, "files", "modify", "/x"),
    ];
    store.append(batch, None).await.expect("append succeeds");
    let all = read(store, &Selector::all()).await;
    assert_eq!(all.through, 6, "through is the last stored seq");
    assert_eq!(
        rows(&all),
        vec![
            row(2, "downloads/a", "d2"),
            row(4, "downloads/b", "d1"),
            row(5, "downloads/a", "d1"),
            row(6, "files", "/x"),
        ],
        "newest event per (topic, key), in seq order; unkeyed events have no row; the same \
         key on two topics is two rows"
    );
    assert_eq!(
        all.events[2].event.event_type.as_str(),
        "complete",
        "a row holds the whole newest event"
    );
    assert_eq!(
        rows(&read(store, &selector(&["downloads/a"], &[])).await),
        vec![row(2, "downloads/a", "d2"), row(5, "downloads/a", "d1")],
        "an exact topic reads only its rows"
    );
    assert_eq!(
        rows(&read(store, &selector(&["downloads/*", "downloads/b"], &[])).await),
        vec![
            row(2, "downloads/a", "d2"),
            row(4, "downloads/b", "d1"),
            row(5, "downloads/a", "d1"),
        ],
        "a prefix reads its rows once, however many patterns cover them"
    );
    assert_eq!(
        rows(&read(store, &selector(&["*"], &["complete", "modify"])).await),
        vec![row(5, "downloads/a", "d1"), row(6, "files", "/x")],
        "the type filter applies to each key's newest event"
    );
    assert!(
        read(store, &selector(&["nothing"], &[]))
            .await
            .events
            .is_empty(),
        "a topic without rows reads nothing"
    );
    store.flush().await.expect("flush succeeds");
}

async fn delete_types(store: &DynStore) {
    let batch = vec![
        keyed_event(store.epoch(), 1, "downloads", "progress", "d1"),
        keyed_event(store.epoch(), 2, "downloads", "progress", "d2"),
        keyed_event(store.epoch(), 3, "downloads", "complete", "d2"),
        keyed_event(store.epoch(), 4, "downloads", "removed", "d1"),
        keyed_event(store.epoch(), 5, "downloads", "removed", "never-seen"),
    ];
    store.append(batch, None).await.expect("append succeeds");
    let all = read(store, &Selector::all()).await;
    assert_eq!(
        (all.through, rows(&all)),
        (5, vec![row(3, "downloads", "d2")]),
        "a delete type removes its key (and a delete of an unknown key adds nothing); \
         other types stay listed"
    );
    store
        .append(
            vec![keyed_event(store.epoch(), 6, "downloads", "progress", "d1")],
            None,
        )
        .await
        .expect("append succeeds");
    assert_eq!(
        rows(&read(store, &Selector::all()).await),
        vec![row(3, "downloads", "d2"), row(6, "downloads", "d1")],
        "a deleted key comes back with its next event"
    );
}

async fn key_ceiling(store: &DynStore) {
    for seq in 1..=3 {
        let key = format!("k{seq}");
        store
            .append(vec![keyed_event(store.epoch(), seq, "t", "e", &key)], None)
            .await
            .expect("append succeeds");
    }
    // k1 is updated, so k2 is now the one updated longest ago.
    store
        .append(vec![keyed_event(store.epoch(), 4, "t", "e", "k1")], None)
        .await
        .expect("append succeeds");
    let invented: Vec<SharedEvent> = (5..=50)
        .map(|seq| keyed_event(store.epoch(), seq, "t", "e", &format!("invented{seq}")))
        .collect();
    store.append(invented, None).await.expect("append succeeds");
    let all = read(store, &Selector::all()).await;
    assert_eq!(
        rows(&all),
        vec![
            row(48, "t", "invented48"),
            row(49, "t", "invented49"),
            row(50, "t", "invented50"),
        ],
        "at max_keys a new key evicts the key updated longest ago: the table never holds more"
    );
    store
        .append(
            vec![keyed_event(store.epoch(), 51, "t", "e", "invented49")],
            None,
        )
        .await
        .expect("append succeeds");
    assert_eq!(
        rows(&read(store, &Selector::all()).await),
        vec![
            row(48, "t", "invented48"),
            row(50, "t", "invented50"),
            row(51, "t", "invented49"),
        ],
        "updating a held key evicts nothing"
    );
}

async fn outlives_retention(store: &DynStore) {
    for seq in 1..=6 {
        let key = if seq <= 2 {
            format!("k{seq}")
        } else {
            String::new()
        };
        store
            .append(vec![keyed_event(store.epoch(), seq, "t", "e", &key)], None)
            .await
            .expect("append succeeds");
    }
    store.flush().await.expect("flush succeeds");
    assert!(
        store.trimmed_through() >= 2,
        "retention trimmed the keyed events' history"
    );
    let all = read(store, &Selector::all()).await;
    assert_eq!(
        (all.through, rows(&all)),
        (6, vec![row(1, "t", "k1"), row(2, "t", "k2")]),
        "a key's latest value is kept after its history is trimmed"
    );
}

async fn byte_bound(store: &DynStore) {
    let batch: Vec<SharedEvent> = (1..=10)
        .map(|seq| keyed_event(store.epoch(), seq, "t", "e", &format!("k{seq}")))
        .collect();
    let total: usize = batch.iter().map(|e| e.size()).sum();
    store.append(batch, None).await.expect("append succeeds");
    let cut = store
        .snapshot(&Selector::all(), total - 1)
        .await
        .expect("snapshot read succeeds");
    assert!(
        cut.overflow && cut.events.is_empty(),
        "a read over its byte bound says so and hands out nothing (never a partial snapshot)"
    );
    let whole = store
        .snapshot(&Selector::all(), total)
        .await
        .expect("snapshot read succeeds");
    assert!(
        !whole.overflow && whole.events.len() == 10,
        "a read that fits is whole"
    );
}
