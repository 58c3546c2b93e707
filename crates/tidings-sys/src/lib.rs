//! What the peer of a TCP connection has acknowledged, from the kernel: Linux `TCP_INFO`'s
//! `tcpi_bytes_acked` (the bytes of this connection the peer's TCP stack has acknowledged,
//! since the handshake). The only unsafe code in Tidings, in one `getsockopt` call.
//!
//! Why it matters: bytes a `write` handed to the kernel may still be in the send queue, or on
//! the wire, when the connection dies. A session's place must never claim them; what the
//! peer acknowledged did reach its host.

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
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::fd::RawFd;

    pub(super) fn bytes_acked(_fd: RawFd) -> io::Result<u64> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

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
