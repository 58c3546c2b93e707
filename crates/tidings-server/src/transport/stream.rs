//! Streaming HTTP bodies (SSE and NDJSON): a `Subscription` as a stream of chunks. Everything
//! ready for a connection becomes one chunk of up to `PIECE_BYTES`, so it goes out in one
//! write; a single event is sent as its shared cached frame without a copy. A bigger step (a
//! replay chunk of large events) goes out in several pieces, and the events of each piece are
//! let go once it is handed on, so a connection never holds a second copy of a whole chunk.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tidings_core::{CloseReason, ResetReason, SharedEvent, Step};
use tidings_proto::EventId;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::frame::{self, Shape};
use super::{reconnect_notice, reset_notice, sse};
use crate::tracked::Tracked;

/// A text streaming format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/event-stream`, with the `retry:` hint first.
    Sse {
        /// The `retry:` hint.
        retry: Duration,
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
            Format::Sse { retry } => Some(sse::retry(retry.as_millis() as u64)),
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
            Format::Sse { .. } => sse::frame(event).len(),
            Format::Ndjson(shape) => frame::event(event, shape).len() + 1,
        }
    }

    fn join(self, events: &[SharedEvent]) -> Bytes {
        match self {
            Format::Sse { .. } => {
                if let [one] = events {
                    return sse::frame(one).clone();
                }
                let mut buf =
                    BytesMut::with_capacity(events.iter().map(|e| sse::frame(e).len()).sum());
                for e in events {
                    buf.extend_from_slice(sse::frame(e));
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

    /// The frame of a `reconnect-required` notice.
    fn closed(self, reason: CloseReason) -> Bytes {
        let notice = reconnect_notice(reason);
        match self {
            Format::Sse { .. } => sse::reconnect(&notice),
            Format::Ndjson(shape) => {
                line(frame::control(shape, "reconnect-required", None, &notice))
            }
        }
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

struct State {
    sub: Tracked,
    format: Format,
    /// Events of the last step not yet handed on (the next pieces).
    events: Vec<SharedEvent>,
    keepalive: Option<Interval>,
    preamble: Option<Bytes>,
    done: bool,
}

/// The body of a streaming response.
pub(crate) fn body(
    sub: Tracked,
    format: Format,
    keepalive: Option<Duration>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let keepalive = keepalive.map(|period| {
        let mut iv = tokio::time::interval_at(Instant::now() + period, period);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        iv
    });
    let preamble = format.preamble();
    let state = State {
        sub,
        format,
        events: Vec::new(),
        keepalive,
        preamble,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(first) = st.preamble.take() {
            return Some((Ok(first), st));
        }
        if !st.events.is_empty() {
            let piece = next_piece(&mut st);
            return Some((Ok(piece), st));
        }
        let chunk = next_chunk(&mut st).await;
        Some((Ok(chunk), st))
    })
}

async fn next_chunk(st: &mut State) -> Bytes {
    st.events.clear();
    let sub = st.sub.subscription();
    let step = match st.keepalive.as_mut() {
        Some(iv) => tokio::select! {
            biased;
            step = sub.next(&mut st.events) => step,
            _ = iv.tick() => return st.format.keepalive(),
        },
        None => sub.next(&mut st.events).await,
    };
    st.sub.observe(&step);
    // The keepalive ticks on a fixed period whatever the traffic: resetting a timer on every
    // delivery cost more than one tiny comment per period.
    match step {
        Step::Events => next_piece(st),
        Step::Closed(reason) => {
            st.done = true;
            st.format.closed(reason)
        }
        Step::Reset {
            reason,
            resume_after,
        } => st.format.reset(reason, resume_after),
    }
}

/// Joins the next events that fit in `PIECE_BYTES` (at least one) and lets them go.
fn next_piece(st: &mut State) -> Bytes {
    if let [one] = st.events.as_slice() {
        // The common live case: one event, its cached frame as is.
        let piece = st.format.join(std::slice::from_ref(one));
        st.events.clear();
        return piece;
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
    let piece = st.format.join(&st.events[..n]);
    if n == st.events.len() {
        st.events.clear();
        if st.events.capacity() > 64 {
            // A burst grew the buffer; do not keep it for an idle connection.
            st.events = Vec::new();
        }
    } else {
        st.events.drain(..n);
    }
    piece
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::StreamExt;
    use tidings_core::{Hub, Limits, MemoryStore, NewEvent, PublishBatch, SubscribeRequest};
    use tidings_proto::{Cursor, Epoch, EventType, Pattern, Selector, Topic};

    use super::*;

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
        let body = body(
            Tracked::untracked(sub),
            Format::Ndjson(super::frame::Shape::Event),
            None,
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
}
