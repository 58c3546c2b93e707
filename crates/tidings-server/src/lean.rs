//! The lean HTTP/1 path for streaming subscriptions. The accept loop reads the request head
//! into a small buffer; an SSE or NDJSON `GET` to an endpoint is then served directly on the
//! socket, and everything else (publish, WebSocket upgrades, long-polls, errors hyper should
//! answer) is handed to hyper with the bytes already read replayed in front.
//!
//! Why: hyper keeps an 8 KiB read buffer and a write buffer for the life of a connection, which
//! is most of what an idle SSE subscriber costs. Here the head buffer is freed once parsed, and
//! a streaming connection holds only its socket, its `Subscription` and the body state. The
//! request is judged by the same `prepare` as the hyper path and the bytes come from the same
//! `stream::body`, and the head is built by the same `http::head`, so both paths answer
//! alike; the lean path always closes after its answer and says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use tidings_proto::ErrorCode;

use crate::ack::AckTracker;
use crate::http::error::HttpError;
use crate::http::extract;
use crate::http::head::{self, Framing};
use crate::http::subscribe::{self, EndpointState, Prepared};
use crate::io::WriteTimeout;
use crate::refusal::{Refusal, refusal_answer};
use crate::transport::stream;

/// Subscribe endpoints served on one listener, by path.
pub(crate) type LeanRoutes = Arc<Routes>;

/// The streaming routes of one listener: plain paths by exact match, then paths with
/// parameters (`/api/cameras/{id}/events`) tried in order.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    exact: HashMap<String, EndpointState>,
    templated: Vec<EndpointState>,
}

impl Routes {
    /// Routes of these endpoint states.
    pub(crate) fn new(states: impl IntoIterator<Item = EndpointState>) -> Routes {
        let mut routes = Routes::default();
        for ctx in states {
            if ctx.endpoint.template.has_params() {
                routes.templated.push(ctx);
            } else {
                routes.exact.insert(ctx.endpoint.path.clone(), ctx);
            }
        }
        routes
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.templated.is_empty()
    }

    /// The endpoint serving `path` (a path whose parameter is not a safe segment still goes
    /// to its endpoint, which refuses it).
    pub(crate) fn get(&self, path: &str) -> Option<&EndpointState> {
        self.exact.get(path).or_else(|| {
            self.templated
                .iter()
                .find(|c| c.endpoint.template.captures(path).is_some())
        })
    }
}

/// Largest request head the lean path reads; a larger one goes to hyper, which answers it.
pub(crate) const MAX_HEAD: usize = 8 << 10;
/// Most headers parsed; more goes to hyper.
pub(crate) const MAX_HEADERS: usize = 48;

/// What the first bytes of a connection turned out to be.
pub(crate) enum Head {
    /// A streaming subscription to one of this listener's endpoints.
    Stream(Box<http::request::Parts>, EndpointState),
    /// Anything else: these bytes, read already, go to hyper first.
    Other(Bytes),
    /// The client sent nothing and went away (or stayed silent past the timeout).
    Gone,
}

/// What a buffer holding the start of a connection is, judged without a socket.
#[derive(Debug)]
pub(crate) enum Judged {
    /// A complete head of a streaming subscription to one of `routes`.
    Stream(Box<http::request::Parts>, EndpointState),
    /// Not a complete head yet (and still under the size the lean path reads).
    NeedMore,
    /// Anything else (another request, a body or pipelined request after the head, a head
    /// too large, not HTTP): hyper's job.
    Other,
}

/// Classifies `buf`, the bytes a connection has sent so far. Pure: the fuzz target and the
/// over-limit answer use it as the accept loop does.
pub(crate) fn judge(buf: &[u8], routes: &LeanRoutes) -> Judged {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len == buf.len() => {
            match classify(&req, buf, routes) {
                Some((parts, ctx)) => Judged::Stream(Box::new(parts), ctx),
                None => Judged::Other,
            }
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Judged::NeedMore,
        _ => Judged::Other,
    }
}

/// Reads and classifies the request head. A connection that has sent nothing when the hub
/// starts shutting down (`stop` turns `true`) is closed, as hyper closes an idle one: it has
/// no request to answer, and waiting for one would hold the drain for the header timeout.
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    routes: &LeanRoutes,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Head {
    if routes.is_empty() {
        return Head::Other(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let read = if buf.is_empty() {
            // The read comes first: a head already waiting is taken in and answered.
            let first = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    biased;
                    read = stream.read_buf(&mut buf) => Some(read),
                    () = stopping(stop) => None,
                }
            })
            .await;
            match first {
                Ok(Some(read)) => Ok(read),
                Ok(None) => return Head::Gone,
                Err(elapsed) => Err(elapsed),
            }
        } else {
            tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await
        };
        let more = matches!(read, Ok(Ok(n)) if n > 0);
        if !more {
            // Timeout, error or end of stream: hyper answers a partial head (or just closes).
            return if buf.is_empty() {
                Head::Gone
            } else {
                Head::Other(buf.freeze())
            };
        }
        match judge(&buf, routes) {
            Judged::Stream(parts, ctx) => return Head::Stream(parts, ctx),
            Judged::NeedMore => {}
            Judged::Other => return Head::Other(buf.freeze()),
        }
    }
}

/// Resolves once `stop` turns `true`; never if its sender is gone without saying so.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The request head as `http::request::Parts` (what `prepare` reads, as hyper's path hands it
/// over), if it is a streaming request to one of `routes`. The parts are filled in place:
/// the method and path checked before anything is copied, the header map sized once, and the
/// head copied once into one shared buffer that the URI and every header value point into
/// (no `http::request::Builder`, which moved the whole request through a `Result` for each
/// header, and no allocation per header value: callgrind counted about 2,500 instructions a
/// connect for those).
fn classify(
    req: &httparse::Request<'_, '_>,
    buf: &[u8],
    routes: &LeanRoutes,
) -> Option<(http::request::Parts, EndpointState)> {
    let path = req.path?;
    if !path.starts_with('/') {
        return None;
    }
    let method = match req.method? {
        "GET" => http::Method::GET,
        // Only a GET streams; anything else is hyper's to answer.
        _ => return None,
    };
    let shared = Bytes::copy_from_slice(buf);
    // The same bytes in `shared`: httparse's slices all point into `buf`.
    let share = |part: &[u8]| -> Bytes {
        (part.as_ptr() as usize)
            .checked_sub(buf.as_ptr() as usize)
            .filter(|at| at + part.len() <= shared.len())
            .map_or_else(
                || Bytes::copy_from_slice(part),
                |at| shared.slice(at..at + part.len()),
            )
    };
    let uri = http::Uri::from_maybe_shared(share(path.as_bytes())).ok()?;
    let ctx = routes.get(uri.path())?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    parts.headers.try_reserve(req.headers.len()).ok()?;
    for h in req.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_maybe_shared(share(h.value)).ok()?;
        parts.headers.try_append(name, value).ok()?;
    }
    subscribe::is_stream_request(&parts).then(|| (parts, ctx.clone()))
}

/// Serves one streaming subscription on `tcp` until either side ends it. The request head and
/// the endpoint context are dropped once the subscription is open: a long-lived stream keeps
/// only what it writes with.
pub(crate) async fn serve(
    tcp: TcpStream,
    parts: Box<http::request::Parts>,
    ctx: Box<EndpointState>,
    write_timeout: Duration,
) {
    let chunked = parts.version == Version::HTTP_11;
    let keepalive = ctx.endpoint.keepalive_every(ctx.app.transport.keepalive);
    let (mut rd, wr) = tcp.into_split();
    let mut wr = WriteTimeout::new(wr, write_timeout);
    // Boxed: the opening's state is freed once the stream runs, and every long-lived stream
    // would otherwise carry room for it.
    let Some((place, body, head_len)) = Box::pin(open(&mut wr, parts, ctx, keepalive)).await else {
        return;
    };
    // A client-id session's place moves only as far as the client's TCP stack acknowledged.
    let mut acks = place.map(|place| {
        let mut t = Box::new(AckTracker::new(place));
        t.wrote(head_len, None, wr.get_ref().as_ref());
        t
    });
    // Boxed: its size is counted with the connection's in the test below, not twice.
    let mut body = Box::pin(body);
    let mut probe = [0u8; 16];
    loop {
        tokio::select! {
            // Data first: the read side is only polled while the stream waits, which is when
            // its readiness needs registering anyway.
            biased;
            piece = body.next() => match piece {
                Some(piece) => {
                    if write_chunk(&mut wr, &piece.bytes, chunked).await.is_err() {
                        break;
                    }
                    if let Some(t) = acks.as_mut() {
                        let len = framed_len(piece.bytes.len(), chunked);
                        let socket = wr.get_ref().as_ref();
                        t.wrote(len, piece.last_seq, socket);
                        if piece.last_seq.is_none() {
                            // A keepalive or notice: a quiet moment to catch up.
                            t.check(socket);
                        }
                    }
                }
                None => {
                    if chunked && wr.write_all(b"0\r\n\r\n").await.is_err() {
                        break;
                    }
                    if wr.shutdown().await.is_err() {
                        tracing::debug!(message = "Could not shut down a finished stream.");
                    }
                    break;
                }
            },
            // Only the end of the request side matters: the client went away.
            read = rd.read(&mut probe) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    // Before the socket closes (and the subscription detaches its session): what did the
    // client's TCP stack acknowledge in the end?
    if let Some(t) = acks.as_mut() {
        t.check(wr.get_ref().as_ref());
    }
}

/// Bytes a piece of `len` takes on the wire (with its chunk framing).
fn framed_len(len: usize, chunked: bool) -> usize {
    if !chunked {
        return len;
    }
    hex_digits(len) + 2 + len + 2
}

/// Judges the request, then writes the answer's head with the stream's first piece (its
/// preamble: `retry:`, the endpoint's handshake) in one write, or the whole answer if the
/// subscription is refused (`None`). Returns the session's place (for a client id), the
/// rest of the stream's pieces, and the bytes written.
async fn open(
    wr: &mut WriteTimeout<tokio::net::tcp::OwnedWriteHalf>,
    parts: Box<http::request::Parts>,
    ctx: Box<EndpointState>,
    keepalive: Option<Duration>,
) -> Option<(
    Option<tidings_core::SessionPlace>,
    impl futures_util::Stream<Item = stream::Piece> + Send + 'static,
    usize,
)> {
    let version = parts.version;
    if ctx.app.hub.is_clustered() {
        // Boxed: only a cluster node waits here, and one node's connections stay small.
        Box::pin(subscribe::catch_up(&ctx, &parts)).await;
    }
    let prepared = match extract::host(&parts.headers, None, &ctx.app)
        .and_then(|()| subscribe::prepare(&ctx, &parts))
    {
        // Boxed: the snapshot's read is rare, and its room would stay in every connection's
        // future for the stream's life.
        Ok(p) if subscribe::snapshot_requested(&parts) => {
            Box::pin(subscribe::with_snapshot(&parts, p)).await
        }
        Ok(p) => Ok(p),
        Err(e) => Err(e),
    };
    // The hub began shutting down after this connection was accepted: an SSE client is told
    // in-band, as one accepted during the drain is.
    // So is one whose credential has its most streams open: shedding load in-band.
    let shed = match &prepared {
        Err(e) if e.0.error.code == ErrorCode::ShuttingDown => Some(Refusal::ShuttingDown),
        Err(e) if e.0.error.code == ErrorCode::TooManyStreams => Some(Refusal::TooManyStreams),
        Err(e) if e.0.error.code == ErrorCode::TooManyConnections => {
            Some(Refusal::TooManyFromAddress)
        }
        _ => None,
    }
    .filter(|_| !subscribe::wants_ndjson_stream(&parts));
    // During a drain, long enough for the client to land on another node.
    let retry = if ctx.app.hub.draining() {
        ctx.app.transport.retry.max(ctx.app.edge.drain_spread())
    } else {
        ctx.app.transport.retry
    };
    let mut headers = http::HeaderMap::new();
    head::cors(
        &mut headers,
        &ctx.endpoint.cors,
        parts.headers.get(http::header::ORIGIN),
    );
    drop((parts, ctx));
    if let Some(refusal) = shed {
        let out = refusal_answer(refusal, version, Some(retry));
        if wr.write_all(&out).await.is_ok() && wr.shutdown().await.is_err() {
            tracing::debug!(message = "Could not shut down after a refusal.");
        }
        return None;
    }
    let (sub, format, lease, endpoint) = match prepared {
        Ok(Prepared::Stream(sub, format, lease, endpoint)) => (sub, format, lease, endpoint),
        Ok(_) => {
            // `classify` admits only streaming requests; anything else is a bug, said politely.
            let e = HttpError::new(ErrorCode::Internal, "request was misrouted");
            write_error(wr, version, &e, headers).await;
            return None;
        }
        Err(e) => {
            write_error(wr, version, &e, headers).await;
            return None;
        }
    };
    head::stream(&mut headers, format.content_type());
    if endpoint.keep_alive_header
        && matches!(format, stream::Format::Sse { .. })
        && version == Version::HTTP_11
    {
        // As the download manager's document lists it. The connection still ends with the
        // stream: the last chunk says where the body ends, so no client misreads it.
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("keep-alive"),
        );
    }
    let framing = if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::UntilClose
    };
    let mut head = head::encode(http::StatusCode::OK, version, &headers, framing);
    drop(headers);
    let place = sub.session_place();
    let (preamble, body) = stream::opening(sub, format, keepalive, endpoint, lease);
    if let Some(first) = preamble {
        if framing == Framing::Chunked {
            let mut chunk = [0u8; 18];
            let n = chunk_head(&mut chunk, first.len());
            head.extend_from_slice(&chunk[..n]);
            head.extend_from_slice(&first);
            head.extend_from_slice(b"\r\n");
        } else {
            head.extend_from_slice(&first);
        }
    }
    wr.write_all(&head).await.ok()?;
    Some((place, body, head.len()))
}

/// Writes `data` as one HTTP/1.1 chunk (or as is), gathering the chunk header, the shared
/// data and the trailer in vectored writes instead of copying them together.
async fn write_chunk(
    wr: &mut WriteTimeout<tokio::net::tcp::OwnedWriteHalf>,
    data: &[u8],
    chunked: bool,
) -> std::io::Result<()> {
    if !chunked {
        return wr.write_all(data).await;
    }
    let mut head = [0u8; 18];
    let head_len = chunk_head(&mut head, data.len());
    let sent = match try_send_small(wr.get_ref(), &head[..head_len], data) {
        Some(Ok(n)) => n,
        Some(Err(e)) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
        _ => 0,
    };
    let mut parts = [
        std::io::IoSlice::new(&head[..head_len]),
        std::io::IoSlice::new(data),
        std::io::IoSlice::new(b"\r\n"),
    ];
    let mut slices = &mut parts[..];
    std::io::IoSlice::advance_slices(&mut slices, sent);
    while !slices.is_empty() {
        let n = wr.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Largest chunk sent from a stack buffer by `try_send_small`.
const SMALL_CHUNK: usize = 512;

/// Most chunks are one small event. Such a chunk is assembled in a stack buffer and sent with
/// one plain `send`, which costs the kernel less than a three-part `writev` (the copy is a few
/// hundred bytes). Synchronous, so the buffer never becomes part of the connection's future.
/// `None`: too large, use the vectored path; `Some(Ok(n))`: `n` bytes went out.
fn try_send_small(
    wr: &tokio::net::tcp::OwnedWriteHalf,
    head: &[u8],
    data: &[u8],
) -> Option<std::io::Result<usize>> {
    let total = head.len() + data.len() + 2;
    if total > SMALL_CHUNK {
        return None;
    }
    let mut buf = [0u8; SMALL_CHUNK];
    buf[..head.len()].copy_from_slice(head);
    buf[head.len()..head.len() + data.len()].copy_from_slice(data);
    buf[total - 2..total].copy_from_slice(b"\r\n");
    Some(wr.try_write(&buf[..total]))
}

/// Writes `<hex len>\r\n` into `buf`; returns its length. By hand: this runs once or twice
/// per delivery, and `write!` with `{:x}` cost about ten times as much.
fn chunk_head(buf: &mut [u8; 18], len: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = hex_digits(len);
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        *b = HEX[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    digits + 2
}

/// Hex digits of `len` (at least one).
fn hex_digits(len: usize) -> usize {
    ((usize::BITS - (len | 1).leading_zeros()) as usize).div_ceil(4)
}

async fn write_error(
    wr: &mut WriteTimeout<tokio::net::tcp::OwnedWriteHalf>,
    version: Version,
    e: &HttpError,
    mut headers: http::HeaderMap,
) {
    e.log();
    let body = e.body();
    head::json(&mut headers);
    let mut out = head::encode(e.status(), version, &headers, Framing::Length(body.len()));
    out.extend_from_slice(&body);
    if wr.write_all(&out).await.is_ok() && wr.shutdown().await.is_err() {
        tracing::debug!(message = "Could not shut down after an error answer.");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tidings_core::{Hub, Limits, MemoryStore, Retention};

    use super::*;
    use crate::endpoint::{Endpoint, Origins, TransportOptions};
    use crate::state::AppState;
    use crate::tracked::Tracked;

    fn routes() -> LeanRoutes {
        let store = Arc::new(MemoryStore::new(
            tidings_proto::Epoch(1),
            Retention::default(),
        ));
        let hub = Hub::new(store, Limits::default());
        let app = AppState {
            observers: Arc::new(crate::Observers::new(
                crate::Metrics::new(&[]).with_hub(&hub),
            )),
            hub,
            auth: Arc::new(tidings_auth::Authorizer::new(vec![])),
            transport: TransportOptions::default(),
            edge: crate::state::Edge::default(),
            credentials: Default::default(),
        };
        let endpoint = Endpoint::default_events(Origins::SameOrigin);
        let ctx = EndpointState {
            app,
            endpoint: Arc::new(endpoint),
        };
        Arc::new(Routes::new([ctx]))
    }

    /// `Some(true)`: the lean path takes it; `Some(false)`: hyper does; `None`: not a full head.
    fn lean(head: &[u8], routes: &LeanRoutes) -> Option<bool> {
        match judge(head, routes) {
            Judged::Stream(..) => Some(true),
            Judged::Other => Some(false),
            Judged::NeedMore => None,
        }
    }

    #[test]
    fn only_streaming_gets_to_an_endpoint_are_lean() {
        let r = routes();
        let req = |s: &str| lean(s.as_bytes(), &r);
        assert_eq!(
            req("GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(true)
        );
        assert_eq!(
            req("GET /events?format=ndjson HTTP/1.0\r\n\r\n"),
            Some(true)
        );
        assert_eq!(
            req("GET /events?poll=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(false)
        );
        assert_eq!(req("POST /events HTTP/1.1\r\nHost: x\r\n\r\n"), Some(false));
        assert_eq!(
            req("GET /events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            Some(false)
        );
        assert_eq!(req("GET /publish HTTP/1.1\r\n\r\n"), Some(false));
        assert_eq!(req("GET http://x/events HTTP/1.1\r\n\r\n"), Some(false));
        assert_eq!(req("GET /events HTTP/1.1\r\n"), None);
    }

    /// The parts a lean stream gets are the head as sent: path and query, version, every
    /// header with its value, repeated ones in order.
    #[test]
    fn judged_parts_are_the_head_as_sent() {
        let r = routes();
        let head = b"GET /events?topic=a/*&type=t HTTP/1.1\r\nHost: x:1\r\nAuthorization: Bearer s3cret\r\nX-Tag: one\r\nx-tag: two\r\nLast-Event-ID: \r\n\r\n";
        let Judged::Stream(parts, _) = judge(head, &r) else {
            panic!("not judged a stream")
        };
        assert_eq!(parts.method, http::Method::GET);
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.uri.path(), "/events");
        assert_eq!(parts.uri.query(), Some("topic=a/*&type=t"));
        assert_eq!(parts.headers.len(), 5);
        assert_eq!(parts.headers["host"], "x:1");
        assert_eq!(parts.headers["authorization"], "Bearer s3cret");
        let tags: Vec<_> = parts.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["one", "two"]);
        assert_eq!(parts.headers["last-event-id"], "");
        let Judged::Stream(parts, _) = judge(b"GET /events HTTP/1.0\r\n\r\n", &r) else {
            panic!("not judged a stream")
        };
        assert_eq!(parts.version, Version::HTTP_10);
        assert!(parts.headers.is_empty());
        // A header value HTTP forbids sends the head to hyper, which answers it.
        assert!(matches!(
            judge(b"GET /events HTTP/1.1\r\nX: a\x7fb\r\n\r\n", &r),
            Judged::Other
        ));
    }

    proptest! {
        /// Any head: classified or left to hyper, never a panic.
        #[test]
        fn any_head_is_classified_without_panic(
            method in "GET|POST|get|G\x00T",
            path in "/events[?&=a-z%0-9\\x7f-\\xff]{0,12}|[^ ]{0,8}",
            headers in proptest::collection::vec(("[A-Za-z-]{1,8}|Upgrade|Last-Event-ID", "[ -~\\x80-\\xff]{0,12}"), 0..4),
        ) {
            let mut head = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
            for (k, v) in &headers {
                head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            let r = routes();
            if lean(&head, &r) == Some(true) {
                prop_assert!(path.starts_with("/events"));
            }
        }
    }

    #[test]
    fn chunk_heads_are_hex() {
        let mut buf = [0u8; 18];
        let n = chunk_head(&mut buf, 5);
        assert_eq!(&buf[..n], b"5\r\n");
        let n = chunk_head(&mut buf, 26);
        assert_eq!(&buf[..n], b"1a\r\n");
        let n = chunk_head(&mut buf, usize::MAX);
        assert_eq!(&buf[..n], b"ffffffffffffffff\r\n");
        for len in [0, 1, 15, 16, 255, 256, 4095, 4096, 65_535, 65_536, 1 << 40] {
            let n = chunk_head(&mut buf, len);
            assert_eq!(&buf[..n], format!("{len:x}\r\n").as_bytes());
            assert_eq!(framed_len(len, true), n + len + 2);
            assert_eq!(framed_len(len, false), len);
        }
    }

    /// Every idle lean subscriber is one `serve` future and its boxed body stream: what they
    /// hold is what an idle stream costs. Opening the stream (judging, error answers, the
    /// head) runs boxed so its state is not part of it, and the endpoint context comes boxed,
    /// since it is only read while opening. 1,312 bytes before the opening was boxed; at most
    /// 1,024 before the stream carried its endpoint (session names, handshake, keep-alive
    /// style), a session's acknowledgement tracking and its credential's lease (expiry timer,
    /// stream place); the operator bookkeeping (`Tracked`) adds one pointer.
    #[tokio::test]
    async fn a_lean_stream_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (parts, ()) = http::Request::new(()).into_parts();
        let ctx = routes().get("/events").expect("the route").clone();
        let sub = ctx
            .app
            .hub
            .subscribe(tidings_core::SubscribeRequest {
                selector: tidings_proto::Selector::all(),
                cursor: None,
                client_id: None,
            })
            .unwrap();
        let format = stream::Format::Ndjson(crate::Shape::Event);
        let lease = crate::credential::Lease::default();
        let body = stream::pieces(
            Tracked::untracked(sub),
            format,
            None,
            ctx.endpoint.clone(),
            lease,
        );
        let body_size = std::mem::size_of_val(&body);
        let future = serve(tcp, Box::new(parts), Box::new(ctx), Duration::from_secs(1));
        let size = std::mem::size_of_val(&future) + body_size;
        assert!(size <= 1480, "{size} bytes");
    }
}
