//! Retention: deciding when history is over its bounds (count, bytes, age) and deleting from
//! the front, inside one write transaction of the writer thread.
//!
//! Amortised: after an append commit the writer trims only once a count or byte bound is
//! exceeded by [`slack`] (1/64 of the bound), or at most every [`AGE_CHECK_EVERY`] for age, so
//! a steady stream does not pay a delete per commit. A trim, once started, and the trim run by
//! `flush()`, go down to the exact bounds.

use std::time::Duration;

use redb::{ReadableTable, WriteTransaction};
use tidings_core::{Retention, StoreError};

use crate::schema::{
    self, EVENT_BYTES, EVENT_COUNT, EVENTS, KEYED, KEYED_BY_SEQ, META, TRIMMED_THROUGH,
};
use crate::store_error;

/// How often the writer looks at the age of the oldest event when nothing else trims.
pub(crate) const AGE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Most rows one trim transaction deletes, so a large backlog is trimmed in bounded steps.
const MAX_TRIM_PER_TX: usize = 65_536;

/// What the writer knows about the retained history. Changed only after a commit succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    /// Rows in `events`.
    pub(crate) events: u64,
    /// Sum of their encoded lengths.
    pub(crate) bytes: u64,
    /// Highest seq stored.
    pub(crate) last_seq: u64,
    /// Highest seq deleted.
    pub(crate) trimmed_through: u64,
}

/// How far over a bound history may grow before an amortised trim runs.
pub(crate) fn slack(bound: u64) -> u64 {
    bound / 64
}

/// Whether the count or byte bound is exceeded by more than its slack (`exact`: at all).
pub(crate) fn over_size(retention: &Retention, counters: &Counters, exact: bool) -> bool {
    let over = |bound: Option<u64>, value: u64| {
        bound.is_some_and(|b| value > b + if exact { 0 } else { slack(b) })
    };
    over(retention.max_events, counters.events) || over(retention.max_bytes, counters.bytes)
}

/// Whether an event published at `time` is too old at `now_ms`.
pub(crate) fn too_old(retention: &Retention, time: u64, now_ms: u64) -> bool {
    retention.max_age.is_some_and(|age| {
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        time.saturating_add(age) < now_ms
    })
}

/// Deletes events from the front of `events` until every bound holds (or a step's worth was
/// deleted), records the new counters in `meta`, and returns them. The caller commits; the
/// returned counters are only true once it has.
pub(crate) fn trim(
    tx: &WriteTransaction,
    retention: &Retention,
    mut counters: Counters,
    now_ms: u64,
) -> Result<Counters, StoreError> {
    let before = counters;
    {
        let mut table = tx.open_table(EVENTS).map_err(store_error)?;
        for _ in 0..MAX_TRIM_PER_TX {
            let (seq, len, time) = match table.first().map_err(store_error)? {
                None => break,
                Some((k, v)) => {
                    let seq = k.value();
                    (
                        seq,
                        v.value().len() as u64,
                        schema::event_time(seq, v.value())?,
                    )
                }
            };
            if !(over_size(retention, &counters, true) || too_old(retention, time, now_ms)) {
                break;
            }
            table.remove(seq).map_err(store_error)?;
            counters.events = counters.events.saturating_sub(1);
            counters.bytes = counters.bytes.saturating_sub(len);
            counters.trimmed_through = seq;
        }
    }
    if counters != before {
        forget_keys(tx, counters.trimmed_through)?;
        let mut meta = tx.open_table(META).map_err(store_error)?;
        write_counters(&mut meta, &counters)?;
    }
    Ok(counters)
}

/// Drops the idempotency keys of batches whose first event is at or below `through`.
fn forget_keys(tx: &WriteTransaction, through: u64) -> Result<(), StoreError> {
    let mut by_seq = tx.open_table(KEYED_BY_SEQ).map_err(store_error)?;
    let mut keys = tx.open_table(KEYED).map_err(store_error)?;
    for _ in 0..MAX_TRIM_PER_TX {
        let (seq, row) = match by_seq.first().map_err(store_error)? {
            Some((seq, row)) if seq.value() <= through => (seq.value(), *row.value()),
            _ => break,
        };
        by_seq.remove(seq).map_err(store_error)?;
        keys.remove(&row).map_err(store_error)?;
    }
    Ok(())
}

/// Writes the count, byte and trim counters to `meta`.
pub(crate) fn write_counters(
    meta: &mut redb::Table<'_, &str, &[u8]>,
    counters: &Counters,
) -> Result<(), StoreError> {
    for (name, value) in [
        (EVENT_COUNT, counters.events),
        (EVENT_BYTES, counters.bytes),
        (TRIMMED_THROUGH, counters.trimmed_through),
    ] {
        meta.insert(name, value.to_le_bytes().as_slice())
            .map_err(store_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_with_and_without_slack() {
        let r = Retention {
            max_events: Some(640),
            max_bytes: None,
            max_age: None,
        };
        let c = |events| Counters {
            events,
            ..Counters::default()
        };
        assert!(!over_size(&r, &c(640), true));
        assert!(over_size(&r, &c(641), true));
        assert!(!over_size(&r, &c(650), false));
        assert!(over_size(&r, &c(651), false));
        let off = Retention {
            max_events: None,
            max_bytes: None,
            max_age: None,
        };
        assert!(!over_size(&off, &c(u64::MAX), true));
        let aged = Retention {
            max_age: Some(Duration::from_secs(1)),
            ..off
        };
        assert!(too_old(&aged, 1_000, 2_001));
        assert!(!too_old(&aged, 1_000, 2_000));
        assert!(!too_old(&aged, u64::MAX, u64::MAX));
    }
}
