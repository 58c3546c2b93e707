//! `[cluster]`: cluster mode on NATS JetStream (docs/scaling.md). Set `urls` (the flag
//! `--cluster-nats`) and every node with the same NATS and stream is one hub; unset, the
//! hub runs alone on its embedded store.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{ConfigError, bad};

/// `[cluster]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Joins a cluster over NATS JetStream at this URL, e.g. `nats://127.0.0.1:4222`
    /// (repeatable, or several separated by `,`: servers of one NATS cluster) [default: none:
    /// this node runs alone on its embedded store].
    #[arg(
        id = "cluster_urls",
        long = "cluster-nats",
        env = "TIDINGS_CLUSTER_NATS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub urls: Vec<String>,
    /// The JetStream stream that holds the cluster's events; nodes with the same NATS and
    /// stream are one hub [default: TIDINGS].
    #[arg(
        id = "cluster_stream",
        long = "cluster-stream",
        env = "TIDINGS_CLUSTER_STREAM",
        value_name = "NAME"
    )]
    pub stream: Option<String>,
    /// Replicas of the stream in the NATS cluster (3 survives the loss of one NATS server)
    /// [default: 1].
    #[arg(
        id = "cluster_replicas",
        long = "cluster-replicas",
        env = "TIDINGS_CLUSTER_REPLICAS",
        value_name = "N"
    )]
    pub replicas: Option<usize>,
    /// A NATS token to connect with (a user and password go in the URL:
    /// `nats://user:password@host:4222`) [default: none].
    #[arg(
        id = "cluster_token",
        long = "cluster-token",
        env = "TIDINGS_CLUSTER_TOKEN",
        value_name = "SECRET"
    )]
    pub token: Option<String>,
    /// A NATS credentials file (`.creds`, as `nsc generate creds` writes it: a user JWT and
    /// its nkey seed), for a NATS server in operator mode; not with `--cluster-token`
    /// [default: none].
    #[arg(
        id = "cluster_credentials",
        long = "cluster-credentials",
        env = "TIDINGS_CLUSTER_CREDENTIALS",
        value_name = "CREDS"
    )]
    pub credentials: Option<PathBuf>,
}

/// The validated `[cluster]`: where NATS is and which stream is the hub.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// NATS URLs.
    pub urls: Vec<String>,
    /// The stream's name.
    pub stream: String,
    /// The stream's replicas.
    pub replicas: usize,
    /// A token (never printed).
    pub token: Option<String>,
    /// A credentials file, read and checked at startup (its contents never printed).
    pub credentials: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("urls", &self.urls)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("token", &self.token.as_ref().map(|_| super::REDACTED))
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl RawCluster {
    pub(super) fn validate(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        if self.token.is_some() && self.credentials.is_some() {
            return Err(bad(
                "cluster.credentials",
                "cannot be set with cluster.token: NATS takes one of them; keep the one your \
                 NATS server's authorization expects",
            ));
        }
        if self.urls.is_empty() {
            return Ok(None);
        }
        for (i, url) in self.urls.iter().enumerate() {
            let scheme_ok = ["nats://", "tls://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.contains(char::is_whitespace) {
                return Err(bad(
                    &format!("cluster.urls[{i}]"),
                    "must be a nats:// or tls:// URL",
                ));
            }
        }
        let stream = self.stream.clone().unwrap_or_else(|| "TIDINGS".to_owned());
        // JetStream stream names: no `.`, `*`, `>`, path separators or whitespace.
        if stream.is_empty()
            || stream.len() > 32
            || !stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "cluster.stream",
                format!("`{stream}` must be 1 to 32 of A-Z a-z 0-9 - _"),
            ));
        }
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 {
            return Err(bad("cluster.replicas", "must be at least 1"));
        }
        if let Some(path) = &self.credentials {
            // Read here, so a missing or malformed file is refused before any port is bound;
            // the reason never quotes the file.
            tidings_cluster_nats::check_credentials_file(path).map_err(|reason| {
                bad(
                    "cluster.credentials",
                    format!("{}: {reason}", path.display()),
                )
            })?;
        }
        Ok(Some(ClusterSettings {
            urls: self.urls.clone(),
            stream,
            replicas,
            token: self.token.clone(),
            credentials: self.credentials.clone(),
        }))
    }
}
