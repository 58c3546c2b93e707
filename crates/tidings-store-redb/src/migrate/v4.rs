//! Format version 4: the latest-per-key table (`latest` and `latest_by_seq`, layout in
//! `crate::latest`), written with the events from now on. The upgrade from v3 builds it from
//! the retained events, in seq order, under the configured `SnapshotRules`: a key whose
//! every event was trimmed before the upgrade has no row (history is all a v3 file has). It
//! runs in the opening transaction, so a crash leaves either a v3 or a v4 file.

use redb::{ReadableTable, WriteTransaction};
use tidings_core::{SnapshotRules, StoreError};
use tidings_proto::Epoch;

use crate::latest::{LATEST, LATEST_BY_SEQ, Tables};
use crate::migrate::CURRENT_VERSION;
use crate::schema::{self, EVENTS, FORMAT_VERSION, META};
use crate::store_error;

/// The version this module writes.
pub(crate) const VERSION: u32 = 4;

const _: () = assert!(
    VERSION == CURRENT_VERSION,
    "add an upgrade when the format changes"
);

/// Brings a v3 file to v4.
pub(crate) fn upgrade(tx: &WriteTransaction, rules: &SnapshotRules) -> Result<(), StoreError> {
    let mut tables = Tables {
        rows: tx.open_table(LATEST).map_err(store_error)?,
        by_seq: tx.open_table(LATEST_BY_SEQ).map_err(store_error)?,
    };
    let events = tx.open_table(EVENTS).map_err(store_error)?;
    let mut value = Vec::new();
    let mut rebuilt = 0u64;
    for row in events.iter().map_err(store_error)? {
        let (seq, bytes) = row.map_err(store_error)?;
        // The epoch does not matter here: only topic, type and key are read.
        let event = schema::decode_event(Epoch(0), seq.value(), bytes.value())?;
        if event.key.is_some() {
            rebuilt += 1;
        }
        tables.apply(rules, &event, bytes.value(), &mut value)?;
    }
    drop((events, tables));
    let mut meta = tx.open_table(META).map_err(store_error)?;
    meta.insert(FORMAT_VERSION, VERSION.to_le_bytes().as_slice())
        .map_err(store_error)?;
    if rebuilt > 0 {
        tracing::info!(
            message = "Upgraded the event store to format 4; built the latest-per-key table from the retained events.",
            keyed_events = rebuilt,
        );
    }
    Ok(())
}
