//! `AppState`: what every handler needs, cloned per request (all fields are cheap handles).

use crate::listener::PerAddress;
use std::sync::Arc;
use std::time::Duration;

use tidings_auth::Authorizer;
use tidings_core::Hub;
use tokio::sync::Semaphore;

use crate::credential::Credentials;
use crate::endpoint::{Cors, TransportOptions};
use crate::schema::Catalogue;
use crate::tracked::Observers;

/// Shared state of the HTTP layer.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The engine.
    pub hub: Hub,
    /// Credentials to grants.
    pub auth: Arc<Authorizer>,
    /// Transport settings.
    pub transport: TransportOptions,
    /// What the HTTP edge enforces before a request reaches a handler's logic.
    pub edge: Edge,
    /// Metrics and the table of open subscribe connections.
    pub observers: Arc<Observers>,
    /// Where credentials come from, and the connect tickets.
    pub credentials: Credentials,
}

/// Edge settings shared by every connection: the publish-body deadline, the budget of body
/// bytes held at once, and the `Host` names the hub answers to.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Longest a whole publish body may take to arrive.
    pub body_timeout: Duration,
    /// Permits are bytes of publish bodies being held, over all connections.
    pub(crate) body_bytes: Arc<Semaphore>,
    /// Extra `Host` names answered (beyond loopback names); empty: none without tokens, any
    /// with tokens.
    pub(crate) allowed_hosts: Arc<[String]>,
    /// Reserved names, the drain window and CORS (one pointer: `Edge` rides in every lean
    /// connection's opening state).
    pub(crate) policy: Arc<Policy>,
}

/// What the edge knows about the hub's own events, drains and CORS.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Event types the hub sends itself, which a publish may not use, each on the topics
    /// the endpoints that send it serve (`None`: any topic).
    pub(crate) reserved_types: Vec<(String, Option<Vec<tidings_proto::Pattern>>)>,
    /// The window a drain spreads its closes over (and the `retry:` a stream refused during
    /// a drain is given, so it lands elsewhere).
    pub(crate) drain_spread: Duration,
    /// CORS of the main listener's own routes (`/publish`, `/tickets`).
    pub(crate) cors: Cors,
    /// JSON Schemas a published payload must match (empty: no check).
    pub(crate) schemas: Catalogue,
    /// The topic of a published event that names none (`None`: `topic` is required).
    pub(crate) default_topic: Option<tidings_proto::Topic>,
    /// Connections per client address: taken at accept by the listener, and by a stream that
    /// arrives through a trusted proxy for the client it names.
    pub(crate) per_address: Arc<PerAddress>,
}

/// The event names every endpoint's streams may carry from the hub itself.
pub const SYSTEM_TYPES: [&str; 4] = ["subscribed", "resumed", "reset", "reconnect-required"];

impl Edge {
    /// Edge settings with these bounds.
    pub fn new(
        body_timeout: Duration,
        max_inflight_body_bytes: usize,
        allowed_hosts: Vec<String>,
    ) -> Edge {
        Edge {
            body_timeout,
            body_bytes: Arc::new(Semaphore::new(
                max_inflight_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            allowed_hosts: allowed_hosts.into(),
            policy: Arc::new(Policy {
                cors: Cors::default(),
                // `reset` and `snapshot` (the handoff after a snapshot) have no other name; the
                // session and reconnect names are the endpoints' own (`reserve`), so a renamed
                // `resumed` is free for publishers to use.
                reserved_types: vec![("reset".to_owned(), None), ("snapshot".to_owned(), None)],
                drain_spread: Duration::from_secs(10),
                schemas: Catalogue::default(),
                default_topic: None,
                per_address: PerAddress::new(0, Vec::new()),
            }),
        }
    }

    /// The same, with CORS for `/publish` and `/tickets`.
    pub fn with_cors(mut self, cors: Cors) -> Edge {
        let mut policy = (*self.policy).clone();
        policy.cors = cors;
        self.policy = Arc::new(policy);
        self
    }

    /// CORS of the main listener's own routes.
    pub(crate) fn cors(&self) -> &Cors {
        &self.policy.cors
    }

    /// Also refuses `names` (the endpoints' own session, handshake, keep-alive and synthetic
    /// event names) at publish.
    pub fn reserve<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Edge {
        self.reserve_on(names, None)
    }

    /// Also refuses `names` at publish on the topics `scope` matches (`None`: every topic):
    /// an endpoint's own names are reserved only where its streams can carry them.
    pub fn reserve_on<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a str>,
        scope: Option<Vec<tidings_proto::Pattern>>,
    ) -> Edge {
        let mut policy = (*self.policy).clone();
        for n in names {
            let known = policy
                .reserved_types
                .iter()
                .any(|(a, s)| a == n && (s.is_none() || *s == scope));
            if !known {
                policy.reserved_types.push((n.to_owned(), scope.clone()));
            }
        }
        self.policy = Arc::new(policy);
        self
    }

    /// Drains spread their closes over `spread`.
    pub fn with_drain_spread(mut self, spread: Duration) -> Edge {
        let mut policy = (*self.policy).clone();
        policy.drain_spread = spread;
        self.policy = Arc::new(policy);
        self
    }

    /// Publishes are checked against `schemas`.
    pub fn with_schemas(mut self, schemas: Catalogue) -> Edge {
        let mut policy = (*self.policy).clone();
        policy.schemas = schemas;
        self.policy = Arc::new(policy);
        self
    }

    /// Events published without a topic go to `topic` (`None`: a topic is required).
    pub fn with_default_topic(mut self, topic: Option<tidings_proto::Topic>) -> Edge {
        let mut policy = (*self.policy).clone();
        policy.default_topic = topic;
        self.policy = Arc::new(policy);
        self
    }

    /// At most `max` connections per client address (0: no limit); `trusted` proxies are not
    /// limited themselves, and name their clients in `X-Forwarded-For`.
    pub fn with_address_limit(mut self, max: usize, trusted: Vec<std::net::IpAddr>) -> Edge {
        let mut policy = (*self.policy).clone();
        policy.per_address = PerAddress::new(max, trusted);
        self.policy = Arc::new(policy);
        self
    }

    /// The per-address connection limit.
    pub(crate) fn per_address(&self) -> &Arc<PerAddress> {
        &self.policy.per_address
    }

    /// The drain window.
    pub fn drain_spread(&self) -> Duration {
        self.policy.drain_spread
    }
}

impl AppState {
    /// The grant of a bearer credential; see `identify`.
    pub(crate) fn authenticate(
        &self,
        bearer: Option<&str>,
    ) -> Result<Arc<tidings_auth::Grant>, tidings_auth::AuthError> {
        self.identify(bearer).map(|caller| caller.grant)
    }

    /// The caller a bearer credential authenticates; a refusal is counted in
    /// `tidings_auth_failures_total` by its reason.
    pub(crate) fn identify(
        &self,
        bearer: Option<&str>,
    ) -> Result<tidings_auth::Caller, tidings_auth::AuthError> {
        self.auth.identify(bearer).inspect_err(|e| {
            use tidings_auth::{AuthError, JwtError};
            self.observers.metrics.auth_failed(match e {
                AuthError::Missing => "missing",
                AuthError::Invalid => "invalid",
                AuthError::Jwt(JwtError::Expired | JwtError::NotYetValid) => "jwt_expired",
                AuthError::Jwt(JwtError::BadSignature) => "jwt_bad_signature",
                AuthError::Jwt(_) => "jwt_invalid",
            })
        })
    }
}

impl Default for Edge {
    /// The configuration's defaults: 30 s, 64 MiB, loopback names only for an open hub.
    fn default() -> Edge {
        Edge::new(Duration::from_secs(30), 64 << 20, Vec::new()).reserve(SYSTEM_TYPES)
    }
}
