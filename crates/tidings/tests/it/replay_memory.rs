//! Replay memory: 2,000 clients resuming 1,000 events of 16 KiB each at once, most of them
//! stalled or slow, keep the server's resident memory under a documented ceiling, and the
//! clients that read do receive everything.
//!
//! The ceiling: the replay budget (`Limits::replay_memory_bytes`, 32 MiB) counts the events
//! replay holds; their cached wire encodings and the piece being written add about as much
//! again each, so replay costs at most about 3 × 32 MiB. On top come the process itself, the
//! store's page cache (the 16 MiB file) and 2,000 idle connections (a few KiB each). 256 MiB
//! leaves room for the allocator. Without the bounds each stalled subscriber held its whole
//! replay (1,000 events, read, encoded and joined: about 48 MiB), so a few dozen clients
//! passed the ceiling.
//!
//! Its own test target (see Cargo.toml): it loads the machine, so it must not run alongside
//! the timing-sensitive tests of `it`. It shares their harness, `support.rs`.

#[path = "support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_proto::sse::{Decoder, SseItem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::Server;

const CLIENTS: usize = 2_000;
const EVENTS: usize = 1_000;
const DATA_BYTES: usize = 16 << 10;
/// Clients that read everything (checked), and clients that read slowly; the rest stall.
const READERS: usize = 4;
const SLOW: usize = 100;
const CEILING_BYTES: u64 = 256 << 20;
/// How long the readers may take to receive everything.
const DEADLINE: Duration = Duration::from_secs(50);

const REQUEST: &[u8] =
    b"GET /events?topic=big/* HTTP/1.0\r\nHost: 127.0.0.1\r\nLast-Event-ID: earliest\r\n\r\n";

/// The resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A connection with a small receive buffer, so a stalled client parks little data in the
/// kernel, that has sent the resume request.
async fn resume(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 << 10).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.write_all(REQUEST).await.expect("send the request");
    stream
}

/// Reads the whole replay; returns how many events of the full size arrived, in id order.
async fn read_everything(mut stream: TcpStream) -> usize {
    let mut decoder = Decoder::new(1 << 20);
    let mut buf = vec![0u8; 64 << 10];
    let mut head = Vec::new();
    let mut head_done = false;
    let mut items = Vec::new();
    let mut seen = 0usize;
    let mut last_seq = 0u64;
    while seen < EVENTS {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the stream ended after {seen} events");
        if head_done {
            decoder.feed(&buf[..n], &mut items).expect("SSE line bound");
        } else {
            head.extend_from_slice(&buf[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                assert!(head.len() < 8 << 10, "no response head");
                continue;
            };
            let status = String::from_utf8_lossy(&head[..end]).into_owned();
            assert!(status.starts_with("HTTP/1.0 200"), "answered {status:?}");
            decoder
                .feed(&head[end + 4..], &mut items)
                .expect("SSE line bound");
            head_done = true;
        }
        for item in items.drain(..) {
            if let SseItem::Event(e) = item {
                assert_eq!(e.data.len(), DATA_BYTES + 2, "event data arrives whole");
                let seq: u64 = e
                    .last_event_id
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("an event id");
                assert!(seq > last_seq, "events in id order");
                last_seq = seq;
                seen += 1;
            }
        }
    }
    seen
}

/// Reads 4 KiB every 50 ms until told to stop (or the server closes the stream).
async fn read_slowly(mut stream: TcpStream, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 4 << 10];
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_resuming_large_events_keep_rss_under_a_ceiling() {
    // All 2,000 clients come from 127.0.0.1: lift the per-address limit (1,024 by default).
    let mut server = Server::start(&["--write-timeout", "3s", "--max-connections-per-ip", "0"]);
    let payload = Value::String("x".repeat(DATA_BYTES));
    for _ in 0..EVENTS / 50 {
        let batch: Vec<Value> = (0..50)
            .map(|_| json!({"topic": "big/1", "type": "blob", "data": payload}))
            .collect();
        server.publish(&Value::Array(batch)).await;
    }
    // Everyone resumes at once after a restart.
    server.restart();
    let pid = server.pid();
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(now) = rss(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    let mut stalled = Vec::new();
    let mut slow = Vec::new();
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let stream = resume(addr).await;
        // Readers and slow readers are spread among the stalled clients, not first in line.
        if i % (CLIENTS / READERS) == CLIENTS / READERS / 2 {
            readers.push(tokio::spawn(read_everything(stream)));
        } else if i % (CLIENTS / SLOW) == 1 {
            slow.push(tokio::spawn(read_slowly(stream, stop.clone())));
        } else {
            stalled.push(stream);
        }
    }
    for reader in readers {
        let got = tokio::time::timeout_at((started + DEADLINE).into(), reader)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "a reader did not receive all {EVENTS} events within {DEADLINE:?}; peak RSS {} MiB",
                    peak.load(Ordering::Relaxed) >> 20
                )
            })
            .expect("reader task");
        assert_eq!(got, EVENTS);
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    for s in slow {
        s.await.expect("slow reader");
    }
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "replay_memory: {CLIENTS} clients, peak server RSS {} MiB (ceiling {} MiB), readers done in {took:?}",
        peak >> 20,
        CEILING_BYTES >> 20
    );
    assert!(peak > 0, "the server's RSS was read");
    assert!(
        peak < CEILING_BYTES,
        "peak RSS {} MiB is over the {} MiB ceiling",
        peak >> 20,
        CEILING_BYTES >> 20
    );
    drop(stalled);
}
