//! `Subscription`: one subscriber's view of the hub. It first replays history after its
//! cursor up to the handoff point fixed at registration, then drains its live queue
//! (`SubscriberQueue`, in `queue`). Each call to `next` hands the connection everything ready
//! (up to a batch), so one write carries it;
//! `next_or_idle` is the same with a limit on waiting for live events (long-poll).
//!
//! A subscription sees the hub only through `SubscriptionContext`: the store to replay from,
//! the replay and delivery limits, the delivery counter, and a handle to leave the registry.
//!
//! With a snapshot (`load_snapshot`, before the first step) it first hands out the newest
//! event per key as of the snapshot's cursor `S`, then `Step::Snapshot { cursor: S }`, then
//! exactly the events after `S`: the subscription registered at `until` before the table was
//! read, so `S >= until` for a store that keeps its contract, and the live queue holds every
//! event after `until`; those up to `S` are already in the snapshot and are skipped. (Were
//! `S` below `until`, replay would read `(S, until]` from history instead.)

mod queue;
mod tail;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tidings_proto::topic::{MAX_KEY_BYTES, MAX_TOPIC_BYTES, MAX_TYPE_BYTES};
use tidings_proto::{Epoch, EventId, Key, Pattern, Topic};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

pub(crate) use self::queue::{Offered, SubscriberQueue};
pub(crate) use self::tail::ReplayTail;
use crate::error::SnapshotError;
use crate::limits::Limits;
use crate::record::SharedEvent;
use crate::session::{Place, SessionPlace};
use crate::store::{DynStore, ReadLimit};

/// Takes a subscriber's queue out of the fan-out (the hub's registry implements it).
pub(crate) trait Unregister: Send + Sync + fmt::Debug {
    /// Removes `queue` from the registry.
    fn unregister(&self, queue: &SubscriberQueue);
}

/// What every subscription of one hub shares: all it may use of the hub.
#[derive(Debug)]
pub(crate) struct SubscriptionContext {
    pub(crate) store: DynStore,
    /// The most recently delivered events, which replay reads before asking the store.
    pub(crate) tail: Arc<ReplayTail>,
    pub(crate) epoch: Epoch,
    /// Most events per replay read.
    pub(crate) replay_chunk: usize,
    /// Bytes of the replay budget one read takes (and its byte bound).
    pub(crate) replay_permits: u32,
    /// `Limits::replay_memory_bytes`, in permits of one byte.
    pub(crate) replay_budget: Arc<Semaphore>,
    /// Most events handed out per step.
    pub(crate) delivery_batch: usize,
    /// Bytes of the replay budget a snapshot read takes (and its byte bound).
    pub(crate) snapshot_permits: u32,
    /// Events read from history and handed to connections (`HubStats::replayed`); one
    /// relaxed add per replay step.
    pub(crate) replayed: AtomicU64,
    /// The registry, weakly: a subscription outliving its hub just has nothing to leave.
    pub(crate) registry: Weak<dyn Unregister>,
}

impl SubscriptionContext {
    pub(crate) fn new(
        store: DynStore,
        tail: Arc<ReplayTail>,
        limits: &Limits,
        registry: Weak<dyn Unregister>,
    ) -> SubscriptionContext {
        let permits = replay_permits(limits);
        // Never less than one read takes, or replay would wait forever.
        let budget = limits
            .replay_memory_bytes
            .max(permits as usize)
            .min(Semaphore::MAX_PERMITS);
        SubscriptionContext {
            epoch: store.epoch(),
            store,
            tail,
            replay_chunk: limits.replay_chunk,
            replay_permits: permits,
            replay_budget: Arc::new(Semaphore::new(budget)),
            delivery_batch: limits.delivery_batch,
            snapshot_permits: limits
                .snapshot_max_bytes
                .min(budget)
                .clamp(1, u32::MAX as usize) as u32,
            replayed: AtomicU64::new(0),
            registry,
        }
    }
}

/// The budget one replay read takes: `replay_chunk_bytes`, raised so the largest event the
/// limits allow fits, lowered to the whole budget (more would wait forever), at least 1.
fn replay_permits(limits: &Limits) -> u32 {
    let largest = 64 + MAX_TOPIC_BYTES + MAX_TYPE_BYTES + 2 * MAX_KEY_BYTES + limits.max_data_bytes;
    let permits = limits
        .replay_chunk_bytes
        .max(largest)
        .min(limits.replay_memory_bytes)
        .clamp(1, u32::MAX as usize);
    permits as u32
}

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
    /// An operator closed it (the admin API).
    Operator,
    /// The credential the subscription was opened with expired (decided by the server, which
    /// knows credentials; the engine itself never ends a subscription for this).
    TokenExpired,
    /// The hub asked this client to reconnect (a drain, or `Hub::reconnect`): it should
    /// reconnect at once, with its last id or client id, possibly to another node.
    Reconnect,
}

impl CloseReason {
    /// Stable wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Shutdown => "shutdown",
            CloseReason::StoreFailed => "store_failed",
            CloseReason::Operator => "operator",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::Reconnect => "reconnect",
        }
    }
}

/// How a subscription with a client id starts: told `resumed` or `subscribed`, and where it
/// records its session's place.
#[derive(Debug)]
pub(crate) struct SessionStart {
    pub(crate) resumed: bool,
    /// `None` when the session table had no room: the client is told `subscribed`.
    pub(crate) place: Option<Place>,
}

/// What `Subscription::next` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first step of a subscription with a client id: whether it resumed a live session
    /// (`resumed`) or started one (`subscribed`).
    Session {
        /// A live session with the same selector was found.
        resumed: bool,
        /// The id the stream continues after.
        cursor: EventId,
    },
    /// Events were appended to the output buffer.
    Events,
    /// The cursor could not be honoured; the stream continues after `resume_after`.
    Reset {
        /// Why.
        reason: ResetReason,
        /// The id the stream continues after (send it as the event's id).
        resume_after: EventId,
    },
    /// The snapshot (handed out as `Events` before this) ends here: it is the newest event per
    /// key as of `cursor`, and the stream continues with the events after `cursor`.
    Snapshot {
        /// The id the stream continues after (send it as the handoff's id).
        cursor: EventId,
    },
    /// The subscription is over; nothing more will come.
    Closed(CloseReason),
}

/// A view of a subscription from outside its connection (operators' tools): its counts, and
/// a way to end it. Holding one does not keep the subscription registered.
#[derive(Debug, Clone)]
pub struct SubscriptionProbe {
    queue: Arc<SubscriberQueue>,
}

impl SubscriptionProbe {
    /// The hub's id of the subscription (unique within the process).
    pub fn id(&self) -> u64 {
        self.queue.id
    }

    /// Events waiting in its live queue.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// Events handed to its connection so far.
    pub fn delivered(&self) -> u64 {
        self.queue.delivered()
    }

    /// Ends the subscription with `reason` once what it has queued is handed out (its
    /// connection then says `reconnect-required`).
    pub fn close(&self, reason: CloseReason) {
        self.queue.close(reason);
    }
}

/// A live subscription. Dropping it unregisters it.
#[derive(Debug)]
pub struct Subscription {
    ctx: Arc<SubscriptionContext>,
    shared: Arc<SubscriberQueue>,
    notice: Option<ResetReason>,
    /// Replay position: events with seq in `(pos, until]` come from the store.
    pos: u64,
    /// The handoff point: live delivery starts after it.
    until: u64,
    /// Seq of the last live event handed out.
    last_live: u64,
    /// The replay budget held by the events of the last step, until the next.
    replay_held: Option<OwnedSemaphorePermit>,
    /// A wait for replay budget that a cancelled `next` left in line.
    replay_wait: Option<BudgetWait>,
    /// The session announcement not yet handed out (`resumed`?).
    announce: Option<bool>,
    /// The session's place, which the connection confirms (`session_place`).
    place: Option<Place>,
    /// A loaded snapshot not yet handed out (boxed: most subscriptions have none, and every
    /// idle connection would otherwise carry its room).
    prelude: Option<Box<Prelude>>,
    /// Live events up to this seq are in the snapshot already: skipped.
    skip_through: u64,
}

/// A snapshot waiting to be handed out: its events, the budget they hold, then its handoff.
#[derive(Debug)]
struct Prelude {
    events: Vec<SharedEvent>,
    held: Option<OwnedSemaphorePermit>,
    /// The snapshot's cursor, announced (`Step::Snapshot`) after its events.
    handoff_at: EventId,
}

/// A queued wait for replay budget.
struct BudgetWait(Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>);

impl fmt::Debug for BudgetWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BudgetWait")
    }
}

impl Subscription {
    pub(crate) fn new(
        ctx: Arc<SubscriptionContext>,
        shared: Arc<SubscriberQueue>,
        notice: Option<ResetReason>,
        from: u64,
        until: u64,
        session: Option<SessionStart>,
    ) -> Self {
        let (announce, place) = match session {
            Some(s) => (Some(s.resumed), s.place),
            None => (None, None),
        };
        Subscription {
            ctx,
            shared,
            notice,
            pos: from.min(until),
            until,
            last_live: 0,
            replay_held: None,
            replay_wait: None,
            announce,
            place,
            prelude: None,
            skip_through: 0,
        }
    }

    /// Starts this subscription with a snapshot: the newest event per key under its selector,
    /// read now, then the events after the snapshot's cursor (see the module docs). Call before
    /// the first step. Waits for room in the replay budget; a snapshot over
    /// `Limits::snapshot_max_bytes` is refused. Cancel-safe (nothing changes until it returns).
    pub async fn load_snapshot(&mut self) -> Result<(), SnapshotError> {
        let permits = self.ctx.snapshot_permits;
        let mut held = Arc::clone(&self.ctx.replay_budget)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| SnapshotError::Store(crate::store::StoreError::Closed))?;
        let read = self
            .ctx
            .store
            .snapshot(&self.shared.selector, permits as usize)
            .await?;
        if read.overflow {
            return Err(SnapshotError::TooLarge {
                max: permits as usize,
            });
        }
        let kept: usize = read.events.iter().map(|e| e.size()).sum();
        drop(held.split((permits as usize).saturating_sub(kept)));
        if read.through < self.until {
            // History fills `(through, until]`.
            self.pos = self.pos.min(read.through);
        } else {
            self.pos = self.until;
            self.skip_through = read.through;
            self.last_live = read.through;
        }
        let events = read
            .events
            .into_iter()
            .filter(|e| self.shared.wants(e))
            .collect();
        self.prelude = Some(Box::new(Prelude {
            events,
            held: Some(held),
            handoff_at: EventId::new(self.ctx.epoch, read.through),
        }));
        Ok(())
    }

    /// Whether the snapshot's handoff (`Step::Snapshot`) is still to come.
    pub fn handoff_pending(&self) -> bool {
        self.prelude.is_some()
    }

    /// The snapshot's events, then its handoff, come before replay and live events.
    fn snapshot_step(&mut self, out: &mut Vec<SharedEvent>) -> Option<Step> {
        let prelude = self.prelude.as_mut()?;
        if !prelude.events.is_empty() {
            out.append(&mut prelude.events);
            self.replay_held = prelude.held.take();
            return Some(Step::Events);
        }
        let cursor = prelude.handoff_at;
        self.prelude = None;
        Some(Step::Snapshot { cursor })
    }

    /// What this subscription selects.
    pub fn selector(&self) -> &tidings_proto::Selector {
        &self.shared.selector
    }

    /// The client id this subscription was opened with.
    pub fn client_id(&self) -> Option<&Key> {
        self.shared.client_id.as_ref()
    }

    /// Where the connection confirms what reached the client, if this subscription holds a
    /// client-id session. Nothing moves it but `SessionPlace::confirm` (and the cursor the
    /// subscription started from): a place never claims an event the client did not get.
    pub fn session_place(&self) -> Option<SessionPlace> {
        self.place.clone().map(SessionPlace)
    }

    /// The session announcement, then a reset notice, come before anything else.
    fn begin_step(&mut self) -> Option<Step> {
        if let Some(resumed) = self.announce.take() {
            return Some(Step::Session {
                resumed,
                cursor: EventId::new(self.ctx.epoch, self.pos),
            });
        }
        self.notice.take().map(|reason| Step::Reset {
            reason,
            resume_after: self.handoff(),
        })
    }

    /// The handoff point: the head of the hub when this subscription registered.
    pub fn handoff(&self) -> EventId {
        EventId::new(self.ctx.epoch, self.until)
    }

    /// The id after which this subscription continues: every matching event up to it has been
    /// handed out. A long-poll answers it as the next cursor.
    pub fn position(&self) -> EventId {
        EventId::new(self.ctx.epoch, self.pos.max(self.last_live))
    }

    /// Events waiting in the live queue (for metrics).
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Events handed to the connection so far.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered()
    }

    /// A handle another task may keep to watch this subscription or close it.
    pub fn probe(&self) -> SubscriptionProbe {
        SubscriptionProbe {
            queue: Arc::clone(&self.shared),
        }
    }

    /// Waits for the next step, appending ready events to `out` (which the caller clears).
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self, out: &mut Vec<SharedEvent>) -> Step {
        if let Some(step) = self.begin_step() {
            return step;
        }
        let before = out.len();
        let step = match self.snapshot_step(out) {
            Some(step) => step,
            None => match self.replay(out).await {
                Some(step) => step,
                None => self.live(out).await,
            },
        };
        let n = (out.len() - before) as u64;
        if n > 0 {
            self.shared.add_delivered(n);
        }
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
        if let Some(step) = self.begin_step() {
            return Some(step);
        }
        let before = out.len();
        let step = match self.snapshot_step(out) {
            Some(step) => Some(step),
            None => self.replay_or_idle(out, idle).await,
        };
        let n = (out.len() - before) as u64;
        if n > 0 {
            self.shared.add_delivered(n);
        }
        step
    }

    /// `next_or_idle` after the snapshot: replay, then live until `idle`.
    async fn replay_or_idle(
        &mut self,
        out: &mut Vec<SharedEvent>,
        idle: impl std::future::Future<Output = ()>,
    ) -> Option<Step> {
        match self.replay(out).await {
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
        }
    }

    /// Replays history up to the handoff point: `Some` as soon as a step is ready, `None`
    /// once everything up to the handoff has been read and none of it matched.
    ///
    /// Each read comes from the hub's tail of recently delivered events (`ReplayTail`) when
    /// it covers the position, from the store otherwise (then only up to where the tail
    /// starts): both give the same events, the tail without a store read or a decode, and
    /// as the very records live connections were handed, encodings included.
    async fn replay(&mut self, out: &mut Vec<SharedEvent>) -> Option<Step> {
        // The caller has written what the last step handed out: its budget is free again.
        self.replay_held = None;
        while self.pos < self.until {
            let store = &self.ctx.store;
            if self.pos < store.trimmed_through() {
                return Some(self.expire());
            }
            // Cancel-safe: the wait for budget is kept across a cancelled `next` (a transport
            // that wakes for a keepalive keeps its place in line), and a dropped read moves
            // nothing.
            let budget = &self.ctx.replay_budget;
            let permits = self.ctx.replay_permits;
            let wait = self.replay_wait.get_or_insert_with(|| {
                BudgetWait(Box::pin(Arc::clone(budget).acquire_many_owned(permits)))
            });
            let acquired = wait.0.as_mut().await;
            self.replay_wait = None;
            let Ok(mut held) = acquired else {
                // The budget is never closed while the hub's subscriptions exist.
                return Some(Step::Closed(CloseReason::Shutdown));
            };
            let limit = ReadLimit {
                events: self.ctx.replay_chunk,
                bytes: self.ctx.replay_permits as usize,
            };
            let before = out.len();
            let (until, queue) = (self.until, &self.shared);
            // The registry matches topics for live events; replay does it here, and `wants`
            // adds the type filter and origin suppression, as for live ones.
            let keep = |event: &SharedEvent| {
                let topic = &event.event.topic;
                queue.selector.patterns.iter().any(|p| p.matches(topic)) && queue.wants(event)
            };
            let tail = &self.ctx.tail;
            let from_tail = match exact_topics(&queue.selector.patterns) {
                // Exact topics: only their events, through the tail's index. Once every one of
                // them after `pos` is read, nothing else up to the ring's newest matches.
                Some(topics) => tail
                    .read_topics_after(self.pos, &topics, |events| {
                        scan(events, limit, until, &keep, out)
                    })
                    .map(|(pos, read)| match pos {
                        Some(pos) if Some(pos) != read.last => pos,
                        _ => read.newest.min(until),
                    }),
                None => tail
                    .read_after(self.pos, |events| scan(events, limit, until, &keep, out))
                    .flatten(),
            };
            let pos = match from_tail {
                Some(pos) => pos,
                None => {
                    // Below the tail: the store, up to where the tail takes over.
                    let limit = match tail.base() {
                        Some(base) if base > self.pos => ReadLimit {
                            events: limit
                                .events
                                .min(usize::try_from(base - self.pos).unwrap_or(usize::MAX)),
                            ..limit
                        },
                        _ => limit,
                    };
                    let chunk = match store.read_chunk(self.pos, limit).await {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            // The store logged the cause where it found it.
                            tracing::debug!(message = "Replay read failed.", error = %e);
                            return Some(Step::Closed(CloseReason::StoreFailed));
                        }
                    };
                    let Some(first) = chunk.first() else {
                        // The store has nothing after `pos` up to the handoff: it was trimmed
                        // away.
                        return Some(self.expire());
                    };
                    if first.seq() != self.pos + 1 && store.trimmed_through() > self.pos {
                        return Some(self.expire());
                    }
                    match scan(&mut chunk.iter(), limit, until, &keep, out) {
                        Some(pos) => pos,
                        None => return Some(self.expire()),
                    }
                }
            };
            self.pos = pos;
            // Keep budget for what is handed out; the rest of the chunk is dropped here.
            let kept: usize = out[before..].iter().map(|e| e.size()).sum();
            let spare = (self.ctx.replay_permits as usize).saturating_sub(kept);
            drop(held.split(spare));
            if !out.is_empty() {
                self.replay_held = Some(held);
                let replayed = (out.len() - before) as u64;
                self.ctx.replayed.fetch_add(replayed, Ordering::Relaxed);
                return Some(Step::Events);
            }
        }
        None
    }

    /// Waits for live events (skipping those a snapshot already covered).
    async fn live(&mut self, out: &mut Vec<SharedEvent>) -> Step {
        let batch = self.ctx.delivery_batch;
        loop {
            let before = out.len();
            let shared = &self.shared;
            let drained = std::future::poll_fn(|cx| shared.poll_drain(cx, out, batch)).await;
            match drained {
                Ok(()) => {
                    if self.skip_through > 0 {
                        let skip = self.skip_through;
                        let tail = out.split_off(before);
                        out.extend(tail.into_iter().filter(|e| e.seq() > skip));
                        if out.len() == before {
                            continue;
                        }
                        // The queue is in seq order: everything after this is new.
                        self.skip_through = 0;
                    }
                    self.last_live = out.last().map_or(self.last_live, |e| e.seq());
                    return Step::Events;
                }
                Err(reason) => return Step::Closed(reason),
            }
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

/// The topics of a selector made only of exact topics (`None` if any pattern is a prefix
/// or `*`), which the replay tail's per-topic index can answer for.
fn exact_topics(patterns: &[Pattern]) -> Option<Vec<&Topic>> {
    patterns
        .iter()
        .map(|p| match p {
            Pattern::Exact(topic) => Some(topic),
            Pattern::Prefix(_) | Pattern::All => None,
        })
        .collect()
}

/// One replay read over `events` (in seq order, from the store or the tail): takes those
/// that fit `limit` (`ReadLimit::fitting`, as a store's read does), stops at the handoff
/// `until`, and appends those `keep` accepts to `out`. Returns the position reached (the last
/// event taken, or `until` once an event past it comes); `None` if there were no events.
fn scan<'a>(
    events: &mut dyn Iterator<Item = &'a SharedEvent>,
    limit: ReadLimit,
    until: u64,
    keep: &dyn Fn(&SharedEvent) -> bool,
    out: &mut Vec<SharedEvent>,
) -> Option<u64> {
    let mut pos = None;
    for event in limit.fitting(events) {
        if event.seq() > until {
            return Some(until);
        }
        pos = Some(event.seq());
        if keep(event) {
            out.push(SharedEvent::clone(event));
        }
    }
    pos
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(registry) = self.ctx.registry.upgrade() {
            registry.unregister(&self.shared);
        }
    }
}
