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

    /// Calls `f` once for every subscription. A subscription sits in one bucket per pattern
    /// (its patterns are distinct once normalised), so it is visited in the bucket of its
    /// first pattern only: no set of ids seen, which cost a hash insert per subscription
    /// under the hub's lock on every `Hub::stats` (each `/metrics` scrape, and once a
    /// second for the admin API's rates).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<SubscriberQueue>)) {
        let exact = self.exact.iter().map(|(t, b)| (b, Some(t), None));
        let prefix = self.prefix.iter().map(|(p, b)| (b, None, Some(p)));
        for (bucket, topic, pre) in exact.chain(prefix).chain([(&self.all, None, None)]) {
            for sub in bucket.values() {
                let patterns = &sub.selector.patterns;
                let home = patterns.len() == 1
                    || match (&patterns[0], topic, pre) {
                        (Pattern::Exact(t), Some(topic), _) => t == topic,
                        (Pattern::Prefix(p), _, Some(pre)) => p == pre,
                        (Pattern::All, None, None) => true,
                        _ => false,
                    };
                if home {
                    f(sub);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use tidings_proto::Selector;

    use super::*;

    fn sub(id: u64, patterns: &[&str]) -> Arc<SubscriberQueue> {
        let patterns: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        let selector = Selector {
            patterns: normalise(&patterns),
            types: Vec::new(),
        };
        Arc::new(SubscriberQueue::new(id, selector, None, 16, 1 << 20, 8))
    }

    /// Every subscription once, whatever buckets its patterns put it in.
    #[test]
    fn for_each_visits_every_subscription_once() {
        let mut r = Registry::default();
        let subs = [
            sub(1, &["a"]),
            sub(2, &["a/*"]),
            sub(3, &["*"]),
            sub(4, &["a", "b", "c/*"]),
            sub(5, &["c/*", "a"]),
            sub(6, &["*", "a"]),
            sub(7, &["b", "d/*", "e/f/*"]),
        ];
        for s in &subs {
            r.insert(s);
        }
        let mut seen = Vec::new();
        r.for_each(|s| seen.push(s.id));
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
        r.remove(&subs[3]);
        let mut seen = Vec::new();
        r.for_each(|s| seen.push(s.id));
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 5, 6, 7]);
    }
}
