//! Publish results remembered by `Idempotency-Key`, so a retried publish gets the original
//! ids instead of publishing twice. Bounded by count; the oldest key is forgotten first.
//! Kept in memory: a retry after a restart of the hub publishes again (documented).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use tidings_proto::EventId;
use tokio::sync::watch;

use crate::hub::NewEvent;

/// What a key remembers. `outcome` turns `Some(true)` once the batch is delivered, or
/// `Some(false)` if the store refused it (the key is then forgotten).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) fingerprint: u64,
    pub(crate) ids: Vec<EventId>,
    pub(crate) outcome: watch::Receiver<Option<bool>>,
}

#[derive(Debug)]
pub(crate) struct IdempotencyCache {
    map: HashMap<String, Entry>,
    order: VecDeque<String>,
    cap: usize,
}

impl IdempotencyCache {
    pub(crate) fn new(cap: usize) -> Self {
        IdempotencyCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    pub(crate) fn insert(&mut self, key: String, entry: Entry) {
        if self.cap == 0 {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, entry);
    }

    pub(crate) fn forget(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// A hash of what a batch publishes, to tell a true retry from a key reused for other events.
pub(crate) fn fingerprint(events: &[NewEvent], origin: Option<&str>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    origin.hash(&mut h);
    for e in events {
        e.topic.as_str().hash(&mut h);
        e.event_type.as_str().hash(&mut h);
        e.key.as_ref().map(|k| k.as_str()).hash(&mut h);
        e.data.get().hash(&mut h);
    }
    h.finish()
}
