//! Configuration: one raw definition (`RawConfig`) read from flags, `TIDINGS_*` environment
//! variables and a TOML file, merged with the precedence file < env < flags, then validated
//! once into the typed `Config`. Invalid configuration is refused before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tidings_auth::{Grant, StaticToken};
use tidings_core::{Limits, Retention};
use tidings_proto::Pattern;

use crate::endpoint::{Endpoint, Origins, TransportOptions, Transports};
use crate::transport::frame::Shape;

/// Every setting, each optional so the sources can be merged. Field docs are the `--help`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on [default: 127.0.0.1:1700].
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the event store [default: ./tidings-data].
    #[arg(long, env = "TIDINGS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `tidings=debug` [default: info].
    #[arg(long, env = "TIDINGS_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Grace period for draining connections at shutdown [default: 10s].
    #[arg(long, env = "TIDINGS_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Most concurrent connections [default: 19000].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Longest a write to a client that stopped reading may block before the connection is
    /// dropped [default: 30s].
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<String>,

    #[command(flatten)]
    #[serde(default)]
    pub store: RawStore,
    #[command(flatten)]
    #[serde(default)]
    pub retention: RawRetention,
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
    /// `[[endpoints]]`: extra subscribe routes (file only).
    #[arg(skip)]
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

/// `[websocket]`, for the built-in `/events` endpoint and every other one.
#[derive(Debug, Clone, Default, Args, Deserialize)]
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
#[derive(Debug, Clone, Default, Args, Deserialize)]
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

/// `[[endpoints]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Name for logs and errors.
    pub name: String,
    /// Its own `IP:port`; omit to serve on the main listener.
    #[serde(default)]
    pub listen: Option<String>,
    /// Route path [default: `/`].
    #[serde(default)]
    pub path: Option<String>,
    /// A fixed selector clients may only narrow.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// `event` or `envelope` [default: event].
    #[serde(default)]
    pub shape: Option<String>,
    /// Query parameter that may carry the token.
    #[serde(default)]
    pub query_token: Option<String>,
    /// WebSocket Origin allow-list (`*` for any) [default: same origin].
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Any of `sse`, `websocket`, `ndjson`, `poll` [default: all].
    #[serde(default)]
    pub transports: Option<Vec<String>>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
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
#[derive(Debug, Clone, Default, Args, Deserialize)]
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

/// `[sse]`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
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

/// `[limits]`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
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
    /// Bytes queued for one subscriber before it is told to reconnect [default: 4MiB].
    #[arg(
        long = "subscriber-queue-bytes",
        env = "TIDINGS_SUBSCRIBER_QUEUE_BYTES",
        value_name = "SIZE"
    )]
    pub subscriber_queue_bytes: Option<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// A static token: `SECRET:name=NAME;publish=SEL,SEL;subscribe=SEL` (repeatable; in the
    /// environment, several separated by spaces). `name=` is what logs show [default: token-N].
    #[arg(
        long = "token",
        env = "TIDINGS_TOKENS",
        value_name = "SPEC",
        value_delimiter = ' '
    )]
    #[serde(skip)]
    pub token_specs: Vec<String>,
    /// `[[auth.tokens]]` tables in the file.
    #[arg(skip)]
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// `[[auth.tokens]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// The bearer secret.
    pub token: String,
    /// A name for logs [default: token-N].
    #[serde(default)]
    pub name: Option<String>,
    /// Selectors it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Selectors it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Store directory.
    pub data_dir: PathBuf,
    /// Log filter.
    pub log: String,
    /// Drain period at shutdown.
    pub shutdown_grace: Duration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Durability mode.
    pub durability: Durability,
    /// Bytes of the store's page cache (durable and fast mode).
    pub store_cache_size: usize,
    /// History bounds.
    pub retention: Retention,
    /// Transport settings (SSE, WebSocket, long-poll, write timeout).
    pub transport: TransportOptions,
    /// Subscribe endpoints: the built-in `/events` first, then `[[endpoints]]`.
    pub endpoints: Vec<Endpoint>,
    /// Engine and HTTP limits.
    pub limits: Limits,
    /// Static tokens (empty: anonymous, loopback only).
    pub tokens: Vec<StaticToken>,
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

macro_rules! merge_fields {
    ($hi:expr, $lo:expr, $($field:ident),*) => {
        $( if $hi.$field.is_none() { $hi.$field = $lo.$field.take(); } )*
    };
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| bad("config file", e.to_string().trim().to_owned()))
    }

    /// Fills every unset field of `self` (flags and env) from `file`.
    pub fn merge_under(mut self, mut file: RawConfig) -> RawConfig {
        merge_fields!(
            self,
            file,
            listen,
            data_dir,
            log,
            shutdown_grace,
            max_connections,
            write_timeout
        );
        merge_fields!(
            self.websocket,
            file.websocket,
            ping_interval,
            pong_timeout,
            max_message_bytes
        );
        if self.websocket.allowed_origins.is_empty() {
            self.websocket.allowed_origins = file.websocket.allowed_origins;
        }
        merge_fields!(self.poll, file.poll, timeout);
        self.endpoints = file.endpoints;
        merge_fields!(
            self.store,
            file.store,
            durability,
            fsync_interval,
            cache_size
        );
        merge_fields!(
            self.retention,
            file.retention,
            max_events,
            max_bytes,
            max_age
        );
        merge_fields!(self.sse, file.sse, keepalive, retry);
        merge_fields!(
            self.limits,
            file.limits,
            max_body_bytes,
            max_data_bytes,
            max_batch_events,
            max_topics,
            subscriber_queue,
            subscriber_queue_bytes
        );
        if self.auth.token_specs.is_empty() {
            self.auth.tokens = file.auth.tokens;
        }
        self
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
        let durability = match self.store.durability.as_deref().unwrap_or("durable") {
            "durable" => Durability::Durable,
            "fast" => Durability::Fast {
                interval: duration(
                    "store.fsync_interval",
                    self.store.fsync_interval.as_deref(),
                    "1s",
                )?,
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
        let store_cache_size = size(
            "store.cache_size",
            self.store.cache_size.as_deref(),
            "64MiB",
        )?;
        let off_if_zero = |n: u64| (n > 0).then_some(n);
        let max_age = duration("retention.max_age", self.retention.max_age.as_deref(), "7d")?;
        let retention = Retention {
            max_events: off_if_zero(self.retention.max_events.unwrap_or(1_000_000)),
            max_bytes: off_if_zero(size(
                "retention.max_bytes",
                self.retention.max_bytes.as_deref(),
                "1GiB",
            )? as u64),
            max_age: (!max_age.is_zero()).then_some(max_age),
        };
        let keepalive = duration("sse.keepalive", self.sse.keepalive.as_deref(), "30s")?;
        let retry = duration("sse.retry", self.sse.retry.as_deref(), "2s")?;
        let defaults = Limits::default();
        let positive = |setting: &str, v: Option<usize>, d: usize| match v {
            Some(0) => Err(bad(setting, "must be greater than 0")),
            Some(n) => Ok(n),
            None => Ok(d),
        };
        let limits = Limits {
            max_body_bytes: size(
                "limits.max_body_bytes",
                self.limits.max_body_bytes.as_deref(),
                "1MiB",
            )?,
            max_data_bytes: size(
                "limits.max_data_bytes",
                self.limits.max_data_bytes.as_deref(),
                "64KiB",
            )?,
            max_batch_events: positive(
                "limits.max_batch_events",
                self.limits.max_batch_events,
                defaults.max_batch_events,
            )?,
            max_patterns: positive(
                "limits.max_topics",
                self.limits.max_topics,
                defaults.max_patterns,
            )?,
            subscriber_queue_events: positive(
                "limits.subscriber_queue",
                self.limits.subscriber_queue,
                defaults.subscriber_queue_events,
            )?,
            subscriber_queue_bytes: size(
                "limits.subscriber_queue_bytes",
                self.limits.subscriber_queue_bytes.as_deref(),
                "4MiB",
            )?,
            ..defaults
        };
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
        let mut tokens = Vec::new();
        for (i, spec) in self.auth.token_specs.iter().enumerate() {
            tokens
                .push(parse_token_spec(spec, i).map_err(|r| bad(&format!("auth.token[{i}]"), r))?);
        }
        for (i, raw) in self.auth.tokens.into_iter().enumerate() {
            let setting = format!("auth.tokens[{i}]");
            if raw.token.len() < 8 {
                return Err(bad(&setting, "token must be at least 8 characters"));
            }
            let grant = Grant {
                name: raw.name.unwrap_or_else(|| format!("token-{i}")),
                publish: patterns(&format!("{setting}.publish"), &raw.publish)?,
                subscribe: patterns(&format!("{setting}.subscribe"), &raw.subscribe)?,
            };
            tokens.push(StaticToken {
                secret: raw.token,
                grant,
            });
        }
        let transport = TransportOptions {
            keepalive: (!keepalive.is_zero()).then_some(keepalive),
            retry,
            ws_ping_interval: nonzero(
                "websocket.ping_interval",
                self.websocket.ping_interval.as_deref(),
                "25s",
            )?,
            ws_pong_timeout: nonzero(
                "websocket.pong_timeout",
                self.websocket.pong_timeout.as_deref(),
                "10s",
            )?,
            ws_max_message_bytes: size(
                "websocket.max_message_bytes",
                self.websocket.max_message_bytes.as_deref(),
                "64KiB",
            )?,
            poll_timeout: nonzero("poll.timeout", self.poll.timeout.as_deref(), "25s")?,
            write_timeout: nonzero("write_timeout", self.write_timeout.as_deref(), "30s")?,
        };
        let mut endpoints = vec![Endpoint::default_events(origins(
            &self.websocket.allowed_origins,
        ))];
        for (i, raw) in self.endpoints.into_iter().enumerate() {
            let endpoint = endpoint(&format!("endpoints[{i}]"), raw)?;
            // Port 0 asks the OS for a free port, so it never clashes.
            let same_socket = |a: Option<SocketAddr>, b: Option<SocketAddr>| {
                a == b && a.is_none_or(|a| a.port() != 0)
            };
            let clash = endpoints.iter().find(|e| {
                e.name == endpoint.name
                    || (same_socket(e.listen, endpoint.listen) && e.path == endpoint.path)
            });
            if let Some(other) = clash {
                return Err(bad(
                    &format!("endpoints[{i}]"),
                    format!("name or listen+path clashes with endpoint `{}`", other.name),
                ));
            }
            if endpoint.listen.is_none()
                && ["/publish", "/healthz", "/readyz"].contains(&endpoint.path.as_str())
            {
                return Err(bad(
                    &format!("endpoints[{i}].path"),
                    format!("`{}` is a built-in route", endpoint.path),
                ));
            }
            if endpoint.listen == Some(listen) && listen.port() != 0 {
                return Err(bad(
                    &format!("endpoints[{i}].listen"),
                    "is the main listen address; omit it to use the main listener",
                ));
            }
            if let Some(addr) = endpoint.listen
                && tokens.is_empty()
                && !addr.ip().is_loopback()
            {
                return Err(bad(
                    &format!("endpoints[{i}].listen"),
                    format!("{addr} is not a loopback address and no auth tokens are configured"),
                ));
            }
            endpoints.push(endpoint);
        }
        if tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(bad(
                "listen",
                format!(
                    "{listen} is not a loopback address and no auth tokens are configured; \
                     add tokens (--token or [[auth.tokens]]) or listen on 127.0.0.1"
                ),
            ));
        }
        Ok(Config {
            listen,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./tidings-data")),
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            shutdown_grace: duration("shutdown_grace", self.shutdown_grace.as_deref(), "10s")?,
            max_connections: positive("max_connections", self.max_connections, 19_000)?,
            durability,
            store_cache_size,
            retention,
            transport,
            endpoints,
            limits,
            tokens,
        })
    }
}

fn nonzero(setting: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let d = duration(setting, value, default)?;
    if d.is_zero() {
        return Err(bad(setting, "must be greater than 0"));
    }
    Ok(d)
}

fn origins(list: &[String]) -> Origins {
    if list.is_empty() {
        Origins::SameOrigin
    } else if list.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        Origins::List(list.to_vec())
    }
}

fn endpoint(setting: &str, raw: RawEndpoint) -> Result<Endpoint, ConfigError> {
    if raw.name.is_empty() || raw.name.chars().any(|c| c.is_control()) {
        return Err(bad(&format!("{setting}.name"), "must be a non-empty name"));
    }
    let listen = raw
        .listen
        .map(|l| {
            l.parse().map_err(|_| {
                bad(
                    &format!("{setting}.listen"),
                    format!("`{l}` is not an IP:port address"),
                )
            })
        })
        .transpose()?;
    let path = raw.path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.contains(['{', '}', '*', '?', '#']) {
        return Err(bad(
            &format!("{setting}.path"),
            format!("`{path}` must start with / and contain no {{ }} * ? #"),
        ));
    }
    let topics = raw
        .topics
        .map(|t| patterns(&format!("{setting}.topics"), &t))
        .transpose()?;
    if topics.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad(
            &format!("{setting}.topics"),
            "must name at least one selector",
        ));
    }
    let shape = match raw.shape.as_deref().unwrap_or("event") {
        "event" => Shape::Event,
        "envelope" => Shape::Envelope,
        other => {
            return Err(bad(
                &format!("{setting}.shape"),
                format!("`{other}` is not event or envelope"),
            ));
        }
    };
    let transports = match raw.transports {
        None => Transports::ALL,
        Some(list) => {
            let mut t = Transports {
                sse: false,
                websocket: false,
                ndjson: false,
                poll: false,
            };
            for name in &list {
                match name.as_str() {
                    "sse" => t.sse = true,
                    "websocket" => t.websocket = true,
                    "ndjson" => t.ndjson = true,
                    "poll" => t.poll = true,
                    other => {
                        return Err(bad(
                            &format!("{setting}.transports"),
                            format!("`{other}` is not one of sse, websocket, ndjson, poll"),
                        ));
                    }
                }
            }
            if list.is_empty() {
                return Err(bad(
                    &format!("{setting}.transports"),
                    "must name at least one transport",
                ));
            }
            t
        }
    };
    Ok(Endpoint {
        name: raw.name,
        listen,
        path,
        topics,
        shape,
        query_token: raw.query_token.filter(|q| !q.is_empty()),
        origins: origins(&raw.allowed_origins),
        transports,
    })
}

fn patterns(setting: &str, raw: &[String]) -> Result<Vec<Pattern>, ConfigError> {
    raw.iter()
        .map(|p| Pattern::parse(p).map_err(|e| bad(setting, format!("`{p}` {e}"))))
        .collect()
}

/// `SECRET:name=NAME;publish=SEL,SEL;subscribe=SEL`, the `index`th `--token`. The grant's
/// name (what logs show) is the `name=` part, else `token-<index>`: never derived from the
/// secret.
fn parse_token_spec(spec: &str, index: usize) -> Result<StaticToken, String> {
    let (secret, rights) = spec
        .split_once(':')
        .ok_or("expected SECRET:publish=SEL,...;subscribe=SEL,...")?;
    if secret.len() < 8 {
        return Err("token must be at least 8 characters".into());
    }
    let mut grant = Grant {
        name: format!("token-{index}"),
        publish: vec![],
        subscribe: vec![],
    };
    for part in rights.split(';').filter(|p| !p.is_empty()) {
        let (right, sels) = part
            .split_once('=')
            .ok_or(format!("`{part}` is not RIGHT=SEL,..."))?;
        let list = match right {
            "name" if !sels.is_empty() && !sels.chars().any(char::is_control) => {
                grant.name = sels.to_owned();
                continue;
            }
            "name" => return Err("name: must be non-empty text without control characters".into()),
            "publish" | "pub" => &mut grant.publish,
            "subscribe" | "sub" => &mut grant.subscribe,
            other => return Err(format!("`{other}` is not name, publish or subscribe")),
        };
        for sel in sels.split(',').filter(|s| !s.is_empty()) {
            list.push(Pattern::parse(sel).map_err(|e| format!("`{sel}` {e}"))?);
        }
    }
    Ok(StaticToken {
        secret: secret.to_owned(),
        grant,
    })
}

/// Splits `text` into its leading number and the unit after it, and scales the number by the
/// unit's factor from `units`; `example` goes into the message when either part is wrong.
fn scaled(
    setting: &str,
    text: &str,
    units: &[(&str, u64)],
    example: &str,
) -> Result<u64, ConfigError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let wrong = || bad(setting, format!("`{text}` is not {example}"));
    let n: u64 = num.parse().map_err(|_| wrong())?;
    let factor = units
        .iter()
        .find(|(name, _)| *name == unit.trim())
        .map(|(_, f)| *f)
        .ok_or_else(wrong)?;
    n.checked_mul(factor)
        .ok_or_else(|| bad(setting, format!("`{text}` is too large")))
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`.
pub fn duration(
    setting: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or(default).trim();
    let units = [
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    let ms = scaled(
        setting,
        text,
        &units,
        "a duration like 30s, 500ms, 5m, 2h, 7d",
    )?;
    Ok(Duration::from_millis(ms))
}

/// Parses `1048576`, `64KiB`, `1MiB`, `1GiB`, `10KB`, `5MB`.
pub fn size(setting: &str, value: Option<&str>, default: &str) -> Result<usize, ConfigError> {
    let text = value.unwrap_or(default).trim();
    let units = [
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("KB", 1000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];
    let bytes = scaled(setting, text, &units, "a size like 65536, 64KiB, 1MiB")?;
    usize::try_from(bytes).map_err(|_| bad(setting, format!("`{text}` is too large")))
}

#[cfg(test)]
mod tests;
