//! `AppState`: what every handler needs, cloned per request (all fields are cheap handles).

use std::sync::Arc;

use tidings_auth::Authorizer;
use tidings_core::Hub;

use crate::endpoint::TransportOptions;

/// Shared state of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub hub: Hub,
    /// Credentials to grants.
    pub auth: Arc<Authorizer>,
    /// Transport settings.
    pub transport: TransportOptions,
}
