//! The one place Tidings calls the OS directly, and its only unsafe code (one `getsockopt`
//! and one `setsockopt` call):
//! - what the peer of a TCP connection has acknowledged: Linux `TCP_INFO`'s
//!   `tcpi_bytes_acked` (the bytes of this connection the peer's TCP stack has acknowledged,
//!   since the handshake);
//! - deferring `accept` until a connection's first bytes (Linux `TCP_DEFER_ACCEPT`), which
//!   socket2 does not offer;
//! - accepting straight into a non-blocking socket (`accept4`, through socket2).
//!
//! Why the first matters: bytes a `write` handed to the kernel may still be in the send
//! queue, or on the wire, when the connection dies. A session's place must never claim them;
//! what the peer acknowledged did reach its host. Why the second: a connection accepted with
//! its request already waiting is served by one read, instead of a read that finds nothing,
//! a wait in `epoll` and a wake-up (measured in docs/performance-log.md).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// Bytes of the connection on `socket` that the peer has acknowledged.
///
/// `Unsupported` on systems other than Linux, and on a kernel too old to report it (before
/// 4.1).
pub fn bytes_acked(socket: &impl AsFd) -> io::Result<u64> {
    imp::bytes_acked(socket.as_fd().as_raw_fd())
}

/// `bytes_acked` for a descriptor known only by its number, for a caller that cannot borrow
/// the socket (it sits inside a stack of wrappers it does not own, such as hyper's upgraded
/// connection). Asking never touches memory other than its own buffer, whatever `fd` is;
/// but the answer is only about the right connection while the caller holds that socket
/// open, so the number cannot have been reused: that is the caller's to make sure.
pub fn bytes_acked_fd(fd: RawFd) -> io::Result<u64> {
    imp::bytes_acked(fd)
}

/// Asks the kernel to hand a connection on the listening `socket` to `accept` only once its
/// first bytes have arrived (Linux `TCP_DEFER_ACCEPT`), for up to `seconds`; after that the
/// connection is handed over anyway. An accepted connection then has its request waiting,
/// so serving it starts with a read that succeeds instead of one that finds nothing and a
/// wait to be woken.
///
/// `Unsupported` on systems other than Linux.
pub fn defer_accept(socket: &impl AsFd, seconds: u32) -> io::Result<()> {
    imp::defer_accept(socket.as_fd().as_raw_fd(), seconds)
}

/// Waits on the blocking `listener` for a connection and returns it non-blocking, ready to
/// register with an event loop: on Linux one `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` where
/// `accept` and `set_nonblocking` are two system calls.
pub fn accept_nonblocking(
    listener: &std::net::TcpListener,
) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    imp::accept_nonblocking(listener)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem::{MaybeUninit, offset_of, size_of};
    use std::os::fd::RawFd;

    pub(super) fn bytes_acked(fd: RawFd) -> io::Result<u64> {
        let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `fd` is any number (a descriptor that is not an open TCP socket fails with
        // EBADF, ENOTSOCK or EOPNOTSUPP); `info` is a zeroed buffer of
        // `len` bytes that the kernel writes at most `len` bytes into, and `len` is a valid
        // out-parameter for the length it wrote.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if (len as usize) < offset_of!(libc::tcp_info, tcpi_bytes_acked) + size_of::<u64>() {
            return Err(io::ErrorKind::Unsupported.into());
        }
        // SAFETY: every byte of `info` is initialised: zeroed at first, partly overwritten by
        // the kernel; `tcp_info` is plain integers, for which any bytes are a valid value.
        #[allow(unsafe_code)]
        let info = unsafe { info.assume_init() };
        Ok(info.tcpi_bytes_acked)
    }

    pub(super) fn accept_nonblocking(
        listener: &std::net::TcpListener,
    ) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
        let (socket, peer) =
            socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
        let peer = peer
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a connection that is not TCP/IP"))?;
        Ok((socket.into(), peer))
    }

    pub(super) fn defer_accept(fd: RawFd, seconds: u32) -> io::Result<()> {
        let value = libc::c_int::try_from(seconds).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is any number (one that is not a TCP socket fails with EBADF, ENOTSOCK
        // or ENOPROTOOPT); the kernel reads `size_of::<c_int>()` bytes from `value`, which
        // is a live `c_int`.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::RawFd;

    pub(super) fn bytes_acked(_fd: RawFd) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn accept_nonblocking(
        listener: &std::net::TcpListener,
    ) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
        let (stream, peer) = listener.accept()?;
        stream.set_nonblocking(true)?;
        Ok((stream, peer))
    }

    pub(super) fn defer_accept(_fd: RawFd, _seconds: u32) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    /// A connection that has sent nothing is not handed to `accept`; its first byte hands it
    /// over.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_deferred_listener_hands_over_a_connection_with_its_first_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        defer_accept(&listener, 5).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let silent = listener.accept().map(|_| ());
        assert_eq!(
            silent.map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock),
            "a silent connection was handed over"
        );
        client.write_all(b"G").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut server, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "never handed over");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        server.set_nonblocking(false).unwrap();
        let mut first = [0u8; 1];
        server.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"G");
    }

    /// The accepted socket is non-blocking and its peer is the client's address.
    #[test]
    fn an_accepted_socket_is_non_blocking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, peer) = accept_nonblocking(&listener).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let mut buf = [0u8; 1];
        assert_eq!(
            server.read(&mut buf).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
    }

    /// Linux gives an accepted socket the listener's `TCP_NODELAY`, so the hub sets it once,
    /// on the listener.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_accepted_socket_inherits_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&listener)
            .set_tcp_nodelay(true)
            .unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = accept_nonblocking(&listener).unwrap();
        assert!(server.nodelay().unwrap());
    }

    /// What the peer has read is acknowledged (loopback acknowledges at once); the count only
    /// grows, and nothing unsent is counted.
    #[test]
    fn counts_what_the_peer_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(bytes_acked(&server).unwrap(), 0);
        assert_eq!(bytes_acked_fd(server.as_raw_fd()).unwrap(), 0);
        server.write_all(&[7u8; 1000]).unwrap();
        let mut buf = [0u8; 1000];
        client.read_exact(&mut buf).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let acked = bytes_acked(&server).unwrap();
            assert!(acked <= 1000, "{acked}");
            if acked == 1000 {
                assert_eq!(bytes_acked_fd(server.as_raw_fd()).unwrap(), 1000);
                break;
            }
            assert!(Instant::now() < deadline, "never acknowledged: {acked}");
            std::thread::yield_now();
        }
    }
}
