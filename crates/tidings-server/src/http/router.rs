//! Routers: the main listener's (publish, health, and every endpoint without its own port)
//! and one per endpoint that listens on its own port. Testable without a socket via `oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::subscribe::{EndpointState, subscribe};
use super::{extract, health, publish};
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
        .layer(middleware::from_fn_with_state(state.clone(), host_guard))
}

/// Refuses a request whose `Host` the hub does not answer to (see `extract::host`).
async fn host_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let authority = request.uri().authority().map(|a| a.as_str());
    if let Err(e) = extract::host(request.headers(), authority, &state) {
        return e.into_response();
    }
    next.run(request).await
}

fn mount(router: Router, state: &AppState, endpoint: &Endpoint) -> Router {
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
        .with_state(state.clone());
    for endpoint in endpoints.iter().filter(|e| e.listen.is_none()) {
        router = mount(router, &state, endpoint);
    }
    with_fallbacks(router, &state)
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
