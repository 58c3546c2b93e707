//! Format version 3: idempotency keys scoped per credential, with SHA-256 fingerprints. The
//! v2 tables `idempotency` and `idempotency_by_seq` are replaced by `keyed_batches` and
//! `keyed_batches_by_seq` (layout in `schema`): a row is found by SHA-256 of the key's scope
//! and text, and holds the batch's 32-byte fingerprint and its id range.
//!
//! **The upgrade from v2 drops every v2 key** (the events stay). A v2 row cannot become a v3
//! row: it does not say which credential published the batch, so no scope can be given to it
//! without letting one credential match, block or probe another's keys, which is the fault v3
//! fixes; and its 64-bit FNV fingerprint is the one a crafted body can collide with. Keeping
//! the rows under some marker would keep both faults alive for as long as those batches are
//! retained, to save one case: a publish retried across the upgrade. That retry is published
//! again, as any retry of a batch from before v2 is. The upgrade logs how many keys it
//! dropped. It runs in the opening transaction, so a crash leaves either a v2 or a v3 file.

use redb::{ReadableTableMetadata, WriteTransaction};
use tidings_core::StoreError;

use crate::migrate::v2;
use crate::schema::{FORMAT_VERSION, KEYED, KEYED_BY_SEQ, META};
use crate::store_error;

/// The version this module writes.
pub(crate) const VERSION: u32 = 3;

/// Brings a v2 file to v3.
pub(crate) fn upgrade(tx: &WriteTransaction) -> Result<(), StoreError> {
    let dropped = tx
        .open_table(v2::IDEMPOTENCY)
        .map_err(store_error)?
        .len()
        .map_err(store_error)?;
    tx.delete_table(v2::IDEMPOTENCY).map_err(store_error)?;
    tx.delete_table(v2::IDEMPOTENCY_BY_SEQ)
        .map_err(store_error)?;
    tx.open_table(KEYED).map_err(store_error)?;
    tx.open_table(KEYED_BY_SEQ).map_err(store_error)?;
    let mut meta = tx.open_table(META).map_err(store_error)?;
    meta.insert(FORMAT_VERSION, VERSION.to_le_bytes().as_slice())
        .map_err(store_error)?;
    if dropped > 0 {
        tracing::info!(
            message = "Upgraded the event store to format 3; idempotency keys of format 2 were dropped (a retry of those batches publishes again).",
            dropped,
        );
    }
    Ok(())
}
