//! Subscribers: raw SSE and WebSocket client connections that parse frames minimally, pull the
//! send timestamp out of each event and record publish→deliver latency.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::http::{connect_from, find, read_head, source_addr};
use crate::target::Request;

const SHARDS: usize = 16;

/// Nanoseconds since the Unix epoch: the clock both publisher and subscribers read.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters and latency histograms shared by every subscriber of a run.
#[derive(Debug)]
pub(crate) struct Stats {
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Record latencies only while set (the measured window).
    pub(crate) measuring: AtomicBool,
    pub(crate) delivered: AtomicU64,
    /// Bytes read from the subscribers' sockets (SSE), framing included.
    pub(crate) bytes: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) other_events: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) closed: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Arc<Self> {
        let shards = (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect();
        Arc::new(Self {
            shards,
            measuring: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    fn shard(&self, i: u64) -> MutexGuard<'_, Histogram<u64>> {
        self.shards[(i as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one latency in microseconds for subscriber `index`.
    pub(crate) fn record(&self, index: u64, micros: u64) {
        self.shard(index).saturating_record(micros);
    }

    /// Clears the histograms (start of the measured window).
    pub(crate) fn reset_latency(&self) {
        for s in &self.shards {
            s.lock().unwrap_or_else(PoisonError::into_inner).reset();
        }
    }

    /// All shards merged.
    pub(crate) fn latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(PoisonError::into_inner);
            all.add(&*h).ok();
        }
        all
    }
}

/// Microseconds, 1 µs to 5 minutes, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 300_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// The wire protocol a subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    Sse,
    Ws,
}

/// Opens one subscription and reads it until the connection ends. `ready` is called once the
/// response head (or 101 upgrade) has arrived.
pub(crate) async fn run(
    index: u64,
    req: Arc<Request>,
    transport: Transport,
    stats: Arc<Stats>,
    ready: impl FnOnce(bool),
) {
    let res = subscribe(index, &req, transport, &stats, ready).await;
    if res.is_err() {
        stats.failed.fetch_add(1, Relaxed);
    } else {
        stats.closed.fetch_add(1, Relaxed);
    }
}

async fn subscribe(
    index: u64,
    req: &Request,
    transport: Transport,
    stats: &Stats,
    ready: impl FnOnce(bool),
) -> anyhow::Result<()> {
    let mut stream = match connect_from(source_addr(index), req.addr).await {
        Ok(s) => s,
        Err(e) => {
            ready(false);
            return Err(e.into());
        }
    };
    let client_id = if req.client_ids {
        format!("X-Client-Id: bench-{index}\r\n")
    } else {
        String::new()
    };
    let head_text = match transport {
        Transport::Sse => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{}{}{}\r\n",
            req.path, req.addr, req.extra_headers, req.last_event_id_header, client_id
        ),
        Transport::Ws => format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}{}{}\r\n",
            req.path, req.addr, req.extra_headers, req.last_event_id_header, client_id
        ),
    };
    let mut buf = Vec::with_capacity(2048);
    let head = async {
        stream.write_all(head_text.as_bytes()).await?;
        read_head(&mut stream, &mut buf).await
    }
    .await;
    let head = match head {
        Ok(h) if (transport == Transport::Sse && h.status == 200) || h.status == 101 => h,
        Ok(h) => {
            ready(false);
            stats.malformed.fetch_add(1, Relaxed);
            bail!("unexpected status {}", h.status);
        }
        Err(e) => {
            ready(false);
            return Err(e);
        }
    };
    stats.connected.fetch_add(1, Relaxed);
    ready(true);
    match transport {
        Transport::Sse => read_sse(index, &mut stream, buf, head.chunked, stats).await,
        Transport::Ws => read_ws(index, &mut stream, buf, stats).await,
    }
}

/// A response body as it arrives: chunked framing removed, the bytes not yet parsed kept.
#[derive(Debug)]
pub(crate) struct Body {
    dechunk: Option<Dechunk>,
    payload: Vec<u8>,
}

impl Body {
    pub(crate) fn new(chunked: bool) -> Body {
        Body {
            dechunk: chunked.then(Dechunk::default),
            payload: Vec::new(),
        }
    }

    /// Adds bytes read from the socket; returns the payload not consumed yet.
    pub(crate) fn push(&mut self, raw: &[u8]) -> anyhow::Result<&[u8]> {
        match &mut self.dechunk {
            Some(d) => d.feed(raw, &mut self.payload)?,
            None => self.payload.extend_from_slice(raw),
        }
        Ok(&self.payload)
    }

    /// Drops the first `n` payload bytes (parsed), and the buffer's spare room once it empties.
    pub(crate) fn consume(&mut self, n: usize) {
        self.payload.drain(..n);
        if self.payload.capacity() > 64 * 1024 && self.payload.len() < 1024 {
            self.payload.shrink_to(1024);
        }
    }
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug, Default)]
pub(crate) struct Dechunk {
    /// Bytes left in the current chunk's data.
    remaining: usize,
    /// Size digits of the next chunk header, parsed so far.
    size: usize,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// After the size: extensions up to `\n`.
    SizeLine,
    Data,
    /// The `\r\n` after a chunk's data.
    DataEnd,
}

impl Dechunk {
    /// Appends the payload in `input` to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Size => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b'0'..=b'9' => self.size = self.size * 16 + usize::from(b - b'0'),
                        b'a'..=b'f' => self.size = self.size * 16 + usize::from(b - b'a' + 10),
                        b'A'..=b'F' => self.size = self.size * 16 + usize::from(b - b'A' + 10),
                        b'\r' | b';' => self.state = ChunkState::SizeLine,
                        b'\n' => self.start_data(),
                        _ => bail!("bad chunk size byte {b:#x}"),
                    }
                }
                ChunkState::SizeLine => {
                    if input[i] == b'\n' {
                        self.start_data();
                    }
                    i += 1;
                }
                ChunkState::Data => {
                    let n = self.remaining.min(input.len() - i);
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    self.remaining -= n;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if input[i] == b'\n' {
                        self.state = ChunkState::Size;
                    }
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn start_data(&mut self) {
        self.remaining = self.size;
        self.size = 0;
        self.state = if self.remaining == 0 {
            // The last chunk: the stream is over; trailers are ignored.
            ChunkState::DataEnd
        } else {
            ChunkState::Data
        };
    }
}

async fn read_sse(
    index: u64,
    stream: &mut TcpStream,
    first: Vec<u8>,
    chunked: bool,
    stats: &Stats,
) -> anyhow::Result<()> {
    let mut body = Body::new(chunked);
    let mut raw = first;
    let mut read_buf = vec![0u8; 16 * 1024];
    loop {
        if !raw.is_empty() {
            let consumed = parse_sse(index, body.push(&raw)?, stats);
            raw.clear();
            body.consume(consumed);
        }
        let n = stream.read(&mut read_buf).await?;
        if n == 0 {
            return Ok(());
        }
        stats.bytes.fetch_add(n as u64, Relaxed);
        raw.extend_from_slice(&read_buf[..n]);
    }
}

/// Handles every complete event in `payload`; returns how many bytes were consumed.
fn parse_sse(index: u64, payload: &[u8], stats: &Stats) -> usize {
    let now = now_nanos();
    let mut start = 0;
    let mut shard = None;
    let mut delivered = 0u64;
    while let Some(rel) = find(&payload[start..], b"\n\n") {
        let block = &payload[start..start + rel];
        start += rel + 2;
        let is_tick = find(block, b"event:").is_none() || find(block, b"event: tick").is_some();
        if let Some(d) = find(block, b"data:") {
            match parse_t(&block[d..]) {
                Some(t) => {
                    delivered += 1;
                    if stats.measuring.load(Relaxed) {
                        let h = shard.get_or_insert_with(|| stats.shard(index));
                        h.saturating_record(now.saturating_sub(t) / 1000);
                    }
                }
                None if is_tick => {
                    stats.malformed.fetch_add(1, Relaxed);
                }
                None => {
                    stats.other_events.fetch_add(1, Relaxed);
                }
            }
        } else if !is_tick {
            stats.other_events.fetch_add(1, Relaxed);
        }
    }
    if delivered > 0 {
        stats.delivered.fetch_add(delivered, Relaxed);
    }
    start
}

/// The number after the first `"t":` in `s`.
pub(crate) fn parse_t(s: &[u8]) -> Option<u64> {
    let at = find(s, b"\"t\":")? + 4;
    let digits = s[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut v = 0u64;
    let mut any = false;
    for &b in digits {
        v = v.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        any = true;
    }
    any.then_some(v)
}

async fn read_ws(
    index: u64,
    stream: &mut TcpStream,
    first: Vec<u8>,
    stats: &Stats,
) -> anyhow::Result<()> {
    let mut buf = first;
    let mut read_buf = vec![0u8; 16 * 1024];
    loop {
        let now = now_nanos();
        let mut pos = 0;
        let mut delivered = 0u64;
        let mut pong = false;
        {
            let mut shard = None;
            while let Some((opcode, payload, next)) = ws_frame(&buf[pos..]) {
                let frame = &buf[pos + payload.0..pos + payload.1];
                pos += next;
                match opcode {
                    0..=2 => match parse_t(frame) {
                        Some(t) => {
                            delivered += 1;
                            if stats.measuring.load(Relaxed) {
                                let h = shard.get_or_insert_with(|| stats.shard(index));
                                h.saturating_record(now.saturating_sub(t) / 1000);
                            }
                        }
                        None if find(frame, b"\"type\":\"tick\"").is_some() => {
                            stats.malformed.fetch_add(1, Relaxed);
                        }
                        None => {
                            stats.other_events.fetch_add(1, Relaxed);
                        }
                    },
                    8 => return Ok(()),
                    9 => pong = true,
                    _ => {}
                }
            }
        }
        if delivered > 0 {
            stats.delivered.fetch_add(delivered, Relaxed);
        }
        buf.drain(..pos);
        if pong {
            // An empty, masked pong (mask key 0).
            stream.write_all(&[0x8A, 0x80, 0, 0, 0, 0]).await?;
        }
        let n = stream.read(&mut read_buf).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&read_buf[..n]);
    }
}

/// One complete unmasked server frame at the start of `b`: (opcode, payload range, frame length).
fn ws_frame(b: &[u8]) -> Option<(u8, (usize, usize), usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut off) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return None;
            }
            (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return None;
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(a) as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    if masked {
        off += 4;
    }
    (b.len() >= off + len).then_some((opcode, (off, off + len), off + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_splits() {
        let wire = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            d.feed(&wire[..split], &mut out).unwrap();
            d.feed(&wire[split..], &mut out).unwrap();
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    #[test]
    fn parses_events_and_timestamps() {
        let stats = Stats::new();
        let p = b": hi\n\nid: 1\nevent: tick\ndata: {\"t\":5,\"p\":\"x\"}\n\nid: 2\nevent: reconnect-required\ndata: {}\n\nid: 3\ndata: {\"t\":7";
        let used = parse_sse(0, p, &stats);
        assert_eq!(stats.delivered.load(Relaxed), 1);
        assert_eq!(stats.other_events.load(Relaxed), 1);
        assert_eq!(stats.malformed.load(Relaxed), 0);
        assert_eq!(&p[used..], b"id: 3\ndata: {\"t\":7");
    }

    #[test]
    fn reads_ws_frames() {
        let mut f = vec![0x81, 9];
        f.extend_from_slice(b"{\"t\":42}x");
        let (op, (a, b), n) = ws_frame(&f).unwrap();
        assert_eq!((op, n), (1, 11));
        assert_eq!(parse_t(&f[a..b]), Some(42));
        assert!(ws_frame(&f[..5]).is_none());
    }
}
