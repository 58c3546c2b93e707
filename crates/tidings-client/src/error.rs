//! The client's error: a kind the caller matches on, and whether retrying can help.

use std::fmt;

use tidings_proto::{ApiError, ErrorCode};

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The arguments were refused before anything was sent (a bad URL, selector, topic or
    /// event). Permanent.
    InvalidInput,
    /// The hub answered 401: no valid credential. Permanent.
    Unauthorized,
    /// The hub answered 403: the credential does not grant this. Permanent.
    Forbidden,
    /// The hub refused the request with another 4xx (invalid event, body too large, …).
    /// Permanent: the same request will be refused again.
    Rejected,
    /// The hub answered 5xx (shutting down, store unavailable, too many connections).
    /// Transient.
    Unavailable,
    /// The hub could not be reached, or the connection broke. Transient.
    Connect,
    /// The hub did not answer in time, or a stream stayed silent past its keep-alive
    /// timeout. Transient.
    Timeout,
    /// The hub sent something this client does not understand. Transient (a reconnect may
    /// land on a healthy hub).
    Protocol,
}

/// An error from the Tidings client.
#[derive(Debug)]
#[non_exhaustive]
pub struct Error {
    kind: ErrorKind,
    status: Option<u16>,
    code: Option<ErrorCode>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            status: None,
            code: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// An error answer: the kind follows the status; the message is the hub's own (it names
    /// the field at fault) when the body is Tidings' JSON error, else a short excerpt.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Error {
        let kind = match status {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            // Timeouts and rate limits are worth another try.
            408 | 429 => ErrorKind::Unavailable,
            400..=499 => ErrorKind::Rejected,
            _ => ErrorKind::Unavailable,
        };
        let (code, message) = match serde_json::from_slice::<ApiError>(body) {
            Ok(e) => (Some(e.error.code), e.error.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                (None, format!("HTTP {status}: {}", text.trim()))
            }
        };
        Error {
            kind,
            status: Some(status),
            code,
            message,
            source: None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Error {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_builder() {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Connect
        };
        let message = match kind {
            ErrorKind::Timeout => "the hub did not answer in time",
            ErrorKind::InvalidInput => "the request could not be built",
            _ => "the hub could not be reached",
        };
        Error::new(kind, message).with_source(e)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same request cannot help (bad input, 401, 403, other 4xx).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::InvalidInput
                | ErrorKind::Unauthorized
                | ErrorKind::Forbidden
                | ErrorKind::Rejected
        )
    }

    /// The HTTP status the hub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The hub's stable error code, if it sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = self.code {
            write!(f, " ({code})")?;
        }
        // The root cause is part of the message, so callers print `{e}` once; the layers
        // between (reqwest's, hyper's) repeat the URL and add nothing a user can act on.
        if let Some(source) = &self.source {
            let mut root: &(dyn std::error::Error + 'static) = source.as_ref();
            while let Some(next) = root.source() {
                root = next;
            }
            write!(f, ": {root}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
