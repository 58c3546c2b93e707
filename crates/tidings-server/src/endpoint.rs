//! `Endpoint`: a configured subscribe route — its path, optionally its own port, the selector
//! it serves, the JSON frame shape, where credentials may come from, which Origins may open a
//! WebSocket, which transports it speaks, where a client id comes from, and the names of the
//! events the hub sends itself. The built-in `/events` is one; profiles (NZB
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

/// Where a subscriber's client id comes from, and what it must look like.
#[derive(Debug, Clone)]
pub struct ClientIdRule {
    /// The header carrying it [default: `X-Client-Id`]; the `clientId` query parameter is
    /// the alternative for browsers.
    pub header: http::HeaderName,
    /// It must be a UUID (Cloudreve's `X-Cr-Client-Id` is); otherwise any printable ASCII up
    /// to 64 bytes.
    pub uuid: bool,
}

impl Default for ClientIdRule {
    fn default() -> Self {
        ClientIdRule {
            header: http::HeaderName::from_static("x-client-id"),
            uuid: false,
        }
    }
}

/// The names of the events that open a stream with a client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionNames {
    /// A new session (new id, expired, or evicted) [default: `subscribed`].
    pub subscribed: String,
    /// A live session was resumed [default: `resumed`].
    pub resumed: String,
}

impl Default for SessionNames {
    fn default() -> Self {
        SessionNames {
            subscribed: "subscribed".to_owned(),
            resumed: "resumed".to_owned(),
        }
    }
}

/// An event sent first on every connection to an endpoint (the camera server's `connected`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Its event name.
    pub name: String,
    /// Its JSON data, with `${selector}` (the subscribed topics, comma-separated), `${clientId}`
    /// (empty without one), `${cursor}` (the id the stream starts after) and `${endpoint}`
    /// replaced (JSON-escaped, for use inside a JSON string).
    pub template: String,
}

/// Placeholders a handshake or synthetic-event template may use (`reason` is empty in a
/// handshake).
pub const TEMPLATE_VARS: [&str; 5] = ["selector", "clientId", "cursor", "endpoint", "reason"];

impl Handshake {
    /// The template with `vars` filled in. Unknown placeholders are refused at configuration.
    pub fn render(&self, vars: &[(&str, &str)]) -> String {
        render(&self.template, vars)
    }
}

/// Replaces each `${name}` in `template` with its value, JSON-escaped.
pub(crate) fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let name = &after[..end];
        match vars.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => {
                let quoted = serde_json::to_string(v).expect("a string serializes");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            None => out.push_str(&rest[at..at + 3 + end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// How an idle stream shows it is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keepalive {
    /// An SSE comment (`: keepalive`); an empty line on NDJSON.
    Comment,
    /// A named event with JSON data (Cloudreve's `keep-alive`); a control frame on NDJSON.
    Event {
        /// Its name.
        name: String,
        /// Its JSON data.
        data: String,
    },
}

/// Where a subscribe request's credential may come from (in this order of precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// `Authorization: Bearer`.
    pub header: bool,
    /// `?ticket=` (a one-time ticket from `POST /tickets`).
    pub ticket: bool,
    /// The endpoint's query token parameter (`query_token`).
    pub query: bool,
    /// The credential cookie.
    pub cookie: bool,
}

impl Sources {
    /// Every source.
    pub const ALL: Sources = Sources {
        header: true,
        ticket: true,
        query: true,
        cookie: true,
    };
    /// None: the endpoint needs no credential (its fixed selector is open to anyone who can
    /// reach its address).
    pub const NONE: Sources = Sources {
        header: false,
        ticket: false,
        query: false,
        cookie: false,
    };

    /// Whether no source is accepted (an anonymous endpoint).
    pub fn is_none(self) -> bool {
        self == Sources::NONE
    }
}

/// A route path with `{name}` segments (`/api/cameras/{id}/events`), matched a segment at a
/// time. A parameter's value must be one safe topic segment (see [`param_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Longest value a path parameter may take, in bytes.
pub const MAX_PARAM_BYTES: usize = 128;

/// A path parameter's value, if it is one safe topic segment: 1 to `MAX_PARAM_BYTES` bytes of
/// ASCII letters, digits and `-_.~:@+`, and not `.` or `..`. Nothing that could widen a
/// selector (`*`, `/`) or fill a placeholder (`$`, `{`) gets through.
pub fn param_value(raw: &str) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_PARAM_BYTES
        && raw != "."
        && raw != ".."
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~:@+".contains(&b));
    ok.then_some(raw)
}

impl PathTemplate {
    /// Parses `path`; `Err` names what is wrong. A parameter is a whole segment `{name}`, its
    /// name ASCII letters, digits and `_`, each name once.
    pub fn parse(path: &str) -> Result<PathTemplate, String> {
        if !path.starts_with('/') || path.contains(['*', '?', '#']) {
            return Err(format!("`{path}` must start with / and contain no * ? #"));
        }
        let mut segments = Vec::new();
        for seg in path[1..].split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!(
                        "`{{{name}}}` is not a parameter name (letters, digits, _)"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) if n == name))
                {
                    return Err(format!("parameter `{{{name}}}` appears twice"));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "segment `{seg}`: a parameter is a whole segment, like {{id}}"
                ));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(PathTemplate { segments })
    }

    /// The parameter names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the path has parameters.
    pub fn has_params(&self) -> bool {
        self.params().next().is_some()
    }

    /// The parameters of `path` if it matches: `Some(Ok(values))`; `Some(Err(name))` when it
    /// has the template's shape but a value is not a safe segment; `None` when it does not
    /// match.
    pub fn captures(&self, path: &str) -> Option<Result<Vec<(String, String)>, String>> {
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut values = Vec::new();
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    // Not percent-decoded: a safe segment needs no escapes, so `%` is refused.
                    match param_value(part) {
                        Some(v) => values.push((name.clone(), v.to_owned())),
                        None => return Some(Err(name.clone())),
                    }
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Ok(values))
    }
}

/// `template` with each `{name}` replaced by its value in `params` (values are safe segments).
pub fn fill_params(template: &str, params: &[(String, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// One subscribe route.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name, for logs and errors.
    pub name: String,
    /// Its own listen address, or `None` for the main listener.
    pub listen: Option<SocketAddr>,
    /// Route path, e.g. `/events` or `/`; `{name}` segments are parameters
    /// (`/api/cameras/{id}/events`).
    pub path: String,
    /// The path, parsed.
    pub template: PathTemplate,
    /// A fixed selector: clients may narrow it with `topic=`, never widen it. `None`: clients
    /// choose (default `*`). On a path with parameters these are `topic_templates` filled in.
    pub topics: Option<Vec<Pattern>>,
    /// The fixed selector with `{name}` path parameters (`camera/{id}`), filled per request.
    pub topic_templates: Vec<String>,
    /// A query parameter whose value is a topic the client subscribes to with everything
    /// under it (Cloudreve's `uri=cloudreve://my`), besides `topic=`.
    pub selector_param: Option<String>,
    /// Where credentials may come from; none: anonymous (a fixed selector is required).
    pub credentials: Sources,
    /// This endpoint's own event names that publishers may still use (the camera server's
    /// `connected` is both its handshake and a real camera's connect).
    pub publishable: Vec<String>,
    /// Shape of JSON frames (WebSocket, NDJSON, long-poll).
    pub shape: Shape,
    /// SSE `data:` is each event's envelope frame instead of its payload untouched.
    pub sse_envelope: bool,
    /// SSE answers say `Connection: keep-alive` (the download manager's document lists it)
    /// instead of `connection: close`; the stream's end is still the connection's.
    pub keep_alive_header: bool,
    /// A query parameter that may carry the credential (e.g. `token`), for clients that
    /// cannot set headers. Its value is never logged.
    pub query_token: Option<String>,
    /// WebSocket Origin policy.
    pub origins: Origins,
    /// Transports served.
    pub transports: Transports,
    /// Origins whose pages may read this endpoint's answers (CORS).
    pub cors: Cors,
    /// Where the client id comes from and its form.
    pub client_id: ClientIdRule,
    /// Names of the session events.
    pub session: SessionNames,
    /// The first event on connect, if any.
    pub handshake: Option<Handshake>,
    /// The keep-alive style.
    pub keepalive: Keepalive,
    /// The keep-alive interval of this endpoint (`Some(0)`: off); `None`: `--sse-keepalive`.
    pub keepalive_interval: Option<Duration>,
    /// Name of the event that tells a client to reconnect [default: `reconnect-required`].
    pub reconnect_event: String,
    /// A synthetic event sent before it when the hub closes a stream (a drain, a shutdown, an
    /// admin reconnect): the camera server's `disconnected` with `${reason}`.
    pub disconnect: Option<Handshake>,
}

impl Endpoint {
    /// The topics this endpoint's streams can carry (`None`: any), for scoping its reserved
    /// names: a fixed selector, with a path parameter and what follows widened to `*`.
    pub fn scope(&self) -> Option<Vec<Pattern>> {
        if !self.topic_templates.is_empty() {
            return self
                .topic_templates
                .iter()
                .map(|t| {
                    let cut = t.find('{').map_or(t.as_str(), |at| &t[..at]);
                    Pattern::parse(&format!("{cut}*")).ok()
                })
                .collect();
        }
        self.topics.clone()
    }

    /// The event names this endpoint sends itself, which no publisher may use on the topics
    /// it serves (but those it lists as `publishable`).
    pub fn reserved_names(&self) -> Vec<&str> {
        self.system_names()
            .into_iter()
            .filter(|n| !self.publishable.iter().any(|p| p == n))
            .collect()
    }

    /// The event names this endpoint sends itself.
    pub fn system_names(&self) -> Vec<&str> {
        let mut names = vec![
            self.session.subscribed.as_str(),
            self.session.resumed.as_str(),
        ];
        if let Some(h) = &self.handshake {
            names.push(h.name.as_str());
        }
        if let Keepalive::Event { name, .. } = &self.keepalive {
            names.push(name.as_str());
        }
        names.push(self.reconnect_event.as_str());
        if let Some(d) = &self.disconnect {
            names.push(d.name.as_str());
        }
        names
    }

    /// The keep-alive interval on this endpoint, given the server-wide one.
    pub fn keepalive_every(&self, default: Option<Duration>) -> Option<Duration> {
        match self.keepalive_interval {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => default,
        }
    }
}

impl Endpoint {
    /// The built-in `/events` endpoint on the main listener.
    pub fn default_events(origins: Origins) -> Endpoint {
        Endpoint {
            name: "events".to_owned(),
            listen: None,
            path: "/events".to_owned(),
            template: PathTemplate::parse("/events").expect("a plain path"),
            topics: None,
            topic_templates: Vec::new(),
            selector_param: None,
            credentials: Sources::ALL,
            publishable: Vec::new(),
            shape: Shape::Event,
            sse_envelope: false,
            keep_alive_header: false,
            query_token: None,
            origins,
            transports: Transports::ALL,
            cors: Cors::default(),
            client_id: ClientIdRule::default(),
            session: SessionNames::default(),
            handshake: None,
            keepalive: Keepalive::Comment,
            keepalive_interval: None,
            reconnect_event: "reconnect-required".to_owned(),
            disconnect: None,
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
    fn templates_fill_known_names_escaped_and_keep_the_rest() {
        let h = Handshake {
            name: "connected".into(),
            template: r#"{"cameraId":"${selector}","c":"${clientId}","x":"${nope}"}"#.into(),
        };
        assert_eq!(
            h.render(&[("selector", "cam/\"1\""), ("clientId", "")]),
            r#"{"cameraId":"cam/\"1\"","c":"","x":"${nope}"}"#
        );
        assert_eq!(render("${unclosed", &[]), "${unclosed");
    }

    #[test]
    fn path_templates_capture_safe_segments_only() {
        let t = PathTemplate::parse("/api/cameras/{id}/events").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["id"]);
        let ok = |p: &str| t.captures(p).map(|r| r.map(|v| v[0].1.clone()));
        assert_eq!(ok("/api/cameras/SN42/events"), Some(Ok("SN42".into())));
        assert_eq!(
            ok("/api/cameras/a-b_c.d~e:f@g+h/events"),
            Some(Ok("a-b_c.d~e:f@g+h".into()))
        );
        for bad in ["a*b", "..", ".", "a%2Fb", "${x}", "{id}", ""] {
            assert_eq!(
                ok(&format!("/api/cameras/{bad}/events")),
                Some(Err("id".into())),
                "{bad}"
            );
        }
        assert_eq!(
            ok(&format!("/api/cameras/{}/events", "x".repeat(129))),
            Some(Err("id".into()))
        );
        for other in [
            "/api/cameras/events",
            "/api/cameras/x/events/more",
            "/api/events",
            "api/cameras/x/events",
        ] {
            assert_eq!(ok(other), None, "{other}");
        }
        assert!(!PathTemplate::parse("/events").unwrap().has_params());
        for bad in [
            "/c/{a}/{a}",
            "/c/x{a}",
            "/c/{}",
            "/c/{a-b}",
            "events",
            "/c/*",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            fill_params("camera/{id}", &[("id".into(), "SN42".into())]),
            "camera/SN42"
        );
    }

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
