//! A hand-written HTTP/1.1 client: source-address binding, keep-alive POSTs and response
//! heads. Just enough for the load generator; nothing here allocates per event it reads.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Client sockets are spread over this many loopback source addresses (127.0.0.2, ...), each
/// of which has its own ~28k ephemeral ports.
pub(crate) const SOURCE_ADDRS: u32 = 16;

/// The source address for the `i`th client connection.
pub(crate) fn source_addr(i: u64) -> IpAddr {
    let k = (i % u64::from(SOURCE_ADDRS)) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + k))
}

/// Connects from `src` (any port) to `dst`.
pub(crate) async fn connect_from(src: IpAddr, dst: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    let stream = socket.connect(dst).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) chunked: bool,
    pub(crate) content_length: Option<usize>,
    /// `Connection: close`: the server will not take another request on this connection.
    pub(crate) close: bool,
}

/// Reads until the end of a response head; returns it and leaves any body bytes already read
/// in `buf` (the head itself removed).
pub(crate) async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Head> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            buf.drain(..end + 4);
            return Ok(head);
        }
        if buf.len() > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Head {
        status,
        chunked,
        content_length,
        close,
    })
}

/// The first index of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One keep-alive HTTP/1.1 connection used to POST.
#[derive(Debug)]
pub(crate) struct Poster {
    /// `None` after the server said `Connection: close`; reopened on the next request.
    stream: Option<TcpStream>,
    src: IpAddr,
    dst: SocketAddr,
    buf: Vec<u8>,
    req: Vec<u8>,
    host: String,
    extra_headers: String,
}

impl Poster {
    pub(crate) async fn connect(
        src: IpAddr,
        dst: SocketAddr,
        extra_headers: String,
    ) -> anyhow::Result<Self> {
        let stream = connect_from(src, dst)
            .await
            .with_context(|| format!("connect to {dst}"))?;
        Ok(Self {
            stream: Some(stream),
            src,
            dst,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(4096),
            host: dst.to_string(),
            extra_headers,
        })
    }

    /// POSTs `body` to `path`; returns the status and the response body.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.post_with(path, content_type, "", body).await
    }

    /// `post` with header lines of this request only (`Name: value\r\n`...).
    pub(crate) async fn post_with(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}{headers}\r\n",
                self.host,
                body.len(),
                self.extra_headers
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                self.buf.clear();
                self.stream.insert(connect_from(self.src, self.dst).await?)
            }
        };
        stream.write_all(&self.req).await?;
        let head = read_head(stream, &mut self.buf).await?;
        let body = if let Some(len) = head.content_length {
            while self.buf.len() < len {
                self.fill().await?;
            }
            self.buf.drain(..len).collect()
        } else if head.chunked {
            loop {
                if let Some(end) = find(&self.buf, b"0\r\n\r\n")
                    && (end == 0 || self.buf[..end].ends_with(b"\r\n"))
                {
                    break self.buf.drain(..end + 5).collect();
                }
                self.fill().await?;
            }
        } else {
            Vec::new()
        };
        if head.close {
            self.stream = None;
        }
        Ok((head.status, body))
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let Some(stream) = &mut self.stream else {
            bail!("no connection");
        };
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
