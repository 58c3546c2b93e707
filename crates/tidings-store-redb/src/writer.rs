//! The writer thread: the only code that writes the files. It drains every append waiting in
//! the queue into one group, appends the group's events to the log (`wal`) with one write and,
//! in durable mode, one `fdatasync`, makes them readable through the tail (`Shared::tail`) and
//! answers them all (group commit). In the background it indexes the tail into redb in one
//! durable transaction (events, latest-per-key table, counters, retention), then resets the
//! log. It keeps the clean-shutdown marker, runs retention, and poisons the store on the first
//! failed write or commit.
//!
//! Rare requests take the slow path, which is the path every append took before the log: an
//! append with an idempotency key, a flush, a snapshot read (`Index`) and, in fast mode, the
//! first append after a flush index the tail and commit their batch to redb in one durable
//! transaction, so the keyed-batch and latest-per-key tables never need an in-memory overlay.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::WriteTransaction;
use tidings_core::{EventRecord, KeyedBatch, Retention, SharedEvent, SnapshotRules, StoreError};
use tokio::sync::oneshot;

use crate::latest::{LATEST, LATEST_BY_SEQ, Tables};
use crate::retention::{self, Counters};
use crate::schema::{self, CLEAN_SHUTDOWN, EVENTS, KEYED, KEYED_BY_SEQ, META};
use crate::wal::{self, Log};
use crate::{Durability, Shared, guarded, store_error};

/// The tail is indexed into redb once it holds this many events, ...
const INDEX_EVENTS: usize = 8192;
/// ... or this many bytes (encoded), ...
const INDEX_BYTES: u64 = 2 << 20;
/// ... or its oldest event is this old (and at once when a retention bound is over its slack,
/// or before a flush, keyed append, snapshot read or age trim).
const INDEX_AFTER: Duration = Duration::from_secs(1);

/// Most events one commit takes from the queue; the rest wait for the next commit.
const MAX_EVENTS_PER_COMMIT: usize = 16_384;

/// Shortest and longest a commit waits for the rest of the previous commit's publishers (see
/// `run`); in between, as long as the previous commit took.
const GATHER_MIN: Duration = Duration::from_micros(200);
const GATHER_MAX: Duration = Duration::from_millis(2);

/// One answer channel per request.
pub(crate) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// What the store asks its writer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Write these events (seq order), then answer.
    Append {
        events: Vec<SharedEvent>,
        /// Remembered in the same transaction as the events.
        keyed: Option<KeyedBatch>,
        done: Reply,
        /// When it was sent: whether its publisher is one the last commit answered.
        queued: Instant,
    },
    /// Trim to the exact bounds, commit durably with the clean marker, then answer.
    Flush { done: Reply },
    /// Index the tail into redb (durably), then answer: before a read of the tables the
    /// tail is not mirrored in (the latest-per-key table).
    Index { done: Reply },
    /// Replace the saved client-id sessions (durably), then answer.
    SaveSessions {
        sessions: Vec<tidings_core::SavedSession>,
        done: Reply,
    },
    /// Test hook: stop at once, without the final durable commit or the clean marker.
    Crash,
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Request>,
    pub(crate) durability: Durability,
    pub(crate) retention: Retention,
    /// What the latest-per-key table keeps.
    pub(crate) rules: SnapshotRules,
    pub(crate) counters: Counters,
    /// Whether the durable state holds the clean-shutdown marker. In fast mode it must be
    /// removed by a durable commit before an unfsynced append is acknowledged.
    pub(crate) marker_set: bool,
    /// Fast mode: commits since the last durable one.
    pub(crate) dirty: bool,
    pub(crate) last_sync: Instant,
    pub(crate) last_age_check: Instant,
    /// Publish time of the oldest retained event, when known.
    pub(crate) oldest_time: Option<u64>,
    /// Appends the previous commit answered: how many to wait for (briefly) in the next.
    pub(crate) last_batch: usize,
    /// When the previous commit answered them: an append queued since is one of them back.
    pub(crate) answered_at: Instant,
    /// How long the previous commit took (its fsync included): the gather window.
    pub(crate) last_commit: Duration,
    /// The append log: acknowledged events not yet in redb are in it.
    pub(crate) log: Log,
    /// Fast mode: the log holds bytes written since its last `fdatasync`.
    pub(crate) log_dirty: bool,
    /// Acknowledged events in the log but not yet in redb, in seq order (the writer's copy of
    /// `Shared::tail`, which readers consult).
    pub(crate) tail: Vec<SharedEvent>,
    /// Sum of their encoded lengths.
    pub(crate) tail_bytes: u64,
    /// When the oldest of them was acknowledged.
    pub(crate) tail_since: Option<Instant>,
    /// The frames of one group, reused.
    pub(crate) frames: Vec<u8>,
}

impl Writer {
    /// Runs until the store is dropped (or a `Crash` request).
    pub(crate) fn run(mut self) {
        let mut encoded = Vec::new();
        loop {
            let first = match self.next_deadline() {
                Some(wait) => match self.rx.recv_timeout(wait) {
                    Ok(request) => request,
                    Err(RecvTimeoutError::Timeout) => {
                        self.housekeeping(&mut encoded);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            let mut events = batch_events(&batch);
            let mut returned = usize::from(self.came_back(&batch[0]));
            let gather_until = Instant::now() + self.last_commit.clamp(GATHER_MIN, GATHER_MAX);
            while events < MAX_EVENTS_PER_COMMIT {
                let request = match self.rx.try_recv() {
                    Ok(request) => request,
                    // Publishers answered by the last commit are usually on their way back:
                    // wait briefly until as many have come back as that commit answered, so
                    // they share this commit instead of splitting into two half-sized ones.
                    // Only appends sent after that answer count: those queued during the
                    // commit are other publishers, and counting them would keep two cohorts
                    // committing in turn, each paying a commit for half the publishers.
                    Err(_) if returned < self.last_batch => {
                        let wait = gather_until.saturating_duration_since(Instant::now());
                        match self.rx.recv_timeout(wait) {
                            Ok(request) => request,
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
                events += batch_events(std::slice::from_ref(&request));
                returned += usize::from(self.came_back(&request));
                batch.push(request);
            }
            self.last_batch = batch
                .iter()
                .filter(|r| matches!(r, Request::Append { .. }))
                .count();
            if batch.iter().any(|r| matches!(r, Request::Crash)) {
                return;
            }
            let started = Instant::now();
            self.process(batch, &mut encoded);
            self.last_commit = self.answered_at.saturating_duration_since(started);
            self.housekeeping(&mut encoded);
        }
        self.close(&mut encoded);
    }

    /// Whether `request` is an append sent after the previous commit answered its publishers.
    fn came_back(&self, request: &Request) -> bool {
        matches!(request, Request::Append { queued, .. } if *queued >= self.answered_at)
    }

    /// How long to wait for a request before periodic work is due (`None`: nothing is).
    fn next_deadline(&self) -> Option<Duration> {
        // A poisoned store does no periodic work (and must not spin on a deadline it will
        // never clear).
        if self.shared.poison.get().is_some() {
            return None;
        }
        let mut due: Option<Instant> = None;
        if let Durability::Fast { fsync_interval } = self.durability
            && self.dirty
        {
            due = Some(self.last_sync + fsync_interval);
        }
        if let Durability::Fast { fsync_interval } = self.durability
            && self.log_dirty
        {
            let log_due = self.last_sync + fsync_interval;
            due = Some(due.map_or(log_due, |d| d.min(log_due)));
        }
        if let Some(since) = self.tail_since
            && !self.shared.hold_index.load(Ordering::Relaxed)
        {
            let index_due = since + INDEX_AFTER;
            due = Some(due.map_or(index_due, |d| d.min(index_due)));
        }
        if self.retention.max_age.is_some() && self.counters.events > 0 {
            let age_due = self.last_age_check + retention::AGE_CHECK_EVERY;
            due = Some(due.map_or(age_due, |d| d.min(age_due)));
        }
        due.map(|d| d.saturating_duration_since(Instant::now()))
    }

    fn process(&mut self, mut batch: Vec<Request>, encoded: &mut Vec<u8>) {
        if let Some(err) = self.shared.poison.get() {
            let refused = StoreError::Poisoned(err.to_string());
            self.answered_at = Instant::now();
            for request in batch {
                reply_to(request, Err(refused.clone()));
            }
            return;
        }
        // Sessions are saved in their own durable commit, before the events of the batch
        // (they only name seqs already acknowledged, which the log or redb holds).
        let (saves, rest): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|r| matches!(r, Request::SaveSessions { .. }));
        batch = rest;
        for request in saves {
            let Request::SaveSessions { sessions, done } = request else {
                continue;
            };
            let result = self.commit(true, |tx, _| crate::sessions::write(tx, &sessions));
            if done.send(result).is_err() {
                tracing::trace!("Sessions saved after their caller left.");
            }
        }
        if batch.is_empty() {
            return;
        }
        let flush = batch.iter().any(|r| matches!(r, Request::Flush { .. }));
        // The rare requests index the tail and commit the batch to redb in one durable
        // transaction, exactly as before the log existed: an idempotency key, a flush, a
        // snapshot (`Index`), and in fast mode the first append after a flush (whose commit
        // must durably remove the clean marker first).
        let fast = matches!(self.durability, Durability::Fast { .. });
        let slow = flush
            || (fast && self.marker_set)
            || batch.iter().any(|r| {
                matches!(
                    r,
                    Request::Index { .. } | Request::Append { keyed: Some(_), .. }
                )
            });
        let result = if slow {
            self.commit_slow(&batch, encoded, flush)
        } else {
            self.log_appends(&batch, encoded)
        };
        // Before the first answer: a publisher may be back before the last one is sent.
        self.answered_at = Instant::now();
        for request in batch {
            reply_to(request, result.clone());
        }
        if result.is_ok() && !flush {
            self.maybe_index(encoded);
        }
    }

    /// Appends the batch's events to the log with one write (and in durable mode one
    /// `fdatasync`), then makes them readable through the tail. Nothing touches redb.
    fn log_appends(&mut self, batch: &[Request], encoded: &mut Vec<u8>) -> Result<(), StoreError> {
        let mut last = self.last_seq();
        let mut frames = std::mem::take(&mut self.frames);
        frames.clear();
        let mut added = Vec::new();
        for request in batch {
            let Request::Append { events, .. } = request else {
                continue;
            };
            for event in events {
                let seq = event.seq();
                if seq <= last {
                    let err =
                        StoreError::Io(format!("append out of order: seq {seq} after {last}"));
                    self.poison(&err);
                    self.frames = frames;
                    return Err(err);
                }
                schema::encode_event(&event.event, encoded);
                wal::put_frame(&mut frames, self.log.salt(), seq, encoded);
                added.push(encoded.len() as u64);
                last = seq;
            }
        }
        let durable = matches!(self.durability, Durability::Durable);
        let written = self.log.append(&frames).and_then(|()| {
            #[cfg(test)]
            if self.shared.fail_commits.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("injected log failure"));
            }
            if durable { self.log.sync() } else { Ok(()) }
        });
        self.frames = frames;
        if let Err(e) = written {
            let err = StoreError::Io(format!("writing the store's log: {e}"));
            self.poison(&err);
            return Err(err);
        }
        if !durable {
            self.log_dirty = true;
        }
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        let mut sizes = added.into_iter();
        let before = self.tail.len();
        for request in batch {
            let Request::Append { events, .. } = request else {
                continue;
            };
            for event in events {
                self.tail_bytes += sizes.next().unwrap_or_default();
                // Reads carry the store's epoch, as redb's decoded rows do. The hub builds
                // its ids from it, so this copies nothing on the publish path.
                let event = if event.event.id.epoch == self.shared.epoch.0 {
                    SharedEvent::clone(event)
                } else {
                    let mut restamped = event.event.clone();
                    restamped.id.epoch = self.shared.epoch.0;
                    EventRecord::new(restamped)
                };
                self.tail.push(event);
            }
        }
        if self.tail_since.is_none() {
            self.tail_since = Some(Instant::now());
        }
        // Over a retention bound by its slack: index and trim before they become readable,
        // so a reader never sees more history than the bound plus its slack.
        if retention::over_size(&self.retention, &self.total(), false)
            && self.commit_slow(&[], encoded, false).is_ok()
        {
            return Ok(());
        }
        // (After a failed index the events stay in the tail: they are acknowledged.)
        let start = before.min(self.tail.len());
        self.shared
            .lock_tail()
            .extend(self.tail[start..].iter().cloned());
        self.publish_counters();
        Ok(())
    }

    /// Indexes the tail when it is due: over its bounds, or over a retention bound by its
    /// slack (so a reader never sees more history than today: the bound plus its slack).
    fn maybe_index(&mut self, encoded: &mut Vec<u8>) {
        if self.tail.is_empty() {
            return;
        }
        let held = self.shared.hold_index.load(Ordering::Relaxed);
        let due = (!held
            && (self.tail.len() >= INDEX_EVENTS
                || self.tail_bytes >= INDEX_BYTES
                || self.tail_since.is_some_and(|t| t.elapsed() >= INDEX_AFTER)))
            || retention::over_size(&self.retention, &self.total(), false);
        if due {
            let _indexed = self.commit_slow(&[], encoded, false).is_ok();
        }
    }

    /// Commits the tail and the batch's appends to redb in one durable transaction (with
    /// retention: exact on a flush, which also sets the clean marker; else past the slack),
    /// then empties the tail and resets the log.
    fn commit_slow(
        &mut self,
        batch: &[Request],
        encoded: &mut Vec<u8>,
        flush: bool,
    ) -> Result<(), StoreError> {
        let fast = matches!(self.durability, Durability::Fast { .. });
        let retention = self.retention.clone();
        let rules = self.rules.clone();
        let now = tidings_core::clock::now_ms();
        let trimmed_before = self.counters.trimmed_through;
        // Out of the tail while the commit runs, so the counters it publishes count each
        // event once; readers keep seeing them in the shared tail until it is done.
        let tail = std::mem::take(&mut self.tail);
        let tail_bytes = std::mem::take(&mut self.tail_bytes);
        let clear_marker = fast && self.marker_set && !flush;
        let result = self.commit(true, |tx, counters| {
            let groups = std::iter::once((tail.as_slice(), None)).chain(batch.iter().filter_map(
                |r| match r {
                    Request::Append { events, keyed, .. } => {
                        Some((events.as_slice(), keyed.as_ref()))
                    }
                    _ => None,
                },
            ));
            append_all(tx, groups, counters, encoded, &rules)?;
            // Exact on a flush; else only past the slack (a trim, once started, is exact).
            if flush || retention::over_size(&retention, counters, false) {
                *counters = retention::trim(tx, &retention, *counters, now)?;
            }
            if flush || clear_marker {
                let mut meta = tx.open_table(META).map_err(store_error)?;
                if flush {
                    meta.insert(CLEAN_SHUTDOWN, [].as_slice())
                        .map_err(store_error)?;
                } else {
                    meta.remove(CLEAN_SHUTDOWN).map_err(store_error)?;
                }
            }
            Ok(())
        });
        if let Err(err) = result {
            // Still acknowledged (they are in the log): readers keep seeing them.
            self.tail = tail;
            self.tail_bytes = tail_bytes;
            self.publish_counters();
            return Err(err);
        }
        self.tail_since = None;
        // The emptied tail keeps its allocation: growing a new one to thousands of events
        // every round touched fresh pages each time (`perf`: page faults under `finish_grow`).
        let mut tail = tail;
        tail.clear();
        self.tail = tail;
        let indexed = self.counters.last_seq;
        {
            let mut pending = self.shared.lock_tail();
            while pending.front().is_some_and(|e| e.seq() <= indexed) {
                pending.pop_front();
            }
        }
        // redb now durably holds everything the log held.
        if let Err(e) = self.log.reset() {
            let err = StoreError::Io(format!("resetting the store's log: {e}"));
            self.poison(&err);
            return Err(err);
        }
        self.log_dirty = false;
        if flush {
            self.marker_set = true;
            self.oldest_time = None;
            self.last_age_check = Instant::now();
        } else if clear_marker {
            self.marker_set = false;
        }
        if self.counters.trimmed_through != trimmed_before {
            // The oldest event changed; the next age check reads it again.
            self.oldest_time = None;
        }
        Ok(())
    }

    /// Records the first failure: every later append is refused.
    fn poison(&self, err: &StoreError) {
        tracing::error!(message = "Event store write failed; refusing appends.", %err);
        let _first = self.shared.poison.set(err.clone()).is_ok();
    }

    /// Highest seq acknowledged: the tail's last, or redb's.
    fn last_seq(&self) -> u64 {
        self.tail.last().map_or(self.counters.last_seq, |e| e.seq())
    }

    /// What readers see: redb's counters plus the tail.
    fn total(&self) -> Counters {
        Counters {
            events: self.counters.events + self.tail.len() as u64,
            bytes: self.counters.bytes + self.tail_bytes,
            last_seq: self.last_seq(),
            trimmed_through: self.counters.trimmed_through,
        }
    }

    /// Runs `write` in one transaction and commits it; on success publishes the new counters,
    /// on failure poisons the store.
    fn commit(
        &mut self,
        durable: bool,
        write: impl FnOnce(&WriteTransaction, &mut Counters) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut counters = self.counters;
        let result = guarded(
            || "writing a commit".into(),
            || {
                let mut tx = self.shared.db.begin_write().map_err(store_error)?;
                let level = if durable {
                    redb::Durability::Immediate
                } else {
                    redb::Durability::None
                };
                tx.set_durability(level).map_err(store_error)?;
                write(&tx, &mut counters)?;
                #[cfg(test)]
                if self.shared.fail_commits.load(Ordering::Relaxed) {
                    return Err(StoreError::Io("injected commit failure".into()));
                }
                tx.commit().map_err(store_error)
            },
        );
        match &result {
            Ok(()) => {
                self.counters = counters;
                self.publish_counters();
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                if durable {
                    self.dirty = false;
                    self.last_sync = Instant::now();
                } else {
                    self.dirty = true;
                }
            }
            Err(err) => {
                tracing::error!(message = "Event store commit failed; refusing appends.", %err);
                // The first failure wins: it is what health() reports.
                let _first = self.shared.poison.set(err.clone()).is_ok();
            }
        }
        result
    }

    fn sync_due(&self) -> bool {
        match self.durability {
            Durability::Durable => true,
            Durability::Fast { fsync_interval } => self.last_sync.elapsed() >= fsync_interval,
        }
    }

    /// Publishes what readers see (redb's counters plus the tail) for `stats()`.
    fn publish_counters(&self) {
        let s = &self.shared;
        let total = self.total();
        s.events.store(total.events, Ordering::Release);
        s.bytes.store(total.bytes, Ordering::Release);
        s.last_seq.store(total.last_seq, Ordering::Release);
        s.trimmed_through
            .store(total.trimmed_through, Ordering::Release);
    }

    /// Periodic work: the fast-mode fsync of the log, indexing a tail that is old enough,
    /// and the age check.
    fn housekeeping(&mut self, encoded: &mut Vec<u8>) {
        if self.shared.poison.get().is_some() {
            return;
        }
        if self.log_dirty && self.sync_due() {
            match self.log.sync() {
                Ok(()) => {
                    self.log_dirty = false;
                    self.last_sync = Instant::now();
                }
                Err(e) => {
                    self.poison(&StoreError::Io(format!("syncing the store's log: {e}")));
                    return;
                }
            }
        }
        self.maybe_index(encoded);
        if self.dirty && self.sync_due() {
            let _committed = self.commit(true, |_, _| Ok(())).is_ok();
        }
        if self.retention.max_age.is_some()
            && self.last_age_check.elapsed() >= retention::AGE_CHECK_EVERY
        {
            self.last_age_check = Instant::now();
            let now = tidings_core::clock::now_ms();
            let old = match self.oldest_time {
                Some(time) => retention::too_old(&self.retention, time, now),
                // Unknown: let trim() look at the first row.
                None => self.counters.events > 0,
            };
            if old {
                // Age applies to the tail too: index it first, so one trim sees everything.
                if !self.tail.is_empty() && self.commit_slow(&[], encoded, false).is_err() {
                    return;
                }
                self.trim_now(now);
            }
        }
    }

    /// Trims to the exact bounds in unfsynced commits (made durable by the next durable one).
    fn trim_now(&mut self, now: u64) {
        let retention = self.retention.clone();
        loop {
            let before = self.counters;
            let result = self.commit(false, |tx, counters| {
                *counters = retention::trim(tx, &retention, *counters, now)?;
                Ok(())
            });
            if result.is_err() || self.counters == before {
                break;
            }
            if !retention::over_size(&retention, &self.counters, true) {
                break;
            }
        }
        self.oldest_time = self
            .first_time()
            .map_err(|e| self.shared.read_failed(e))
            .ok()
            .flatten();
    }

    /// Publish time of the first retained event.
    fn first_time(&self) -> Result<Option<u64>, StoreError> {
        use redb::{ReadableDatabase, ReadableTable};
        guarded(
            || "reading the first event".into(),
            || {
                let tx = self.shared.db.begin_read().map_err(store_error)?;
                let table = tx.open_table(EVENTS).map_err(store_error)?;
                match table.first().map_err(store_error)? {
                    Some((k, v)) => schema::event_time(k.value(), v.value()).map(Some),
                    None => Ok(None),
                }
            },
        )
    }

    /// At shutdown: the tail indexed, retention applied, and the clean marker, in one
    /// durable commit; then the log is reset.
    fn close(mut self, encoded: &mut Vec<u8>) {
        if self.shared.poison.get().is_some() {
            return;
        }
        if let Err(err) = self.commit_slow(&[], encoded, true) {
            tracing::error!(message = "Event store could not close cleanly.", %err);
        }
    }
}

/// Inserts every event of `groups` (the tail, then a batch's appends, each with its
/// idempotency key), updates the count and byte rows and the latest-per-key table.
pub(crate) fn append_all<'a>(
    tx: &WriteTransaction,
    groups: impl Iterator<Item = (&'a [SharedEvent], Option<&'a KeyedBatch>)>,
    counters: &mut Counters,
    encoded: &mut Vec<u8>,
    rules: &SnapshotRules,
) -> Result<(), StoreError> {
    let before = *counters;
    {
        // Only the tables this commit writes are opened: each open table costs its lookup
        // and its root update at commit, and most publishes carry no idempotency key and
        // no key for the latest-per-key table.
        let mut table = tx.open_table(EVENTS).map_err(store_error)?;
        let mut keys = None;
        let mut latest = None;
        let mut row = Vec::new();
        for (events, keyed) in groups {
            if let Some(k) = keyed {
                let (keys, keys_by_seq) = match &mut keys {
                    Some(open) => open,
                    None => keys.insert((
                        tx.open_table(KEYED).map_err(store_error)?,
                        tx.open_table(KEYED_BY_SEQ).map_err(store_error)?,
                    )),
                };
                let row = schema::keyed_row(&k.key);
                keys.insert(&row, schema::encode_keyed(k).as_slice())
                    .map_err(store_error)?;
                keys_by_seq.insert(k.first_seq, &row).map_err(store_error)?;
            }
            for event in events {
                let seq = event.seq();
                if seq <= counters.last_seq {
                    return Err(StoreError::Io(format!(
                        "append out of order: seq {seq} after {}",
                        counters.last_seq
                    )));
                }
                schema::encode_event(&event.event, encoded);
                table.insert(seq, encoded.as_slice()).map_err(store_error)?;
                if event.event.key.is_some() {
                    let tables = match &mut latest {
                        Some(open) => open,
                        None => latest.insert(Tables {
                            rows: tx.open_table(LATEST).map_err(store_error)?,
                            by_seq: tx.open_table(LATEST_BY_SEQ).map_err(store_error)?,
                        }),
                    };
                    tables.apply(rules, &event.event, encoded, &mut row)?;
                }
                counters.events += 1;
                counters.bytes += encoded.len() as u64;
                counters.last_seq = seq;
            }
        }
    }
    if *counters != before {
        let mut meta = tx.open_table(META).map_err(store_error)?;
        retention::write_counters(&mut meta, counters)?;
    }
    Ok(())
}

fn batch_events(batch: &[Request]) -> usize {
    batch
        .iter()
        .map(|r| match r {
            Request::Append { events, .. } => events.len(),
            _ => 0,
        })
        .sum()
}

fn reply_to(request: Request, result: Result<(), StoreError>) {
    let done = match request {
        Request::Append { done, .. }
        | Request::Flush { done }
        | Request::Index { done }
        | Request::SaveSessions { done, .. } => done,
        Request::Crash => return,
    };
    // The caller may have stopped waiting; the outcome is recorded either way.
    if done.send(result).is_err() {
        tracing::trace!("Store request answered after its caller left.");
    }
}
