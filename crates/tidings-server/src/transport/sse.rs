//! The SSE transport: a `Subscription` as a stream of byte chunks. Each event is encoded once
//! (cached on the event, shared by every subscriber); everything ready for a connection is
//! joined into one chunk, so it goes out in one write.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tidings_core::{EventRecord, FormatSlot, SharedEvent, Step, Subscription};
use tidings_proto::api::{ReconnectNotice, ResetNotice};
use tidings_proto::sse;
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The cache slot of the SSE encoding.
pub(crate) const SSE_SLOT: FormatSlot = FormatSlot(0);

/// Per-endpoint SSE settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) keepalive: Option<Duration>,
    pub(crate) retry: Duration,
}

const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// The SSE frame of one event (`id`, `event`, `data`), encoded on first use.
pub(crate) fn frame(record: &EventRecord) -> &Bytes {
    record.encoded(SSE_SLOT, |e| {
        let mut buf = BytesMut::new();
        sse::encode_event(
            &mut buf,
            &e.id.to_string(),
            e.event_type.as_str(),
            e.data.get(),
        );
        buf.freeze()
    })
}

struct State {
    sub: Subscription,
    events: Vec<SharedEvent>,
    keepalive: Option<Interval>,
    retry: Option<Duration>,
    done: bool,
}

/// The body of an SSE response.
pub(crate) fn stream(
    sub: Subscription,
    options: Options,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let keepalive = options.keepalive.map(|period| {
        let mut iv = tokio::time::interval_at(Instant::now() + period, period);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        iv
    });
    let state = State {
        sub,
        events: Vec::new(),
        keepalive,
        retry: Some(options.retry),
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(retry) = st.retry.take() {
            let mut buf = BytesMut::new();
            sse::encode_retry(&mut buf, retry.as_millis() as u64);
            return Some((Ok(buf.freeze()), st));
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
            _ = iv.tick() => return Bytes::from_static(KEEPALIVE),
        },
        None => st.sub.next(&mut st.events).await,
    };
    match step {
        Step::Events => {
            if let Some(iv) = st.keepalive.as_mut() {
                iv.reset();
            }
            join(&st.events)
        }
        Step::Reset {
            reason,
            resume_after,
        } => {
            let notice = ResetNotice {
                reason: reason.as_str().to_owned(),
                cursor: resume_after.to_string(),
            };
            let mut buf = BytesMut::new();
            let data = serde_json::to_string(&notice).expect("a notice serializes");
            sse::encode_event(&mut buf, &resume_after.to_string(), "reset", &data);
            buf.freeze()
        }
        Step::Closed(reason) => {
            st.done = true;
            let notice = ReconnectNotice {
                reason: reason.as_str().to_owned(),
            };
            let data = serde_json::to_string(&notice).expect("a notice serializes");
            let mut buf = BytesMut::new();
            buf.extend_from_slice(b"event: reconnect-required\n");
            buf.extend_from_slice(b"data: ");
            buf.extend_from_slice(data.as_bytes());
            buf.extend_from_slice(b"\n\n");
            buf.freeze()
        }
    }
}

/// One chunk for a batch: the shared frame itself for one event, a copy of all for several.
fn join(events: &[SharedEvent]) -> Bytes {
    if let [one] = events {
        return frame(one).clone();
    }
    let len = events.iter().map(|e| frame(e).len()).sum();
    let mut buf = BytesMut::with_capacity(len);
    for e in events {
        buf.extend_from_slice(frame(e));
    }
    buf.freeze()
}
