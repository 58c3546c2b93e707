//! `SubscriberQueue`: one subscriber's bounded live queue, filled by the fan-out under the
//! hub's lock and drained by the subscriber's connection. A full queue closes the
//! subscription as a slow consumer: the publisher never waits for a subscriber.

use std::collections::VecDeque;
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

impl SubscriberQueue {
    pub(crate) fn new(
        id: u64,
        selector: Selector,
        client_id: Option<Key>,
        cap: usize,
        cap_bytes: usize,
    ) -> Self {
        SubscriberQueue {
            id,
            selector,
            client_id,
            cap,
            cap_bytes,
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

    /// Counts `n` events handed to the connection.
    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// Events handed to the connection so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}
