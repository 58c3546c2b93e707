//! The latest-per-key table (format v4): `latest` holds the newest event of each
//! `(topic, key)`, `latest_by_seq` finds the row updated longest ago (the one evicted at
//! `SnapshotRules::max_keys`). The writer updates both in the same transaction as the events,
//! so a reader sees the table exactly as of the last event in its read transaction. Retention
//! never deletes a row: a key's latest value outlives its history.
//!
//! - `latest`: row key (`tidings_core::store::row_key`: topic, NUL, key) → `seq u64 LE`, then
//!   the event in the `events` encoding (`schema`).
//! - `latest_by_seq`: `u64` seq → row key.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use tidings_core::store::{SnapshotRead, SnapshotRules, ranges, row_key};
use tidings_core::{EventRecord, SharedEvent, StoreError};
use tidings_proto::{Event, Selector};

use crate::schema::{self, EVENTS, META, TRIMMED_THROUGH};
use crate::{Shared, guarded, store_error};

/// Row key → seq and encoded event.
pub(crate) const LATEST: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("latest");
/// Seq → row key.
pub(crate) const LATEST_BY_SEQ: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("latest_by_seq");

/// The two tables, open in a write transaction.
pub(crate) struct Tables<'tx> {
    pub(crate) rows: Table<'tx, &'static [u8], &'static [u8]>,
    pub(crate) by_seq: Table<'tx, u64, &'static [u8]>,
}

impl Tables<'_> {
    /// Applies one stored event (in seq order); `encoded` is its `events` encoding.
    pub(crate) fn apply(
        &mut self,
        rules: &SnapshotRules,
        event: &Event,
        encoded: &[u8],
        value: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let Some(key) = &event.key else {
            return Ok(());
        };
        let row = row_key(event.topic.as_str(), key.as_str());
        let old = self
            .rows
            .remove(row.as_slice())
            .map_err(store_error)?
            .map(|v| row_seq(v.value()))
            .transpose()?;
        if let Some(old) = old {
            self.by_seq.remove(old).map_err(store_error)?;
        }
        if rules.deletes(&event.event_type) || rules.max_keys == 0 {
            return Ok(());
        }
        while self.by_seq.len().map_err(store_error)? >= rules.max_keys as u64 {
            let evicted = match self.by_seq.pop_first().map_err(store_error)? {
                Some((_, k)) => k.value().to_vec(),
                None => break,
            };
            self.rows.remove(evicted.as_slice()).map_err(store_error)?;
        }
        let seq = event.id.seq;
        value.clear();
        value.extend_from_slice(&seq.to_le_bytes());
        value.extend_from_slice(encoded);
        self.rows
            .insert(row.as_slice(), value.as_slice())
            .map_err(store_error)?;
        self.by_seq
            .insert(seq, row.as_slice())
            .map_err(store_error)?;
        Ok(())
    }
}

/// Evicts the rows updated longest ago until at most `rules.max_keys` are left (at open: a
/// ceiling lowered since the file was written takes effect at once).
pub(crate) fn fit(tx: &redb::WriteTransaction, rules: &SnapshotRules) -> Result<u64, StoreError> {
    let mut tables = Tables {
        rows: tx.open_table(LATEST).map_err(store_error)?,
        by_seq: tx.open_table(LATEST_BY_SEQ).map_err(store_error)?,
    };
    let mut evicted = 0;
    while tables.by_seq.len().map_err(store_error)? > rules.max_keys as u64 {
        let key = match tables.by_seq.pop_first().map_err(store_error)? {
            Some((_, k)) => k.value().to_vec(),
            None => break,
        };
        tables.rows.remove(key.as_slice()).map_err(store_error)?;
        evicted += 1;
    }
    Ok(evicted)
}

/// The seq at the front of a `latest` value.
fn row_seq(value: &[u8]) -> Result<u64, StoreError> {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| StoreError::Corrupt("a latest-per-key row is truncated".into()))
}

/// Reads the rows under `selector` and the seq they are exact as of, in one read
/// transaction. Stops with `overflow` (and no events) once the matching rows pass
/// `max_bytes`, so a read never holds more than that.
pub(crate) fn read(
    shared: &Shared,
    selector: &Selector,
    max_bytes: usize,
) -> Result<SnapshotRead, StoreError> {
    guarded(
        || "reading the latest-per-key table".into(),
        || {
            let tx = shared.db.begin_read().map_err(store_error)?;
            let through = {
                let events = tx.open_table(EVENTS).map_err(store_error)?;
                match events.last().map_err(store_error)? {
                    Some((k, _)) => k.value(),
                    None => {
                        let meta = tx.open_table(META).map_err(store_error)?;
                        match meta.get(TRIMMED_THROUGH).map_err(store_error)? {
                            Some(v) => schema::meta_u64(TRIMMED_THROUGH, v.value())?,
                            None => 0,
                        }
                    }
                }
            };
            let table = tx.open_table(LATEST).map_err(store_error)?;
            let mut out: Vec<SharedEvent> = Vec::new();
            let mut bytes = 0usize;
            let mut take = |v: &[u8]| -> Result<bool, StoreError> {
                let seq = row_seq(v)?;
                let event = schema::decode_event(shared.epoch, seq, &v[8..])?;
                if !selector.matches(&event.topic, &event.event_type) {
                    return Ok(true);
                }
                let record = EventRecord::new(event);
                bytes = bytes.saturating_add(record.size());
                if bytes > max_bytes {
                    return Ok(false);
                }
                out.push(record);
                Ok(true)
            };
            let mut fits = true;
            match ranges(selector) {
                None => {
                    for row in table.iter().map_err(store_error)? {
                        let (_, v) = row.map_err(store_error)?;
                        if !take(v.value())? {
                            fits = false;
                            break;
                        }
                    }
                }
                Some(prefixes) => {
                    'prefixes: for prefix in prefixes {
                        for row in table.range(prefix.as_slice()..).map_err(store_error)? {
                            let (k, v) = row.map_err(store_error)?;
                            if !k.value().starts_with(&prefix) {
                                break;
                            }
                            if !take(v.value())? {
                                fits = false;
                                break 'prefixes;
                            }
                        }
                    }
                }
            }
            if !fits {
                return Ok(SnapshotRead {
                    through,
                    events: Vec::new(),
                    overflow: true,
                });
            }
            // Patterns of one selector never overlap (the hub normalises them), but a caller
            // may not have: one row once.
            out.sort_unstable_by_key(|e| e.seq());
            out.dedup_by_key(|e| e.seq());
            Ok(SnapshotRead {
                through,
                events: out,
                overflow: false,
            })
        },
    )
}
