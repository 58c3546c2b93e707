//! Streaming HTTP bodies (SSE and NDJSON): a `Subscription` as a stream of chunks. Everything
//! ready for a connection becomes one chunk of up to `PIECE_BYTES`, so it goes out in one
//! write; a single event is sent as its shared cached frame without a copy. A bigger step (a
//! replay chunk of large events) goes out in several pieces, and the events of each piece are
//! let go once it is handed on, so a connection never holds a second copy of a whole chunk.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tidings_core::{CloseReason, ResetReason, SharedEvent, Step, Subscription};
use tidings_proto::EventId;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use super::frame::{self, Shape};
use super::{reconnect_notice, reset_notice, session_notice, snapshot_notice, sse};
use crate::credential::{Lease, StreamSlot};
use crate::endpoint::{Endpoint, Keepalive};
use crate::tracked::Tracked;

/// A text streaming format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/event-stream`, with the `retry:` hint first.
    Sse {
        /// The `retry:` hint.
        retry: Duration,
        /// Each event's `data:` is its envelope frame, not its payload (`sse_data`).
        envelope: bool,
    },
    /// `application/x-ndjson`: one JSON frame per line; keepalive is an empty line.
    Ndjson(Shape),
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Sse { .. } => "text/event-stream",
            Format::Ndjson(_) => "application/x-ndjson",
        }
    }

    fn preamble(self) -> Option<Bytes> {
        match self {
            Format::Sse { retry, .. } => Some(sse::retry(retry.as_millis() as u64)),
            Format::Ndjson(_) => None,
        }
    }

    fn keepalive(self) -> Bytes {
        match self {
            Format::Sse { .. } => Bytes::from_static(sse::KEEPALIVE),
            Format::Ndjson(_) => Bytes::from_static(b"\n"),
        }
    }

    /// Bytes `event` takes in a joined chunk.
    fn frame_len(self, event: &SharedEvent) -> usize {
        match self {
            Format::Sse { envelope, .. } => sse_frame(event, envelope).len(),
            Format::Ndjson(shape) => frame::event(event, shape).len() + 1,
        }
    }

    fn join(self, events: &[SharedEvent]) -> Bytes {
        match self {
            Format::Sse { envelope, .. } => {
                if let [one] = events {
                    return sse_frame(one, envelope).clone();
                }
                let mut buf = BytesMut::with_capacity(
                    events.iter().map(|e| sse_frame(e, envelope).len()).sum(),
                );
                for e in events {
                    buf.extend_from_slice(sse_frame(e, envelope));
                }
                buf.freeze()
            }
            Format::Ndjson(shape) => {
                let len = events
                    .iter()
                    .map(|e| frame::event(e, shape).len() + 1)
                    .sum();
                let mut buf = BytesMut::with_capacity(len);
                for e in events {
                    buf.extend_from_slice(frame::event(e, shape));
                    buf.extend_from_slice(b"\n");
                }
                buf.freeze()
            }
        }
    }

    /// The frame of a `reset` notice.
    fn reset(self, reason: ResetReason, resume_after: EventId) -> Bytes {
        let notice = reset_notice(reason, resume_after);
        match self {
            Format::Sse { .. } => sse::reset(&notice, resume_after),
            Format::Ndjson(shape) => {
                line(frame::control(shape, "reset", Some(resume_after), &notice))
            }
        }
    }

    /// The frame of a `subscribed` or `resumed` notice (named by the endpoint): it carries
    /// the id the stream continues after, so the client's last id moves there.
    fn session(self, name: &str, notice: &serde_json::Value, cursor: EventId) -> Bytes {
        match self {
            Format::Sse { .. } => sse::named(name, Some(cursor), notice),
            Format::Ndjson(shape) => line(frame::control(shape, name, Some(cursor), notice)),
        }
    }

    /// The `snapshot` handoff: its id is the snapshot's cursor, so the client's last id moves
    /// there once the snapshot's events are in.
    fn snapshot(self, cursor: EventId) -> Bytes {
        let notice = snapshot_notice(cursor);
        match self {
            Format::Sse { .. } => sse::named("snapshot", Some(cursor), &notice),
            Format::Ndjson(shape) => line(frame::control(shape, "snapshot", Some(cursor), &notice)),
        }
    }

    /// A named event without an id whose data is the JSON text `data` (handshake, keep-alive).
    pub(crate) fn named(self, name: &str, data: &str) -> Bytes {
        let raw = serde_json::value::RawValue::from_string(data.to_owned())
            .unwrap_or_else(|_| serde_json::value::RawValue::from_string("{}".into()).expect("{}"));
        match self {
            Format::Sse { .. } => sse::named(name, None, &raw),
            Format::Ndjson(shape) => line(frame::control(shape, name, None, &raw)),
        }
    }

    /// The frame of a `reconnect-required` notice (named by the endpoint).
    fn closed(self, name: &str, reason: CloseReason) -> Bytes {
        let notice = reconnect_notice(reason);
        match self {
            Format::Sse { .. } => sse::named(name, None, &notice),
            Format::Ndjson(shape) => line(frame::control(shape, name, None, &notice)),
        }
    }
}

/// An event's cached SSE frame: its payload as `data:`, or its envelope frame.
fn sse_frame(event: &SharedEvent, envelope: bool) -> &Bytes {
    if envelope {
        sse::envelope_frame(event)
    } else {
        sse::frame(event)
    }
}

fn line(frame: Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(frame.len() + 1);
    buf.extend_from_slice(&frame);
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

/// Most bytes joined into one chunk; a single larger event is its own chunk.
const PIECE_BYTES: usize = 64 << 10;

/// What a stream hands its connection: bytes, and the seq of the last event in them (a
/// connection tracking a session's place confirms it once the client acknowledged them).
#[derive(Debug)]
pub(crate) struct Piece {
    pub(crate) bytes: Bytes,
    pub(crate) last_seq: Option<u64>,
}

impl Piece {
    fn control(bytes: Bytes) -> Piece {
        Piece {
            bytes,
            last_seq: None,
        }
    }
}

struct State {
    sub: Tracked,
    format: Format,
    endpoint: Arc<Endpoint>,
    /// Events of the last step not yet handed on (the next pieces).
    events: Vec<SharedEvent>,
    keepalive: Option<Interval>,
    /// The `retry:` hint and the endpoint's handshake event, sent first.
    preamble: Option<Bytes>,
    /// When the credential behind the stream expires (boxed: most streams have none, and
    /// every idle stream would otherwise carry a timer's room).
    expiry: Option<Pin<Box<Sleep>>>,
    /// The stream's place under its credential's stream limit.
    _slot: Option<StreamSlot>,
    /// Its place under the limit of the client address a trusted proxy named (boxed: most
    /// streams have none).
    _address: Option<Box<crate::listener::AddressSlot>>,
    done: bool,
}

impl State {
    /// The endpoint's keep-alive in this format.
    fn keepalive_frame(&self) -> Bytes {
        match &self.endpoint.keepalive {
            Keepalive::Comment => self.format.keepalive(),
            Keepalive::Event { name, data } => self.format.named(name, data),
        }
    }
}

/// The endpoint's handshake (name, data) for `sub`, if it has one.
pub(crate) fn handshake_data(endpoint: &Endpoint, sub: &Subscription) -> Option<(String, String)> {
    rendered(endpoint.handshake.as_ref()?, endpoint, sub, "")
}

/// The endpoint's synthetic event before a hub-initiated close (name, data), if it has one
/// and `reason` calls for it (a drain, an admin reconnect or close, a shutdown).
pub(crate) fn disconnect_data(
    endpoint: &Endpoint,
    sub: &Subscription,
    reason: CloseReason,
) -> Option<(String, String)> {
    if !matches!(
        reason,
        CloseReason::Reconnect | CloseReason::Shutdown | CloseReason::Operator
    ) {
        return None;
    }
    rendered(
        endpoint.disconnect.as_ref()?,
        endpoint,
        sub,
        reconnect_notice(reason).reason.as_str(),
    )
}

fn rendered(
    h: &crate::endpoint::Handshake,
    endpoint: &Endpoint,
    sub: &Subscription,
    reason: &str,
) -> Option<(String, String)> {
    let selector = sub
        .selector()
        .patterns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let client_id = sub.client_id().map_or("", |c| c.as_str());
    let cursor = sub.position().to_string();
    let data = h.render(&[
        ("selector", &selector),
        ("clientId", client_id),
        ("cursor", &cursor),
        ("endpoint", &endpoint.name),
        ("reason", reason),
    ]);
    Some((h.name.clone(), data))
}

/// The body of a streaming response; at the lease's expiry (the credential's end) it closes
/// with `reconnect-required` (`token_expired`).
pub(crate) fn body(
    sub: Tracked,
    format: Format,
    keepalive: Option<Duration>,
    endpoint: Arc<Endpoint>,
    lease: Lease,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    use futures_util::StreamExt;
    pieces(sub, format, keepalive, endpoint, lease).map(|p| Ok(p.bytes))
}

/// The pieces of a streaming response, with the seq each one carries up to.
pub(crate) fn pieces(
    sub: Tracked,
    format: Format,
    keepalive: Option<Duration>,
    endpoint: Arc<Endpoint>,
    lease: Lease,
) -> impl Stream<Item = Piece> + Send + 'static {
    unfold(state(sub, format, keepalive, endpoint, lease))
}

/// The same pieces, with the first one (the preamble: `retry:` and the endpoint's
/// handshake, if the format has one) handed out at once, so the lean path can send it in
/// the same write as the response head: one `send` per connect instead of two.
pub(crate) fn opening(
    sub: Tracked,
    format: Format,
    keepalive: Option<Duration>,
    endpoint: Arc<Endpoint>,
    lease: Lease,
) -> (Option<Bytes>, impl Stream<Item = Piece> + Send + 'static) {
    let mut state = state(sub, format, keepalive, endpoint, lease);
    (state.preamble.take(), unfold(state))
}

fn state(
    sub: Tracked,
    format: Format,
    keepalive: Option<Duration>,
    endpoint: Arc<Endpoint>,
    lease: Lease,
) -> State {
    let keepalive = keepalive.map(|period| {
        let mut iv = tokio::time::interval_at(Instant::now() + period, period);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        iv
    });
    let preamble = match handshake_data(&endpoint, &sub) {
        None => format.preamble(),
        Some((name, data)) => {
            let handshake = format.named(&name, &data);
            Some(match format.preamble() {
                None => handshake,
                Some(retry) => {
                    let mut both = BytesMut::with_capacity(retry.len() + handshake.len());
                    both.extend_from_slice(&retry);
                    both.extend_from_slice(&handshake);
                    both.freeze()
                }
            })
        }
    };
    State {
        sub,
        format,
        endpoint,
        events: Vec::new(),
        keepalive,
        preamble,
        expiry: lease
            .expiry
            .map(|at| Box::pin(tokio::time::sleep_until(at))),
        _slot: lease.slot,
        _address: lease.address.map(Box::new),
        done: false,
    }
}

/// The state is boxed: `unfold` moves it into each step's future and back out of it, and a
/// pointer moves for nothing where the whole state cost two copies of a few hundred bytes
/// per delivery (callgrind: about 240 of a delivery's 2,600 instructions).
fn unfold(state: State) -> impl Stream<Item = Piece> + Send + 'static {
    futures_util::stream::unfold(Box::new(state), |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.preamble.take() {
            return Some((Piece::control(first), st));
        }
        if !st.events.is_empty() {
            let piece = next_piece(&mut st);
            return Some((piece, st));
        }
        let chunk = next_chunk(&mut st).await;
        Some((chunk, st))
    })
}

async fn next_chunk(st: &mut State) -> Piece {
    st.events.clear();
    let sub = st.sub.subscription();
    // A stream without an expiry (static tokens, an open hub) waits exactly as before; one
    // with an expiry also waits for it.
    let step = match (st.keepalive.as_mut(), st.expiry.as_mut()) {
        (Some(iv), None) => tokio::select! {
            biased;
            step = sub.next(&mut st.events) => step,
            _ = iv.tick() => return Piece::control(st.keepalive_frame()),
        },
        (None, None) => sub.next(&mut st.events).await,
        (Some(iv), Some(expiry)) => tokio::select! {
            biased;
            () = expiry => Step::Closed(CloseReason::TokenExpired),
            step = sub.next(&mut st.events) => step,
            _ = iv.tick() => return Piece::control(st.keepalive_frame()),
        },
        (None, Some(expiry)) => tokio::select! {
            biased;
            () = expiry => Step::Closed(CloseReason::TokenExpired),
            step = sub.next(&mut st.events) => step,
        },
    };
    st.sub.observe(&step);
    // The keepalive ticks on a fixed period whatever the traffic: resetting a timer on every
    // delivery cost more than one tiny comment per period.
    match step {
        Step::Events => next_piece(st),
        Step::Closed(reason) => {
            st.done = true;
            let closed = st.format.closed(&st.endpoint.reconnect_event, reason);
            let bytes = match disconnect_data(&st.endpoint, &st.sub, reason) {
                Some((name, data)) => {
                    let first = st.format.named(&name, &data);
                    let mut both = BytesMut::with_capacity(first.len() + closed.len());
                    both.extend_from_slice(&first);
                    both.extend_from_slice(&closed);
                    both.freeze()
                }
                None => closed,
            };
            Piece::control(bytes)
        }
        Step::Reset {
            reason,
            resume_after,
        } => Piece::control(st.format.reset(reason, resume_after)),
        Step::Snapshot { cursor } => Piece::control(st.format.snapshot(cursor)),
        Step::Session { resumed, cursor } => {
            let names = &st.endpoint.session;
            let name = if resumed {
                &names.resumed
            } else {
                &names.subscribed
            };
            let client_id = st.sub.client_id().map_or("", |c| c.as_str());
            let notice = session_notice(client_id, cursor);
            Piece::control(st.format.session(name, &notice, cursor))
        }
    }
}

/// Joins the next events that fit in `PIECE_BYTES` (at least one) and lets them go.
fn next_piece(st: &mut State) -> Piece {
    if let [one] = st.events.as_slice() {
        // The common live case: one event, its cached frame as is.
        let bytes = st.format.join(std::slice::from_ref(one));
        let last_seq = Some(one.seq());
        st.events.clear();
        return Piece { bytes, last_seq };
    }
    let mut n = 0;
    let mut len = 0;
    for e in &st.events {
        let l = st.format.frame_len(e);
        if n > 0 && len + l > PIECE_BYTES {
            break;
        }
        len += l;
        n += 1;
    }
    let bytes = st.format.join(&st.events[..n]);
    let last_seq = n.checked_sub(1).map(|i| st.events[i].seq());
    if n == st.events.len() {
        st.events.clear();
        if st.events.capacity() > 64 {
            // A burst grew the buffer; do not keep it for an idle connection.
            st.events = Vec::new();
        }
    } else {
        st.events.drain(..n);
    }
    Piece { bytes, last_seq }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tidings_core::{Hub, Limits, MemoryStore, NewEvent, PublishBatch, SubscribeRequest};
    use tidings_proto::{Cursor, Epoch, EventType, Pattern, Selector, Topic};

    use super::*;
    use crate::endpoint::Keepalive;

    /// Fault: a replay step of large events was joined into one chunk as big as the whole
    /// step (up to 1,024 events of 64 KiB), a second copy of it per connection.
    #[tokio::test]
    async fn a_large_step_goes_out_in_bounded_pieces() {
        let store = Arc::new(MemoryStore::new(
            Epoch(1),
            tidings_core::Retention::default(),
        ));
        let hub = Hub::new(store, Limits::default());
        let data = format!("\"{}\"", "x".repeat(20 << 10));
        let events = (0..10)
            .map(|_| NewEvent {
                topic: Topic::new("t").unwrap(),
                event_type: EventType::new("e").unwrap(),
                key: None,
                data: serde_json::value::RawValue::from_string(data.clone()).unwrap(),
            })
            .collect();
        hub.publish(PublishBatch {
            events,
            origin: None,
            idempotency_key: None,
        })
        .await
        .unwrap();
        let sub = hub
            .subscribe(SubscribeRequest {
                selector: Selector {
                    patterns: vec![Pattern::All],
                    types: vec![],
                },
                cursor: Some(Cursor::Earliest),
                client_id: None,
            })
            .unwrap();
        let endpoint = Arc::new(Endpoint::default_events(
            crate::endpoint::Origins::SameOrigin,
        ));
        let body = body(
            Tracked::untracked(sub),
            Format::Ndjson(super::frame::Shape::Event),
            None,
            endpoint,
            Lease::default(),
        );
        tokio::pin!(body);
        let mut lines = 0;
        let mut pieces = 0;
        while lines < 10 {
            let piece = body.next().await.unwrap().unwrap();
            assert!(
                piece.len() <= PIECE_BYTES,
                "a piece of {} bytes",
                piece.len()
            );
            lines += piece.iter().filter(|&&b| b == b'\n').count();
            pieces += 1;
        }
        assert_eq!(lines, 10, "every event, once");
        assert!(
            pieces >= 4,
            "ten 20 KiB events take several pieces, not {pieces}"
        );
    }

    /// The credential behind a stream expires: the stream says `reconnect-required`
    /// (`token_expired`) at that moment and ends, even with nothing else to send.
    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_with_token_expired_at_the_credential_expiry() {
        let store = Arc::new(MemoryStore::new(
            Epoch(1),
            tidings_core::Retention::default(),
        ));
        let hub = Hub::new(store, Limits::default());
        let sub = hub
            .subscribe(SubscribeRequest {
                selector: Selector {
                    patterns: vec![Pattern::All],
                    types: vec![],
                },
                cursor: None,
                client_id: None,
            })
            .unwrap();
        let start = Instant::now();
        let format = Format::Sse {
            retry: Duration::from_secs(2),
            envelope: false,
        };
        let body = body(
            Tracked::untracked(sub),
            format,
            Some(Duration::from_secs(30)),
            Arc::new(Endpoint::default_events(
                crate::endpoint::Origins::SameOrigin,
            )),
            Lease {
                expiry: Some(start + Duration::from_secs(2)),
                slot: None,
                address: None,
            },
        );
        tokio::pin!(body);
        let retry = body.next().await.unwrap().unwrap();
        assert!(retry.starts_with(b"retry:"));
        let closed = body.next().await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&closed);
        assert!(text.contains("event: reconnect-required"), "{text}");
        assert!(text.contains("token_expired"), "{text}");
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(body.next().await.is_none(), "the stream ends");
    }

    /// Both keep-alive styles, on the endpoint's own interval, with time under the test's
    /// control (tokio's paused clock): nothing before the interval, the frame at it.
    #[tokio::test(start_paused = true)]
    async fn keepalives_come_on_the_endpoints_interval_in_its_style() {
        let store = Arc::new(MemoryStore::new(
            Epoch(1),
            tidings_core::Retention::default(),
        ));
        let hub = Hub::new(store, Limits::default());
        let styles = [
            (Keepalive::Comment, ": keepalive\n\n".to_owned()),
            (
                Keepalive::Event {
                    name: "keep-alive".into(),
                    data: r#"{"t":1}"#.into(),
                },
                "event: keep-alive\ndata: {\"t\":1}\n\n".to_owned(),
            ),
        ];
        for (style, want) in styles {
            let mut endpoint = Endpoint::default_events(crate::endpoint::Origins::SameOrigin);
            endpoint.keepalive = style;
            endpoint.keepalive_interval = Some(Duration::from_secs(20));
            let every = endpoint.keepalive_every(Some(Duration::from_secs(30)));
            let sub = hub
                .subscribe(SubscribeRequest {
                    selector: Selector::all(),
                    cursor: None,
                    client_id: None,
                })
                .unwrap();
            let format = Format::Sse {
                retry: Duration::from_secs(2),
                envelope: false,
            };
            let body = pieces(
                Tracked::untracked(sub),
                format,
                every,
                Arc::new(endpoint),
                Lease::default(),
            );
            tokio::pin!(body);
            let retry = body.next().await.unwrap();
            assert!(retry.bytes.starts_with(b"retry:"));
            let start = Instant::now();
            let beat = body.next().await.unwrap();
            assert_eq!(start.elapsed(), Duration::from_secs(20));
            assert_eq!(std::str::from_utf8(&beat.bytes).unwrap(), want);
            assert_eq!(beat.last_seq, None);
        }
    }

    /// The camera server's handshake: `connected` with the subscribed selector, before the
    /// session event.
    #[tokio::test]
    async fn the_handshake_names_the_selector_and_comes_first() {
        let store = Arc::new(MemoryStore::new(
            Epoch(1),
            tidings_core::Retention::default(),
        ));
        let hub = Hub::new(store, Limits::default());
        let mut endpoint = Endpoint::default_events(crate::endpoint::Origins::SameOrigin);
        endpoint.handshake = Some(crate::endpoint::Handshake {
            name: "connected".into(),
            template: r#"{"cameraId":"${selector}"}"#.into(),
        });
        let sub = hub
            .subscribe(SubscribeRequest {
                selector: Selector {
                    patterns: vec![Pattern::parse("cam-1").unwrap()],
                    types: vec![],
                },
                cursor: None,
                client_id: Some(tidings_proto::Key::new("c").unwrap()),
            })
            .unwrap();
        let body = pieces(
            Tracked::untracked(sub),
            Format::Ndjson(Shape::Event),
            None,
            Arc::new(endpoint),
            Lease::default(),
        );
        tokio::pin!(body);
        let first = body.next().await.unwrap();
        assert_eq!(
            std::str::from_utf8(&first.bytes).unwrap(),
            "{\"type\":\"connected\",\"data\":{\"cameraId\":\"cam-1\"}}\n"
        );
        let second = body.next().await.unwrap();
        assert!(
            std::str::from_utf8(&second.bytes)
                .unwrap()
                .contains("\"subscribed\"")
        );
    }
}
