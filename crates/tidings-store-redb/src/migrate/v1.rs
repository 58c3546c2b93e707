//! Format version 1 (the first): creates its meta rows and loads them, checking that each is
//! present and well formed. Later versions keep these rows, so `load` serves them too. The
//! layout itself is documented in `schema`.

use redb::{ReadableTable, WriteTransaction};
use tidings_core::StoreError;

use crate::migrate::Meta;
use crate::schema::{
    self, CLEAN_SHUTDOWN, EPOCH, EVENT_BYTES, EVENT_COUNT, EVENTS, FORMAT_VERSION, META,
    TRIMMED_THROUGH,
};
use crate::store_error;

/// The version this module reads and writes.
pub(crate) const VERSION: u32 = 1;

/// Writes the meta rows of an empty v1 file.
pub(crate) fn create(tx: &WriteTransaction, epoch: u32) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(store_error)?;
    meta.insert(FORMAT_VERSION, VERSION.to_le_bytes().as_slice())
        .map_err(store_error)?;
    meta.insert(EPOCH, epoch.to_le_bytes().as_slice())
        .map_err(store_error)?;
    for name in [TRIMMED_THROUGH, EVENT_COUNT, EVENT_BYTES] {
        meta.insert(name, 0u64.to_le_bytes().as_slice())
            .map_err(store_error)?;
    }
    // A new file has lost nothing.
    meta.insert(CLEAN_SHUTDOWN, [].as_slice())
        .map_err(store_error)?;
    Ok(())
}

/// Reads the meta rows (present since v1) and the highest stored seq.
pub(crate) fn load(tx: &WriteTransaction) -> Result<Meta, StoreError> {
    let meta = tx.open_table(META).map_err(store_error)?;
    let get = |name: &str| -> Result<Vec<u8>, StoreError> {
        match meta.get(name).map_err(store_error)? {
            Some(v) => Ok(v.value().to_vec()),
            None => Err(StoreError::Corrupt(format!("meta `{name}` is missing"))),
        }
    };
    let epoch = schema::meta_u32(EPOCH, &get(EPOCH)?)?;
    let trimmed_through = schema::meta_u64(TRIMMED_THROUGH, &get(TRIMMED_THROUGH)?)?;
    let events = schema::meta_u64(EVENT_COUNT, &get(EVENT_COUNT)?)?;
    let bytes = schema::meta_u64(EVENT_BYTES, &get(EVENT_BYTES)?)?;
    let clean_shutdown = meta.get(CLEAN_SHUTDOWN).map_err(store_error)?.is_some();
    let table = tx.open_table(EVENTS).map_err(store_error)?;
    let last_seq = match table.last().map_err(store_error)? {
        Some((k, _)) => k.value(),
        None => trimmed_through,
    };
    if last_seq < trimmed_through {
        return Err(StoreError::Corrupt(format!(
            "last seq {last_seq} is below trimmed_through {trimmed_through}"
        )));
    }
    Ok(Meta {
        epoch,
        trimmed_through,
        events,
        bytes,
        last_seq,
        clean_shutdown,
    })
}
