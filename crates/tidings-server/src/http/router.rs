//! Routers: the main listener's (publish, health, and every endpoint without its own port)
//! and one per endpoint that listens on its own port. Testable without a socket via `oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::HeaderValue;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::subscribe::{EndpointState, subscribe};
use super::{admin, extract, health, openapi, ops, publish};
use crate::endpoint::Endpoint;
use crate::state::AppState;

/// Fallbacks for unknown routes and methods, and the `Host` check in front of every route.
fn with_fallbacks(router: Router, state: &AppState) -> Router {
    router
        .fallback(|| async { HttpError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                ErrorCode::MethodNotAllowed,
                "this route does not accept that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), edge_guard))
}

/// Refuses a request whose `Host` the hub does not answer to (see `extract::host`), and
/// closes the connection after an error answer to a request with a body. Such an answer may
/// come before the body was read (413, 503 `overloaded`, 408), and hyper then closes the
/// connection, possibly after the head went out without saying so; a client that pooled the
/// connection would send its next request into the closed socket. Saying `connection: close`
/// keeps it from pooling.
async fn edge_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authority = request.uri().authority().map(|a| a.as_str());
    let has_body = request.headers().contains_key(TRANSFER_ENCODING)
        || request
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut response = match extract::host(request.headers(), authority, &state) {
        Err(e) => e.into_response(),
        Ok(()) => next.run(request).await,
    };
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn mount<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    state: &AppState,
    endpoint: &Endpoint,
) -> Router<S> {
    let ctx = EndpointState {
        app: state.clone(),
        endpoint: Arc::new(endpoint.clone()),
    };
    router.route(&endpoint.path, get(subscribe).with_state(ctx))
}

/// The main listener: `POST /publish`, `/healthz`, `/readyz`, and `endpoints` (those without a
/// port of their own).
pub fn router(state: AppState, endpoints: &[Endpoint]) -> Router {
    let mut router = Router::new()
        .route("/publish", post(publish::publish))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::handler(endpoints)))
        .route("/admin/stats", get(admin::stats))
        .route("/admin/connections", get(admin::connections))
        .route("/admin/connections/{id}", delete(admin::close_connection))
        .route("/admin/drain", post(admin::post_drain))
        .route("/admin/reconnect", post(admin::post_reconnect))
        .with_state(state.clone());
    for endpoint in endpoints.iter().filter(|e| e.listen.is_none()) {
        router = mount(router, &state, endpoint);
    }
    with_fallbacks(router, &state)
}

/// The router of the metrics listener (`metrics.listen`): just `GET /metrics`.
pub fn metrics_router(state: AppState) -> Router {
    let router = Router::new()
        .route("/metrics", get(ops::metrics))
        .with_state(state.clone());
    with_fallbacks(router, &state)
}

/// `POST /publish` and `endpoints` (those without a port of their own), behind the same
/// `Host` check, as routes of any state type: what an application mounts when it embeds the
/// hub (`crate::embed`). No fallbacks: unknown routes are the application's.
pub(crate) fn mountable<S: Clone + Send + Sync + 'static>(
    state: &AppState,
    endpoints: &[Endpoint],
) -> Router<S> {
    let mut router =
        Router::new().route("/publish", post(publish::publish).with_state(state.clone()));
    for endpoint in endpoints.iter().filter(|e| e.listen.is_none()) {
        router = mount(router, state, endpoint);
    }
    router.route_layer(middleware::from_fn_with_state(state.clone(), edge_guard))
}

/// The router of an endpoint on its own port: just its route.
pub fn endpoint_router(state: AppState, endpoint: &Endpoint) -> Router {
    with_fallbacks(mount(Router::new(), &state, endpoint), &state)
}

/// The streaming routes the lean connection path serves on a listener with `endpoints`.
pub(crate) fn lean_routes<'a>(
    state: &AppState,
    endpoints: impl Iterator<Item = &'a Endpoint>,
) -> crate::lean::LeanRoutes {
    let routes = endpoints
        .filter(|e| e.transports.sse || e.transports.ndjson)
        .map(|e| {
            let ctx = EndpointState {
                app: state.clone(),
                endpoint: Arc::new(e.clone()),
            };
            (e.path.clone(), ctx)
        })
        .collect();
    Arc::new(routes)
}
