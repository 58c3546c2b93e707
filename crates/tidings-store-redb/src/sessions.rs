//! The client-id sessions a hub saved (`tidings_core::SessionStore`): one row per session in
//! the `sessions` table, replaced as a whole by the writer thread when the hub flushes, read
//! once when a hub starts. The table is additive: a file without it has no saved sessions,
//! and a build that does not know it ignores it, so the format version does not change.
//!
//! Row: client id → JSON `{"patterns":[..],"types":[..],"epoch":N,"place":N,"detachedAt":N}`.
//! A row that does not decode is skipped (sessions are a convenience over cursors: losing one
//! means a `subscribed` where a `resumed` was due, never a lost event).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};
use serde_json::{Value, json};
use tidings_core::{SavedSession, StoreError};

use crate::{Shared, guarded, store_error};

/// client id → JSON row.
pub(crate) const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");

/// Replaces every saved session with `sessions` (in the writer's transaction).
pub(crate) fn write(tx: &WriteTransaction, sessions: &[SavedSession]) -> Result<(), StoreError> {
    tx.delete_table(SESSIONS).map_err(store_error)?;
    let mut table = tx.open_table(SESSIONS).map_err(store_error)?;
    for s in sessions {
        let row = json!({
            "patterns": s.patterns,
            "types": s.types,
            "epoch": s.epoch,
            "place": s.place,
            "detachedAt": s.detached_at,
        })
        .to_string();
        table
            .insert(s.client_id.as_str(), row.as_bytes())
            .map_err(store_error)?;
    }
    Ok(())
}

/// Every saved session that decodes.
pub(crate) fn read(shared: &Shared) -> Result<Vec<SavedSession>, StoreError> {
    guarded(
        || "reading saved sessions".into(),
        || {
            let tx = shared.db.begin_read().map_err(store_error)?;
            let table = match tx.open_table(SESSIONS) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(e)),
            };
            let mut out = Vec::new();
            for row in table.iter().map_err(store_error)? {
                let (k, v) = row.map_err(store_error)?;
                if let Some(s) = decode(k.value(), v.value()) {
                    out.push(s);
                }
            }
            Ok(out)
        },
    )
}

fn decode(client_id: &str, row: &[u8]) -> Option<SavedSession> {
    let v: Value = serde_json::from_slice(row).ok()?;
    let strings = |name: &str| -> Option<Vec<String>> {
        v.get(name)?
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    Some(SavedSession {
        client_id: client_id.to_owned(),
        patterns: strings("patterns")?,
        types: strings("types")?,
        epoch: u32::try_from(v.get("epoch")?.as_u64()?).ok()?,
        place: v.get("place")?.as_u64()?,
        detached_at: v.get("detachedAt")?.as_u64()?,
    })
}
