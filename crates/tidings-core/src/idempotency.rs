//! Idempotency keys: `IdempotencyKey` (a key within a credential's scope), the SHA-256
//! `Fingerprint` of what a batch publishes, and `IdempotencyCache`, the hub's memory of recent
//! keyed publishes.
//!
//! A retried publish with the same key, in the same scope and with the same fingerprint, gets
//! the original ids instead of publishing twice; the same key with another body is a conflict.
//! Keys of different scopes never meet, so one credential can neither block nor probe
//! another's keys.
//!
//! The cache answers retries this process has seen (including one that arrives while the
//! original is still committing); it is bounded by count and by bytes and forgets the oldest
//! key first. Behind it, a store that keeps history also keeps each key with its batch
//! (`EventStore::find_keyed`), for as long as the batch's events are retained, so a retry after
//! a restart or an eviction still gets the original ids. With `MemoryStore`, the cache is all
//! there is: a key it has forgotten publishes again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::mem::size_of;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidings_proto::{Epoch, EventId};
use tokio::sync::watch;

use crate::request::NewEvent;

/// Whose idempotency keys these are: a key only matches publishes made in the same scope.
/// The server derives it from the authenticated credential (never from anything that reveals
/// the secret); an open hub publishes in [`IdempotencyScope::ANONYMOUS`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IdempotencyScope(pub [u8; 32]);

impl IdempotencyScope {
    /// The scope of every publish on a hub without credentials.
    pub const ANONYMOUS: IdempotencyScope = IdempotencyScope([0; 32]);
}

/// Shows whether the scope is anonymous, nothing more: a scope derives from a credential, and
/// `Debug` output ends up in logs.
impl fmt::Debug for IdempotencyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == IdempotencyScope::ANONYMOUS {
            f.write_str("IdempotencyScope(anonymous)")
        } else {
            f.write_str("IdempotencyScope(..)")
        }
    }
}

/// An `Idempotency-Key` within its scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// Whose key it is.
    pub scope: IdempotencyScope,
    /// The key as the client sent it.
    pub key: String,
}

/// SHA-256 of what a batch publishes (see [`fingerprint`]), to tell a true retry from a key
/// reused for other events. Collision resistant, so no crafted body can pass for another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The fingerprint of a batch: SHA-256 over a version tag, then the origin and each event's
/// topic, type, key and data, every field length-prefixed so adjacent fields cannot run
/// together. Stable across builds: stores keep it on disk.
pub(crate) fn fingerprint(events: &[NewEvent], origin: Option<&str>) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"tidings publish fingerprint v1\0");
    let mut field = |value: Option<&str>| match value {
        None => h.update([0]),
        Some(s) => {
            h.update([1]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    };
    field(origin);
    for e in events {
        field(Some(e.topic.as_str()));
        field(Some(e.event_type.as_str()));
        field(e.key.as_ref().map(|k| k.as_str()));
        field(Some(e.data.get()));
    }
    Fingerprint(h.finalize().into())
}

/// What a key remembers: the batch's fingerprint and its ids, which are contiguous
/// (`first_seq..first_seq + count`), so a 1,000-event batch costs no more than a 1-event one.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) first_seq: u64,
    pub(crate) count: u32,
    /// When coalescing held some of the batch's events or let out other events with it: per
    /// event, its id's offset in the run (`u32::MAX`: held, no id). `None`: event `i` has
    /// `first_seq + i`.
    pub(crate) positions: Option<Arc<[u32]>>,
    /// `Some` while the batch is committing: turns `Some(true)` once it is delivered, or
    /// `Some(false)` if the store refused it. Dropped once settled (`None`: delivered), since
    /// a channel costs several hundred bytes.
    pub(crate) outcome: Option<watch::Receiver<Option<bool>>>,
}

impl Entry {
    /// The batch's ids, per event (`None`: held by a coalescing window).
    pub(crate) fn ids(&self, epoch: Epoch) -> Vec<Option<EventId>> {
        match &self.positions {
            None => ids(epoch, self.first_seq, self.count)
                .into_iter()
                .map(Some)
                .collect(),
            Some(p) => p
                .iter()
                .map(|&o| {
                    (o != u32::MAX).then(|| EventId::new(epoch, self.first_seq + u64::from(o)))
                })
                .collect(),
        }
    }

    /// Bytes beyond the fixed overhead.
    fn extra(&self) -> usize {
        self.positions.as_ref().map_or(0, |p| p.len() * 4)
    }
}

/// The ids `first_seq..first_seq + count` in `epoch`.
pub(crate) fn ids(epoch: Epoch, first_seq: u64, count: u32) -> Vec<EventId> {
    (0..u64::from(count))
        .map(|i| EventId::new(epoch, first_seq + i))
        .collect()
}

/// Recent keyed publishes, oldest first. Each key costs its length plus
/// [`IdempotencyCache::ENTRY_OVERHEAD`] bytes (`Limits::idempotency_cache_bytes`).
#[derive(Debug)]
pub(crate) struct IdempotencyCache {
    /// The key is shared with `order`, so its text is held once.
    map: HashMap<Arc<IdempotencyKey>, Entry>,
    order: VecDeque<Arc<IdempotencyKey>>,
    max_keys: usize,
    max_bytes: usize,
    bytes: usize,
}

impl IdempotencyCache {
    /// What one remembered key costs besides its text: the shared key (two reference counts
    /// and the key struct), its map slot (key pointer and entry, one control byte, at the
    /// map's 7/8 load factor) and its slot in `order` (twice, as the deque grows by
    /// doubling). Allocator rounding is not counted. A key still committing also holds a
    /// `watch` channel until its commit completes; those are bounded by the publishes in
    /// flight, not by this cache.
    pub(crate) const ENTRY_OVERHEAD: usize = 2 * size_of::<usize>()
        + size_of::<IdempotencyKey>()
        + (size_of::<(Arc<IdempotencyKey>, Entry)>() + 1) * 8 / 7
        + 2 * size_of::<Arc<IdempotencyKey>>();

    pub(crate) fn new(max_keys: usize, max_bytes: usize) -> Self {
        IdempotencyCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            max_keys,
            max_bytes,
            bytes: 0,
        }
    }

    fn cost(key: &IdempotencyKey, entry: &Entry) -> usize {
        key.key.len() + Self::ENTRY_OVERHEAD + entry.extra()
    }

    pub(crate) fn get(&self, key: &IdempotencyKey) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Remembers `key`, forgetting the oldest keys until both bounds hold. A key that alone
    /// exceeds the byte bound is not remembered.
    pub(crate) fn insert(&mut self, key: IdempotencyKey, entry: Entry) {
        let cost = Self::cost(&key, &entry);
        if self.max_keys == 0 || cost > self.max_bytes {
            return;
        }
        if let Some(old) = self.map.get(&key) {
            let first_seq = old.first_seq;
            self.forget(&key, first_seq);
        }
        while self.map.len() >= self.max_keys || self.bytes + cost > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(e) = self.map.remove(&*oldest) {
                self.bytes -= Self::cost(&oldest, &e);
            }
        }
        let key = Arc::new(key);
        self.bytes += cost;
        self.order.push_back(Arc::clone(&key));
        self.map.insert(key, entry);
    }

    /// Marks the batch starting at `first_seq` as delivered, dropping its channel. Does
    /// nothing if `key` now belongs to another batch (it was forgotten and used again).
    pub(crate) fn settle(&mut self, key: &IdempotencyKey, first_seq: u64) {
        if let Some(entry) = self.map.get_mut(key)
            && entry.first_seq == first_seq
        {
            entry.outcome = None;
        }
    }

    /// Forgets `key` if it still names the batch starting at `first_seq` (the store refused
    /// that batch). Linear in the keys held; only a failing store gets here.
    pub(crate) fn forget(&mut self, key: &IdempotencyKey, first_seq: u64) {
        if self.map.get(key).is_none_or(|e| e.first_seq != first_seq) {
            return;
        }
        if let Some((held, entry)) = self.map.remove_entry(key) {
            self.order.retain(|k| !Arc::ptr_eq(k, &held));
            self.bytes -= Self::cost(&held, &entry);
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes accounted to the keys held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests;
