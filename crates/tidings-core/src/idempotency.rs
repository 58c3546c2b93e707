//! Publish results remembered by `Idempotency-Key`, so a retried publish gets the original
//! ids instead of publishing twice. Bounded by count; the oldest key is forgotten first.
//! Kept in memory: a retry after a restart of the hub publishes again (documented).

use std::collections::{HashMap, VecDeque};

use tidings_proto::EventId;
use tokio::sync::watch;

use crate::request::NewEvent;

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
/// FNV-1a over length-prefixed fields: stable across builds, since stores keep it on disk.
pub(crate) fn fingerprint(events: &[NewEvent], origin: Option<&str>) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.field(origin);
    for e in events {
        h.field(Some(e.topic.as_str()));
        h.field(Some(e.event_type.as_str()));
        h.field(e.key.as_ref().map(|k| k.as_str()));
        h.field(Some(e.data.get()));
    }
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// An optional string, length-prefixed so adjacent fields cannot run together.
    fn field(&mut self, value: Option<&str>) {
        match value {
            None => self.bytes(&[0]),
            Some(s) => {
                self.bytes(&[1]);
                self.bytes(&(s.len() as u64).to_le_bytes());
                self.bytes(s.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(topic: &str, data: &str) -> NewEvent {
        NewEvent {
            topic: tidings_proto::Topic::new(topic).unwrap(),
            event_type: tidings_proto::EventType::new("t").unwrap(),
            key: None,
            data: serde_json::value::RawValue::from_string(data.to_owned()).unwrap(),
        }
    }

    #[test]
    fn fingerprints_are_stable_and_separate_fields() {
        // Pinned: stores keep fingerprints on disk, so the function must never change.
        assert_eq!(
            fingerprint(&[ev("a", "1")], None),
            2_746_815_508_485_247_809
        );
        assert_ne!(
            fingerprint(&[ev("a1", "2")], None),
            fingerprint(&[ev("a", "12")], None)
        );
        assert_ne!(
            fingerprint(&[ev("a", "1")], Some("me")),
            fingerprint(&[ev("a", "1")], None)
        );
    }
}
