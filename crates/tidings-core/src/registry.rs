//! Which subscriptions match a topic, and each subscription's bounded queue.
//!
//! A subscription's patterns are normalised when it registers (patterns covered by another
//! are dropped), so at most one of its patterns matches any topic and the fan-out needs no
//! de-duplication. Lookup per event: one hash probe for the exact topic, one per distinct
//! registered prefix length, then the `*` subscribers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::task::AtomicWaker;
use tidings_proto::{Key, Pattern, Selector, Topic};

use crate::record::SharedEvent;
use crate::subscription::CloseReason;

/// The state a subscription shares with the fan-out.
#[derive(Debug)]
pub(crate) struct SubShared {
    pub(crate) id: u64,
    pub(crate) selector: Selector,
    /// Events published with this origin are not delivered to this subscriber.
    pub(crate) client_id: Option<Key>,
    cap: usize,
    cap_bytes: usize,
    /// Held only for a push or a drain (short, synchronous); never across an await.
    queue: Mutex<Queue>,
    /// Wakes the connection when its queue goes from empty to non-empty, or closes. One
    /// consumer only, so a lock-free waker slot is enough (no waiter list to lock).
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<SharedEvent>,
    /// Sum of `EventRecord::size` over `events`.
    bytes: usize,
    closed: Option<CloseReason>,
}

/// Result of draining a queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// This many events were moved out.
    Took(usize),
    /// Nothing queued; wait for `notify`.
    Empty,
    /// Nothing queued and the queue is closed.
    Closed(CloseReason),
}

impl SubShared {
    pub(crate) fn new(
        id: u64,
        selector: Selector,
        client_id: Option<Key>,
        cap: usize,
        cap_bytes: usize,
    ) -> Self {
        SubShared {
            id,
            selector,
            client_id,
            cap,
            cap_bytes,
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this subscriber wants `event` (type filter and origin suppression; the topic
    /// was matched by the registry).
    pub(crate) fn wants(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        (self.selector.types.is_empty() || self.selector.types.contains(&e.event_type))
            && (self.client_id.is_none() || e.origin != self.client_id)
    }

    /// Queues `event` if wanted. A full queue closes the subscription as a slow consumer:
    /// the publisher never waits for a subscriber.
    pub(crate) fn offer(&self, event: &SharedEvent) {
        if !self.wants(event) {
            return;
        }
        let mut q = self.lock();
        if q.closed.is_some() {
            return;
        }
        let size = event.size();
        if q.events.len() >= self.cap || q.bytes + size > self.cap_bytes {
            q.closed = Some(CloseReason::SlowConsumer);
            drop(q);
            self.waker.wake();
            return;
        }
        let was_empty = q.events.is_empty();
        q.bytes += size;
        q.events.push_back(event.clone());
        drop(q);
        if was_empty {
            self.waker.wake();
        }
    }

    pub(crate) fn close(&self, reason: CloseReason) {
        let mut q = self.lock();
        if q.closed.is_none() {
            q.closed = Some(reason);
        }
        drop(q);
        self.waker.wake();
    }

    /// Moves up to `max` queued events into `out` (`Ready(Ok(()))`), reports the close once
    /// the queue is drained (`Ready(Err(reason))`), or registers `cx` to be woken when there is
    /// something (registered before looking, so no wake-up is lost).
    pub(crate) fn poll_drain(
        &self,
        cx: &mut std::task::Context<'_>,
        out: &mut Vec<SharedEvent>,
        max: usize,
    ) -> std::task::Poll<Result<(), CloseReason>> {
        self.waker.register(cx.waker());
        match self.drain(out, max) {
            Drain::Empty => std::task::Poll::Pending,
            Drain::Took(_) => std::task::Poll::Ready(Ok(())),
            Drain::Closed(reason) => std::task::Poll::Ready(Err(reason)),
        }
    }

    /// Moves up to `max` queued events into `out`.
    pub(crate) fn drain(&self, out: &mut Vec<SharedEvent>, max: usize) -> Drain {
        let mut q = self.lock();
        if q.events.is_empty() {
            return match q.closed {
                Some(reason) => Drain::Closed(reason),
                None => Drain::Empty,
            };
        }
        let n = q.events.len().min(max);
        let q = &mut *q;
        for event in q.events.drain(..n) {
            q.bytes -= event.size();
            out.push(event);
        }
        Drain::Took(n)
    }

    pub(crate) fn queued(&self) -> usize {
        self.lock().events.len()
    }
}

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

type Bucket = HashMap<u64, Arc<SubShared>>;

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
    pub(crate) fn insert(&mut self, sub: &Arc<SubShared>) {
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

    pub(crate) fn remove(&mut self, sub: &SubShared) {
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
    pub(crate) fn for_each_match(&self, topic: &Topic, mut f: impl FnMut(&Arc<SubShared>)) {
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

    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<SubShared>)) {
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
