//! Streaming HTTP bodies (SSE and NDJSON): a `Subscription` as a stream of chunks. Everything
//! ready for a connection becomes one chunk, so it goes out in one write; a single event is
//! sent as its shared cached frame without a copy.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tidings_core::{SharedEvent, Step, Subscription};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::frame::{self, Shape};
use super::{reconnect_notice, reset_notice, sse};

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

    fn step(self, step: Step, events: &[SharedEvent]) -> Bytes {
        match (step, self) {
            (Step::Events, _) => self.join(events),
            (
                Step::Reset {
                    reason,
                    resume_after,
                },
                Format::Sse { .. },
            ) => sse::reset(&reset_notice(reason, resume_after), resume_after),
            (Step::Closed(reason), Format::Sse { .. }) => sse::reconnect(&reconnect_notice(reason)),
            (
                Step::Reset {
                    reason,
                    resume_after,
                },
                Format::Ndjson(shape),
            ) => line(frame::control(
                shape,
                "reset",
                Some(resume_after),
                &reset_notice(reason, resume_after),
            )),
            (Step::Closed(reason), Format::Ndjson(shape)) => line(frame::control(
                shape,
                "reconnect-required",
                None,
                &reconnect_notice(reason),
            )),
        }
    }
}

fn line(frame: Bytes) -> Bytes {
    let mut buf = BytesMut::with_capacity(frame.len() + 1);
    buf.extend_from_slice(&frame);
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

struct State {
    sub: Subscription,
    format: Format,
    events: Vec<SharedEvent>,
    keepalive: Option<Interval>,
    preamble: Option<Bytes>,
    done: bool,
}

/// The body of a streaming response.
pub(crate) fn body(
    sub: Subscription,
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
        let chunk = next_chunk(&mut st).await;
        Some((Ok(chunk), st))
    })
}

async fn next_chunk(st: &mut State) -> Bytes {
    st.events.clear();
    let step = match st.keepalive.as_mut() {
        Some(iv) => tokio::select! {
            biased;
            step = st.sub.next(&mut st.events) => step,
            _ = iv.tick() => return st.format.keepalive(),
        },
        None => st.sub.next(&mut st.events).await,
    };
    // The keepalive ticks on a fixed period whatever the traffic: resetting a timer on every
    // delivery cost more than one tiny comment per period.
    if let Step::Closed(_) = step {
        st.done = true;
    }
    let chunk = st.format.step(step, &st.events);
    if st.events.capacity() > 64 {
        // A burst grew the buffer; do not keep it for an idle connection.
        st.events = Vec::new();
    }
    chunk
}
