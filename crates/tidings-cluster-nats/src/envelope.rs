//! The body of one event's JetStream message: a compact JSON object with the event's type,
//! key, origin, publish time, whether lagging subscribers may conflate it, and its data
//! (passed through byte for byte). The topic is the message's subject (`subject`), the id
//! its stream sequence.
//!
//! `{"type":"progress","key":"d1","time":1700000000000,"c":true,"data":{...}}`

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidings_core::{EventRecord, SharedEvent};
use tidings_proto::{Epoch, Event, EventId, EventType, Key};

use crate::subject;

#[derive(Serialize)]
struct Out<'a> {
    #[serde(rename = "type")]
    event_type: &'a EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a Key>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a Key>,
    time: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    c: bool,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct In {
    #[serde(rename = "type")]
    event_type: EventType,
    #[serde(default)]
    key: Option<Key>,
    #[serde(default)]
    origin: Option<Key>,
    time: u64,
    #[serde(default)]
    c: bool,
    data: Box<RawValue>,
}

/// The body of `event`'s message.
pub(crate) fn encode(event: &EventRecord) -> bytes::Bytes {
    let e = &event.event;
    let out = Out {
        event_type: &e.event_type,
        key: e.key.as_ref(),
        origin: e.origin.as_ref(),
        time: e.time,
        c: event.conflatable,
        data: &e.data,
    };
    // Validated names and compact JSON always serialize.
    serde_json::to_vec(&out).unwrap_or_default().into()
}

/// The event a message carries, with id `epoch`-`seq`; `None` (logged) for a message no
/// Tidings node published: the stream's subjects are ours, but anyone allowed may publish
/// on them, and nothing from the network may stop the follower.
pub(crate) fn decode(
    prefix: &str,
    epoch: Epoch,
    seq: u64,
    subject: &str,
    payload: &[u8],
) -> Option<SharedEvent> {
    let topic = match subject::topic(prefix, subject::without_key(subject)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(message = "Skipped a stream message with a foreign subject.", seq, error = %e);
            return None;
        }
    };
    let body: In = match serde_json::from_slice(payload) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(message = "Skipped a stream message that is not a Tidings event.", seq, error = %e);
            return None;
        }
    };
    Some(EventRecord::with_conflation(
        Event {
            id: EventId::new(epoch, seq),
            topic,
            event_type: body.event_type,
            key: body.key,
            origin: body.origin,
            time: body.time,
            data: body.data,
        },
        body.c,
    ))
}

#[cfg(test)]
mod tests {
    use tidings_proto::Topic;

    use super::*;

    #[test]
    fn round_trips_an_event_and_refuses_foreign_bodies() {
        let event = EventRecord::with_conflation(
            Event {
                id: EventId::new(Epoch(1), 0),
                topic: Topic::new("cloudreve://my/a b.jpg").unwrap(),
                event_type: EventType::new("progress").unwrap(),
                key: Some(Key::new("d1").unwrap()),
                origin: Some(Key::new("c9").unwrap()),
                time: 42,
                data: RawValue::from_string(r#"{"n":1}"#.into()).unwrap(),
            },
            true,
        );
        let body = encode(&event);
        let subject = subject::subject("tidings.T", &event.event.topic);
        let back = decode("tidings.T", Epoch(9), 5, &subject, &body).unwrap();
        assert_eq!(back.event.id, EventId::new(Epoch(9), 5));
        assert_eq!(back.event.topic, event.event.topic);
        assert_eq!(back.event.key, event.event.key);
        assert_eq!(back.event.origin, event.event.origin);
        assert_eq!(back.event.data.get(), r#"{"n":1}"#);
        assert!(back.conflatable);
        assert!(decode("tidings.T", Epoch(9), 5, &subject, b"hello").is_none());
        assert!(decode("tidings.T", Epoch(9), 5, "elsewhere.x", &body).is_none());
        let bad_type = br#"{"type":"a\nb","time":1,"data":1}"#;
        assert!(decode("tidings.T", Epoch(9), 5, &subject, bad_type).is_none());
    }
}
