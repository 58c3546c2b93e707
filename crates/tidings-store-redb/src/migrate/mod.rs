//! Format versions: reads the version recorded in `meta`, creates a new file at the current
//! version, and refuses a version this build does not know.
//!
//! **Invariant:** a file is only ever read by code that knows its version. Each format has a
//! module: `v1` creates a file, `v2`, `v3` and `v4` each upgrade from the version before. A file of
//! any older version is brought up step by step, here, in the opening transaction, so the
//! upgrade is atomic. A format change adds the next module with its upgrade, bumps
//! [`CURRENT_VERSION`], and commits a fixture written by the previous version's code (see
//! `tests/fixtures/README.md`), which `tests/it` must keep opening.

use redb::{ReadableTable, WriteTransaction};
use tidings_core::{SnapshotRules, StoreError};

use crate::schema::{self, FORMAT_VERSION, META};
use crate::store_error;

pub(crate) mod v1;
pub(crate) mod v2;
pub(crate) mod v3;
pub(crate) mod v4;

/// The format this build writes.
pub(crate) const CURRENT_VERSION: u32 = 4;

/// What the meta table says about a file, once it is at the current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The epoch recorded in the file.
    pub(crate) epoch: u32,
    /// Highest seq deleted by retention.
    pub(crate) trimmed_through: u64,
    /// Rows in `events`.
    pub(crate) events: u64,
    /// Sum of the value lengths in `events`.
    pub(crate) bytes: u64,
    /// Highest seq stored (0 when empty).
    pub(crate) last_seq: u64,
    /// Whether the clean-shutdown marker was present.
    pub(crate) clean_shutdown: bool,
}

/// Brings the file to [`CURRENT_VERSION`] inside `tx` (creating it with `new_epoch` if it is
/// new) and returns its meta. The caller commits. `rules` build the latest-per-key table of
/// a file that has none yet (`v4`).
pub(crate) fn open(
    tx: &WriteTransaction,
    new_epoch: u32,
    rules: &SnapshotRules,
) -> Result<Meta, StoreError> {
    let version = {
        let meta = tx.open_table(META).map_err(store_error)?;
        let version = meta.get(FORMAT_VERSION).map_err(store_error)?;
        version
            .map(|v| schema::meta_u32(FORMAT_VERSION, v.value()))
            .transpose()?
    };
    match version {
        None => {
            let events = tx.open_table(schema::EVENTS).map_err(store_error)?;
            if events.first().map_err(store_error)?.is_some() {
                return Err(StoreError::Corrupt(
                    "the file holds events but no format version".into(),
                ));
            }
            drop(events);
            v1::create(tx, new_epoch)?;
            v2::upgrade(tx)?;
            v3::upgrade(tx)?;
            v4::upgrade(tx, rules)?;
        }
        Some(v1::VERSION) => {
            v2::upgrade(tx)?;
            v3::upgrade(tx)?;
            v4::upgrade(tx, rules)?;
        }
        Some(v2::VERSION) => {
            v3::upgrade(tx)?;
            v4::upgrade(tx, rules)?;
        }
        Some(v3::VERSION) => v4::upgrade(tx, rules)?,
        Some(CURRENT_VERSION) => {}
        Some(other) => {
            return Err(StoreError::Corrupt(format!(
                "format version {other} is unknown; this build reads version {CURRENT_VERSION}"
            )));
        }
    }
    v1::load(tx)
}
