//! Both framings: events, control frames, keep-alives, chunk boundaries anywhere, bounds.

use super::{Decoder, Frame};
use crate::subscribe::Framing;

/// Feeds `input` split at every possible point and checks each split decodes the same.
fn decode(framing: Framing, input: &str) -> Vec<String> {
    let whole = run(framing, &[input.as_bytes()]);
    for at in 1..input.len() {
        let (a, b) = input.as_bytes().split_at(at);
        assert_eq!(run(framing, &[a, b]), whole, "split at {at}");
    }
    whole
}

fn run(framing: Framing, chunks: &[&[u8]]) -> Vec<String> {
    let mut d = Decoder::new(framing, 1 << 10);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out).expect("decodes");
    }
    out.iter().map(show).collect()
}

fn show(f: &Frame) -> String {
    match f {
        Frame::Event(e) => format!(
            "event id={} type={} topic={:?} key={:?} data={}",
            e.id, e.event_type, e.topic, e.key, e.data
        ),
        Frame::Reset(r) => format!("reset {} after {}", r.reason, r.cursor),
        Frame::Reconnect(reason) => format!("reconnect {reason}"),
        Frame::Retry(d) => format!("retry {d:?}"),
        Frame::Snapshot(cursor) => format!("snapshot {cursor}"),
        Frame::Session(cursor) => format!("session {cursor}"),
    }
}

#[test]
fn snapshot_and_session_notices_in_both_framings() {
    let sse = "id: 0000000a-3\nevent: subscribed\ndata: {\"clientId\":\"c\",\"cursor\":\"0000000a-3\"}\n\n\
               id: 0000000a-4\nevent: resumed\ndata: {\"DownloadID\":\"d1\"}\n\n\
               id: 0000000a-5\nevent: progress\ndata: {}\n\n\
               id: 0000000a-7\nevent: snapshot\ndata: {\"cursor\":\"0000000a-7\"}\n\n";
    assert_eq!(
        decode(Framing::Sse, sse),
        [
            "session 0000000a-3",
            // A publisher's own `resumed` (the downloads seed's) is an event.
            "event id=0000000a-4 type=resumed topic=None key=None data={\"DownloadID\":\"d1\"}",
            "event id=0000000a-5 type=progress topic=None key=None data={}",
            "snapshot 0000000a-7",
        ]
    );
    let json = "{\"id\":\"0000000a-3\",\"type\":\"resumed\",\"data\":{\"clientId\":\"c\",\"cursor\":\"0000000a-3\"}}\n\
                {\"id\":\"0000000a-7\",\"type\":\"snapshot\",\"data\":{\"cursor\":\"0000000a-7\"}}\n";
    assert_eq!(
        decode(Framing::Ndjson, json),
        ["session 0000000a-3", "snapshot 0000000a-7"]
    );
    // Without an id it is no notice the client knows: a protocol error, as before.
    let mut d = Decoder::new(Framing::Ndjson, 1 << 10);
    let bare = b"{\"type\":\"snapshot\",\"data\":{}}\n";
    assert!(d.feed(bare, &mut Vec::new()).is_err());
}

#[test]
fn sse_events_controls_and_keepalives() {
    let input = "retry: 2000\n\n: keepalive\n\nid: 0000000a-1\nevent: progress\ndata: {\"n\":1}\n\n\
                 id: 0000000a-9\nevent: reset\ndata: {\"reason\":\"cursor_expired\",\"cursor\":\"0000000a-9\"}\n\n\
                 event: reconnect-required\ndata: {\"reason\":\"shutdown\"}\n\n";
    assert_eq!(
        decode(Framing::Sse, input),
        [
            "retry 2s",
            "event id=0000000a-1 type=progress topic=None key=None data={\"n\":1}",
            "reset cursor_expired after 0000000a-9",
            "reconnect shutdown",
        ]
    );
}

#[test]
fn ndjson_events_controls_and_keepalives() {
    let input = "\n{\"id\":\"0000000a-1\",\"topic\":\"d/1\",\"type\":\"progress\",\"key\":\"k\",\"data\":{\"n\":1}}\n\
                 \n{\"id\":\"0000000a-9\",\"type\":\"reset\",\"data\":{\"reason\":\"epoch_mismatch\",\"cursor\":\"0000000a-9\"}}\n\
                 {\"type\":\"reconnect-required\",\"data\":{\"reason\":\"slow_consumer\"}}\n";
    assert_eq!(
        decode(Framing::Ndjson, input),
        [
            "event id=0000000a-1 type=progress topic=Some(\"d/1\") key=Some(\"k\") data={\"n\":1}",
            "reset epoch_mismatch after 0000000a-9",
            "reconnect slow_consumer",
        ]
    );
}

#[test]
fn oversized_or_malformed_input_is_a_protocol_error() {
    use crate::ErrorKind;
    for framing in [Framing::Sse, Framing::Ndjson] {
        let mut d = Decoder::new(framing, 64);
        let e = d.feed(&[b'x'; 100], &mut Vec::new()).expect_err("too long");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(!e.is_permanent());
    }
    let mut d = Decoder::new(Framing::Ndjson, 64);
    let e = d.feed(b"not json\n", &mut Vec::new()).expect_err("garbage");
    assert_eq!(e.kind(), ErrorKind::Protocol);
    let mut d = Decoder::new(Framing::Sse, 64);
    let e = d
        .feed(b"event: reset\ndata: {}\n\n", &mut Vec::new())
        .expect_err("a reset without its fields");
    assert_eq!(e.kind(), ErrorKind::Protocol);
}
