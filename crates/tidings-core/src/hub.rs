//! `Hub`: the engine's handle. `publish` assigns ids (the one sequencer), appends to the
//! store, and once the store has committed, fans the events out in id order. `subscribe`
//! registers a subscription and fixes its handoff point under the same lock as the fan-out.
//!
//! Why the handoff has no gap and no duplicate: the fan-out of event `n` and the update of
//! `delivered` to `n` happen under the state lock, after `n` is committed to the store. A
//! subscription registers under that lock and records `until = delivered`. Every event with
//! seq ≤ `until` was committed before registration, so replay reads it from the store; every
//! event with seq > `until` is fanned out after registration, so it lands in the live queue.
//! Replay stops at `until`, live starts after it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::value::RawValue;
use tidings_proto::{Cursor, Epoch, Event, EventId, EventType, Key, Selector, Topic};
use tokio::sync::watch;

use crate::clock;
use crate::error::{PublishError, SubscribeError};
use crate::idempotency::{self, Entry, IdempotencyCache};
use crate::limits::Limits;
use crate::record::{EventRecord, SharedEvent};
use crate::registry::{self, Registry, SubShared};
use crate::store::{BoxFuture, DynStore, KeyedBatch, StoreError, StoreStats};
use crate::subscription::{CloseReason, ResetReason, Subscription};

/// An event to publish, already validated at the edge.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Topic to publish on.
    pub topic: Topic,
    /// Event type.
    pub event_type: EventType,
    /// Optional entity key.
    pub key: Option<Key>,
    /// Compact JSON payload.
    pub data: Box<RawValue>,
}

/// One publish: all of its events are stored and delivered, or none.
#[derive(Debug, Clone)]
pub struct PublishBatch {
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// The publisher's client id: not echoed to subscriptions with the same client id.
    pub origin: Option<Key>,
    /// Makes a retry of this batch return the original ids.
    pub idempotency_key: Option<String>,
}

/// What a subscription asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Topics and types.
    pub selector: Selector,
    /// Where to resume; `None` starts live.
    pub cursor: Option<Cursor>,
    /// The subscriber's client id (its own publishes are not delivered to it).
    pub client_id: Option<Key>,
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
    /// Event deliveries handed to connections since start.
    pub delivered: u64,
    /// Subscriptions open now.
    pub subscribers: usize,
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
    pub(crate) epoch: Epoch,
    pub(crate) limits: Limits,
    /// The sequencer, the fan-out and the registry. Held for short synchronous sections only
    /// (assign ids, fan out one committed run, register); never across an await.
    state: Mutex<State>,
    next_sub_id: AtomicU64,
    published: AtomicU64,
    pub(crate) delivered: AtomicU64,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    /// Sequenced and handed to the store, not yet committed: delivered in order on commit.
    pending: VecDeque<SharedEvent>,
    delivered_seq: u64,
    registry: Registry,
    idempotency: IdempotencyCache,
    shutting_down: bool,
}

impl Hub {
    /// A hub over `store`, continuing after the store's last seq.
    pub fn new(store: DynStore, limits: Limits) -> Hub {
        let last = store.last_seq();
        let state = State {
            next_seq: last + 1,
            pending: VecDeque::new(),
            delivered_seq: last,
            registry: Registry::default(),
            idempotency: IdempotencyCache::new(limits.idempotency_keys),
            shutting_down: false,
        };
        Hub {
            shared: Arc::new(Shared {
                epoch: store.epoch(),
                store,
                limits,
                state: Mutex::new(state),
                next_sub_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
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
    pub async fn publish(&self, batch: PublishBatch) -> Result<Vec<EventId>, PublishError> {
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
            && key.len() > limits.max_idempotency_key_bytes
        {
            return Err(PublishError::IdempotencyKeyTooLong {
                size: key.len(),
                max: limits.max_idempotency_key_bytes,
            });
        }
        let fingerprint = batch.idempotency_key.as_ref().map(|_| {
            idempotency::fingerprint(&batch.events, batch.origin.as_ref().map(Key::as_str))
        });
        if let (Some(key), Some(fp)) = (&batch.idempotency_key, fingerprint)
            && let Some(ids) = self.find_in_store(key, fp).await?
        {
            return Ok(ids);
        }

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
                Started::Retry(entry.clone())
            } else {
                Started::New(self.sequence(&mut st, batch, fingerprint))
            }
        };
        match started {
            Started::New(commit) => commit.wait().await,
            Started::Retry(entry) => wait_for_original(entry).await,
        }
    }

    /// A keyed batch this process does not remember may have been published before a
    /// restart: the store keeps keys as long as their events. (Checked before the state lock;
    /// a concurrent first publish with the same key is caught by the cache under the lock.)
    async fn find_in_store(
        &self,
        key: &str,
        fp: u64,
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
        let epoch = self.shared.epoch;
        Ok(Some(
            (0..u64::from(found.count))
                .map(|i| EventId::new(epoch, found.first_seq + i))
                .collect(),
        ))
    }

    /// Assigns ids to `batch` and hands it to the store (under the state lock, so the store
    /// sees batches in seq order).
    fn sequence(&self, st: &mut State, batch: PublishBatch, fingerprint: Option<u64>) -> Commit {
        let time = clock::now_ms();
        let epoch = self.shared.epoch;
        let origin = batch.origin;
        let records: Vec<SharedEvent> = batch
            .events
            .into_iter()
            .map(|e| {
                let seq = st.next_seq;
                st.next_seq += 1;
                EventRecord::new(Event {
                    id: EventId::new(epoch, seq),
                    topic: e.topic,
                    event_type: e.event_type,
                    key: e.key,
                    origin: origin.clone(),
                    time,
                    data: e.data,
                })
            })
            .collect();
        let ids: Vec<EventId> = records.iter().map(|r| r.event.id).collect();
        st.pending.extend(records.iter().cloned());
        let keyed = match (&batch.idempotency_key, fingerprint, ids.first()) {
            (Some(key), Some(fingerprint), Some(first)) => Some(KeyedBatch {
                key: key.clone(),
                fingerprint,
                first_seq: first.seq,
                count: ids.len() as u32,
            }),
            _ => None,
        };
        // Called under the lock so the store sees batches in seq order.
        let fut = self.shared.store.append(records, keyed);
        // Only a keyed publish can have retries waiting on its outcome.
        let mut outcome = None;
        if let (Some(key), Some(fingerprint)) = (&batch.idempotency_key, fingerprint) {
            let (outcome_tx, outcome_rx) = watch::channel(None);
            let entry = Entry {
                fingerprint,
                ids: ids.clone(),
                outcome: outcome_rx,
            };
            st.idempotency.insert(key.clone(), entry);
            outcome = Some(outcome_tx);
        }
        Commit {
            hub: self.clone(),
            fut: Some(fut),
            ids,
            key: batch.idempotency_key,
            outcome,
        }
    }

    /// Fans out every pending event up to `seq` (committed), in order.
    fn deliver_through(&self, seq: u64) {
        let mut st = self.lock();
        let mut n = 0;
        while st.pending.front().is_some_and(|e| e.seq() <= seq) {
            let event = st.pending.pop_front().expect("front checked");
            st.registry
                .for_each_match(&event.event.topic, |sub| sub.offer(&event));
            st.delivered_seq = event.seq();
            n += 1;
        }
        drop(st);
        self.shared.published.fetch_add(n, Ordering::Relaxed);
    }

    /// Forgets a batch the store refused. The store is poisoned, so no later batch commits:
    /// every subscription is closed with `StoreFailed` (after what it has queued), so a
    /// subscriber hears that nothing more will come instead of waiting in silence.
    fn abandon(&self, ids: &[EventId], key: Option<&str>) {
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return;
        };
        let mut st = self.lock();
        st.pending
            .retain(|e| e.seq() < first.seq || e.seq() > last.seq);
        if let Some(key) = key {
            st.idempotency.forget(key);
        }
        st.registry
            .for_each(|sub| sub.close(CloseReason::StoreFailed));
    }

    /// Opens a subscription. See the module docs for why its handoff is exact.
    pub fn subscribe(&self, req: SubscribeRequest) -> Result<Subscription, SubscribeError> {
        let limits = &self.shared.limits;
        let patterns = &req.selector.patterns;
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
        if req.selector.types.len() > limits.max_types {
            return Err(SubscribeError::TooMany {
                field: "type",
                count: req.selector.types.len(),
                max: limits.max_types,
            });
        }
        let selector = Selector {
            patterns: registry::normalise(patterns),
            types: req.selector.types,
        };
        let id = self.shared.next_sub_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(SubShared::new(
            id,
            selector,
            req.client_id,
            limits.subscriber_queue_events,
            limits.subscriber_queue_bytes,
        ));
        let head = {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(SubscribeError::ShuttingDown);
            }
            st.registry.insert(&sub);
            st.delivered_seq
        };
        let trimmed = self.shared.store.trimmed_through();
        let epoch = self.shared.epoch.0;
        let (notice, from) = match req.cursor {
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
        Ok(Subscription::new(self.clone(), sub, notice, from, head))
    }

    pub(crate) fn unregister(&self, sub: &SubShared) {
        self.lock().registry.remove(sub);
    }

    /// Refuses new publishes and subscriptions and tells every subscription to close with
    /// `CloseReason::Shutdown` once its queue is drained.
    pub fn shutdown(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        st.registry.for_each(|sub| sub.close(CloseReason::Shutdown));
    }

    /// Makes all history durable (call after `shutdown`, before exit).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared.store.flush().await
    }

    /// Current counters.
    pub fn stats(&self) -> HubStats {
        let (head, subscribers) = {
            let st = self.lock();
            (st.delivered_seq, st.registry.len())
        };
        HubStats {
            epoch: self.shared.epoch,
            head,
            published: self.shared.published.load(Ordering::Relaxed),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            subscribers,
            store: self.shared.store.stats(),
        }
    }
}

enum Started {
    New(Commit),
    Retry(Entry),
}

async fn wait_for_original(entry: Entry) -> Result<Vec<EventId>, PublishError> {
    let mut rx = entry.outcome;
    let ok = match rx.wait_for(Option::is_some).await {
        Ok(v) => *v == Some(true),
        Err(_) => false,
    };
    if ok {
        Ok(entry.ids)
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
    ids: Vec<EventId>,
    key: Option<String>,
    /// Set for a keyed publish: retries with the same key wait on it.
    outcome: Option<watch::Sender<Option<bool>>>,
}

impl Commit {
    async fn wait(mut self) -> Result<Vec<EventId>, PublishError> {
        let fut: &mut Pin<Box<_>> = self.fut.as_mut().expect("a commit is awaited once");
        let result = fut.await;
        self.fut = None;
        finish(
            &self.hub,
            &self.ids,
            self.key.as_deref(),
            self.outcome.as_ref(),
            &result,
        );
        result
            .map(|()| std::mem::take(&mut self.ids))
            .map_err(PublishError::Store)
    }
}

fn finish(
    hub: &Hub,
    ids: &[EventId],
    key: Option<&str>,
    outcome: Option<&watch::Sender<Option<bool>>>,
    result: &Result<(), StoreError>,
) {
    match result {
        Ok(()) => hub.deliver_through(ids.last().map_or(0, |id| id.seq)),
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
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let result = fut.await;
                finish(&hub, &ids, key.as_deref(), outcome.as_ref(), &result);
            });
        }
    }
}

#[cfg(test)]
mod tests;
