//! Which subscriptions match a topic: an index from topics to `SubscriberQueue`s.
//!
//! A subscription's patterns are normalised when it registers (patterns covered by another
//! are dropped), so at most one of its patterns matches any topic and the fan-out needs no
//! de-duplication. Lookup per event: one hash probe for the exact topic, one per distinct
//! registered prefix length, then the `*` subscribers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tidings_proto::{Pattern, Topic};

use crate::subscription::SubscriberQueue;

/// Drops patterns covered by another pattern of the same selector.
pub(crate) fn normalise(patterns: &[Pattern]) -> Vec<Pattern> {
    let mut out: Vec<Pattern> = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let covered = patterns.iter().enumerate().any(|(j, q)| {
            // A strictly wider pattern, or an identical one that comes first.
            j != i && q.covers(p) && (!p.covers(q) || j < i)
        });
        if !covered {
            out.push(p.clone());
        }
    }
    out
}

type Bucket = HashMap<u64, Arc<SubscriberQueue>>;

/// Index from topics to the subscriptions that match them.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    exact: HashMap<Topic, Bucket>,
    prefix: HashMap<Arc<str>, Bucket>,
    /// Distinct prefix lengths registered, with how many prefixes have that length.
    prefix_lens: BTreeMap<usize, usize>,
    all: Bucket,
    len: usize,
}

impl Registry {
    pub(crate) fn insert(&mut self, sub: &Arc<SubscriberQueue>) {
        for p in &sub.selector.patterns {
            match p {
                Pattern::All => {
                    self.all.insert(sub.id, sub.clone());
                }
                Pattern::Exact(t) => {
                    self.exact
                        .entry(t.clone())
                        .or_default()
                        .insert(sub.id, sub.clone());
                }
                Pattern::Prefix(pre) => {
                    let bucket = self.prefix.entry(pre.clone()).or_default();
                    if bucket.is_empty() {
                        *self.prefix_lens.entry(pre.len()).or_default() += 1;
                    }
                    bucket.insert(sub.id, sub.clone());
                }
            }
        }
        self.len += 1;
    }

    pub(crate) fn remove(&mut self, sub: &SubscriberQueue) {
        for p in &sub.selector.patterns {
            match p {
                Pattern::All => {
                    self.all.remove(&sub.id);
                }
                Pattern::Exact(t) => {
                    if let Some(bucket) = self.exact.get_mut(t) {
                        bucket.remove(&sub.id);
                        if bucket.is_empty() {
                            self.exact.remove(t);
                        }
                    }
                }
                Pattern::Prefix(pre) => {
                    if let Some(bucket) = self.prefix.get_mut(pre) {
                        bucket.remove(&sub.id);
                        if bucket.is_empty() {
                            self.prefix.remove(pre);
                            if let Some(n) = self.prefix_lens.get_mut(&pre.len()) {
                                *n -= 1;
                                if *n == 0 {
                                    self.prefix_lens.remove(&pre.len());
                                }
                            }
                        }
                    }
                }
            }
        }
        self.len -= 1;
    }

    /// Calls `f` once for every subscription whose patterns match `topic`.
    pub(crate) fn for_each_match(&self, topic: &Topic, mut f: impl FnMut(&Arc<SubscriberQueue>)) {
        if let Some(bucket) = self.exact.get(topic) {
            bucket.values().for_each(&mut f);
        }
        let t = topic.as_str();
        for &len in self.prefix_lens.keys() {
            if len > t.len() {
                break;
            }
            if !t.is_char_boundary(len) {
                continue;
            }
            if let Some(bucket) = self.prefix.get(&t[..len]) {
                bucket.values().for_each(&mut f);
            }
        }
        self.all.values().for_each(f);
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<SubscriberQueue>)) {
        let mut seen = std::collections::HashSet::new();
        let buckets = self
            .exact
            .values()
            .chain(self.prefix.values())
            .chain([&self.all]);
        for bucket in buckets {
            for sub in bucket.values() {
                if seen.insert(sub.id) {
                    f(sub);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
