//! `[[endpoints]]`: extra subscribe routes (file only), checked against each other, the
//! built-in routes and the main listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad, patterns};
use crate::endpoint::{Cors, Endpoint, Origins, Transports};
use crate::transport::frame::Shape;

/// `[[endpoints]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Name for logs and errors.
    pub name: String,
    /// Its own `IP:port`; omit to serve on the main listener.
    #[serde(default)]
    pub listen: Option<String>,
    /// Route path [default: `/`].
    #[serde(default)]
    pub path: Option<String>,
    /// A fixed selector clients may only narrow.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// `event` or `envelope` [default: event].
    #[serde(default)]
    pub shape: Option<String>,
    /// Query parameter that may carry the token.
    #[serde(default)]
    pub query_token: Option<String>,
    /// WebSocket Origin allow-list (`*` for any) [default: same origin].
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Any of `sse`, `websocket`, `ndjson`, `poll` [default: all].
    #[serde(default)]
    pub transports: Option<Vec<String>>,
    /// Origins whose pages may read this endpoint's answers, with credentials (CORS)
    /// [default: none].
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

/// The built-in `/events` (with the `[websocket]` Origin list and the main CORS list)
/// followed by every `[[endpoints]]` entry. `open` is true when no auth tokens are configured.
pub(super) fn endpoints(
    ws_allowed_origins: &[String],
    cors: &Cors,
    raw: Vec<RawEndpoint>,
    listen: SocketAddr,
    open: bool,
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut endpoints = vec![Endpoint {
        cors: cors.clone(),
        ..Endpoint::default_events(origins(ws_allowed_origins))
    }];
    for (i, raw) in raw.into_iter().enumerate() {
        let endpoint = endpoint(&format!("endpoints[{i}]"), raw)?;
        // Port 0 asks the OS for a free port, so it never clashes.
        let same_socket = |a: Option<SocketAddr>, b: Option<SocketAddr>| {
            a == b && a.is_none_or(|a| a.port() != 0)
        };
        let clash = endpoints.iter().find(|e| {
            e.name == endpoint.name
                || (same_socket(e.listen, endpoint.listen) && e.path == endpoint.path)
        });
        if let Some(other) = clash {
            return Err(bad(
                &format!("endpoints[{i}]"),
                format!("name or listen+path clashes with endpoint `{}`", other.name),
            ));
        }
        if endpoint.listen.is_none()
            && ["/publish", "/tickets", "/healthz", "/readyz"].contains(&endpoint.path.as_str())
        {
            return Err(bad(
                &format!("endpoints[{i}].path"),
                format!("`{}` is a built-in route", endpoint.path),
            ));
        }
        if endpoint.listen == Some(listen) && listen.port() != 0 {
            return Err(bad(
                &format!("endpoints[{i}].listen"),
                "is the main listen address; omit it to use the main listener",
            ));
        }
        if let Some(addr) = endpoint.listen
            && open
            && !addr.ip().is_loopback()
        {
            return Err(bad(
                &format!("endpoints[{i}].listen"),
                format!("{addr} is not a loopback address and no auth tokens are configured"),
            ));
        }
        endpoints.push(endpoint);
    }
    Ok(endpoints)
}

fn origins(list: &[String]) -> Origins {
    if list.is_empty() {
        Origins::SameOrigin
    } else if list.iter().any(|o| o == "*") {
        Origins::Any
    } else {
        Origins::List(list.to_vec())
    }
}

fn endpoint(setting: &str, raw: RawEndpoint) -> Result<Endpoint, ConfigError> {
    if raw.name.is_empty() || raw.name.chars().any(|c| c.is_control()) {
        return Err(bad(&format!("{setting}.name"), "must be a non-empty name"));
    }
    let listen = raw
        .listen
        .map(|l| {
            l.parse().map_err(|_| {
                bad(
                    &format!("{setting}.listen"),
                    format!("`{l}` is not an IP:port address"),
                )
            })
        })
        .transpose()?;
    let path = raw.path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.contains(['{', '}', '*', '?', '#']) {
        return Err(bad(
            &format!("{setting}.path"),
            format!("`{path}` must start with / and contain no {{ }} * ? #"),
        ));
    }
    let topics = raw
        .topics
        .map(|t| patterns(&format!("{setting}.topics"), &t))
        .transpose()?;
    if topics.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad(
            &format!("{setting}.topics"),
            "must name at least one selector",
        ));
    }
    let shape = match raw.shape.as_deref().unwrap_or("event") {
        "event" => Shape::Event,
        "envelope" => Shape::Envelope,
        other => {
            return Err(bad(
                &format!("{setting}.shape"),
                format!("`{other}` is not event or envelope"),
            ));
        }
    };
    let transports = match raw.transports {
        None => Transports::ALL,
        Some(list) => transports(setting, &list)?,
    };
    Ok(Endpoint {
        name: raw.name,
        listen,
        path,
        topics,
        shape,
        query_token: raw.query_token.filter(|q| !q.is_empty()),
        origins: origins(&raw.allowed_origins),
        transports,
        cors: cors(&format!("{setting}.cors_origins"), raw.cors_origins)?,
    })
}

/// A CORS list: exact `scheme://host[:port]` origins (no `*`: answers carry credentials).
pub(super) fn cors(setting: &str, list: Vec<String>) -> Result<Cors, ConfigError> {
    for (i, origin) in list.iter().enumerate() {
        let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', '@', ' ', '*'])
        }) && !origin.chars().any(char::is_control);
        if !valid {
            return Err(bad(
                &format!("{setting}[{i}]"),
                format!(
                    "`{origin}` is not an exact origin like https://app.example.com (no path, \
                     no wildcard: CORS answers here carry credentials)"
                ),
            ));
        }
    }
    Ok(Cors::new(list))
}

fn transports(setting: &str, list: &[String]) -> Result<Transports, ConfigError> {
    let mut t = Transports {
        sse: false,
        websocket: false,
        ndjson: false,
        poll: false,
    };
    for name in list {
        match name.as_str() {
            "sse" => t.sse = true,
            "websocket" => t.websocket = true,
            "ndjson" => t.ndjson = true,
            "poll" => t.poll = true,
            other => {
                return Err(bad(
                    &format!("{setting}.transports"),
                    format!("`{other}` is not one of sse, websocket, ndjson, poll"),
                ));
            }
        }
    }
    if list.is_empty() {
        return Err(bad(
            &format!("{setting}.transports"),
            "must name at least one transport",
        ));
    }
    Ok(t)
}
