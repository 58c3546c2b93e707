//! The WebSocket loop over an in-memory pipe (`tokio::io::duplex`), no sockets: the close
//! handshake both ways, protocol errors by type (oversized control frames, bad UTF-8, big
//! messages), the ping/pong timeout with paused time, the slow-consumer close, and the wire
//! size of a frame (what session places are counted in).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use serde_json::value::RawValue;
use tidings_core::{Hub, Limits, MemoryStore, NewEvent, PublishBatch, Retention, SubscribeRequest};
use tidings_proto::{Epoch, EventType, Pattern, Selector, Topic};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role};

use super::*;

type Client = WebSocketStream<DuplexStream>;

const WAIT: Duration = Duration::from_secs(10);

fn hub(queue_events: usize) -> Hub {
    let store = Arc::new(MemoryStore::new(Epoch(7), Retention::default()));
    Hub::new(
        store,
        Limits {
            subscriber_queue_events: queue_events,
            ..Limits::default()
        },
    )
}

fn options() -> TransportOptions {
    TransportOptions {
        ws_max_message_bytes: 1024,
        ..TransportOptions::default()
    }
}

/// The server end of a pipe runs `run`; returns the other end (raw) and the server's task.
async fn serve(
    hub: &Hub,
    options: TransportOptions,
    pipe: usize,
) -> (DuplexStream, JoinHandle<()>) {
    let (server_io, client_io) = tokio::io::duplex(pipe);
    let sub = hub
        .subscribe(SubscribeRequest {
            selector: Selector {
                patterns: vec![Pattern::All],
                types: Vec::new(),
            },
            cursor: None,
            client_id: None,
        })
        .expect("subscribe");
    let socket =
        WebSocketStream::from_raw_socket(server_io, Role::Server, Some(config(&options))).await;
    let task = tokio::spawn(run(
        socket,
        crate::tracked::Tracked::untracked(sub),
        Shape::Event,
        options,
        std::sync::Arc::new(crate::endpoint::Endpoint::default_events(
            crate::endpoint::Origins::Any,
        )),
        Default::default(),
        None,
    ));
    (client_io, task)
}

async fn client(io: DuplexStream) -> Client {
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

/// A masked client frame (FIN set) with `opcode` and `payload` (under 64 KiB).
fn raw_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads to the server's Close; returns its code and the text frames before it as JSON.
async fn read_to_close(ws: &mut Client) -> (Option<u16>, Vec<Value>) {
    let mut frames = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                frames.push(serde_json::from_str(t.as_str()).expect("JSON frame"));
            }
            Some(Ok(Message::Close(frame))) => {
                return (frame.map(|f| u16::from(f.code)), frames);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("error before the server's close: {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

/// The server's task ends (it dropped the connection) in time.
async fn ends(task: JoinHandle<()>) {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the server's connection task ended")
        .expect("no panic");
}

#[tokio::test]
async fn a_client_close_is_answered_with_its_code_before_the_connection_ends() {
    let hub = hub(64);
    for (sent, echoed) in [(1000, 1000), (1001, 1001), (4321, 4321), (1005, 1002)] {
        let (io, task) = serve(&hub, options(), 64 << 10).await;
        let mut ws = client(io).await;
        let frame = CloseFrame {
            code: CloseCode::from(sent),
            reason: "bye".into(),
        };
        ws.send(Message::Close(Some(frame)))
            .await
            .expect("send close");
        let (code, frames) = read_to_close(&mut ws).await;
        assert_eq!(code, Some(echoed), "a close with {sent}");
        assert!(frames.is_empty());
        // The handshake is complete: the client's stream ends cleanly, without an error.
        let after = tokio::time::timeout(WAIT, ws.next()).await.expect("end");
        assert!(after.is_none(), "{after:?}");
        ends(task).await;
    }
    // A close without a code gets a close without a code.
    let (io, task) = serve(&hub, options(), 64 << 10).await;
    let mut ws = client(io).await;
    ws.send(Message::Close(None)).await.expect("send close");
    assert_eq!(read_to_close(&mut ws).await.0, None);
    ends(task).await;
}

/// Sends `bytes` raw and returns the code of the server's close.
async fn close_code_for(bytes: &[u8]) -> Option<u16> {
    let hub = hub(64);
    let (mut io, task) = serve(&hub, options(), 64 << 10).await;
    io.write_all(bytes).await.expect("write");
    let mut ws = client(io).await;
    let (code, _) = read_to_close(&mut ws).await;
    // The server's close is answered by the client's codec; the server ends its half, and
    // once the client closes too, the server's task is done.
    assert!(
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("end")
            .is_none()
    );
    drop(ws);
    let started = std::time::Instant::now();
    ends(task).await;
    assert!(started.elapsed() < CLOSE_WAIT, "the server lingered");
    code
}

#[tokio::test]
async fn a_control_frame_over_125_bytes_is_a_protocol_error() {
    assert_eq!(
        close_code_for(&raw_frame(0x9, &[b'p'; 126])).await,
        Some(1002)
    );
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(&[b'r'; 124]);
    assert_eq!(close_code_for(&raw_frame(0x8, &close)).await, Some(1002));
    // The largest allowed control frame is fine: a ping of 125 bytes gets its pong.
    let hub = hub(64);
    let (mut io, task) = serve(&hub, options(), 64 << 10).await;
    io.write_all(&raw_frame(0x9, &[b'p'; 125]))
        .await
        .expect("write");
    let mut ws = client(io).await;
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("pong in time");
    assert!(
        matches!(&pong, Some(Ok(Message::Pong(p))) if p.len() == 125),
        "{pong:?}"
    );
    drop(ws);
    ends(task).await;
}

#[tokio::test]
async fn protocol_errors_are_closed_by_their_type() {
    // A text message over the size limit: 1009.
    assert_eq!(
        close_code_for(&raw_frame(0x1, &[b'x'; 2000])).await,
        Some(1009)
    );
    // Text that is not UTF-8: 1007.
    assert_eq!(
        close_code_for(&raw_frame(0x1, b"ok \xff\xfe")).await,
        Some(1007)
    );
    // A reserved opcode, and a continuation without a start: 1002.
    assert_eq!(close_code_for(&raw_frame(0x3, b"")).await, Some(1002));
    assert_eq!(close_code_for(&raw_frame(0x0, b"tail")).await, Some(1002));
    // Reserved bits set: 1002.
    let mut rsv = raw_frame(0x1, b"hi");
    rsv[0] |= 0x40;
    assert_eq!(close_code_for(&rsv).await, Some(1002));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_answer_pings_is_closed_with_4001() {
    let hub = hub(64);
    let options = TransportOptions {
        ws_ping_interval: Duration::from_secs(20),
        ws_pong_timeout: Duration::from_secs(5),
        ..options()
    };
    // A live client reads, so its codec answers every ping: it stays open.
    let (io, live_task) = serve(&hub, options, 64 << 10).await;
    let mut live = client(io).await;
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(200) {
        match tokio::time::timeout(Duration::from_secs(30), live.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            other => panic!("the live client got {other:?}"),
        }
    }
    assert!(pings >= 9, "{pings} pings in 200 s");
    assert!(!live_task.is_finished());

    // A silent one does not read: it is closed with 4001 once the first ping's pong timeout
    // (at 25 s) has passed, and not before.
    let (io, task) = serve(&hub, options, 64 << 10).await;
    let mut silent = client(io).await;
    tokio::time::sleep(Duration::from_secs(24)).await;
    assert!(!task.is_finished(), "closed before the pong timeout");
    // At 26 s the server has sent its close and waits for the answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, silent.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => {
                got.push(frame.map(|f| u16::from(f.code)));
                break;
            }
            Some(Ok(Message::Ping(_))) => got.push(None),
            other => panic!("the silent client got {other:?}"),
        }
    }
    assert_eq!(got, vec![None, Some(CLOSE_PING_TIMEOUT)]);
    // The client's codec answered the close: the server hangs up.
    assert!(
        tokio::time::timeout(WAIT, silent.next())
            .await
            .expect("end")
            .is_none()
    );
    ends(task).await;
    drop(live);
    ends(live_task).await;
}

fn batch(n: usize, pad: usize) -> PublishBatch {
    let data = format!(r#"{{"pad":"{}"}}"#, "z".repeat(pad));
    PublishBatch {
        events: (0..n)
            .map(|_| NewEvent {
                topic: Topic::new("slow").expect("topic"),
                event_type: EventType::new("big").expect("type"),
                key: None,
                data: RawValue::from_string(data.clone()).expect("JSON"),
            })
            .collect(),
        origin: None,
        idempotency_key: None,
    }
}

#[tokio::test]
async fn a_slow_consumer_gets_a_notice_then_4000() {
    let hub = hub(8);
    // The pipe holds a few frames: the server blocks writing while the client does not read.
    let (io, task) = serve(&hub, options(), 8 << 10).await;
    let mut ws = client(io).await;
    for _ in 0..20 {
        hub.publish(batch(10, 2000)).await.expect("publish");
        tokio::task::yield_now().await;
    }
    let (code, frames) = read_to_close(&mut ws).await;
    assert_eq!(code, Some(CLOSE_SLOW_CONSUMER));
    let events = frames.iter().filter(|f| f["type"] == "big").count();
    assert!(
        events < 200,
        "the slow reader was cut off ({events} events)"
    );
    let last = frames.last().expect("a notice before the close");
    assert_eq!(last["type"], "reconnect-required");
    assert_eq!(last["data"]["reason"], "slow_consumer");
    // The client's codec answered the close: the server ends the connection at once.
    assert!(
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("end")
            .is_none()
    );
    ends(task).await;
}

/// `frame_len` is what the codec writes for a server's text frame, at every header size.
#[tokio::test]
async fn frame_len_is_what_a_server_frame_takes_on_the_wire() {
    use tokio::io::AsyncReadExt;
    for len in [0usize, 1, 125, 126, 127, 0xffff, 0x1_0000, 70_000] {
        let (server_io, mut peer) = tokio::io::duplex(1 << 20);
        let mut server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        server
            .send(Message::Text("x".repeat(len).into()))
            .await
            .unwrap();
        drop(server);
        let mut wire = Vec::new();
        peer.read_to_end(&mut wire).await.unwrap();
        assert_eq!(frame_len(len), wire.len() as u64, "payload of {len}");
    }
}

/// Each event's mark is at or after where its frame truly ends on the wire: exact for frames
/// that are the last bytes of the batch, later for the first one when the codec slips a pong
/// it owed the client in after it.
#[tokio::test]
async fn marks_never_come_before_the_end_of_their_frame() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::AsyncReadExt;
    let hub = hub(64);
    let mut sub = hub
        .subscribe(SubscribeRequest {
            selector: Selector::all(),
            cursor: None,
            client_id: Some(tidings_proto::Key::new("c").expect("key")),
        })
        .expect("subscribe");
    let place = sub.session_place().expect("a session");
    hub.publish(batch(3, 300)).await.expect("publish");
    let mut events = Vec::new();
    loop {
        events.clear();
        if let Step::Events = sub.next(&mut events).await {
            break;
        }
    }
    assert_eq!(events.len(), 3);
    let written = Arc::new(AtomicU64::new(0));
    let (server_io, mut peer) = tokio::io::duplex(1 << 20);
    let counted = crate::ack::Counted::new(server_io, Arc::clone(&written));
    let (mut tx, mut rx) = WebSocketStream::from_raw_socket(counted, Role::Server, None)
        .await
        .split();
    // The client pings with 125 bytes (masked with a zero key): the codec owes a pong.
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    peer.write_all(&ping).await.unwrap();
    assert!(matches!(rx.next().await, Some(Ok(Message::Ping(_)))));
    for e in &events {
        tx.feed(text(frame::event(e, Shape::Event).clone()))
            .await
            .unwrap();
    }
    tx.flush().await.unwrap();
    let mut acks = AckTracker::new(place);
    // Fewer marks than make it ask the kernel: the descriptor is never used.
    let conn = ConnSocket::new(-1, Arc::clone(&written));
    mark_flushed(&mut acks, &conn, &events, Shape::Event);
    // The wire, frame by frame: (opcode, where the frame ends).
    let mut wire = vec![0u8; written.load(Ordering::Acquire) as usize];
    peer.read_exact(&mut wire).await.unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let (head, len) = match wire[at + 1] & 0x7f {
            126 => (4, u16::from_be_bytes([wire[at + 2], wire[at + 3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(wire[at + 2..at + 10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        at += head + len;
        frames.push((wire[at - head - len] & 0x0f, at as u64));
    }
    let opcodes: Vec<u8> = frames.iter().map(|f| f.0).collect();
    assert_eq!(opcodes, [1, 0xa, 1, 1], "the pong follows the first frame");
    let ends: Vec<u64> = frames.iter().filter(|f| f.0 == 1).map(|f| f.1).collect();
    let marks = acks.marks();
    assert_eq!(marks.len(), 3);
    for ((mark, e), end) in marks.iter().zip(&events).zip(&ends) {
        assert_eq!(mark.1, e.seq());
        assert!(
            mark.0 >= *end,
            "mark {} before the frame's end {end}",
            mark.0
        );
    }
    assert_eq!(
        marks[0].0,
        ends[0] + 127,
        "counted as if the pong came first"
    );
    assert_eq!(marks[1].0, ends[1]);
    assert_eq!(marks[2].0, ends[2]);
}
