//! Configuration: one raw definition (`RawConfig`) read from a TOML file, `TIDINGS_*`
//! environment variables and flags, layered with the precedence file < env < flags (`layers`),
//! then validated once into the typed `Config`. Invalid configuration is refused before any
//! port is bound. Each subsystem's settings live in their own module.

mod auth;
mod check;
mod cluster;
mod coalesce;
mod endpoints;
mod layers;
mod limits;
mod metrics;
mod schemas;
mod snapshot;
mod store;
mod transport;
mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tidings_auth::{JwtVerifier, StaticToken};
use tidings_core::{Coalescing, Limits, Retention, SnapshotRules};
use tidings_proto::Pattern;

pub use auth::{RawAuth, RawToken, RawTokenTable};
pub use check::{REDACTED, check};
pub use cluster::{ClusterSettings, RawCluster};
pub use coalesce::RawCoalesce;
pub use endpoints::RawEndpoint;
pub use layers::{ServeArgs, layered, load, without_env};
pub use limits::RawLimits;
pub use metrics::{MAX_TOPIC_PREFIXES, MetricsConfig, RawMetrics};
pub use schemas::{RawSchemas, catalogue_of_file};
pub use snapshot::RawSnapshot;
pub use store::{Durability, RawRetention, RawStore};
pub use transport::{RawPoll, RawSse, RawWebSocket};
pub use units::{duration, size};

use crate::endpoint::{Endpoint, SessionNames, TransportOptions};
use units::positive;

/// The default `listen(2)` backlog: the kernel's own default cap (`net.core.somaxconn` is
/// 4096 since Linux 5.4), where tokio's `TcpListener::bind` asks for 128, which a herd of
/// reconnecting clients overflows (issue 16).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

/// Every setting, each optional so the sources can be layered. Field docs are the `--help`;
/// every flag has a `TIDINGS_*` variable and a key in the file (tested in `tests`).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on [default: 127.0.0.1:1700].
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Connections the kernel may hold for each listener before the hub accepts them (the
    /// `listen(2)` backlog), so a herd of clients reconnecting at once is not dropped into
    /// SYN retransmission; the kernel caps it at `net.core.somaxconn` [default: 4096;
    /// 1 to 65535].
    #[arg(long, env = "TIDINGS_LISTEN_BACKLOG", value_name = "N")]
    pub listen_backlog: Option<u32>,
    /// Directory for the event store [default: ./tidings-data].
    #[arg(long, env = "TIDINGS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `tidings=debug` [default: info].
    #[arg(long, env = "TIDINGS_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log line format: `pretty` (text for people) or `json` (one object per line, for log
    /// shippers) [default: pretty].
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Grace period for draining connections at shutdown [default: 10s].
    #[arg(long, env = "TIDINGS_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Most concurrent connections over all listeners, lowered at start to fit the file
    /// descriptor limit [default: 19000].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Longest a write to a client that stopped reading may block before the connection is
    /// dropped [default: 30s].
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<String>,
    /// Most connections open at once from one client address (0: no limit); behind a load
    /// balancer, list it with --trusted-proxy [default: 1024].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// The address of a reverse proxy in front of the hub (repeatable; in the environment,
    /// several separated by spaces): its connections are not limited per address, since it
    /// carries many clients; a stream through it counts against the client its
    /// X-Forwarded-For names [default: none].
    #[arg(
        long = "trusted-proxy",
        env = "TIDINGS_TRUSTED_PROXIES",
        value_name = "IP",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Longest a client may take to send a request head; a slower one is cut off (slowloris).
    /// Also how long a kept-alive non-stream connection may sit idle [default: 10s].
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Most bytes of a request head (request line and headers); a larger one is answered 431
    /// [default: 16KiB; 8KiB to 1MiB].
    #[arg(long, env = "TIDINGS_MAX_HEADER_BYTES", value_name = "SIZE")]
    pub max_header_bytes: Option<String>,
    /// Longest a client may take to send a whole publish body [default: 30s].
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,
    /// How long a client-id session is kept after its client went away; a reconnect with the
    /// same id within it is `resumed` [default: 5m].
    #[arg(long, env = "TIDINGS_SESSION_TTL", value_name = "DURATION")]
    pub session_ttl: Option<String>,
    /// Most client-id sessions held at once; a new one evicts the one idle longest
    /// [default: 100000].
    #[arg(long, env = "TIDINGS_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Name of the event that opens a new session on the built-in `/events` endpoint, and the
    /// default of every `[[endpoints]]` entry [default: subscribed].
    #[arg(long, env = "TIDINGS_SESSION_SUBSCRIBED_EVENT", value_name = "NAME")]
    pub session_subscribed_event: Option<String>,
    /// Name of the event that opens a resumed session on the built-in `/events` endpoint, and
    /// the default of every `[[endpoints]]` entry; rename it when the events you publish use
    /// `resumed` themselves (the download manager's do) [default: resumed].
    #[arg(long, env = "TIDINGS_SESSION_RESUMED_EVENT", value_name = "NAME")]
    pub session_resumed_event: Option<String>,
    /// The topic of a published event that names none, so a publisher may send just a type
    /// and data (the download manager's do) [default: none: `topic` is required].
    #[arg(long, env = "TIDINGS_DEFAULT_TOPIC", value_name = "TOPIC")]
    pub default_topic: Option<String>,
    /// Window over which a drain (shutdown or `POST /admin/drain`) closes streams, evenly
    /// spread, so clients do not reconnect all at once [default: 10s].
    #[arg(long, env = "TIDINGS_DRAIN_SPREAD", value_name = "DURATION")]
    pub drain_spread: Option<String>,
    /// How often client-id sessions are saved while the hub runs, in `durable` and `fast`
    /// mode, so a crash loses at most this much of their progress (0s: saved only at a clean
    /// shutdown) [default: 5s].
    #[arg(long, env = "TIDINGS_SESSION_CHECKPOINT", value_name = "DURATION")]
    pub session_checkpoint: Option<String>,
    /// A `Host` name this hub answers to (repeatable; `*` for any, `*.example.com` for its
    /// subdomains; in the environment, several separated by spaces). Without tokens the hub
    /// answers only loopback names (localhost, *.localhost, 127.0.0.1, [::1]) unless this is
    /// given; with tokens it answers any name unless this is given.
    #[arg(
        long = "allowed-host",
        env = "TIDINGS_ALLOWED_HOSTS",
        value_name = "HOST",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// An origin whose pages may read the answers of `/events`, `/publish` and `/tickets`
    /// with credentials (CORS), e.g. `https://app.example.com` (repeatable; exact origins
    /// only; in the environment, several separated by spaces) [default: none].
    #[arg(
        long = "cors-origin",
        env = "TIDINGS_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ' '
    )]
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// A directory of JSON Schemas, one `<type>.json` per event type, checked on publish to
    /// every topic; a payload that does not match is refused (422 `schema_mismatch`).
    /// Repeatable; in the environment, several separated by `:`. In the file, relative to
    /// the file's directory; `[[schemas]]` scopes a directory to some topics [default: none].
    #[arg(
        long = "schema-dir",
        env = "TIDINGS_SCHEMA_DIRS",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    #[serde(default)]
    pub schema_dirs: Vec<PathBuf>,

    #[command(flatten)]
    #[serde(default)]
    pub store: RawStore,
    #[command(flatten)]
    #[serde(default)]
    pub retention: RawRetention,
    #[command(flatten)]
    #[serde(default)]
    pub snapshot: RawSnapshot,
    #[command(flatten)]
    #[serde(default)]
    pub sse: RawSse,
    #[command(flatten)]
    #[serde(default)]
    pub websocket: RawWebSocket,
    #[command(flatten)]
    #[serde(default)]
    pub poll: RawPoll,
    #[command(flatten)]
    #[serde(default)]
    pub limits: RawLimits,
    #[command(flatten)]
    #[serde(default)]
    pub auth: RawAuth,
    #[command(flatten)]
    #[serde(default)]
    pub metrics: RawMetrics,
    #[command(flatten)]
    #[serde(default)]
    pub cluster: RawCluster,
    /// `[[endpoints]]`: extra subscribe routes (file only).
    #[arg(skip)]
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    /// `[[coalesce]]`: coalescing rules (file only).
    #[arg(skip)]
    #[serde(default)]
    pub coalesce: Vec<RawCoalesce>,
    /// `[[schemas]]`: JSON Schemas for the events of some topics (file only).
    #[arg(skip)]
    #[serde(default)]
    pub schemas: Vec<RawSchemas>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The `listen(2)` backlog of every listener (the kernel caps it at
    /// `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Store directory.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Drain period at shutdown.
    pub shutdown_grace: Duration,
    /// Most concurrent connections (over all listeners; lowered at start to fit the
    /// process's file descriptor limit).
    pub max_connections: usize,
    /// Most connections per client address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Reverse proxies, whose connections are not limited per address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most bytes of a request head.
    pub max_header_bytes: usize,
    /// Longest a request head may take to arrive.
    pub header_timeout: Duration,
    /// Longest a publish body may take to arrive.
    pub body_timeout: Duration,
    /// Most bytes of publish bodies held at once.
    pub max_inflight_body_bytes: usize,
    /// `Host` names the hub answers to (empty: loopback names without tokens, any with).
    pub allowed_hosts: Vec<String>,
    /// CORS for `/events`, `/publish` and `/tickets`.
    pub cors: crate::endpoint::Cors,
    /// Durability mode.
    pub durability: Durability,
    /// Bytes of the store's page cache (durable and fast mode).
    pub store_cache_size: usize,
    /// History bounds.
    pub retention: Retention,
    /// What the latest-per-key table keeps.
    pub snapshot: SnapshotRules,
    /// Transport settings (SSE, WebSocket, long-poll, write timeout).
    pub transport: TransportOptions,
    /// Subscribe endpoints: the built-in `/events` first, then `[[endpoints]]`.
    pub endpoints: Vec<Endpoint>,
    /// Engine and HTTP limits.
    pub limits: Limits,
    /// `[[coalesce]]` rules.
    pub coalesce: Coalescing,
    /// Static tokens (empty, and no JWT keys: anonymous, loopback only).
    pub tokens: Vec<StaticToken>,
    /// Window a drain spreads its closes over.
    pub drain_spread: Duration,
    /// The topic of a published event that names none.
    pub default_topic: Option<tidings_proto::Topic>,
    /// How often sessions are saved while running (`None`: only at a clean shutdown).
    pub session_checkpoint: Option<Duration>,
    /// JWT verification (`None`: JWTs are not accepted).
    pub jwt: Option<JwtVerifier>,
    /// `/metrics`: its own listener, its token, the topic prefixes broken out.
    pub metrics: MetricsConfig,
    /// Where credentials come from (ticket TTL, cookie).
    pub credentials: crate::credential::CredentialOptions,
    /// JSON Schemas checked on publish (empty: none).
    pub schemas: crate::schema::Catalogue,
    /// Cluster mode over NATS JetStream (`None`: this node runs alone on its store).
    pub cluster: Option<ClusterSettings>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// A configuration error: which setting, and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The setting, as named in the file (`retention.max_age`).
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

fn bad(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        reason: reason.into(),
    }
}

fn patterns(setting: &str, raw: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    raw.iter()
        .map(|p| Pattern::parse(p).map_err(|e| bad(setting, format!("`{p}` {e}"))))
        .collect()
}

impl RawConfig {
    /// Reads a TOML file; an unknown key is an error naming it.
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| bad("config file", e.to_string().trim().to_owned()))
    }

    /// Checks every setting and produces the typed configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or("127.0.0.1:1700");
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            bad(
                "listen",
                format!("`{listen_text}` is not an IP:port address"),
            )
        })?;
        let listen_backlog = self.listen_backlog.unwrap_or(DEFAULT_LISTEN_BACKLOG);
        if !(1..=65_535).contains(&listen_backlog) {
            return Err(bad("listen_backlog", "must be between 1 and 65535"));
        }
        let durability = self.store.validate()?;
        let cluster = self.cluster.validate()?;
        let store_cache_size = self.store.cache_size()?;
        let retention = self.retention.validate()?;
        let mut limits = self.limits.validate()?;
        let (snapshot, snapshot_max_bytes) = self.snapshot.validate()?;
        limits.snapshot_max_bytes = snapshot_max_bytes;
        let ttl = units::nonzero("session_ttl", self.session_ttl.as_deref(), "5m")?;
        limits.session_ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        limits.max_sessions = positive("max_sessions", self.max_sessions, 100_000)?;
        let max_inflight_body_bytes = self.limits.max_inflight_body_bytes(&limits)?;
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if host.is_empty()
                || host.contains(['/', ' ', '@'])
                || host.chars().any(|c| c.is_control())
            {
                return Err(bad(
                    &format!("allowed_hosts[{i}]"),
                    format!("`{host}` is not a host name"),
                ));
            }
        }
        let mut credentials = self.auth.credentials()?;
        (credentials.publish_rate, credentials.publish_burst) =
            self.limits.publish_rate(&limits)?;
        credentials.max_streams = self.limits.max_streams_per_credential.unwrap_or(10_000);
        let max_header_bytes = size(
            "max_header_bytes",
            self.max_header_bytes.as_deref(),
            "16KiB",
        )?;
        if !(8 << 10..=1 << 20).contains(&max_header_bytes) {
            return Err(bad("max_header_bytes", "must be between 8KiB and 1MiB"));
        }
        let (tokens, jwt) = self.auth.validate()?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                ip.parse::<std::net::IpAddr>().map_err(|_| {
                    bad(
                        &format!("trusted_proxies[{i}]"),
                        format!("`{ip}` is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let open = tokens.is_empty() && jwt.is_none();
        let metrics = self.metrics.validate()?;
        let log_format = match self.log_format.as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "log_format",
                    format!("`{other}` is not pretty or json"),
                ));
            }
        };
        let transport = transport::options(
            &self.sse,
            &self.websocket,
            &self.poll,
            self.write_timeout.as_deref(),
        )?;
        let cors = endpoints::cors("cors_origins", self.cors_origins)?;
        let schemas = schemas::catalogue(&self.schemas, &self.schema_dirs)?;
        let session_names = endpoints::session_names(
            "",
            self.session_subscribed_event,
            self.session_resumed_event,
            SessionNames::default(),
        )?;
        let endpoints = endpoints::endpoints(
            &self.websocket.allowed_origins,
            &cors,
            self.endpoints,
            listen,
            open,
            &session_names,
        )?;
        if open && !listen.ip().is_loopback() {
            return Err(bad(
                "listen",
                format!(
                    "{listen} is not a loopback address and no auth tokens are configured; \
                     add tokens (--token or [[auth.tokens]]) or JWT keys, or listen on 127.0.0.1"
                ),
            ));
        }
        Ok(Config {
            listen,
            listen_backlog,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./tidings-data")),
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            log_format,
            shutdown_grace: duration("shutdown_grace", self.shutdown_grace.as_deref(), "10s")?,
            max_connections: positive("max_connections", self.max_connections, 19_000)?,
            max_connections_per_ip: self.max_connections_per_ip.unwrap_or(1024),
            max_header_bytes,
            trusted_proxies,
            header_timeout: units::nonzero(
                "header_timeout",
                self.header_timeout.as_deref(),
                "10s",
            )?,
            body_timeout: units::nonzero("body_timeout", self.body_timeout.as_deref(), "30s")?,
            max_inflight_body_bytes,
            allowed_hosts: self.allowed_hosts,
            cors,
            durability,
            store_cache_size,
            retention,
            snapshot,
            transport,
            endpoints,
            limits,
            coalesce: coalesce::rules(self.coalesce)?,
            tokens,
            drain_spread: duration("drain_spread", self.drain_spread.as_deref(), "10s")?,
            default_topic: self
                .default_topic
                .map(|t| {
                    tidings_proto::Topic::new(&t)
                        .map_err(|e| bad("default_topic", format!("`{t}` {e}")))
                })
                .transpose()?,
            session_checkpoint: Some(duration(
                "session_checkpoint",
                self.session_checkpoint.as_deref(),
                "5s",
            )?)
            .filter(|d| !d.is_zero()),
            jwt,
            metrics,
            credentials,
            schemas,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests;
