//! Server-Sent Events framing: an encoder that appends frames to a buffer, and an incremental
//! decoder that follows the WHATWG "event stream interpretation" rules exactly (BOM, CR/LF/CRLF
//! line ends, comments, field without colon, one leading space stripped, `retry` digits only,
//! `id` containing NUL ignored, empty `data` not dispatched).

use bytes::{BufMut, BytesMut};

/// Appends one event frame: `id:`, `event:`, one `data:` line per line of `data`, blank line.
/// `id` and `event` must not contain CR, LF or NUL (validated types guarantee it).
pub fn encode_event(buf: &mut BytesMut, id: &str, event: &str, data: &str) {
    debug_assert!(!id.contains(['\r', '\n', '\0']) && !event.contains(['\r', '\n']));
    buf.reserve(id.len() + event.len() + data.len() + 24);
    buf.put_slice(b"id: ");
    buf.put_slice(id.as_bytes());
    buf.put_slice(b"\nevent: ");
    buf.put_slice(event.as_bytes());
    buf.put_u8(b'\n');
    put_data(buf, data);
    buf.put_u8(b'\n');
}

fn put_data(buf: &mut BytesMut, data: &str) {
    // Split on CRLF, CR or LF, as the parser will.
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || b == b'\r' {
            put_line(buf, &bytes[start..i]);
            if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    put_line(buf, &bytes[start..]);
}

fn put_line(buf: &mut BytesMut, line: &[u8]) {
    buf.put_slice(b"data: ");
    buf.put_slice(line);
    buf.put_u8(b'\n');
}

/// Appends a comment frame (`: text`), used for keepalives. Line breaks in `text` are dropped.
pub fn encode_comment(buf: &mut BytesMut, text: &str) {
    buf.put_slice(b": ");
    for part in text.split(['\r', '\n']) {
        buf.put_slice(part.as_bytes());
    }
    buf.put_slice(b"\n\n");
}

/// Appends a `retry:` hint in milliseconds.
pub fn encode_retry(buf: &mut BytesMut, millis: u64) {
    buf.put_slice(b"retry: ");
    buf.put_slice(millis.to_string().as_bytes());
    buf.put_slice(b"\n\n");
}

/// One dispatched event, as a browser's `EventSource` would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event` field, `message` when absent.
    pub event: String,
    /// The data buffer without its final LF.
    pub data: String,
    /// The last event id after this event (it persists across events, as in a browser).
    pub last_event_id: String,
}

/// What the decoder produced from some input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A `retry:` value the stream asked for.
    Retry(u64),
    /// A comment line's text (without the colon and one leading space).
    Comment(String),
}

/// Incremental decoder: feed bytes as they arrive, collect items.
#[derive(Debug, Default)]
pub struct Decoder {
    line: Vec<u8>,
    /// The last char seen was CR: a following LF belongs to the same line end.
    after_cr: bool,
    /// The first bytes have been seen (a UTF-8 BOM there is dropped).
    started: bool,
    data: String,
    event: String,
    last_event_id: String,
    /// Bound on one line and on the data buffer, so a hostile stream cannot grow memory.
    max_bytes: usize,
}

/// The decoder met a line or event larger than its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong;

impl Decoder {
    /// A decoder that refuses lines or events over `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Decoder {
            max_bytes,
            ..Decoder::default()
        }
    }

    /// Feeds `input`, pushing every complete item into `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<SseItem>) -> Result<(), TooLong> {
        if !self.started && !input.is_empty() {
            let bom = b"\xEF\xBB\xBF";
            let have = self.line.len() + input.len();
            if have < 3 && bom.starts_with(&[self.line.as_slice(), input].concat()) {
                self.line.extend_from_slice(input);
                return Ok(());
            }
            self.started = true;
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(input);
            let rest: Vec<u8> = head.strip_prefix(bom).unwrap_or(&head).to_vec();
            return self.feed_started(&rest, out);
        }
        if input.is_empty() {
            return Ok(());
        }
        self.feed_started(std::mem::take(&mut input), out)
    }

    fn feed_started(&mut self, input: &[u8], out: &mut Vec<SseItem>) -> Result<(), TooLong> {
        for &b in input {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(out)?;
                }
                b'\n' => self.end_line(out)?,
                _ => {
                    if self.line.len() >= self.max_bytes {
                        return Err(TooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseItem>) -> Result<(), TooLong> {
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseItem::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_bytes {
                    return Err(TooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        if self.data.is_empty() {
            self.event.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let event = std::mem::take(&mut self.event);
        out.push(SseItem::Event(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            last_event_id: self.last_event_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests;
