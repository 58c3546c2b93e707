//! `RedbStore`: the embedded, on-disk `EventStore` of Tidings: one redb file with an append
//! log in front of it (group commit to the log, background indexing into redb), retention
//! and a versioned format.
//!
//! # Layout
//! - `lib.rs`: `StoreConfig` (path, durability, retention, page cache size), `Durability`,
//!   `RedbStore` (open, the `EventStore` impl).
//! - `writer`: the single writer thread (group commit to the log, indexing into redb,
//!   clean-shutdown marker, poisoning).
//! - `wal`: the append log `<store file>.log` (frames, scan, reuse) and its recovery at open.
//! - `retention`: trimming by count, bytes and age.
//! - `schema`: the tables and the encoding of one event (format documented there).
//! - `migrate`: the format version in `meta` and the upgrades from older versions (`v1` is
//!   the first format, `v4` the current one).
//! - `sessions`: the client-id sessions a hub saved (`tidings_core::SessionStore`).
//! - `latest`: the latest-per-key table behind `EventStore::snapshot` (format v4).
//! - `verify`: the offline check behind `tidings store verify`.
//!
//! # Why redb (measured, not assumed)
//! `examples/engine_compare.rs`, run on the development machine (2 vCPU VM, virtio disk,
//! `fsync` ≈ 0.15–0.2 ms), 186-byte events keyed by big-endian seq, a real fsync per commit
//! (redb `Durability::Immediate`; fjall `PersistMode::SyncAll`/`SyncData`), median of 3 runs,
//! events/s:
//!
//! | case                                   | redb 4.6   | fjall 3.1 (SyncAll / SyncData) |
//! |----------------------------------------|-----------:|-------------------------------:|
//! | append, 1 event per commit             |      4,600 |                 6,800 / 7,100  |
//! | append, 64 events per commit           |    150,000 |              240,000 / 250,000 |
//! | append, 1024 events per commit         |    780,000 |          1,080,000 / 1,070,000 |
//! | range scan of 200k                     | 12,000,000 |          5,700,000 / 5,700,000 |
//! | range scan after deleting the front half | 15,000,000 |        2,500,000 / 2,500,000 |
//!
//! fjall appends about 1.5x faster at group-commit sizes; redb replays 2x faster, and 6x
//! faster in the steady state of a retained log, where retention keeps deleting from the front
//! (an LSM scans over the tombstones until compaction drops them). Both clear the target (well
//! over 100k durable appends/s at 64 events per commit). We chose **redb** because:
//! - replay speed holds in the steady state instead of degrading with deletions;
//! - durability is simpler to get right: one file, one copy-on-write B-tree, a commit is one
//!   atomic transaction over the events and the meta rows that describe them (counters,
//!   `trimmed_through`, the clean marker) and one fsync; no journal, no background flush or
//!   compaction threads, nothing to recover but the last commit;
//! - it has no dependencies (fjall brings an LSM tree, a journal and a worker pool).
//!
//! The price is append throughput at a given batch size; group commit (below) is what turns
//! concurrent publishers into large batches. Through this store, 64 publishers appending one
//! event at a time (`concurrent_publishers_share_commits` in `tests/it`, release build) reach
//! 90–107k durable events/s on the same VM while another build was running, with about 63
//! events per commit; the per-commit meta row update is the next cost to remove if more is
//! needed. Rerun the engine comparison with
//! `cargo run --release -p tidings-store-redb --features engine-compare --example engine_compare`.
//!
//! # Behaviour
//! - `append` enqueues to one writer thread over a bounded channel and returns a future that
//!   resolves once the batch is in the log. The writer takes every request waiting in the
//!   queue into one group, writes its frames to the log with one `write` (durable: then one
//!   `fdatasync`; fast: an `fdatasync` every `fsync_interval`), makes the events readable
//!   (the tail, `Shared::tail`, which reads consult after redb) and answers them all. If fewer
//!   requests are waiting than the last group answered have come back since, it waits for
//!   them (at most as long as that group took, between 200 µs and 2 ms), so they share the
//!   next group instead of splitting it: through HTTP, 64 publishers come back over a
//!   millisecond or more, as the server handles each one's answer and next request.
//! - The tail is indexed into redb in one durable transaction once it holds 8,192 events or
//!   2 MiB, is 1 s old, or takes history over a retention bound by its slack; an append with
//!   an idempotency key, a flush, a snapshot read and close index it first, in the same
//!   transaction as their own work. Once redb durably holds the log's events, the log starts
//!   a new round. At open, the log's events redb does not hold are indexed first. The queue holds at most
//!   `QUEUE_DEPTH` appends: `reserve` waits (asynchronously, outside the hub's lock) for one
//!   of that many slots, and `append` itself never blocks. That is the back-pressure on
//!   publishers: a stalled disk parks publishers, not threads.
//! - After a failed commit the store is poisoned: every later append is refused with
//!   `StoreError::Poisoned` and `health()` reports the first failure.
//! - The epoch is random, made with the file and kept in `meta`. In fast mode a missing clean
//!   shutdown marker at open means acknowledged events may be lost, so the store takes a new
//!   epoch and old cursors get a `reset` rather than a silent gap.
//! - Retention runs on the writer thread after commits (see `retention`); `flush()` applies it
//!   exactly and makes everything durable.
//! - Nothing read from disk can panic: it decodes or fails with `StoreError::Corrupt`. redb
//!   does not check page checksums on ordinary reads, and some damaged pages make it panic
//!   (an index out of bounds) rather than return an error: every read and commit runs under
//!   `guarded`, which turns such a panic into `StoreError::Corrupt`.
//! - Damage found by a read poisons the store like a failed commit (appends are refused,
//!   `health()` reports it, so `/readyz` turns 503), and is logged once, there. A read hands
//!   out the events before the damage; the next read, starting at it, fails.
//!   `verify::verify` (`tidings store verify`) reports every damaged range offline.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;
use tidings_core::store::{AppendSlot, BoxFuture};
use tidings_core::{
    EventRecord, EventStore, IdempotencyKey, KeyedBatch, ReadLimit, Retention, SavedSession,
    SessionStore, SharedEvent, SnapshotRead, SnapshotRules, StoreError, StoreStats,
};
use tidings_proto::Epoch;
use tokio::sync::{Semaphore, oneshot};

mod latest;
mod migrate;
mod retention;
mod schema;
mod sessions;
pub mod verify;
mod wal;
mod writer;

use crate::retention::Counters;
use crate::schema::{CLEAN_SHUTDOWN, EPOCH, EVENTS, META};
use crate::writer::{Request, Writer};

/// Appends the writer queue holds: `reserve` waits while this many are in flight.
const QUEUE_DEPTH: usize = 4096;

/// Shortest fast-mode fsync interval; shorter values are raised to it.
const MIN_FSYNC_INTERVAL: Duration = Duration::from_millis(1);

/// Where and how the store keeps history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The database file (created with its parent directories if missing).
    pub path: PathBuf,
    /// When an acknowledged append is on disk.
    pub durability: Durability,
    /// How much history is kept.
    pub retention: Retention,
    /// Bytes of file pages redb keeps in memory (its read cache and write buffer together);
    /// the store's share of the process's memory. [`DEFAULT_CACHE_SIZE`] unless configured.
    pub cache_size: usize,
    /// What the latest-per-key table keeps (`EventStore::snapshot`). A file upgraded from
    /// format 3 builds its table from the retained events under these rules; rules changed
    /// later apply to the events after the change.
    pub snapshot: SnapshotRules,
}

/// The default page cache: 64 MiB. redb's own default (1 GiB) made the server's memory grow
/// with stored history rather than with load.
pub const DEFAULT_CACHE_SIZE: usize = 64 << 20;

/// When an acknowledged append is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsynced before its appends are acknowledged.
    Durable,
    /// Commits are acknowledged unfsynced and fsynced every `fsync_interval`; a crash can lose
    /// the last interval, and then the store takes a new epoch at the next open.
    Fast {
        /// Longest time an acknowledged append stays unfsynced.
        fsync_interval: Duration,
    },
}

/// The redb-backed `EventStore`. Dropping it stops the writer thread after a final durable
/// commit (which blocks the dropping thread for about one fsync).
pub struct RedbStore {
    shared: Arc<Shared>,
    /// The writer's queue. Unbounded as a channel; appends are bounded by `slots`.
    /// `Mutex<Option<..>>` only so `Drop` and the crash hook can close it; locked for the
    /// duration of one `send`, which never blocks.
    queue: Mutex<Option<Sender<Request>>>,
    /// One permit per append in flight (`reserve` hands them out as `AppendSlot`s).
    slots: Arc<Semaphore>,
    /// Joined on drop, so the file is closed when the store is gone.
    writer: Option<JoinHandle<()>>,
    last_seq_at_open: u64,
}

/// What the store handle, readers and the writer thread share.
pub(crate) struct Shared {
    pub(crate) db: redb::Database,
    pub(crate) epoch: Epoch,
    // Counters published by the writer after each commit, read by stats() without a lock.
    pub(crate) events: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) last_seq: AtomicU64,
    pub(crate) trimmed_through: AtomicU64,
    /// Commits made since open (each answers every append it took): log groups and redb
    /// transactions.
    pub(crate) commits: AtomicU64,
    /// Acknowledged events in the log that redb does not hold yet (the newest seqs, in
    /// order). Readers lock it briefly to copy out `Arc`s; the writer pushes after a group's
    /// log write and pops after the redb commit that indexed them.
    pub(crate) tail: Mutex<VecDeque<SharedEvent>>,
    /// Test hook (`hold_index`): the writer indexes the tail only when it must (retention, a
    /// slow-path request, close), not on its own size or age bounds.
    pub(crate) hold_index: std::sync::atomic::AtomicBool,
    /// The first commit failure, or the first damage a read found; set once.
    pub(crate) poison: OnceLock<StoreError>,
    /// Unit-test hook: makes the next commits fail.
    #[cfg(test)]
    pub(crate) fail_commits: std::sync::atomic::AtomicBool,
}

impl RedbStore {
    /// Opens (or creates) the store at `config.path` and starts its writer thread.
    ///
    /// Fails with `StoreError::Corrupt` if the file is not a store of a format this build
    /// reads, and `StoreError::Io` if it cannot be opened (e.g. another process holds it).
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Io(e.to_string()))?;
        }
        let path = config.path.clone();
        let cache_size = config.cache_size;
        let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&repaired);
        // A damaged file must not take the process down with it (see `guarded`).
        let db = guarded(
            || "opening the file".into(),
            move || {
                redb::Builder::new()
                    .set_cache_size(cache_size)
                    .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
                    .create(path)
                    .map_err(store_error)
            },
        )?;
        if repaired.load(Ordering::Relaxed) {
            // redb rebuilds its state after a crash; if the last commit's pages fail their
            // checksums it falls back to the commit before, which would be invisible otherwise.
            tracing::warn!(
                message = "Event store file was not closed cleanly and was repaired at open; \
                           if its last commit was damaged, that commit was rolled back.",
            );
        }
        guarded(
            || "reading the store's metadata".into(),
            move || Self::with_database(db, config),
        )
    }

    fn with_database(db: redb::Database, config: StoreConfig) -> Result<Self, StoreError> {
        let mut tx = db.begin_write().map_err(store_error)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(store_error)?;
        let meta = migrate::open(&tx, random_epoch()?, &config.snapshot)?;
        let mut counters = Counters {
            events: meta.events,
            bytes: meta.bytes,
            last_seq: meta.last_seq,
            trimmed_through: meta.trimmed_through,
        };
        // Acknowledged events the log holds and redb does not go into redb in this same
        // durable transaction; the log starts anew (a new salt) once it has committed.
        let log_path = wal::path_of(&config.path);
        let (mut log, log_bytes) = wal::Log::open(&log_path)?;
        let recovered = recover(&tx, &log_bytes, meta.epoch, &mut counters, &config.snapshot)?;
        drop(log_bytes);
        let evicted = latest::fit(&tx, &config.snapshot)?;
        if evicted > 0 {
            tracing::info!(
                message = "The snapshot key ceiling is lower than the keys held; evicted the keys updated longest ago.",
                evicted,
                max_keys = config.snapshot.max_keys,
            );
        }
        let mut epoch = meta.epoch;
        {
            let mut table = tx.open_table(META).map_err(store_error)?;
            match config.durability {
                Durability::Fast { .. } => {
                    if !meta.clean_shutdown {
                        while epoch == meta.epoch {
                            epoch = random_epoch()?;
                        }
                        tracing::warn!(
                            message = "Event store was not shut down cleanly; starting a new epoch.",
                            old = %Epoch(meta.epoch),
                            new = %Epoch(epoch),
                        );
                        table
                            .insert(EPOCH, epoch.to_le_bytes().as_slice())
                            .map_err(store_error)?;
                    }
                    // Until the next clean shutdown, the durable state may lag acknowledgements.
                    table.remove(CLEAN_SHUTDOWN).map_err(store_error)?;
                }
                // Every durable-mode commit is fsynced: the marker stays true.
                Durability::Durable => {
                    table
                        .insert(CLEAN_SHUTDOWN, [].as_slice())
                        .map_err(store_error)?;
                }
            }
        }
        tx.commit().map_err(store_error)?;
        log.start(random_epoch()?)
            .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", log_path.display())))?;
        if recovered > 0 {
            tracing::info!(
                message = "Indexed the acknowledged events the store's log held.",
                events = recovered,
            );
        }
        let shared = Arc::new(Shared {
            db,
            epoch: Epoch(epoch),
            events: AtomicU64::new(counters.events),
            bytes: AtomicU64::new(counters.bytes),
            last_seq: AtomicU64::new(counters.last_seq),
            trimmed_through: AtomicU64::new(counters.trimmed_through),
            commits: AtomicU64::new(0),
            tail: Mutex::new(VecDeque::new()),
            hold_index: std::sync::atomic::AtomicBool::new(false),
            poison: OnceLock::new(),
            #[cfg(test)]
            fail_commits: std::sync::atomic::AtomicBool::new(false),
        });
        let durability = match config.durability {
            Durability::Fast { fsync_interval } => Durability::Fast {
                fsync_interval: fsync_interval.max(MIN_FSYNC_INTERVAL),
            },
            Durability::Durable => Durability::Durable,
        };
        let (queue, rx) = channel();
        let writer = Writer {
            shared: Arc::clone(&shared),
            rx,
            durability,
            retention: config.retention,
            rules: config.snapshot,
            counters,
            marker_set: matches!(durability, Durability::Durable),
            dirty: false,
            last_sync: Instant::now(),
            // Check age soon after open.
            last_age_check: Instant::now()
                .checked_sub(retention::AGE_CHECK_EVERY)
                .unwrap_or_else(Instant::now),
            oldest_time: None,
            last_batch: 1,
            answered_at: std::time::Instant::now(),
            last_commit: std::time::Duration::ZERO,
            log,
            log_dirty: false,
            tail: Vec::new(),
            tail_bytes: 0,
            tail_since: None,
            frames: Vec::new(),
        };
        let writer = std::thread::Builder::new()
            .name("tidings-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore {
            shared,
            queue: Mutex::new(Some(queue)),
            slots: Arc::new(Semaphore::new(QUEUE_DEPTH)),
            writer: Some(writer),
            last_seq_at_open: counters.last_seq,
        })
    }

    /// Commits the writer has made since the store was opened. Appends shared with other
    /// appends in one commit (group commit) count once, so `events / commits` is the average
    /// group size.
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Test hook: while `hold` is true the writer leaves acknowledged events in the log
    /// instead of indexing them into redb on its own (retention, flush, keyed appends,
    /// snapshot reads and close still index them), so tests can crash with a known tail.
    #[doc(hidden)]
    pub fn hold_index(&self, hold: bool) {
        self.shared.hold_index.store(hold, Ordering::Relaxed);
    }

    /// Events acknowledged but not yet indexed into redb (they are in the log).
    pub fn unindexed(&self) -> usize {
        self.shared.lock_tail().len()
    }

    /// Test hook: stops the writer as a crash would, without the final durable commit or the
    /// clean-shutdown marker, and closes the file. Not for production use.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.send(Request::Crash).ok();
        self.stop();
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref() {
            Some(queue) => queue.send(request).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    /// Closes the queue and waits for the writer to finish.
    fn stop(&mut self) {
        self.slots.close();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(queue);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("Event store writer thread panicked.");
        }
    }

    fn request(&self, request: Request, rx: Answer) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Err(err) = self.send(request) {
            return Box::pin(std::future::ready(Err(err)));
        }
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Closed)) })
    }
}

type Answer = oneshot::Receiver<Result<(), StoreError>>;

impl EventStore for RedbStore {
    fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    fn last_seq(&self) -> u64 {
        self.last_seq_at_open
    }

    fn trimmed_through(&self) -> u64 {
        self.shared.trimmed_through.load(Ordering::Acquire)
    }

    fn reserve(&self) -> BoxFuture<'static, Result<AppendSlot, StoreError>> {
        let slots = Arc::clone(&self.slots);
        Box::pin(async move {
            slots
                .acquire_owned()
                .await
                .map(AppendSlot::from_permit)
                .map_err(|_| StoreError::Closed)
        })
    }

    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(err) = self.shared.poison.get() {
            return Box::pin(std::future::ready(Err(StoreError::Poisoned(
                err.to_string(),
            ))));
        }
        if events.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (done, rx) = oneshot::channel();
        self.request(
            Request::Append {
                events,
                keyed,
                done,
                queued: std::time::Instant::now(),
            },
            rx,
        )
    }

    fn find_keyed(
        &self,
        key: &IdempotencyKey,
    ) -> BoxFuture<'static, Result<Option<KeyedBatch>, StoreError>> {
        let shared = Arc::clone(&self.shared);
        let key = key.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || find_keyed(&shared, key))
                .await
                .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
        })
    }

    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        // A read the unindexed tail answers alone (a replay near the head) needs no file.
        let (tail, covers) = self.shared.tail_after(after, limit.events);
        if covers {
            return Box::pin(std::future::ready(Ok(limit.take(tail))));
        }
        drop(tail);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_after(&shared, after, limit))
                .await
                .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
        })
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        self.request(Request::Flush { done }, rx)
    }

    fn stats(&self) -> StoreStats {
        let s = &self.shared;
        StoreStats {
            events: s.events.load(Ordering::Acquire),
            bytes: s.bytes.load(Ordering::Acquire),
            last_seq: s.last_seq.load(Ordering::Acquire),
            trimmed_through: s.trimmed_through.load(Ordering::Acquire),
        }
    }

    fn health(&self) -> Option<StoreError> {
        self.shared.poison.get().cloned()
    }

    fn sessions(&self) -> Option<&dyn SessionStore> {
        Some(self)
    }

    fn snapshot(
        &self,
        selector: &tidings_proto::Selector,
        max_bytes: usize,
    ) -> BoxFuture<'static, Result<SnapshotRead, StoreError>> {
        let shared = Arc::clone(&self.shared);
        let selector = selector.clone();
        // The latest-per-key table has no in-memory overlay: the tail is indexed first.
        let indexed = if shared.lock_tail().is_empty() {
            None
        } else {
            let (done, rx) = oneshot::channel();
            Some(self.request(Request::Index { done }, rx))
        };
        Box::pin(async move {
            if let Some(indexed) = indexed {
                // If it failed (a poisoned store), the read is still exact as of its
                // `through`, redb's last seq; the hub reads what follows from the tail.
                let _indexed = indexed.await;
            }
            tokio::task::spawn_blocking(move || {
                latest::read(&shared, &selector, max_bytes).map_err(|e| shared.read_failed(e))
            })
            .await
            .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
        })
    }
}

impl SessionStore for RedbStore {
    fn load_sessions(&self) -> Result<Vec<SavedSession>, StoreError> {
        sessions::read(&self.shared)
    }

    fn save_sessions(
        &self,
        sessions: Vec<SavedSession>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        self.request(Request::SaveSessions { sessions, done }, rx)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("epoch", &self.shared.epoch)
            .field("stats", &self.stats())
            .field("poisoned", &self.shared.poison.get())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn lock_tail(&self) -> std::sync::MutexGuard<'_, VecDeque<SharedEvent>> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tail's events after `after`, at most `limit`, and whether the tail starts at or
    /// before `after + 1` (then redb holds nothing a read after `after` needs).
    fn tail_after(&self, after: u64, limit: usize) -> (Vec<SharedEvent>, bool) {
        let tail = self.lock_tail();
        let Some(front) = tail.front() else {
            return (Vec::new(), false);
        };
        let first = front.seq();
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first))
            .unwrap_or(usize::MAX)
            .min(tail.len());
        let out = tail.iter().skip(skip).take(limit).cloned().collect();
        (out, first <= after.saturating_add(1))
    }

    /// Records a read failure, the one place it is logged: damage poisons the store (the
    /// first is what `health()` reports, logged once); any other failure is logged as it
    /// happens. Returns the error for the caller to pass on.
    pub(crate) fn read_failed(&self, err: StoreError) -> StoreError {
        match &err {
            StoreError::Corrupt(_) => {
                if self.poison.set(err.clone()).is_ok() {
                    tracing::error!(
                        message = "Event store file is damaged; refusing appends. Stop the server and run `tidings store verify`.",
                        error = %err,
                    );
                }
            }
            StoreError::Poisoned(_) | StoreError::Closed => {}
            StoreError::Io(_) => tracing::warn!(message = "Event store read failed.", error = %err),
        }
        err
    }
}

/// Indexes the log's frames that redb does not hold (seq above `counters.last_seq`) in `tx`.
/// Frames at or below it were indexed already (a crash after the commit that indexed them,
/// before the next round overwrote them).
fn recover(
    tx: &redb::WriteTransaction,
    log: &[u8],
    epoch: u32,
    counters: &mut Counters,
    rules: &SnapshotRules,
) -> Result<u64, StoreError> {
    let scan = wal::scan(log)?;
    let mut events = Vec::new();
    for frame in scan.frames.iter().filter(|f| f.seq > counters.last_seq) {
        let expected = counters.last_seq + 1 + events.len() as u64;
        if frame.seq != expected {
            return Err(StoreError::Corrupt(format!(
                "the store's log (the `.log` file next to the store file) continues at seq {} \
                 but the store file holds up to seq {}: the log belongs to another copy of \
                 the file (keep, move and restore the two files together)",
                frame.seq, counters.last_seq
            )));
        }
        // The CRC matched: a frame that does not decode was written wrong, not torn.
        let event = schema::decode_event(Epoch(epoch), frame.seq, frame.event)?;
        events.push(EventRecord::new(event));
    }
    let mut encoded = Vec::new();
    writer::append_all(
        tx,
        std::iter::once((events.as_slice(), None)),
        counters,
        &mut encoded,
        rules,
    )?;
    Ok(events.len() as u64)
}

/// The keyed batch remembered for `key` in its scope, on a blocking thread.
fn find_keyed(shared: &Shared, key: IdempotencyKey) -> Result<Option<KeyedBatch>, StoreError> {
    let read = || {
        let tx = shared.db.begin_read().map_err(store_error)?;
        let table = tx.open_table(schema::KEYED).map_err(store_error)?;
        let Some(row) = table.get(&schema::keyed_row(&key)).map_err(store_error)? else {
            return Ok(None);
        };
        schema::decode_keyed(&key, row.value()).map(Some)
    };
    guarded(|| "reading an idempotency key".into(), read).map_err(|e| shared.read_failed(e))
}

/// Reads the events after `after` within `limit`, on a blocking thread. If the file is
/// damaged part way, the events before the damage are returned (and the store poisoned); a
/// read that starts at the damage fails.
fn read_after(
    shared: &Shared,
    after: u64,
    limit: ReadLimit,
) -> Result<Vec<SharedEvent>, StoreError> {
    let Some(first) = after.checked_add(1) else {
        return Ok(Vec::new());
    };
    // The tail before redb: the writer pops the tail only after the commit that indexed it,
    // so a redb read that starts after this copy holds every event the copy lacks.
    let (tail, tail_covers) = shared.tail_after(after, limit.events);
    if tail_covers {
        return Ok(limit.take(tail));
    }
    let mut out = Vec::with_capacity(limit.events.min(1024));
    let mut cut = false;
    let read = || {
        let tx = shared.db.begin_read().map_err(store_error)?;
        let table = tx.open_table(EVENTS).map_err(store_error)?;
        let mut bytes = 0usize;
        for row in table
            .range(first..)
            .map_err(store_error)?
            .take(limit.events)
        {
            let (k, v) = row.map_err(store_error)?;
            let event = EventRecord::new(schema::decode_event(shared.epoch, k.value(), v.value())?);
            // Checked before keeping an event: a read holds at most the bound plus one
            // decoded row (the first event is always kept).
            bytes = bytes.saturating_add(event.size());
            if !out.is_empty() && bytes > limit.bytes {
                cut = true;
                break;
            }
            out.push(event);
        }
        cut |= out.len() >= limit.events;
        Ok(())
    };
    match guarded(|| format!("reading the events after seq {after}"), read) {
        Ok(()) if cut || tail.is_empty() => Ok(out),
        Ok(()) => {
            // Everything redb holds after `after` fitted: the tail continues it.
            let last = out.last().map_or(after, |e| e.seq());
            out.extend(tail.into_iter().filter(|e| e.seq() > last));
            Ok(limit.take(out))
        }
        Err(err) => {
            let err = shared.read_failed(err);
            if out.is_empty() { Err(err) } else { Ok(out) }
        }
    }
}

/// Runs `op` on the file, turning a panic inside redb into `StoreError::Corrupt`. redb checks
/// page checksums only when it repairs a file, and on some damaged pages an ordinary read
/// indexes out of bounds and panics instead of returning an error; that must fail the read,
/// not take down the thread (a tokio worker, or the writer) with it. `what` says what was
/// being read, for the message.
pub(crate) fn guarded<T>(
    what: impl FnOnce() -> String,
    op: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)).unwrap_or_else(|payload| {
        let cause = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(StoreError::Corrupt(format!(
            "{}: the file is damaged (the database engine failed: {cause})",
            what()
        )))
    })
}

fn random_epoch() -> Result<u32, StoreError> {
    let mut bytes = [0; 4];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Io(format!("no randomness: {e}")))?;
    Ok(u32::from_le_bytes(bytes))
}

/// Maps a redb error: damaged or foreign files are `Corrupt`, everything else is `Io`.
pub(crate) fn store_error(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        e @ (redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => StoreError::Corrupt(e.to_string()),
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Corrupt(e.to_string())
        }
        e => StoreError::Io(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
