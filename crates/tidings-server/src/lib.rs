//! The Tidings server: the only crate that speaks HTTP. `App::build` turns a validated
//! `Config` into running pieces (store, hub, authorizer); `App::run` serves a listener until
//! the shutdown future resolves, then drains.
//!
//! # Layout
//! - `config`: `RawConfig` (flags, env, TOML) → `Config`.
//! - `http`: routes and handlers (`router(state)` is testable without a socket).
//! - `endpoint`: configured subscribe routes and transport settings.
//! - `credential`: where a request's credential comes from (header, ticket, query, cookie),
//!   the CSRF rule for publishes, and the one-time connect tickets.
//! - `transport`: per-connection encoders (SSE, NDJSON, WebSocket, long-poll).
//! - `rate`: the publish token bucket per credential.
//! - `schema`: typed events: the JSON Schema catalogue checked on publish, and TypeScript
//!   types generated from it.
//! - `listener`: the accept loop, the process-wide and per-address connection limits and
//!   graceful drain;
//!   `lean`: the lean HTTP/1 path for streaming subscriptions; `io`: write-stall timeout and
//!   replayed prefixes, and the lingering close; `refusal`: answers to connections over the
//!   limit or during the drain.
//! - `embed`: the hub inside an application's own process and axum `Router` (`Embedded`).
//! - `fuzzing`: entry points for the fuzz targets (hidden, not an API).
//!
//! # Embedding
//!
//! An application can run the hub in its own process: [`Embedded`] is built from a
//! [`Config`] (fill a [`RawConfig`] and `validate` it), publishes in-process with the same
//! checks and ids as `POST /publish`, hands out the publish and subscribe routes for the
//! application's `Router` under a prefix, and shuts down on the application's signal. See
//! the [`embed`] module and `examples/embedded.rs`.

mod ack;
pub mod activity;
mod coalesce;
pub mod config;
pub mod credential;
pub mod embed;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod io;
mod lean;
mod listener;
mod metrics;
mod rate;
mod refusal;
pub mod schema;
mod state;
mod tracked;
mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tidings_auth::Authorizer;
use tidings_core::{DynStore, Hub, MemoryStore};
use tidings_proto::Epoch;
use tokio::net::TcpListener;

use crate::endpoint::Endpoint;

pub use config::{Config, ConfigError, Durability, RawConfig};
pub use credential::{CredentialOptions, Credentials};
pub use embed::{EmbedError, Embedded, Outgoing};
use http::router::lean_routes;
pub use http::router::{endpoint_router, metrics_router, router};
pub use metrics::Metrics;
pub use state::{AppState, Edge, SYSTEM_TYPES};
pub use tracked::Observers;
pub use transport::frame::Shape;
pub use transport::ws::{
    CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_INVALID_DATA, CLOSE_PING_TIMEOUT, CLOSE_PROTOCOL,
    CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED, CLOSE_TOO_BIG,
};

/// The bound sockets: the main listener and one per endpoint with its own port.
#[derive(Debug)]
pub struct Listeners {
    /// The main listener (publish, health, endpoints without their own port).
    pub main: TcpListener,
    /// `(endpoint name, listener)` for endpoints with their own port.
    pub endpoints: Vec<(String, TcpListener)>,
    /// The listener serving only `/metrics` (`metrics.listen`), if configured.
    pub metrics: Option<TcpListener>,
}

/// A listening socket on `addr` with a `listen(2)` backlog of `backlog` (the kernel caps it at
/// `net.core.somaxconn`). `TcpListener::bind` would ask for 128, which a herd of clients
/// reconnecting at once overflows; the rest is as `bind` does it (`SO_REUSEADDR`, so a
/// restarted hub gets its port back while old connections linger in `TIME_WAIT`).
fn listen_on(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(backlog)?;
    if let Err(e) = tidings_sys::defer_accept(&listener, DEFER_ACCEPT_SECS) {
        tracing::debug!(message = "Could not defer accepting to the first bytes.", error = %e);
    }
    Ok(listener)
}

/// How long the kernel keeps a connection that has sent nothing before handing it to
/// `accept` anyway (`tidings_sys::defer_accept`).
const DEFER_ACCEPT_SECS: u32 = 1;

/// A built server, ready to run.
#[derive(Debug)]
pub struct App {
    state: AppState,
    config: Config,
}

impl App {
    /// Opens the store (or, with `[cluster]`, joins the cluster) and builds the hub.
    pub async fn open(config: Config) -> anyhow::Result<App> {
        let Some(cluster) = &config.cluster else {
            return App::build(config);
        };
        let nats =
            tidings_cluster_nats::NatsCluster::connect(&tidings_cluster_nats::ClusterConfig {
                urls: cluster.urls.clone(),
                stream: cluster.stream.clone(),
                replicas: cluster.replicas,
                token: cluster.token.clone(),
                credentials: cluster.credentials.clone(),
                retention: config.retention.clone(),
                session_ttl: std::time::Duration::from_millis(config.limits.session_ttl_ms),
                snapshot: config.snapshot.clone(),
            })
            .await
            .with_context(|| format!("join the cluster on stream {}", cluster.stream))?;
        let app = App::assemble(
            config,
            Arc::clone(&nats) as DynStore,
            Some(Arc::clone(&nats) as tidings_core::DynBus),
        );
        nats.start(app.state.hub.clone());
        Ok(app)
    }

    /// Opens the store and builds the hub (a node alone; `open` also joins a cluster).
    pub fn build(config: Config) -> anyhow::Result<App> {
        if config.cluster.is_some() {
            anyhow::bail!("cluster mode needs the runtime: build the app with `App::open`");
        }
        let store: DynStore = match config.durability {
            Durability::Memory => Arc::new(
                MemoryStore::new(random_epoch()?, config.retention.clone())
                    .with_snapshot_rules(config.snapshot.clone()),
            ),
            Durability::Durable | Durability::Fast { .. } => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("create data directory {}", config.data_dir.display())
                })?;
                let durability = match config.durability {
                    Durability::Fast { interval } => tidings_store_redb::Durability::Fast {
                        fsync_interval: interval,
                    },
                    _ => tidings_store_redb::Durability::Durable,
                };
                let store = tidings_store_redb::RedbStore::open(tidings_store_redb::StoreConfig {
                    path: config.data_dir.join("events.redb"),
                    durability,
                    retention: config.retention.clone(),
                    cache_size: config.store_cache_size,
                    snapshot: config.snapshot.clone(),
                })
                .with_context(|| {
                    format!("open the event store in {}", config.data_dir.display())
                })?;
                Arc::new(store)
            }
        };
        Ok(App::assemble(config, store, None))
    }

    /// The hub over `store` (and, in cluster mode, `bus`), and everything around it.
    fn assemble(config: Config, store: DynStore, bus: Option<tidings_core::DynBus>) -> App {
        let metrics = Metrics::new(&config.metrics.topic_prefixes);
        let store = metrics::TimedStore::wrap(store, metrics.commit_latency.clone());
        let clock = tidings_core::clock::system();
        let hub = match bus {
            None => {
                Hub::with_coalescing(store, config.limits.clone(), clock, config.coalesce.clone())
            }
            Some(bus) => Hub::clustered(
                store,
                bus,
                config.limits.clone(),
                clock,
                config.coalesce.clone(),
            ),
        };
        let metrics = metrics.with_hub(&hub);
        let mut edge = Edge::new(
            config.body_timeout,
            config.max_inflight_body_bytes,
            config.allowed_hosts.clone(),
        )
        .with_cors(config.cors.clone())
        .with_drain_spread(config.drain_spread)
        .with_default_topic(config.default_topic.clone())
        .with_address_limit(
            config.max_connections_per_ip,
            config.trusted_proxies.clone(),
        )
        .with_schemas(config.schemas.clone());
        for e in &config.endpoints {
            edge = edge.reserve_on(e.reserved_names(), e.scope());
        }
        let state = AppState {
            hub,
            auth: Arc::new(Authorizer::new(config.tokens.clone()).with_jwt(config.jwt.clone())),
            transport: config.transport,
            edge,
            observers: Arc::new(
                Observers::new(metrics)
                    .with_metrics_token(config.metrics.token.clone())
                    .with_store_setup(&config.durability, &config.retention),
            ),
            credentials: Credentials::new(
                config.credentials.clone(),
                tidings_core::clock::system(),
            ),
        };
        App { state, config }
    }

    /// The shared state (for in-process use and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Binds the main listen address and every endpoint's own address, each with the
    /// configured backlog (`listen_backlog`).
    pub async fn bind(&self) -> anyhow::Result<Listeners> {
        let listen = self.config.listen;
        let backlog = self.config.listen_backlog;
        let main = listen_on(listen, backlog).with_context(|| format!("listen on {listen}"))?;
        let mut endpoints = Vec::new();
        let mut bound: Vec<SocketAddr> = Vec::new();
        for endpoint in &self.config.endpoints {
            if let Some(addr) = endpoint.listen {
                // Endpoints on one address share its listener (the camera server's two
                // routes on 8080); port 0 asks for a fresh port each time.
                if addr.port() != 0 && bound.contains(&addr) {
                    continue;
                }
                let l = listen_on(addr, backlog).with_context(|| {
                    format!("listen on {addr} for endpoint `{}`", endpoint.name)
                })?;
                bound.push(addr);
                endpoints.push((endpoint.name.clone(), l));
            }
        }
        let metrics = match self.config.metrics.listen {
            None => None,
            Some(addr) => Some(
                listen_on(addr, backlog)
                    .with_context(|| format!("listen on {addr} for metrics"))?,
            ),
        };
        Ok(Listeners {
            main,
            endpoints,
            metrics,
        })
    }

    /// Serves `listeners` until `shutdown` resolves; then refuses new work, closes every
    /// stream with `reconnect-required`, drains connections for up to the grace period and
    /// flushes the store.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let App { state, config } = self;
        let hub = state.hub.clone();
        let addr = listeners
            .main
            .local_addr()
            .context("read the listening address")?;
        let stats = hub.stats();
        tracing::info!(
            message = "Tidings is listening.",
            %addr,
            durability = ?config.durability,
            epoch = %stats.epoch,
            head = stats.head,
        );
        if state.auth.is_open() {
            tracing::warn!(
                message = "No auth tokens are configured: anyone who can reach this address may \
                           publish and subscribe. Listening on loopback only.",
                %addr,
            );
        }
        let options = listener::Options {
            grace: config.shutdown_grace,
            write_timeout: config.transport.write_timeout,
            header_timeout: config.header_timeout,
            max_header_bytes: config.max_header_bytes,
        };
        let nofile = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _hard)) => Some(soft),
            Err(e) => {
                tracing::warn!(message = "Could not read the file descriptor limit.", error = %e);
                None
            }
        };
        let per_address = state.edge.per_address().clone();
        let limit = listener::ConnectionLimit::fit(config.max_connections, nofile, per_address);
        if limit.max < config.max_connections {
            tracing::warn!(
                message = "Connection limit lowered to fit the file descriptor limit.",
                max_connections = limit.max,
                configured = config.max_connections,
                fd_limit = nofile,
            );
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                // An error means the sender is gone: stop as well.
                if rx.wait_for(|s| *s).await.is_err() {
                    tracing::debug!(message = "Stop signal dropped.");
                }
            }
        };
        let mut servers = Vec::new();
        let clock = tidings_core::clock::system();
        activity::sample_now(&hub, &state.observers.activity, &clock);
        let windows = coalesce::spawn(hub.clone());
        let main_router = router(state.clone(), &config.endpoints);
        let main_lean = lean_routes(
            &state,
            config.endpoints.iter().filter(|e| e.listen.is_none()),
        );
        servers.push(tokio::spawn(listener::serve(
            listeners.main,
            http::front::Front::with_publish(main_router, state.clone()),
            main_lean,
            options,
            limit.clone(),
            stopped(),
        )));
        for (name, l) in listeners.endpoints {
            let Some(endpoint) = config.endpoints.iter().find(|e| e.name == name) else {
                anyhow::bail!("no endpoint named `{name}` for a bound listener");
            };
            let addr = l.local_addr().context("read an endpoint's address")?;
            // This endpoint and every other one configured on the same address.
            let group: Vec<&Endpoint> = config
                .endpoints
                .iter()
                .filter(|e| {
                    e.name == name
                        || (e.listen == endpoint.listen
                            && endpoint.listen.is_some_and(|a| a.port() != 0))
                })
                .collect();
            for e in &group {
                tracing::info!(message = "Endpoint is listening.", endpoint = %e.name, %addr, path = %e.path);
            }
            let r = endpoint_router(state.clone(), &group);
            let lean = lean_routes(&state, group.iter().copied());
            servers.push(tokio::spawn(listener::serve(
                l,
                http::front::Front::new(r),
                lean,
                options,
                limit.clone(),
                stopped(),
            )));
        }
        if let Some(l) = listeners.metrics {
            let addr = l.local_addr().context("read the metrics address")?;
            tracing::info!(message = "Metrics are listening.", %addr, path = "/metrics");
            servers.push(tokio::spawn(listener::serve(
                l,
                http::front::Front::new(metrics_router(state.clone())),
                Arc::new(Default::default()),
                options,
                limit.clone(),
                stopped(),
            )));
        }
        // The rates and topics the admin API and the dashboard show, sampled once a second.
        let sampler = tokio::spawn(activity::sample(
            hub.clone(),
            state.observers.activity.clone(),
            clock,
        ));
        let checkpoints = config
            .session_checkpoint
            .map(|every| tokio::spawn(checkpoint_sessions(hub.clone(), every)));
        shutdown.await;
        sampler.abort();
        if let Some(task) = checkpoints {
            // The final save (in `flush`) is the one that counts from here on.
            task.abort();
        }
        tracing::info!(
            message = "Shutting down: telling streams to reconnect, spread over the drain window.",
            spread_ms = u64::try_from(config.drain_spread.as_millis()).unwrap_or(u64::MAX),
        );
        http::admin::drain(
            &hub,
            config.drain_spread,
            tidings_core::CloseReason::Shutdown,
        )
        .await;
        tracing::info!(message = "Closing the rest and draining connections.");
        hub.shutdown();
        windows.abort();
        stop_tx.send_replace(true);
        for server in servers {
            if let Err(e) = server.await {
                tracing::error!(message = "A listener task failed.", error = %e);
            }
        }
        tracing::info!(message = "Connections drained; flushing the store.");
        state_flush(&hub).await
    }
}

/// Saves the sessions every `every` while the hub runs (a store without a session table makes
/// each save a no-op), so a crash loses at most that much of their progress. A failed save is
/// logged and retried at the next tick.
async fn checkpoint_sessions(hub: Hub, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = hub.save_sessions().await {
            tracing::warn!(message = "Saving the sessions failed; retrying at the next checkpoint.", error = %e);
        }
    }
}

async fn state_flush(hub: &Hub) -> anyhow::Result<()> {
    hub.flush().await.context("flush the event store")?;
    tracing::info!(message = "Store flushed; bye.");
    Ok(())
}

fn random_epoch() -> anyhow::Result<Epoch> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("read random bytes: {e}"))?;
    Ok(Epoch(u32::from_le_bytes(bytes)))
}
