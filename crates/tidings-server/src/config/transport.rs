//! `[sse]`, `[websocket]` and `[poll]`: the per-transport settings, gathered with the
//! top-level `write_timeout` into `TransportOptions`.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::units::{duration, nonzero, size};
use crate::endpoint::TransportOptions;

/// `[sse]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSse {
    /// Interval of the `: keepalive` comment; `0s` turns it off [default: 30s].
    #[arg(
        long = "sse-keepalive",
        env = "TIDINGS_SSE_KEEPALIVE",
        value_name = "DURATION"
    )]
    pub keepalive: Option<String>,
    /// The `retry:` hint sent at the start of each stream [default: 2s].
    #[arg(long = "sse-retry", env = "TIDINGS_SSE_RETRY", value_name = "DURATION")]
    pub retry: Option<String>,
}

/// `[websocket]`, for the built-in `/events` endpoint and every other one.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    /// Interval of server pings [default: 25s].
    #[arg(
        long = "ws-ping-interval",
        env = "TIDINGS_WS_PING_INTERVAL",
        value_name = "DURATION"
    )]
    pub ping_interval: Option<String>,
    /// How long a pong may take [default: 10s].
    #[arg(
        long = "ws-pong-timeout",
        env = "TIDINGS_WS_PONG_TIMEOUT",
        value_name = "DURATION"
    )]
    pub pong_timeout: Option<String>,
    /// Largest message a client may send [default: 64KiB].
    #[arg(
        long = "ws-max-message-bytes",
        env = "TIDINGS_WS_MAX_MESSAGE_BYTES",
        value_name = "SIZE"
    )]
    pub max_message_bytes: Option<String>,
    /// Origins allowed to open a WebSocket on `/events`: `*`, or exact origins; by default
    /// only the same origin (requests without Origin are always allowed).
    #[arg(
        long = "ws-allowed-origin",
        env = "TIDINGS_WS_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// `[poll]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    /// Longest a long-poll waits [default: 25s].
    #[arg(
        long = "poll-timeout",
        env = "TIDINGS_POLL_TIMEOUT",
        value_name = "DURATION"
    )]
    pub timeout: Option<String>,
}

/// Builds the transport settings; `write_timeout` is the top-level setting of that name.
pub(super) fn options(
    sse: &RawSse,
    websocket: &RawWebSocket,
    poll: &RawPoll,
    write_timeout: Option<&str>,
) -> Result<TransportOptions, ConfigError> {
    let keepalive = duration("sse.keepalive", sse.keepalive.as_deref(), "30s")?;
    Ok(TransportOptions {
        keepalive: (!keepalive.is_zero()).then_some(keepalive),
        retry: duration("sse.retry", sse.retry.as_deref(), "2s")?,
        ws_ping_interval: nonzero(
            "websocket.ping_interval",
            websocket.ping_interval.as_deref(),
            "25s",
        )?,
        ws_pong_timeout: nonzero(
            "websocket.pong_timeout",
            websocket.pong_timeout.as_deref(),
            "10s",
        )?,
        ws_max_message_bytes: size(
            "websocket.max_message_bytes",
            websocket.max_message_bytes.as_deref(),
            "64KiB",
        )?,
        poll_timeout: nonzero("poll.timeout", poll.timeout.as_deref(), "25s")?,
        write_timeout: nonzero("write_timeout", write_timeout, "30s")?,
    })
}
