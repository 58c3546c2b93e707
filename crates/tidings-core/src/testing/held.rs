//! `HeldStore`: a store whose commits a test holds, standing in for a stalled disk behind a
//! bounded queue (what `RedbStore` is when fsync hangs).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::{Semaphore, oneshot, watch};

use crate::record::SharedEvent;
use crate::store::{
    AppendSlot, BoxFuture, DynStore, EventStore, KeyedBatch, StoreError, StoreLayer,
};

/// Wraps a store. While held, appends wait in a queue of `capacity` places and are committed
/// to the inner store only by `commit_next` or `release`. Like a full `SyncSender`, an
/// `append` that finds the queue full blocks its thread; `reserve` waits asynchronously for
/// a place instead, which is what a caller must use to avoid that.
#[derive(Debug)]
pub struct HeldStore {
    inner: DynStore,
    capacity: usize,
    slots: Arc<Semaphore>,
    state: Mutex<HeldState>,
    /// Signalled when a queue place frees up (or the store gives up).
    space: Condvar,
    /// How many appends are queued.
    queued: watch::Sender<usize>,
    /// How many times a caller found the queue full (in `reserve` or `append`).
    full: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct HeldState {
    held: bool,
    /// Set by `abandon`: blocked and later appends fail instead of waiting.
    abandoned: bool,
    queue: VecDeque<Queued>,
}

#[derive(Debug)]
struct Queued {
    events: Vec<SharedEvent>,
    keyed: Option<KeyedBatch>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl HeldStore {
    /// A store in front of `inner` with a queue of `capacity` appends, not held.
    pub fn new(inner: DynStore, capacity: usize) -> Arc<HeldStore> {
        Arc::new(HeldStore {
            inner,
            capacity,
            slots: Arc::new(Semaphore::new(capacity)),
            state: Mutex::new(HeldState::default()),
            space: Condvar::new(),
            queued: watch::channel(0).0,
            full: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HeldState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on appends queue instead of committing.
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// Appends queued now.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Waits until at least `n` appends are queued.
    pub async fn wait_queued(&self, n: usize) {
        let mut rx = self.queued.subscribe();
        // The sender lives as long as `self`, so this cannot fail while it is borrowed.
        if rx.wait_for(|&q| q >= n).await.is_err() {
            unreachable!("the store owns the sender");
        }
    }

    /// Waits until callers have found the queue full at least `n` times.
    pub async fn wait_full(&self, n: usize) {
        let mut rx = self.full.subscribe();
        // The sender lives as long as `self`, so this cannot fail while it is borrowed.
        if rx.wait_for(|&f| f >= n).await.is_err() {
            unreachable!("the store owns the sender");
        }
    }

    /// Commits the oldest queued append; `false` if none was queued.
    pub async fn commit_next(&self) -> bool {
        let (next, left) = {
            let mut st = self.lock();
            let Some(next) = st.queue.pop_front() else {
                return false;
            };
            (next, st.queue.len())
        };
        self.commit(next, left).await;
        true
    }

    async fn commit(&self, q: Queued, left: usize) {
        self.space.notify_all();
        self.queued.send_replace(left);
        let result = self.inner.append(q.events, q.keyed).await;
        // The caller may have gone; the outcome is in the inner store either way.
        if q.done.send(result).is_err() {
            tracing::trace!("A held append was answered after its caller left.");
        }
    }

    /// Commits everything queued, in order, and stops holding.
    pub async fn release(&self) {
        loop {
            let (next, left) = {
                let mut st = self.lock();
                match st.queue.pop_front() {
                    Some(next) => (next, st.queue.len()),
                    None => {
                        st.held = false;
                        return;
                    }
                }
            };
            self.commit(next, left).await;
        }
    }

    /// Gives up: appends blocked on a full queue (and later ones) fail at once. For a test
    /// that found the hub stuck, so its threads can finish.
    pub fn abandon(&self) {
        self.lock().abandoned = true;
        self.space.notify_all();
    }
}

impl StoreLayer for HeldStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    fn reserve(&self) -> BoxFuture<'static, Result<AppendSlot, StoreError>> {
        let slots = Arc::clone(&self.slots);
        if let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            return Box::pin(std::future::ready(Ok(AppendSlot::from_permit(permit))));
        }
        self.full.send_modify(|n| *n += 1);
        Box::pin(async move {
            let permit = slots
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Closed)?;
            Ok(AppendSlot::from_permit(permit))
        })
    }

    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut st = self.lock();
        if !st.held && st.queue.is_empty() {
            drop(st);
            return self.inner.append(events, keyed);
        }
        if st.queue.len() >= self.capacity {
            self.full.send_modify(|n| *n += 1);
        }
        while st.queue.len() >= self.capacity && !st.abandoned {
            st = self.space.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.abandoned {
            return Box::pin(std::future::ready(Err(StoreError::Closed)));
        }
        let (done, rx) = oneshot::channel();
        st.queue.push_back(Queued {
            events,
            keyed,
            done,
        });
        let n = st.queue.len();
        drop(st);
        self.queued.send_replace(n);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Closed)) })
    }
}
