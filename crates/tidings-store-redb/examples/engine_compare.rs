//! The measurement that chose the store engine: redb against fjall, on this machine's disk.
//!
//! Appends `EVENTS` events of about 200 bytes, keyed by a big-endian u64 seq, in batches of 1,
//! 64 and 1024 events per commit, with a real fsync per commit, then reads them all back with
//! one range scan; then deletes the older half from the front (as retention does, 1024 per
//! commit) and scans what is left, from the first key, again. Batch size 1 is capped at `SINGLE_CAP` events (one fsync each; the rate is
//! what matters). Prints events/s for each engine and case.
//!
//! Run: `cargo run --release -p tidings-store-redb --features engine-compare --example engine_compare`
//! (set `TIDINGS_BENCH_DIR` to measure another disk than the system temp dir).
#![allow(clippy::print_stdout)]

use std::path::Path;

use redb::ReadableDatabase;
use std::time::Instant;

const EVENTS: u64 = 200_000;
const SINGLE_CAP: u64 = 5_000;
const BATCHES: [u64; 3] = [1, 64, 1024];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let base = std::env::var_os("TIDINGS_BENCH_DIR").map(std::path::PathBuf::from);
    let value = sample_value();
    println!(
        "value size: {} bytes, {EVENTS} events (batch 1: {SINGLE_CAP})",
        value.len()
    );
    println!(
        "{:<18} {:>6} {:>14} {:>14} {:>18}",
        "engine", "batch", "append ev/s", "scan ev/s", "scan-after-trim ev/s"
    );
    for batch in BATCHES {
        let count = if batch == 1 { SINGLE_CAP } else { EVENTS };
        for engine in [Engine::Redb, Engine::FjallSyncAll, Engine::FjallSyncData] {
            let dir = match &base {
                Some(base) => tempfile::tempdir_in(base)?,
                None => tempfile::tempdir()?,
            };
            let (append, scan, trimmed) = engine.run(dir.path(), &value, count, batch)?;
            println!(
                "{:<18} {batch:>6} {append:>14.0} {scan:>14.0} {trimmed:>18.0}",
                engine.name()
            );
        }
    }
    Ok(())
}

/// A compact JSON event body of about 200 bytes, like a download progress event.
fn sample_value() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"downloads/abc-123\0progress\0abc-123\0\0");
    v.extend_from_slice(br#"{"id":"abc-123","name":"ubuntu-24.04-desktop-amd64.iso","#);
    v.extend_from_slice(br#""done":123456789,"total":987654321,"speed":4521987,"eta":193,"#);
    v.extend_from_slice(br#""state":"downloading","peers":12}"#);
    v
}

#[derive(Clone, Copy)]
enum Engine {
    Redb,
    FjallSyncAll,
    FjallSyncData,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Redb => "redb 4",
            Engine::FjallSyncAll => "fjall 3 (SyncAll)",
            Engine::FjallSyncData => "fjall 3 (SyncData)",
        }
    }

    /// Returns (append events/s, scan events/s, scan-after-trim events/s).
    fn run(self, dir: &Path, value: &[u8], count: u64, batch: u64) -> Result<Rates> {
        match self {
            Engine::Redb => redb_run(dir, value, count, batch),
            Engine::FjallSyncAll => {
                fjall_run(dir, value, count, batch, fjall::PersistMode::SyncAll)
            }
            Engine::FjallSyncData => {
                fjall_run(dir, value, count, batch, fjall::PersistMode::SyncData)
            }
        }
    }
}

const TABLE: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("events");

type Rates = (f64, f64, f64);

fn redb_run(dir: &Path, value: &[u8], count: u64, batch: u64) -> Result<Rates> {
    let db = redb::Database::create(dir.join("events.redb"))?;
    let start = Instant::now();
    let mut seq = 0;
    while seq < count {
        // Durability::Immediate (the default) fsyncs on commit.
        let tx = db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for _ in 0..batch.min(count - seq) {
                seq += 1;
                table.insert(seq, value)?;
            }
        }
        tx.commit()?;
    }
    let append = count as f64 / start.elapsed().as_secs_f64();

    let scan = redb_scan(&db, count)?;

    let mut first = 1;
    while first <= count / 2 {
        let tx = db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            let end = (first + 1024).min(count / 2 + 1);
            table.retain_in(first..end, |_, _| false)?;
            first = end;
        }
        tx.commit()?;
    }
    let trimmed = redb_scan(&db, count - count / 2)?;
    Ok((append, scan, trimmed))
}

fn redb_scan(db: &redb::Database, expect: u64) -> Result<f64> {
    let start = Instant::now();
    let tx = db.begin_read()?;
    let table = tx.open_table(TABLE)?;
    let mut read = 0u64;
    let mut bytes = 0usize;
    for row in table.range(0..)? {
        let (_, v) = row?;
        bytes += v.value().len();
        read += 1;
    }
    assert_eq!(read, expect);
    assert!(bytes > 0);
    Ok(expect as f64 / start.elapsed().as_secs_f64())
}

fn fjall_run(
    dir: &Path,
    value: &[u8],
    count: u64,
    batch: u64,
    mode: fjall::PersistMode,
) -> Result<Rates> {
    let db = fjall::Database::builder(dir).open()?;
    let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < count {
        let mut wb = db.batch().durability(Some(mode));
        for _ in 0..batch.min(count - seq) {
            seq += 1;
            wb.insert(&events, seq.to_be_bytes(), value);
        }
        wb.commit()?;
    }
    let append = count as f64 / start.elapsed().as_secs_f64();

    let scan = fjall_scan(&events, count)?;

    let mut first = 1;
    while first <= count / 2 {
        let mut wb = db.batch().durability(Some(mode));
        let end = (first + 1024).min(count / 2 + 1);
        for seq in first..end {
            wb.remove(&events, seq.to_be_bytes());
        }
        wb.commit()?;
        first = end;
    }
    let trimmed = fjall_scan(&events, count - count / 2)?;
    Ok((append, scan, trimmed))
}

fn fjall_scan(events: &fjall::Keyspace, expect: u64) -> Result<f64> {
    let start = Instant::now();
    let mut read = 0u64;
    let mut bytes = 0usize;
    for guard in events.range(0u64.to_be_bytes()..) {
        let (_, v) = guard.into_inner()?;
        bytes += v.len();
        read += 1;
    }
    assert_eq!(read, expect);
    assert!(bytes > 0);
    Ok(expect as f64 / start.elapsed().as_secs_f64())
}
