//! The `EventStore` trait the hub writes history through, and `MemoryStore`, its in-memory
//! twin (the `memory` durability mode, and the store of engine tests).
//!
//! Contract every implementation keeps (checked by `testing::store_conformance`):
//! - Back-pressure is `reserve`, never `append`: the hub awaits `reserve` outside its lock,
//!   then calls `append` under the lock, and `append` must return at once (queue the work and
//!   hand back a future). A store with a bounded queue hands out one `AppendSlot` per queue
//!   place; the hub holds the slot until that append's future resolves.
//! - `append` is called by the hub in sequence order, under its sequencer lock, with seqs
//!   strictly increasing and contiguous; the store keeps that order.
//! - The future of `append` resolves once the events are readable by `read_after` and as
//!   durable as the store's mode promises (`durable`: fsynced; `fast`: written, fsynced
//!   periodically; `memory`: in memory).
//! - Completion order is free. A store may resolve batch N+1's future before batch N's (a
//!   remote log acknowledging out of order, say). The hub does not rely on "when batch N
//!   completes, every earlier batch is committed": it delivers only the contiguous prefix of
//!   completed batches, so an event reaches subscribers only once it and every event before
//!   it are stored (`testing::LateStore` checks this against the hub).
//! - A failed append poisons the store: every later append fails too, so the hub can never
//!   deliver an event that follows one that was lost. Readiness reports it.
//! - `read_chunk` keeps both bounds of its `ReadLimit` (bytes counted as `EventRecord::size`),
//!   except that the first event after the cursor always comes: replay memory is bounded by
//!   the bytes of one chunk per subscriber, whatever the size of events.
//! - Retention removes events from the front only, and `trimmed_through` is the highest seq
//!   removed: a cursor below it has lost events.
//! - A batch appended with a `KeyedBatch` is findable by its key and scope (`find_keyed`) for
//!   as long as its events are retained, and the key is written in the same commit as the
//!   events: a retry after a crash finds either both or neither. The same key in another scope
//!   is another key. (`MemoryStore` finds nothing: in memory mode a key lives only in the
//!   hub's bounded cache, which is bounded by `Limits::idempotency_keys` and
//!   `Limits::idempotency_cache_bytes`, not by retention.)
//! - The latest-per-key table (`snapshot`, rules in `latest::SnapshotRules`) is updated with
//!   the events, in the same commit: a read sees the table exactly as of its `through`, and
//!   every event up to `through` is stored. Retention never removes a row (a key's latest
//!   value outlives its history); `max_keys` bounds it, evicting the row updated longest ago.
//!   It maps onto JetStream's last message per subject: subject = topic + key.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_proto::Epoch;
use tokio::sync::OwnedSemaphorePermit;

use crate::clock::{self, DynClock};
use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::record::{EventRecord, SharedEvent};
use crate::session::{SavedSession, SessionStore};

mod latest;
mod layer;

use latest::LatestTable;
pub use latest::{SnapshotRead, SnapshotRules, ranges, row_key, select};
pub use layer::StoreLayer;
use tidings_proto::Selector;

/// A boxed future, so the trait stays object-safe (`Arc<dyn EventStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An I/O error; the store is poisoned for appends.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The files are not in a format this version understands, or are damaged.
    #[error("store data is corrupt or of an unknown format: {0}")]
    Corrupt(String),
    /// An earlier append failed, so this one was refused.
    #[error("store is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// How much history is kept. Every bound applies; `None` means that bound is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept.
    pub max_events: Option<u64>,
    /// Most bytes of encoded events kept (approximate: the store's own encoding).
    pub max_bytes: Option<u64>,
    /// Oldest event kept, by publish time.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// Bounded by default: 1,000,000 events, 1 GiB, 7 days.
    fn default() -> Self {
        Retention {
            max_events: Some(1_000_000),
            max_bytes: Some(1 << 30),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// What a store holds, for metrics and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events retained.
    pub events: u64,
    /// Bytes retained (the store's encoding).
    pub bytes: u64,
    /// Highest seq written.
    pub last_seq: u64,
    /// Highest seq removed by retention.
    pub trimmed_through: u64,
}

/// A publish remembered by its `Idempotency-Key`, so that a retry, even after a restart,
/// gets the original ids instead of publishing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedBatch {
    /// The `Idempotency-Key` and its scope.
    pub key: IdempotencyKey,
    /// What the batch published, to tell a retry from a reused key.
    pub fingerprint: Fingerprint,
    /// Seq of the batch's first event; its events are `first_seq..first_seq + count`.
    pub first_seq: u64,
    /// Events in the batch.
    pub count: u32,
}

/// A place in a store's append queue, reserved by `EventStore::reserve` before `append`.
/// Dropping it gives the place back; the hub drops it when the append's future resolves.
#[derive(Debug)]
pub struct AppendSlot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl AppendSlot {
    /// A slot of a store whose queue is unbounded (or that never queues, like `MemoryStore`).
    pub fn unbounded() -> Self {
        AppendSlot { _permit: None }
    }

    /// A slot that holds one permit of the store's queue semaphore.
    pub fn from_permit(permit: OwnedSemaphorePermit) -> Self {
        AppendSlot {
            _permit: Some(permit),
        }
    }
}

/// Bounds on one read of history (`EventStore::read_chunk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    /// Most events.
    pub events: usize,
    /// Most bytes, counted as `EventRecord::size`: the read stops before the event that would
    /// take the total over this, except that the first event is always returned.
    pub bytes: usize,
}

impl ReadLimit {
    /// At most `events` events, any size.
    pub fn events(events: usize) -> ReadLimit {
        ReadLimit {
            events,
            bytes: usize::MAX,
        }
    }

    /// Takes events from `events` while they fit: what `read_chunk` returns.
    pub fn take(self, events: impl IntoIterator<Item = SharedEvent>) -> Vec<SharedEvent> {
        self.fitting(events).collect()
    }

    /// The events of `events` (owned or borrowed) while they fit: at most `self.events`, and
    /// the first always, then each while the total stays within `self.bytes`.
    pub fn fitting<T: AsRef<EventRecord>>(
        self,
        events: impl IntoIterator<Item = T>,
    ) -> impl Iterator<Item = T> {
        let mut bytes: Option<usize> = None;
        events
            .into_iter()
            .take(self.events)
            .take_while(move |event| {
                let size = event.as_ref().size();
                let total = bytes.map_or(size, |b| b.saturating_add(size));
                let fits = bytes.is_none() || total <= self.bytes;
                bytes = Some(total);
                fits
            })
    }
}

/// Durable, ordered event history. See the module docs for the contract.
pub trait EventStore: Send + Sync + fmt::Debug + 'static {
    /// The epoch every id from this store carries.
    fn epoch(&self) -> Epoch;

    /// Highest seq stored when the store was opened (0 when empty); the hub continues after it.
    fn last_seq(&self) -> u64;

    /// Highest seq removed by retention.
    fn trimmed_through(&self) -> u64;

    /// Waits, without blocking a thread, until `append` can take one more batch without
    /// blocking. Called outside the hub's lock. The default is for stores that never block.
    fn reserve(&self) -> BoxFuture<'static, Result<AppendSlot, StoreError>> {
        Box::pin(std::future::ready(Ok(AppendSlot::unbounded())))
    }

    /// Appends a batch, remembering `keyed` with it; see the contract above. Called in seq
    /// order, under the hub's lock: it must not block (back-pressure belongs in `reserve`).
    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The batch appended with idempotency key `key` (in its scope), if it is still retained.
    fn find_keyed(
        &self,
        key: &IdempotencyKey,
    ) -> BoxFuture<'static, Result<Option<KeyedBatch>, StoreError>>;

    /// Events with seq greater than `after`, in seq order, within `limit` (by count and by
    /// bytes: the replay of one subscriber holds at most one such chunk at a time).
    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>>;

    /// Up to `limit` events with seq greater than `after`, in seq order, any size.
    fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        self.read_chunk(after, ReadLimit::events(limit))
    }

    /// Makes everything appended so far durable (used at shutdown).
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Current counts.
    fn stats(&self) -> StoreStats;

    /// `None` while appends work; the failure once the store is poisoned.
    fn health(&self) -> Option<StoreError>;

    /// Where the hub keeps client-id sessions between runs; `None`: they live only in memory.
    fn sessions(&self) -> Option<&dyn SessionStore> {
        None
    }

    /// The latest-per-key table under `selector` (newest event per `(topic, key)`, in seq
    /// order), with the seq it is exact as of, read at most `max_bytes` of it
    /// (`EventRecord::size`); see the contract above.
    fn snapshot(
        &self,
        selector: &Selector,
        max_bytes: usize,
    ) -> BoxFuture<'static, Result<SnapshotRead, StoreError>>;
}

/// History in memory, bounded by a `Retention`. Loses everything on exit, by design.
#[derive(Debug)]
pub struct MemoryStore {
    epoch: Epoch,
    retention: Retention,
    /// Judges `Retention::max_age`.
    clock: DynClock,
    /// Short synchronous sections only (push, trim, copy out a range): never held across await.
    inner: Mutex<MemoryInner>,
    /// Sessions saved by a hub that flushed, for the next hub on this store (in this process).
    sessions: Mutex<Vec<SavedSession>>,
    /// What the latest-per-key table keeps.
    rules: SnapshotRules,
}

#[derive(Debug, Default)]
struct MemoryInner {
    events: VecDeque<SharedEvent>,
    bytes: u64,
    last_seq: u64,
    trimmed_through: u64,
    /// The latest event per key, updated under the same lock as `events`.
    latest: LatestTable,
}

impl MemoryStore {
    /// An empty store with `epoch`, judging age by the wall clock.
    pub fn new(epoch: Epoch, retention: Retention) -> Self {
        Self::with_clock(epoch, retention, clock::system())
    }

    /// An empty store with `epoch`, judging age by `clock`.
    pub fn with_clock(epoch: Epoch, retention: Retention, clock: DynClock) -> Self {
        MemoryStore {
            epoch,
            retention,
            clock,
            inner: Mutex::new(MemoryInner::default()),
            sessions: Mutex::new(Vec::new()),
            rules: SnapshotRules::default(),
        }
    }

    /// The same store with `rules` for its latest-per-key table (set before any append).
    pub fn with_snapshot_rules(mut self, rules: SnapshotRules) -> Self {
        self.rules = rules;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventStore for MemoryStore {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    fn trimmed_through(&self) -> u64 {
        self.lock().trimmed_through
    }

    fn append(
        &self,
        events: Vec<SharedEvent>,
        _keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        for event in events {
            inner.last_seq = event.seq();
            inner.bytes += event.size() as u64;
            inner.latest.apply(&self.rules, &event);
            inner.events.push_back(event);
        }
        while let Some(front) = inner.events.front() {
            let over_count = self
                .retention
                .max_events
                .is_some_and(|max| inner.events.len() as u64 > max);
            let over_bytes = self
                .retention
                .max_bytes
                .is_some_and(|max| inner.bytes > max);
            let too_old = self
                .retention
                .max_age
                .is_some_and(|age| front.event.time + (age.as_millis() as u64) < now);
            if !(over_count || over_bytes || too_old) {
                break;
            }
            let front = inner.events.pop_front().expect("front exists");
            inner.bytes -= front.size() as u64;
            inner.trimmed_through = front.seq();
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        let inner = self.lock();
        let start = match inner.events.front() {
            Some(front) if after >= front.seq() => (after - front.seq() + 1) as usize,
            _ => 0,
        };
        let out = limit.take(inner.events.iter().skip(start).cloned());
        Box::pin(std::future::ready(Ok(out)))
    }

    fn find_keyed(
        &self,
        _key: &IdempotencyKey,
    ) -> BoxFuture<'static, Result<Option<KeyedBatch>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            events: inner.events.len() as u64,
            bytes: inner.bytes,
            last_seq: inner.last_seq,
            trimmed_through: inner.trimmed_through,
        }
    }

    fn health(&self) -> Option<StoreError> {
        None
    }

    fn sessions(&self) -> Option<&dyn SessionStore> {
        Some(self)
    }

    fn snapshot(
        &self,
        selector: &Selector,
        max_bytes: usize,
    ) -> BoxFuture<'static, Result<SnapshotRead, StoreError>> {
        // Copy out the covered rows (`Arc`s) under the lock; filter and sort outside it.
        let (through, rows) = {
            let inner = self.lock();
            (inner.last_seq, inner.latest.covered(selector))
        };
        Box::pin(std::future::ready(Ok(select(
            through, rows, selector, max_bytes,
        ))))
    }
}

/// Shared handle to any store.
pub type DynStore = Arc<dyn EventStore>;

impl SessionStore for MemoryStore {
    fn load_sessions(&self) -> Result<Vec<SavedSession>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }

    fn save_sessions(
        &self,
        sessions: Vec<SavedSession>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        *self.sessions.lock().unwrap_or_else(|e| e.into_inner()) = sessions;
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        crate::testing::store_conformance(|retention| {
            Arc::new(MemoryStore::new(Epoch(0), retention)) as DynStore
        })
        .await;
        crate::testing::snapshot_conformance(|retention, rules| {
            Arc::new(MemoryStore::new(Epoch(0), retention).with_snapshot_rules(rules)) as DynStore
        })
        .await;
    }
}
