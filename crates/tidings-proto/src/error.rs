//! Stable error codes and the JSON error body every HTTP error uses:
//! `{"error": {"code": "<code>", "message": "<names the field and the reason>"}}`.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident => ($code:literal, $status:literal, $doc:literal),)*) => {
        /// A stable, snake_case error code. Clients match on these; they never change meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status that carries this code.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
        }
    };
}

codes! {
    MalformedJson => ("malformed_json", 400, "The body is not valid JSON."),
    InvalidParameter => ("invalid_parameter", 400, "A query parameter or header is invalid."),
    InvalidClientId => ("invalid_client_id", 400, "A client id is not valid (a UUID where the endpoint requires one, else printable ASCII of at most 64 bytes)."),
    Unauthorized => ("unauthorized", 401, "No valid credential was presented."),
    Forbidden => ("forbidden", 403, "The credential does not grant this action on this topic."),
    ForbiddenHost => ("forbidden_host", 403, "The request's Host is not a name this hub answers to."),
    CookieOnlyPublish => ("cookie_only_publish", 403, "A publish authenticated only by a cookie is refused (cross-site request forgery)."),
    NotFound => ("not_found", 404, "No such route."),
    MethodNotAllowed => ("method_not_allowed", 405, "The route does not accept this method."),
    BodyTimeout => ("body_timeout", 408, "The request body did not arrive within the time allowed."),
    BodyTooLarge => ("body_too_large", 413, "The request body exceeds the configured limit."),
    EventTooLarge => ("event_too_large", 413, "One event's data exceeds the configured limit."),
    BatchTooLarge => ("batch_too_large", 413, "The batch has more events than allowed."),
    UnsupportedMediaType => ("unsupported_media_type", 415, "Publish bodies must be application/json."),
    InvalidEvent => ("invalid_event", 422, "The event is missing a field or has an unknown one."),
    InvalidTopic => ("invalid_topic", 422, "A topic or selector is not valid."),
    InvalidType => ("invalid_type", 422, "An event type is not valid."),
    InvalidKey => ("invalid_key", 422, "An event key is not valid."),
    ReservedType => ("reserved_type", 422, "The event type is one the hub sends itself (subscribed, resumed, reset, snapshot, reconnect-required, or an endpoint's handshake, keep-alive or synthetic name)."),
    SchemaMismatch => ("schema_mismatch", 422, "An event's data does not match the JSON Schema configured for its type; the message names the failing JSON path and rule."),
    IdempotencyConflict => ("idempotency_conflict", 422, "An idempotency key was reused with a different body."),
    SnapshotTooLarge => ("snapshot_too_large", 422, "The snapshot of the selector is larger than the configured limit; narrow the topic or type."),
    TooManyStreams => ("too_many_streams", 429, "The credential has the most streams it may hold open."),
    RateLimited => ("rate_limited", 429, "The credential publishes faster than its rate; retry after the Retry-After seconds."),
    TooManyConnections => ("too_many_connections", 503, "The connection limit is reached."),
    ShuttingDown => ("shutting_down", 503, "The hub is shutting down."),
    Overloaded => ("overloaded", 503, "Too many request bodies are being received; retry shortly."),
    StoreUnavailable => ("store_unavailable", 503, "The event store failed; nothing was published."),
    Internal => ("internal", 500, "An internal error; the cause is logged."),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{s}`")))
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// The error itself.
    pub error: ApiErrorBody,
}

/// Code and message of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable reason, naming the field at fault.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            error: ApiErrorBody {
                code,
                message: message.into(),
            },
        }
    }
}
