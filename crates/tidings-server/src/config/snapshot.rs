//! `[snapshot]`: what the latest-per-key table behind `GET /snapshot` and `snapshot=1` keeps,
//! and how large one snapshot may be.

use clap::Args;
use serde::{Deserialize, Serialize};
use tidings_core::SnapshotRules;
use tidings_proto::EventType;

use super::units::size;
use super::{ConfigError, bad};

/// `[snapshot]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSnapshot {
    /// An event type that removes its key from the snapshot, e.g. `removed` (repeatable; in
    /// the environment, several separated by spaces) [default: none].
    #[arg(
        id = "snapshot_delete_types",
        long = "snapshot-delete-type",
        env = "TIDINGS_SNAPSHOT_DELETE_TYPES",
        value_name = "NAME",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub delete_types: Vec<String>,
    /// Most keys the snapshot table holds over all topics; past it a new key evicts the key
    /// updated longest ago (0: no snapshots) [default: 100000].
    #[arg(
        long = "snapshot-max-keys",
        env = "TIDINGS_SNAPSHOT_MAX_KEYS",
        value_name = "N"
    )]
    pub max_keys: Option<usize>,
    /// Largest snapshot one request may get; a larger one is refused with 422
    /// `snapshot_too_large` (at most limits.replay_memory_bytes) [default: 8MiB].
    #[arg(
        id = "snapshot_max_bytes",
        long = "snapshot-max-bytes",
        env = "TIDINGS_SNAPSHOT_MAX_BYTES",
        value_name = "SIZE"
    )]
    pub max_bytes: Option<String>,
}

impl RawSnapshot {
    /// The table's rules, and the largest snapshot in bytes.
    pub(super) fn validate(&self) -> Result<(SnapshotRules, usize), ConfigError> {
        let delete_types = self
            .delete_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                EventType::new(t)
                    .map_err(|e| bad(&format!("snapshot.delete_types[{i}]"), format!("`{t}` {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_bytes = size("snapshot.max_bytes", self.max_bytes.as_deref(), "8MiB")?;
        if max_bytes == 0 {
            return Err(bad("snapshot.max_bytes", "must be greater than 0"));
        }
        Ok((
            SnapshotRules {
                delete_types,
                max_keys: self.max_keys.unwrap_or(100_000),
            },
            max_bytes,
        ))
    }
}
