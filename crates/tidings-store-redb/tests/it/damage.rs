//! A damaged store file: flipped bytes in an event, and in a page redb navigates by. Reads
//! fail with `StoreError::Corrupt` (never a panic), poison the store, hand out what precedes
//! the damage, and `verify` reports the damaged seqs.

use std::path::Path;

use serde_json::value::RawValue;
use tidings_core::{EventRecord, EventStore, SharedEvent, StoreError};
use tidings_proto::{Epoch, Event, EventId, EventType, Topic};
use tidings_store_redb::verify::verify;

use crate::durable;

const EVENTS: u64 = 2000;

fn marker(seq: u64) -> String {
    format!("MARK-{seq:06}-END")
}

fn marked_event(seq: u64) -> SharedEvent {
    EventRecord::new(Event {
        id: EventId::new(Epoch(0), seq),
        topic: Topic::new("damage").unwrap(),
        event_type: EventType::new("tick").unwrap(),
        key: None,
        origin: None,
        time: 1_700_000_000_000,
        data: RawValue::from_string(format!(r#"{{"marker":"{}"}}"#, marker(seq))).unwrap(),
    })
}

/// A cleanly closed store holding events 1..=EVENTS, each with its unique marker.
async fn write_marked(path: &Path) {
    let store = durable(path);
    for first in (1..=EVENTS).step_by(500) {
        let events = (first..first + 500).map(marked_event).collect();
        store.append(events, None).await.unwrap();
    }
    store.flush().await.unwrap();
}

/// The file offset of event `seq`'s marker (it occurs exactly once).
fn marker_offset(file: &[u8], seq: u64) -> usize {
    let needle = marker(seq);
    let hits: Vec<usize> = file
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "marker of {seq} at {hits:?}");
    hits[0]
}

#[tokio::test]
async fn damaged_event_data_is_corrupt_poisons_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    write_marked(&path).await;
    let mut file = std::fs::read(&path).unwrap();
    let at = marker_offset(&file, 1500);
    // Bytes that are not UTF-8 where event 1500's data was.
    file[at..at + 4].copy_from_slice(&[0xff; 4]);
    std::fs::write(&path, &file).unwrap();

    let store = durable(&path);
    assert!(store.health().is_none(), "nothing is read at open");
    assert_eq!(store.read_after(0, 1024).await.unwrap().len(), 1024);
    // The chunk holding the damage hands out what precedes it...
    let before = store.read_after(1024, 1024).await.unwrap();
    assert_eq!(before.first().map(|e| e.seq()), Some(1025));
    assert_eq!(before.last().map(|e| e.seq()), Some(1499));
    // ...and the store is poisoned: the damage is what health reports.
    let health = store.health().expect("a damaged store is unhealthy");
    assert!(matches!(health, StoreError::Corrupt(_)), "{health}");
    assert!(health.to_string().contains("event 1500"), "{health}");
    let err = store.read_after(1499, 1024).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let refused = store.append(vec![marked_event(EVENTS + 1)], None).await;
    assert!(
        matches!(refused, Err(StoreError::Poisoned(_))),
        "{refused:?}"
    );
    drop(store);

    let report = verify(dir.path()).unwrap();
    assert_eq!(report.expected, 1..=EVENTS);
    assert_eq!(report.damaged, vec![1500..=1500], "{report}");
    assert_eq!(report.readable, EVENTS - 1);
    assert!(!report.is_intact());
    assert!(
        report.to_string().contains("damaged: seq 1500..=1500"),
        "{report}"
    );
}

/// A leaf page whose entry count is overwritten: redb indexes past the page and panics inside
/// the read. That must come back as `Corrupt`, and `verify` must step over the page.
#[tokio::test]
async fn a_page_that_makes_redb_panic_is_corrupt_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    write_marked(&path).await;
    let mut file = std::fs::read(&path).unwrap();
    let at = marker_offset(&file, 700);
    let page = at - at % 4096;
    assert_eq!(file[page], 1, "event 700 sits in a 4 KiB leaf page");
    file[page + 2..page + 4].copy_from_slice(&[0xff, 0xff]);
    std::fs::write(&path, &file).unwrap();

    let store = durable(&path);
    let mut after = 0;
    let err = loop {
        match store.read_after(after, 1024).await {
            Ok(chunk) => after = chunk.last().expect("the damage stops the reads").seq(),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(after < 700, "read past the damaged page to {after}");
    assert!(store.health().is_some());
    drop(store);

    let report = verify(&path).unwrap();
    assert_eq!(report.damaged.len(), 1, "{report}");
    let damaged = &report.damaged[0];
    assert!(damaged.contains(&700), "{report}");
    assert!(
        report.damaged_events() < 100,
        "one leaf, not the rest: {report}"
    );
    assert_eq!(report.readable + report.damaged_events(), EVENTS);
}

#[tokio::test]
async fn an_intact_store_verifies_and_an_open_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    write_marked(&path).await;
    let report = verify(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.readable, EVENTS);
    assert!(report.to_string().contains("ok: every event reads"));

    let _open = durable(&path);
    let err = verify(&path).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
}
