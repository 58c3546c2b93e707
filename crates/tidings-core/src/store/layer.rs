//! `StoreLayer`: a store wrapped around another that changes only how appends are taken
//! (timing them, holding them, acknowledging them late) or how history is read (slowly,
//! failing, counted), and forwards every other method.
//!
//! Each wrapper used to forward the trait by hand, and two of them forgot the defaulted
//! methods (`read_after`, `sessions`): the default answered instead of the inner store, so a
//! wrapped store silently lost its sessions. Here the forwarding is written once, for every
//! method, and a wrapper states only what it changes.

use crate::idempotency::IdempotencyKey;
use crate::record::SharedEvent;
use crate::session::SessionStore;
use crate::store::{
    AppendSlot, BoxFuture, EventStore, KeyedBatch, ReadLimit, SnapshotRead, StoreError, StoreStats,
};
use tidings_proto::{Epoch, Selector};

/// A store that wraps `inner` and may change `reserve`, `append` and `read_chunk`;
/// everything else is the inner store's. Implementing it implements `EventStore`.
pub trait StoreLayer: Send + Sync + std::fmt::Debug + 'static {
    /// The wrapped store.
    fn inner(&self) -> &dyn EventStore;

    /// `EventStore::reserve`; the inner store's by default.
    fn reserve(&self) -> BoxFuture<'static, Result<AppendSlot, StoreError>> {
        self.inner().reserve()
    }

    /// `EventStore::append`, with the same contract: called under the hub's lock, returns at
    /// once. The inner store's by default.
    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner().append(events, keyed)
    }

    /// `EventStore::read_chunk`, with the same contract; the inner store's by default.
    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        self.inner().read_chunk(after, limit)
    }
}

impl<L: StoreLayer> EventStore for L {
    fn epoch(&self) -> Epoch {
        self.inner().epoch()
    }
    fn last_seq(&self) -> u64 {
        self.inner().last_seq()
    }
    fn trimmed_through(&self) -> u64 {
        self.inner().trimmed_through()
    }
    fn reserve(&self) -> BoxFuture<'static, Result<AppendSlot, StoreError>> {
        StoreLayer::reserve(self)
    }
    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        StoreLayer::append(self, events, keyed)
    }
    fn find_keyed(
        &self,
        key: &IdempotencyKey,
    ) -> BoxFuture<'static, Result<Option<KeyedBatch>, StoreError>> {
        self.inner().find_keyed(key)
    }
    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        StoreLayer::read_chunk(self, after, limit)
    }
    fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        self.inner().read_after(after, limit)
    }
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner().flush()
    }
    fn stats(&self) -> StoreStats {
        self.inner().stats()
    }
    fn health(&self) -> Option<StoreError> {
        self.inner().health()
    }
    fn sessions(&self) -> Option<&dyn SessionStore> {
        self.inner().sessions()
    }
    fn snapshot(
        &self,
        selector: &Selector,
        max_bytes: usize,
    ) -> BoxFuture<'static, Result<SnapshotRead, StoreError>> {
        self.inner().snapshot(selector, max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tidings_proto::Epoch;

    use crate::store::{DynStore, EventStore, MemoryStore, Retention};
    use crate::testing::{HeldStore, LateStore};

    /// The defaulted methods are the ones a hand-written wrapper forgot: a wrapped store must
    /// answer them as the inner store does.
    #[test]
    fn the_test_layers_keep_the_inner_stores_sessions_and_epoch() {
        let inner: DynStore = Arc::new(MemoryStore::new(Epoch(7), Retention::default()));
        assert!(inner.sessions().is_some());
        let held = HeldStore::new(Arc::clone(&inner), 4);
        let late = LateStore::new(Arc::clone(&inner));
        for layer in [&*held as &dyn EventStore, &*late] {
            assert!(layer.sessions().is_some());
            assert_eq!(layer.epoch(), Epoch(7));
        }
    }
}
