//! `/healthz` (the process answers) and `/readyz` (it can take publishes and subscriptions).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let stats = state.hub.stats();
    let body = |status: &str, reason: Option<String>| {
        json!({
            "status": status,
            "reason": reason,
            "epoch": stats.epoch.to_string(),
            "head": stats.head,
            "subscribers": stats.subscribers,
            "stored_events": stats.store.events,
        })
    };
    match state.hub.store_health() {
        None => Json(body("ready", None)).into_response(),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("unavailable", Some(e.to_string()))),
        )
            .into_response(),
    }
}
