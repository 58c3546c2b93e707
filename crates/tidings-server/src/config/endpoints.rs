//! `[[endpoints]]`: extra subscribe routes (file only), checked against each other, the
//! built-in routes and the main listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, bad, patterns};
use crate::endpoint::{
    ClientIdRule, Cors, Endpoint, Handshake, Keepalive, Origins, PathTemplate, SessionNames,
    Sources, TEMPLATE_VARS, Transports, fill_params,
};
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
    /// Route path; `{name}` segments are parameters [default: `/`].
    #[serde(default)]
    pub path: Option<String>,
    /// A fixed selector clients may only narrow; may use the path's `{name}` parameters.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// A query parameter whose value is a topic to subscribe to with its whole subtree
    /// [default: none].
    #[serde(default)]
    pub selector_param: Option<String>,
    /// Where a credential may come from: any of `header`, `ticket`, `query`, `cookie`, or
    /// `none` alone for an anonymous endpoint [default: all].
    #[serde(default)]
    pub credentials: Option<Vec<String>>,
    /// This endpoint's own event names publishers may still use [default: none].
    #[serde(default)]
    pub publishable_events: Vec<String>,
    /// `event` or `envelope` [default: event].
    #[serde(default)]
    pub shape: Option<String>,
    /// SSE `data:`: `payload` (the event's data untouched) or `envelope`
    /// (`{"success":true,"id":…,"data":{"type":…,…}}`) [default: payload].
    #[serde(default)]
    pub sse_data: Option<String>,
    /// SSE answers say `Connection: keep-alive` instead of `connection: close`
    /// [default: false].
    #[serde(default)]
    pub keep_alive_header: Option<bool>,
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
    /// Header carrying the subscriber's client id [default: `X-Client-Id`].
    #[serde(default)]
    pub client_id_header: Option<String>,
    /// Require the client id to be a UUID [default: false].
    #[serde(default)]
    pub client_id_uuid: Option<bool>,
    /// Name of the event that opens a new session [default: `subscribed`].
    #[serde(default)]
    pub subscribed_event: Option<String>,
    /// Name of the event that opens a resumed session [default: `resumed`].
    #[serde(default)]
    pub resumed_event: Option<String>,
    /// Name of an event sent first on every connection [default: none].
    #[serde(default)]
    pub handshake_event: Option<String>,
    /// Its JSON data; `${selector}`, `${clientId}`, `${cursor}`, `${endpoint}` are filled in
    /// [default: `{}`].
    #[serde(default)]
    pub handshake_data: Option<String>,
    /// Keep-alive as this named event instead of an SSE comment [default: none (comment)].
    #[serde(default)]
    pub keepalive_event: Option<String>,
    /// The keep-alive event's JSON data [default: `{}`].
    #[serde(default)]
    pub keepalive_data: Option<String>,
    /// Keep-alive interval on this endpoint, `0s` for none [default: `sse.keepalive`].
    #[serde(default)]
    pub keepalive_interval: Option<String>,
    /// Name of the event that tells a client to reconnect [default: `reconnect-required`].
    #[serde(default)]
    pub reconnect_event: Option<String>,
    /// A synthetic event sent before it when the hub closes a stream [default: none].
    #[serde(default)]
    pub disconnect_event: Option<String>,
    /// Its JSON data; placeholders as in `handshake_data`, plus `${reason}` [default: `{}`].
    #[serde(default)]
    pub disconnect_data: Option<String>,
}

/// The built-in `/events` (with the `[websocket]` Origin list and the main CORS list)
/// followed by every `[[endpoints]]` entry. `open` is true when no auth tokens are configured.
pub(super) fn endpoints(
    ws_allowed_origins: &[String],
    cors: &Cors,
    raw: Vec<RawEndpoint>,
    listen: SocketAddr,
    open: bool,
    session_names: &SessionNames,
) -> Result<Vec<Endpoint>, ConfigError> {
    let mut endpoints = vec![Endpoint {
        cors: cors.clone(),
        session: session_names.clone(),
        ..Endpoint::default_events(origins(ws_allowed_origins))
    }];
    for (i, raw) in raw.into_iter().enumerate() {
        let endpoint = endpoint(&format!("endpoints[{i}]"), raw, session_names)?;
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
        let addr = endpoint.listen.unwrap_or(listen);
        if endpoint.credentials.is_none() && !addr.ip().is_loopback() {
            return Err(bad(
                &format!("endpoints[{i}].listen"),
                format!("{addr} is not a loopback address and the endpoint takes no credentials"),
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

fn endpoint(
    setting: &str,
    raw: RawEndpoint,
    defaults: &SessionNames,
) -> Result<Endpoint, ConfigError> {
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
    let template = PathTemplate::parse(&path).map_err(|e| bad(&format!("{setting}.path"), e))?;
    if raw.topics.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad(
            &format!("{setting}.topics"),
            "must name at least one selector",
        ));
    }
    let params: Vec<String> = template.params().map(str::to_owned).collect();
    let (topics, topic_templates) = match raw.topics {
        None if template.has_params() => {
            return Err(bad(
                &format!("{setting}.topics"),
                "is required on a path with parameters (e.g. `camera/{id}`)",
            ));
        }
        None => (None, Vec::new()),
        Some(t) if template.has_params() => {
            // Each must be a selector once every parameter is filled in, and use only them.
            let sample: Vec<(String, String)> =
                params.iter().map(|p| (p.clone(), "x".to_owned())).collect();
            for (i, t) in t.iter().enumerate() {
                let filled = fill_params(t, &sample);
                if filled.contains(['{', '}']) {
                    return Err(bad(
                        &format!("{setting}.topics[{i}]"),
                        format!("`{t}` names a parameter the path does not have"),
                    ));
                }
                patterns(&format!("{setting}.topics[{i}]"), &[filled])?;
            }
            (None, t)
        }
        Some(t) => (
            Some(patterns(&format!("{setting}.topics"), &t)?),
            Vec::new(),
        ),
    };
    let selector_param = raw.selector_param.filter(|q| !q.is_empty());
    if let Some(q) = &selector_param
        && RESERVED_PARAMS.contains(&q.as_str())
    {
        return Err(bad(
            &format!("{setting}.selector_param"),
            format!("`{q}` is a parameter the hub reads itself"),
        ));
    }
    if selector_param.is_some() && selector_param == raw.query_token {
        return Err(bad(
            &format!("{setting}.selector_param"),
            "must differ from query_token",
        ));
    }
    let credentials = match raw.credentials {
        None => Sources::ALL,
        Some(list) => sources(&format!("{setting}.credentials"), &list)?,
    };
    if credentials.is_none() && topics.is_none() && topic_templates.is_empty() {
        return Err(bad(
            &format!("{setting}.credentials"),
            "`none` needs a fixed selector (`topics`): an anonymous endpoint must not serve every topic",
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
    let sse_envelope = match raw.sse_data.as_deref().unwrap_or("payload") {
        "payload" => false,
        "envelope" => true,
        other => {
            return Err(bad(
                &format!("{setting}.sse_data"),
                format!("`{other}` is not payload or envelope"),
            ));
        }
    };
    let transports = match raw.transports {
        None => Transports::ALL,
        Some(list) => transports(setting, &list)?,
    };
    let mut client_id = ClientIdRule::default();
    if let Some(h) = raw.client_id_header {
        client_id.header = http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
            bad(
                &format!("{setting}.client_id_header"),
                format!("`{h}` is not a header name"),
            )
        })?;
    }
    client_id.uuid = raw.client_id_uuid.unwrap_or(false);
    let session = session_names(
        &format!("{setting}."),
        raw.subscribed_event,
        raw.resumed_event,
        defaults.clone(),
    )?;
    let handshake = match raw.handshake_event {
        None => {
            if raw.handshake_data.is_some() {
                return Err(bad(
                    &format!("{setting}.handshake_data"),
                    "needs handshake_event",
                ));
            }
            None
        }
        Some(name) => {
            let name = event_name(
                &format!("{setting}.handshake_event"),
                Some(name),
                String::new(),
            )?;
            let template = raw.handshake_data.unwrap_or_else(|| "{}".to_owned());
            check_template(&format!("{setting}.handshake_data"), &template, &params)?;
            Some(Handshake { name, template })
        }
    };
    let keepalive = match raw.keepalive_event {
        None => Keepalive::Comment,
        Some(name) => {
            let name = event_name(
                &format!("{setting}.keepalive_event"),
                Some(name),
                String::new(),
            )?;
            let data = raw.keepalive_data.unwrap_or_else(|| "{}".to_owned());
            check_json(&format!("{setting}.keepalive_data"), &data)?;
            Keepalive::Event { name, data }
        }
    };
    let disconnect = match raw.disconnect_event {
        None => {
            if raw.disconnect_data.is_some() {
                return Err(bad(
                    &format!("{setting}.disconnect_data"),
                    "needs disconnect_event",
                ));
            }
            None
        }
        Some(name) => {
            let name = event_name(
                &format!("{setting}.disconnect_event"),
                Some(name),
                String::new(),
            )?;
            let template = raw.disconnect_data.unwrap_or_else(|| "{}".to_owned());
            check_template(&format!("{setting}.disconnect_data"), &template, &params)?;
            Some(Handshake { name, template })
        }
    };
    let reconnect_event = event_name(
        &format!("{setting}.reconnect_event"),
        raw.reconnect_event,
        "reconnect-required".to_owned(),
    )?;
    let keepalive_interval = raw
        .keepalive_interval
        .map(|d| super::duration(&format!("{setting}.keepalive_interval"), Some(&d), "0s"))
        .transpose()?;
    let mut endpoint = Endpoint {
        name: raw.name,
        listen,
        path,
        template,
        topics,
        topic_templates,
        selector_param,
        sse_envelope,
        keep_alive_header: raw.keep_alive_header.unwrap_or(false),
        credentials,
        publishable: Vec::new(),
        shape,
        query_token: raw.query_token.filter(|q| !q.is_empty()),
        origins: origins(&raw.allowed_origins),
        transports,
        cors: cors(&format!("{setting}.cors_origins"), raw.cors_origins)?,
        client_id,
        session,
        handshake,
        keepalive,
        keepalive_interval,
        reconnect_event,
        disconnect,
    };
    for (i, name) in raw.publishable_events.into_iter().enumerate() {
        if !endpoint.system_names().contains(&name.as_str()) {
            return Err(bad(
                &format!("{setting}.publishable_events[{i}]"),
                format!("`{name}` is not one of this endpoint's own event names"),
            ));
        }
        endpoint.publishable.push(name);
    }
    Ok(endpoint)
}

/// Query parameters the subscribe route reads itself, which `selector_param` may not take.
const RESERVED_PARAMS: [&str; 8] = [
    "topic",
    "type",
    "lastEventId",
    "clientId",
    "format",
    "poll",
    "timeout",
    "ticket",
];

fn sources(setting: &str, list: &[String]) -> Result<Sources, ConfigError> {
    if list.iter().any(|s| s == "none") {
        if list.len() > 1 {
            return Err(bad(setting, "`none` stands alone"));
        }
        return Ok(Sources::NONE);
    }
    if list.is_empty() {
        return Err(bad(
            setting,
            "must name at least one source (or `none` for an anonymous endpoint)",
        ));
    }
    let mut s = Sources::NONE;
    for name in list {
        match name.as_str() {
            "header" => s.header = true,
            "ticket" => s.ticket = true,
            "query" => s.query = true,
            "cookie" => s.cookie = true,
            other => {
                return Err(bad(
                    setting,
                    format!("`{other}` is not one of header, ticket, query, cookie, none"),
                ));
            }
        }
    }
    Ok(s)
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

/// A handshake template: only known placeholders (and the path's parameters), and JSON once
/// they are filled in.
fn check_template(setting: &str, template: &str, params: &[String]) -> Result<(), ConfigError> {
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| bad(setting, "a `${` is not closed"))?;
        let name = &after[..end];
        if !TEMPLATE_VARS.contains(&name) && !params.iter().any(|p| p == name) {
            return Err(bad(
                setting,
                format!(
                    "`${{{name}}}` is not one of {} or a path parameter",
                    TEMPLATE_VARS.join(", ")
                ),
            ));
        }
        rest = &after[end + 1..];
    }
    let sample: Vec<(&str, &str)> = TEMPLATE_VARS
        .iter()
        .copied()
        .chain(params.iter().map(String::as_str))
        .map(|v| (v, "x"))
        .collect();
    check_json(setting, &crate::endpoint::render(template, &sample))
}

fn check_json(setting: &str, text: &str) -> Result<(), ConfigError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| bad(setting, format!("is not JSON: {e}")))
}

/// An event name the hub sends itself: a valid event type.
/// The names of the session events, `{prefix}subscribed_event` and `{prefix}resumed_event`
/// given or else `defaults`'. The two must differ, or a client could not tell them apart.
pub(super) fn session_names(
    prefix: &str,
    subscribed: Option<String>,
    resumed: Option<String>,
    defaults: SessionNames,
) -> Result<SessionNames, ConfigError> {
    let (sub_key, res_key) = if prefix.is_empty() {
        (
            "session_subscribed_event".to_owned(),
            "session_resumed_event".to_owned(),
        )
    } else {
        (
            format!("{prefix}subscribed_event"),
            format!("{prefix}resumed_event"),
        )
    };
    let names = SessionNames {
        subscribed: event_name(&sub_key, subscribed, defaults.subscribed)?,
        resumed: event_name(&res_key, resumed, defaults.resumed)?,
    };
    if names.subscribed == names.resumed {
        return Err(bad(
            &res_key,
            "must differ from the subscribed event's name",
        ));
    }
    Ok(names)
}

fn event_name(setting: &str, raw: Option<String>, default: String) -> Result<String, ConfigError> {
    let Some(name) = raw else { return Ok(default) };
    tidings_proto::EventType::new(&name).map_err(|e| bad(setting, format!("`{name}` {e}")))?;
    Ok(name)
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
