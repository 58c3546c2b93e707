//! The latest-per-key table of `MemoryStore`, and the rules and read result every store's
//! table shares (`SnapshotRules`, `SnapshotRead`, `row_key`, `select`).
//!
//! A row is the newest event of one `(topic, key)`; events without a key have no row. An
//! event whose type is in `SnapshotRules::delete_types` removes its row instead. At
//! `SnapshotRules::max_keys` rows, a new key evicts the row updated longest ago (lowest seq),
//! so a publisher that invents keys pushes out stale rows and never grows the table.
//! Retention never touches the table: a key's latest value outlives its history.

use std::collections::{BTreeMap, HashMap};

use tidings_proto::{EventType, Pattern, Selector};

use crate::record::SharedEvent;

/// What the latest-per-key table keeps (the `[snapshot]` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRules {
    /// An event of one of these types removes its key from the table (a `removed` download
    /// leaves the list) instead of becoming the key's latest value.
    pub delete_types: Vec<EventType>,
    /// Most keys held over all topics; 0 keeps none. At the ceiling a new key evicts the key
    /// updated longest ago.
    pub max_keys: usize,
}

impl Default for SnapshotRules {
    /// No delete types, 100,000 keys.
    fn default() -> Self {
        SnapshotRules {
            delete_types: Vec::new(),
            max_keys: 100_000,
        }
    }
}

impl SnapshotRules {
    /// Whether an event of type `ty` deletes its key.
    pub fn deletes(&self, ty: &EventType) -> bool {
        self.delete_types.contains(ty)
    }
}

/// One read of a store's latest-per-key table.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRead {
    /// Every event with a seq up to this is stored, and `events` is the table as of it (no
    /// later event is reflected).
    pub through: u64,
    /// The newest event of each `(topic, key)` the selector matches, in seq order.
    pub events: Vec<SharedEvent>,
    /// The matching rows take more than the read's byte bound: `events` is then empty (a
    /// snapshot is whole or refused, never silently cut short).
    pub overflow: bool,
}

/// The table's row key: the topic, a NUL (no name contains one), the key. Rows of a topic
/// are contiguous and rows of a topic prefix too, so a selector reads ranges, not the table.
pub fn row_key(topic: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(topic.len() + 1 + key.len());
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

/// The row-key prefixes a selector's patterns cover (`None`: the whole table).
pub fn ranges(selector: &Selector) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in &selector.patterns {
        match p {
            Pattern::All => return None,
            Pattern::Prefix(pre) => out.push(pre.as_bytes().to_vec()),
            Pattern::Exact(t) => {
                let mut k = t.as_str().as_bytes().to_vec();
                k.push(0);
                out.push(k);
            }
        }
    }
    Some(out)
}

/// Keeps the rows `selector` matches, in seq order, if they fit in `max_bytes`
/// (`EventRecord::size`); otherwise none, with `overflow` set.
pub fn select(
    through: u64,
    mut rows: Vec<SharedEvent>,
    selector: &Selector,
    max_bytes: usize,
) -> SnapshotRead {
    rows.retain(|e| selector.matches(&e.event.topic, &e.event.event_type));
    rows.sort_unstable_by_key(|e| e.seq());
    rows.dedup_by_key(|e| e.seq());
    let bytes = rows.iter().fold(0usize, |n, e| n.saturating_add(e.size()));
    let overflow = bytes > max_bytes;
    if overflow {
        rows = Vec::new();
    }
    SnapshotRead {
        through,
        events: rows,
        overflow,
    }
}

/// `MemoryStore`'s table: rows by row key, and row keys by seq (for eviction).
#[derive(Debug, Default)]
pub(crate) struct LatestTable {
    rows: BTreeMap<Vec<u8>, SharedEvent>,
    by_seq: BTreeMap<u64, Vec<u8>>,
}

impl LatestTable {
    /// Applies one stored event (called in seq order).
    pub(crate) fn apply(&mut self, rules: &SnapshotRules, event: &SharedEvent) {
        let Some(key) = &event.event.key else { return };
        let row = row_key(event.event.topic.as_str(), key.as_str());
        if let Some(old) = self.rows.remove(&row) {
            self.by_seq.remove(&old.seq());
        }
        if rules.deletes(&event.event.event_type) || rules.max_keys == 0 {
            return;
        }
        while self.rows.len() >= rules.max_keys {
            let Some((_, oldest)) = self.by_seq.pop_first() else {
                break;
            };
            self.rows.remove(&oldest);
        }
        self.by_seq.insert(event.seq(), row.clone());
        self.rows.insert(row, event.clone());
    }

    /// The rows the selector's patterns cover (types are filtered by `select`).
    pub(crate) fn covered(&self, selector: &Selector) -> Vec<SharedEvent> {
        match ranges(selector) {
            None => self.rows.values().cloned().collect(),
            Some(prefixes) => {
                let mut seen = HashMap::new();
                for prefix in prefixes {
                    for (k, v) in self.rows.range(prefix.clone()..) {
                        if !k.starts_with(&prefix) {
                            break;
                        }
                        seen.insert(v.seq(), v.clone());
                    }
                }
                seen.into_values().collect()
            }
        }
    }
}
