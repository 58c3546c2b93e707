//! The operators' dashboard: `GET /dashboard` (one HTML page, embedded in the binary, plain
//! HTML/CSS/JS) and `GET /admin/stream`, the one SSE stream it reads. Both need the admin
//! right, by bearer token or the credential cookie; without it the page answers 401 (or 403)
//! with a form that stores an admin token in the cookie, and no data.
//!
//! The stream is sampled on the server, never one message per event: `stats` (totals, rates,
//! the busiest topics) once a second, the first one with the rate history for the chart;
//! `tail` at most four times a second with the newest events (at most `TAIL_MAX` per message,
//! in the `event` shape, older ones only counted in `skipped`; `at_ms` is when it was sent). The tail comes from one hub subscription per open
//! stream (the repeatable `topic` parameter, default `*`, narrowed by the repeatable `type`
//! parameter; both validated as on the subscribe endpoints), drained as events come;
//! if it falls behind and the hub closes it, the tail reopens on the next tick.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{Value, json};
use tidings_core::{CloseReason, SharedEvent, Step, SubscribeRequest, Subscription};
use tidings_proto::{ErrorCode, EventType, Pattern, Selector};

use super::admin::{require_admin_to_read, stats_of, topics_of};
use super::error::HttpError;
use crate::state::AppState;
use crate::transport::frame::{self, Shape};

/// The page.
const PAGE: &str = include_str!("dashboard.html");
/// Most events one `tail` message carries.
pub(crate) const TAIL_MAX: usize = 50;
/// An event whose JSON is longer than this is sent without its data.
const TAIL_EVENT_BYTES: usize = 2048;
/// How often the tail is flushed; `stats` goes every `STATS_EVERY` ticks.
const TICK: Duration = Duration::from_millis(250);
const STATS_EVERY: u32 = 4;
/// Topics sent with each `stats`.
const TOPICS: usize = 20;

/// `GET /dashboard`.
pub(crate) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (status, body) = match require_admin_to_read(&state, &headers) {
        Ok(()) => (StatusCode::OK, PAGE.to_owned()),
        Err(e) => {
            e.log();
            let cookie = &state.credentials.options().cookie_name;
            (e.status(), login_page(cookie, e.0.error.code.as_str()))
        }
    };
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                     frame-ancestors 'none'",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

/// The page a caller without the admin right gets: a form that stores a token in the cookie.
fn login_page(cookie: &str, code: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><title>Tidings dashboard: sign in</title>
<style>body{{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;height:100vh;margin:0}}
form{{background:#1e293b;padding:2em;border-radius:10px}}input{{font:inherit;padding:.4em;width:22em}}button{{font:inherit;padding:.4em 1em}}</style>
<form id="login"><h1>Tidings dashboard</h1><p>This page needs a token with the admin right ({code}).</p>
<input id="token" type="password" placeholder="admin token" autocomplete="off"> <button>Open</button></form>
<script>document.getElementById('login').onsubmit=(e)=>{{e.preventDefault();
document.cookie='{cookie}='+document.getElementById('token').value+'; path=/; SameSite=Strict';location.reload();}};</script>
"#
    )
}

/// `GET /admin/stream?topic=SEL…&type=T…`: the dashboard's SSE stream. `topic` and `type` are
/// parsed and bounded as on the subscribe endpoints (same limits, same error codes).
pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    require_admin_to_read(&state, &headers)?;
    let selector = stream_selector(&state, uri.query())?;
    let sub = tail(&state, &selector)?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        state,
        selector,
        sub: Some(sub),
        events: Vec::new(),
        tail: VecDeque::new(),
        skipped: 0,
        tick,
        ticks: 0,
        started: false,
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let piece = feed.next().await?;
        Some((Ok::<_, Infallible>(piece), feed))
    });
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The tail's selector from the query: `topic` (repeatable, default `*`) and `type`
/// (repeatable, default every type).
fn stream_selector(state: &AppState, query: Option<&str>) -> Result<Selector, HttpError> {
    let limits = state.hub.limits();
    let mut patterns = Vec::new();
    let mut types = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "topic" => {
                if patterns.len() >= limits.max_patterns {
                    return Err(HttpError::new(
                        ErrorCode::InvalidTopic,
                        format!("topic: more than {} selectors", limits.max_patterns),
                    ));
                }
                patterns.push(Pattern::parse(&v).map_err(|e| {
                    HttpError::new(ErrorCode::InvalidTopic, format!("topic `{v}`: {e}"))
                })?);
            }
            "type" => {
                if types.len() >= limits.max_types {
                    return Err(HttpError::new(
                        ErrorCode::InvalidType,
                        format!("type: more than {} types", limits.max_types),
                    ));
                }
                types.push(EventType::new(&v).map_err(|e| {
                    HttpError::new(ErrorCode::InvalidType, format!("type `{v}`: {e}"))
                })?);
            }
            other => {
                return Err(HttpError::new(
                    ErrorCode::InvalidParameter,
                    format!("{other}: not a parameter of /admin/stream (only `topic` and `type`)"),
                ));
            }
        }
    }
    if patterns.is_empty() {
        patterns.push(Pattern::All);
    }
    Ok(Selector { patterns, types })
}

fn tail(state: &AppState, selector: &Selector) -> Result<Subscription, HttpError> {
    Ok(state.hub.subscribe(SubscribeRequest {
        selector: selector.clone(),
        cursor: None,
        client_id: None,
    })?)
}

/// One open `/admin/stream`.
struct Feed {
    state: AppState,
    selector: Selector,
    /// The tail's subscription; `None` after the hub closed it (reopened on the next tick).
    sub: Option<Subscription>,
    events: Vec<SharedEvent>,
    /// The newest events not sent yet, encoded.
    tail: VecDeque<Bytes>,
    /// Events that arrived but were pushed out of `tail` before a flush.
    skipped: u64,
    tick: tokio::time::Interval,
    ticks: u32,
    started: bool,
}

impl Feed {
    /// The next piece of the stream; `None` when the hub shuts down.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            let mut first = BytesMut::from(&b"retry: 2000\n\n"[..]);
            let mut stats = self.stats();
            stats["history"] = json!(self.state.observers.activity.history());
            frame_into(&mut first, "stats", &stats);
            return Some(first.freeze());
        }
        loop {
            tokio::select! {
                biased;
                _ = self.tick.tick() => {
                    self.ticks = self.ticks.wrapping_add(1);
                    if let Some(piece) = self.on_tick() {
                        return Some(piece);
                    }
                }
                step = next_step(self.sub.as_mut(), &mut self.events) => match step {
                    Step::Events => self.keep(),
                    Step::Closed(CloseReason::Shutdown) => return None,
                    // Fell behind (or a drain): the tail reopens on the next tick.
                    Step::Closed(_) => self.sub = None,
                    Step::Session { .. } | Step::Reset { .. } | Step::Snapshot { .. } => {}
                },
            }
        }
    }

    fn keep(&mut self) {
        for e in self.events.drain(..) {
            if self.tail.len() == TAIL_MAX {
                self.tail.pop_front();
                self.skipped += 1;
            }
            let encoded = frame::event(&e, Shape::Event);
            self.tail.push_back(if encoded.len() <= TAIL_EVENT_BYTES {
                encoded.clone()
            } else {
                let ev = &e.event;
                Bytes::from(
                    json!({"id": ev.id.to_string(), "topic": ev.topic.as_str(),
                        "type": ev.event_type.as_str(), "time": ev.time, "truncated": true})
                    .to_string(),
                )
            });
        }
    }

    fn on_tick(&mut self) -> Option<Bytes> {
        if self.sub.is_none()
            && !self.state.hub.draining()
            && let Ok(sub) = tail(&self.state, &self.selector)
        {
            self.sub = Some(sub);
        }
        let mut out = BytesMut::new();
        if !self.tail.is_empty() {
            let mut data = BytesMut::from(&b"{\"events\":["[..]);
            for (i, e) in self.tail.drain(..).enumerate() {
                if i > 0 {
                    data.extend_from_slice(b",");
                }
                data.extend_from_slice(&e);
            }
            let at_ms = self.state.credentials.now_ms();
            let end = format!("],\"skipped\":{},\"at_ms\":{at_ms}}}", self.skipped);
            data.extend_from_slice(end.as_bytes());
            self.skipped = 0;
            out.extend_from_slice(b"event: tail\ndata: ");
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\n\n");
        }
        if self.ticks.is_multiple_of(STATS_EVERY) {
            let stats = self.stats();
            frame_into(&mut out, "stats", &stats);
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    fn stats(&self) -> Value {
        json!({
            "stats": stats_of(&self.state),
            "topics": topics_of(&self.state, TOPICS),
            "at_ms": self.state.credentials.now_ms(),
        })
    }
}

/// The tail subscription's next step; never, without one.
async fn next_step(sub: Option<&mut Subscription>, events: &mut Vec<SharedEvent>) -> Step {
    match sub {
        Some(sub) => sub.next(events).await,
        None => std::future::pending().await,
    }
}

/// One SSE frame (`data` is one line of JSON).
fn frame_into(out: &mut BytesMut, name: &str, data: &Value) {
    out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_self_contained() {
        // No external scripts, styles or fonts: the binary serves everything it shows.
        assert!(!super::PAGE.contains("http://") && !super::PAGE.contains("https://"));
        assert!(super::PAGE.contains("/admin/stream"));
    }
}
