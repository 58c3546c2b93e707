//! `Endpoint`: a configured subscribe route — its path, optionally its own port, the selector
//! it serves, the JSON frame shape, where credentials may come from, which Origins may open a
//! WebSocket, and which transports it speaks. The built-in `/events` is one; profiles (NZB
//! Flow's WebSocket on port 3001, …) are others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tidings_proto::Pattern;

use crate::transport::frame::Shape;

/// Which transports an endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// `text/event-stream`.
    pub sse: bool,
    /// WebSocket upgrade.
    pub websocket: bool,
    /// `application/x-ndjson` streaming.
    pub ndjson: bool,
    /// Long-poll (`poll=1`).
    pub poll: bool,
}

impl Transports {
    /// Every transport.
    pub const ALL: Transports = Transports {
        sse: true,
        websocket: true,
        ndjson: true,
        poll: true,
    };
}

/// Who may open a WebSocket, by the `Origin` header (checked before the upgrade, against
/// cross-site WebSocket hijacking). A request without `Origin` (not a browser) is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Only the origin whose host is the request's `Host`.
    SameOrigin,
    /// Any origin (`*`).
    Any,
    /// These exact origins, e.g. `https://app.example.com`.
    List(Vec<String>),
}

impl Origins {
    /// Whether a request with `origin` to `host` may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            Origins::SameOrigin => {
                let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
                host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
            }
        }
    }
}

/// Which browser origins may read answers cross-origin (CORS), with credentials: exact
/// origins such as `https://app.example.com`. Empty: no CORS headers are sent, so a browser
/// lets only same-origin pages read the answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors(Arc<[String]>);

impl Cors {
    /// CORS for these exact origins.
    pub fn new(origins: Vec<String>) -> Cors {
        Cors(origins.into())
    }

    /// Whether any origin is allowed.
    pub fn is_on(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `origin` (a request's `Origin`) is one of the allowed ones. Compared
    /// byte for byte but for ASCII case: `https://app.example.com.evil` is another origin.
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// One subscribe route.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name, for logs and errors.
    pub name: String,
    /// Its own listen address, or `None` for the main listener.
    pub listen: Option<SocketAddr>,
    /// Route path, e.g. `/events` or `/`.
    pub path: String,
    /// A fixed selector: clients may narrow it with `topic=`, never widen it. `None`: clients
    /// choose (default `*`).
    pub topics: Option<Vec<Pattern>>,
    /// Shape of JSON frames (WebSocket, NDJSON, long-poll).
    pub shape: Shape,
    /// A query parameter that may carry the credential (e.g. `token`), for clients that
    /// cannot set headers. Its value is never logged.
    pub query_token: Option<String>,
    /// WebSocket Origin policy.
    pub origins: Origins,
    /// Transports served.
    pub transports: Transports,
    /// Origins whose pages may read this endpoint's answers (CORS).
    pub cors: Cors,
}

impl Endpoint {
    /// The built-in `/events` endpoint on the main listener.
    pub fn default_events(origins: Origins) -> Endpoint {
        Endpoint {
            name: "events".to_owned(),
            listen: None,
            path: "/events".to_owned(),
            topics: None,
            shape: Shape::Event,
            query_token: None,
            origins,
            transports: Transports::ALL,
            cors: Cors::default(),
        }
    }
}

/// Per-connection transport settings shared by every endpoint.
#[derive(Debug, Clone, Copy)]
pub struct TransportOptions {
    /// SSE keepalive comment / NDJSON empty line interval (`None`: off).
    pub keepalive: Option<Duration>,
    /// SSE `retry:` hint.
    pub retry: Duration,
    /// Interval of WebSocket pings.
    pub ws_ping_interval: Duration,
    /// How long a pong may take before the connection is closed.
    pub ws_pong_timeout: Duration,
    /// Largest message a WebSocket client may send.
    pub ws_max_message_bytes: usize,
    /// Longest a long-poll waits for events.
    pub poll_timeout: Duration,
    /// Longest a write may stay blocked (a client that stopped reading) before the
    /// connection is dropped.
    pub write_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            keepalive: Some(Duration::from_secs(30)),
            retry: Duration::from_secs(2),
            ws_ping_interval: Duration::from_secs(25),
            ws_pong_timeout: Duration::from_secs(10),
            ws_max_message_bytes: 64 << 10,
            poll_timeout: Duration::from_secs(25),
            write_timeout: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_policies() {
        let same = Origins::SameOrigin;
        assert!(same.allows(None, Some("hub:1700")));
        assert!(same.allows(Some("http://hub:1700"), Some("hub:1700")));
        assert!(!same.allows(Some("http://evil.example"), Some("hub:1700")));
        let list = Origins::List(vec!["https://app.example".into()]);
        assert!(list.allows(Some("https://app.example"), Some("hub")));
        assert!(!list.allows(Some("https://app.example.evil"), Some("hub")));
        assert!(Origins::Any.allows(Some("null"), None));
    }
}
