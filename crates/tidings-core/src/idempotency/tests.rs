//! Tests of the idempotency cache (ranges, both bounds, eviction order, scopes, settling),
//! the fingerprint, and the hub's use of scopes and bounds.

use std::sync::Arc;

use tidings_proto::Epoch;

use super::*;
use crate::error::PublishError;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::request::PublishBatch;
use crate::store::{MemoryStore, Retention};

fn ev(topic: &str, data: &str) -> NewEvent {
    NewEvent {
        topic: tidings_proto::Topic::new(topic).unwrap(),
        event_type: tidings_proto::EventType::new("t").unwrap(),
        key: None,
        data: serde_json::value::RawValue::from_string(data.to_owned()).unwrap(),
    }
}

fn scope(n: u8) -> IdempotencyScope {
    IdempotencyScope([n; 32])
}

fn key(scope: IdempotencyScope, key: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope,
        key: key.to_owned(),
    }
}

fn entry(first_seq: u64, count: u32) -> Entry {
    Entry {
        fingerprint: Fingerprint([first_seq as u8; 32]),
        first_seq,
        count,
        positions: None,
        outcome: None,
    }
}

/// The cost of a key of `len` bytes.
fn cost(len: usize) -> usize {
    len + IdempotencyCache::ENTRY_OVERHEAD
}

#[test]
fn a_key_remembers_a_range_whatever_the_batch_size() {
    let mut cache = IdempotencyCache::new(10, 1 << 20);
    cache.insert(key(scope(1), "small"), entry(5, 1));
    let one = cache.bytes();
    cache.insert(key(scope(1), "large"), entry(6, 1000));
    assert_eq!(
        cache.bytes(),
        2 * one,
        "a 1,000-event batch costs what a 1-event one does"
    );
    let large = cache.get(&key(scope(1), "large")).unwrap();
    let ids: Vec<EventId> = large.ids(Epoch(9)).into_iter().flatten().collect();
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[0], EventId::new(Epoch(9), 6));
    assert_eq!(ids[999], EventId::new(Epoch(9), 1005));
    assert!(ids.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // Near the top of the seq space the range still ends where it should.
    assert_eq!(ids_of_range(u64::MAX - 1, 2), vec![u64::MAX - 1, u64::MAX]);
}

fn ids_of_range(first_seq: u64, count: u32) -> Vec<u64> {
    ids(Epoch(0), first_seq, count)
        .iter()
        .map(|id| id.seq)
        .collect()
}

#[test]
fn the_overhead_is_what_the_limits_document() {
    // `Limits::idempotency_cache_bytes` says "about 170 bytes"; this keeps it honest.
    let overhead = IdempotencyCache::ENTRY_OVERHEAD;
    assert!((150..=250).contains(&overhead), "{overhead}");
    // And the default byte bound holds the default count of 100-byte keys.
    let limits = Limits::default();
    assert!(limits.idempotency_keys * cost(100) <= limits.idempotency_cache_bytes);
}

#[test]
fn the_count_bound_forgets_the_oldest_first() {
    let mut cache = IdempotencyCache::new(3, usize::MAX);
    for (i, k) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        cache.insert(key(scope(1), k), entry(i as u64 + 1, 1));
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.len(), 3);
    for gone in ["a", "b"] {
        assert!(cache.get(&key(scope(1), gone)).is_none(), "{gone}");
    }
    for kept in ["c", "d", "e"] {
        assert!(cache.get(&key(scope(1), kept)).is_some(), "{kept}");
    }
    assert_eq!(cache.bytes(), 3 * cost(1));

    let mut none = IdempotencyCache::new(0, usize::MAX);
    none.insert(key(scope(1), "a"), entry(1, 1));
    assert_eq!((none.len(), none.bytes()), (0, 0));
}

#[test]
fn the_byte_bound_forgets_the_oldest_first_and_counts_key_length() {
    // Room for three 10-byte keys, whatever the count bound says.
    let max = 3 * cost(10);
    let mut cache = IdempotencyCache::new(1000, max);
    let k = |i: usize| key(scope(1), &format!("key-{i:06}"));
    assert_eq!(k(0).key.len(), 10);
    for i in 0..10 {
        cache.insert(k(i), entry(i as u64 + 1, 1));
        assert!(cache.bytes() <= max, "{} > {max}", cache.bytes());
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.get(&k(6)).is_none());
    assert!(cache.get(&k(7)).is_some() && cache.get(&k(9)).is_some());

    // A long key takes the room of several short ones: the two oldest go.
    let long = key(scope(1), &"x".repeat(10 + cost(10)));
    cache.insert(long.clone(), entry(100, 1));
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&k(7)).is_none() && cache.get(&k(8)).is_none());
    assert!(cache.get(&k(9)).is_some() && cache.get(&long).is_some());
    assert_eq!(cache.bytes(), cost(10) + cost(long.key.len()));
    assert!(cache.bytes() <= max);

    // A key larger than the whole bound is not remembered, and evicts nothing.
    let huge = key(scope(1), &"y".repeat(max));
    cache.insert(huge.clone(), entry(200, 1));
    assert!(cache.get(&huge).is_none());
    assert_eq!(cache.len(), 2);
}

#[test]
fn the_same_key_in_two_scopes_is_two_keys() {
    let mut cache = IdempotencyCache::new(10, usize::MAX);
    cache.insert(key(scope(1), "order-1"), entry(1, 2));
    cache.insert(key(scope(2), "order-1"), entry(3, 1));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&key(scope(1), "order-1")).unwrap().first_seq, 1);
    assert_eq!(cache.get(&key(scope(2), "order-1")).unwrap().first_seq, 3);
    assert!(
        cache
            .get(&key(IdempotencyScope::ANONYMOUS, "order-1"))
            .is_none()
    );
    // Debug output (which reaches logs) says nothing about the credential.
    assert_eq!(format!("{:?}", scope(1)), "IdempotencyScope(..)");
    assert_eq!(
        format!("{:?}", IdempotencyScope::ANONYMOUS),
        "IdempotencyScope(anonymous)"
    );
    cache.forget(&key(scope(1), "order-1"), 1);
    assert!(cache.get(&key(scope(1), "order-1")).is_none());
    assert!(cache.get(&key(scope(2), "order-1")).is_some());
    assert_eq!(cache.bytes(), cost("order-1".len()));
}

#[test]
fn settle_and_forget_touch_only_the_batch_they_name() {
    let mut cache = IdempotencyCache::new(10, usize::MAX);
    let (_tx, rx) = watch::channel(None);
    let k = key(scope(1), "k");
    cache.insert(
        k.clone(),
        Entry {
            outcome: Some(rx),
            ..entry(10, 1)
        },
    );
    // A batch that used the key before (and was forgotten) does not touch the new one.
    cache.settle(&k, 3);
    assert!(cache.get(&k).unwrap().outcome.is_some());
    cache.forget(&k, 3);
    assert!(cache.get(&k).is_some());
    cache.settle(&k, 10);
    assert!(
        cache.get(&k).unwrap().outcome.is_none(),
        "settling drops the channel"
    );
    cache.forget(&k, 10);
    assert!(cache.get(&k).is_none());
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    // The order was cleaned too: a new key is not evicted by a stale slot.
    let mut small = IdempotencyCache::new(1, usize::MAX);
    small.insert(k.clone(), entry(1, 1));
    small.forget(&k, 1);
    small.insert(k.clone(), entry(2, 1));
    assert_eq!(small.get(&k).unwrap().first_seq, 2);
}

#[test]
fn fingerprints_are_sha256_stable_and_separate_fields() {
    // Pinned: stores keep fingerprints on disk, so the function must never change. The
    // expected value is SHA-256 of the documented input, computed independently.
    let fp = fingerprint(&[ev("a", "1")], None);
    let hex: String = fp.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "d4cbf39018a9a2844380e1fa184d1661be8e2b434714aa3f04b2b64fc3fda917"
    );
    assert_ne!(
        fingerprint(&[ev("a1", "2")], None),
        fingerprint(&[ev("a", "12")], None)
    );
    assert_ne!(
        fingerprint(&[ev("a", "1")], Some("me")),
        fingerprint(&[ev("a", "1")], None)
    );
    assert_ne!(
        fingerprint(&[ev("a", "1"), ev("a", "1")], None),
        fingerprint(&[ev("a", "1")], None)
    );
    let mut keyed = ev("a", "1");
    keyed.key = Some(tidings_proto::Key::new("k").unwrap());
    assert_ne!(fingerprint(&[keyed], None), fp);
}

fn hub(limits: Limits) -> Hub {
    let retention = Retention {
        max_events: None,
        max_bytes: None,
        max_age: None,
    };
    Hub::new(Arc::new(MemoryStore::new(Epoch(7), retention)), limits)
}

fn keyed(scope: IdempotencyScope, k: &str, events: Vec<NewEvent>) -> PublishBatch {
    PublishBatch {
        events,
        origin: None,
        idempotency_key: Some(key(scope, k)),
    }
}

#[tokio::test]
async fn the_hub_keeps_scopes_apart() {
    let hub = hub(Limits::default());
    let a = hub
        .publish(keyed(scope(1), "k", vec![ev("t", "1"), ev("t", "2")]))
        .await
        .unwrap();
    let b = hub
        .publish(keyed(scope(2), "k", vec![ev("t", "3")]))
        .await
        .unwrap();
    assert_eq!(a.iter().map(|id| id.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(b.iter().map(|id| id.seq).collect::<Vec<_>>(), [3]);
    let retry = hub
        .publish(keyed(scope(1), "k", vec![ev("t", "1"), ev("t", "2")]))
        .await
        .unwrap();
    assert_eq!(retry, a);
    // Once delivered, a key keeps its range and fingerprint, not its channel.
    let settled = hub.with_idempotency(|c| {
        c.get(&key(scope(1), "k"))
            .is_some_and(|e| e.outcome.is_none() && (e.first_seq, e.count) == (1, 2))
    });
    assert!(settled, "a delivered key still holds its outcome channel");
    assert!(matches!(
        hub.publish(keyed(scope(2), "k", vec![ev("t", "1"), ev("t", "2")]))
            .await,
        Err(PublishError::IdempotencyConflict)
    ));
    assert_eq!(hub.stats().head, 3);
}

#[tokio::test]
async fn the_hub_forgets_by_bytes_in_memory_mode() {
    // Room for two keys of 8 bytes: the third publish forgets the first, whose retry then
    // publishes again (documented for `memory` mode; a durable store still finds it).
    let limits = Limits {
        idempotency_cache_bytes: 2 * cost(8),
        ..Limits::default()
    };
    let hub = hub(limits);
    for (i, k) in ["order-01", "order-02", "order-03"].into_iter().enumerate() {
        let ids = hub
            .publish(keyed(scope(1), k, vec![ev("t", &i.to_string())]))
            .await
            .unwrap();
        assert_eq!(ids[0].seq, i as u64 + 1);
    }
    let again = hub
        .publish(keyed(scope(1), "order-03", vec![ev("t", "2")]))
        .await
        .unwrap();
    assert_eq!(again[0].seq, 3, "a remembered key answers from the cache");
    let forgotten = hub
        .publish(keyed(scope(1), "order-01", vec![ev("t", "0")]))
        .await
        .unwrap();
    assert_eq!(forgotten[0].seq, 4, "the oldest key was forgotten");
}
