//! Fuzz target: the SSE decoder (`tidings_proto::sse`). The first input byte picks the
//! chunking and the decoder's bound; the rest is the stream.
//!
//! Checks: the decoder yields the same items (and the same `TooLong`) however the stream is
//! split into reads (sizes 0 to 16, drawn from the seed); every item it yields, encoded
//! again, decodes to itself; and any text encoded as an event's data (or a comment) decodes
//! to that text with its line ends normalised to LF (its line breaks dropped).
#![no_main]

use bytes::BytesMut;
use tidings_proto::sse::{self, Decoder, SseEvent, SseItem, TooLong};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((&seed, stream)) = input.split_first() else {
        return;
    };
    let max = if seed & 0x80 != 0 { 64 } else { 1 << 16 };

    let whole = decode(stream, max, std::iter::once(stream.len()));
    let chunked = decode(stream, max, chunk_sizes(seed));
    assert_eq!(whole, chunked, "chunking changed what was decoded");

    // What was decoded, encoded again, decodes to itself.
    let mut buf = BytesMut::new();
    for item in &whole.0 {
        match item {
            SseItem::Event(e) => sse::encode_event(&mut buf, &e.last_event_id, &e.event, &e.data),
            SseItem::Retry(ms) => sse::encode_retry(&mut buf, *ms),
            SseItem::Comment(text) => sse::encode_comment(&mut buf, text),
        }
    }
    let again = decode(&buf, usize::MAX, std::iter::once(buf.len()));
    assert_eq!(
        again,
        (whole.0.clone(), None),
        "re-encoded items decoded differently"
    );

    // Any text as an event's data and as a comment.
    let text = String::from_utf8_lossy(stream);
    let id = format!("{seed:08x}-{}", stream.len());
    let mut buf = BytesMut::new();
    sse::encode_event(&mut buf, &id, "fuzz", &text);
    sse::encode_comment(&mut buf, &text);
    let expected = vec![
        SseItem::Event(SseEvent {
            event: "fuzz".to_owned(),
            data: text.replace("\r\n", "\n").replace('\r', "\n"),
            last_event_id: id,
        }),
        SseItem::Comment(text.replace(['\r', '\n'], "")),
    ];
    let got = decode(&buf, usize::MAX, chunk_sizes(seed));
    assert_eq!(
        got,
        (expected, None),
        "encoded text did not decode to itself"
    );
});

/// Feeds `stream` in pieces of the given sizes; the items, and the error that stopped it.
fn decode(
    stream: &[u8],
    max: usize,
    sizes: impl Iterator<Item = usize>,
) -> (Vec<SseItem>, Option<TooLong>) {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    let mut rest = stream;
    for size in sizes {
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        if let Err(e) = decoder.feed(piece, &mut out) {
            return (out, Some(e));
        }
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    assert!(rest.is_empty(), "the sizes ran out before the stream");
    (out, None)
}

/// Read sizes from 0 (an empty read) to 16, from a xorshift generator seeded by `seed`.
fn chunk_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut state = u32::from(seed) | 0x9e37_7900;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 17) as usize
    })
}
