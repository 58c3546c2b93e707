//! `[store]` and `[retention]`: how published events are kept, and for how long.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tidings_core::Retention;

use super::units::{duration, size};
use super::{ConfigError, bad};

/// `[store]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `durable` (fsync before ack), `fast` (periodic fsync) or `memory` (no disk) [default: durable].
    #[arg(long, env = "TIDINGS_DURABILITY", value_name = "MODE")]
    pub durability: Option<String>,
    /// In `fast` mode, how often to fsync [default: 1s].
    #[arg(long, env = "TIDINGS_FSYNC_INTERVAL", value_name = "DURATION")]
    pub fsync_interval: Option<String>,
    /// Memory for the store's page cache, in durable and fast mode [default: 64MiB].
    #[arg(
        long = "store-cache-size",
        env = "TIDINGS_STORE_CACHE_SIZE",
        value_name = "SIZE"
    )]
    pub cache_size: Option<String>,
}

/// `[retention]`: every bound applies; `0` turns one off.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Most events kept [default: 1000000].
    #[arg(
        long = "retention-max-events",
        env = "TIDINGS_RETENTION_MAX_EVENTS",
        value_name = "N"
    )]
    pub max_events: Option<u64>,
    /// Most bytes kept, e.g. `512MiB` [default: 1GiB].
    #[arg(
        long = "retention-max-bytes",
        env = "TIDINGS_RETENTION_MAX_BYTES",
        value_name = "SIZE"
    )]
    pub max_bytes: Option<String>,
    /// Oldest event kept, e.g. `24h` [default: 7d].
    #[arg(
        long = "retention-max-age",
        env = "TIDINGS_RETENTION_MAX_AGE",
        value_name = "DURATION"
    )]
    pub max_age: Option<String>,
}

/// How published events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged only after fsync; concurrent publishes share one.
    Durable,
    /// Acknowledged after the write; fsync every `interval`. A crash loses up to that much
    /// and starts a new epoch, so every old cursor gets `reset`.
    Fast {
        /// How often to fsync.
        interval: Duration,
    },
    /// No disk: history lives in memory (bounded by retention) and dies with the process.
    Memory,
}

impl RawStore {
    pub(super) fn validate(&self) -> Result<Durability, ConfigError> {
        let durability = match self.durability.as_deref().unwrap_or("durable") {
            "durable" => Durability::Durable,
            "fast" => Durability::Fast {
                interval: duration("store.fsync_interval", self.fsync_interval.as_deref(), "1s")?,
            },
            "memory" => Durability::Memory,
            other => {
                return Err(bad(
                    "store.durability",
                    format!("`{other}` is not one of durable, fast, memory"),
                ));
            }
        };
        if let Durability::Fast { interval } = durability
            && interval.is_zero()
        {
            return Err(bad("store.fsync_interval", "must be greater than 0"));
        }
        Ok(durability)
    }

    /// Bytes of the store's page cache.
    pub(super) fn cache_size(&self) -> Result<usize, ConfigError> {
        size("store.cache_size", self.cache_size.as_deref(), "64MiB")
    }
}

impl RawRetention {
    pub(super) fn validate(&self) -> Result<Retention, ConfigError> {
        let off_if_zero = |n: u64| (n > 0).then_some(n);
        let max_age = duration("retention.max_age", self.max_age.as_deref(), "7d")?;
        Ok(Retention {
            max_events: off_if_zero(self.max_events.unwrap_or(1_000_000)),
            max_bytes: off_if_zero(
                size("retention.max_bytes", self.max_bytes.as_deref(), "1GiB")? as u64,
            ),
            max_age: (!max_age.is_zero()).then_some(max_age),
        })
    }
}
