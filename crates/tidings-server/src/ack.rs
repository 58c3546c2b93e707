//! `AckTracker`: moves a client-id session's place only as far as the client's TCP stack has
//! acknowledged. A stream connection records, for each chunk it wrote, the byte offset where
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
use std::os::fd::AsFd;

use tidings_core::SessionPlace;

/// Marks kept before asking the kernel.
const ASK_AT: usize = 32;
/// Most marks kept.
const MAX_MARKS: usize = 256;

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
    pub(crate) fn wrote(&mut self, len: usize, last_seq: Option<u64>, socket: &impl AsFd) {
        self.written += len as u64;
        let Some(seq) = last_seq else { return };
        if self.unsupported {
            return;
        }
        self.marks.push_back((self.written, seq));
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

    /// Asks the kernel what the peer acknowledged and confirms what that covers.
    pub(crate) fn check(&mut self, socket: &impl AsFd) {
        if self.marks.is_empty() || self.unsupported {
            return;
        }
        let acked = match tidings_sys::bytes_acked(socket) {
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
