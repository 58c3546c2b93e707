//! `router(state)`: every route of the HTTP API, testable without a socket via `oneshot`.

use axum::Router;
use axum::routing::{get, post};
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::{health, publish, subscribe};
use crate::state::AppState;

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/publish", post(publish::publish))
        .route("/events", get(subscribe::events))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not accept that method",
            )
        })
        .with_state(state)
}
