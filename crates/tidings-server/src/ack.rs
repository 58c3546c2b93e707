//! `AckTracker`: moves a client-id session's place only as far as the client's TCP stack has
//! acknowledged. A stream connection (lean SSE/NDJSON, or WebSocket) records, for each chunk it wrote, the byte offset where
//! the chunk ends and the seq of the last event in it; when the kernel reports (Linux
//! `TCP_INFO`, `tidings_sys::bytes_acked`) that the peer acknowledged bytes up to an offset,
//! every event ending before it is confirmed to the session. Bytes merely handed to the
//! kernel confirm nothing.
//!
//! The kernel is asked when marks pile up, on every keepalive, and once more when the
//! connection ends (before its socket is closed, so a reset or a dead path reports exactly
//! what got through). Marks are bounded: past `MAX_MARKS` the older of two neighbours is
//! dropped, which only delays a confirmation (never claims more).
//!
//! What remains (documented in the README): bytes the client's kernel acknowledged but the
//! application never read (it crashed with data in its receive buffer) count as delivered;
//! a client that sends `Last-Event-ID` is exact.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tidings_core::SessionPlace;

/// Marks kept before asking the kernel.
const ASK_AT: usize = 32;
/// Most marks kept.
const MAX_MARKS: usize = 256;

/// Where the kernel's count of acknowledged bytes comes from: a socket the caller can borrow,
/// or a served connection's `io::ConnSocket`.
pub(crate) trait AckSource {
    /// Bytes of the connection the peer has acknowledged.
    fn bytes_acked(&self) -> io::Result<u64>;
}

impl<T: AsFd> AckSource for T {
    fn bytes_acked(&self) -> io::Result<u64> {
        tidings_sys::bytes_acked(self)
    }
}

/// A connection served by hyper, as its request handlers see it (in the request's
/// extensions, put there by the accept loop for upgrade requests): its socket's descriptor
/// and the count of bytes written to that socket so far (by `Counted`, below every wrapper
/// that could buffer). A WebSocket connection uses it to confirm its session's place.
///
/// The descriptor is only asked about while the socket is held open by whoever asks: the
/// WebSocket task owns hyper's upgraded connection, which owns the socket, for as long as
/// it runs, so the number cannot name another connection then.
#[derive(Debug, Clone)]
pub(crate) struct ConnSocket {
    fd: RawFd,
    written: Arc<AtomicU64>,
}

impl ConnSocket {
    pub(crate) fn new(fd: RawFd, written: Arc<AtomicU64>) -> ConnSocket {
        ConnSocket { fd, written }
    }

    /// Bytes handed to the kernel on this connection so far (the response heads included).
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

impl AckSource for ConnSocket {
    fn bytes_acked(&self) -> io::Result<u64> {
        tidings_sys::bytes_acked_fd(self.fd)
    }
}

/// Counts the bytes its inner stream accepted for writing, into a count `ConnSocket` reads.
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    written: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, written: Arc<AtomicU64>) -> Self {
        Counted { inner, written }
    }

    fn count(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = result {
            self.written.fetch_add(n as u64, Ordering::Release);
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One connection's unconfirmed writes.
#[derive(Debug)]
pub(crate) struct AckTracker {
    place: SessionPlace,
    /// Bytes written on the connection so far (the response head included).
    written: u64,
    /// (offset where a chunk ends, seq of its last event), oldest first.
    marks: VecDeque<(u64, u64)>,
    /// The kernel cannot say (not Linux): confirm nothing, resume repeats instead.
    unsupported: bool,
}

impl AckTracker {
    pub(crate) fn new(place: SessionPlace) -> AckTracker {
        AckTracker {
            place,
            written: 0,
            marks: VecDeque::new(),
            unsupported: false,
        }
    }

    /// `len` more bytes were written; they carried events up to `last_seq`, if any.
    pub(crate) fn wrote(&mut self, len: usize, last_seq: Option<u64>, socket: &impl AckSource) {
        self.written += len as u64;
        let Some(seq) = last_seq else { return };
        self.mark(self.written, seq, socket);
    }

    /// The event `seq` (and every earlier one) ends at byte `end` of the connection, counted
    /// from its first byte. `end` must not be less than that of an earlier mark.
    pub(crate) fn mark(&mut self, end: u64, seq: u64, socket: &impl AckSource) {
        if self.unsupported {
            return;
        }
        self.marks.push_back((end, seq));
        if self.marks.len() >= ASK_AT {
            self.check(socket);
        }
        if self.marks.len() > MAX_MARKS {
            self.thin();
        }
    }

    /// Drops every other older mark: their events are confirmed with the next one kept.
    fn thin(&mut self) {
        let last = self.marks.len().saturating_sub(1);
        let mut i = 0;
        self.marks.retain(|_| {
            let keep = i % 2 == 1 || i == last;
            i += 1;
            keep
        });
    }

    /// Nothing is waiting to be confirmed (and the kernel can be asked): the tracker can be
    /// dropped until the next write, and made again.
    pub(crate) fn is_idle(&self) -> bool {
        self.marks.is_empty() && !self.unsupported
    }

    /// The marks waiting, oldest first: (where a frame ends, its event's seq).
    #[cfg(test)]
    pub(crate) fn marks(&self) -> Vec<(u64, u64)> {
        self.marks.iter().copied().collect()
    }

    /// Asks the kernel what the peer acknowledged and confirms what that covers.
    pub(crate) fn check(&mut self, socket: &impl AckSource) {
        if self.marks.is_empty() || self.unsupported {
            return;
        }
        let acked = match socket.bytes_acked() {
            Ok(n) => n,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::Unsupported {
                    self.unsupported = true;
                    self.marks.clear();
                }
                tracing::debug!(message = "Could not read what the peer acknowledged.", error = %e);
                return;
            }
        };
        self.confirm_through(acked);
    }

    /// Confirms every mark at or below `acked` bytes.
    fn confirm_through(&mut self, acked: u64) {
        let mut confirmed = None;
        while let Some(&(end, seq)) = self.marks.front() {
            if end > acked {
                break;
            }
            confirmed = Some(seq);
            self.marks.pop_front();
        }
        if let Some(seq) = confirmed {
            self.place.confirm(seq);
        }
        if self.marks.is_empty() && self.marks.capacity() > 0 {
            // An idle connection keeps no buffer from its last burst.
            self.marks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use tidings_core::{Hub, Limits, MemoryStore, Retention, SubscribeRequest};
    use tidings_proto::{Epoch, Key, Selector};

    use super::*;

    fn place() -> (Hub, tidings_core::Subscription, SessionPlace) {
        let store = Arc::new(MemoryStore::new(Epoch(1), Retention::default()));
        let hub = Hub::new(store, Limits::default());
        let sub = hub
            .subscribe(SubscribeRequest {
                selector: Selector::all(),
                cursor: None,
                client_id: Some(Key::new("c").unwrap()),
            })
            .unwrap();
        let place = sub.session_place().unwrap();
        (hub, sub, place)
    }

    #[test]
    fn confirms_only_chunks_that_end_within_what_was_acknowledged() {
        let (_hub, _sub, p) = place();
        let mut t = AckTracker::new(p.clone());
        t.written = 100; // the head
        t.marks.extend([(150, 3), (200, 5), (260, 9)]);
        t.confirm_through(199);
        assert_eq!(p.get(), 3);
        t.confirm_through(260);
        assert_eq!(p.get(), 9);
        assert!(t.marks.is_empty());
    }

    #[test]
    fn a_real_socket_confirms_what_the_peer_read() {
        let (_hub, _sub, p) = place();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut t = AckTracker::new(p.clone());
        server.write_all(&[1; 10]).unwrap();
        t.wrote(10, Some(4), &server);
        let mut buf = [0; 10];
        client.read_exact(&mut buf).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while p.get() < 4 {
            t.check(&server);
            assert!(std::time::Instant::now() < deadline, "never confirmed");
            std::thread::yield_now();
        }
    }

    #[test]
    fn marks_stay_bounded_and_never_claim_more() {
        let (_hub, _sub, p) = place();
        let mut t = AckTracker::new(p.clone());
        for seq in 1..=10_000u64 {
            t.written += 10;
            t.marks.push_back((t.written, seq));
            if t.marks.len() > MAX_MARKS {
                t.thin();
            }
        }
        assert!(t.marks.len() <= MAX_MARKS + 1);
        t.confirm_through(5_000 * 10);
        assert!(p.get() <= 5_000, "{}", p.get());
    }
}
