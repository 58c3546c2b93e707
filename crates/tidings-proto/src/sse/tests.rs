//! The SSE encoder checked against the WHATWG parsing rules, through our decoder and through
//! hand-written streams taken from the specification's examples.

use super::*;
use proptest::prelude::*;

fn decode(input: &[u8]) -> Vec<SseItem> {
    let mut d = Decoder::new(1 << 20);
    let mut out = Vec::new();
    d.feed(input, &mut out).unwrap();
    out
}

fn events(input: &[u8]) -> Vec<(String, String, String)> {
    decode(input)
        .into_iter()
        .filter_map(|i| match i {
            SseItem::Event(e) => Some((e.event, e.data, e.last_event_id)),
            _ => None,
        })
        .collect()
}

fn ev(event: &str, data: &str, id: &str) -> (String, String, String) {
    (event.into(), data.into(), id.into())
}

#[test]
fn encodes_the_documented_frame() {
    let mut buf = BytesMut::new();
    encode_event(
        &mut buf,
        "0000000a-1",
        "progress",
        r#"{"DownloadID":"abc-123"}"#,
    );
    assert_eq!(
        &buf[..],
        b"id: 0000000a-1\nevent: progress\ndata: {\"DownloadID\":\"abc-123\"}\n\n"
    );
}

#[test]
fn multi_line_data_becomes_several_data_lines() {
    let mut buf = BytesMut::new();
    encode_event(&mut buf, "1", "m", "a\nb\r\nc\rd");
    assert_eq!(
        &buf[..],
        b"id: 1\nevent: m\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    );
    assert_eq!(events(&buf), vec![ev("m", "a\nb\nc\nd", "1")]);
}

#[test]
fn whatwg_examples() {
    // "data" twice makes two lines; a comment and an unknown field are ignored.
    assert_eq!(
        events(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
        vec![ev("message", "first event", "1"), ev("message", "second event", ""), ev("message", " third event", "")]
    );
    // A field with no colon is a field with an empty value; trailing data without a blank
    // line is never dispatched.
    assert_eq!(
        events(b"data\n\ndata\ndata\n\ndata:"),
        vec![ev("message", "", ""), ev("message", "\n", "")]
    );
    // CR and CRLF end lines too.
    assert_eq!(events(b"event: a\rdata: x\r\n\r\n"), vec![ev("a", "x", "")]);
    // A BOM is dropped only at the very start.
    assert_eq!(
        events(b"\xEF\xBB\xBFdata: x\n\n"),
        vec![ev("message", "x", "")]
    );
    // An id with NUL is ignored; retry takes only digits.
    let items = decode(b"id: 7\n\nid: a\0b\ndata: y\nretry: 12x\nretry: 3000\n\n");
    assert_eq!(
        items,
        vec![
            SseItem::Retry(3000),
            SseItem::Event(SseEvent {
                event: "message".into(),
                data: "y".into(),
                last_event_id: "7".into()
            })
        ]
    );
}

#[test]
fn a_bom_split_across_feeds_is_still_dropped() {
    let mut d = Decoder::new(1024);
    let mut out = Vec::new();
    d.feed(b"\xEF", &mut out).unwrap();
    d.feed(b"\xBB\xBFdata: x\n\n", &mut out).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn bounded() {
    let mut d = Decoder::new(8);
    assert_eq!(d.feed(b"data: 123456789", &mut Vec::new()), Err(TooLong));
}

proptest! {
    /// Whatever the data (any characters, any line breaks) and however the bytes are split,
    /// the decoder gives back what was encoded, with CR and CRLF normalised to LF.
    #[test]
    fn encode_then_decode(data in "[a-z\\n\\r {}\":é]{0,40}", ty in "[a-z-]{1,10}", seq in 0u64..1000, split in 0usize..80) {
        let id = format!("0000000a-{seq}");
        let mut buf = BytesMut::new();
        encode_comment(&mut buf, "keepalive");
        encode_event(&mut buf, &id, &ty, &data);
        let split = split.min(buf.len());
        let mut d = Decoder::new(1 << 16);
        let mut out = Vec::new();
        d.feed(&buf[..split], &mut out).unwrap();
        d.feed(&buf[split..], &mut out).unwrap();
        let expected = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(out, vec![
            SseItem::Comment("keepalive".into()),
            SseItem::Event(SseEvent { event: ty, data: expected, last_event_id: id }),
        ]);
    }
}

proptest! {
    /// Arbitrary bytes in arbitrary pieces: the decoder yields items or `TooLong`, never
    /// panics, and never holds more than its bound.
    #[test]
    fn decoder_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let mut d = Decoder::new(64);
        let mut out = Vec::new();
        let cut = cut.min(bytes.len());
        let fed = d
            .feed(&bytes[..cut], &mut out)
            .and_then(|()| d.feed(&bytes[cut..], &mut out));
        // The bound can only be hit by at least as many bytes as the bound.
        prop_assert!(fed.is_ok() || bytes.len() >= 60);
        for item in out {
            if let SseItem::Event(e) = item {
                prop_assert!(e.data.len() <= 64);
            }
        }
    }
}
