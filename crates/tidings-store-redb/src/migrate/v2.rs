//! Format version 2: added the `idempotency` and `idempotency_by_seq` tables, so a publish
//! retried after a restart with the same Idempotency-Key gets its original ids. The upgrade
//! from v1 only creates the (empty) tables and bumps the version, inside the opening
//! transaction, so it is atomic; batches published under v1 simply have no remembered key.
//!
//! The v2 tables, kept here because only the upgrades use them (v3 replaced them):
//! - `idempotency`: `&str` Idempotency-Key → `fingerprint u64 LE | first_seq u64 LE |
//!   count u32 LE`. The key was shared by every credential and the fingerprint was a 64-bit
//!   FNV-1a of the batch.
//! - `idempotency_by_seq`: `u64` first seq → `&str` key, for retention.

use redb::{TableDefinition, WriteTransaction};
use tidings_core::StoreError;

use crate::schema::{FORMAT_VERSION, META};
use crate::store_error;

/// The version this module writes.
pub(crate) const VERSION: u32 = 2;

/// Idempotency-Key → keyed batch (v2 only).
pub(crate) const IDEMPOTENCY: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("idempotency");
/// First seq of a keyed batch → its key (v2 only).
pub(crate) const IDEMPOTENCY_BY_SEQ: TableDefinition<'_, u64, &str> =
    TableDefinition::new("idempotency_by_seq");

/// Brings a v1 file (or a just-created one) to v2.
pub(crate) fn upgrade(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(IDEMPOTENCY).map_err(store_error)?;
    tx.open_table(IDEMPOTENCY_BY_SEQ).map_err(store_error)?;
    let mut meta = tx.open_table(META).map_err(store_error)?;
    meta.insert(FORMAT_VERSION, VERSION.to_le_bytes().as_slice())
        .map_err(store_error)?;
    Ok(())
}
