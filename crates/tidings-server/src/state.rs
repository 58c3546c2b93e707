//! `AppState`: what every handler needs, cloned per request (all fields are cheap handles).

use std::sync::Arc;
use std::time::Duration;

use tidings_auth::Authorizer;
use tidings_core::Hub;

/// Shared state of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub hub: Hub,
    /// Credentials to grants.
    pub auth: Arc<Authorizer>,
    /// SSE keepalive interval (`None`: off).
    pub keepalive: Option<Duration>,
    /// SSE `retry:` hint.
    pub retry: Duration,
}
