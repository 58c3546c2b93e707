//! The offline check behind `tidings store verify`: opens a store file read-only, reads every
//! event it should hold, and reports the seq ranges that cannot be read or decoded. It also
//! reads the store's log (`wal`): the acknowledged events it holds beyond the file (indexed at
//! the next open) count as expected events. (A torn frame at the end of the log is not
//! damage: in durable mode it was never acknowledged, and the next open drops it.)
//!
//! A damaged page can make redb fail or panic part way through a scan (see `guarded`), so the
//! scan resumes after a failure by probing one seq at a time until one reads again; every seq
//! in between is reported as damaged. What it cannot see: redb checks page checksums only when
//! it repairs a file, so a flipped byte that leaves an event well formed (a changed digit in
//! its data) reads as a valid event.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use redb::{ReadOnlyDatabase, ReadableDatabase};
use tidings_core::StoreError;
use tidings_proto::Epoch;

use crate::migrate::{CURRENT_VERSION, v1};
use crate::schema::{self, EPOCH, EVENT_COUNT, EVENTS, FORMAT_VERSION, META, TRIMMED_THROUGH};
use crate::wal;
use crate::{guarded, store_error};

/// Page cache for the scan: it reads each page once, in order.
const CACHE: usize = 16 << 20;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file checked.
    pub path: PathBuf,
    /// Its format version.
    pub format_version: u32,
    /// The epoch its ids carry.
    pub epoch: Epoch,
    /// The seqs it should hold (retention deleted everything before; empty when it holds none).
    pub expected: RangeInclusive<u64>,
    /// Events that read and decode.
    pub readable: u64,
    /// Seq ranges that cannot be read or decoded, in order, adjacent ranges merged.
    pub damaged: Vec<RangeInclusive<u64>>,
    /// Events the log holds beyond the file (part of `expected`; the next open indexes them).
    pub log_events: u64,
    /// Why the log could not be read at all (its events, if any, are unknown).
    pub log_unreadable: Option<String>,
}

impl Report {
    /// Whether every expected event reads.
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty() && self.log_unreadable.is_none()
    }

    /// How many events are damaged.
    pub fn damaged_events(&self) -> u64 {
        self.damaged.iter().map(|r| r.end() - r.start() + 1).sum()
    }

    fn mark(&mut self, seqs: RangeInclusive<u64>) {
        match self.damaged.last_mut() {
            Some(last) if *last.end() + 1 >= *seqs.start() => {
                *last = *last.start()..=(*last.end()).max(*seqs.end());
            }
            _ => self.damaged.push(seqs),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store: {}", self.path.display())?;
        writeln!(f, "format {}, epoch {}", self.format_version, self.epoch)?;
        if self.expected.is_empty() {
            writeln!(f, "events: none")?;
        } else {
            writeln!(
                f,
                "events: seq {}..={} ({} readable)",
                self.expected.start(),
                self.expected.end(),
                self.readable
            )?;
        }
        if self.log_events > 0 {
            writeln!(
                f,
                "log: {} acknowledged events not yet in the file (indexed at the next start)",
                self.log_events
            )?;
        }
        if let Some(why) = &self.log_unreadable {
            writeln!(f, "DAMAGED: the log cannot be read: {why}")?;
        }
        if self.is_intact() {
            return writeln!(f, "ok: every event reads");
        }
        for r in &self.damaged {
            writeln!(
                f,
                "damaged: seq {}..={} ({} events)",
                r.start(),
                r.end(),
                r.end() - r.start() + 1
            )?;
        }
        writeln!(
            f,
            "DAMAGED: {} events cannot be read; see \"When the store is damaged\" in the README",
            self.damaged_events()
        )
    }
}

/// Checks the store file at `path` (or `path/events.redb` when `path` is a directory).
///
/// Fails (rather than reporting) when the file cannot be checked at all: it is in use by a
/// running server, was not closed cleanly (start and stop the server once, which repairs it,
/// or check a copy), is not a store, or its metadata is unreadable.
pub fn verify(path: &Path) -> Result<Report, StoreError> {
    let path = if path.is_dir() {
        path.join("events.redb")
    } else {
        path.to_owned()
    };
    if !path.exists() {
        return Err(StoreError::Io(format!("{} does not exist", path.display())));
    }
    let db = guarded(
        || "opening the file".into(),
        || {
            redb::Builder::new()
                .set_cache_size(CACHE)
                .open_read_only(&path)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => {
                        StoreError::Io("the store is in use; stop the server first".into())
                    }
                    redb::DatabaseError::RepairAborted => StoreError::Io(
                        "the file was not closed cleanly; start and stop the server once \
                         (which repairs it), or verify a copy"
                            .into(),
                    ),
                    e => store_error(e),
                })
        },
    )?;
    let mut report = guarded(
        || "reading the store's metadata".into(),
        || meta(&db, &path),
    )?;
    scan(&db, &mut report);
    check_log(&wal::path_of(&path), &mut report);
    Ok(report)
}

/// Reads the log: its frames after the file's last event extend `expected`.
fn check_log(path: &Path, report: &mut Report) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            report.log_unreadable = Some(e.to_string());
            return;
        }
    };
    let scan = match wal::scan(&bytes) {
        Ok(scan) => scan,
        Err(e) => {
            report.log_unreadable = Some(e.to_string());
            return;
        }
    };
    let (first, mut last) = (*report.expected.start(), *report.expected.end());
    let end = last;
    for frame in scan.frames.iter().filter(|f| f.seq > end) {
        if frame.seq != last + 1 {
            report.log_unreadable = Some(format!(
                "it continues at seq {} but the file holds up to seq {last}",
                frame.seq
            ));
            return;
        }
        match schema::decode_event(report.epoch, frame.seq, frame.event) {
            Ok(_) => report.readable += 1,
            Err(_) => report.mark(frame.seq..=frame.seq),
        }
        report.log_events += 1;
        last = frame.seq;
    }
    report.expected = first..=last;
}

/// The format, epoch and expected seq range, from `meta`.
fn meta(db: &ReadOnlyDatabase, path: &Path) -> Result<Report, StoreError> {
    let tx = db.begin_read().map_err(store_error)?;
    let meta = tx.open_table(META).map_err(store_error)?;
    let get = |name: &str| -> Result<Vec<u8>, StoreError> {
        match meta.get(name).map_err(store_error)? {
            Some(v) => Ok(v.value().to_vec()),
            None => Err(StoreError::Corrupt(format!("meta `{name}` is missing"))),
        }
    };
    let format_version = schema::meta_u32(FORMAT_VERSION, &get(FORMAT_VERSION)?)?;
    if !(v1::VERSION..=CURRENT_VERSION).contains(&format_version) {
        return Err(StoreError::Corrupt(format!(
            "format version {format_version} is unknown; this build reads up to {CURRENT_VERSION}"
        )));
    }
    let epoch = Epoch(schema::meta_u32(EPOCH, &get(EPOCH)?)?);
    let trimmed_through = schema::meta_u64(TRIMMED_THROUGH, &get(TRIMMED_THROUGH)?)?;
    let events = schema::meta_u64(EVENT_COUNT, &get(EVENT_COUNT)?)?;
    // Seqs are contiguous from the first retained one (`trimmed_through + 1`) to the last.
    let expected = trimmed_through + 1..=trimmed_through + events;
    Ok(Report {
        path: path.to_owned(),
        format_version,
        epoch,
        expected,
        readable: 0,
        damaged: Vec::new(),
        log_events: 0,
        log_unreadable: None,
    })
}

/// Reads every expected event; after a failure, probes seq by seq until one reads again.
fn scan(db: &ReadOnlyDatabase, report: &mut Report) {
    let (first, last) = (*report.expected.start(), *report.expected.end());
    let mut next = first;
    while next <= last {
        let scanned = guarded(String::new, || {
            let tx = db.begin_read().map_err(store_error)?;
            let table = tx.open_table(EVENTS).map_err(store_error)?;
            for row in table.range(next..=last).map_err(store_error)? {
                let (k, v) = row.map_err(store_error)?;
                let seq = k.value();
                if seq > next {
                    // Rows that should be there are missing.
                    report.mark(next..=seq - 1);
                }
                match schema::decode_event(report.epoch, seq, v.value()) {
                    Ok(_) => report.readable += 1,
                    Err(_) => report.mark(seq..=seq),
                }
                next = seq + 1;
            }
            Ok(())
        });
        if scanned.is_ok() {
            if next <= last {
                report.mark(next..=last);
            }
            return;
        }
        // The scan broke at `next`: step over every seq that does not read on its own.
        let start = next;
        while next <= last && !reads(db, report.epoch, next) {
            next += 1;
        }
        if next > start {
            report.mark(start..=next - 1);
        } else {
            // It reads alone but not in a scan: count it and go on after it.
            report.readable += 1;
            next += 1;
        }
    }
}

/// Whether event `seq` reads and decodes on its own.
fn reads(db: &ReadOnlyDatabase, epoch: Epoch, seq: u64) -> bool {
    guarded(String::new, || {
        let tx = db.begin_read().map_err(store_error)?;
        let table = tx.open_table(EVENTS).map_err(store_error)?;
        match table.get(seq).map_err(store_error)? {
            Some(v) => schema::decode_event(epoch, seq, v.value()).map(|_| ()),
            None => Err(StoreError::Corrupt(format!("event {seq} is missing"))),
        }
    })
    .is_ok()
}
