//! `GET /events`: an SSE subscription.
//!
//! Query: `topic` (repeatable selector; default `*`), `type` (repeatable filter),
//! `lastEventId` (for clients that cannot set the `Last-Event-ID` header, which wins).
//! Parameters starting with `_` are ignored (cache busters); any other unknown one is a 400,
//! so a typo never silently subscribes to something else.
//!
//! Errors a retry cannot fix (bad selector, bad credential, no grant) are answered with a
//! 4xx JSON body, which also stops a browser's `EventSource` from retrying. Everything else
//! (a bad cursor, a slow consumer, shutdown) is said in-band on a 200 stream.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Uri};
use tidings_core::SubscribeRequest;
use tidings_proto::{Cursor, ErrorCode, EventType, Pattern, Selector};

use super::error::HttpError;
use super::extract;
use crate::state::AppState;
use crate::transport::sse;

pub(crate) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let grant = extract::grant(&state, &headers)?;
    let mut patterns = Vec::new();
    let mut types = Vec::new();
    let mut query_cursor = None;
    let limits = state.hub.limits();
    for (name, value) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match &*name {
            "topic" => {
                if patterns.len() >= limits.max_patterns {
                    return Err(HttpError::new(
                        ErrorCode::InvalidTopic,
                        format!("topic: more than {} selectors", limits.max_patterns),
                    ));
                }
                patterns.push(Pattern::parse(&value).map_err(|e| {
                    HttpError::new(ErrorCode::InvalidTopic, format!("topic `{value}`: {e}"))
                })?);
            }
            "type" => {
                if types.len() >= limits.max_types {
                    return Err(HttpError::new(
                        ErrorCode::InvalidType,
                        format!("type: more than {} types", limits.max_types),
                    ));
                }
                types.push(EventType::new(&value).map_err(|e| {
                    HttpError::new(ErrorCode::InvalidType, format!("type `{value}`: {e}"))
                })?);
            }
            "lastEventId" => query_cursor = Cursor::parse(&value),
            other if other.starts_with('_') => {}
            other => {
                return Err(HttpError::new(
                    ErrorCode::InvalidParameter,
                    format!("query parameter `{other}` is not known; use topic, type, lastEventId"),
                ));
            }
        }
    }
    if patterns.is_empty() {
        patterns.push(Pattern::All);
    }
    let selector = Selector { patterns, types };
    if let Err(p) = grant.check_subscribe(&selector) {
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
    let cursor = header_cursor.or(query_cursor);
    let sub = state.hub.subscribe(SubscribeRequest {
        selector,
        cursor,
        client_id: None,
    })?;
    let body = Body::from_stream(sse::stream(
        sub,
        sse::Options {
            keepalive: state.keepalive,
            retry: state.retry,
        },
    ));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
