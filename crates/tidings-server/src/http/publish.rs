//! `POST /publish`: one JSON event or an array of them (a batch: all or nothing).
//!
//! Checks, in order: content type (415), credential (401; a cookie alone is 403
//! `cookie_only_publish`), body size (413), body budget
//! (503 `overloaded`) and deadline (408 `body_timeout`), JSON syntax (400),
//! each event's shape and names (422; a type the hub sends itself is 422 `reserved_type`),
//! the publisher's client id (`X-Client-Id` or the events' `origin` field: 400
//! `invalid_client_id`), publish grant (403), the JSON Schema of each event's type where one
//! is configured (422 `schema_mismatch`), the credential's publish rate (429 with
//! `Retry-After`), then the engine's limits. Subscriptions with the publisher's client id do
//! not get the batch (self-echo suppression).
//!
//! An `Idempotency-Key` is scoped to the credential that sent it (its `CredentialId`; an open
//! hub has one anonymous scope): two credentials using the same key never see each other's
//! batches, conflicts or keys.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_auth::Caller;
use tidings_core::{IdempotencyKey, IdempotencyScope, NewEvent, PublishBatch};
use tidings_proto::{ErrorCode, EventId, EventType, Key, Topic, json};

use super::error::HttpError;
use super::{client_id, extract};
use crate::state::AppState;

/// One event as a publisher writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    topic: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "type", borrow, default)]
    event_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// The publisher's client id (like the `X-Client-Id` header).
    #[serde(borrow, default)]
    origin: Option<std::borrow::Cow<'a, str>>,
}

/// The publisher's client id header.
static X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
/// The header that makes a publish idempotent.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The handler. It takes the request whole, so the headers are borrowed from it, not cloned
/// (axum's `HeaderMap` extractor copies every header of every publish).
pub(crate) async fn publish(
    State(state): State<AppState>,
    request: Request<Body>,
) -> Result<Response, HttpError> {
    publish_on(&state, request).await
}

/// The handler's work, on a borrowed state: the main listener answers `POST /publish`
/// before its router (`super::front`), without cloning the state per request.
pub(crate) async fn publish_on(
    state: &AppState,
    request: Request<Body>,
) -> Result<Response, HttpError> {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    check_content_type(headers)?;
    let caller = credential(state, headers)?;
    let grant = &caller.grant;
    let limits = state.hub.limits();
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // `_held` keeps the body's bytes counted against the budget until the answer.
    let (bytes, _held) = extract::body(body, declared, limits.max_body_bytes, &state.edge).await?;
    let (events, origins) = parse_events_with(
        &bytes,
        limits.max_batch_events,
        state.edge.policy.default_topic.as_ref(),
    )?;
    refuse_reserved(state, &events)?;
    let origin = origin_of(headers, &origins)?;
    for (i, e) in events.iter().enumerate() {
        if !grant.may_publish(&e.topic) {
            state.observers.metrics.auth_failed("forbidden");
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                format!(
                    "{}: this credential may not publish to `{}`",
                    field(events.len(), i, "topic"),
                    e.topic
                ),
            ));
        }
    }
    refuse_mismatch(state, &events)?;
    // Only a publish that would otherwise go through spends the credential's rate.
    state.credentials.publish_rate(caller.id, events.len())?;
    let idempotency_key = match headers.get(&IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    HttpError::new(
                        ErrorCode::InvalidParameter,
                        "Idempotency-Key: must be non-empty text",
                    )
                })
                .map(|key| IdempotencyKey {
                    scope: scope_of(&caller),
                    key: key.to_owned(),
                })?,
        ),
    };
    let metrics = &state.observers.metrics;
    // Counted before the events move into the batch; only when the publish succeeds.
    let mut by_prefix = Vec::new();
    metrics.match_prefixes(events.iter().map(|e| &e.topic), &mut by_prefix);
    let topics: Vec<Topic> = events.iter().map(|e| e.topic.clone()).collect();
    let ids = state
        .hub
        .publish_each(PublishBatch {
            events,
            origin,
            idempotency_key,
        })
        .await?;
    metrics.published(&by_prefix);
    let now_ms = state.credentials.now_ms();
    state.observers.activity.record(&topics, now_ms);
    metrics
        .publish_latency
        .observe(started.elapsed().as_secs_f64());
    Ok(answer(&ids))
}

/// The 200 answer: `PublishResponse` as JSON (`{"ids":[..]}`, plus `"coalesced":N` when a
/// window holds some events), written straight into one buffer: an id is hex digits, a dash
/// and decimal digits, so nothing needs escaping and no `String` per id is made.
fn answer(ids: &[Option<EventId>]) -> Response {
    let mut out = String::with_capacity(16 + ids.len() * 24);
    out.push_str("{\"ids\":[");
    let mut coalesced = 0usize;
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        match id {
            Some(id) => push_id(&mut out, *id),
            None => coalesced += 1,
        }
        out.push('"');
    }
    out.push(']');
    if coalesced > 0 {
        push_decimal(&mut out, ",\"coalesced\":", coalesced as u64);
    }
    out.push('}');
    // Built directly: `(headers, String).into_response()` sets `text/plain` and then
    // replaces it.
    let mut response = Response::new(Body::from(out));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `id` as `EventId`'s `Display` writes it: the epoch in 8 lowercase hex digits, a dash, the
/// seq in decimal.
fn push_id(out: &mut String, id: EventId) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(char::from(HEX[((id.epoch >> (shift * 4)) & 0xf) as usize]));
    }
    push_decimal(out, "-", id.seq);
}

/// `prefix`, then `n` in decimal (itoa: no formatter machinery per id).
fn push_decimal(out: &mut String, prefix: &str, n: u64) {
    out.push_str(prefix);
    out.push_str(itoa::Buffer::new().format(n));
}

/// The caller behind a publish: `Authorization: Bearer`, else the cookie, but only with the
/// configured custom header (a cookie alone is what a cross-site form sends: CSRF).
fn credential(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
    if let Some(token) = extract::bearer(headers)? {
        return Ok(state.identify(Some(token))?);
    }
    let creds = &state.credentials;
    match creds.cookie(headers) {
        Some(cookie) if !state.auth.is_open() => {
            let opted_in = creds
                .options()
                .cookie_publish_header
                .as_ref()
                .is_some_and(|h| headers.contains_key(h));
            if !opted_in {
                state.observers.metrics.auth_failed("cookie_only");
                return Err(HttpError::new(
                    ErrorCode::CookieOnlyPublish,
                    "Cookie: a publish authenticated only by a cookie is refused (cross-site \
                     request forgery); send Authorization: Bearer <token>",
                ));
            }
            Ok(state.identify(Some(cookie))?)
        }
        _ => Ok(state.identify(None)?),
    }
}

/// The publisher's client id: the `X-Client-Id` header, or the events' `origin` field (the
/// same in every event that has one, and the header's if both are given).
/// Refuses a batch that names an event the hub sends itself (`subscribed`, `reset`, an
/// endpoint's handshake, …): a publisher must never be able to forge one.
pub(crate) fn refuse_reserved(state: &AppState, events: &[NewEvent]) -> Result<(), HttpError> {
    for (i, e) in events.iter().enumerate() {
        if state.edge.policy.reserved_types.iter().any(|(r, scope)| {
            r == e.event_type.as_str()
                && scope
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|p| p.matches(&e.topic)))
        }) {
            return Err(HttpError::new(
                ErrorCode::ReservedType,
                format!(
                    "{}: `{}` is an event the hub sends itself and cannot be published",
                    field(events.len(), i, "type"),
                    e.event_type
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a batch in which an event's data does not match its type's JSON Schema, naming
/// the event, the failing JSON path and the rule. Nothing of the batch is stored.
pub(crate) fn refuse_mismatch(state: &AppState, events: &[NewEvent]) -> Result<(), HttpError> {
    let schemas = &state.edge.policy.schemas;
    if schemas.is_empty() {
        return Ok(());
    }
    for (i, e) in events.iter().enumerate() {
        if let Err(m) = schemas.check(&e.topic, &e.event_type, &e.data) {
            return Err(HttpError::new(
                ErrorCode::SchemaMismatch,
                format!(
                    "{}{}: {}",
                    field(events.len(), i, "data"),
                    m.instance_path,
                    m.describe()
                ),
            ));
        }
    }
    Ok(())
}

/// The batch's publisher client id: the `X-Client-Id` header, or the events' `origin` fields
/// (which must agree).
pub(crate) fn origin_of(
    headers: &HeaderMap,
    origins: &[Option<String>],
) -> Result<Option<Key>, HttpError> {
    let header = headers
        .get(&X_CLIENT_ID)
        .map(|v| client_id::parse(v.as_bytes(), "X-Client-Id", false))
        .transpose()?;
    let mut field_origin: Option<Key> = None;
    for (i, o) in origins.iter().enumerate() {
        let Some(o) = o else { continue };
        let name = field(origins.len(), i, "origin");
        let key = client_id::parse(o.as_bytes(), &name, false)?;
        let clash = field_origin.as_ref().is_some_and(|f| *f != key)
            || header.as_ref().is_some_and(|h| *h != key);
        if clash {
            return Err(HttpError::new(
                ErrorCode::InvalidClientId,
                format!("{name}: differs from the batch's other origin (one publisher per batch)"),
            ));
        }
        field_origin = Some(key);
    }
    Ok(header.or(field_origin))
}

/// The idempotency scope of a caller: its credential id (the anonymous id of an open hub is
/// the anonymous scope).
fn scope_of(caller: &Caller) -> IdempotencyScope {
    IdempotencyScope(caller.id.0)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if is_json_mime(ct) {
        return Ok(());
    }
    let got = if ct.is_empty() {
        "none".to_owned()
    } else {
        format!("`{ct}`")
    };
    Err(HttpError::new(
        ErrorCode::UnsupportedMediaType,
        format!("Content-Type: expected application/json, got {got}"),
    ))
}

/// `application/json` or `application/<anything>+json`, parameters ignored, in any case
/// (compared in place: no lowercased copy per publish).
fn is_json_mime(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .as_bytes();
    let prefix = b"application/";
    let suffix = b"+json";
    mime.eq_ignore_ascii_case(b"application/json")
        || (mime.len() >= prefix.len()
            && mime[..prefix.len()].eq_ignore_ascii_case(prefix)
            && mime.len() >= suffix.len()
            && mime[mime.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

fn field(count: usize, i: usize, name: &str) -> String {
    if count == 1 {
        name.to_owned()
    } else {
        format!("events[{i}].{name}")
    }
}

/// Parses a body into validated events, with each one's `origin` field. Nothing is published
/// unless every event is valid. Every event must name its topic.
pub(crate) fn parse_events(
    bytes: &[u8],
    max_batch: usize,
) -> Result<(Vec<NewEvent>, Vec<Option<String>>), HttpError> {
    parse_events_with(bytes, max_batch, None)
}

/// As `parse_events`, but an event without a topic goes to `default_topic` if there is one
/// (`--default-topic`: the download manager's publishers send only a type and data).
///
/// A valid body is parsed in one pass (`parse_once`); a body that pass refuses is parsed again,
/// step by step, by `parse_checked`, which names what is wrong. So every error answer stays
/// what it was, and a good publish pays for one parse.
pub(crate) fn parse_events_with(
    bytes: &[u8],
    max_batch: usize,
    default_topic: Option<&Topic>,
) -> Result<(Vec<NewEvent>, Vec<Option<String>>), HttpError> {
    if let Some(parsed) = parse_once(bytes, max_batch, default_topic) {
        return Ok(parsed);
    }
    parse_checked(bytes, max_batch, default_topic)
}

/// One event object of a batch: like `RawEvent`, but only from a JSON object (a derived
/// struct would also take an array of its fields in order, which a publish must not).
struct ObjectEvent<'a>(RawEvent<'a>);

impl<'de> Deserialize<'de> for ObjectEvent<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ObjectEvent<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawEvent::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ObjectEvent)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// The body in one pass of serde_json straight into the events' fields, then validated.
/// `None` for anything that is not a valid publish: the caller then finds out why.
fn parse_once(
    bytes: &[u8],
    max_batch: usize,
    default_topic: Option<&Topic>,
) -> Option<(Vec<NewEvent>, Vec<Option<String>>)> {
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))?;
    match first {
        b'{' => {
            let ObjectEvent(raw) = serde_json::from_slice(bytes).ok()?;
            let (event, origin) = validate(raw, 1, 0, default_topic).ok()?;
            Some((vec![event], vec![origin]))
        }
        b'[' => {
            let raws: Vec<ObjectEvent<'_>> = serde_json::from_slice(bytes).ok()?;
            if raws.is_empty() || raws.len() > max_batch {
                return None;
            }
            let count = raws.len();
            let mut events = Vec::with_capacity(count);
            let mut origins = Vec::with_capacity(count);
            for (i, ObjectEvent(raw)) in raws.into_iter().enumerate() {
                let (event, origin) = validate(raw, count, i, default_topic).ok()?;
                events.push(event);
                origins.push(origin);
            }
            Some((events, origins))
        }
        _ => None,
    }
}

/// The body checked step by step, naming the first thing that is wrong.
fn parse_checked(
    bytes: &[u8],
    max_batch: usize,
    default_topic: Option<&Topic>,
) -> Result<(Vec<NewEvent>, Vec<Option<String>>), HttpError> {
    let raw: &RawValue = serde_json::from_slice(bytes)
        .map_err(|e| HttpError::new(ErrorCode::MalformedJson, format!("body: {e}")))?;
    let text = raw.get();
    let items: Vec<&RawValue> = if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| HttpError::new(ErrorCode::MalformedJson, format!("body: {e}")))?;
        if items.is_empty() {
            return Err(HttpError::new(
                ErrorCode::InvalidEvent,
                "body: the batch is empty",
            ));
        }
        if items.len() > max_batch {
            return Err(HttpError::new(
                ErrorCode::BatchTooLarge,
                format!(
                    "body: {} events in the batch; the limit is {max_batch}",
                    items.len()
                ),
            ));
        }
        items
    } else {
        vec![raw]
    };
    let count = items.len();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| parse_event(item, count, i, default_topic))
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.into_iter().unzip())
}

fn parse_event(
    item: &RawValue,
    count: usize,
    i: usize,
    default_topic: Option<&Topic>,
) -> Result<(NewEvent, Option<String>), HttpError> {
    let whole = if count == 1 {
        "event".to_owned()
    } else {
        format!("events[{i}]")
    };
    if !item.get().starts_with('{') {
        return Err(HttpError::new(
            ErrorCode::InvalidEvent,
            format!("{whole}: expected a JSON object"),
        ));
    }
    let raw: RawEvent<'_> = serde_json::from_str(item.get()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line").next().unwrap_or(&msg);
        HttpError::new(ErrorCode::InvalidEvent, format!("{whole}: {msg}"))
    })?;
    validate(raw, count, i, default_topic)
}

/// Event `i` of `count` from its fields: names checked, data compacted.
fn validate(
    raw: RawEvent<'_>,
    count: usize,
    i: usize,
    default_topic: Option<&Topic>,
) -> Result<(NewEvent, Option<String>), HttpError> {
    let at = |name: &str| field(count, i, name);
    let topic = match (raw.topic, default_topic) {
        (Some(topic), _) => Topic::new(&topic).map_err(|e| {
            HttpError::new(ErrorCode::InvalidTopic, format!("{}: {e}", at("topic")))
        })?,
        (None, Some(default)) => default.clone(),
        (None, None) => {
            return Err(HttpError::new(
                ErrorCode::InvalidTopic,
                format!("{}: is required", at("topic")),
            ));
        }
    };
    let event_type = raw.event_type.ok_or_else(|| {
        HttpError::new(
            ErrorCode::InvalidType,
            format!("{}: is required", at("type")),
        )
    })?;
    let event_type = EventType::new(&event_type)
        .map_err(|e| HttpError::new(ErrorCode::InvalidType, format!("{}: {e}", at("type"))))?;
    let key = raw
        .key
        .map(|k| Key::new(&k))
        .transpose()
        .map_err(|e| HttpError::new(ErrorCode::InvalidKey, format!("{}: {e}", at("key"))))?;
    let data = match raw.data {
        Some(d) => json::compact_raw(d),
        None => RawValue::from_string("null".to_owned()).expect("null is JSON"),
    };
    let event = NewEvent {
        topic,
        event_type,
        key,
        data,
    };
    Ok((event, raw.origin.map(std::borrow::Cow::into_owned)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn status(bytes: &[u8]) -> Result<usize, u16> {
        parse_events(bytes, 3)
            .map(|(v, _)| v.len())
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn an_open_hub_publishes_in_the_anonymous_scope_and_tokens_in_their_own() {
        use tidings_auth::{Authorizer, Grant, StaticToken};
        let open = Authorizer::new(vec![]).identify(None).unwrap();
        assert_eq!(scope_of(&open), IdempotencyScope::ANONYMOUS);
        let token = |secret: &str| StaticToken {
            secret: secret.into(),
            grant: Grant::everything("t"),
        };
        let auth = Authorizer::new(vec![token("secret-one"), token("secret-two")]);
        let one = scope_of(&auth.identify(Some("secret-one")).unwrap());
        let two = scope_of(&auth.identify(Some("secret-two")).unwrap());
        assert_ne!(one, two);
        assert_ne!(one, IdempotencyScope::ANONYMOUS);
    }

    #[test]
    fn shapes_and_errors() {
        assert_eq!(status(br#"{"topic":"a","type":"b"}"#), Ok(1));
        assert_eq!(
            status(br#"[{"topic":"a","type":"b","data":[1]},{"topic":"a","type":"c","key":"k"}]"#),
            Ok(2)
        );
        assert_eq!(status(b"{"), Err(400));
        assert_eq!(status(b"[]"), Err(422));
        assert_eq!(status(br#"[1,2,3,4]"#), Err(413));
        assert_eq!(status(br#"[1]"#), Err(422));
        assert_eq!(status(br#"{"topic":"a","type":"b","extra":1}"#), Err(422));
        assert_eq!(status(br#"{"topic":"a","topic":"b","type":"c"}"#), Err(422));
        assert_eq!(status(br#"{"type":"b"}"#), Err(422));
        assert_eq!(
            status("{\"topic\":\"a\",\"type\":\"b\\u0000\"}".as_bytes()),
            Err(422)
        );
    }

    /// What the one-pass parse and the step-by-step parse make of `bytes`: the one-pass result
    /// must be the step-by-step one whenever it has one.
    fn both_paths(bytes: &[u8]) -> (Option<String>, Result<String, u16>) {
        let once = parse_once(bytes, 3, None).map(|p| format!("{p:?}"));
        let checked = parse_checked(bytes, 3, None)
            .map(|p| format!("{p:?}"))
            .map_err(|e| e.status().as_u16());
        (once, checked)
    }

    #[test]
    fn one_pass_agrees_with_the_checked_parse() {
        for body in [
            &br#"{"topic":"a","type":"b","data":{"x": [1, 2]},"key":"k","origin":"c"}"#[..],
            br#"  [{"topic":"a","type":"b"},{"topic":"a/b","type":"c","data":"s\u00e9"}] "#,
        ] {
            let (once, checked) = both_paths(body);
            assert_eq!(once.as_deref(), Some(checked.as_deref().unwrap()));
        }
        // Refused by the one pass, so answered (with the reason) by the checked parse.
        for body in [
            &br#"[["a","b"]]"#[..],
            br#"[]"#,
            br#"[{"topic":"a","type":"b"},{"topic":"a","type":"b"},{"topic":"a","type":"b"},{"topic":"a","type":"b"}]"#,
            br#"{"topic":"","type":"b"}"#,
            br#"{"topic":"a","type":"b"} x"#,
            br#"{"topic":"a","type":"b","data":1,"data":2}"#,
        ] {
            let (once, checked) = both_paths(body);
            assert_eq!(once, None, "{}", String::from_utf8_lossy(body));
            assert!(checked.is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// The body `answer` writes, as text.
    fn answer_text(ids: &[Option<EventId>]) -> String {
        let response = answer(ids);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .expect("a body in memory");
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    #[test]
    fn content_types_are_matched_without_regard_to_case() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/merge-patch+json",
            "APPLICATION/VND.X+JSON;q=1",
        ] {
            assert!(is_json_mime(ok), "{ok}");
        }
        for refused in [
            "",
            "text/json",
            "application/jsonx",
            "application/+jso",
            "application/xml",
            "text/plain+json",
            "json",
        ] {
            assert!(!is_json_mime(refused), "{refused}");
        }
    }

    proptest! {
        /// Any body of event-like text: the one pass accepts exactly what the checked parse
        /// accepts, with the same events.
        #[test]
        fn one_pass_is_the_checked_parse(
            fields in proptest::collection::vec(("topic|type|key|data|origin|tpoic", "\"[a-z*/\n]{0,4}\"|1|null|\\[\\]|\\{\\}|\\{\"a\": 1 \\}"), 0..5),
            array in 0..3u8,
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let one = format!("{{{}}}", body.join(","));
            let text = match array {
                0 => one,
                1 => format!("[{one}]"),
                _ => format!(" [{one},{one}]\n"),
            };
            let (once, checked) = both_paths(text.as_bytes());
            prop_assert_eq!(once, checked.ok(), "{}", text);
        }

        /// The answer written by hand is what serde makes of `PublishResponse`, byte for byte.
        #[test]
        fn the_answer_is_the_publish_response(
            ids in proptest::collection::vec(proptest::option::of((any::<u32>(), any::<u64>())), 0..6),
        ) {
            let ids: Vec<Option<EventId>> = ids
                .into_iter()
                .map(|id| id.map(|(epoch, seq)| EventId { epoch, seq }))
                .collect();
            let expected = tidings_proto::api::PublishResponse {
                coalesced: ids.iter().filter(|id| id.is_none()).count(),
                ids: ids
                    .iter()
                    .map(|id| id.map(|id| id.to_string()).unwrap_or_default())
                    .collect(),
            };
            prop_assert_eq!(answer_text(&ids), serde_json::to_string(&expected).unwrap());
        }

        /// Any body: a list of events or a 4xx, never a panic.
        #[test]
        fn any_body_is_events_or_a_4xx(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Err(code) = status(&bytes) {
                prop_assert!((400..500).contains(&code), "{code}");
            }
        }

        /// Bodies that are almost right: field names and values drawn from a small alphabet.
        #[test]
        fn near_miss_bodies_are_events_or_a_4xx(
            fields in proptest::collection::vec(("topic|type|key|data|tpoic", "\"[a-z*/\\n]{0,4}\"|1|null|\\[\\]|\\{\\}"), 0..5),
            array in any::<bool>(),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let mut text = format!("{{{}}}", body.join(","));
            if array {
                text = format!("[{text},{text}]");
            }
            if let Err(code) = status(text.as_bytes()) {
                prop_assert!((400..500).contains(&code), "{code} for {text}");
            }
        }
    }
}
