//! Engine tests against stores that misbehave in time: one whose commits stall behind a full
//! queue (`HeldStore`), one that completes appends late and out of order (`LateStore`).

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::{Cursor, Epoch, EventType, Pattern, Selector, Topic};

use super::*;
use crate::request::NewEvent;
use crate::store::MemoryStore;
use crate::subscription::Step;
use crate::testing::{HeldStore, hub_delivers_committed_prefix, unbounded};

fn memory() -> DynStore {
    Arc::new(MemoryStore::new(Epoch(7), unbounded()))
}

fn one(data: usize) -> PublishBatch {
    PublishBatch {
        events: vec![NewEvent {
            topic: Topic::new("t").unwrap(),
            event_type: EventType::new("x").unwrap(),
            key: None,
            data: serde_json::value::RawValue::from_string(data.to_string()).unwrap(),
        }],
        origin: None,
        idempotency_key: None,
    }
}

fn all(cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::All],
            types: vec![],
        },
        cursor,
        client_id: None,
    }
}

/// Runs `f` on a plain thread and waits up to 5 s for it: a hub thread blocked on its lock
/// blocks that thread, not the test. On a timeout the store gives up, so the blocked threads
/// can finish, and the test fails naming `what`.
fn answers<T: Send + 'static>(
    store: &HeldStore,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(v) => v,
        Err(_) => {
            store.abandon();
            panic!("{what} did not answer within 5 s while the store's commits were held");
        }
    }
}

/// Waits up to 5 s for `sub`'s next events.
async fn next_seqs(sub: &mut Subscription) -> Vec<u64> {
    let mut out = Vec::new();
    let step = tokio::time::timeout(Duration::from_secs(5), sub.next(&mut out))
        .await
        .expect("events within 5 s");
    assert_eq!(step, Step::Events);
    out.iter().map(|e| e.seq()).collect()
}

/// Fault: `publish` used to call a blocking `append` under the hub's lock, so a full store
/// queue parked every thread that touched the hub. Now publishers wait for a queue place
/// before taking the lock, and everything else keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_parks_publishers_and_nothing_else() {
    const QUEUE: usize = 4;
    let store = HeldStore::new(memory(), QUEUE);
    let hub = Hub::new(store.clone(), Limits::default());
    let mut live = hub.subscribe(all(None)).unwrap();
    hub.publish(one(1)).await.unwrap();
    assert_eq!(next_seqs(&mut live).await, vec![1]);

    store.hold();
    let first = tokio::spawn({
        let hub = hub.clone();
        async move { hub.publish(one(2)).await }
    });
    store.wait_queued(1).await;
    // Five times the queue: most publishers find it full.
    let publishers: Vec<_> = (0..QUEUE * 5)
        .map(|i| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.publish(one(i + 3)).await })
        })
        .collect();
    store.wait_queued(QUEUE).await;
    // At least one publisher has run into the full queue.
    store.wait_full(1).await;

    let h = hub.clone();
    let stats = answers(&store, "stats", move || h.stats());
    assert_eq!(stats.head, 1, "nothing held is delivered");
    let h = hub.clone();
    assert!(answers(&store, "store_health", move || h.store_health()).is_none());
    let h = hub.clone();
    let mut fresh = answers(&store, "subscribe", move || {
        h.subscribe(all(Some(Cursor::Earliest)))
    })
    .expect("subscribe while commits are held");
    assert_eq!(next_seqs(&mut fresh).await, vec![1], "replay answers");
    answers(&store, "unsubscribe", move || drop(fresh));

    // One commit completes: its event is delivered while the rest stay held.
    assert!(store.commit_next().await);
    assert_eq!(next_seqs(&mut live).await, vec![2]);
    first.await.unwrap().unwrap();
    assert!(store.queued() >= QUEUE - 1, "the others are still held");

    store.release().await;
    for p in publishers {
        p.await.unwrap().unwrap();
    }
    let mut seqs = Vec::new();
    while seqs.len() < QUEUE * 5 {
        seqs.extend(next_seqs(&mut live).await);
    }
    assert_eq!(seqs, (3..=2 + QUEUE as u64 * 5).collect::<Vec<_>>());
}

/// Fault: the hub delivered every pending event up to the last seq of whichever batch
/// completed, relying on the store to complete in order.
#[tokio::test]
async fn late_out_of_order_completions_deliver_only_the_committed_prefix() {
    hub_delivers_committed_prefix(memory).await;
}
