//! `/healthz` (the process answers) and `/readyz` (it can take publishes and subscriptions).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use tidings_proto::ErrorCode;

use crate::state::AppState;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 `ready`, or 503 `unavailable` with the stable code `store_unavailable` as the reason
/// once the store is poisoned (a failed commit, or damage found in the file); the cause is in
/// the log, never in the body.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let stats = state.hub.stats();
    let body = |status: &str, reason: Option<&str>| {
        json!({
            "status": status,
            "reason": reason,
            "epoch": stats.epoch.to_string(),
            "head": stats.head,
            "subscribers": stats.subscribers,
            "sessions": stats.sessions,
            "stored_events": stats.store.events,
            "coalesced": stats.coalesced,
            "coalescing_keys": stats.coalescing_keys,
            "conflated": stats.conflated,
            "dropped_deliveries": stats.dropped,
        })
    };
    if state.hub.draining() {
        // Take this node out of rotation: its streams are moving elsewhere.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("draining", None)),
        )
            .into_response();
    }
    match state.hub.store_health() {
        None => Json(body("ready", None)).into_response(),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body(
                "unavailable",
                Some(ErrorCode::StoreUnavailable.as_str()),
            )),
        )
            .into_response(),
    }
}
