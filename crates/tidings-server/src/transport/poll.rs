//! Long-poll: answer at once with the events after the cursor if there are any, otherwise wait
//! up to the timeout for the next ones, then answer with the cursor to poll from next. A
//! client that polls in a loop with the returned cursor misses nothing, because events
//! published between its polls are replayed from history.
//!
//! The timeout bounds only the wait for new events: history after the cursor is read in full
//! first (`Subscription::next_or_idle`). Racing the whole step against the timeout answered
//! `timeout=0` polls with nothing whenever the store's read took longer than the timer.
//! History that cannot be read (a damaged or failed store) is a 503 `store_unavailable`.
//!
//! A client-id session's place is the cursor each poll starts from, and an answer confirms
//! nothing: the client proves it has an answer's events by sending the answer's `cursor` with
//! its next poll (more than a TCP acknowledgement says, and the acknowledgement of the
//! answer's last bytes usually arrives with that poll anyway). A client that comes back with
//! only its client id gets its last answer's events again, never fewer.
//!
//! With `snapshot=1` (and no cursor) the answer is the snapshot: its events, then the
//! `snapshot` control frame, and `cursor` is the snapshot's cursor, so the next poll continues
//! exactly after it.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use tidings_core::{CloseReason, Step};
use tidings_proto::api::ResetNotice;

use super::frame::{self, Shape};
use super::{reset_notice, session_notice, snapshot_notice};
use crate::endpoint::SessionNames;
use crate::http::error::HttpError;
use crate::tracked::Tracked;

#[derive(Serialize)]
struct Tail<'a> {
    cursor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<&'a ResetNotice>,
}

/// The JSON body: `{"events":[…frames…],"cursor":"<id>","reset":{…}?}`. With a client id
/// the first frame is the `subscribed` / `resumed` control frame.
pub(crate) async fn answer(
    mut sub: Tracked,
    shape: Shape,
    timeout: Duration,
    names: &SessionNames,
) -> Result<bytes::Bytes, HttpError> {
    let mut events = Vec::new();
    let mut reset = None;
    let mut session = None;
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let mut step = sub.next_or_idle(&mut events, idle.as_mut()).await;
    if let Some(Step::Session { resumed, cursor }) = step {
        let name = if resumed {
            &names.resumed
        } else {
            &names.subscribed
        };
        let client_id = sub.client_id().map_or("", |c| c.as_str());
        let notice = session_notice(client_id, cursor);
        session = Some(frame::control(shape, name, Some(cursor), &notice));
        step = sub.next_or_idle(&mut events, idle.as_mut()).await;
    }
    if matches!(step, Some(Step::Events)) && sub.handoff_pending() {
        // The snapshot's events came; its handoff follows at once.
        step = sub.next_or_idle(&mut events, idle.as_mut()).await;
    }
    let mut handoff = None;
    if let Some(Step::Snapshot { cursor }) = step {
        handoff = Some(frame::control(
            shape,
            "snapshot",
            Some(cursor),
            &snapshot_notice(cursor),
        ));
    }
    match step {
        Some(Step::Reset {
            reason,
            resume_after,
        }) => reset = Some(reset_notice(reason, resume_after)),
        Some(Step::Closed(CloseReason::StoreFailed)) => return Err(HttpError::store_unavailable()),
        // Shutdown or a slow consumer: answer what there is; the next poll sees the rest.
        Some(Step::Events | Step::Closed(_) | Step::Session { .. } | Step::Snapshot { .. })
        | None => {}
    }
    let mut buf = BytesMut::with_capacity(
        64 + events
            .iter()
            .map(|e| frame::event(e, shape).len() + 1)
            .sum::<usize>(),
    );
    buf.put_slice(b"{\"events\":[");
    if let Some(session) = &session {
        buf.put_slice(session);
    }
    for (i, e) in events.iter().enumerate() {
        if i > 0 || session.is_some() {
            buf.put_u8(b',');
        }
        buf.put_slice(frame::event(e, shape));
    }
    if let Some(handoff) = &handoff {
        if !events.is_empty() || session.is_some() {
            buf.put_u8(b',');
        }
        buf.put_slice(handoff);
    }
    buf.put_slice(b"],");
    let tail = Tail {
        cursor: sub.position().to_string(),
        reset: reset.as_ref(),
    };
    let tail = serde_json::to_string(&tail).expect("the tail serializes");
    buf.put_slice(&tail.as_bytes()[1..]);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests;
