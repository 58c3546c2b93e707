//! The admin API (needs the admin right: a token or JWT with `admin`, or the anonymous caller
//! of an open hub): `GET /admin/stats` (totals and rates), `GET /admin/topics` (topics
//! published to recently, with rates and subscriber counts, bounded: see `activity`),
//! `GET /admin/connections` (open subscribe connections, paged by id), `DELETE /admin/connections/{id}` (close one with
//! `reconnect-required`, reason `operator`), `POST /admin/drain` (every stream is told to
//! reconnect, the closes spread evenly over `--drain-spread`, and new subscriptions are
//! refused in-band meanwhile) and `POST /admin/reconnect` (`{"clientId": ...}` or
//! `{"topic": "SEL"}`: those streams are told to reconnect now).
//!
//! The read-only routes (`GET`) also take the credential cookie, for the dashboard; the
//! routes that change something take only `Authorization: Bearer` (a cookie is what a
//! cross-site form would send).

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::{CloseReason, Hub};
use tidings_proto::{ErrorCode, Pattern};

use super::error::HttpError;
use super::{client_id, extract};
use crate::state::AppState;

/// Largest admin request body.
const MAX_BODY: usize = 4 << 10;

/// Most connections one page lists.
pub(crate) const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Refuses a caller without the admin right (counted as an auth failure).
pub(crate) fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    admitted(state, extract::bearer(headers)?)
}

/// The same for a read-only route: the bearer token, else the credential cookie.
pub(crate) fn require_admin_to_read(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(), HttpError> {
    let presented = match extract::bearer(headers)? {
        Some(token) => Some(token),
        None => state.credentials.cookie(headers),
    };
    admitted(state, presented)
}

fn admitted(state: &AppState, presented: Option<&str>) -> Result<(), HttpError> {
    let grant = state.authenticate(presented)?;
    if grant.admin {
        return Ok(());
    }
    state.observers.metrics.auth_failed("forbidden");
    Err(HttpError::new(
        ErrorCode::Forbidden,
        "this credential does not have the admin right",
    ))
}

/// `GET /admin/stats`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    require_admin_to_read(&state, &headers)?;
    Ok(Json(stats_of(&state)))
}

/// What `GET /admin/stats` answers (and the dashboard's stream sends each second).
pub(crate) fn stats_of(state: &AppState) -> Value {
    let s = state.hub.stats();
    let activity = &state.observers.activity;
    json!({
        "epoch": s.epoch.to_string(),
        "head": s.head,
        "published": s.published,
        "delivered": s.delivered,
        "replayed": s.replayed,
        "subscriptions": s.subscribers,
        "sessions": s.sessions,
        "connections": state.observers.connections.len(),
        "connects": activity.connects(),
        "rates": activity.rates(),
        "draining": state.hub.draining(),
        "store": {
            "healthy": state.hub.store_health().is_none(),
            "events": s.store.events,
            "bytes": s.store.bytes,
            "last_seq": s.store.last_seq,
            "trimmed_through": s.store.trimmed_through,
            "durability": state.observers.store_setup["durability"],
            "fsync_interval_ms": state.observers.store_setup["fsync_interval_ms"],
            "retention": state.observers.store_setup["retention"],
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicsQuery {
    /// At most this many topics (1 to `MAX_PAGE`).
    limit: Option<usize>,
}

/// `GET /admin/topics?limit=N`: the busiest recently published topics.
pub(crate) async fn topics(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<TopicsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    require_admin_to_read(&state, &headers)?;
    let Query(query) = query.map_err(|e| {
        HttpError::new(
            ErrorCode::InvalidParameter,
            format!("limit: {}", e.body_text()),
        )
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(HttpError::new(
            ErrorCode::InvalidParameter,
            format!("limit: {limit} is not between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(Json(topics_of(&state, limit)))
}

/// What `GET /admin/topics` answers.
pub(crate) fn topics_of(state: &AppState, limit: usize) -> Value {
    let view = state.observers.activity.topics(limit);
    let names: Vec<tidings_proto::Topic> = view.topics.iter().map(|t| t.topic.clone()).collect();
    let subscribers = state.hub.subscribers_of(&names);
    let list: Vec<Value> = view
        .topics
        .iter()
        .zip(subscribers)
        .map(|(t, n)| {
            json!({
                "topic": t.topic.as_str(),
                "events": t.events,
                "rate": t.rate,
                "subscribers": n,
                "last_seen_ms": t.last_seen_ms,
            })
        })
        .collect();
    json!({
        "topics": list,
        "tracked": view.tracked,
        "max_topics": crate::activity::MAX_TOPICS,
        "full": view.full,
        "untracked": {"events": view.untracked_events, "rate": view.untracked_rate},
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    /// List connections with an id greater than this.
    #[serde(default)]
    after: u64,
    /// At most this many (1 to `MAX_PAGE`).
    limit: Option<usize>,
}

/// `GET /admin/connections?after=ID&limit=N`: `next` is the `after` of the next page, or null
/// on the last.
pub(crate) async fn connections(
    State(state): State<AppState>,
    headers: HeaderMap,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    require_admin_to_read(&state, &headers)?;
    let Query(page) = page.map_err(|e| {
        HttpError::new(
            ErrorCode::InvalidParameter,
            format!("after, limit: {}", e.body_text()),
        )
    })?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(HttpError::new(
            ErrorCode::InvalidParameter,
            format!("limit: {limit} is not between 1 and {MAX_PAGE}"),
        ));
    }
    let open = state.observers.connections.page(page.after, limit + 1);
    let more = open.len() > limit;
    let list: Vec<Value> = open
        .iter()
        .take(limit)
        .map(|c| {
            json!({
                "id": c.id,
                "endpoint": &*c.labels.endpoint,
                "transport": c.labels.transport,
                "client_id": c.client_id.as_ref().map(|id| id.as_str()),
                "remote": c.remote.map(|a| a.to_string()),
                "selector": c.selector,
                "queued": c.probe.queued(),
                "delivered": c.probe.delivered(),
                "connected_since_ms": c.since_ms,
            })
        })
        .collect();
    let next = if more {
        list.last().and_then(|c| c["id"].as_u64())
    } else {
        None
    };
    Ok(Json(json!({"connections": list, "next": next})))
}

/// `DELETE /admin/connections/{id}`: 204 once the connection is told to reconnect.
pub(crate) async fn close_connection(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Response {
    if let Err(e) = require_admin(&state, &headers) {
        return e.into_response();
    }
    let Ok(Path(id)) = id else {
        return HttpError::new(ErrorCode::InvalidParameter, "id: not a connection id")
            .into_response();
    };
    match state.observers.connections.get(id) {
        Some(c) => {
            c.probe.close(CloseReason::Operator);
            tracing::info!(message = "Connection closed by an operator.", conn = id);
            StatusCode::NO_CONTENT.into_response()
        }
        None => HttpError::new(ErrorCode::NotFound, format!("id: no open connection {id}"))
            .into_response(),
    }
}

/// Tells every open stream to reconnect (with `reason`), one after another, evenly over
/// `spread`; returns how many. New subscriptions are refused from the start.
pub(crate) async fn drain(hub: &Hub, spread: Duration, reason: CloseReason) -> usize {
    let handles = hub.drain(true);
    let n = handles.len();
    let start = tokio::time::Instant::now();
    for (i, h) in handles.iter().enumerate() {
        let at = start + spread.mul_f64(i as f64 / n as f64);
        tokio::time::sleep_until(at).await;
        h.close(reason);
    }
    n
}

pub(crate) async fn post_drain(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    if state.hub.draining() {
        return Ok(Json(json!({"draining": true, "streams": 0})));
    }
    let spread = state.edge.drain_spread();
    let streams = state.hub.stats().subscribers;
    let hub = state.hub.clone();
    tokio::spawn(async move {
        let n = drain(&hub, spread, CloseReason::Reconnect).await;
        tracing::info!(
            message = "Drained: every stream was told to reconnect.",
            streams = n
        );
    });
    Ok(Json(json!({
        "draining": true,
        "streams": streams,
        "spreadMs": u64::try_from(spread.as_millis()).unwrap_or(u64::MAX),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconnectBody {
    #[serde(rename = "clientId", default, deserialize_with = "present")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    topic: Option<String>,
}

/// A field that, when given, is a string: `null` is refused (400), not taken for absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

pub(crate) async fn post_reconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let (bytes, _held) = extract::body(body, None, MAX_BODY, &state.edge).await?;
    let req: ReconnectBody = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::new(ErrorCode::MalformedJson, format!("body: {e}")))?;
    let closed = match (req.client_id, req.topic) {
        (Some(id), None) => {
            let id = client_id::parse(id.as_bytes(), "clientId", false)?;
            state.hub.reconnect_client(&id)
        }
        (None, Some(topic)) => {
            let pattern = Pattern::parse(&topic).map_err(|e| {
                HttpError::new(ErrorCode::InvalidTopic, format!("topic `{topic}`: {e}"))
            })?;
            state.hub.reconnect_topic(&pattern)
        }
        _ => {
            return Err(HttpError::new(
                ErrorCode::InvalidEvent,
                "body: give exactly one of clientId and topic",
            ));
        }
    };
    Ok(Json(json!({ "closed": closed })))
}
