//! The writer thread: the only code that writes the file. It drains every append waiting in
//! the queue into one transaction, commits once, answers them all (group commit), keeps the
//! clean-shutdown marker, runs retention, and poisons the store on the first failed commit.
//! Each appended event also updates the latest-per-key table (`latest`) in the same
//! transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::WriteTransaction;
use tidings_core::{KeyedBatch, Retention, SharedEvent, SnapshotRules, StoreError};
use tokio::sync::oneshot;

use crate::latest::{LATEST, LATEST_BY_SEQ, Tables};
use crate::retention::{self, Counters};
use crate::schema::{self, CLEAN_SHUTDOWN, EVENTS, KEYED, KEYED_BY_SEQ, META};
use crate::{Durability, Shared, guarded, store_error};

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
                        self.housekeeping();
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
            self.housekeeping();
        }
        self.close();
    }

    /// Whether `request` is an append sent after the previous commit answered its publishers.
    fn came_back(&self, request: &Request) -> bool {
        matches!(request, Request::Append { queued, .. } if *queued >= self.answered_at)
    }

    /// How long to wait for a request before periodic work is due (`None`: nothing is).
    fn next_deadline(&self) -> Option<Duration> {
        let mut due: Option<Instant> = None;
        if let Durability::Fast { fsync_interval } = self.durability
            && self.dirty
        {
            due = Some(self.last_sync + fsync_interval);
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
        // (they only name seqs already stored).
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
        let appends = batch.iter().any(|r| matches!(r, Request::Append { .. }));
        if flush {
            // Flush also trims to the exact bounds, so what it reports holds them.
            self.counters_after_appends(&batch, encoded);
        } else {
            self.commit_appends(&batch, encoded, appends);
        }
        let result = match self.shared.poison.get() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        };
        // Before the first answer: a publisher may be back before the last one is sent.
        self.answered_at = Instant::now();
        for request in batch {
            reply_to(request, result.clone());
        }
        if result.is_ok() && !flush {
            self.maybe_trim();
        }
    }

    /// Commits the appends of a batch that has no flush.
    fn commit_appends(&mut self, batch: &[Request], encoded: &mut Vec<u8>, appends: bool) {
        if !appends {
            return;
        }
        let fast = matches!(self.durability, Durability::Fast { .. });
        // An unfsynced acknowledgement needs the marker durably gone first: this commit
        // removes it and is durable.
        let clear_marker = fast && self.marker_set;
        let durable = !fast || clear_marker || self.sync_due();
        let retention = self.retention.clone();
        let rules = self.rules.clone();
        let trimmed_before = self.counters.trimmed_through;
        let result = self.commit(durable, |tx, counters| {
            append_all(tx, batch, counters, encoded, &rules)?;
            // Trim in the same transaction, so an acknowledged append has its retention
            // applied (a reader never sees more than the bound plus its slack) and a crash
            // cannot keep the append and lose the trim.
            if retention::over_size(&retention, counters, false) {
                *counters =
                    retention::trim(tx, &retention, *counters, tidings_core::clock::now_ms())?;
            }
            if clear_marker {
                let mut meta = tx.open_table(META).map_err(store_error)?;
                meta.remove(CLEAN_SHUTDOWN).map_err(store_error)?;
            }
            Ok(())
        });
        if result.is_ok() && clear_marker {
            self.marker_set = false;
        }
        if self.counters.trimmed_through != trimmed_before {
            // The oldest event changed; the next age check reads it again.
            self.oldest_time = None;
        }
    }

    /// Commits a batch with a flush in it: appends, exact trim, marker, durable.
    fn counters_after_appends(&mut self, batch: &[Request], encoded: &mut Vec<u8>) {
        let retention = self.retention.clone();
        let rules = self.rules.clone();
        let now = tidings_core::clock::now_ms();
        let result = self.commit(true, |tx, counters| {
            append_all(tx, batch, counters, encoded, &rules)?;
            *counters = retention::trim(tx, &retention, *counters, now)?;
            let mut meta = tx.open_table(META).map_err(store_error)?;
            meta.insert(CLEAN_SHUTDOWN, [].as_slice())
                .map_err(store_error)?;
            Ok(())
        });
        if result.is_ok() {
            self.marker_set = true;
            self.oldest_time = None;
            self.last_age_check = Instant::now();
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

    fn publish_counters(&self) {
        let s = &self.shared;
        s.events.store(self.counters.events, Ordering::Release);
        s.bytes.store(self.counters.bytes, Ordering::Release);
        s.last_seq.store(self.counters.last_seq, Ordering::Release);
        s.trimmed_through
            .store(self.counters.trimmed_through, Ordering::Release);
    }

    /// Periodic work: the fast-mode fsync and the age check.
    fn housekeeping(&mut self) {
        if self.shared.poison.get().is_some() {
            return;
        }
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
                self.trim_now(now);
            }
        }
    }

    /// After an append commit: trims when a size bound is exceeded by its slack.
    fn maybe_trim(&mut self) {
        if retention::over_size(&self.retention, &self.counters, false) {
            self.trim_now(tidings_core::clock::now_ms());
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

    /// At shutdown: a durable commit carrying the clean marker.
    fn close(mut self) {
        if self.shared.poison.get().is_some() {
            return;
        }
        let result = self.commit(true, |tx, _| {
            let mut meta = tx.open_table(META).map_err(store_error)?;
            meta.insert(CLEAN_SHUTDOWN, [].as_slice())
                .map_err(store_error)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::error!(message = "Event store could not close cleanly.", %err);
        }
    }
}

/// Inserts every event of the batch's appends, updates the count and byte rows and the
/// latest-per-key table.
fn append_all(
    tx: &WriteTransaction,
    batch: &[Request],
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
        for request in batch {
            let Request::Append { events, keyed, .. } = request else {
                continue;
            };
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
        | Request::SaveSessions { done, .. } => done,
        Request::Crash => return,
    };
    // The caller may have stopped waiting; the outcome is recorded either way.
    if done.send(result).is_err() {
        tracing::trace!("Store request answered after its caller left.");
    }
}
