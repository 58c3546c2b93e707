//! Format version 2: adds the `idempotency` and `idempotency_by_seq` tables, so a publish
//! retried after a restart with the same Idempotency-Key gets its original ids. The upgrade
//! from v1 only creates the (empty) tables and bumps the version, inside the opening
//! transaction, so it is atomic; batches published under v1 simply have no remembered key.

use redb::WriteTransaction;
use tidings_core::StoreError;

use crate::migrate::CURRENT_VERSION;
use crate::schema::{FORMAT_VERSION, IDEMPOTENCY, IDEMPOTENCY_BY_SEQ, META};
use crate::store_error;

/// The version this module writes.
pub(crate) const VERSION: u32 = 2;

const _: () = assert!(
    VERSION == CURRENT_VERSION,
    "add an upgrade when the format changes"
);

/// Brings a v1 file (or a just-created one) to v2.
pub(crate) fn upgrade(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(IDEMPOTENCY).map_err(store_error)?;
    tx.open_table(IDEMPOTENCY_BY_SEQ).map_err(store_error)?;
    let mut meta = tx.open_table(META).map_err(store_error)?;
    meta.insert(FORMAT_VERSION, VERSION.to_le_bytes().as_slice())
        .map_err(store_error)?;
    Ok(())
}
