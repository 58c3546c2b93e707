//! JSON frames shared by WebSocket, NDJSON and long-poll, each encoded once per event and
//! shape (cached on the event) and shared by every connection.
//!
//! Shapes:
//! - `event`: `{"id":"…","topic":"…","type":"…","data":…}` (plus `"key"` when set).
//! - `envelope`: `{"success":true,"id":"…","data":{"type":"…",…payload fields…}}`, the shape
//!   NZB Flow's clients read. A payload that is not an object goes under `"value"`. The event
//!   type wins: a payload's own top-level `type` field is left out of the envelope (it would
//!   be a second `type` key, and JavaScript would read the payload's). The `event` shape and
//!   SSE carry the payload unchanged.
//!
//! Control frames (`reset`, `reconnect-required`) have the same shapes with no topic.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tidings_core::{EventRecord, FormatSlot};
use tidings_proto::{Event, EventId};

/// How JSON frames look on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"id","topic","type","data"}`.
    Event,
    /// `{"success":true,"id","data":{"type",…payload}}`.
    Envelope,
}

impl Shape {
    fn slot(self) -> FormatSlot {
        match self {
            Shape::Event => FormatSlot(1),
            Shape::Envelope => FormatSlot(2),
        }
    }
}

/// The frame of one event in `shape`, encoded on first use.
pub(crate) fn event(record: &EventRecord, shape: Shape) -> &Bytes {
    record.encoded(shape.slot(), |e| encode(e, shape))
}

fn encode(e: &Event, shape: Shape) -> Bytes {
    let mut buf = BytesMut::with_capacity(e.data.get().len() + 96);
    let id = e.id.to_string();
    match shape {
        Shape::Event => {
            buf.put_slice(b"{\"id\":\"");
            buf.put_slice(id.as_bytes());
            buf.put_slice(b"\",\"topic\":");
            put_json_str(&mut buf, e.topic.as_str());
            buf.put_slice(b",\"type\":");
            put_json_str(&mut buf, e.event_type.as_str());
            if let Some(key) = &e.key {
                buf.put_slice(b",\"key\":");
                put_json_str(&mut buf, key.as_str());
            }
            buf.put_slice(b",\"data\":");
            buf.put_slice(e.data.get().as_bytes());
            buf.put_u8(b'}');
        }
        Shape::Envelope => {
            buf.put_slice(b"{\"success\":true,\"id\":\"");
            buf.put_slice(id.as_bytes());
            buf.put_slice(b"\",\"data\":");
            put_merged(&mut buf, e.event_type.as_str(), e.data.get());
            buf.put_u8(b'}');
        }
    }
    buf.freeze()
}

/// `{"type":"…",<fields of payload>}`; a non-object payload becomes `"value"`, and a
/// payload's own `type` field is dropped (the event type wins).
fn put_merged(buf: &mut BytesMut, ty: &str, payload: &str) {
    buf.put_slice(b"{\"type\":");
    put_json_str(buf, ty);
    match payload.strip_prefix('{') {
        Some("}") => buf.put_u8(b'}'),
        // A `type` key is spelled out, or escaped (`\u0074ype`); anything else is copied.
        Some(rest) if rest.contains("type") || rest.contains("\\u") => {
            put_fields_but_type(buf, payload, rest);
        }
        Some(rest) => {
            buf.put_u8(b',');
            buf.put_slice(rest.as_bytes());
        }
        None => {
            buf.put_slice(b",\"value\":");
            buf.put_slice(payload.as_bytes());
            buf.put_u8(b'}');
        }
    }
}

/// The object `payload`'s fields except `type`, in order, each as `,"key":value`, then `}`.
/// `rest` is `payload` after its `{`.
fn put_fields_but_type(buf: &mut BytesMut, payload: &str, rest: &str) {
    let Ok(Fields(fields)) = serde_json::from_str::<Fields<'_>>(payload) else {
        // Payloads are validated JSON objects; should one not parse, send it as it is.
        buf.put_u8(b',');
        buf.put_slice(rest.as_bytes());
        return;
    };
    for (key, value) in fields.iter().filter(|(k, _)| k != "type") {
        buf.put_u8(b',');
        put_json_str(buf, key);
        buf.put_u8(b':');
        buf.put_slice(value.get().as_bytes());
    }
    buf.put_u8(b'}');
}

/// A JSON object's fields in their order, values kept as raw text.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn put_json_str(buf: &mut BytesMut, s: &str) {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    buf.put_slice(quoted.as_bytes());
}

/// A control frame (`reset` or `reconnect-required`) in `shape`; `id` is set for `reset`.
pub(crate) fn control(
    shape: Shape,
    ty: &str,
    id: Option<EventId>,
    payload: &impl Serialize,
) -> Bytes {
    let payload = serde_json::to_string(payload).expect("a notice serializes");
    let mut buf = BytesMut::with_capacity(payload.len() + 64);
    match shape {
        Shape::Event => {
            buf.put_u8(b'{');
            if let Some(id) = id {
                buf.put_slice(format!("\"id\":\"{id}\",").as_bytes());
            }
            buf.put_slice(b"\"type\":");
            put_json_str(&mut buf, ty);
            buf.put_slice(b",\"data\":");
            buf.put_slice(payload.as_bytes());
            buf.put_u8(b'}');
        }
        Shape::Envelope => {
            buf.put_slice(b"{\"success\":true,");
            if let Some(id) = id {
                buf.put_slice(format!("\"id\":\"{id}\",").as_bytes());
            }
            buf.put_slice(b"\"data\":");
            put_merged(&mut buf, ty, &payload);
            buf.put_u8(b'}');
        }
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;
    use tidings_proto::{Epoch, EventType, Key, Topic};

    use super::*;

    fn record(data: &str, key: Option<&str>) -> std::sync::Arc<EventRecord> {
        EventRecord::new(Event {
            id: EventId::new(Epoch(0xab), 7),
            topic: Topic::new("tasks/q\"1").unwrap(),
            event_type: EventType::new("queue-update").unwrap(),
            key: key.map(|k| Key::new(k).unwrap()),
            origin: None,
            time: 1,
            data: RawValue::from_string(data.to_owned()).unwrap(),
        })
    }

    #[test]
    fn shapes() {
        let r = record(r#"{"uploadActive":true,"uploadQueued":3}"#, Some("k"));
        assert_eq!(
            event(&r, Shape::Event),
            r#"{"id":"000000ab-7","topic":"tasks/q\"1","type":"queue-update","key":"k","data":{"uploadActive":true,"uploadQueued":3}}"#
        );
        assert_eq!(
            event(&r, Shape::Envelope),
            r#"{"success":true,"id":"000000ab-7","data":{"type":"queue-update","uploadActive":true,"uploadQueued":3}}"#
        );
        assert_eq!(
            event(&record("{}", None), Shape::Envelope),
            r#"{"success":true,"id":"000000ab-7","data":{"type":"queue-update"}}"#
        );
        assert_eq!(
            event(&record("[1]", None), Shape::Envelope),
            r#"{"success":true,"id":"000000ab-7","data":{"type":"queue-update","value":[1]}}"#
        );
        for shape in [Shape::Event, Shape::Envelope] {
            let v: serde_json::Value =
                serde_json::from_slice(event(&record("5", None), shape)).unwrap();
            assert!(v.is_object());
        }
    }

    /// The envelope has one `type`, the event's: a payload's own top-level `type` is dropped
    /// (however it is spelled), nested ones and look-alikes stay, order is kept.
    #[test]
    fn the_event_type_wins_in_the_envelope() {
        let cases = [
            (
                r#"{"type":"task-finished","id":42}"#,
                r#"{"type":"queue-update","id":42}"#,
            ),
            (
                r#"{"a":1,"type":{"deep":true},"b":[1,"type"]}"#,
                r#"{"type":"queue-update","a":1,"b":[1,"type"]}"#,
            ),
            (r#"{"type":"x"}"#, r#"{"type":"queue-update"}"#),
            (
                r#"{"\u0074ype":"x","z":"\u00e9"}"#,
                r#"{"type":"queue-update","z":"\u00e9"}"#,
            ),
            (
                r#"{"types":1,"x":{"type":"inner"},"subtype":"y"}"#,
                r#"{"type":"queue-update","types":1,"x":{"type":"inner"},"subtype":"y"}"#,
            ),
        ];
        for (payload, data) in cases {
            let r = record(payload, None);
            let frame = event(&r, Shape::Envelope);
            let want = format!(r#"{{"success":true,"id":"000000ab-7","data":{data}}}"#);
            assert_eq!(frame, want.as_bytes(), "payload {payload}");
        }
        // The event shape carries the payload as published.
        let r = record(r#"{"type":"task-finished"}"#, None);
        assert!(
            std::str::from_utf8(event(&r, Shape::Event))
                .unwrap()
                .ends_with(r#""data":{"type":"task-finished"}}"#)
        );
    }

    #[test]
    fn control_frames() {
        let notice = serde_json::json!({"reason": "shutdown"});
        assert_eq!(
            control(Shape::Event, "reconnect-required", None, &notice),
            r#"{"type":"reconnect-required","data":{"reason":"shutdown"}}"#
        );
        assert_eq!(
            control(
                Shape::Envelope,
                "reset",
                Some(EventId::new(Epoch(1), 2)),
                &notice
            ),
            r#"{"success":true,"id":"00000001-2","data":{"type":"reset","reason":"shutdown"}}"#
        );
    }
}
