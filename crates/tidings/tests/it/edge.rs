//! The HTTP edge over real sockets: the lean path's response head, publish bodies that
//! trickle or stall (deadline and byte budget), the connection limit (answered, in-band for
//! SSE, and fitted to the file descriptor limit over every listener), the `Host` check of an
//! open hub against DNS rebinding, and publishes during shutdown (and the exit of a hub whose
//! clients keep connecting through its drain).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    Launch, Server, WAIT, ignore, raw_exchange, read_until, status_of, strip_ansi,
};

/// What `s` sends until it closes (or fails), and whether that came within `WAIT`.
async fn read_to_eof(s: &mut TcpStream) -> (Result<(), tokio::time::error::Elapsed>, Vec<u8>) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    (read, buf)
}

/// Reads a whole `connection: close` answer (to EOF); panics if none comes within `WAIT`.
async fn answer_of(s: &mut TcpStream) -> String {
    let (read, buf) = read_to_eof(s).await;
    assert!(
        read.is_ok(),
        "no complete answer within {WAIT:?}; got {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(!buf.is_empty(), "the server closed without answering");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `request` on a fresh connection and returns the whole answer.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    answer_of(&mut s).await
}

fn status(answer: &str) -> u16 {
    status_of(answer.as_bytes()).unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The head of an answer, lower-cased.
fn head_of(answer: &str) -> String {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Opens an SSE stream on a raw socket and reads until its `retry:` hint has arrived.
async fn open_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /events?topic=edge/held HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, WAIT, |b| {
        String::from_utf8_lossy(b).contains("retry:")
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("reconnect-required"), "{text}");
    s
}

/// Waits for a log line containing `needle`; returns the whole log.
fn wait_log(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = server.stderr();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address of an endpoint with its own port, from its log line.
fn endpoint_addr(server: &Server, name: &str) -> SocketAddr {
    let log = wait_log(server, "Endpoint is listening.");
    let line = log
        .lines()
        .map(strip_ansi)
        .find(|l| l.contains("Endpoint is listening.") && l.contains(&format!("endpoint={name}")))
        .unwrap_or_else(|| panic!("endpoint {name} did not listen:\n{log}"));
    let at = line.find("addr=").expect("addr field") + 5;
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    rest[..end].parse().expect("endpoint addr")
}

/// `/healthz` on a fresh connection, until it answers 200 (a refused connection frees its
/// slot when the server sees the close, which the client cannot await).
async fn healthz_until_ok(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = exchange(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        match status(&answer) {
            200 => return,
            503 => assert!(answer.contains("too_many_connections"), "{answer}"),
            other => panic!("healthz answered {other}: {answer}"),
        }
        assert!(Instant::now() < deadline, "healthz never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn lean_answers_carry_date_the_clients_version_and_connection_close() {
    let server = Server::start(&[]);
    // An HTTP/1.1 stream: chunked, and it says it closes (the lean path never keeps alive).
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, WAIT, |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    let head = head_of(&String::from_utf8_lossy(&buf));
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(head.contains("\r\ncache-control: no-cache"), "{head}");
    assert!(head.contains("\r\nx-accel-buffering: no"), "{head}");
    drop(s);

    // An HTTP/1.0 stream: answered in HTTP/1.0, not chunked.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /events HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, WAIT, |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    let head = head_of(&String::from_utf8_lossy(&buf));
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
    drop(s);

    // An error on the lean path, to an HTTP/1.0 client.
    let answer = exchange(server.addr, "GET /events?bogus=1 HTTP/1.0\r\n\r\n").await;
    let head = head_of(&answer);
    assert!(head.starts_with("http/1.0 400 "), "{answer}");
    assert!(head.contains("\r\ndate: "), "{answer}");
    assert!(head.contains("\r\nconnection: close"), "{answer}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains("invalid_parameter"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_publish_body_is_cut_off_at_the_body_timeout() {
    let server = Server::start(&["--body-timeout", "1s"]);
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{",
    )
    .await
    .expect("write");
    let started = Instant::now();
    // One byte every 300 ms (the body would take 30 s) until the server answers.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&buf).contains("}}") {
        assert!(
            started.elapsed() < WAIT,
            "no answer to a trickled body; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        tokio::select! {
            read = s.read(&mut chunk) => match read {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break,
            },
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                ignore(s.write_all(b" ").await);
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    assert_eq!(status_of(&buf), Some(408), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "{text}");
    server.assert_works().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_bodies_at_the_connection_limit_do_not_starve_healthz() {
    let server = Server::start(&["--max-connections", "20", "--body-timeout", "1s"]);
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(
            b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n[",
        )
        .await
        .expect("write");
        slow.push(s);
    }
    // While they stall, /healthz is answered (503 if it found no free slot).
    let answer = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(status(&answer), 200 | 503), "{answer}");
    // Every stalled body is answered at its deadline, which frees the slots.
    for s in &mut slow {
        let answer = answer_of(s).await;
        assert_eq!(status(&answer), 408, "{answer}");
        assert!(answer.contains("\"body_timeout\""), "{answer}");
    }
    healthz_until_ok(server.addr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_bodies_hold_no_more_than_the_body_budget() {
    let server = Server::start(&[
        "--max-inflight-body-bytes",
        "4MiB",
        "--durability",
        "memory",
    ]);
    let pid = server.pid();
    server.assert_works().await;
    let before = rss_bytes(pid);
    const CLIENTS: usize = 64;
    const BODY: usize = 1 << 20;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: {BODY}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.expect("write head");
            // A refusal comes at once, from the declared length; otherwise send all of the
            // body but 16 bytes and keep the connection.
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    (Some(text), s)
                }
                Ok(_) => panic!("closed without an answer"),
                Err(_) => {
                    let mut body = vec![b' '; BODY - 16];
                    body[0] = b'[';
                    if s.write_all(&body).await.is_ok() {
                        return (None, s);
                    }
                    // Refused after all, later than the wait above (a loaded machine).
                    let n = s.read(&mut buf).await.expect("read a late refusal");
                    (Some(String::from_utf8_lossy(&buf[..n]).into_owned()), s)
                }
            }
        }));
    }
    let mut held = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (answer, s) = t.await.expect("client task");
        match answer {
            Some(text) => {
                assert_eq!(status_of(text.as_bytes()), Some(503), "{text}");
                assert!(text.contains("overloaded"), "{text}");
                refused += 1;
            }
            None => held.push(s),
        }
    }
    assert!(
        held.len() <= 4,
        "{} bodies held with a 4 MiB budget",
        held.len()
    );
    assert_eq!(refused + held.len(), CLIENTS);
    let grown = rss_bytes(pid).saturating_sub(before);
    eprintln!(
        "RSS grew {} KiB with {} stalled bodies",
        grown >> 10,
        held.len()
    );
    assert!(
        grown < 24 << 20,
        "RSS grew {} MiB with {} stalled bodies",
        grown >> 20,
        held.len()
    );
    drop(held);
    // A stalled body's bytes go back to the budget once the server sees its client's close,
    // which the client cannot await: until then a publish may still be told `overloaded`.
    let deadline = Instant::now() + WAIT;
    loop {
        let event = serde_json::json!({"topic": "edge/after", "type": "x", "data": 1});
        let (status, body) = server.publish_raw(&event, &[]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "overloaded", "{body}");
        assert!(
            Instant::now() < deadline,
            "the stalled bodies' budget was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.assert_works().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_over_the_connection_limit_are_answered() {
    let server = Server::start(&["--max-connections", "3"]);
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(open_stream(server.addr).await);
    }
    // A plain request: 503 too_many_connections, and the connection ends.
    let answer = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 503, "{answer}");
    let head = head_of(&answer);
    assert!(head.contains("\r\nconnection: close"), "{answer}");
    assert!(head.contains("\r\ndate: "), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    // An SSE request: in-band, so an EventSource retries instead of giving up for good.
    let answer = exchange(
        server.addr,
        "GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        head_of(&answer).contains("content-type: text/event-stream"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.starts_with("retry: "), "{answer}");
    assert!(
        body.contains("event: reconnect-required\ndata: {\"reason\":\"too_many_connections\"}\n\n"),
        "{answer}"
    );
    // A publish.
    let answer = exchange(
        server.addr,
        "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(status(&answer), 503, "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    // A freed slot serves again.
    streams.pop();
    healthz_until_ok(server.addr).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_limit_fits_the_fd_limit_over_every_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "[[endpoints]]\nname = \"side\"\nlisten = \"127.0.0.1:0\"\npath = \"/events\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    // 128 descriptors: 64 reserved, 8 for refusals, so 56 connections over both listeners,
    // not 19,000 on each.
    let server = Server::launch(Launch::new(&["--config", config]).nofile(128));
    let side = endpoint_addr(&server, "side");
    let log = server.stderr();
    assert!(log.contains("max_connections=56"), "{log}");
    let mut streams = Vec::new();
    for i in 0..56 {
        let addr = if i % 2 == 0 { server.addr } else { side };
        streams.push(open_stream(addr).await);
    }
    // Both listeners answer the next clients, instead of failing to accept.
    for addr in [server.addr, side, server.addr, side] {
        let answer = exchange(addr, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.contains("\"too_many_connections\""), "{answer}");
    }
    let answer = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 503, "{answer}");
    streams.truncate(50);
    healthz_until_ok(server.addr).await;
    let log = server.stderr();
    assert!(!log.contains("Accept failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_hub_answers_only_loopback_host_names() {
    let server = Server::start(&[]);
    let port = server.addr.port();
    let requests = |host: &str| {
        [
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            format!(
                "POST /publish HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Connection: close\r\nContent-Length: 43\r\n\r\n\
                 {{\"topic\":\"edge/host\",\"type\":\"x\",\"data\":1}}  "
            ),
            format!("GET /events?topic=edge/host HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            format!(
                "GET /events?poll=1&timeout=0 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ),
            format!(
                "GET /events HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
                 Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
            format!("GET /nope HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ]
    };
    // A rebinding page's name: refused everywhere, on both paths.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
    ] {
        for req in requests(&host) {
            let answer = exchange(server.addr, &req).await;
            assert_eq!(status(&answer), 403, "{req}\n{answer}");
            assert!(answer.contains("\"forbidden_host\""), "{answer}");
            assert!(answer.contains("Host"), "{answer}");
        }
    }
    // An absolute-form target names the host too.
    let answer = exchange(
        server.addr,
        "GET http://evil.example/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
    // Loopback names pass.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "app.localhost".to_owned(),
    ] {
        let [healthz, publish, sse, poll, ws, nope] = requests(&host);
        assert_eq!(
            status(&exchange(server.addr, &healthz).await),
            200,
            "{host}"
        );
        assert_eq!(
            status(&exchange(server.addr, &publish).await),
            200,
            "{host}"
        );
        let answer = raw_exchange(server.addr, sse.as_bytes(), Duration::from_millis(300)).await;
        assert_eq!(status_of(&answer), Some(200), "{host}");
        assert_eq!(status(&exchange(server.addr, &poll).await), 200, "{host}");
        let answer = raw_exchange(server.addr, ws.as_bytes(), Duration::from_millis(300)).await;
        assert_eq!(status_of(&answer), Some(101), "{host}");
        assert_eq!(status(&exchange(server.addr, &nope).await), 404, "{host}");
    }
    // Named hosts are answered when configured.
    let named = Server::start(&[
        "--allowed-host",
        "hub.example",
        "--allowed-host",
        "*.example.org",
    ]);
    for host in ["hub.example", "a.example.org:80", "localhost"] {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(status(&exchange(named.addr, &req).await), 200, "{host}");
    }
    let answer = exchange(
        named.addr,
        "GET /healthz HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
    // A hub with tokens answers any name (a rebinding page has no token).
    let tokened = Server::start(&["--token", "edge-secret-1:publish=*;subscribe=*"]);
    let answer = exchange(
        tokened.addr,
        "GET /healthz HTTP/1.1\r\nHost: hub.example.net\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publishes_during_shutdown_are_answered_shutting_down() {
    let mut server = Server::start(&["--shutdown-grace", "5s"]);
    // A publish whose body never completes keeps the drain going.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n[",
    )
    .await
    .expect("write");
    let mut stream = open_stream(server.addr).await;
    server.sigterm();
    wait_log(&server, "Shutting down");
    // The open stream is told to reconnect.
    let mut buf = Vec::new();
    read_until(&mut stream, &mut buf, WAIT, |b| {
        String::from_utf8_lossy(b).contains("\"reason\":\"shutdown\"")
    })
    .await;
    // New connections are still answered while the listener drains. The stream hears of the
    // shutdown a moment before the hub stops taking publishes: until then one may still be
    // accepted (200).
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let answer = exchange(
            server.addr,
            "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 41\r\n\r\n{\"topic\":\"edge/late\",\"type\":\"x\",\"data\":1}",
        )
        .await;
        if status(&answer) != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status(&answer), 503, "{answer}");
    assert!(answer.contains("\"shutting_down\""), "{answer}");
    let answer = exchange(
        server.addr,
        "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        answer.contains("event: reconnect-required\ndata: {\"reason\":\"shutdown\"}"),
        "{answer}"
    );
    ignore(slow.shutdown().await);
    drop(slow);
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
}

/// One publish on a fresh connection while the hub shuts down: `None` when the connection was
/// refused, reset or closed unanswered (the listener has closed), else the whole answer.
async fn late_publish(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 41\r\n\r\n{\"topic\":\"edge/late\",\"type\":\"x\",\"data\":1}",
    )
    .await
    .ok()?;
    let (read, buf) = read_to_eof(&mut s).await;
    assert!(
        read.is_ok(),
        "a connection was left unanswered for {WAIT:?} during shutdown; got {:?}",
        String::from_utf8_lossy(&buf)
    );
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_exits_when_its_drain_ends_while_clients_keep_connecting() {
    // In memory mode: what is timed is the drain, not the final fsyncs of a durable store,
    // which a disk busy with other writers (a build beside the suite) can stretch to seconds.
    let mut server = Server::start(&["--shutdown-grace", "20s", "--durability", "memory"]);
    let addr = server.addr;
    // A publish whose body never completes holds the drain open until it closes.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n[",
    )
    .await
    .expect("write");
    server.assert_works().await;
    server.sigterm();
    wait_log(&server, "Closing the rest and draining connections.");
    // Clients keep connecting through the drain and after it: each is answered
    // `shutting_down` by the accepting thread, or finds the listener closed; none hangs.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (answered, done) = (answered.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(answer) = late_publish(addr).await {
                        assert_eq!(status(&answer), 503, "{answer}");
                        assert!(answer.contains("\"shutting_down\""), "{answer}");
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        // Refused at once once the listener is closed: do not spin on the
                        // two cores the hub needs to exit.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "late clients were not answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The drain ends when the held connection closes, long before the grace period: the
    // process must then exit promptly although its accepting thread is kept busy.
    ignore(slow.shutdown().await);
    drop(slow);
    let closed = Instant::now();
    let log = server.log.clone();
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .expect("wait");
    let took = closed.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.expect("a late client failed");
    }
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after the drain ended (grace 20 s); stderr:\n{}",
        log.lock().expect("log lock")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_sent_nothing_does_not_hold_the_drain() {
    // Browsers open sockets ahead of need; one that has sent nothing when the hub stops has
    // no request to answer and is closed at once, not kept for the 30 s header timeout.
    let mut server = Server::start(&[
        "--shutdown-grace",
        "20s",
        "--header-timeout",
        "30s",
        "--durability",
        "memory",
    ]);
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    // The kernel holds a connection that has sent nothing for the listener's defer-accept
    // second (`TCP_DEFER_ACCEPT`), then hands it over anyway: wait until it has.
    let local = idle.local_addr().expect("local address");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !accepted_by_server(server.addr, local),
        "a silent connection was handed to the hub before its first byte (no TCP_DEFER_ACCEPT)"
    );
    let deadline = Instant::now() + WAIT;
    while !accepted_by_server(server.addr, local) {
        assert!(
            Instant::now() < deadline,
            "the idle connection was never handed over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.assert_works().await;
    let stopped = Instant::now();
    server.sigterm();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, idle.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the idle connection was not closed: {read:?}"
    );
    let log = server.log.clone();
    let status = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .expect("wait");
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM (header timeout 30 s); stderr:\n{}",
        log.lock().expect("log lock")
    );
}

/// Whether the server's end of the connection from `client` to `server` is established,
/// that is, no longer held by the kernel before `accept` (`ss` lists such a connection as
/// `SYN-RECV` until its first bytes, or the defer-accept timeout, arrive).
fn accepted_by_server(server: SocketAddr, client: SocketAddr) -> bool {
    let out = std::process::Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &format!(
                "( sport = :{} and dport = :{} )",
                server.port(),
                client.port()
            ),
        ])
        .output()
        .expect("run ss");
    assert!(out.status.success(), "ss: {out:?}");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// The accept-queue size of the socket listening on `addr`, as the kernel reports it: for a
/// listening socket `ss` shows the `listen(2)` backlog (after the `net.core.somaxconn` cap)
/// in its Send-Q column.
fn listen_backlog_of(addr: SocketAddr) -> u64 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .expect("run ss");
    assert!(out.status.success(), "ss: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("no listening socket on {addr} in:\n{text}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

fn somaxconn() -> u64 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .expect("somaxconn is a number")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listen_backlog_reaches_every_listening_socket() {
    // The default: 4096 (tokio's own bind asks for 128), capped by the kernel.
    let server = Server::start(&[]);
    assert_eq!(listen_backlog_of(server.addr), 4096.min(somaxconn()));
    drop(server);

    // Configured: the main listener and an endpoint's own port both get it; the environment
    // variable is read as well (the flag is checked with the file and the environment in the
    // config layering tests).
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("backlog.toml");
    std::fs::write(
        &config,
        "[[endpoints]]\nname = \"side\"\nlisten = \"127.0.0.1:0\"\npath = \"/events\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let server =
        Server::launch(Launch::new(&["--config", config]).env("TIDINGS_LISTEN_BACKLOG", "77"));
    let side = endpoint_addr(&server, "side");
    assert_eq!(listen_backlog_of(server.addr), 77);
    assert_eq!(listen_backlog_of(side), 77);
    server.assert_works().await;

    // Out of range: refused before any port is bound, naming the setting.
    let (code, err) = Launch::new(&["--listen-backlog", "0"]).run_to_exit();
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("listen_backlog"), "{err}");
}
