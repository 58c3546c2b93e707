//! SSE encodings: the frame of one event (`id`, `event`, `data`), cached on the event, and
//! the frames the hub itself sends (`retry`, keepalive, `reset`, `reconnect-required`).

use bytes::{BufMut, Bytes, BytesMut};
use tidings_core::{EventRecord, FormatSlot};
use tidings_proto::api::{ReconnectNotice, ResetNotice};
use tidings_proto::{EventId, sse};

/// The cache slot of the SSE encoding.
pub(crate) const SSE_SLOT: FormatSlot = FormatSlot(0);
/// The cache slot of the SSE encoding whose `data:` is the envelope frame.
pub(crate) const SSE_ENVELOPE_SLOT: FormatSlot = FormatSlot(3);

pub(crate) const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// The SSE frame of one event, encoded on first use and shared by every subscriber.
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

/// The SSE frame of one event whose `data:` is the event's envelope frame
/// (`{"success":true,"id":…,"data":{"type":…,…}}`), for an endpoint with `sse_data =
/// "envelope"`; encoded once and shared like `frame`.
pub(crate) fn envelope_frame(record: &EventRecord) -> &Bytes {
    record.encoded(SSE_ENVELOPE_SLOT, |e| {
        let envelope = super::frame::event(record, super::frame::Shape::Envelope);
        let mut buf = BytesMut::new();
        sse::encode_event(
            &mut buf,
            &e.id.to_string(),
            e.event_type.as_str(),
            std::str::from_utf8(envelope).expect("a JSON frame is UTF-8"),
        );
        buf.freeze()
    })
}

/// Every SSE stream opens with one: the digits come from `itoa` and the buffer is sized
/// once (`encode_retry`'s `to_string` and growth cost about 800 instructions a connect).
pub(crate) fn retry(millis: u64) -> Bytes {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(millis).as_bytes();
    let mut buf = BytesMut::with_capacity(b"retry: \n\n".len() + digits.len());
    buf.extend_from_slice(b"retry: ");
    buf.extend_from_slice(digits);
    buf.extend_from_slice(b"\n\n");
    buf.freeze()
}

/// `reset` carries the id the stream continues after, so the client's last id moves on.
pub(crate) fn reset(notice: &ResetNotice, resume_after: EventId) -> Bytes {
    let data = serde_json::to_string(notice).expect("a notice serializes");
    let mut buf = BytesMut::new();
    sse::encode_event(&mut buf, &resume_after.to_string(), "reset", &data);
    buf.freeze()
}

/// A named event the hub itself sends, with a JSON payload and optionally an id (which moves
/// the client's last id).
pub(crate) fn named(name: &str, id: Option<EventId>, data: &impl serde::Serialize) -> Bytes {
    let data = serde_json::to_string(data).expect("a notice serializes");
    let mut buf = BytesMut::new();
    match id {
        Some(id) => sse::encode_event(&mut buf, &id.to_string(), name, &data),
        None => {
            buf.put_slice(b"event: ");
            buf.put_slice(name.as_bytes());
            buf.put_slice(b"\ndata: ");
            buf.put_slice(data.as_bytes());
            buf.put_slice(b"\n\n");
        }
    }
    buf.freeze()
}

/// `reconnect-required` has no id, so the client resumes from its last real event.
pub(crate) fn reconnect(notice: &ReconnectNotice) -> Bytes {
    let data = serde_json::to_string(notice).expect("a notice serializes");
    let mut buf = BytesMut::new();
    buf.put_slice(b"event: reconnect-required\ndata: ");
    buf.put_slice(data.as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_is_the_protocol_s_field() {
        for millis in [0, 7, 1_000, 3_000, 86_400_000, u64::MAX] {
            let mut theirs = BytesMut::new();
            sse::encode_retry(&mut theirs, millis);
            assert_eq!(retry(millis), theirs.freeze());
        }
    }
}
