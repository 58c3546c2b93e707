//! `HttpError`: the one way a handler fails. Status comes from the stable code; the body is
//! `{"error": {"code", "message"}}`. An internal cause (a store failure) is never sent: the
//! client gets the stable code and a generic message, and the cause is logged once, where it
//! was handled (the store logs the failure that poisoned it).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tidings_proto::{ApiError, ErrorCode};

/// An error answer.
#[derive(Debug)]
pub(crate) struct HttpError(pub(crate) ApiError, Option<u64>);

impl HttpError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(ApiError::new(code, message), None)
    }

    /// The same, answered with `Retry-After: secs`.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.1 = Some(secs);
        self
    }

    /// `store_unavailable`, with nothing of the cause in it.
    pub(crate) fn store_unavailable() -> Self {
        HttpError::new(ErrorCode::StoreUnavailable, STORE_UNAVAILABLE)
    }
}

/// The message of every `store_unavailable` answer.
pub(crate) const STORE_UNAVAILABLE: &str =
    "the event store is unavailable; the server's log has the cause";

impl HttpError {
    /// The status of this error's code.
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Logs the refusal (debug level): its stable code and status, never its message, which
    /// may quote the request.
    pub(crate) fn log(&self) {
        tracing::debug!(
            message = "Request refused.",
            code = %self.0.error.code,
            status = self.status().as_u16(),
        );
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("an error body serializes")
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // A server error's cause was logged where it was handled; this is one answer.
        self.log();
        let status = self.status();
        let mut response = (status, Json(self.0)).into_response();
        if let Some(secs) = self.1 {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

impl From<tidings_core::PublishError> for HttpError {
    fn from(e: tidings_core::PublishError) -> Self {
        match e {
            tidings_core::PublishError::Store(_) => HttpError::store_unavailable(),
            e => HttpError::new(e.code(), e.to_string()),
        }
    }
}

impl From<tidings_core::SubscribeError> for HttpError {
    fn from(e: tidings_core::SubscribeError) -> Self {
        HttpError::new(e.code(), e.to_string())
    }
}

impl From<tidings_core::SnapshotError> for HttpError {
    fn from(e: tidings_core::SnapshotError) -> Self {
        match e {
            tidings_core::SnapshotError::Store(_) => HttpError::store_unavailable(),
            e => HttpError::new(e.code(), e.to_string()),
        }
    }
}

impl From<tidings_auth::AuthError> for HttpError {
    fn from(e: tidings_auth::AuthError) -> Self {
        HttpError::new(e.code(), e.to_string())
    }
}
