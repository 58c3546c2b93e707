//! `SubscriberQueue`: one subscriber's bounded live queue, filled by the fan-out under the
//! hub's lock and drained by the subscriber's connection. Past the soft bound the queue is
//! conflated (superseded keyed events dropped, the newest per key kept); a full queue closes
//! the subscription as a slow consumer: the publisher never waits for a subscriber.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::task::AtomicWaker;
use tidings_proto::{Key, Selector};

use crate::record::SharedEvent;
use crate::subscription::CloseReason;

/// A subscriber's bounded live queue, with what the fan-out needs to fill it: its selector and
/// client id, the events waiting, and the waker of the connection that drains them.
#[derive(Debug)]
pub(crate) struct SubscriberQueue {
    pub(crate) id: u64,
    pub(crate) selector: Selector,
    /// Events published with this origin are not delivered to this subscriber.
    pub(crate) client_id: Option<Key>,
    cap: usize,
    cap_bytes: usize,
    /// Conflate at this many queued events (0: never).
    soft: usize,
    /// Held only for a push or a drain (short, synchronous); never across an await.
    queue: Mutex<QueueState>,
    /// Wakes the connection when its queue goes from empty to non-empty, or closes. One
    /// consumer only, so a lock-free waker slot is enough (no waiter list to lock).
    waker: AtomicWaker,
    /// Events handed to this subscriber's connection: one relaxed add per step, by the
    /// connection's own task (uncontended). The hub sums these for `HubStats::delivered`.
    delivered: AtomicU64,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<SharedEvent>,
    /// Sum of `EventRecord::size` over `events`.
    bytes: usize,
    closed: Option<CloseReason>,
    /// Conflate again when the queue reaches this length (at least `soft`; raised after a
    /// conflation that left many events, so each pass is paid for by as many new events).
    next_conflate: usize,
}

/// What `offer` did, for the hub's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Queued, or not wanted.
    Queued,
    /// Queued after dropping this many superseded events.
    Conflated(usize),
    /// Not queued: the queue is full (the subscription is closed and resumes from history)
    /// or was closed already.
    Dropped,
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

impl QueueState {
    /// Drops every conflatable event that a later conflatable event of the same topic and key
    /// supersedes, unless an event of that key that may not be conflated (a terminal) lies
    /// between them: per key, order is kept and terminals are never passed. The rest keeps
    /// its order, so what the subscriber reads still rises in id, and its last id resumes
    /// exactly. Returns how many were dropped.
    fn conflate(&mut self) -> usize {
        let before = self.events.len();
        let mut newer: HashSet<(&str, &str)> = HashSet::new();
        let mut keep = vec![true; before];
        for (i, e) in self.events.iter().enumerate().rev() {
            let Some(key) = &e.event.key else { continue };
            let id = (e.event.topic.as_str(), key.as_str());
            if !e.conflatable {
                // A terminal: what came before it stays before it.
                newer.remove(&id);
            } else if !newer.insert(id) {
                keep[i] = false;
            }
        }
        drop(newer);
        let mut i = 0;
        let mut bytes = self.bytes;
        self.events.retain(|e| {
            let k = keep[i];
            i += 1;
            if !k {
                bytes -= e.size();
            }
            k
        });
        self.bytes = bytes;
        before - self.events.len()
    }
}

impl SubscriberQueue {
    pub(crate) fn new(
        id: u64,
        selector: Selector,
        client_id: Option<Key>,
        cap: usize,
        cap_bytes: usize,
        soft: usize,
    ) -> Self {
        SubscriberQueue {
            id,
            selector,
            client_id,
            cap,
            cap_bytes,
            soft,
            queue: Mutex::new(QueueState::default()),
            waker: AtomicWaker::new(),
            delivered: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this subscriber wants `event` (type filter and origin suppression; the topic
    /// was matched by the registry).
    pub(crate) fn wants(&self, event: &SharedEvent) -> bool {
        let e = &event.event;
        (self.selector.types.is_empty() || self.selector.types.contains(&e.event_type))
            && (self.client_id.is_none() || e.origin != self.client_id)
    }

    /// Queues `event` if wanted. Past the soft bound the queue is conflated first; a full
    /// queue closes the subscription as a slow consumer: the publisher never waits for a
    /// subscriber.
    pub(crate) fn offer(&self, event: &SharedEvent) -> Offered {
        if !self.wants(event) {
            return Offered::Queued;
        }
        let mut q = self.lock();
        if q.closed.is_some() {
            return Offered::Dropped;
        }
        let size = event.size();
        let mut conflated = 0;
        if self.soft > 0 && q.events.len() >= self.soft.max(q.next_conflate) {
            conflated = q.conflate();
            q.next_conflate = self.soft.max(q.events.len() + self.soft / 2);
        }
        if q.events.len() >= self.cap || q.bytes + size > self.cap_bytes {
            q.closed = Some(CloseReason::SlowConsumer);
            drop(q);
            self.waker.wake();
            return Offered::Dropped;
        }
        let was_empty = q.events.is_empty();
        q.bytes += size;
        q.events.push_back(event.clone());
        drop(q);
        if was_empty {
            self.waker.wake();
        }
        if conflated > 0 {
            Offered::Conflated(conflated)
        } else {
            Offered::Queued
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

    /// Counts `n` events handed to the connection.
    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Events handed to the connection so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}
