//! `GET /snapshot?topic=SEL[&type=T]`: the newest event per key under a selector, and the
//! cursor it is exact as of, in one JSON body:
//! `{"cursor":"<id>","events":[{"id","topic","type","key","data"},…]}` (events in id order).
//! Subscribing with `Last-Event-ID: <cursor>` continues exactly after it (`Hub::snapshot`).
//!
//! Served with the built-in `/events` endpoint's rules: the same credentials (bearer header,
//! ticket, the endpoint's query token, cookie), the subscribe grant for the selector, the
//! same errors. Query: `topic` (repeatable; default `*`), `type` (repeatable), `ticket`, the
//! endpoint's token parameter; `_`-prefixed ones are ignored, anything else is a 400. A
//! snapshot larger than `snapshot.max_bytes` is 422 `snapshot_too_large`. The answer holds
//! its share of the replay memory budget until its body has been handed on.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use tidings_proto::{ErrorCode, EventType, Pattern, Selector};

use super::error::HttpError;
use super::subscribe::{EndpointState, caller, narrow, selector_param};
use crate::transport::frame::{self, Shape};

#[derive(Debug, Default)]
struct Query {
    patterns: Vec<Pattern>,
    types: Vec<EventType>,
    ticket: Option<String>,
    token: Option<String>,
}

fn parse_query(raw: Option<&str>, ctx: &EndpointState) -> Result<Query, HttpError> {
    let limits = ctx.app.hub.limits();
    let mut q = Query::default();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*name {
            "topic" | "type" => {
                selector_param(&name, &value, limits, &mut q.patterns, &mut q.types)?;
            }
            "ticket" => q.ticket = Some(value.into_owned()),
            other if ctx.endpoint.query_token.as_deref() == Some(other) => {
                q.token = Some(value.into_owned());
            }
            other if other.starts_with('_') => {}
            other => {
                return Err(HttpError::new(
                    ErrorCode::InvalidParameter,
                    format!("query parameter `{other}` is not known; use topic, type, ticket"),
                ));
            }
        }
    }
    Ok(q)
}

pub(crate) async fn snapshot(State(ctx): State<EndpointState>, request: Request) -> Response {
    match answer(&ctx, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn answer(ctx: &EndpointState, request: Request) -> Result<Response, HttpError> {
    let (parts, _body) = request.into_parts();
    let query = parse_query(parts.uri.query(), ctx)?;
    let app = &ctx.app;
    // A snapshot takes the endpoint's fixed topics as they are (path parameters are for
    // streams).
    let fixed = ctx.endpoint.topics.clone();
    let caller = caller(
        app,
        &ctx.endpoint,
        fixed.as_deref(),
        &parts.headers,
        query.ticket.as_deref(),
        query.token.as_deref(),
    )?;
    let selector = Selector {
        patterns: narrow(&ctx.endpoint, fixed, query.patterns)?,
        types: query.types,
    };
    if let Err(p) = caller.grant.check_subscribe(&selector) {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            format!("topic `{p}`: this credential may not subscribe to it"),
        ));
    }
    if app.hub.store_health().is_some() {
        return Err(HttpError::store_unavailable());
    }
    let snapshot = app.hub.snapshot(selector).await?;
    let shape = Shape::Event;
    let len: usize = snapshot
        .events
        .iter()
        .map(|e| frame::event(e, shape).len() + 1)
        .sum();
    let mut buf = BytesMut::with_capacity(64 + len);
    buf.put_slice(b"{\"cursor\":\"");
    buf.put_slice(snapshot.cursor.to_string().as_bytes());
    buf.put_slice(b"\",\"events\":[");
    for (i, e) in snapshot.events.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(frame::event(e, shape));
    }
    buf.put_slice(b"]}");
    // The body holds the snapshot's share of the replay budget until it has been handed on
    // whole, so answers being written to slow clients count against the budget.
    let held = snapshot.held;
    let chunks = futures_util::stream::unfold(
        (Some(buf.freeze()), Some(held)),
        |(bytes, held)| async move {
            match bytes {
                Some(bytes) => Some((Ok::<_, std::convert::Infallible>(bytes), (None, held))),
                None => {
                    drop(held);
                    None
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(chunks));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
