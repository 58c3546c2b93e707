//! Embedding: the hub inside an application's own process and axum server. `Embedded` is
//! built from a `Config`, publishes in-process through the same validation as `POST
//! /publish`, hands out its publish and subscribe routes for the application's `Router`
//! under a path prefix, and shuts down on the application's signal.
//!
//! ```no_run
//! use tidings_server::{Embedded, RawConfig};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! // Settings as a struct: here, history in memory; every field of `RawConfig` can be set.
//! let mut raw = RawConfig::default();
//! raw.store.durability = Some("memory".into());
//! let tidings = Embedded::build(raw.validate()?)?;
//!
//! // The application's own router, with Tidings under /tidings: POST /tidings/publish and
//! // GET /tidings/events (SSE, NDJSON, WebSocket, long-poll).
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my download manager" }))
//!     .merge(tidings.router("/tidings"));
//!
//! // Publishing in-process: the same checks and ids as over HTTP, no HTTP.
//! let id = tidings
//!     .publish("downloads/abc-123", "queued", &serde_json::json!({"DownloadID": "abc-123"}))
//!     .await?;
//! // `None` only when a `[[coalesce]]` window holds the event.
//! if let Some(id) = id {
//!     println!("published {id}");
//! }
//!
//! // Serve until the application's own signal; the hub closes its streams first (with
//! // `reconnect-required`, so clients come back and resume), then the store is flushed.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let signal = tidings.shutdown_on(async { tokio::signal::ctrl_c().await.ok(); });
//! axum::serve(listener, app).with_graceful_shutdown(signal).await?;
//! tidings.close().await?;
//! # Ok(()) }
//! ```
//!
//! What the standalone server adds and an embedding application owns instead: the listener,
//! the connection limit, per-connection write timeouts and TLS. Endpoints with a `listen`
//! address of their own are not mounted (only the standalone server binds ports).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use serde::Serialize;
use tidings_core::{IdempotencyKey, IdempotencyScope, PublishBatch};
use tidings_proto::{ErrorCode, EventId};

use crate::config::Config;
use crate::endpoint::Endpoint;
use crate::http::error::HttpError;
use crate::http::publish::{origin_of, parse_events_with, refuse_mismatch, refuse_reserved};
use crate::http::router::mountable;
use crate::state::AppState;

/// The idempotency scope of in-process publishes: apart from every credential's (a
/// credential's scope is a SHA-256 output; the anonymous one is all zeroes).
const IN_PROCESS: IdempotencyScope = IdempotencyScope(*b"tidings in-process publisher....");

/// A hub running inside an application. Cheap to clone: clones share the hub.
#[derive(Debug, Clone)]
pub struct Embedded {
    state: AppState,
    endpoints: Arc<[Endpoint]>,
}

/// An in-process publish that was refused: the stable code and message `POST /publish` would
/// have answered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} ({code})")]
pub struct EmbedError {
    /// The stable code, as on the wire (`invalid_topic`, `event_too_large`, …).
    pub code: ErrorCode,
    /// What is wrong, naming the field.
    pub message: String,
}

impl From<HttpError> for EmbedError {
    fn from(e: HttpError) -> Self {
        EmbedError {
            code: e.0.error.code,
            message: e.0.error.message,
        }
    }
}

/// One event of an in-process batch.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    topic: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    data: serde_json::Value,
}

impl Outgoing {
    /// An event on `topic` of type `event_type` carrying `data` (checked when published).
    pub fn new(
        topic: impl Into<String>,
        event_type: impl Into<String>,
        data: serde_json::Value,
    ) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            event_type: event_type.into(),
            key: None,
            data,
        }
    }

    /// The entity the event is about (a download id).
    pub fn key(mut self, key: impl Into<String>) -> Outgoing {
        self.key = Some(key.into());
        self
    }
}

impl Embedded {
    /// Opens the store and builds the hub, exactly as `tidings serve` does with `config`.
    ///
    /// Called inside a tokio runtime, it also starts the task that closes `[[coalesce]]`
    /// windows on time (it lives as long as the runtime).
    pub fn build(config: Config) -> anyhow::Result<Embedded> {
        let app = crate::App::build(config)?;
        if tokio::runtime::Handle::try_current().is_ok() && !app.config.coalesce.is_empty() {
            drop(crate::coalesce::spawn(app.state.hub.clone()));
        }
        Ok(Embedded {
            endpoints: app.config.endpoints.clone().into(),
            state: app.state,
        })
    }

    /// `POST {prefix}/publish`, `POST {prefix}/tickets` and every subscribe endpoint
    /// (`{prefix}/events`, and the `[[endpoints]]` without a port of their own), for the
    /// application to `merge` into its router. An empty prefix or `/` mounts them at the root.
    /// Requests are judged exactly as by the standalone server (tokens, JWTs, tickets, cookies,
    /// CORS, `Host` check, limits).
    ///
    /// # Panics
    /// If `prefix` does not start with `/` (axum's rule for nesting).
    pub fn router<S: Clone + Send + Sync + 'static>(&self, prefix: &str) -> Router<S> {
        let routes = mountable(&self.state, &self.endpoints);
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            routes
        } else {
            Router::new().nest(prefix, routes)
        }
    }

    /// Publishes one event and returns its id, checked as `POST /publish` checks it (topic,
    /// type and key names, data size, the engine's limits). `None`: a `[[coalesce]]` window
    /// holds it.
    pub async fn publish(
        &self,
        topic: &str,
        event_type: &str,
        data: &impl Serialize,
    ) -> Result<Option<EventId>, EmbedError> {
        let data = serde_json::to_value(data).map_err(|e| EmbedError {
            code: ErrorCode::InvalidEvent,
            message: format!("data: {e}"),
        })?;
        let ids = self
            .publish_batch(&[Outgoing::new(topic, event_type, data)], None)
            .await?;
        ids.into_iter().next().ok_or_else(|| EmbedError {
            code: ErrorCode::Internal,
            message: "the hub answered no id".to_owned(),
        })
    }

    /// Publishes a batch, stored and delivered all or nothing; the ids come back in order
    /// (`None` for an event a `[[coalesce]]` window holds).
    /// With an `idempotency_key`, a repeat of the same batch returns the first ids and stores
    /// nothing (in-process publishes have a key scope of their own).
    pub async fn publish_batch(
        &self,
        events: &[Outgoing],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Option<EventId>>, EmbedError> {
        let started = std::time::Instant::now();
        let limits = self.state.hub.limits();
        // The same bytes a publisher would POST, through the same parser: one set of rules.
        let body = serde_json::to_vec(events).map_err(|e| EmbedError {
            code: ErrorCode::InvalidEvent,
            message: format!("events: {e}"),
        })?;
        if body.len() > limits.max_body_bytes {
            return Err(EmbedError {
                code: ErrorCode::BodyTooLarge,
                message: format!(
                    "events: {} bytes as JSON; the limit is {}",
                    body.len(),
                    limits.max_body_bytes
                ),
            });
        }
        let (events, origins) = parse_events_with(
            &body,
            limits.max_batch_events,
            self.state.edge.policy.default_topic.as_ref(),
        )?;
        refuse_reserved(&self.state, &events)?;
        refuse_mismatch(&self.state, &events)?;
        let origin = origin_of(&http::HeaderMap::new(), &origins)?;
        let idempotency_key = match idempotency_key {
            Some("") => {
                return Err(EmbedError {
                    code: ErrorCode::InvalidParameter,
                    message: "idempotency_key: must be non-empty".to_owned(),
                });
            }
            Some(k) => Some(IdempotencyKey {
                scope: IN_PROCESS,
                key: k.to_owned(),
            }),
            None => None,
        };
        // Counted in /metrics like a `POST /publish`: per allow-listed prefix and its latency.
        let metrics = &self.state.observers.metrics;
        let mut by_prefix = Vec::new();
        metrics.match_prefixes(events.iter().map(|e| &e.topic), &mut by_prefix);
        let topics: Vec<tidings_proto::Topic> = events.iter().map(|e| e.topic.clone()).collect();
        let ids = self
            .state
            .hub
            .publish_each(PublishBatch {
                events,
                origin,
                idempotency_key,
            })
            .await
            .map_err(HttpError::from)?;
        metrics.published(&by_prefix);
        let now_ms = self.state.credentials.now_ms();
        self.state.observers.activity.record(&topics, now_ms);
        metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(ids)
    }

    /// A future for `axum::serve(…).with_graceful_shutdown`: it waits for the application's
    /// `signal`, then closes every stream with `reconnect-required` (`shutdown`) and refuses
    /// new publishes and subscriptions, so the server's drain does not wait on open streams.
    pub fn shutdown_on(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let hub = self.state.hub.clone();
        async move {
            signal.await;
            tracing::info!(message = "Shutting down the embedded hub: closing streams.");
            hub.shutdown();
        }
    }

    /// Closes every stream and refuses new work now (what `shutdown_on` does on its signal).
    pub fn shutdown(&self) {
        self.state.hub.shutdown();
    }

    /// Makes all history durable. Call once the server has stopped.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.state.hub.shutdown();
        self.state
            .hub
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("flush the event store: {e}"))
    }
}

#[cfg(test)]
mod tests;
