//! Answers to connections the hub will not serve: over the connection limit, or accepted
//! while it drains before exit. An SSE request gets its refusal in-band (`200` with `retry:`
//! and `reconnect-required`), since a browser's `EventSource` gives up for good on any other
//! status; anything else gets a JSON 503. Then the connection is closed without losing the
//! answer.

use std::time::Duration;

use bytes::BytesMut;
use http::Version;
use tidings_proto::ErrorCode;
use tidings_proto::api::ReconnectNotice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::error::HttpError;
use crate::http::head::{self, Framing};
use crate::http::subscribe;
use crate::io::WriteTimeout;
use crate::lean::{Judged, LeanRoutes, MAX_HEADERS, judge};
use crate::transport::{sse, stream};

/// Why a connection is answered and closed without being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The connection limit is reached.
    TooManyConnections,
    /// The client's address has its most connections open.
    TooManyFromAddress,
    /// The hub is draining before exit.
    ShuttingDown,
    /// The request's credential has its most streams open.
    TooManyStreams,
}

impl Refusal {
    fn code(self) -> ErrorCode {
        match self {
            Refusal::TooManyConnections | Refusal::TooManyFromAddress => {
                ErrorCode::TooManyConnections
            }
            Refusal::ShuttingDown => ErrorCode::ShuttingDown,
            Refusal::TooManyStreams => ErrorCode::TooManyStreams,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "the connection limit is reached; retry shortly",
            Refusal::TooManyFromAddress => {
                "this client address has the most connections it may open; retry shortly"
            }
            Refusal::ShuttingDown => "the hub is shutting down; retry shortly",
            Refusal::TooManyStreams => "this credential has the most streams it may hold open",
        }
    }

    /// The `reconnect-required` reason an SSE client is given.
    fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections | Refusal::TooManyFromAddress => "too_many_connections",
            Refusal::ShuttingDown => "shutdown",
            Refusal::TooManyStreams => "too_many_streams",
        }
    }
}

/// Answers a connection the hub will not serve, and closes it. An SSE request to an endpoint
/// gets `200 text/event-stream` with `retry:` and a `reconnect-required` event (a browser's
/// `EventSource` gives up for good on any other status); anything else gets 503 with the
/// refusal's code. The head is waited for at most `timeout`; without one, the 503 is sent.
pub(crate) async fn refuse(
    mut tcp: TcpStream,
    routes: &LeanRoutes,
    refusal: Refusal,
    timeout: Duration,
) {
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut parsed = Judged::NeedMore;
    while matches!(parsed, Judged::NeedMore) {
        match tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => parsed = judge(&buf, routes),
            _ => break,
        }
    }
    let sse = match &parsed {
        Judged::Stream(parts, ctx)
            if ctx.endpoint.transports.sse && !subscribe::wants_ndjson_stream(parts) =>
        {
            Some(ctx.app.transport.retry)
        }
        _ => None,
    };
    let version = match &parsed {
        Judged::Stream(parts, _) => parts.version,
        _ => http_version(&buf),
    };
    drop(parsed);
    let out = refusal_answer(refusal, version, sse);
    let mut wr = WriteTimeout::new(tcp, timeout);
    if wr.write_all(&out).await.is_ok() {
        linger(wr, deadline + timeout).await;
    }
}

/// The bytes of a refusal: in-band for an SSE client (`sse` is the endpoint's `retry`), else
/// a JSON 503.
pub(crate) fn refusal_answer(refusal: Refusal, version: Version, sse: Option<Duration>) -> Vec<u8> {
    let mut headers = http::HeaderMap::new();
    let (status, body) = match sse {
        Some(retry) => {
            let notice = ReconnectNotice {
                reason: refusal.reason().to_owned(),
            };
            let format = stream::Format::Sse {
                retry,
                envelope: false,
            };
            let mut body =
                sse::retry(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX)).to_vec();
            body.extend_from_slice(&sse::reconnect(&notice));
            head::stream(&mut headers, format.content_type());
            (http::StatusCode::OK, body)
        }
        None => {
            let e = HttpError::new(refusal.code(), refusal.message());
            head::json(&mut headers);
            (e.status(), e.body())
        }
    };
    let mut out = head::encode(status, version, &headers, Framing::Length(body.len()));
    out.extend_from_slice(&body);
    out
}

/// The HTTP version a (possibly partial) head asks for; 1.1 if it cannot be told.
fn http_version(buf: &[u8]) -> Version {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match (req.parse(buf), req.version) {
        (_, Some(0)) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

/// Closes after an answer without losing it: shuts the write side, then reads (and drops)
/// what the client still sends until it closes or `until`. Closing with unread bytes would
/// make the kernel reset the connection, and a reset can destroy the answer before the
/// client reads it.
async fn linger(mut wr: WriteTimeout<TcpStream>, until: tokio::time::Instant) {
    if wr.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let mut left = 64usize << 10;
    while left > 0 {
        match tokio::time::timeout_at(until, wr.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}
