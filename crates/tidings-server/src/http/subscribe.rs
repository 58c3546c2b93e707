//! Subscribe routes: one handler serves every endpoint and every transport. It reads the
//! selector, cursor and credential, checks grants (and, for a WebSocket, the Origin) before
//! anything is opened, then hands the `Subscription` to the transport the request asks for:
//! a WebSocket upgrade, `poll=1` (long-poll), `format=ndjson` or `Accept:
//! application/x-ndjson` (NDJSON), otherwise SSE.
//!
//! Query: `topic` (repeatable selector; default `*`, or the endpoint's fixed selector),
//! `type` (repeatable filter), `lastEventId` (for clients that cannot set `Last-Event-ID`,
//! which wins), `clientId` (for clients that cannot set the endpoint's client-id header,
//! which wins), `format`, `poll`, `timeout` (long-poll seconds, capped by the server's
//! limit), `ticket` (a one-time connect ticket from `POST /tickets`), `snapshot` (`1`: first
//! the newest event per key under the selector, then a `snapshot` control event whose id is
//! the cursor, then the events after it; ignored with a cursor, which resumes instead; not
//! with a client id), and the endpoint's token parameter if it has one. Parameters starting with `_`
//! are ignored (cache busters); any other unknown one is a 400, so a typo never silently
//! subscribes to something else.
//!
//! Errors a retry cannot fix (bad selector, bad credential, no grant, Origin) are answered
//! with a 4xx JSON body, which also stops a browser's `EventSource` from retrying; so is a
//! store that is poisoned (503 `store_unavailable`: an operator must act). The rest (a bad
//! cursor, a slow consumer, shutdown, history found unreadable while streaming) is said
//! in-band.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, UPGRADE};
use http::{HeaderMap, HeaderValue};
use tidings_auth::Caller;
use tidings_core::{SubscribeRequest, Subscription};

use crate::tracked::{RemoteAddr, Tracked, Transport};
use tidings_proto::{Cursor, ErrorCode, EventType, Pattern, Selector};
use tokio::time::Instant;

use super::error::HttpError;
use super::{client_id, extract};
use crate::credential::Lease;
use crate::endpoint::Endpoint;
use crate::listener::AddressSlot;
use crate::state::AppState;
use crate::transport::frame::Shape;
use crate::transport::{poll, stream, ws};

/// State of one endpoint's route.
#[derive(Debug, Clone)]
pub(crate) struct EndpointState {
    pub(crate) app: AppState,
    pub(crate) endpoint: Arc<Endpoint>,
}

#[derive(Debug, Default)]
struct Query {
    patterns: Vec<Pattern>,
    types: Vec<EventType>,
    cursor: Option<Cursor>,
    token: Option<String>,
    ticket: Option<String>,
    ndjson: bool,
    poll: bool,
    timeout: Option<Duration>,
    client_id: Option<String>,
    snapshot: bool,
}

fn parse_query(raw: Option<&str>, endpoint: &Endpoint, app: &AppState) -> Result<Query, HttpError> {
    let limits = app.hub.limits();
    let mut q = Query::default();
    let invalid = |msg: String| HttpError::new(ErrorCode::InvalidParameter, msg);
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*name {
            "topic" | "type" => {
                selector_param(&name, &value, limits, &mut q.patterns, &mut q.types)?;
            }
            "lastEventId" => q.cursor = Cursor::parse(&value),
            "clientId" => q.client_id = Some(value.into_owned()),
            "format" => match &*value {
                "ndjson" => q.ndjson = true,
                "sse" => q.ndjson = false,
                other => return Err(invalid(format!("format: `{other}` is not sse or ndjson"))),
            },
            "poll" => match &*value {
                "1" | "true" => q.poll = true,
                "0" | "false" => q.poll = false,
                other => return Err(invalid(format!("poll: `{other}` is not 1 or 0"))),
            },
            "timeout" => {
                let secs: u64 = value.parse().map_err(|_| {
                    invalid(format!("timeout: `{value}` is not a number of seconds"))
                })?;
                q.timeout = Some(Duration::from_secs(secs));
            }
            "ticket" => q.ticket = Some(value.into_owned()),
            "snapshot" => q.snapshot = flag("snapshot", &value)?,
            other if endpoint.selector_param.as_deref() == Some(other) => {
                if q.patterns.len() + 2 > limits.max_patterns {
                    return Err(HttpError::new(
                        ErrorCode::InvalidTopic,
                        format!("{other}: more than {} selectors", limits.max_patterns),
                    ));
                }
                q.patterns.extend(subtree(other, &value)?);
            }
            other if endpoint.query_token.as_deref() == Some(other) => {
                q.token = Some(value.into_owned());
            }
            other if other.starts_with('_') => {}
            other => {
                return Err(invalid(format!(
                    "query parameter `{other}` is not known; use topic, type, lastEventId, clientId, format, poll, timeout, ticket, snapshot"
                )));
            }
        }
    }
    Ok(q)
}

/// A `1`/`true` or `0`/`false` query flag.
/// A `topic` or `type` query parameter, checked and added to `patterns` or `types` within
/// the hub's limits (`GET /events` and `GET /snapshot` read them alike).
pub(crate) fn selector_param(
    name: &str,
    value: &str,
    limits: &tidings_core::Limits,
    patterns: &mut Vec<Pattern>,
    types: &mut Vec<EventType>,
) -> Result<(), HttpError> {
    if name == "topic" {
        if patterns.len() >= limits.max_patterns {
            return Err(HttpError::new(
                ErrorCode::InvalidTopic,
                format!("topic: more than {} selectors", limits.max_patterns),
            ));
        }
        patterns.push(Pattern::parse(value).map_err(|e| {
            HttpError::new(ErrorCode::InvalidTopic, format!("topic `{value}`: {e}"))
        })?);
    } else {
        if types.len() >= limits.max_types {
            return Err(HttpError::new(
                ErrorCode::InvalidType,
                format!("type: more than {} types", limits.max_types),
            ));
        }
        types.push(
            EventType::new(value).map_err(|e| {
                HttpError::new(ErrorCode::InvalidType, format!("type `{value}`: {e}"))
            })?,
        );
    }
    Ok(())
}

fn flag(name: &str, value: &str) -> Result<bool, HttpError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(HttpError::new(
            ErrorCode::InvalidParameter,
            format!("{name}: `{other}` is not 1 or 0"),
        )),
    }
}

/// A topic and everything under it: `cloudreve://my` → `cloudreve://my` and
/// `cloudreve://my/*` (a trailing `/` is the same folder).
fn subtree(param: &str, value: &str) -> Result<[Pattern; 2], HttpError> {
    let bad =
        |e: String| HttpError::new(ErrorCode::InvalidTopic, format!("{param} `{value}`: {e}"));
    let trimmed = value.strip_suffix('/').unwrap_or(value);
    let exact = tidings_proto::Topic::new(trimmed).map_err(|e| bad(e.to_string()))?;
    let under = Pattern::parse(&format!("{trimmed}/*")).map_err(|e| bad(e.to_string()))?;
    Ok([Pattern::Exact(exact), under])
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"))
}

/// Starts the prepared subscription with a snapshot if the request asks for one
/// (`snapshot=1` without a cursor; `prepare` has checked the rest).
pub(crate) async fn with_snapshot(
    parts: &http::request::Parts,
    mut prepared: Prepared,
) -> Result<Prepared, HttpError> {
    if snapshot_requested(parts) {
        let sub = match &mut prepared {
            Prepared::WebSocket(sub, ..) | Prepared::Poll(sub, ..) | Prepared::Stream(sub, ..) => {
                sub
            }
        };
        sub.subscription().load_snapshot().await?;
    }
    Ok(prepared)
}

/// `snapshot=1` and no cursor (header or `lastEventId`): a cursor resumes instead, so an
/// `EventSource` that reconnects to the same URL resumes after its last id.
pub(crate) fn snapshot_requested(parts: &http::request::Parts) -> bool {
    if !may_name(parts.uri.query(), "snapshot") {
        return false;
    }
    let query = || form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes());
    query().any(|(k, v)| k == "snapshot" && (v == "1" || v == "true"))
        && !query().any(|(k, _)| k == "lastEventId")
        && !parts.headers.contains_key("last-event-id")
}

/// A subscription ready for its transport.
pub(crate) enum Prepared {
    /// Upgrade to a WebSocket speaking `shape`, until the credential's expiry.
    WebSocket(Tracked, Shape, Lease, Arc<Endpoint>),
    /// Answer one long-poll.
    Poll(Tracked, Shape, Duration),
    /// Stream SSE or NDJSON, until the credential's expiry.
    Stream(Tracked, stream::Format, Lease, Arc<Endpoint>),
}

pub(crate) async fn subscribe(State(ctx): State<EndpointState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let parts_keep_alive = parts.version == http::Version::HTTP_11;
    if ctx.app.hub.is_clustered() {
        catch_up(&ctx, &parts).await;
    }
    let prepared = match prepare(&ctx, &parts) {
        Ok(p) => with_snapshot(&parts, p).await,
        Err(e) => Err(e),
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let options = ctx.app.transport;
    let endpoint = Arc::clone(&ctx.endpoint);
    match prepared {
        Prepared::WebSocket(sub, shape, lease, endpoint) => ws::upgrade(
            http::Request::from_parts(parts, ()),
            sub,
            shape,
            options,
            endpoint,
            lease,
        ),
        Prepared::Poll(sub, shape, timeout) => {
            let body = match poll::answer(sub, shape, timeout, &endpoint.session).await {
                Ok(body) => body,
                Err(e) => return e.into_response(),
            };
            let mut response = Response::new(Body::from(body));
            let h = response.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Prepared::Stream(sub, format, lease, endpoint) => {
            let keepalive = endpoint.keepalive_every(options.keepalive);
            let keep_alive_header = endpoint.keep_alive_header;
            let body = stream::body(sub, format, keepalive, endpoint, lease);
            let mut response = Response::new(Body::from_stream(body));
            super::head::stream(response.headers_mut(), format.content_type());
            if keep_alive_header && matches!(format, stream::Format::Sse { .. }) && parts_keep_alive
            {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    HeaderValue::from_static("keep-alive"),
                );
            }
            response
        }
    }
}

/// Whether a request to an endpoint would be served as a stream (SSE or NDJSON), judged from
/// the head alone: the lean connection path takes exactly these.
pub(crate) fn is_stream_request(parts: &http::request::Parts) -> bool {
    parts.method == http::Method::GET
        && !is_websocket(&parts.headers)
        && !(may_name(parts.uri.query(), "poll")
            && form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "poll" && (v == "1" || v == "true")))
}

/// Whether a parameter called `name` (plain ASCII letters) can be in `query`: it is, or
/// something is percent-encoded (`%70oll` decodes to `poll`). Lets a connect skip decoding
/// its whole query once more for each flag it asks about (`parse_query` reads every
/// parameter anyway).
fn may_name(query: Option<&str>, name: &str) -> bool {
    query.is_some_and(|q| q.contains(name) || q.contains('%'))
}

/// Whether a stream request asks for NDJSON rather than SSE (`format=ndjson` or `Accept`).
pub(crate) fn wants_ndjson_stream(parts: &http::request::Parts) -> bool {
    wants_ndjson(&parts.headers)
        || (may_name(parts.uri.query(), "format")
            && form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "format" && v == "ndjson"))
}

/// Everything a subscribe request needs before its transport takes over: query, credential,
/// transport choice, Origin, selector, grant, cursor; then the subscription is opened.
pub(crate) fn prepare(
    ctx: &EndpointState,
    parts: &http::request::Parts,
) -> Result<Prepared, HttpError> {
    let EndpointState { app, endpoint } = ctx;
    let query = parse_query(parts.uri.query(), endpoint, app)?;
    let headers = &parts.headers;
    // The path's parameters, checked before any credential is looked at.
    let params = if endpoint.template.has_params() {
        match endpoint.template.captures(parts.uri.path()) {
            Some(Ok(params)) => params,
            Some(Err(name)) => {
                return Err(HttpError::new(
                    ErrorCode::InvalidParameter,
                    format!(
                        "path parameter `{name}`: 1 to {} letters, digits or -_.~:@+",
                        crate::endpoint::MAX_PARAM_BYTES
                    ),
                ));
            }
            None => return Err(HttpError::new(ErrorCode::NotFound, "no such route")),
        }
    } else {
        Vec::new()
    };
    let fixed = fixed_selector(endpoint, &params)?;
    let caller = credential(app, endpoint, fixed.as_deref(), headers, &query)?;
    let grant = &caller.grant;
    let websocket = is_websocket(headers);
    let ndjson = query.ndjson || wants_ndjson(headers);
    let transports = endpoint.transports;
    let offered = |yes: bool, what: &str| {
        if yes {
            Ok(())
        } else {
            Err(HttpError::new(
                ErrorCode::InvalidParameter,
                format!("endpoint `{}` does not serve {what}", endpoint.name),
            ))
        }
    };
    if websocket {
        offered(transports.websocket, "WebSocket")?;
        let origin = headers.get(ORIGIN).map(|v| v.to_str().unwrap_or("\u{0}"));
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        if !endpoint.origins.allows(origin, host) {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                format!(
                    "Origin `{}` may not open a WebSocket here",
                    origin.unwrap_or_default()
                ),
            ));
        }
    } else if query.poll {
        offered(transports.poll, "long-poll")?;
    } else if ndjson {
        offered(transports.ndjson, "NDJSON")?;
    } else {
        offered(transports.sse, "SSE (open a WebSocket instead)")?;
    }

    let patterns = narrow(endpoint, fixed, query.patterns)?;
    let selector = Selector {
        patterns,
        types: query.types,
    };
    if let Err(p) = grant.check_subscribe(&selector) {
        app.observers.metrics.auth_failed("forbidden");
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            format!("topic `{p}`: this credential may not subscribe to it"),
        ));
    }
    let header_cursor = headers.get("last-event-id").map(|v| {
        v.to_str()
            .ok()
            .and_then(Cursor::parse)
            .unwrap_or(Cursor::Invalid)
    });
    let cursor = header_cursor.or(query.cursor);
    let client_id = client_id::of_subscribe(
        headers,
        &endpoint.client_id.header,
        query.client_id.as_deref(),
        endpoint.client_id.uuid,
    )?;
    if query.snapshot && client_id.is_some() {
        // A session's place must never claim an event the client did not get, and a snapshot
        // hands out events older than its cursor: the two do not mix.
        return Err(HttpError::new(
            ErrorCode::InvalidParameter,
            "snapshot: not with a client id (resume a session by its client id, or take a \
             snapshot and resume by Last-Event-ID)",
        ));
    }
    let options = app.transport;
    if app.hub.store_health().is_some() {
        // Nothing new will ever be stored and history may not read: say so at once, rather
        // than open a stream that stays silent.
        return Err(HttpError::store_unavailable());
    }
    let transport = if websocket {
        Transport::WebSocket
    } else if query.poll {
        Transport::Poll
    } else if ndjson {
        Transport::Ndjson
    } else {
        Transport::Sse
    };
    let remote = parts.extensions.get::<RemoteAddr>().map(|r| r.0);
    let described = crate::tracked::describe(&selector);
    // When the credential expires, the stream ends with `token_expired` (a ticket's own TTL
    // bounds only the connect; it carries the expiry of the token that minted it).
    let expires_in = caller.expires_at.map(|exp| {
        let left_ms = exp
            .saturating_mul(1000)
            .saturating_sub(app.credentials.now_ms());
        Duration::from_millis(left_ms)
    });
    let expiry = expires_in.map(|left| Instant::now() + left);
    // A stream holds a place under its credential's stream limit, and one under the limit of
    // the client address a trusted proxy names; a long-poll holds neither.
    let (mut slot, mut address) = if query.poll && !websocket {
        (None, None)
    } else {
        (
            app.credentials.open_stream(&caller)?,
            forwarded_place(app, parts)?,
        )
    };
    let mut lease = || Lease {
        expiry,
        slot: slot.take(),
        address: address.take(),
    };
    let sub = open(app, selector, cursor, client_id)?;
    let sub = Tracked::new(
        sub,
        described,
        Arc::from(endpoint.name.as_str()),
        transport,
        remote,
        &app.observers,
    );
    let endpoint = with_params(endpoint, &params);
    Ok(if websocket {
        Prepared::WebSocket(sub, endpoint.shape, lease(), endpoint)
    } else if query.poll {
        let timeout = query
            .timeout
            .map_or(options.poll_timeout, |t| t.min(options.poll_timeout));
        let timeout = expires_in.map_or(timeout, |left| timeout.min(left));
        Prepared::Poll(sub, endpoint.shape, timeout)
    } else if ndjson {
        let shape = endpoint.shape;
        Prepared::Stream(sub, stream::Format::Ndjson(shape), lease(), endpoint)
    } else {
        Prepared::Stream(
            sub,
            stream::Format::Sse {
                retry: options.retry,
                envelope: endpoint.sse_envelope,
            },
            lease(),
            endpoint,
        )
    })
}

/// The endpoint's fixed selector for a request with `params` (its topic templates filled).
fn fixed_selector(
    endpoint: &Endpoint,
    params: &[(String, String)],
) -> Result<Option<Vec<Pattern>>, HttpError> {
    if endpoint.topic_templates.is_empty() {
        return Ok(endpoint.topics.clone());
    }
    endpoint
        .topic_templates
        .iter()
        .map(|t| {
            let filled = crate::endpoint::fill_params(t, params);
            Pattern::parse(&filled).map_err(|e| {
                HttpError::new(ErrorCode::InvalidTopic, format!("topic `{filled}`: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The endpoint a stream of this request uses: itself, or, on a path with parameters, a copy
/// whose handshake and synthetic event have the parameters filled in (`${id}`).
fn with_params(endpoint: &Arc<Endpoint>, params: &[(String, String)]) -> Arc<Endpoint> {
    if params.is_empty() {
        return Arc::clone(endpoint);
    }
    let vars: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let fill = |h: &Option<crate::endpoint::Handshake>| {
        h.as_ref().map(|h| crate::endpoint::Handshake {
            name: h.name.clone(),
            template: h.render(&vars),
        })
    };
    let mut copy = Endpoint::clone(endpoint);
    copy.handshake = fill(&endpoint.handshake);
    copy.disconnect = fill(&endpoint.disconnect);
    Arc::new(copy)
}

/// A stream's place under the per-address limit when it came through a trusted proxy, for
/// the client the proxy names in `X-Forwarded-For`; 503 `too_many_connections` when that
/// client has its most open (an SSE request is told in-band, by the lean path).
fn forwarded_place(
    app: &AppState,
    parts: &http::request::Parts,
) -> Result<Option<AddressSlot>, HttpError> {
    let Some(RemoteAddr(peer)) = parts.extensions.get::<RemoteAddr>().copied() else {
        return Ok(None);
    };
    let peer = peer.ip();
    app.edge
        .per_address()
        .take_forwarded(peer, &parts.headers)
        .map_err(|()| {
            HttpError::new(
                ErrorCode::TooManyConnections,
                "this client address has the most connections it may open; retry shortly",
            )
        })
}

/// The caller behind a subscribe request, from the first credential it presents among the
/// sources the endpoint takes: `Authorization: Bearer`, `?ticket=` (used up here), the
/// endpoint's query token, the cookie. An endpoint that takes none serves its fixed selector
/// to anyone.
fn credential(
    app: &AppState,
    endpoint: &Endpoint,
    fixed: Option<&[Pattern]>,
    headers: &HeaderMap,
    query: &Query,
) -> Result<Caller, HttpError> {
    caller(
        app,
        endpoint,
        fixed,
        headers,
        query.ticket.as_deref(),
        query.token.as_deref(),
    )
}

/// The caller behind a request to an endpoint (subscribe or snapshot), as `credential` says.
pub(crate) fn caller(
    app: &AppState,
    endpoint: &Endpoint,
    fixed: Option<&[Pattern]>,
    headers: &HeaderMap,
    ticket: Option<&str>,
    token: Option<&str>,
) -> Result<Caller, HttpError> {
    let from = endpoint.credentials;
    if from.is_none() {
        return Ok(Caller {
            grant: Arc::new(tidings_auth::Grant {
                name: format!("anonymous@{}", endpoint.name),
                publish: Vec::new(),
                subscribe: fixed.map(<[Pattern]>::to_vec).unwrap_or_default(),
                admin: false,
            }),
            id: tidings_auth::CredentialId::ANONYMOUS,
            expires_at: None,
        });
    }
    if from.header
        && let Some(token) = extract::bearer(headers)?
    {
        return Ok(app.identify(Some(token))?);
    }
    if from.ticket
        && let Some(ticket) = ticket
    {
        let caller = app.credentials.tickets().redeem(ticket);
        let caller = caller.inspect_err(|_| app.observers.metrics.auth_failed("ticket"));
        return Ok(caller?);
    }
    let presented = token
        .filter(|_| from.query)
        .or_else(|| app.credentials.cookie(headers).filter(|_| from.cookie));
    Ok(app.identify(presented)?)
}

/// How long a clustered node waits for a cursor another node has already delivered.
const CLUSTER_CATCH_UP: Duration = Duration::from_secs(2);

/// Cluster mode: a cursor (`Last-Event-ID` or `lastEventId`) that another node delivered may
/// be a moment ahead of this node's head; wait for this node to ingest it (bounded), so the
/// subscription resumes exactly instead of answering `cursor_ahead`. Without a cursor, a
/// client id's session is read from the cluster (another node may have held it) and its place
/// waited for the same way. Callers check `Hub::is_clustered` first, so one node pays nothing.
pub(crate) async fn catch_up(ctx: &EndpointState, parts: &http::request::Parts) {
    let app = &ctx.app;
    let header = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Cursor::parse);
    let cursor = header.or_else(|| {
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .filter(|(name, _)| name == "lastEventId")
            .find_map(|(_, value)| Cursor::parse(&value))
    });
    if let Some(Cursor::After(id)) = cursor
        && id.epoch == app.hub.epoch().0
    {
        app.hub.await_head(id.seq, CLUSTER_CATCH_UP).await;
    }
    if cursor.is_none() {
        let query = parts.uri.query().unwrap_or("");
        let asked = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "clientId")
            .map(|(_, value)| value.into_owned());
        let client = &ctx.endpoint.client_id;
        // A bad client id is answered by `prepare`; here it only means nothing to load.
        if let Ok(Some(client_id)) = client_id::of_subscribe(
            &parts.headers,
            &client.header,
            asked.as_deref(),
            client.uuid,
        ) {
            app.hub.load_session(&client_id, CLUSTER_CATCH_UP).await;
        }
    }
}

fn open(
    app: &AppState,
    selector: Selector,
    cursor: Option<Cursor>,
    client_id: Option<tidings_proto::Key>,
) -> Result<Subscription, HttpError> {
    Ok(app.hub.subscribe(SubscribeRequest {
        selector,
        cursor,
        client_id,
    })?)
}

/// The selector a request gets on `endpoint`: what it asked for (default `*`), which must lie
/// within the endpoint's fixed selector `fixed` if it has one (default: all of it).
pub(crate) fn narrow(
    endpoint: &Endpoint,
    fixed: Option<Vec<Pattern>>,
    asked: Vec<Pattern>,
) -> Result<Vec<Pattern>, HttpError> {
    let Some(fixed) = fixed else {
        return Ok(if asked.is_empty() {
            vec![Pattern::All]
        } else {
            asked
        });
    };
    if asked.is_empty() {
        return Ok(fixed);
    }
    match asked.iter().find(|a| !fixed.iter().any(|f| f.covers(a))) {
        Some(p) => Err(HttpError::new(
            ErrorCode::Forbidden,
            format!(
                "topic `{p}`: endpoint `{}` does not serve it",
                endpoint.name
            ),
        )),
        None => Ok(asked),
    }
}

#[cfg(test)]
mod may_name_tests {
    use super::*;

    fn parts(uri: &str) -> http::request::Parts {
        http::Request::get(uri).body(()).unwrap().into_parts().0
    }

    /// The shortcut never hides a flag, however it is spelled.
    #[test]
    fn flags_are_found_plain_or_percent_encoded() {
        assert!(!is_stream_request(&parts("/events?poll=1")));
        assert!(!is_stream_request(&parts("/events?%70oll=1")));
        assert!(!is_stream_request(&parts("/events?topic=a&po%6Cl=true")));
        assert!(is_stream_request(&parts("/events?topic=poll")));
        assert!(is_stream_request(&parts("/events?topic=a")));
        assert!(snapshot_requested(&parts("/events?snapshot=1")));
        assert!(snapshot_requested(&parts("/events?%73napshot=1")));
        assert!(!snapshot_requested(&parts("/events?topic=a")));
        assert!(wants_ndjson_stream(&parts("/events?f%6Frmat=ndjson")));
        assert!(!wants_ndjson_stream(&parts("/events?topic=format")));
    }
}
