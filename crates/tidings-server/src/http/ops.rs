//! Operator routes: `GET /metrics` (Prometheus text format). Readable with the admin right
//! (a token or JWT with `admin`), with the metrics token (`metrics.token`), or, on an open
//! hub without a metrics token, by anyone who can reach it (loopback only).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use subtle::ConstantTimeEq;
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::extract;
use crate::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::state::AppState;

/// Equal strings, compared in time that depends on their lengths only (`subtle`).
fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Whether the caller may read metrics: the admin right, the metrics token, or an open hub
/// when no metrics token is set.
fn may_observe(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let bearer = extract::bearer(headers)?;
    let token = state.observers.metrics_token.as_ref();
    if let (Some(token), Some(bearer)) = (token, bearer)
        && same_secret(token.expose(), bearer)
    {
        return Ok(());
    }
    if token.is_none() && state.auth.is_open() {
        return Ok(());
    }
    let Some(bearer) = bearer else {
        state.observers.metrics.auth_failed("missing");
        return Err(HttpError::new(
            ErrorCode::Unauthorized,
            "Authorization: a bearer token is required to read metrics",
        ));
    };
    // A credential that is not valid at all is counted as `invalid` by `authenticate`.
    if state.authenticate(Some(bearer))?.admin && !state.auth.is_open() {
        return Ok(());
    }
    state.observers.metrics.auth_failed("forbidden");
    Err(HttpError::new(
        ErrorCode::Forbidden,
        "this credential may not read metrics",
    ))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = may_observe(&state, &headers) {
        return e.into_response();
    }
    let body = state.observers.metrics.render();
    (
        [
            (CONTENT_TYPE, METRICS_CONTENT_TYPE),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
