//! The admin API (needs the admin right: a token or JWT with `admin`, or the anonymous caller
//! of an open hub): `GET /admin/stats` (totals), `GET /admin/connections` (open subscribe
//! connections, paged by id), `DELETE /admin/connections/{id}` (close one with
//! `reconnect-required`, reason `operator`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::CloseReason;
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::extract;
use crate::state::AppState;

/// Most connections one page lists.
pub(crate) const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// Refuses a caller without the admin right (counted as an auth failure).
pub(crate) fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let grant = state.authenticate(extract::bearer(headers)?)?;
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
    require_admin(&state, &headers)?;
    let s = state.hub.stats();
    Ok(Json(json!({
        "epoch": s.epoch.to_string(),
        "head": s.head,
        "published": s.published,
        "delivered": s.delivered,
        "replayed": s.replayed,
        "subscriptions": s.subscribers,
        "connections": state.observers.connections.len(),
        "store": {
            "healthy": state.hub.store_health().is_none(),
            "events": s.store.events,
            "bytes": s.store.bytes,
            "last_seq": s.store.last_seq,
            "trimmed_through": s.store.trimmed_through,
        },
    })))
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
    require_admin(&state, &headers)?;
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
