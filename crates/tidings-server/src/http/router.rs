//! Routers: the main listener's (publish, health, and every endpoint without its own port)
//! and one per endpoint that listens on its own port. Testable without a socket via `oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::HeaderValue;
use http::header::{CONNECTION, CONTENT_LENGTH, ORIGIN, TRANSFER_ENCODING};
use tidings_proto::ErrorCode;

use super::error::HttpError;
use super::subscribe::{EndpointState, subscribe};
use super::{admin, dashboard, extract, head, health, openapi, ops, publish, snapshot, tickets};
use crate::endpoint::{Cors, Endpoint};
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
    let has_body = has_body(request.headers());
    let mut response = match check_host(&request, &state) {
        Err(e) => e.into_response(),
        Ok(()) => next.run(request).await,
    };
    close_after_refusal(&mut response, has_body);
    response
}

/// The `Host` check of `edge_guard` (and of `front`'s `POST /publish`).
pub(super) fn check_host<B>(request: &http::Request<B>, state: &AppState) -> Result<(), HttpError> {
    let authority = request.uri().authority().map(|a| a.as_str());
    extract::host(request.headers(), authority, state)
}

/// Whether a request says it has a body.
pub(super) fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// `connection: close` on an error answer to a request with a body (see `edge_guard`).
pub(super) fn close_after_refusal(response: &mut Response, has_body: bool) {
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// What the CORS layer of a group of routes needs.
#[derive(Clone)]
struct CorsPolicy {
    cors: Cors,
    /// The routes' own request headers, allowed in preflights too: an endpoint's client-id
    /// header; `/publish`'s `X-Client-Id` and the cookie-publish header.
    extra: Arc<[http::HeaderName]>,
}

/// Answers CORS preflights and adds the CORS headers to every other answer (see
/// `head::cors`; the lean path adds the same headers itself).
async fn cors_guard(State(policy): State<CorsPolicy>, request: Request, next: Next) -> Response {
    if let Some((status, headers)) = head::preflight(
        request.headers(),
        request.method(),
        &policy.cors,
        &policy.extra,
    ) {
        return (status, headers).into_response();
    }
    let origin = request.headers().get(ORIGIN).cloned();
    let mut response = next.run(request).await;
    head::cors(response.headers_mut(), &policy.cors, origin.as_ref());
    response
}

/// `OPTIONS` reaches a route's CORS layer only if the route takes it; a preflight is answered
/// there, and any other `OPTIONS` ends here.
async fn not_a_preflight() -> HttpError {
    HttpError::new(
        ErrorCode::MethodNotAllowed,
        "OPTIONS is answered only as a CORS preflight (Origin and Access-Control-Request-Method)",
    )
}

fn cors_layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    cors: &Cors,
    extra: Vec<http::HeaderName>,
) -> Router<S> {
    let policy = CorsPolicy {
        cors: cors.clone(),
        extra: extra.into(),
    };
    router.route_layer(middleware::from_fn_with_state(policy, cors_guard))
}

/// `POST /publish` and `POST /tickets` behind their CORS layer (the request headers a page
/// may add there: `X-Client-Id` and the cookie-publish header).
fn credentialed<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    let publish_headers = std::iter::once(http::HeaderName::from_static("x-client-id"))
        .chain(state.credentials.options().cookie_publish_header.clone())
        .collect();
    let routes = Router::new()
        .route("/publish", post(publish::publish).options(not_a_preflight))
        .route("/tickets", post(tickets::create).options(not_a_preflight))
        .with_state(state.clone());
    cors_layer(routes, state.edge.cors(), publish_headers)
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
    let mut route = Router::new().route(
        &endpoint.path,
        get(subscribe)
            .options(not_a_preflight)
            .with_state(ctx.clone()),
    );
    if endpoint.path == BUILT_IN_PATH {
        // `GET /snapshot` goes with the built-in endpoint: its credentials, grant and CORS.
        route = route.route(
            "/snapshot",
            get(snapshot::snapshot)
                .options(not_a_preflight)
                .with_state(ctx),
        );
    }
    let client_id = vec![endpoint.client_id.header.clone()];
    router.merge(cors_layer(route, &endpoint.cors, client_id))
}

/// The path of the built-in subscribe endpoint, which `GET /snapshot` is served beside.
pub(crate) const BUILT_IN_PATH: &str = "/events";

/// The main listener: `POST /publish`, `POST /tickets`, `/healthz`, `/readyz`, and
/// `endpoints` (those without a port of their own).
pub fn router(state: AppState, endpoints: &[Endpoint]) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::handler(endpoints)))
        .route("/admin/stats", get(admin::stats))
        .route("/admin/topics", get(admin::topics))
        .route("/admin/stream", get(dashboard::stream))
        .route("/dashboard", get(dashboard::page))
        .route("/admin/connections", get(admin::connections))
        .route("/admin/connections/{id}", delete(admin::close_connection))
        .route("/admin/drain", post(admin::post_drain))
        .route("/admin/reconnect", post(admin::post_reconnect))
        .with_state(state.clone())
        .merge(credentialed(&state));
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

/// `POST /publish`, `POST /tickets` and `endpoints` (those without a port of their own),
/// behind the same `Host` check and CORS, as routes of any state type: what an application
/// mounts when it embeds the hub (`crate::embed`). No fallbacks: unknown routes are the
/// application's.
pub(crate) fn mountable<S: Clone + Send + Sync + 'static>(
    state: &AppState,
    endpoints: &[Endpoint],
) -> Router<S> {
    let mut router = credentialed(state);
    for endpoint in endpoints.iter().filter(|e| e.listen.is_none()) {
        router = mount(router, state, endpoint);
    }
    router.route_layer(middleware::from_fn_with_state(state.clone(), edge_guard))
}

/// The router of the endpoints that share a port of their own: just their routes.
pub fn endpoint_router(state: AppState, endpoints: &[&Endpoint]) -> Router {
    let mut router = Router::new();
    for endpoint in endpoints {
        router = mount(router, &state, endpoint);
    }
    with_fallbacks(router, &state)
}

/// The streaming routes the lean connection path serves on a listener with `endpoints`.
pub(crate) fn lean_routes<'a>(
    state: &AppState,
    endpoints: impl Iterator<Item = &'a Endpoint>,
) -> crate::lean::LeanRoutes {
    let routes = endpoints
        .filter(|e| e.transports.sse || e.transports.ndjson)
        .map(|e| EndpointState {
            app: state.clone(),
            endpoint: Arc::new(e.clone()),
        });
    Arc::new(crate::lean::Routes::new(routes))
}
