//! `Hub`: the engine's handle. `publish` waits for room in the store's queue (outside any
//! lock), assigns ids (the one sequencer) and appends to the store, and once the store has
//! committed, fans the events out in id order. `subscribe` registers a subscription and fixes
//! its handoff point under the same lock as the fan-out.
//!
//! Delivery after store: every appended batch waits in `pending`, in seq order, until its
//! commit completes. Only the committed prefix of the batches is fanned out, so a store that
//! completes batches late or out of order never gets an event delivered before it, and every
//! event before it, is stored.
//!
//! Why the handoff has no gap and no duplicate: the fan-out of event `n` and the update of
//! `delivered` to `n` happen under the state lock, after `n` and everything before it are
//! committed to the store. A subscription registers under that lock and records
//! `until = delivered`. Every event with seq ≤ `until` was committed before registration, so
//! replay reads it from the store; every event with seq > `until` is fanned out after
//! registration, so it lands in the live queue. Replay stops at `until`, live starts after it.
//!
//! Why a snapshot's cursor resumes exactly: the store reads its latest-per-key table and the
//! seq `S` it is exact as of in one go (every event up to `S` is stored, none after it is in
//! the table). `snapshot` then waits until the hub has delivered through `S` (committed
//! events are always delivered, in order, moments later), so a subscription with cursor `S`
//! is accepted (never `cursor_ahead`) and replays exactly the events after `S`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tidings_proto::{Cursor, Epoch, EventId, Key, Pattern, Selector, Topic};
use tokio::sync::{Notify, watch};

use crate::bus::{BusError, DynBus, IngestError};
use crate::clock::{self, DynClock};
use crate::coalesce::{Coalescer, Coalescing, Out, Plan};
use crate::error::{PublishError, SnapshotError, SubscribeError};
use crate::idempotency::{self, Entry, Fingerprint, IdempotencyCache, IdempotencyKey};
use crate::limits::Limits;
use crate::record::SharedEvent;
use crate::registry::{self, Registry};
use crate::request::{PublishBatch, SubscribeRequest};
use crate::session::Sessions;
use crate::store::{AppendSlot, BoxFuture, DynStore, KeyedBatch, StoreError, StoreStats};
use crate::subscription::{
    CloseReason, Offered, ReplayTail, ResetReason, SessionStart, SubscriberQueue, Subscription,
    SubscriptionContext, Unregister,
};

/// Longest a clustered publish waits, after the log acknowledged it, for this hub to ingest
/// its events (normally a moment: the ordered consumer is already reading).
const CLUSTER_INGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One subscription a drain is to close (`Hub::drain`).
#[derive(Debug)]
pub struct DrainHandle(Arc<SubscriberQueue>);

impl DrainHandle {
    /// Ends the subscription with `reason` (after what is queued for it): `Reconnect` for a
    /// drain, `Shutdown` for a shutdown.
    pub fn close(&self, reason: CloseReason) {
        self.0.close(reason);
    }
}

/// Counters for metrics and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Epoch of every id.
    pub epoch: Epoch,
    /// Highest seq delivered to subscribers.
    pub head: u64,
    /// Events published since start.
    pub published: u64,
    /// Event deliveries handed to connections since start (live and replayed).
    pub delivered: u64,
    /// Of those, events read from history (replay).
    pub replayed: u64,
    /// Subscriptions open now.
    pub subscribers: usize,
    /// Client-id sessions held now (attached, or detached within their TTL).
    pub sessions: usize,
    /// Published events a `[[coalesce]]` window superseded or folded into a batch, since
    /// start (they were never sequenced themselves).
    pub coalesced: u64,
    /// Keys (`latest`) and paths (`merge`) coalescing windows hold now.
    pub coalescing_keys: usize,
    /// Queued deliveries a lagging subscriber's conflation dropped (a newer event of the
    /// same key replaced them), since start.
    pub conflated: u64,
    /// Deliveries refused because a subscriber's queue was full (it was closed as a slow
    /// consumer and resumes from history), since start.
    pub dropped: u64,
    /// The store's counts.
    pub store: StoreStats,
}

/// The engine. Cheap to clone; every clone is the same hub.
#[derive(Debug, Clone)]
pub struct Hub {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: DynStore,
    /// Cluster mode: the log that orders events (`None` on one node, where the hub does).
    bus: Option<DynBus>,
    pub(crate) epoch: Epoch,
    pub(crate) limits: Limits,
    /// Event timestamps come from here, never from the wall clock directly.
    clock: DynClock,
    /// All a subscription may use of the hub; one per hub, shared by every subscription.
    subs: Arc<SubscriptionContext>,
    /// The sequencer, the fan-out and the registry. Held for short synchronous sections only
    /// (assign ids, fan out one committed run, register); never across an await.
    state: Mutex<State>,
    next_sub_id: AtomicU64,
    published: AtomicU64,
    /// Woken after a delivery while a snapshot waits for the hub to catch up with its cursor.
    delivered_notify: Notify,
    /// Snapshots waiting on `delivered_notify` (the fan-out notifies only when some are).
    snapshot_waiters: AtomicUsize,
    /// The `[[coalesce]]` rules (their windows live in `State::coalescer`).
    coalescing: Coalescing,
    /// Woken when a coalescing window opens that closes before the others.
    coalesce_wake: Notify,
}

/// The newest event per key under a selector, as of `cursor` (`Hub::snapshot`).
#[derive(Debug)]
pub struct Snapshot {
    /// A subscription resuming after this id continues exactly where the snapshot ends.
    pub cursor: EventId,
    /// The newest event of each `(topic, key)`, in seq order.
    pub events: Vec<SharedEvent>,
    /// The share of the replay memory budget the events hold: drop it once they are written
    /// (or let go), so snapshots being sent count against the budget too.
    pub held: BudgetHeld,
}

/// A share of `Limits::replay_memory_bytes`, given back when dropped.
#[derive(Debug)]
pub struct BudgetHeld {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Counts a snapshot among `snapshot_waiters` while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Unregister for Shared {
    fn unregister(&self, queue: &SubscriberQueue) {
        let mut st = lock(&self.state);
        st.registry.remove(queue);
        // Under the lock, so `stats` counts every delivery exactly once: in a registered
        // queue's own counter, or here.
        st.retired_delivered += queue.delivered();
        if let Some(client_id) = &queue.client_id {
            let now = self.clock.now_ms();
            if st.sessions.detach(client_id, queue.id, now)
                && let Some(shared) = self.store.sessions().filter(|s| s.shared())
                && let Some((saved, attached)) = st.sessions.saved(client_id, now)
            {
                shared.session_changed(saved, attached);
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// Events sequenced and handed to the store, in seq order, not yet delivered.
    pending: VecDeque<SharedEvent>,
    /// The batches `pending` is made of, in seq order. The events of the committed prefix
    /// of batches are delivered as soon as it grows.
    batches: VecDeque<PendingBatch>,
    delivered_seq: u64,
    registry: Registry,
    /// Deliveries of subscriptions that have ended (live ones count in their queues).
    retired_delivered: u64,
    idempotency: IdempotencyCache,
    /// Client-id sessions; kept under this lock because opening one fixes its handoff.
    sessions: Sessions,
    shutting_down: bool,
    /// New subscriptions are refused (a drain); publishes go on.
    draining: bool,
    /// The open coalescing windows.
    coalescer: Coalescer,
    /// The most recently delivered events, for replays near the head (`fan_out` pushes each
    /// one under this lock; subscriptions read it under its own).
    tail: Arc<ReplayTail>,
    /// See `HubStats::conflated` and `HubStats::dropped`.
    conflated: u64,
    dropped: u64,
}

/// One appended batch waiting for its commit (and for every earlier batch's).
#[derive(Debug)]
struct PendingBatch {
    first_seq: u64,
    last_seq: u64,
    committed: bool,
}

impl State {
    /// Fans out the committed prefix of `pending`, in seq order; returns how many events.
    fn deliver_committed_prefix(&mut self) -> u64 {
        let mut n = 0;
        while self.batches.front().is_some_and(|b| b.committed) {
            let batch = self.batches.pop_front().expect("front checked");
            while self
                .pending
                .front()
                .is_some_and(|e| e.seq() <= batch.last_seq)
            {
                let event = self.pending.pop_front().expect("front checked");
                self.fan_out(&event);
                n += 1;
            }
        }
        n
    }

    /// Hands `event` to every matching subscription, keeps it in the replay tail and moves
    /// the head to it.
    #[inline]
    fn fan_out(&mut self, event: &SharedEvent) {
        let (conflated, dropped) = (&mut self.conflated, &mut self.dropped);
        self.registry
            .for_each_match(&event.event.topic, |sub| match sub.offer(event) {
                Offered::Queued => {}
                Offered::Conflated(n) => *conflated += n as u64,
                Offered::Dropped => *dropped += 1,
            });
        self.tail.push(event);
        self.delivered_seq = event.seq();
    }

    /// The pending batch whose first event is `first_seq`.
    fn batch_index(&self, first_seq: u64) -> Option<usize> {
        self.batches
            .binary_search_by_key(&first_seq, |b| b.first_seq)
            .ok()
    }
}

impl Hub {
    /// A hub over `store`, continuing after the store's last seq, on the wall clock.
    pub fn new(store: DynStore, limits: Limits) -> Hub {
        Hub::with_clock(store, limits, clock::system())
    }

    /// A hub over `store` that takes the time from `clock`.
    pub fn with_clock(store: DynStore, limits: Limits, clock: DynClock) -> Hub {
        Hub::with_coalescing(store, limits, clock, Coalescing::default())
    }

    /// A hub over `store` on `clock` that coalesces by `coalescing`'s rules. Whoever runs it
    /// closes the windows on time: wait for `next_coalesce_deadline` (or
    /// `coalesce_wakeup`), then call `flush_coalesced`.
    pub fn with_coalescing(
        store: DynStore,
        limits: Limits,
        clock: DynClock,
        coalescing: Coalescing,
    ) -> Hub {
        Hub::build(store, None, limits, clock, coalescing)
    }

    /// A hub of a cluster: `bus` (the shared log) orders what it publishes, `store` reads the
    /// same log's history, and events reach subscribers only through `ingest`, which whoever
    /// runs the hub feeds from the log, starting after `head()`. See `bus` for the contract.
    pub fn clustered(
        store: DynStore,
        bus: DynBus,
        limits: Limits,
        clock: DynClock,
        coalescing: Coalescing,
    ) -> Hub {
        Hub::build(store, Some(bus), limits, clock, coalescing)
    }

    fn build(
        store: DynStore,
        bus: Option<DynBus>,
        limits: Limits,
        clock: DynClock,
        coalescing: Coalescing,
    ) -> Hub {
        let last = store.last_seq();
        let tail = Arc::new(ReplayTail::new(limits.replay_cache_bytes, last));
        let mut state = State {
            next_seq: last + 1,
            pending: VecDeque::new(),
            batches: VecDeque::new(),
            delivered_seq: last,
            registry: Registry::default(),
            retired_delivered: 0,
            idempotency: IdempotencyCache::new(
                limits.idempotency_keys,
                limits.idempotency_cache_bytes,
            ),
            sessions: Sessions::new(limits.session_ttl_ms, limits.max_sessions),
            shutting_down: false,
            draining: false,
            coalescer: Coalescer::new(&coalescing),
            tail: Arc::clone(&tail),
            conflated: 0,
            dropped: 0,
        };
        // A shared store's sessions are read per client, when the client attaches.
        if let Some(saved) = store.sessions().filter(|s| !s.shared()) {
            match saved.load_sessions() {
                Ok(saved) => state.sessions.restore(saved, clock.now_ms()),
                // Sessions are a convenience over cursors: start without them, say so.
                Err(e) => tracing::warn!(message = "Could not read saved sessions.", error = %e),
            }
        }
        let shared = Arc::new_cyclic(|me: &std::sync::Weak<Shared>| {
            let registry: std::sync::Weak<dyn Unregister> = me.clone();
            Shared {
                epoch: store.epoch(),
                subs: Arc::new(SubscriptionContext::new(
                    store.clone(),
                    tail,
                    &limits,
                    registry,
                )),
                store,
                bus,
                limits,
                clock,
                state: Mutex::new(state),
                next_sub_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                delivered_notify: Notify::new(),
                snapshot_waiters: AtomicUsize::new(0),
                coalescing,
                coalesce_wake: Notify::new(),
            }
        });
        Hub { shared }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// The limits this hub enforces.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The epoch of every id this hub assigns.
    pub fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    /// The store's failure, if it has one (readiness).
    pub fn store_health(&self) -> Option<StoreError> {
        self.shared.store.health()
    }

    /// Publishes a batch: all events or none. Resolves with the ids once the store has the
    /// events (durably, in `durable` mode) and they have been handed to every matching
    /// subscription. Dropping the future after the batch was handed to the store still
    /// completes the delivery.
    ///
    /// An event a `[[coalesce]]` window holds has no id yet (and, if a newer one supersedes
    /// it, never will): it is left out here. `publish_each` says which event got which id.
    pub async fn publish(&self, batch: PublishBatch) -> Result<Vec<EventId>, PublishError> {
        Ok(self
            .publish_each(batch)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Publishes a batch like `publish`, answering one entry per event: its id, or `None`
    /// for an event a coalescing window holds (accepted; it goes out when its window closes,
    /// unless a newer event of its key supersedes it or it is folded into a `merge` batch).
    /// A retry with the same idempotency key gets the same answer.
    pub async fn publish_each(
        &self,
        mut batch: PublishBatch,
    ) -> Result<Vec<Option<EventId>>, PublishError> {
        let limits = &self.shared.limits;
        if batch.events.is_empty() {
            return Err(PublishError::Empty);
        }
        if batch.events.len() > limits.max_batch_events {
            return Err(PublishError::BatchTooLarge {
                count: batch.events.len(),
                max: limits.max_batch_events,
            });
        }
        for (i, e) in batch.events.iter().enumerate() {
            let size = e.data.get().len();
            if size > limits.max_data_bytes {
                let field = if batch.events.len() == 1 {
                    "data".to_owned()
                } else {
                    format!("events[{i}].data")
                };
                return Err(PublishError::EventTooLarge {
                    field,
                    size,
                    max: limits.max_data_bytes,
                });
            }
        }
        if let Some(key) = &batch.idempotency_key
            && key.key.len() > limits.max_idempotency_key_bytes
        {
            return Err(PublishError::IdempotencyKeyTooLong {
                size: key.key.len(),
                max: limits.max_idempotency_key_bytes,
            });
        }
        if let Some(bus) = &self.shared.bus {
            // Cluster mode: the log orders and deduplicates (by key, within its window).
            let fingerprint = batch.idempotency_key.as_ref().map(|_| {
                idempotency::fingerprint(&batch.events, batch.origin.as_ref().map(Key::as_str))
            });
            let plans = self.shared.coalescing.prepare(&mut batch.events);
            return self.publish_on_bus(bus, batch, plans, fingerprint).await;
        }
        let fingerprint = batch.idempotency_key.as_ref().map(|_| {
            idempotency::fingerprint(&batch.events, batch.origin.as_ref().map(Key::as_str))
        });
        if let (Some(key), Some(fp)) = (&batch.idempotency_key, fingerprint)
            && let Some(ids) = self.find_in_store(key, fp).await?
        {
            // The store keeps the batch's run of ids, not which event was held: a batch some
            // of whose events were coalesced answers its ids in order, then `None`s.
            let n = batch.events.len();
            let mut answer: Vec<Option<EventId>> = ids.into_iter().take(n).map(Some).collect();
            answer.resize(n, None);
            return Ok(answer);
        }
        // Keys from the rules' pointers, and what each event's window is to do, decided
        // before the lock (it may parse JSON).
        let plans = self.shared.coalescing.prepare(&mut batch.events);

        // Back-pressure: wait for room in the store's queue here, outside the lock, so a
        // stalled disk parks this publisher only, never a thread that fan-out, subscribe or
        // readiness need.
        let slot = self.shared.store.reserve().await?;
        let started = {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(PublishError::ShuttingDown);
            }
            if let (Some(key), Some(fp)) = (&batch.idempotency_key, fingerprint)
                && let Some(entry) = st.idempotency.get(key)
            {
                if entry.fingerprint != fp {
                    return Err(PublishError::IdempotencyConflict);
                }
                Started::Retry(entry.clone(), self.shared.epoch)
            } else {
                self.sequence(&mut st, batch, plans, fingerprint, slot)
            }
        };
        match started {
            Started::New(commit) => commit.wait().await,
            Started::Held(answer) => Ok(answer),
            Started::Retry(entry, epoch) => wait_for_original(entry, epoch).await,
        }
    }

    /// The time on the hub's clock, in ms (what `next_coalesce_deadline` is measured in).
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// When the next coalescing window closes (ms on the hub's clock), if one is open.
    pub fn next_coalesce_deadline(&self) -> Option<u64> {
        if self.shared.coalescing.is_empty() {
            return None;
        }
        self.lock().coalescer.next_deadline()
    }

    /// Resolves once a window opened that may close before the deadline last read (read it
    /// again). A wake-up that comes while nobody waits is kept for the next call.
    pub async fn coalesce_wakeup(&self) {
        self.shared.coalesce_wake.notified().await;
    }

    /// Lets out what the windows closed by now hold: sequenced, stored and delivered like a
    /// publish. Returns how many events went out.
    pub async fn flush_coalesced(&self) -> Result<usize, PublishError> {
        self.flush_windows(false).await
    }

    async fn flush_windows(&self, all: bool) -> Result<usize, PublishError> {
        if self.shared.coalescing.is_empty() {
            return Ok(0);
        }
        if let Some(bus) = &self.shared.bus {
            let published = {
                let mut st = self.lock();
                let now = self.shared.clock.now_ms();
                let outs = if all {
                    st.coalescer.flush_all()
                } else {
                    st.coalescer.flush_due(now)
                };
                if outs.is_empty() {
                    return Ok(0);
                }
                self.hand_to_bus(bus, outs, 0, None)
            };
            let n = published.inputs.len();
            self.await_bus(published).await?;
            return Ok(n);
        }
        let slot = self.shared.store.reserve().await?;
        let commit = {
            let mut st = self.lock();
            let now = self.shared.clock.now_ms();
            let outs = if all {
                st.coalescer.flush_all()
            } else {
                st.coalescer.flush_due(now)
            };
            if outs.is_empty() {
                return Ok(0);
            }
            let (commit, _) = self.append(&mut st, outs, 0, None, slot);
            commit
        };
        let n = commit.ids.len();
        commit.wait().await?;
        Ok(n)
    }

    /// A keyed batch this process does not remember may have been published before a
    /// restart: the store keeps keys as long as their events. (Checked before the state lock;
    /// a concurrent first publish with the same key is caught by the cache under the lock.)
    async fn find_in_store(
        &self,
        key: &IdempotencyKey,
        fp: Fingerprint,
    ) -> Result<Option<Vec<EventId>>, PublishError> {
        if self.lock().idempotency.get(key).is_some() {
            return Ok(None);
        }
        let Some(found) = self.shared.store.find_keyed(key).await? else {
            return Ok(None);
        };
        if found.fingerprint != fp {
            return Err(PublishError::IdempotencyConflict);
        }
        Ok(Some(idempotency::ids(
            self.shared.epoch,
            found.first_seq,
            found.count,
        )))
    }

    /// Passes `batch` through the coalescing windows, then assigns ids to what goes out and
    /// hands it to the store (under the state lock, so the store sees batches in seq order).
    /// `slot` is the queue place reserved for it, so `append` does not block.
    fn sequence(
        &self,
        st: &mut State,
        batch: PublishBatch,
        plans: Option<Vec<Plan>>,
        fingerprint: Option<Fingerprint>,
        slot: AppendSlot,
    ) -> Started {
        let n = batch.events.len();
        let outs = self.coalesce(st, batch.events, plans, &batch.origin);
        let keyed = match (&batch.idempotency_key, fingerprint) {
            (Some(key), Some(fp)) => Some((key, fp)),
            _ => None,
        };
        if outs.is_empty() {
            // Every event is held: nothing to store now.
            if let Some((key, fingerprint)) = keyed {
                let entry = Entry {
                    fingerprint,
                    first_seq: 0,
                    count: 0,
                    positions: Some(vec![u32::MAX; n].into()),
                    outcome: None,
                };
                st.idempotency.insert(key.clone(), entry);
            }
            return Started::Held(vec![None; n]);
        }
        let (mut commit, answer) = self.append(st, outs, n, keyed, slot);
        commit.key = batch.idempotency_key;
        commit.answer = answer;
        Started::New(commit)
    }

    /// Passes published events through the coalescing windows (with `plans`) and returns
    /// what goes out now, in order.
    fn coalesce(
        &self,
        st: &mut State,
        events: Vec<crate::request::NewEvent>,
        plans: Option<Vec<Plan>>,
        origin: &Option<Key>,
    ) -> Vec<Out> {
        match plans {
            None => events
                .into_iter()
                .enumerate()
                .map(|(i, event)| Out {
                    event,
                    origin: origin.clone(),
                    conflate: false,
                    input: Some(i),
                })
                .collect(),
            Some(plans) => {
                let before = st.coalescer.next_deadline();
                let now = self.shared.clock.now_ms();
                let outs = st.coalescer.ingest(now, events, plans, origin);
                let after = st.coalescer.next_deadline();
                if after.is_some() && (before.is_none() || after < before) {
                    self.shared.coalesce_wake.notify_one();
                }
                outs
            }
        }
    }

    /// Cluster mode's publish: through the coalescing windows under the lock, then into the
    /// log (still under the lock, so the log sees this node's publishes in the order the
    /// windows let them out); answers once the log acknowledged them and this hub ingested
    /// them, so the ids it answers can be resumed from here at once.
    async fn publish_on_bus(
        &self,
        bus: &DynBus,
        batch: PublishBatch,
        plans: Option<Vec<Plan>>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Vec<Option<EventId>>, PublishError> {
        let n = batch.events.len();
        let published = {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(PublishError::ShuttingDown);
            }
            let outs = self.coalesce(&mut st, batch.events, plans, &batch.origin);
            if outs.is_empty() {
                return Ok(vec![None; n]);
            }
            let key = batch.idempotency_key.as_ref().zip(fingerprint);
            self.hand_to_bus(bus, outs, n, key)
        };
        let inputs = published.inputs.clone();
        let ids = self.await_bus(published).await?;
        let mut answer = vec![None; n];
        for (input, id) in inputs.into_iter().zip(ids) {
            if let Some(i) = input {
                answer[i] = Some(id);
            }
        }
        Ok(answer)
    }

    /// Stamps `outs` and hands them to the bus (under the lock).
    fn hand_to_bus(
        &self,
        bus: &DynBus,
        outs: Vec<Out>,
        n: usize,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> OnBus {
        let time = self.shared.clock.now_ms();
        let unsequenced = EventId::new(self.shared.epoch, 0);
        let mut inputs = Vec::with_capacity(outs.len());
        let records = outs
            .into_iter()
            .map(|o| {
                inputs.push(o.input.filter(|i| *i < n));
                o.into_record(unsequenced, time)
            })
            .collect();
        OnBus {
            fut: bus.publish(records, key),
            inputs,
        }
    }

    /// Waits for the log's acknowledgement, then (for at most `CLUSTER_INGEST_WAIT`)
    /// for this hub to have ingested the events; the ids, in order.
    async fn await_bus(&self, published: OnBus) -> Result<Vec<EventId>, PublishError> {
        let seqs = published.fut.await.map_err(|e| match e {
            BusError::Store(e) => PublishError::Store(e),
            BusError::IdempotencyConflict => PublishError::IdempotencyConflict,
        })?;
        let epoch = self.shared.epoch;
        if let Some(&last) = seqs.iter().max() {
            // Acknowledged means stored in the log; the wait only lets the publisher resume
            // from its ids on this node at once. Past the bound it gets them anyway.
            self.await_head(last, CLUSTER_INGEST_WAIT).await;
        }
        Ok(seqs.into_iter().map(|s| EventId::new(epoch, s)).collect())
    }

    /// Cluster mode: whether this hub has a bus (events reach it through `ingest`).
    pub fn is_clustered(&self) -> bool {
        self.shared.bus.is_some()
    }

    /// Cluster mode: delivers events the log sequenced, in log order, each with its log
    /// sequence as seq. An event at or below the head is a redelivery and is skipped; a seq
    /// may skip numbers (the log deleted a message), never go back. Returns how many were
    /// delivered. Refuses (delivering none of the rest) an event of another epoch.
    pub fn ingest(
        &self,
        events: impl IntoIterator<Item = SharedEvent>,
    ) -> Result<u64, IngestError> {
        let epoch = self.shared.epoch;
        let mut st = self.lock();
        let mut n = 0;
        let mut result = Ok(());
        for event in events {
            if event.event.id.epoch != epoch.0 {
                result = Err(IngestError::Epoch {
                    id: event.event.id,
                    epoch: epoch.0,
                });
                break;
            }
            if event.seq() <= st.delivered_seq {
                continue;
            }
            st.fan_out(&event);
            n += 1;
        }
        drop(st);
        self.shared.published.fetch_add(n, Ordering::Relaxed);
        self.wake_snapshots(n);
        result.map(|()| n)
    }

    /// Waits up to `within` for the head to reach `seq`; whether it did. Cluster mode uses
    /// it so that a cursor seen on another node, a little ahead of this one, is caught up
    /// with instead of answered `cursor_ahead`.
    pub async fn await_head(&self, seq: u64, within: std::time::Duration) -> bool {
        if self.head() >= seq {
            return true;
        }
        tokio::time::timeout(within, self.wait_delivered(seq))
            .await
            .is_ok()
    }

    /// Assigns ids to `outs` (in order), hands them to the store, and remembers an
    /// idempotency key for them. Returns the commit and, per input event of the publish (`n`
    /// of them), its id.
    fn append(
        &self,
        st: &mut State,
        outs: Vec<Out>,
        n: usize,
        keyed: Option<(&IdempotencyKey, Fingerprint)>,
        slot: AppendSlot,
    ) -> (Commit, Vec<Option<EventId>>) {
        let time = self.shared.clock.now_ms();
        let epoch = self.shared.epoch;
        let mut answer = vec![None; n];
        let records: Vec<SharedEvent> = outs
            .into_iter()
            .map(|o| {
                let seq = st.next_seq;
                st.next_seq += 1;
                let id = EventId::new(epoch, seq);
                if let Some(i) = o.input {
                    answer[i] = Some(id);
                }
                o.into_record(id, time)
            })
            .collect();
        let ids: Vec<EventId> = records.iter().map(|r| r.event.id).collect();
        let first_seq = ids.first().map_or(0, |id| id.seq);
        st.pending.extend(records.iter().cloned());
        st.batches.push_back(PendingBatch {
            first_seq,
            last_seq: ids.last().map_or(0, |id| id.seq),
            committed: false,
        });
        let stored_key = keyed.map(|(key, fingerprint)| KeyedBatch {
            key: key.clone(),
            fingerprint,
            first_seq,
            count: ids.len() as u32,
        });
        // Called under the lock so the store sees batches in seq order.
        let fut = self.shared.store.append(records, stored_key);
        // Only a keyed publish can have retries waiting on its outcome.
        let mut outcome = None;
        if let Some((key, fingerprint)) = keyed {
            let (outcome_tx, outcome_rx) = watch::channel(None);
            // Where each event's id is in the run, unless it is simply the run.
            let simple = ids.len() == n && answer.iter().zip(&ids).all(|(a, id)| *a == Some(*id));
            let positions = (!simple).then(|| {
                answer
                    .iter()
                    .map(|a| a.map_or(u32::MAX, |id| (id.seq - first_seq) as u32))
                    .collect()
            });
            let entry = Entry {
                fingerprint,
                first_seq,
                count: ids.len() as u32,
                positions,
                outcome: Some(outcome_rx),
            };
            st.idempotency.insert(key.clone(), entry);
            outcome = Some(outcome_tx);
        }
        let commit = Commit {
            hub: self.clone(),
            fut: Some(fut),
            slot: Some(slot),
            ids,
            answer: Vec::new(),
            key: None,
            outcome,
        };
        (commit, answer)
    }

    /// Marks the batch starting at `first_seq` committed and fans out the committed prefix
    /// (which includes it only once every earlier batch has committed too).
    fn deliver_through(&self, first_seq: u64) {
        let mut st = self.lock();
        if let Some(i) = st.batch_index(first_seq) {
            st.batches[i].committed = true;
        }
        let n = st.deliver_committed_prefix();
        drop(st);
        self.shared.published.fetch_add(n, Ordering::Relaxed);
        self.wake_snapshots(n);
    }

    /// Wakes the snapshots waiting for delivery to reach their cursor, if any wait.
    fn wake_snapshots(&self, delivered: u64) {
        if delivered > 0 && self.shared.snapshot_waiters.load(Ordering::SeqCst) > 0 {
            self.shared.delivered_notify.notify_waiters();
        }
    }

    /// The newest event per key under `selector`, and the cursor it is exact as of: a
    /// subscription with `Last-Event-ID` = `cursor` continues from there with no gap and no
    /// duplicate (see the module docs). Bounded by `Limits::snapshot_max_bytes` (larger is
    /// `SnapshotError::TooLarge`), and it takes that much of the replay budget while it reads.
    pub async fn snapshot(&self, selector: Selector) -> Result<Snapshot, SnapshotError> {
        let selector = self.check_selector(selector)?;
        let ctx = &self.shared.subs;
        let permits = ctx.snapshot_permits;
        let mut held = Arc::clone(&ctx.replay_budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| SnapshotError::Store(StoreError::Closed))?;
        let read = self
            .shared
            .store
            .snapshot(&selector, permits as usize)
            .await?;
        if read.overflow {
            return Err(SnapshotError::TooLarge {
                max: permits as usize,
            });
        }
        let kept: usize = read.events.iter().map(|e| e.size()).sum();
        drop(held.split((permits as usize).saturating_sub(kept)));
        self.wait_delivered(read.through).await;
        Ok(Snapshot {
            cursor: EventId::new(self.shared.epoch, read.through),
            events: read.events,
            held: BudgetHeld { _permit: held },
        })
    }

    /// Waits until the hub has delivered through `seq` (which the store has committed).
    async fn wait_delivered(&self, seq: u64) {
        self.shared.snapshot_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.shared.snapshot_waiters);
        loop {
            let notified = self.shared.delivered_notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.lock().delivered_seq >= seq {
                return;
            }
            notified.await;
        }
    }

    /// A selector checked against the limits, its patterns normalised.
    fn check_selector(&self, selector: Selector) -> Result<Selector, SubscribeError> {
        let limits = &self.shared.limits;
        let patterns = &selector.patterns;
        if patterns.is_empty() {
            return Err(SubscribeError::NoPatterns);
        }
        if patterns.len() > limits.max_patterns {
            return Err(SubscribeError::TooMany {
                field: "topic",
                count: patterns.len(),
                max: limits.max_patterns,
            });
        }
        if selector.types.len() > limits.max_types {
            return Err(SubscribeError::TooMany {
                field: "type",
                count: selector.types.len(),
                max: limits.max_types,
            });
        }
        Ok(Selector {
            patterns: registry::normalise(patterns),
            types: selector.types,
        })
    }

    /// Test access to the idempotency cache.
    #[cfg(test)]
    pub(crate) fn with_idempotency<R>(&self, f: impl FnOnce(&IdempotencyCache) -> R) -> R {
        f(&self.lock().idempotency)
    }

    /// Forgets a batch the store refused. The store is poisoned, so no later batch commits:
    /// every subscription is closed with `StoreFailed` (after what it has queued), so a
    /// subscriber hears that nothing more will come instead of waiting in silence.
    fn abandon(&self, ids: &[EventId], key: Option<&IdempotencyKey>) {
        let Some(first) = ids.first() else {
            return;
        };
        let mut st = self.lock();
        if let Some(batch) = st.batch_index(first.seq).and_then(|i| st.batches.remove(i)) {
            st.pending
                .retain(|e| e.seq() < batch.first_seq || e.seq() > batch.last_seq);
        }
        if let Some(key) = key {
            st.idempotency.forget(key, first.seq);
        }
        // Under the contract no later batch commits once one is refused; a store that breaks
        // it gets its later batches delivered in order, as replay would read them.
        let n = st.deliver_committed_prefix();
        st.registry
            .for_each(|sub| sub.close(CloseReason::StoreFailed));
        drop(st);
        self.shared.published.fetch_add(n, Ordering::Relaxed);
        self.wake_snapshots(n);
    }

    /// Cluster mode: takes in `client_id`'s session from a store that shares sessions between
    /// hubs (`SessionStore::shared`), unless this hub holds it attached, then waits for this
    /// hub to reach its place, so that `subscribe` with the client id (and no cursor) resumes
    /// the session another node held. Each wait is bounded by `within`; a store that fails or
    /// is slow means a `subscribed` where a `resumed` was due, never a lost event.
    pub async fn load_session(&self, client_id: &Key, within: std::time::Duration) {
        let Some(shared) = self.shared.store.sessions().filter(|s| s.shared()) else {
            return;
        };
        // An unreachable store would only make the client wait for its 503.
        if self.store_health().is_some() || self.lock().sessions.is_attached(client_id) {
            return;
        }
        let read = shared.load_session(client_id.as_str());
        let saved = match tokio::time::timeout(within, read).await {
            Ok(Ok(Some(saved))) if saved.client_id == client_id.as_str() => saved,
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::warn!(message = "Could not read a saved session.", error = %e);
                return;
            }
            Err(_) => {
                tracing::warn!(message = "Reading a saved session timed out.");
                return;
            }
        };
        let place = {
            let now = self.shared.clock.now_ms();
            self.lock().sessions.adopt(saved, self.shared.epoch, now)
        };
        if let Some(seq) = place {
            self.await_head(seq, within).await;
        }
    }

    /// Opens a subscription. See the module docs for why its handoff is exact.
    pub fn subscribe(&self, req: SubscribeRequest) -> Result<Subscription, SubscribeError> {
        let limits = &self.shared.limits;
        let selector = self.check_selector(req.selector)?;
        let id = self.shared.next_sub_id.fetch_add(1, Ordering::Relaxed);
        let client_id = req.client_id;
        let sub = Arc::new(SubscriberQueue::new(
            id,
            selector,
            client_id.clone(),
            limits.subscriber_queue_events,
            limits.subscriber_queue_bytes,
            limits.subscriber_queue_soft_events,
        ));
        let (head, opened) = {
            let mut st = self.lock();
            if st.shutting_down || st.draining {
                return Err(SubscribeError::ShuttingDown);
            }
            st.registry.insert(&sub);
            let now = self.shared.clock.now_ms();
            let epoch = self.shared.epoch;
            let opened = client_id
                .as_ref()
                .map(|c| st.sessions.open(c, &sub.selector, epoch, id, now));
            (st.delivered_seq, opened)
        };
        let trimmed = self.shared.store.trimmed_through();
        let epoch = self.shared.epoch.0;
        // `Last-Event-ID` is exact and wins; without it a live session resumes from its place.
        let resumed = opened.as_ref().and_then(|o| o.resumed);
        let cursor = req.cursor.or(resumed.map(Cursor::After));
        let (notice, from) = match cursor {
            None => (None, head),
            Some(Cursor::Earliest) => (None, trimmed.min(head)),
            Some(Cursor::Invalid) => (Some(ResetReason::InvalidCursor), head),
            Some(Cursor::After(id)) if id.epoch != epoch => {
                (Some(ResetReason::EpochMismatch), head)
            }
            Some(Cursor::After(id)) if id.seq > head => (Some(ResetReason::CursorAhead), head),
            Some(Cursor::After(id)) if id.seq < trimmed => (Some(ResetReason::CursorExpired), head),
            Some(Cursor::After(id)) => (None, id.seq),
        };
        let session = opened.map(|o| {
            if let Some(place) = &o.place {
                place.set(from);
            }
            SessionStart {
                resumed: resumed.is_some(),
                place: o.place,
            }
        });
        if let (Some(client_id), Some(SessionStart { place: Some(_), .. })) = (&client_id, &session)
            && let Some(shared) = self.shared.store.sessions().filter(|s| s.shared())
        {
            // Under the lock, so the store hears of the attach in order with the checkpoints
            // and the detach that follow.
            let st = self.lock();
            if let Some((saved, attached)) =
                st.sessions.saved(client_id, self.shared.clock.now_ms())
            {
                shared.session_changed(saved, attached);
            }
        }
        Ok(Subscription::new(
            Arc::clone(&self.shared.subs),
            sub,
            notice,
            from,
            head,
            session,
        ))
    }

    /// Closes (with `CloseReason::Reconnect`) every subscription with this client id; how many.
    pub fn reconnect_client(&self, client_id: &Key) -> usize {
        let st = self.lock();
        let mut n = 0;
        st.registry.for_each(|sub| {
            if sub.client_id.as_ref() == Some(client_id) {
                sub.close(CloseReason::Reconnect);
                n += 1;
            }
        });
        n
    }

    /// Closes (with `CloseReason::Reconnect`) every subscription whose selector overlaps
    /// `pattern` (one of its patterns covers it or is covered by it); how many.
    pub fn reconnect_topic(&self, pattern: &Pattern) -> usize {
        let st = self.lock();
        let mut n = 0;
        st.registry.for_each(|sub| {
            if sub
                .selector
                .patterns
                .iter()
                .any(|p| p.covers(pattern) || pattern.covers(p))
            {
                sub.close(CloseReason::Reconnect);
                n += 1;
            }
        });
        n
    }

    /// Starts (or ends) a drain: while it lasts, new subscriptions are refused as during a
    /// shutdown, and the returned handles (every subscription open now) are for the caller to
    /// close, spread over time. Publishing goes on.
    pub fn drain(&self, on: bool) -> Vec<DrainHandle> {
        let mut st = self.lock();
        st.draining = on;
        let mut all = Vec::new();
        if on {
            st.registry
                .for_each(|sub| all.push(DrainHandle(Arc::clone(sub))));
        }
        all
    }

    /// Whether a drain is under way.
    pub fn draining(&self) -> bool {
        self.lock().draining
    }

    /// Refuses new publishes and subscriptions and tells every subscription to close with
    /// `CloseReason::Shutdown` once its queue is drained.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        st.registry.for_each(|sub| sub.close(CloseReason::Shutdown));
    }

    /// Saves the sessions (where the store keeps them) and makes all history durable (call
    /// after `shutdown` and after connections closed, before exit).
    pub async fn flush(&self) -> Result<(), StoreError> {
        // What coalescing windows hold is accepted: it goes to the store before the end.
        if let Err(e) = self.flush_windows(true).await {
            tracing::warn!(message = "Could not store events held by coalescing windows.", error = %e);
        }
        self.save_sessions().await?;
        self.shared.store.flush().await
    }

    /// Saves every live session with its place now, where the store keeps them (nothing if
    /// it keeps none). Called at shutdown by `flush`, and periodically by a server so that a
    /// crash loses only the progress since the last save: a session restored from an older
    /// save resumes from its older place (events after it come again; none are lost). The
    /// table is copied under the lock and written outside it.
    pub async fn save_sessions(&self) -> Result<(), StoreError> {
        if let Some(shared) = self.shared.store.sessions().filter(|s| s.shared()) {
            // A shared store heard of every attach and detach as it happened; what moved since
            // is the places of attached sessions (the store skips the unchanged ones).
            let written = {
                let st = self.lock();
                for saved in st.sessions.attached(self.shared.clock.now_ms()) {
                    shared.session_changed(saved, true);
                }
                // Nothing more to hand over: resolves once the news so far is written.
                shared.save_sessions(Vec::new())
            };
            return written.await;
        }
        if let Some(saved) = self.shared.store.sessions() {
            let snapshot = {
                let now = self.shared.clock.now_ms();
                self.lock().sessions.snapshot(now)
            };
            saved.save_sessions(snapshot).await?;
        }
        Ok(())
    }

    /// Current counters. Sums every open subscription's delivery count (a load each), so
    /// it costs a moment per thousand subscribers under the lock: for scrapes and
    /// dashboards, not for every request (`head` is cheaper for that).
    pub fn stats(&self) -> HubStats {
        let (
            head,
            subscribers,
            delivered,
            sessions,
            coalesced,
            coalescing_keys,
            conflated,
            dropped,
        ) = {
            let now = self.shared.clock.now_ms();
            let mut st = self.lock();
            st.sessions.expire(now);
            let mut delivered = st.retired_delivered;
            st.registry.for_each(|sub| delivered += sub.delivered());
            (
                st.delivered_seq,
                st.registry.len(),
                delivered,
                st.sessions.len(),
                st.coalescer.coalesced,
                st.coalescer.held(),
                st.conflated,
                st.dropped,
            )
        };
        HubStats {
            epoch: self.shared.epoch,
            head,
            published: self.shared.published.load(Ordering::Relaxed),
            delivered,
            replayed: self.shared.subs.replayed.load(Ordering::Relaxed),
            subscribers,
            sessions,
            coalesced,
            coalescing_keys,
            conflated,
            dropped,
            store: self.shared.store.stats(),
        }
    }

    /// How many open subscriptions each of `topics` would be delivered to (their selectors'
    /// patterns match it; type filters are not considered). One registry lookup per topic under
    /// the lock: for the admin API's bounded topic list, not for every request.
    pub fn subscribers_of(&self, topics: &[Topic]) -> Vec<usize> {
        let st = self.lock();
        topics
            .iter()
            .map(|t| {
                let mut n = 0;
                st.registry.for_each_match(t, |_| n += 1);
                n
            })
            .collect()
    }

    /// The highest seq delivered to subscribers.
    pub fn head(&self) -> u64 {
        self.lock().delivered_seq
    }
}

/// Events handed to the bus: the acknowledgement to wait for, and per event, which input of
/// the publish it answers.
struct OnBus {
    fut: BoxFuture<'static, Result<Vec<u64>, BusError>>,
    inputs: Vec<Option<usize>>,
}

enum Started {
    New(Commit),
    /// Every event is held by a coalescing window.
    Held(Vec<Option<EventId>>),
    Retry(Entry, Epoch),
}

async fn wait_for_original(
    entry: Entry,
    epoch: Epoch,
) -> Result<Vec<Option<EventId>>, PublishError> {
    let ok = match entry.outcome.clone() {
        // Settled: delivered.
        None => true,
        Some(mut rx) => match rx.wait_for(Option::is_some).await {
            Ok(v) => *v == Some(true),
            Err(_) => false,
        },
    };
    if ok {
        Ok(entry.ids(epoch))
    } else {
        Err(PublishError::Store(StoreError::Poisoned(
            "the original publish with this Idempotency-Key failed".into(),
        )))
    }
}

/// A batch handed to the store: waits for the commit, then delivers. If dropped before the
/// commit resolved, it finishes on a spawned task so a committed batch is always delivered.
struct Commit {
    hub: Hub,
    fut: Option<BoxFuture<'static, Result<(), StoreError>>>,
    /// The store queue place this batch occupies, given back once its commit resolved.
    slot: Option<AppendSlot>,
    /// The run of ids appended.
    ids: Vec<EventId>,
    /// Per event of the publish, its id (`None`: held by a coalescing window).
    answer: Vec<Option<EventId>>,
    key: Option<IdempotencyKey>,
    /// Set for a keyed publish: retries with the same key wait on it.
    outcome: Option<watch::Sender<Option<bool>>>,
}

impl Commit {
    async fn wait(mut self) -> Result<Vec<Option<EventId>>, PublishError> {
        let fut: &mut Pin<Box<_>> = self.fut.as_mut().expect("a commit is awaited once");
        let result = fut.await;
        self.fut = None;
        self.slot = None;
        finish(
            &self.hub,
            &self.ids,
            self.key.as_ref(),
            self.outcome.as_ref(),
            &result,
        );
        result
            .map(|()| std::mem::take(&mut self.answer))
            .map_err(PublishError::Store)
    }
}

fn finish(
    hub: &Hub,
    ids: &[EventId],
    key: Option<&IdempotencyKey>,
    outcome: Option<&watch::Sender<Option<bool>>>,
    result: &Result<(), StoreError>,
) {
    match result {
        Ok(()) => {
            hub.deliver_through(ids.first().map_or(0, |id| id.seq));
            if let (Some(key), Some(first)) = (key, ids.first()) {
                hub.lock().idempotency.settle(key, first.seq);
            }
        }
        Err(e) => {
            // The store logged the cause where it failed; this batch is one of its refusals.
            tracing::debug!(message = "Store refused a batch; it was not delivered.", error = %e);
            hub.abandon(ids, key);
        }
    }
    if let Some(outcome) = outcome {
        outcome.send_replace(Some(result.is_ok()));
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else { return };
        let (hub, ids, key) = (
            self.hub.clone(),
            std::mem::take(&mut self.ids),
            self.key.take(),
        );
        let outcome = self.outcome.take();
        let slot = self.slot.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let result = fut.await;
                drop(slot);
                finish(&hub, &ids, key.as_ref(), outcome.as_ref(), &result);
            });
        }
    }
}

#[cfg(test)]
mod bus_tests;
#[cfg(test)]
mod coalesce_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tail_tests;
#[cfg(test)]
mod tests;
