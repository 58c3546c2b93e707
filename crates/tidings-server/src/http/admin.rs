//! Admin routes: `POST /admin/drain` (every stream is told to reconnect, the closes spread
//! evenly over `--drain-spread`, and new subscriptions are refused in-band meanwhile) and
//! `POST /admin/reconnect` (`{"clientId": ...}` or `{"topic": "SEL"}`: those streams are told
//! to reconnect now). They need a credential with the admin right; an open (loopback) hub
//! answers them like its other routes.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tidings_core::{CloseReason, Hub};
use tidings_proto::{ErrorCode, Pattern};

use super::error::HttpError;
use super::{client_id, extract};
use crate::state::AppState;

/// Largest admin request body.
const MAX_BODY: usize = 4 << 10;

fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let caller = state.auth.identify(extract::bearer(headers)?)?;
    if state.auth.is_open() || caller.grant.admin {
        return Ok(());
    }
    Err(HttpError::new(
        ErrorCode::Forbidden,
        "this credential has no admin right",
    ))
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
    check_admin(&state, &headers)?;
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
    #[serde(rename = "clientId", default)]
    client_id: Option<String>,
    #[serde(default)]
    topic: Option<String>,
}

pub(crate) async fn post_reconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, HttpError> {
    check_admin(&state, &headers)?;
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
