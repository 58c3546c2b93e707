//! `[metrics]`: where `GET /metrics` is served, the token that may read it, and the topic
//! prefixes counted on their own.

use std::net::SocketAddr;

use clap::Args;
use serde::{Deserialize, Serialize};
use tidings_auth::Secret;
use tidings_proto::topic::MAX_TOPIC_BYTES;

use super::{ConfigError, bad};

/// `[metrics]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `GET /metrics` on this address as well, alone (e.g. a port only the monitoring
    /// network reaches) [default: none; /metrics is on the main listener].
    #[arg(
        id = "metrics_listen",
        long = "metrics-listen",
        env = "TIDINGS_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<String>,
    /// A bearer token that may read `/metrics` (besides admin credentials; prefer the
    /// environment variable: a flag's value is visible to other local users) [default: none].
    #[arg(
        id = "metrics_token",
        long = "metrics-token",
        env = "TIDINGS_METRICS_TOKEN",
        value_name = "SECRET"
    )]
    pub token: Option<Secret>,
    /// A topic prefix whose published events are counted on their own in
    /// `tidings_events_published_by_prefix_total` (repeatable; in the environment, several
    /// separated by spaces; at most 100) [default: none].
    #[arg(
        id = "metrics_topic_prefixes",
        long = "metrics-topic-prefix",
        env = "TIDINGS_METRICS_TOPIC_PREFIXES",
        value_name = "PREFIX",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub topic_prefixes: Vec<String>,
}

/// Most topic prefixes broken out: each is a label value, so the series stay bounded.
pub const MAX_TOPIC_PREFIXES: usize = 100;

/// The validated `[metrics]`.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// A listener serving only `/metrics`.
    pub listen: Option<SocketAddr>,
    /// A token that may read `/metrics`.
    pub token: Option<Secret>,
    /// Prefixes counted on their own.
    pub topic_prefixes: Vec<String>,
}

impl RawMetrics {
    pub(super) fn validate(&self) -> Result<MetricsConfig, ConfigError> {
        let listen = match &self.listen {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "metrics.listen",
                    format!("`{text}` is not an IP:port address"),
                )
            })?),
        };
        if let Some(token) = &self.token
            && token.expose().len() < 16
        {
            return Err(bad(
                "metrics.token",
                "must be at least 16 characters (a long random secret)",
            ));
        }
        if self.topic_prefixes.len() > MAX_TOPIC_PREFIXES {
            return Err(bad(
                "metrics.topic_prefixes",
                format!(
                    "{} prefixes; at most {MAX_TOPIC_PREFIXES}",
                    self.topic_prefixes.len()
                ),
            ));
        }
        for (i, p) in self.topic_prefixes.iter().enumerate() {
            if p.is_empty() || p.len() > MAX_TOPIC_BYTES || p.chars().any(char::is_control) {
                return Err(bad(
                    &format!("metrics.topic_prefixes[{i}]"),
                    format!(
                        "`{}` is not a topic prefix (1 to {MAX_TOPIC_BYTES} bytes, no control characters)",
                        p.escape_debug()
                    ),
                ));
            }
        }
        Ok(MetricsConfig {
            listen,
            token: self.token.clone(),
            topic_prefixes: self.topic_prefixes.clone(),
        })
    }
}
