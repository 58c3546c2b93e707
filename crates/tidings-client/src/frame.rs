//! Stream framings: bytes from the hub in, frames out. SSE goes through tidings-proto's
//! WHATWG decoder; the JSON-lines framing (`format=ndjson`) is one JSON object per line.
//! Both bound what they buffer by `max_bytes`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tidings_proto::api::{ReconnectNotice, ResetNotice};
use tidings_proto::sse::{self, SseItem};

use crate::error::{Error, ErrorKind};
use crate::subscribe::{Event, Framing, Reset};

/// One thing the hub said on a stream.
#[derive(Debug)]
pub(crate) enum Frame {
    Event(Event),
    Reset(Reset),
    /// `reconnect-required`, with its reason.
    Reconnect(String),
    /// The SSE `retry:` hint.
    Retry(Duration),
    /// The end of a `snapshot=1` subscription's snapshot, with its cursor.
    Snapshot(String),
    /// A session notice (`subscribed`, `resumed`): the stream's place moves to its id.
    Session(String),
}

/// The hub's `snapshot` and session notices: `(name, id, data)` to a frame, if it is one. A
/// notice is known by its name and its payload's shape together (`{"cursor"}` equal to its
/// id; `{"clientId","cursor"}`), because an endpoint may rename its session events and let
/// publishers use `resumed` for their own (the download manager's `resumed` download).
fn notice(name: &str, id: Option<&str>, data: &str) -> Option<Frame> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Notice {
        cursor: String,
        #[serde(default)]
        client_id: Option<String>,
    }
    let id = id.filter(|id| !id.is_empty())?;
    if !matches!(name, "snapshot" | "subscribed" | "resumed") {
        return None;
    }
    let n: Notice = serde_json::from_str(data).ok()?;
    match (name, n.client_id) {
        ("snapshot", None) if n.cursor == id => Some(Frame::Snapshot(n.cursor)),
        ("subscribed" | "resumed", Some(_)) => Some(Frame::Session(n.cursor)),
        _ => None,
    }
}

/// An incremental decoder for one connection.
#[derive(Debug)]
pub(crate) enum Decoder {
    Sse {
        decoder: sse::Decoder,
        items: Vec<SseItem>,
    },
    Ndjson {
        line: Vec<u8>,
        max_bytes: usize,
    },
}

impl Decoder {
    pub(crate) fn new(framing: Framing, max_bytes: usize) -> Decoder {
        match framing {
            Framing::Sse => Decoder::Sse {
                decoder: sse::Decoder::new(max_bytes),
                items: Vec::new(),
            },
            Framing::Ndjson | Framing::WebSocket => Decoder::Ndjson {
                line: Vec::new(),
                max_bytes,
            },
        }
    }

    /// Decodes `input`, appending every complete frame to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<Frame>) -> Result<(), Error> {
        match self {
            Decoder::Sse { decoder, items } => {
                decoder
                    .feed(input, items)
                    .map_err(|_| too_long("an SSE line or event"))?;
                for item in items.drain(..) {
                    match item {
                        SseItem::Event(e) => out.push(sse_frame(e)?),
                        SseItem::Retry(ms) => out.push(Frame::Retry(Duration::from_millis(ms))),
                        SseItem::Comment(_) => {}
                    }
                }
                Ok(())
            }
            Decoder::Ndjson { line, max_bytes } => {
                let mut rest = input;
                while let Some(at) = rest.iter().position(|&b| b == b'\n') {
                    if line.len() + at > *max_bytes {
                        return Err(too_long("a JSON line"));
                    }
                    line.extend_from_slice(&rest[..at]);
                    rest = &rest[at + 1..];
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        out.push(json_frame(line)?);
                    }
                    line.clear();
                }
                if line.len() + rest.len() > *max_bytes {
                    return Err(too_long("a JSON line"));
                }
                line.extend_from_slice(rest);
                Ok(())
            }
        }
    }
}

fn too_long(what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("{what} from the hub is longer than the frame limit"),
    )
}

fn bad_notice(what: &str, e: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("a `{what}` notice is malformed"),
    )
    .with_source(e)
}

fn sse_frame(e: sse::SseEvent) -> Result<Frame, Error> {
    if let Some(frame) = notice(&e.event, Some(&e.last_event_id), &e.data) {
        return Ok(frame);
    }
    Ok(match e.event.as_str() {
        "reset" => {
            let notice: ResetNotice =
                serde_json::from_str(&e.data).map_err(|err| bad_notice("reset", err))?;
            Frame::Reset(Reset {
                reason: notice.reason,
                cursor: notice.cursor,
            })
        }
        "reconnect-required" => {
            let notice: ReconnectNotice = serde_json::from_str(&e.data)
                .map_err(|err| bad_notice("reconnect-required", err))?;
            Frame::Reconnect(notice.reason)
        }
        _ => Frame::Event(Event {
            id: e.last_event_id,
            event_type: e.event,
            topic: None,
            key: None,
            data: e.data,
        }),
    })
}

/// A line of the JSON framing: an event, or a control frame (which has no topic).
#[derive(Deserialize)]
struct JsonFrame<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

pub(crate) fn json_frame(line: &[u8]) -> Result<Frame, Error> {
    let f: JsonFrame<'_> = serde_json::from_slice(line).map_err(|e| {
        Error::new(ErrorKind::Protocol, "a stream line is not an event").with_source(e)
    })?;
    let Some(topic) = f.topic else {
        if let Some(frame) = notice(&f.event_type, f.id.as_deref(), f.data.get()) {
            return Ok(frame);
        }
        return Ok(match f.event_type.as_str() {
            "reset" => {
                let notice: ResetNotice =
                    serde_json::from_str(f.data.get()).map_err(|err| bad_notice("reset", err))?;
                Frame::Reset(Reset {
                    reason: notice.reason,
                    cursor: notice.cursor,
                })
            }
            "reconnect-required" => {
                let notice: ReconnectNotice = serde_json::from_str(f.data.get())
                    .map_err(|err| bad_notice("reconnect-required", err))?;
                Frame::Reconnect(notice.reason)
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("a stream line of type `{other}` has no topic"),
                ));
            }
        });
    };
    Ok(Frame::Event(Event {
        id: f.id.unwrap_or_default(),
        event_type: f.event_type,
        topic: Some(topic),
        key: f.key,
        data: f.data.get().to_owned(),
    }))
}

#[cfg(test)]
mod tests;
