//! The second load generator: subscribers that are `tidings-client` subscriptions (a real
//! user's client: reqwest, the WHATWG SSE decoder or tungstenite, one `Item` per event)
//! instead of the raw-socket readers of `sub.rs`; and `client-parse`, the client's own
//! per-event cost: how many events one subscription parses per second from a source that is
//! never the bottleneck.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tidings_client::{Client, Framing, Item, Since, SubscribeOptions};

use crate::sub::{Stats, Transport, now_nanos, parse_t};

/// A client for the target's subscribe address, carrying the bench token when it has one.
pub(crate) fn client(url: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let mut b = Client::builder(url);
    if let Some(t) = token {
        b = b.token(t);
    }
    Ok(b.build()?)
}

/// One subscription on `topic`, read until the task is aborted. `ready` is called with the
/// first connection's outcome.
pub(crate) async fn run(
    index: u64,
    client: Client,
    topic: String,
    transport: Transport,
    stats: Arc<Stats>,
    ready: impl FnOnce(bool),
) {
    let framing = match transport {
        Transport::Sse => Framing::Sse,
        Transport::Ws => Framing::WebSocket,
    };
    let stream = client.subscribe_with(SubscribeOptions::new([topic]).framing(framing));
    let mut stream = std::pin::pin!(stream);
    let mut ready = Some(ready);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Item::Connected(_)) => {
                stats.connected.fetch_add(1, Relaxed);
                if let Some(r) = ready.take() {
                    r(true);
                }
            }
            Ok(Item::Event(e)) => match parse_t(e.data.as_bytes()) {
                Some(t) => {
                    stats.delivered.fetch_add(1, Relaxed);
                    if stats.measuring.load(Relaxed) {
                        stats.record(index, now_nanos().saturating_sub(t) / 1000);
                    }
                }
                None => {
                    stats.other_events.fetch_add(1, Relaxed);
                }
            },
            Ok(Item::Disconnected(_)) => {
                if let Some(r) = ready.take() {
                    r(false);
                    stats.failed.fetch_add(1, Relaxed);
                } else {
                    stats.closed.fetch_add(1, Relaxed);
                }
            }
            Ok(_) => {}
            Err(_) => {
                stats.failed.fetch_add(1, Relaxed);
                if let Some(r) = ready.take() {
                    r(false);
                }
                return;
            }
        }
    }
}

/// What `client-parse` measured for one framing.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ParseResult {
    pub(crate) framing: String,
    pub(crate) events: u64,
    pub(crate) payload_bytes: usize,
    pub(crate) seconds: f64,
    pub(crate) events_per_s: f64,
    pub(crate) ns_per_event: f64,
    /// CPU seconds of the whole process (client and byte source) per event, in ns.
    pub(crate) process_cpu_ns_per_event: f64,
}

/// One subscription reads `events` events of about `payload_bytes` of data from a loopback
/// server that writes a prepared stream as fast as the socket takes it (so the source is
/// never the bottleneck), on a single-threaded runtime: the client's own cost per event.
pub(crate) fn parse_cost(
    framing: Framing,
    events: u64,
    payload_bytes: usize,
) -> anyhow::Result<ParseResult> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let block = prepared_block(framing, payload_bytes);
    let per_block = 256u64;
    let blocks = events.div_ceil(per_block);
    let source = std::thread::spawn(move || -> anyhow::Result<()> {
        let (mut socket, _) = listener.accept()?;
        // The request head: read until the blank line, then answer.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if std::io::Read::read(&mut socket, &mut byte)? == 0 {
                anyhow::bail!("the client closed before its request ended");
            }
            head.push(byte[0]);
        }
        let content_type = if framing == Framing::Sse {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        };
        write!(
            socket,
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
        )?;
        for _ in 0..blocks {
            // The client stops reading after `events`; a reset then is expected.
            if socket.write_all(&block).is_err() {
                break;
            }
        }
        Ok(())
    });
    let cpu0 = crate::procstat::self_cpu_seconds();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let got = rt.block_on(async {
        let client = Client::builder(&format!("http://{addr}"))
            .keepalive(Duration::from_secs(60), 3)
            .build()?;
        let options = SubscribeOptions::new(["bench"])
            .since(Since::Earliest)
            .framing(framing);
        let mut stream = std::pin::pin!(client.subscribe_with(options));
        let mut got = 0u64;
        while got < events {
            match stream.next().await {
                Some(Ok(Item::Event(e))) => {
                    got += 1;
                    std::hint::black_box(&e);
                }
                Some(Ok(Item::Disconnected(d))) => {
                    anyhow::bail!("the stream ended after {got} events: {}", d.cause)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("{e}"),
                None => anyhow::bail!("the stream ended after {got} events"),
            }
        }
        Ok(got)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::procstat::self_cpu_seconds() - cpu0;
    drop(rt);
    source
        .join()
        .map_err(|_| anyhow::anyhow!("the byte source panicked"))??;
    Ok(ParseResult {
        framing: match framing {
            Framing::Ndjson => "ndjson",
            _ => "sse",
        }
        .to_owned(),
        events: got,
        payload_bytes,
        seconds,
        events_per_s: got as f64 / seconds,
        ns_per_event: seconds * 1e9 / got as f64,
        process_cpu_ns_per_event: cpu * 1e9 / got as f64,
    })
}

/// 256 events as the hub frames them (`id`, `event`, `data` for SSE; the event shape for
/// JSON lines), ids increasing within the block.
fn prepared_block(framing: Framing, payload_bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(payload_bytes);
    let mut out = Vec::new();
    for i in 1..=256u64 {
        let data = format!(
            "{{\"t\":{},\"pad\":\"{pad}\"}}",
            1_700_000_000_000_000_000u64 + i
        );
        let line = match framing {
            Framing::Ndjson => format!(
                "{{\"id\":\"2e832c66-{i}\",\"topic\":\"bench\",\"type\":\"tick\",\"data\":{data}}}\n"
            ),
            _ => format!("id: 2e832c66-{i}\nevent: tick\ndata: {data}\n\n"),
        };
        out.extend_from_slice(line.as_bytes());
    }
    out
}
