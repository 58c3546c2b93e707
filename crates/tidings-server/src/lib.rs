//! The Tidings server: the only crate that speaks HTTP. `App::build` turns a validated
//! `Config` into running pieces (store, hub, authorizer); `App::run` serves a listener until
//! the shutdown future resolves, then drains.
//!
//! # Layout
//! - `config`: `RawConfig` (flags, env, TOML) → `Config`.
//! - `http`: routes and handlers (`router(state)` is testable without a socket).
//! - `transport`: per-connection encoders (SSE).
//! - `listener`: the accept loop, connection limit and graceful drain.

pub mod config;
mod http;
mod listener;
mod state;
mod transport;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tidings_auth::Authorizer;
use tidings_core::{DynStore, Hub, MemoryStore};
use tidings_proto::Epoch;
use tokio::net::TcpListener;

pub use config::{Config, ConfigError, Durability, RawConfig};
pub use http::router::router;
pub use state::AppState;

/// A built server, ready to run.
#[derive(Debug)]
pub struct App {
    state: AppState,
    config: Config,
}

impl App {
    /// Opens the store and builds the hub.
    pub fn build(config: Config) -> anyhow::Result<App> {
        let store: DynStore = match config.durability {
            Durability::Memory => {
                Arc::new(MemoryStore::new(random_epoch()?, config.retention.clone()))
            }
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
                })
                .with_context(|| {
                    format!("open the event store in {}", config.data_dir.display())
                })?;
                Arc::new(store)
            }
        };
        let hub = Hub::new(store, config.limits.clone());
        let state = AppState {
            hub,
            auth: Arc::new(Authorizer::new(config.tokens.clone())),
            keepalive: config.keepalive,
            retry: config.retry,
        };
        Ok(App { state, config })
    }

    /// The shared state (for in-process use and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves `listener` until `shutdown` resolves; then refuses new work, closes every stream
    /// with `reconnect-required`, drains connections for up to the grace period and flushes
    /// the store.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let App { state, config } = self;
        let hub = state.hub.clone();
        let addr = listener
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
        let app = router(state);
        let stopping = hub.clone();
        listener::serve(
            listener,
            app,
            listener::Options {
                max_connections: config.max_connections,
                grace: config.shutdown_grace,
            },
            async move {
                shutdown.await;
                tracing::info!(
                    message = "Shutting down: closing streams and draining connections."
                );
                stopping.shutdown();
            },
        )
        .await;
        state_flush(&hub).await
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
