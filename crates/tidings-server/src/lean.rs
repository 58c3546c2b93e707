//! The lean HTTP/1 path for streaming subscriptions. The accept loop reads the request head
//! into a small buffer; an SSE or NDJSON `GET` to an endpoint is then served directly on the
//! socket, and everything else (publish, WebSocket upgrades, long-polls, errors hyper should
//! answer) is handed to hyper with the bytes already read replayed in front.
//!
//! Why: hyper keeps an 8 KiB read buffer and a write buffer for the life of a connection, which
//! is most of what an idle SSE subscriber costs. Here the head buffer is freed once parsed, and
//! a streaming connection holds only its socket, its `Subscription` and the body state. The
//! request is judged by the same `prepare` as the hyper path and the bytes come from the same
//! `stream::body`, so both paths answer identically (bar hyper's `date` header).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::error::HttpError;
use crate::http::subscribe::{self, EndpointState, Prepared};
use crate::io::WriteTimeout;
use crate::transport::stream;

/// Subscribe endpoints served on one listener, by path.
pub(crate) type LeanRoutes = Arc<HashMap<String, EndpointState>>;

/// Largest request head the lean path reads; a larger one goes to hyper, which answers it.
const MAX_HEAD: usize = 8 << 10;
/// Most headers parsed; more goes to hyper.
const MAX_HEADERS: usize = 48;

/// What the first bytes of a connection turned out to be.
pub(crate) enum Head {
    /// A streaming subscription to one of this listener's endpoints.
    Stream(Box<http::request::Parts>, EndpointState),
    /// Anything else: these bytes, read already, go to hyper first.
    Other(Bytes),
    /// The client sent nothing and went away (or stayed silent past the timeout).
    Gone,
}

/// Reads and classifies the request head.
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    routes: &LeanRoutes,
    timeout: Duration,
) -> Head {
    if routes.is_empty() {
        return Head::Other(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        let more = matches!(read, Ok(Ok(n)) if n > 0);
        if !more {
            // Timeout, error or end of stream: hyper answers a partial head (or just closes).
            return if buf.is_empty() {
                Head::Gone
            } else {
                Head::Other(buf.freeze())
            };
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len == buf.len() => {
                return match classify(&req, routes) {
                    Some((parts, ctx)) => Head::Stream(Box::new(parts), ctx),
                    None => Head::Other(buf.freeze()),
                };
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            // A body or a pipelined request follows, the head is too large, or it is not
            // valid HTTP: hyper's job.
            _ => return Head::Other(buf.freeze()),
        }
    }
}

fn classify(
    req: &httparse::Request<'_, '_>,
    routes: &LeanRoutes,
) -> Option<(http::request::Parts, EndpointState)> {
    let path = req.path?;
    if !path.starts_with('/') {
        return None;
    }
    let uri: http::Uri = path.parse().ok()?;
    let ctx = routes.get(uri.path())?;
    let version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = http::Request::builder()
        .method(http::Method::from_bytes(req.method?.as_bytes()).ok()?)
        .uri(uri)
        .version(version);
    for h in req.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(h.value).ok()?;
        builder = builder.header(name, value);
    }
    let (parts, ()) = builder.body(()).ok()?.into_parts();
    subscribe::is_stream_request(&parts).then(|| (parts, ctx.clone()))
}

/// Serves one streaming subscription on `tcp` until either side ends it.
pub(crate) async fn serve(
    tcp: TcpStream,
    parts: &http::request::Parts,
    ctx: &EndpointState,
    write_timeout: Duration,
) {
    let chunked = parts.version == Version::HTTP_11;
    let (mut rd, wr) = tcp.into_split();
    let mut wr = WriteTimeout::new(wr, write_timeout);
    let (sub, format) = match subscribe::prepare(ctx, parts) {
        Ok(Prepared::Stream(sub, format)) => (sub, format),
        Ok(_) => {
            // `classify` admits only streaming requests; anything else is a bug, said politely.
            let e = HttpError::new(tidings_proto::ErrorCode::Internal, "request was misrouted");
            write_error(&mut wr, &e).await;
            return;
        }
        Err(e) => {
            write_error(&mut wr, &e).await;
            return;
        }
    };
    let mut head = Vec::with_capacity(192);
    head.extend_from_slice(if chunked {
        b"HTTP/1.1 200 OK\r\n"
    } else {
        b"HTTP/1.0 200 OK\r\n"
    });
    head.extend_from_slice(b"content-type: ");
    head.extend_from_slice(format.content_type().as_bytes());
    head.extend_from_slice(b"\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n");
    head.extend_from_slice(if chunked {
        b"transfer-encoding: chunked\r\n\r\n"
    } else {
        b"connection: close\r\n\r\n"
    });
    if wr.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    let body = stream::body(sub, format, ctx.app.transport.keepalive);
    tokio::pin!(body);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            biased;
            // Only the end of the request side matters: the client went away.
            read = rd.read(&mut probe) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            chunk = body.next() => match chunk {
                Some(Ok(data)) => {
                    let frame = if chunked { chunk_frame(&data) } else { data };
                    if wr.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Some(Err(never)) => match never {},
                None => {
                    if chunked && wr.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                    if wr.shutdown().await.is_err() {
                        tracing::debug!(message = "Could not shut down a finished stream.");
                    }
                    return;
                }
            },
        }
    }
}

/// One HTTP/1.1 chunk: hex length, CRLF, data, CRLF.
fn chunk_frame(data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 12);
    let mut w = (&mut buf).writer();
    write!(w, "{:x}\r\n", data.len()).expect("writing to memory cannot fail");
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
    buf.freeze()
}

async fn write_error(wr: &mut WriteTimeout<tokio::net::tcp::OwnedWriteHalf>, e: &HttpError) {
    let body = e.body();
    let status = e.status();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    if wr.write_all(&out).await.is_ok() && wr.shutdown().await.is_err() {
        tracing::debug!(message = "Could not shut down after an error answer.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed() {
        assert_eq!(&chunk_frame(b"hello")[..], b"5\r\nhello\r\n");
        assert_eq!(&chunk_frame(&[b'x'; 26])[..4], b"1a\r\n");
    }
}
