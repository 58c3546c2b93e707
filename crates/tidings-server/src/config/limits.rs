//! `[limits]`: the engine and HTTP bounds on bodies, batches, selectors and subscriber queues.

use clap::Args;
use serde::{Deserialize, Serialize};
use tidings_core::Limits;

use super::units::{positive, size};
use super::{ConfigError, bad};

/// `[limits]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest publish body [default: 1MiB].
    #[arg(
        long = "max-body-bytes",
        env = "TIDINGS_MAX_BODY_BYTES",
        value_name = "SIZE"
    )]
    pub max_body_bytes: Option<String>,
    /// Largest `data` of one event [default: 64KiB].
    #[arg(
        long = "max-data-bytes",
        env = "TIDINGS_MAX_DATA_BYTES",
        value_name = "SIZE"
    )]
    pub max_data_bytes: Option<String>,
    /// Most events in one publish [default: 1000].
    #[arg(
        long = "max-batch-events",
        env = "TIDINGS_MAX_BATCH_EVENTS",
        value_name = "N"
    )]
    pub max_batch_events: Option<usize>,
    /// Most topic selectors in one subscription [default: 32].
    #[arg(long = "max-topics", env = "TIDINGS_MAX_TOPICS", value_name = "N")]
    pub max_topics: Option<usize>,
    /// Events queued for one subscriber before it is told to reconnect [default: 4096].
    #[arg(
        long = "subscriber-queue",
        env = "TIDINGS_SUBSCRIBER_QUEUE",
        value_name = "N"
    )]
    pub subscriber_queue: Option<usize>,
    /// Events queued for one lagging subscriber before its queue is conflated: superseded
    /// events of keys a `[[coalesce]]` rule gives are dropped for the newest per key
    /// (terminals and unkeyed events kept); 0 turns it off; at most half of
    /// subscriber_queue is used [default: 1024].
    #[arg(
        long = "subscriber-queue-soft",
        env = "TIDINGS_SUBSCRIBER_QUEUE_SOFT",
        value_name = "N"
    )]
    pub subscriber_queue_soft: Option<usize>,
    /// Bytes queued for one subscriber before it is told to reconnect [default: 4MiB].
    #[arg(
        long = "subscriber-queue-bytes",
        env = "TIDINGS_SUBSCRIBER_QUEUE_BYTES",
        value_name = "SIZE"
    )]
    pub subscriber_queue_bytes: Option<String>,
    /// Most bytes of publish bodies held at once, over all connections; a publish that would
    /// exceed it is answered 503 `overloaded` [default: 64MiB].
    #[arg(
        long = "max-inflight-body-bytes",
        env = "TIDINGS_MAX_INFLIGHT_BODY_BYTES",
        value_name = "SIZE"
    )]
    pub max_inflight_body_bytes: Option<String>,
    /// Most bytes one replay step reads from the store for one subscriber (raised to fit the
    /// largest event) [default: 64KiB].
    #[arg(
        long = "replay-chunk-bytes",
        env = "TIDINGS_REPLAY_CHUNK_BYTES",
        value_name = "SIZE"
    )]
    pub replay_chunk_bytes: Option<String>,
    /// Most bytes of replayed events held at once across all subscribers; resuming clients
    /// beyond it wait their turn [default: 32MiB].
    #[arg(
        long = "replay-memory-bytes",
        env = "TIDINGS_REPLAY_MEMORY_BYTES",
        value_name = "SIZE"
    )]
    pub replay_memory_bytes: Option<String>,
    /// Most bytes of recently delivered events kept in memory, so clients resuming near the
    /// head (a reconnect storm after a restart or a blip) replay from there instead of the
    /// store; their cached encodings add about as much again (0: off) [default: 16MiB].
    #[arg(
        long = "replay-cache-bytes",
        env = "TIDINGS_REPLAY_CACHE_BYTES",
        value_name = "SIZE"
    )]
    pub replay_cache_bytes: Option<String>,
    /// Most bytes the remembered idempotency keys take in memory; the oldest are forgotten
    /// first [default: 32MiB].
    #[arg(
        long = "idempotency-cache-bytes",
        env = "TIDINGS_IDEMPOTENCY_CACHE_BYTES",
        value_name = "SIZE"
    )]
    pub idempotency_cache_bytes: Option<String>,
    /// Events per second one credential may publish, as a token bucket; past it a publish is
    /// answered 429 with `Retry-After` (0: no limit) [default: 10000].
    #[arg(long = "publish-rate", env = "TIDINGS_PUBLISH_RATE", value_name = "N")]
    pub publish_rate: Option<u32>,
    /// Events one credential may publish in a burst, at least `max_batch_events`
    /// [default: twice the rate, at least max_batch_events].
    #[arg(
        long = "publish-burst",
        env = "TIDINGS_PUBLISH_BURST",
        value_name = "N"
    )]
    pub publish_burst: Option<u32>,
    /// Streams (SSE, NDJSON, WebSocket) one credential may hold open; past it 429
    /// `too_many_streams`, in-band for SSE (0: no limit) [default: 10000].
    #[arg(
        long = "max-streams-per-credential",
        env = "TIDINGS_MAX_STREAMS_PER_CREDENTIAL",
        value_name = "N"
    )]
    pub max_streams_per_credential: Option<usize>,
}

impl RawLimits {
    pub(super) fn validate(&self) -> Result<Limits, ConfigError> {
        let defaults = Limits::default();
        let limits = Limits {
            max_body_bytes: size(
                "limits.max_body_bytes",
                self.max_body_bytes.as_deref(),
                "1MiB",
            )?,
            max_data_bytes: size(
                "limits.max_data_bytes",
                self.max_data_bytes.as_deref(),
                "64KiB",
            )?,
            max_batch_events: positive(
                "limits.max_batch_events",
                self.max_batch_events,
                defaults.max_batch_events,
            )?,
            max_patterns: positive("limits.max_topics", self.max_topics, defaults.max_patterns)?,
            subscriber_queue_events: positive(
                "limits.subscriber_queue",
                self.subscriber_queue,
                defaults.subscriber_queue_events,
            )?,
            subscriber_queue_soft_events: self
                .subscriber_queue_soft
                .unwrap_or(defaults.subscriber_queue_soft_events),
            subscriber_queue_bytes: size(
                "limits.subscriber_queue_bytes",
                self.subscriber_queue_bytes.as_deref(),
                "4MiB",
            )?,
            replay_chunk_bytes: size(
                "limits.replay_chunk_bytes",
                self.replay_chunk_bytes.as_deref(),
                "64KiB",
            )?,
            replay_memory_bytes: size(
                "limits.replay_memory_bytes",
                self.replay_memory_bytes.as_deref(),
                "32MiB",
            )?,
            replay_cache_bytes: size(
                "limits.replay_cache_bytes",
                self.replay_cache_bytes.as_deref(),
                "16MiB",
            )?,
            idempotency_cache_bytes: size(
                "limits.idempotency_cache_bytes",
                self.idempotency_cache_bytes.as_deref(),
                "32MiB",
            )?,
            ..defaults
        };
        for (setting, value) in [
            ("limits.replay_chunk_bytes", limits.replay_chunk_bytes),
            ("limits.replay_memory_bytes", limits.replay_memory_bytes),
            (
                "limits.idempotency_cache_bytes",
                limits.idempotency_cache_bytes,
            ),
        ] {
            if value == 0 {
                return Err(bad(setting, "must be more than 0"));
            }
        }
        let mut limits = limits;
        limits.subscriber_queue_soft_events = limits
            .subscriber_queue_soft_events
            .min(limits.subscriber_queue_events / 2);
        if limits.subscriber_queue_bytes < limits.max_data_bytes {
            return Err(bad(
                "limits.subscriber_queue_bytes",
                "must be at least limits.max_data_bytes, or no large event could ever be queued",
            ));
        }
        if limits.max_data_bytes > limits.max_body_bytes {
            return Err(bad(
                "limits.max_data_bytes",
                "must not exceed limits.max_body_bytes",
            ));
        }
        Ok(limits)
    }

    /// The budget for publish bodies in flight, checked against `limits.max_body_bytes`.
    /// The publish rate and burst per credential.
    pub(super) fn publish_rate(&self, limits: &Limits) -> Result<(u32, u32), ConfigError> {
        let rate = self.publish_rate.unwrap_or(10_000);
        let batch = u32::try_from(limits.max_batch_events).unwrap_or(u32::MAX);
        let burst = self
            .publish_burst
            .unwrap_or_else(|| rate.saturating_mul(2).max(batch));
        if rate > 0 && burst < batch {
            return Err(bad(
                "limits.publish_burst",
                format!(
                    "must be at least limits.max_batch_events ({batch}), or the largest batch \
                     could never be published"
                ),
            ));
        }
        Ok((rate, burst))
    }

    pub(super) fn max_inflight_body_bytes(&self, limits: &Limits) -> Result<usize, ConfigError> {
        let budget = size(
            "limits.max_inflight_body_bytes",
            self.max_inflight_body_bytes.as_deref(),
            "64MiB",
        )?;
        if budget < limits.max_body_bytes {
            return Err(bad(
                "limits.max_inflight_body_bytes",
                "must be at least limits.max_body_bytes, or no large body could ever be read",
            ));
        }
        Ok(budget)
    }
}
