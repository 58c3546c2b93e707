//! `LateStore`: a store whose appends complete late and in whatever order the test picks, and
//! `hub_delivers_committed_prefix`, the check that a hub over it delivers in seq order and
//! only what the store has acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tidings_proto::{EventType, Pattern, Selector, Topic};
use tokio::sync::{oneshot, watch};

use crate::hub::Hub;
use crate::limits::Limits;
use crate::record::SharedEvent;
use crate::request::{NewEvent, PublishBatch, SubscribeRequest};
use crate::store::{BoxFuture, DynStore, EventStore, KeyedBatch, StoreError, StoreLayer};
use crate::subscription::{Step, Subscription};

/// Wraps a store. Each append goes to the inner store at once, in seq order as the contract
/// requires, but its future resolves only when `complete` is called for it, in any order:
/// a store that acknowledges late and out of order (a remote log, say).
#[derive(Debug)]
pub struct LateStore {
    inner: DynStore,
    state: Mutex<LateState>,
    /// How many appends wait for `complete`.
    waiting: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct LateState {
    /// By first seq: the inner append and the caller's answer.
    held: BTreeMap<u64, Held>,
    /// Seqs whose append has been acknowledged to the caller.
    acknowledged: BTreeSet<u64>,
}

#[derive(Debug)]
struct Held {
    last_seq: u64,
    inner: InnerAppend,
    done: oneshot::Sender<Result<(), StoreError>>,
}

struct InnerAppend(BoxFuture<'static, Result<(), StoreError>>);

impl std::fmt::Debug for InnerAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InnerAppend")
    }
}

impl LateStore {
    /// A late store in front of `inner`.
    pub fn new(inner: DynStore) -> Arc<LateStore> {
        Arc::new(LateStore {
            inner,
            state: Mutex::new(LateState::default()),
            waiting: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until at least `n` appends wait for `complete`.
    pub async fn wait_appends(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        // The sender lives as long as `self`, so this cannot fail while it is borrowed.
        if rx.wait_for(|&w| w >= n).await.is_err() {
            unreachable!("the store owns the sender");
        }
    }

    /// First seqs of the appends waiting for `complete`, in seq order.
    pub fn waiting(&self) -> Vec<u64> {
        self.lock().held.keys().copied().collect()
    }

    /// Completes the append whose first event is `first_seq`: waits for the inner store, then
    /// answers the caller. `false` if no such append waits.
    pub async fn complete(&self, first_seq: u64) -> bool {
        let (held, left) = {
            let mut st = self.lock();
            let Some(held) = st.held.remove(&first_seq) else {
                return false;
            };
            (held, st.held.len())
        };
        self.waiting.send_replace(left);
        let result = held.inner.0.await;
        if result.is_ok() {
            self.lock().acknowledged.extend(first_seq..=held.last_seq);
        }
        // The caller may have gone; the outcome is recorded either way.
        if held.done.send(result).is_err() {
            tracing::trace!("A held append was answered after its caller left.");
        }
        true
    }

    /// Whether the append holding `seq` has been acknowledged.
    pub fn is_acknowledged(&self, seq: u64) -> bool {
        self.lock().acknowledged.contains(&seq)
    }
}

impl StoreLayer for LateStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return self.inner.append(events, keyed);
        };
        let (first_seq, last_seq) = (first.seq(), last.seq());
        let inner = InnerAppend(self.inner.append(events, keyed));
        let (done, rx) = oneshot::channel();
        let n = {
            let mut st = self.lock();
            st.held.insert(
                first_seq,
                Held {
                    last_seq,
                    inner,
                    done,
                },
            );
            st.held.len()
        };
        self.waiting.send_replace(n);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Closed)) })
    }
}

fn batch(count: usize) -> PublishBatch {
    let event = || NewEvent {
        topic: Topic::new("late/1").expect("valid topic"),
        event_type: EventType::new("tick").expect("valid type"),
        key: None,
        data: RawValue::from_string("{}".into()).expect("valid JSON"),
    };
    PublishBatch {
        events: (0..count).map(|_| event()).collect(),
        origin: None,
        idempotency_key: None,
    }
}

/// Seqs a subscription has ready now (live events need no waiting); panics on any other step.
async fn ready_now(sub: &mut Subscription) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::ZERO, sub.next(&mut out)).await {
            Err(_) => return seqs,
            Ok(Step::Events) => seqs.extend(out.iter().map(|e| e.seq())),
            Ok(other) => panic!("unexpected step {other:?}"),
        }
    }
}

/// Publishes `sizes` (one batch each, in order) through a hub over `store`, waiting after each
/// until its append reached the store, so batch `i` holds the `i`-th run of seqs after `after`.
async fn publish_all(hub: &Hub, store: &LateStore, after: u64, sizes: &[usize]) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut next = after + 1;
    let waiting = store.waiting().len();
    for (i, &size) in sizes.iter().enumerate() {
        let hub = hub.clone();
        tokio::spawn(async move { hub.publish(batch(size)).await });
        store.wait_appends(waiting + i + 1).await;
        runs.push((next, next + size as u64 - 1));
        next += size as u64;
    }
    runs
}

/// Checks a hub over `LateStore::new(make())` (a fresh, empty store): whatever order the store
/// completes appends in, subscribers get events in seq order, with no gap, and only events the
/// store has acknowledged, together with every event before them. Panics naming the rule
/// broken.
pub async fn hub_delivers_committed_prefix(make: impl Fn() -> DynStore) {
    let store = LateStore::new(make());
    let hub = Hub::new(store.clone(), Limits::default());
    let selector = Selector {
        patterns: vec![Pattern::All],
        types: vec![],
    };
    let request = |cursor| SubscribeRequest {
        selector: selector.clone(),
        cursor,
        client_id: None,
    };
    let mut live = hub.subscribe(request(None)).expect("subscribe");

    // Completed last-first: nothing may be delivered until the first completes.
    let runs = publish_all(&hub, &store, 0, &[1, 3, 1, 2, 1]).await;
    for &(first, _) in runs.iter().skip(1).rev() {
        assert!(store.complete(first).await, "append {first} waits");
        assert!(
            ready_now(&mut live).await.is_empty(),
            "nothing is delivered while an earlier batch is not acknowledged"
        );
        assert_eq!(hub.stats().head, 0, "the head waits for the first batch");
    }
    let mut fresh = hub
        .subscribe(request(Some(tidings_proto::Cursor::Earliest)))
        .expect("subscribe");
    assert_eq!(
        fresh.handoff().seq,
        0,
        "a new subscriber's handoff waits too"
    );
    assert!(store.complete(runs[0].0).await);
    let total = runs.last().map_or(0, |r| r.1);
    let want: Vec<u64> = (1..=total).collect();
    assert_eq!(
        ready_now(&mut live).await,
        want,
        "once the first completes, everything is delivered in seq order"
    );
    assert_eq!(ready_now(&mut fresh).await, want, "live after the handoff");

    // Shuffled completions: after each, exactly the acknowledged prefix has been delivered.
    let sizes: Vec<usize> = (0..40).map(|i| 1 + (i * 7) % 4).collect();
    let runs = publish_all(&hub, &store, total, &sizes).await;
    let mut order: Vec<u64> = runs.iter().map(|r| r.0).collect();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..order.len()).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        order.swap(i, (rng % (i as u64 + 1)) as usize);
    }
    let mut delivered = total;
    for first in order {
        assert!(store.complete(first).await, "append {first} waits");
        let got = ready_now(&mut live).await;
        for &seq in &got {
            assert!(
                store.is_acknowledged(seq),
                "event {seq} was delivered before the store acknowledged it"
            );
        }
        let want: Vec<u64> = (delivered + 1..=delivered + got.len() as u64).collect();
        assert_eq!(got, want, "delivered in seq order, without a gap");
        delivered += got.len() as u64;
        assert!(
            !store.is_acknowledged(delivered + 1),
            "event {} was acknowledged (with all before it) but not delivered",
            delivered + 1
        );
        assert_eq!(
            hub.stats().head,
            delivered,
            "the head is what was delivered"
        );
    }
    assert_eq!(
        delivered,
        runs.last().map_or(0, |r| r.1),
        "every batch was delivered in the end"
    );
}
