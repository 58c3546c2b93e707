//! The accept loop. One connection limit is shared by every listener of the process and is
//! derived from the file descriptor limit (`ConnectionLimit::fit`). A connection over the
//! limit is still accepted and answered (`refusal::refuse`: 503 `too_many_connections`, or
//! in-band for SSE), from a small pool of extra slots the limit leaves room for. Each served
//! connection goes to the lean path or hyper's HTTP/1 machinery with a header-read timeout.
//! Each listener accepts on an OS thread of its own, blocked in `accept(2)` and so woken by
//! the kernel, never queued behind the runtime's busy workers (`Acceptor`).
//! Accept errors back off exponentially and are logged at most every few seconds. At
//! shutdown the listener keeps accepting while it drains, answering new connections
//! `shutting_down`, for up to the grace period.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::ack::{ConnSocket, Counted};
use crate::http::front::Front;
use crate::io::{Linger, Rewind, WriteTimeout};
use crate::lean::{self, Head, LeanRoutes};
use crate::refusal::{self, Refusal};
use crate::tracked::RemoteAddr;

/// Connection handling settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) grace: Duration,
    pub(crate) write_timeout: Duration,
    /// How long a client may take to send a request head (slowloris).
    pub(crate) header_timeout: Duration,
    /// Most bytes of a request head (hyper answers 431 past it; at least 8 KiB).
    pub(crate) max_header_bytes: usize,
}
/// How long a refused connection may take to send its head, and then to read the answer.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Descriptors kept for everything but connections: stdio, the runtime's epoll and event
/// fds, the store's files, the listeners, the odd file the process opens.
const RESERVED_FDS: u64 = 64;
/// Longest pause after failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long the connection that wakes a blocked `accept` at shutdown may take (only where
/// the listening socket cannot be shut).
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Accept failures are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A served connection's places: one under the process-wide limit, one under its
/// address's limit (none for a trusted proxy or with no per-address limit), and its share of
/// the drain (the shutdown waits, up to the grace period, until every share is dropped). The
/// places are given back when the socket is closed, the drain share when it is closed or
/// starts lingering; so a WebSocket, served by a task of its own after the upgrade, holds the
/// drain open until its shutdown notice is written.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
    serving: Option<mpsc::Sender<()>>,
}

impl Slot {
    /// Gives back the socket's share of the drain while it keeps its places: a socket that
    /// only lingers (`io::Linger`, reading what the client still sends) serves nothing more
    /// and must not hold a shutdown.
    pub(crate) fn served(&mut self) {
        self.serving = None;
    }
}

/// Connections per client address. At accept the client is the socket's peer address; a
/// trusted proxy's address is not limited there, since it carries many clients' connections.
/// A stream (SSE, NDJSON, WebSocket) that arrives through a trusted proxy is then counted
/// against the client `X-Forwarded-For` names (`forwarded_client`) for as long as it lives.
/// Short requests through a proxy are not counted per address: a proxy pools one upstream
/// connection for requests of different clients, and publishes are limited per credential.
#[derive(Debug)]
pub(crate) struct PerAddress {
    /// Most connections per address (0: no limit).
    max: usize,
    trusted: Vec<IpAddr>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub(crate) fn new(max: usize, trusted: Vec<IpAddr>) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            max,
            trusted,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`: `Ok(None)` when it is not limited, `Err` when the
    /// address has `max` connections open.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Option<AddressSlot>, ()> {
        let ip = canonical(ip);
        if self.max == 0 || self.trusted.contains(&ip) {
            return Ok(None);
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(());
        }
        *n += 1;
        Ok(Some(AddressSlot {
            limit: self.clone(),
            ip,
        }))
    }
}

impl PerAddress {
    /// The client behind a trusted proxy: walking `X-Forwarded-For` from the right (the entry
    /// the nearest proxy appended; entries further left are whatever the client sent), the
    /// first address that is not itself a trusted proxy. `None` when `peer` is not a trusted
    /// proxy (its own address was counted at accept), when no trusted proxy is configured, or
    /// when the header is missing or an entry on the way is not an address (then the stream
    /// is not counted per address, as before the header was read).
    pub(crate) fn forwarded_client(
        &self,
        peer: IpAddr,
        headers: &http::HeaderMap,
    ) -> Option<IpAddr> {
        if self.trusted.is_empty() || !self.trusted.contains(&canonical(peer)) {
            return None;
        }
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            for hop in value.to_str().ok()?.rsplit(',') {
                let ip = canonical(parse_hop(hop.trim())?);
                if !self.trusted.contains(&ip) {
                    return Some(ip);
                }
            }
        }
        None
    }

    /// A place under the per-address limit for a stream from the client a trusted proxy
    /// names: `Ok(None)` when the request did not come through one (or is not limited),
    /// `Err` when that client has its most connections open.
    pub(crate) fn take_forwarded(
        self: &Arc<Self>,
        peer: IpAddr,
        headers: &http::HeaderMap,
    ) -> Result<Option<AddressSlot>, ()> {
        match self.forwarded_client(peer, headers) {
            Some(ip) => self.take(ip),
            None => Ok(None),
        }
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`[v6]:port`,
/// `v4:port`) as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// An IPv4 client seen through an IPv6 socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One connection's place under its address's limit.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    limit: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The process-wide connection limit, shared by every listener.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    /// One permit per served connection.
    served: Arc<Semaphore>,
    /// One permit per connection being answered `too_many_connections` or `shutting_down`.
    refusing: Arc<Semaphore>,
    /// The number of `served` permits.
    pub(crate) max: usize,
    /// Connections per client address.
    pub(crate) per_address: Arc<PerAddress>,
}

impl ConnectionLimit {
    /// A limit of `configured` connections, lowered so that served connections, refused
    /// ones being answered and `RESERVED_FDS` fit in `nofile` descriptors (the soft
    /// `RLIMIT_NOFILE`; `None` if unknown). Refusals get 1/64 of the descriptors, 8 to 256.
    pub(crate) fn fit(
        configured: usize,
        nofile: Option<u64>,
        per_address: Arc<PerAddress>,
    ) -> ConnectionLimit {
        let nofile = nofile.unwrap_or(u64::MAX);
        let refusing = (nofile / 64).clamp(8, 256);
        let room = nofile.saturating_sub(RESERVED_FDS + refusing).max(1);
        let max = usize::try_from(room).map_or(configured, |room| configured.min(room));
        ConnectionLimit {
            served: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(refusing as usize)),
            max,
            per_address,
        }
    }
}

/// Backs off and logs after failed accepts (EMFILE and friends): exponentially up to
/// `MAX_BACKOFF`, and one log line per `LOG_EVERY` with the count of failures in between.
#[derive(Debug, Default)]
struct AcceptErrors {
    backoff: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                message = "Accept failed; backing off.",
                error = %error,
                failures = self.failures,
            );
            self.failures = 0;
            self.logged = Some(Instant::now());
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(5), MAX_BACKOFF);
        self.backoff
    }

    fn accepted(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// Answers a connection that will not be served, if a refusal slot is free; otherwise
/// closes it at once (better than leaving it unanswered in the backlog).
fn refuse(
    runtime: &Handle,
    limit: &ConnectionLimit,
    stream: TcpStream,
    lean: &LeanRoutes,
    why: Refusal,
) {
    let Ok(slot) = limit.refusing.clone().try_acquire_owned() else {
        return;
    };
    let lean = lean.clone();
    runtime.spawn(async move {
        refusal::refuse(stream, &lean, why, REFUSE_TIMEOUT).await;
        drop(slot);
    });
}

/// One listener's accepting thread and what it hands each connection. The thread blocks in
/// `accept(2)` on the listening socket, so the kernel itself wakes it when a connection is
/// ready (on Linux: its first bytes have arrived, `TCP_DEFER_ACCEPT`, see `listen_on`): it
/// never waits for a runtime worker to poll the I/O driver, which
/// a worker busy with requests and replays does only every few dozen tasks. In a reconnect
/// storm that wait let the kernel's accept queue overflow, and each dropped handshake cost its
/// client a SYN retransmit (1 s, then 3, then 7). While the queue holds connections, each
/// `accept` returns at once, so one wake-up drains all that are waiting. Each connection is
/// registered with the runtime's I/O driver and its task spawned onto the runtime.
struct Acceptor {
    listener: std::net::TcpListener,
    runtime: Handle,
    app: Front,
    lean: LeanRoutes,
    options: Options,
    limit: ConnectionLimit,
    /// What every served connection watches: `true` once the hub shuts down.
    stop: watch::Receiver<bool>,
    /// `Some` while connections are served: each served connection's `Slot` holds a clone
    /// for as long as its socket lives, so the drain ends when the last one has closed. Taken at shutdown, after which every new
    /// connection is answered `shutting_down`.
    serving: Mutex<Option<mpsc::Sender<()>>>,
    /// Set when the thread is to end (the drain is over).
    closing: AtomicBool,
}

impl Acceptor {
    /// The accepting thread's loop: until `close`. Failed accepts (EMFILE and friends) back
    /// off, parked so that `close` can wake it at once.
    fn run(&self) {
        let _runtime = self.runtime.enter();
        let mut errors = AcceptErrors::default();
        loop {
            let accepted = tidings_sys::accept_nonblocking(&self.listener);
            if self.closing.load(Ordering::Acquire) {
                return;
            }
            match accepted {
                Ok((stream, peer)) => {
                    errors.accepted();
                    self.hand(stream, peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => std::thread::park_timeout(errors.failed(&e)),
            }
        }
    }

    /// Gives an accepted socket to the runtime: served under the limits, or refused.
    fn hand(&self, stream: std::net::TcpStream, peer: SocketAddr) {
        // Linux copies the listener's TCP_NODELAY (set in `serve`) to each accepted socket.
        #[cfg(not(target_os = "linux"))]
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(message = "Could not set TCP_NODELAY.", error = %e);
        }
        // Already non-blocking (`tidings_sys::accept_nonblocking`).
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                // Closed (dropped) unanswered: the socket cannot be served at all.
                tracing::debug!(message = "Could not register a connection.", error = %e);
                return;
            }
        };
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(done) = serving else {
            refuse(
                &self.runtime,
                &self.limit,
                stream,
                &self.lean,
                Refusal::ShuttingDown,
            );
            return;
        };
        let Ok(address) = self.limit.per_address.take(peer.ip()) else {
            refuse(
                &self.runtime,
                &self.limit,
                stream,
                &self.lean,
                Refusal::TooManyFromAddress,
            );
            return;
        };
        let Ok(permit) = self.limit.served.clone().try_acquire_owned() else {
            refuse(
                &self.runtime,
                &self.limit,
                stream,
                &self.lean,
                Refusal::TooManyConnections,
            );
            return;
        };
        let slot = Slot {
            _permit: permit,
            _address: address,
            serving: Some(done),
        };
        let conn = Connection {
            app: self.app.clone(),
            lean: self.lean.clone(),
            options: self.options,
            stop: self.stop.clone(),
        };
        self.runtime
            .spawn(async move { conn.serve(stream, peer, slot).await });
    }

    /// Ends the accepting thread: a blocked `accept` is woken by shutting the listening
    /// socket's receiving side (Linux then fails it with `EINVAL`, and every later one), or,
    /// where that is refused, by a connection of our own; a backing-off thread is unparked.
    fn close(&self, thread: &std::thread::Thread) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = SockRef::from(&self.listener).shutdown(std::net::Shutdown::Read) {
            tracing::debug!(message = "Could not shut the listener; waking it by a connect.", error = %e);
            if let Ok(mut addr) = self.listener.local_addr() {
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr {
                        SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    });
                }
                drop(std::net::TcpStream::connect_timeout(&addr, WAKE_TIMEOUT));
            }
        }
        thread.unpark();
    }
}

/// Closes a listener's accepting thread when dropped (`Acceptor::close`).
struct Closer {
    acceptor: Arc<Acceptor>,
    thread: std::thread::Thread,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.acceptor.close(&self.thread);
    }
}

/// Serves `listener` until `shutdown` resolves, then drains: the connections finish (streams
/// end with `reconnect-required`) while new connections are still accepted and told the hub
/// is shutting down, for up to the grace period. Accepting happens on a thread of its own
/// (`Acceptor`); this task only starts it, switches it to refusing and ends it.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Front,
    lean: LeanRoutes,
    options: Options,
    limit: ConnectionLimit,
    shutdown: impl Future<Output = ()> + Send,
) {
    let listener = match listener.into_std().and_then(|l| {
        l.set_nonblocking(false)?;
        SockRef::from(&l).set_tcp_nodelay(true)?;
        Ok(l)
    }) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(message = "Could not hand the listener to its thread.", error = %e);
            return;
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every served socket's `Slot` holds a clone; `recv` returns `None` once all are closed.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let acceptor = Arc::new(Acceptor {
        listener,
        runtime: Handle::current(),
        app,
        lean,
        options,
        limit,
        stop: stop_rx,
        serving: Mutex::new(Some(done_tx)),
        closing: AtomicBool::new(false),
    });
    let (ended_tx, ended_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tidings-accept".into())
        .spawn({
            let acceptor = Arc::clone(&acceptor);
            move || {
                acceptor.run();
                drop(ended_tx);
            }
        });
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => {
            tracing::error!(message = "Could not start a listener's accepting thread.", error = %e);
            return;
        }
    };
    // Ends the thread however this task ends: after the drain, or dropped on the way.
    let closer = Closer {
        acceptor: Arc::clone(&acceptor),
        thread: thread.thread().clone(),
    };
    shutdown.await;
    // From here every new connection is answered `shutting_down`.
    drop(
        acceptor
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
    stop_tx.send_replace(true);
    if tokio::time::timeout(options.grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(message = "Grace period over; closing the remaining connections.");
    }
    drop(closer);
    // The sender is dropped, never used, when the thread ends (or panics).
    let _ended: Result<(), _> = ended_rx.await;
}

/// What one served connection needs.
struct Connection {
    app: Front,
    lean: LeanRoutes,
    options: Options,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves `stream` from `peer`; `slot` is its place under the connection limit, held as
    /// long as the socket lives (after a WebSocket upgrade too).
    async fn serve(self, mut stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let Connection {
            app,
            lean,
            options,
            mut stop,
        } = self;
        // The head reader and hyper's connection are boxed: a task's future is as large as
        // its largest state, and every long-lived lean stream would pay for them.
        let peer = RemoteAddr(peer);
        let head = Box::pin(lean::read_head(
            &mut stream,
            &lean,
            options.header_timeout,
            &mut stop,
        ))
        .await;
        let prefix = match head {
            Head::Gone => return,
            Head::Stream(mut parts, ctx) => {
                parts.extensions.insert(peer);
                drop(lean);
                lean::serve(stream, parts, Box::new(ctx), options.write_timeout).await;
                drop(slot);
                return;
            }
            Head::Other(prefix) => prefix,
        };
        let written = Arc::new(AtomicU64::new(0));
        let socket = ConnSocket::new(stream.as_raw_fd(), Arc::clone(&written));
        // The requests learn their peer and socket in `Front` (see there).
        let service = app.connection(peer, socket);
        let stream = Counted::new(Linger::new(stream, slot), written);
        let io = Rewind::new(prefix, WriteTimeout::new(stream, options.write_timeout));
        let mut conn = Box::pin(
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_timeout)
                .max_buf_size(options.max_header_bytes.max(8 << 10))
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        // The connection is polled first: a request whose head has been read is taken in
        // (and so answered) before a shutdown that began meanwhile closes the connection;
        // hyper's graceful shutdown closes an idle connection at once.
        let result = tokio::select! {
            biased;
            r = conn.as_mut() => r,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        if let Err(e) = result {
            tracing::debug!(message = "Connection ended with an error.", error = %e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_fits_the_descriptor_limit() {
        assert_eq!(
            ConnectionLimit::fit(19_000, None, PerAddress::new(0, vec![])).max,
            19_000
        );
        assert_eq!(
            ConnectionLimit::fit(19_000, Some(1 << 20), PerAddress::new(0, vec![])).max,
            19_000
        );
        // 20,000 descriptors: 64 reserved, 256 for refusals.
        assert_eq!(
            ConnectionLimit::fit(19_000, Some(20_000), PerAddress::new(0, vec![])).max,
            19_000
        );
        assert_eq!(
            ConnectionLimit::fit(38_000, Some(20_000), PerAddress::new(0, vec![])).max,
            19_680
        );
        // 128: 64 reserved, 8 for refusals.
        let small = ConnectionLimit::fit(19_000, Some(128), PerAddress::new(0, vec![]));
        assert_eq!(small.max, 56);
        assert_eq!(small.refusing.available_permits(), 8);
        assert_eq!(
            ConnectionLimit::fit(19_000, Some(10), PerAddress::new(0, vec![])).max,
            1
        );
    }

    #[test]
    fn each_address_gets_its_limit_and_trusted_proxies_none() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let limit = PerAddress::new(2, vec![proxy]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_v6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = limit.take(a).unwrap();
        let two = limit.take(a_v6).unwrap();
        assert!(limit.take(a).is_err(), "the third from one address");
        assert!(
            limit.take(b).unwrap().is_some(),
            "another address is unaffected"
        );
        for _ in 0..10 {
            assert!(
                limit.take(proxy).unwrap().is_none(),
                "a trusted proxy is not limited"
            );
        }
        drop(one);
        let three = limit.take(a).unwrap();
        drop((two, three));
        assert!(
            limit.open.lock().unwrap().is_empty(),
            "closed addresses are forgotten"
        );
        assert!(PerAddress::new(0, vec![]).take(a).unwrap().is_none());
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_behind_trusted_proxies_is_the_rightmost_untrusted_hop() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let limit = PerAddress::new(2, vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let via = |peer: &str, values: &[&str]| limit.forwarded_client(ip(peer), &xff(values));
        // The nearest proxy appended the last entry; what the client wrote itself is left of it.
        assert_eq!(
            via("10.0.0.1", &["6.6.6.6, 192.0.2.7"]),
            Some(ip("192.0.2.7"))
        );
        // Chained trusted proxies are skipped, across several header lines too.
        assert_eq!(
            via("10.0.0.1", &["6.6.6.6, 192.0.2.7", "10.0.0.2"]),
            Some(ip("192.0.2.7"))
        );
        // Ports and IPv4-mapped IPv6 as some proxies write them.
        assert_eq!(via("10.0.0.1", &["192.0.2.8:5123"]), Some(ip("192.0.2.8")));
        assert_eq!(
            via("10.0.0.1", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            via("::ffff:10.0.0.1", &["::ffff:192.0.2.9"]),
            Some(ip("192.0.2.9"))
        );
        // Not through a trusted proxy: the header is whatever the client wrote; ignored.
        assert_eq!(via("192.0.2.50", &["192.0.2.7"]), None);
        // Missing, garbage on the way, or only trusted hops: not counted per address.
        assert_eq!(via("10.0.0.1", &[]), None);
        assert_eq!(via("10.0.0.1", &["192.0.2.7, unknown"]), None);
        assert_eq!(via("10.0.0.1", &["10.0.0.2"]), None);
        // A garbage entry left of the client is never reached.
        assert_eq!(
            via("10.0.0.1", &["nonsense, 192.0.2.7"]),
            Some(ip("192.0.2.7"))
        );
        // No trusted proxies configured: never.
        assert_eq!(
            PerAddress::new(2, vec![]).forwarded_client(ip("10.0.0.1"), &xff(&["192.0.2.7"])),
            None
        );
        // The forwarded client is held to the limit; the proxy itself is not.
        let h = xff(&["192.0.2.7"]);
        let one = limit.take_forwarded(ip("10.0.0.1"), &h).unwrap();
        let two = limit.take_forwarded(ip("10.0.0.2"), &h).unwrap();
        assert!(one.is_some() && two.is_some());
        assert!(limit.take_forwarded(ip("10.0.0.1"), &h).is_err());
        assert!(
            limit
                .take_forwarded(ip("10.0.0.1"), &xff(&["192.0.2.8"]))
                .unwrap()
                .is_some()
        );
        drop(one);
        assert!(limit.take_forwarded(ip("10.0.0.1"), &h).unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_listener_task_ends_its_accepting_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = Options {
            grace: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            max_header_bytes: 8 << 10,
        };
        let limit = ConnectionLimit::fit(8, None, PerAddress::new(0, vec![]));
        let task = tokio::spawn(serve(
            listener,
            Front::new(axum::Router::new()),
            Arc::new(Default::default()),
            options,
            limit,
            std::future::pending(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let connects = |addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert!(connects(addr).is_ok(), "the listener serves");
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // The thread is woken and ends; with it the listening socket closes.
        loop {
            match connects(addr) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                _ => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "still listening after its task was dropped"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_failures_back_off_and_log_rarely() {
        let mut errors = AcceptErrors::default();
        let e = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..10).map(|_| errors.failed(&e)).collect();
        assert_eq!(pauses[0], Duration::from_millis(5));
        assert_eq!(pauses[1], Duration::from_millis(10));
        assert_eq!(pauses[9], MAX_BACKOFF);
        // Only the first failure was logged; the rest are counted for the next line.
        assert_eq!(errors.failures, 9);
        errors.accepted();
        assert_eq!(errors.failed(&e), Duration::from_millis(5));
    }
}
