//! `Subscription`: one subscriber's view of the hub. It first replays history after its
//! cursor up to the handoff point fixed at registration, then drains its live queue. Each call
//! to `next` hands the connection everything ready (up to a batch), so one write carries it;
//! `next_or_idle` is the same with a limit on waiting for live events (long-poll).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tidings_proto::EventId;

use crate::hub::Hub;
use crate::record::SharedEvent;
use crate::registry::SubShared;

/// Why the subscriber must start over from fresh state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The cursor is older than the retained history.
    CursorExpired,
    /// The cursor came from another store (another epoch).
    EpochMismatch,
    /// The cursor is ahead of anything this hub has delivered.
    CursorAhead,
    /// The cursor is not an event id.
    InvalidCursor,
}

impl ResetReason {
    /// Stable wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::CursorExpired => "cursor_expired",
            ResetReason::EpochMismatch => "epoch_mismatch",
            ResetReason::CursorAhead => "cursor_ahead",
            ResetReason::InvalidCursor => "invalid_cursor",
        }
    }
}

/// Why the hub ended a subscription. The subscriber should reconnect with its last id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its queue filled up: it reads slower than events arrive.
    SlowConsumer,
    /// The hub is shutting down.
    Shutdown,
    /// History could not be read.
    StoreFailed,
}

impl CloseReason {
    /// Stable wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::StoreFailed => "store_failed",
        }
    }
}

/// What `Subscription::next` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Events were appended to the output buffer.
    Events,
    /// The cursor could not be honoured; the stream continues after `resume_after`.
    Reset {
        /// Why.
        reason: ResetReason,
        /// The id the stream continues after (send it as the event's id).
        resume_after: EventId,
    },
    /// The subscription is over; nothing more will come.
    Closed(CloseReason),
}

/// A live subscription. Dropping it unregisters it.
#[derive(Debug)]
pub struct Subscription {
    hub: Hub,
    shared: Arc<SubShared>,
    notice: Option<ResetReason>,
    /// Replay position: events with seq in `(pos, until]` come from the store.
    pos: u64,
    /// The handoff point: live delivery starts after it.
    until: u64,
    /// Seq of the last live event handed out.
    last_live: u64,
}

impl Subscription {
    pub(crate) fn new(
        hub: Hub,
        shared: Arc<SubShared>,
        notice: Option<ResetReason>,
        from: u64,
        until: u64,
    ) -> Self {
        Subscription {
            hub,
            shared,
            notice,
            pos: from.min(until),
            until,
            last_live: 0,
        }
    }

    /// The handoff point: the head of the hub when this subscription registered.
    pub fn handoff(&self) -> EventId {
        EventId::new(self.hub.epoch(), self.until)
    }

    /// The id after which this subscription continues: every matching event up to it has been
    /// handed out. A long-poll answers it as the next cursor.
    pub fn position(&self) -> EventId {
        EventId::new(self.hub.epoch(), self.pos.max(self.last_live))
    }

    /// Events waiting in the live queue (for metrics).
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Waits for the next step, appending ready events to `out` (which the caller clears).
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self, out: &mut Vec<SharedEvent>) -> Step {
        if let Some(reason) = self.notice.take() {
            return Step::Reset {
                reason,
                resume_after: self.handoff(),
            };
        }
        let before = out.len();
        let step = match self.replay(out).await {
            Some(step) => step,
            None => self.live(out).await,
        };
        let n = (out.len() - before) as u64;
        self.hub.shared.delivered.fetch_add(n, Ordering::Relaxed);
        step
    }

    /// Like `next`, but stops waiting for live events once `idle` resolves, and then returns
    /// `None`. History after the cursor is read whatever `idle` does: a long-poll with no
    /// time to wait still answers with the events that exist, rather than with nothing
    /// because reading them from the store took a moment. Cancel-safe, like `next`.
    pub async fn next_or_idle(
        &mut self,
        out: &mut Vec<SharedEvent>,
        idle: impl std::future::Future<Output = ()>,
    ) -> Option<Step> {
        if let Some(reason) = self.notice.take() {
            return Some(Step::Reset {
                reason,
                resume_after: self.handoff(),
            });
        }
        let before = out.len();
        let step = match self.replay(out).await {
            Some(step) => Some(step),
            None => {
                let mut idle = std::pin::pin!(idle);
                let live = self.live(out);
                let mut live = std::pin::pin!(live);
                std::future::poll_fn(|cx| {
                    if let std::task::Poll::Ready(step) = live.as_mut().poll(cx) {
                        return std::task::Poll::Ready(Some(step));
                    }
                    idle.as_mut().poll(cx).map(|()| None)
                })
                .await
            }
        };
        let n = (out.len() - before) as u64;
        self.hub.shared.delivered.fetch_add(n, Ordering::Relaxed);
        step
    }

    /// Replays history up to the handoff point: `Some` as soon as a step is ready, `None`
    /// once everything up to the handoff has been read and none of it matched.
    async fn replay(&mut self, out: &mut Vec<SharedEvent>) -> Option<Step> {
        let store = &self.hub.shared.store;
        let limits = &self.hub.shared.limits;
        while self.pos < self.until {
            if self.pos < store.trimmed_through() {
                return Some(self.expire());
            }
            let chunk = match store.read_after(self.pos, limits.replay_chunk).await {
                Ok(chunk) => chunk,
                Err(e) => {
                    // The store logged the cause where it found it.
                    tracing::debug!(message = "Replay read failed.", error = %e);
                    return Some(Step::Closed(CloseReason::StoreFailed));
                }
            };
            let Some(first) = chunk.first() else {
                // The store has nothing after `pos` up to the handoff: it was trimmed away.
                return Some(self.expire());
            };
            if first.seq() != self.pos + 1 && store.trimmed_through() > self.pos {
                return Some(self.expire());
            }
            for event in chunk {
                if event.seq() > self.until {
                    self.pos = self.until;
                    break;
                }
                self.pos = event.seq();
                // The registry matches topics for live events; replay does it here, and
                // `wants` adds the type filter and origin suppression, as for live ones.
                let topic = &event.event.topic;
                if self
                    .shared
                    .selector
                    .patterns
                    .iter()
                    .any(|p| p.matches(topic))
                    && self.shared.wants(&event)
                {
                    out.push(event);
                }
            }
            if !out.is_empty() {
                return Some(Step::Events);
            }
        }
        None
    }

    /// Waits for live events.
    async fn live(&mut self, out: &mut Vec<SharedEvent>) -> Step {
        let batch = self.hub.shared.limits.delivery_batch;
        let shared = &self.shared;
        let drained = std::future::poll_fn(|cx| shared.poll_drain(cx, out, batch)).await;
        match drained {
            Ok(()) => {
                self.last_live = out.last().map_or(self.last_live, |e| e.seq());
                Step::Events
            }
            Err(reason) => Step::Closed(reason),
        }
    }

    /// History after `pos` was trimmed during replay: skip to live and say so.
    fn expire(&mut self) -> Step {
        self.pos = self.until;
        Step::Reset {
            reason: ResetReason::CursorExpired,
            resume_after: self.handoff(),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.shared);
    }
}
