//! The floor: a bare tokio fan-out server. For each published event it encodes the SSE frame
//! once and every connection writes the frames pending for it in one chunk per write. No ids
//! beyond a counter, no auth, no history: the practical lower bound for CPU per delivery.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

type Frame = Arc<Vec<u8>>;

#[derive(Debug, Default)]
struct Hub {
    topics: Mutex<HashMap<String, broadcast::Sender<Frame>>>,
    seq: AtomicU64,
}

impl Hub {
    fn sender(&self, topic: &str) -> broadcast::Sender<Frame> {
        let mut t = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        t.entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(4096).0)
            .clone()
    }
}

/// Runs the floor server on `listen` until killed; prints `floor listening addr=...` on stdout.
pub(crate) fn serve(listen: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // The same accept queue as Tidings' default (`TcpListener::bind` asks for 128), so a
        // herd of connects measures the server, not the kernel's SYN retransmission.
        let addr: std::net::SocketAddr = listen.parse().context("listen address")?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr).context("bind")?;
        let listener: TcpListener = socket.listen(4096).context("listen")?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout();
        writeln!(out, "floor listening addr={addr}")?;
        out.flush()?;
        let hub = Arc::new(Hub::default());
        loop {
            let (stream, _) = listener.accept().await?;
            let hub = hub.clone();
            tokio::spawn(async move {
                connection(stream, hub).await.ok();
            });
        }
    })
}

fn topic_of(path: &str) -> &str {
    path.split_once("topic=").map_or("bench", |(_, rest)| {
        rest.split('&').next().unwrap_or("bench")
    })
}

async fn connection(mut stream: TcpStream, hub: Arc<Hub>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head.
        let end = loop {
            if let Some(end) = crate::http::find(&buf, b"\r\n\r\n") {
                break end;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default();
        let path = words.next().unwrap_or_default();
        if method == "GET" {
            drop(buf);
            return stream_events(stream, hub.sender(topic_of(path)).subscribe()).await;
        }
        let len: usize = head
            .split("\r\n")
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let id = hub.seq.fetch_add(1, Relaxed) + 1;
        let mut frame = Vec::with_capacity(len + 40);
        frame.extend_from_slice(format!("id: {id}\nevent: tick\ndata: ").as_bytes());
        frame.extend_from_slice(&buf[..len]);
        frame.extend_from_slice(b"\n\n");
        buf.drain(..len);
        hub.sender(topic_of(path)).send(Arc::new(frame)).ok();
        let body = format!("{{\"ids\":[\"{id}\"]}}");
        stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await?;
    }
}

async fn stream_events(
    mut stream: TcpStream,
    mut rx: broadcast::Receiver<Frame>,
) -> anyhow::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await?;
    let mut out = Vec::new();
    loop {
        let first = match rx.recv().await {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        out.clear();
        out.extend_from_slice(b"00000000\r\n");
        out.extend_from_slice(&first);
        while let Ok(f) = rx.try_recv() {
            out.extend_from_slice(&f);
        }
        let len = out.len() - 10;
        let size = format!("{len:08x}");
        out[..8].copy_from_slice(size.as_bytes());
        out.extend_from_slice(b"\r\n");
        stream.write_all(&out).await?;
        if out.capacity() > 64 * 1024 {
            out = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_from_path() {
        assert_eq!(super::topic_of("/events?topic=a-1&x=2"), "a-1");
        assert_eq!(super::topic_of("/events"), "bench");
    }
}
