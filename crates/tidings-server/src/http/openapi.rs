//! `GET /openapi.json`: an OpenAPI 3.1 document of the HTTP API, built from the same
//! configuration the routers are built from (every configured endpoint on the main listener
//! is a path), with the error schema listing every `ErrorCode` from `ErrorCode::ALL`. A test
//! in `http/tests.rs` sends every documented operation to the router, so a route that is
//! documented but not served (or the reverse, for the fixed routes) fails.
//!
//! Streams are described as far as OpenAPI goes: the media types a subscribe route answers
//! with (`text/event-stream`, `application/x-ndjson`, the long-poll's `application/json`,
//! and the WebSocket upgrade's 101), with the framing in each description.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};
use tidings_proto::ErrorCode;

use crate::endpoint::Endpoint;
use crate::transport::frame::Shape;

/// Topic text: no control characters (Unicode Cc), not ending in `*`. (`maxLength` counts
/// characters where the server counts bytes: the description says so.)
const TOPIC_PATTERN: &str =
    "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f*]$";
/// A type or key: no control characters.
const NAME_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";

/// The routes every main listener serves besides its endpoints, with their methods.
pub(crate) const FIXED_ROUTES: &[(&str, &str)] = &[
    ("/publish", "post"),
    ("/tickets", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/admin/stats", "get"),
    ("/admin/topics", "get"),
    ("/admin/stream", "get"),
    ("/dashboard", "get"),
    ("/admin/connections", "get"),
    ("/admin/connections/{id}", "delete"),
    ("/admin/drain", "post"),
    ("/admin/reconnect", "post"),
];

/// A client id that is not required to be a UUID: printable ASCII without spaces, 1 to 64
/// bytes.
const CLIENT_ID_PATTERN: &str = "^[!-~]{1,64}$";
/// A client id where the endpoint requires a UUID.
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// The schema of a client id (`uuid`: the endpoint requires one).
fn client_id_schema(uuid: bool) -> Value {
    if uuid {
        json!({"type": "string", "minLength": 36, "maxLength": 36, "pattern": UUID_PATTERN})
    } else {
        json!({"type": "string", "minLength": 1,
            "maxLength": super::client_id::MAX_CLIENT_ID_BYTES, "pattern": CLIENT_ID_PATTERN})
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The error answers `codes` can produce, grouped by status.
fn errors(codes: &[ErrorCode]) -> Map<String, Value> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
    for c in codes {
        by_status
            .entry(c.http_status())
            .or_default()
            .push(c.as_str());
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            (
                status.to_string(),
                error_response(&format!(
                    "Error; `error.code` is one of: {}",
                    codes.join(", ")
                )),
            )
        })
        .collect()
}

/// Errors any request may get before its handler runs (the edge: Host check, limits).
const EDGE: &[ErrorCode] = &[
    ErrorCode::ForbiddenHost,
    ErrorCode::TooManyConnections,
    ErrorCode::ShuttingDown,
];

fn with_edge(codes: &[ErrorCode]) -> Vec<ErrorCode> {
    let mut all = codes.to_vec();
    all.extend_from_slice(EDGE);
    all
}

fn error_code_schema() -> Value {
    let one_of: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|c| {
            json!({
                "const": c.as_str(),
                "description": format!("HTTP {}.", c.http_status()),
            })
        })
        .collect();
    json!({
        "type": "string",
        "description": "A stable code: clients match on it; it never changes meaning.",
        "oneOf": one_of,
    })
}

fn schemas() -> Value {
    json!({
        "ErrorCode": error_code_schema(),
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"$ref": "#/components/schemas/ErrorCode"},
                    "message": {"type": "string", "description": "Names the field at fault and why."}
                }
            }}
        },
        "NewEvent": {
            "type": "object",
            "required": ["topic", "type"],
            "additionalProperties": false,
            "properties": {
                "topic": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "pattern": TOPIC_PATTERN,
                    "description": "Slash-separated, e.g. `orders/42`: 1 to 1024 bytes, no \
                        control characters, not ending in `*`."},
                "type": {"type": "string", "minLength": 1, "maxLength": 128,
                    "pattern": NAME_PATTERN,
                    "description": "1 to 128 bytes, no control characters."},
                "key": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024,
                    "pattern": NAME_PATTERN,
                    "description": "Optional (null is none); 1 to 1024 bytes, no control characters."},
                "data": {"description": "Any JSON value, kept byte for byte (compacted); at \
                    most `limits.max_data_bytes` (64 KiB by default)."},
                "origin": {"type": ["string", "null"], "minLength": 1,
                    "maxLength": super::client_id::MAX_CLIENT_ID_BYTES,
                    "pattern": CLIENT_ID_PATTERN,
                    "description": "The publisher's client id, like `X-Client-Id` (every event \
                        of a batch that has one names the same): subscriptions with that client \
                        id do not get the event."}
            }
        },
        "PublishResponse": {
            "type": "object",
            "required": ["ids"],
            "properties": {"ids": {"type": "array", "items": {"type": "string"},
                "description": "One id (`<epoch>-<seq>`) per event, in request order."}}
        },
        "Event": {
            "type": "object",
            "description": "An event in the `event` shape.",
            "required": ["id", "topic", "type"],
            "properties": {
                "id": {"type": "string"}, "topic": {"type": "string"},
                "type": {"type": "string"}, "key": {"type": "string"},
                "time": {"type": "integer"}, "data": {}
            }
        },
        "Envelope": {
            "type": "object",
            "description": "An event in the `envelope` shape.",
            "required": ["success", "id", "data"],
            "properties": {"success": {"const": true}, "id": {"type": "string"}, "data": {"type": "object"}}
        },
        "ResetNotice": {
            "type": "object",
            "required": ["reason", "cursor"],
            "properties": {
                "reason": {"enum": ["cursor_expired", "epoch_mismatch", "cursor_ahead", "invalid_cursor"]},
                "cursor": {"type": "string"}
            }
        },
        "SessionNotice": {
            "type": "object",
            "description": "First event of a stream with a client id: `subscribed` (a new \
                session) or `resumed` (a live one with the same selector; the endpoint may rename \
                both).",
            "properties": {"clientId": {"type": "string"}, "cursor": {"type": "string"}}
        },
        "ReconnectNotice": {
            "type": "object",
            "required": ["reason"],
            "properties": {"reason": {"type": "string",
                "description": "`shutdown`, `reconnect` (a drain or an admin reconnect), `operator` \
                    (closed through the admin API), `slow_consumer`, `store_unavailable`, \
                    `too_many_connections`, …"}}
        },
        "Snapshot": {
            "type": "object",
            "required": ["cursor", "events"],
            "properties": {
                "cursor": {"type": "string", "description": "Subscribe with `Last-Event-ID` set \
                    to it to continue exactly after the snapshot."},
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"},
                    "description": "The newest event of each (topic, key) under the selector, \
                        in id order."}
            }
        },
        "PollAnswer": {
            "type": "object",
            "required": ["events", "cursor"],
            "properties": {
                "events": {"type": "array", "items": {}},
                "cursor": {"type": "string", "description": "Poll again with `lastEventId` set to it."},
                "reset": {"$ref": "#/components/schemas/ResetNotice"}
            }
        },
        "Ready": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ready", "unavailable", "draining"]},
                "reason": {"type": ["string", "null"]},
                "epoch": {"type": "string"}, "head": {"type": "integer"},
                "subscribers": {"type": "integer"}, "sessions": {"type": "integer"},
                "stored_events": {"type": "integer"}
            }
        }
    })
}

fn publish_operation() -> Value {
    let mut responses = errors(&with_edge(&[
        ErrorCode::MalformedJson,
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::CookieOnlyPublish,
        ErrorCode::BodyTimeout,
        ErrorCode::BodyTooLarge,
        ErrorCode::EventTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidEvent,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidType,
        ErrorCode::InvalidKey,
        ErrorCode::InvalidClientId,
        ErrorCode::ReservedType,
        ErrorCode::SchemaMismatch,
        ErrorCode::IdempotencyConflict,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::StoreUnavailable,
    ]));
    responses["429"]["headers"] = json!({"Retry-After": {
        "description": "Seconds until the credential's publish rate allows this batch.",
        "schema": {"type": "integer", "minimum": 1}}});
    responses.insert(
        "200".into(),
        json!({"description": "Stored and delivered; the ids assigned.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PublishResponse"}}}}),
    );
    json!({
        "operationId": "publish",
        "summary": "Publish one event or a batch (all or nothing)",
        "parameters": [{
            "name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "minLength": 1, "maxLength": 256,
                "pattern": "^[!-~]([ -~]*[!-~])?$"},
            "description": "A retry with the same key (per credential) gets the original ids; \
                the same key with another body is 422 `idempotency_conflict`."
        }, {
            "name": "X-Client-Id", "in": "header", "required": false,
            "schema": client_id_schema(false),
            "description": "The publisher's client id: subscriptions with it do not get these \
                events (self-echo suppression). A bad one is 400 `invalid_client_id`."
        }],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/NewEvent"},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/NewEvent"},
                "description": "At most `limits.max_batch_events` (1,000 by default): more is \
                    413 `batch_too_large`."}
        ]}}}},
        "responses": responses,
    })
}

fn tickets_operation() -> Value {
    let mut responses = errors(&with_edge(&[
        ErrorCode::MalformedJson,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidTopic,
        ErrorCode::BodyTimeout,
        ErrorCode::BodyTooLarge,
        ErrorCode::Overloaded,
    ]));
    responses.insert(
        "200".into(),
        json!({"description": "A one-time connect ticket: subscribe rights only (narrowed to \
            `topics` if given), the caller's credential id and expiry; pass it as `?ticket=`.",
            "content": {"application/json": {"schema": {"type": "object",
                "required": ["ticket", "expires_in"],
                "properties": {"ticket": {"type": "string"},
                    "expires_in": {"type": "integer", "minimum": 0,
                        "description": "Seconds the ticket may be redeemed in."}}}}}}),
    );
    json!({
        "operationId": "create_ticket",
        "summary": "Trade the caller's credential (bearer or cookie) for a one-time connect ticket",
        "requestBody": {"required": false, "content": {"application/json": {"schema": {
            "type": "object",
            "additionalProperties": false,
            "properties": {"topics": {"type": ["array", "null"], "minItems": 1,
                "items": {"type": "string", "minLength": 1, "maxLength": 1024,
                    "pattern": NAME_PATTERN},
                "description": "Selectors the ticket is narrowed to; each must lie within \
                    the caller's subscribe grant (absent or null: the whole grant)."}}
        }}}},
        "responses": responses,
    })
}

fn subscribe_operation(endpoint: &Endpoint) -> Value {
    let frame = match endpoint.shape {
        Shape::Event => "#/components/schemas/Event",
        Shape::Envelope => "#/components/schemas/Envelope",
    };
    let mut parameters = vec![
        json!({"name": "topic", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 1024, "pattern": NAME_PATTERN}},
            "description": "Selectors (repeatable): `a/b`, `a/*` (prefix) or `*`."}),
        json!({"name": "type", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 128, "pattern": NAME_PATTERN}},
            "description": "Only these event types (repeatable)."}),
        json!({"name": "lastEventId", "in": "query", "required": false,
            "schema": {"type": "string"},
            "description": "Resume after this id (`earliest`: all history). `Last-Event-ID` wins."}),
        json!({"name": "Last-Event-ID", "in": "header", "required": false,
            "schema": {"type": "string"}}),
        json!({"name": "format", "in": "query", "required": false,
            "schema": {"enum": ["sse", "ndjson"]}}),
        json!({"name": "poll", "in": "query", "required": false,
            "schema": {"enum": ["1", "0", "true", "false"]},
            "description": "Long-poll: one JSON answer, then poll again with its cursor."}),
        json!({"name": "timeout", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Long-poll wait in seconds (capped by the server)."}),
        json!({"name": endpoint.client_id.header.as_str(), "in": "header", "required": false,
            "schema": client_id_schema(endpoint.client_id.uuid),
            "description": "The client id: the stream is a session, opened with `subscribed` \
                or `resumed`, resumed by id after a reconnect within its TTL. Wins over \
                `clientId`."}),
        json!({"name": "clientId", "in": "query", "required": false,
            "schema": client_id_schema(endpoint.client_id.uuid),
            "description": format!("The client id, for clients that cannot set `{}`.",
                endpoint.client_id.header)}),
        json!({"name": "ticket", "in": "query", "required": false,
            "schema": {"type": "string"},
            "description": "A one-time connect ticket from `POST /tickets` (for an \
                `EventSource`, which cannot send `Authorization`); used up by this request."}),
        json!({"name": "snapshot", "in": "query", "required": false,
            "schema": {"enum": ["1", "0", "true", "false"]},
            "description": "First the newest event per key under the selector, then a \
                `snapshot` control event whose id is the cursor, then the events after it. \
                Ignored with a cursor (it resumes instead); not with a client id."}),
    ];
    if let Some(param) = &endpoint.query_token {
        parameters.push(json!({"name": param, "in": "query", "required": false,
            "schema": {"type": "string"},
            "description": "The credential, for clients that cannot set headers."}));
    }
    let mut responses = errors(&with_edge(&[
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidType,
        ErrorCode::InvalidClientId,
        ErrorCode::TooManyStreams,
        ErrorCode::SnapshotTooLarge,
        ErrorCode::StoreUnavailable,
    ]));
    responses.insert("200".into(), json!({
        "description": "SSE (default): `retry:` first, then one `id:`/`event:`/`data:` frame per \
            event; in-band `event: reset` (data: ResetNotice) and `event: reconnect-required` \
            (data: ReconnectNotice, then the stream ends); `: keepalive` comments (or the \
            endpoint's keep-alive event). With a client id, the first event is `subscribed` or \
            `resumed` (data: SessionNotice); an endpoint may send a handshake event first and a \
            synthetic event before a hub-initiated close. NDJSON \
            (`format=ndjson` or `Accept: application/x-ndjson`): one JSON frame per line, empty \
            lines as keepalives. Long-poll (`poll=1`): one JSON answer.",
        "content": {
            "text/event-stream": {"schema": {
                "type": "object",
                "description": "One SSE event: `event` is the event's type, or `reset` / \
                    `reconnect-required` for the notices; `data` is JSON.",
                "properties": {
                    "id": {"type": "string"}, "event": {"type": "string"},
                    "data": {"type": "string"}, "retry": {"type": "integer"}
                }
            }},
            "application/x-ndjson": {"schema": {"type": "string"},
                "x-item-schema": {"$ref": frame}},
            "application/json": {"schema": {"$ref": "#/components/schemas/PollAnswer"}}
        }
    }));
    responses.insert(
        "101".into(),
        json!({"description": "WebSocket upgrade: one text frame per event in the endpoint's shape."}),
    );
    json!({
        "operationId": format!("subscribe_{}", endpoint.name),
        "summary": format!("Subscribe on endpoint `{}` (SSE, NDJSON, long-poll or WebSocket)", endpoint.name),
        "parameters": parameters,
        "responses": responses,
    })
}

/// `GET /snapshot`, served beside the built-in `/events` endpoint with its credentials.
fn snapshot_operation(endpoint: &Endpoint) -> Value {
    let mut parameters = vec![
        json!({"name": "topic", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 1024, "pattern": NAME_PATTERN}},
            "description": "Selectors (repeatable): `a/b`, `a/*` (prefix) or `*`."}),
        json!({"name": "type", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 128, "pattern": NAME_PATTERN}},
            "description": "Only keys whose newest event has one of these types (repeatable)."}),
        json!({"name": "ticket", "in": "query", "required": false,
            "schema": {"type": "string"},
            "description": "A one-time connect ticket from `POST /tickets`; used up here."}),
    ];
    if let Some(param) = &endpoint.query_token {
        parameters.push(json!({"name": param, "in": "query", "required": false,
            "schema": {"type": "string"},
            "description": "The credential, for clients that cannot set headers."}));
    }
    let mut responses = errors(&with_edge(&[
        ErrorCode::InvalidParameter,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidType,
        ErrorCode::SnapshotTooLarge,
        ErrorCode::StoreUnavailable,
    ]));
    responses.insert(
        "200".into(),
        json!({"description": "The newest event per key and the cursor it is exact as of.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Snapshot"}}}}),
    );
    json!({
        "operationId": "snapshot",
        "summary": "The newest event per key under a selector, and its cursor",
        "parameters": parameters,
        "responses": responses,
    })
}

/// The document for a main listener serving `endpoints` (those without their own port).
pub(crate) fn document(endpoints: &[Endpoint]) -> Value {
    let plain = |summary: &str, description: &str, schema: Value, ct: &str| {
        json!({
            "summary": summary,
            "responses": {"200": {"description": description, "content": {ct: {"schema": schema}}}}
        })
    };
    let mut paths = Map::new();
    paths.insert("/publish".into(), json!({"post": publish_operation()}));
    paths.insert("/tickets".into(), json!({"post": tickets_operation()}));
    paths.insert(
        "/healthz".into(),
        json!({"get": plain("Liveness", "The process answers.",
            json!({"type": "object", "properties": {"status": {"const": "ok"}}}), "application/json")}),
    );
    let mut ready = plain(
        "Readiness",
        "Ready to take publishes and subscriptions.",
        json!({"$ref": "#/components/schemas/Ready"}),
        "application/json",
    );
    ready["responses"]["503"] = json!({"description": "The store failed (`reason`: store_unavailable), or \
        the node is draining (`status`: draining).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}});
    paths.insert("/readyz".into(), json!({"get": ready}));
    let mut metrics = plain(
        "Prometheus metrics",
        "Text exposition format 0.0.4.",
        json!({"type": "string"}),
        "text/plain",
    );
    let metrics_errors = errors(&[ErrorCode::Unauthorized, ErrorCode::Forbidden]);
    for (status, answer) in metrics_errors {
        metrics["responses"][status] = answer;
    }
    paths.insert("/metrics".into(), json!({"get": metrics}));
    paths.insert(
        "/openapi.json".into(),
        json!({"get": plain("This document", "OpenAPI 3.1.", json!({"type": "object"}), "application/json")}),
    );
    let admin_errors = |extra: &[ErrorCode]| {
        let mut codes = vec![ErrorCode::Unauthorized, ErrorCode::Forbidden];
        codes.extend_from_slice(extra);
        errors(&with_edge(&codes))
    };
    let mut stats = plain(
        "Totals (admin right)",
        "Counters of the hub and its store.",
        json!({"type": "object"}),
        "application/json",
    );
    stats["responses"]
        .as_object_mut()
        .expect("responses")
        .extend(admin_errors(&[]));
    paths.insert("/admin/stats".into(), json!({"get": stats}));
    let mut topics = plain(
        "Topics published to recently, busiest first (admin right)",
        "`topics`: topic, events (since tracked), rate (events/s averaged over the last 10 s), \
         subscribers (open subscriptions it would reach), last_seen_ms; `tracked` of at most \
         `max_topics`; once `full`, events on topics not tracked are counted in `untracked` \
         until a topic idle for 5 minutes is forgotten.",
        json!({"type": "object", "required": ["topics", "tracked", "max_topics", "full", "untracked"],
            "properties": {"topics": {"type": "array"}, "tracked": {"type": "integer"},
                "max_topics": {"type": "integer"}, "full": {"type": "boolean"},
                "untracked": {"type": "object"}}}),
        "application/json",
    );
    topics["parameters"] = json!([
        {"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": super::admin::MAX_PAGE}}
    ]);
    topics["responses"]
        .as_object_mut()
        .expect("responses")
        .extend(admin_errors(&[ErrorCode::InvalidParameter]));
    paths.insert("/admin/topics".into(), json!({"get": topics}));
    let mut stream = plain(
        "The dashboard's stream: stats each second, a sampled tail of events (admin right)",
        "SSE: `event: stats` once a second (`stats` as /admin/stats, `topics` as \
         /admin/topics with 20 topics, `at_ms`; the first also `history`, the rate samples of \
         the last 5 minutes) and `event: tail` at most four times a second (`events`: the newest \
         events of the chosen topics and types, at most 50, in the `event` shape; `skipped`: \
         how many more arrived meanwhile; `at_ms`). The tail is one hub subscription (to the \
         `topic` selectors, default every topic) while the stream is open.",
        json!({"type": "object",
            "description": "One SSE event: `event` is `stats` or `tail`; `data` is JSON.",
            "properties": {"event": {"enum": ["stats", "tail"]}, "data": {"type": "string"},
                "retry": {"type": "integer"}}}),
        "text/event-stream",
    );
    stream["parameters"] = json!([
        {"name": "topic", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 1024, "pattern": NAME_PATTERN}},
            "description": "Only events on topics these selectors match in the tail \
                (repeatable, as on /events; default `*`)."},
        {"name": "type", "in": "query", "required": false, "explode": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1,
                "maxLength": 128, "pattern": NAME_PATTERN}},
            "description": "Only events of these types in the tail (repeatable)."}
    ]);
    stream["responses"]
        .as_object_mut()
        .expect("responses")
        .extend(admin_errors(&[
            ErrorCode::InvalidParameter,
            ErrorCode::InvalidTopic,
            ErrorCode::InvalidType,
            ErrorCode::StoreUnavailable,
        ]));
    paths.insert("/admin/stream".into(), json!({"get": stream}));
    let mut dashboard = plain(
        "The dashboard (admin right, by bearer token or the credential cookie)",
        "One HTML page, embedded in the binary.",
        json!({"type": "string"}),
        "text/html",
    );
    dashboard["responses"]["401"] = json!({"description": "No credential: a sign-in form that \
        stores an admin token in the credential cookie (no data).",
        "content": {"text/html": {"schema": {"type": "string"}}}});
    dashboard["responses"]["403"] = json!({"description": "A credential without the admin \
        right (or not valid): the same form.",
        "content": {"text/html": {"schema": {"type": "string"}}}});
    paths.insert("/dashboard".into(), json!({"get": dashboard}));
    let mut list = plain(
        "Open subscribe connections, paged by id (admin right)",
        "`connections`: id, endpoint, transport, client_id, remote, selector, queued, \
         delivered, connected_since_ms; `next`: the `after` of the next page, or null.",
        json!({"type": "object", "required": ["connections", "next"],
            "properties": {"connections": {"type": "array"}, "next": {"type": ["integer", "null"]}}}),
        "application/json",
    );
    list["parameters"] = json!([
        {"name": "after", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}},
        {"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": super::admin::MAX_PAGE}}
    ]);
    list["responses"]
        .as_object_mut()
        .expect("responses")
        .extend(admin_errors(&[ErrorCode::InvalidParameter]));
    paths.insert("/admin/connections".into(), json!({"get": list}));
    let mut close = admin_errors(&[ErrorCode::InvalidParameter, ErrorCode::NotFound]);
    close.insert(
        "204".into(),
        json!({"description": "Told to reconnect (`reconnect-required`, reason `operator`)."}),
    );
    paths.insert(
        "/admin/connections/{id}".into(),
        json!({"delete": {
            "summary": "Close one connection with reconnect-required (admin right)",
            "parameters": [{"name": "id", "in": "path", "required": true,
                "schema": {"type": "integer", "minimum": 0}}],
            "responses": close,
        }}),
    );
    let mut drain = admin_errors(&[]);
    drain.insert(
        "200".into(),
        json!({"description": "Draining: `streams` were told to reconnect, spread over \
            `spreadMs` (absent when a drain was already under way); new subscriptions are \
            refused and `/readyz` answers 503 `draining`.",
            "content": {"application/json": {"schema": {"type": "object",
                "required": ["draining", "streams"],
                "properties": {"draining": {"const": true}, "streams": {"type": "integer"},
                    "spreadMs": {"type": "integer"}}}}}}),
    );
    paths.insert(
        "/admin/drain".into(),
        json!({"post": {
            "summary": "Tell every stream to reconnect, spread over --drain-spread (admin right)",
            "responses": drain,
        }}),
    );
    let mut reconnect = admin_errors(&[
        ErrorCode::MalformedJson,
        ErrorCode::InvalidClientId,
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidEvent,
        ErrorCode::BodyTimeout,
        ErrorCode::BodyTooLarge,
        ErrorCode::Overloaded,
    ]);
    reconnect.insert(
        "200".into(),
        json!({"description": "`closed`: how many streams were told to reconnect.",
            "content": {"application/json": {"schema": {"type": "object", "required": ["closed"],
                "properties": {"closed": {"type": "integer", "minimum": 0}}}}}}),
    );
    paths.insert(
        "/admin/reconnect".into(),
        json!({"post": {
            "summary": "Tell the streams of one client id, or of a selector, to reconnect now (admin right)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "additionalProperties": false,
                "minProperties": 1,
                "maxProperties": 1,
                "description": "Exactly one of `clientId` and `topic`.",
                "properties": {
                    "clientId": client_id_schema(false),
                    "topic": {"type": "string", "minLength": 1, "maxLength": 1024,
                        "pattern": NAME_PATTERN,
                        "description": "A selector: `a/b`, `a/*` or `*`."}
                }
            }}}},
            "responses": reconnect,
        }}),
    );
    for e in endpoints.iter().filter(|e| e.listen.is_none()) {
        paths.insert(e.path.clone(), json!({"get": subscribe_operation(e)}));
        if e.path == super::router::BUILT_IN_PATH {
            paths.insert("/snapshot".into(), json!({"get": snapshot_operation(e)}));
        }
    }
    debug_assert!(
        FIXED_ROUTES
            .iter()
            .all(|(p, m)| paths.get(*p).and_then(|ops| ops.get(*m)).is_some()),
        "every fixed route is documented"
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A real-time event hub: publish JSON events, subscribe over SSE, \
                NDJSON, long-poll or WebSocket, resume exactly where you left off.",
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        // A hub without tokens takes anonymous requests.
        "security": [{"bearer": []}, {}],
        "paths": paths,
    })
}

/// The `GET /openapi.json` handler of a listener serving `endpoints`: the document is
/// encoded once, here.
pub(crate) fn handler(
    endpoints: &[Endpoint],
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let body = Bytes::from(serde_json::to_vec(&document(endpoints)).expect("the document encodes"));
    move || {
        std::future::ready(
            (
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body.clone(),
            )
                .into_response(),
        )
    }
}
