//! The security suite's socket-level cases: 1,000 connections from one address over a
//! per-address limit of 100 (the rest refused, other clients served), a slowloris client
//! cut at the header timeout while others are served, oversized request lines, headers and
//! bodies, and CR/LF injection at publish; behind a trusted proxy, the per-address limit
//! applies to each client `X-Forwarded-For` names. Each is refused with its status and JSON code and
//! changes nothing else. (JWT cases are in `jwt.rs`; tickets, cookies, CORS and cross-site
//! WebSocket upgrades in `credentials.rs`.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Server, WAIT, ignore, raw_exchange, read_until, status_of};

/// Connects to `addr` from the loopback address `src`.
async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(src), 0))
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

/// Everything the server sends on `s` until it closes (or `WAIT` passes).
async fn answer(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    ignore(
        tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 4096];
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await,
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// The JSON body of a `connection: close` answer.
fn body_json(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON body ({e}): {answer:?}"))
}

async fn healthz_from(src: Ipv4Addr, addr: SocketAddr) -> u16 {
    let mut s = connect_from(src, addr).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    status_of(answer(&mut s).await.as_bytes()).expect("an HTTP answer")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_connections_from_one_address_over_a_limit_of_100() {
    let server = Server::start(&["--max-connections-per-ip", "100"]);
    let addr = server.addr;
    let one = Ipv4Addr::new(127, 0, 0, 1);
    // 100 streams from one address are served and held open.
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = connect_from(one, addr).await;
        s.write_all(b"GET /events?topic=sec/a HTTP/1.1\r\nHost: localhost\r\n\r\n")
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
        held.push(s);
    }
    // The other 900 from that address are refused, 50 at a time: a JSON 503, or in-band for
    // an SSE request (a browser's EventSource would give up for good on a 503).
    let mut refused = 0;
    for batch in 0..18 {
        let mut tasks = Vec::new();
        for i in 0..50 {
            tasks.push(tokio::spawn(async move {
                let mut s = connect_from(one, addr).await;
                let sse = (batch + i) % 10 == 0;
                let request: &[u8] = if sse {
                    b"GET /events?topic=sec/a HTTP/1.1\r\nHost: localhost\r\n\r\n"
                } else {
                    b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
                };
                // The server may answer before reading: a write error is no failure here.
                ignore(s.write_all(request).await);
                (sse, answer(&mut s).await)
            }));
        }
        for task in tasks {
            let (sse, text) = task.await.expect("task");
            if sse {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                assert!(text.contains("reconnect-required"), "{text}");
                assert!(text.contains("too_many_connections"), "{text}");
                assert!(text.contains("retry:"), "{text}");
            } else {
                assert_eq!(status_of(text.as_bytes()), Some(503), "{text}");
                let v = body_json(&text);
                assert_eq!(v["error"]["code"], "too_many_connections", "{v}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("client address"),
                    "{v}"
                );
            }
            refused += 1;
        }
    }
    assert_eq!(refused, 900);
    // Meanwhile another address is served, publishes reach the held streams, and closing
    // streams frees their address's places.
    let two = Ipv4Addr::new(127, 0, 0, 2);
    assert_eq!(healthz_from(two, addr).await, 200);
    let body = r#"{"topic":"sec/a","type":"t","data":1}"#;
    let mut publisher = connect_from(two, addr).await;
    publisher
        .write_all(
            format!(
                "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let published = answer(&mut publisher).await;
    assert_eq!(status_of(published.as_bytes()), Some(200), "{published}");
    let mut buf = Vec::new();
    read_until(&mut held[0], &mut buf, WAIT, |b| {
        String::from_utf8_lossy(b).contains("data: 1")
    })
    .await;
    held.truncate(90);
    let deadline = Instant::now() + WAIT;
    while healthz_from(one, addr).await != 200 {
        assert!(
            Instant::now() < deadline,
            "closed streams never freed their places"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens an SSE stream from `src` that a proxy forwarded for `client`, and reads until the
/// answer's first event or refusal.
async fn stream_for(src: Ipv4Addr, addr: SocketAddr, client: &str) -> (TcpStream, String) {
    let mut s = connect_from(src, addr).await;
    let head = format!(
        "GET /events?topic=sec/x HTTP/1.1\r\nHost: localhost\r\n\
         X-Forwarded-For: 203.0.113.250, {client}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, WAIT, |b| {
        String::from_utf8_lossy(b).contains("retry:")
    })
    .await;
    (s, String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    // 127.0.0.1 is the proxy; clients are the addresses it names in X-Forwarded-For.
    let server = Server::start(&[
        "--max-connections-per-ip",
        "2",
        "--trusted-proxy",
        "127.0.0.1",
    ]);
    let addr = server.addr;
    let proxy = Ipv4Addr::new(127, 0, 0, 1);
    let (a1, t) = stream_for(proxy, addr, "198.51.100.7").await;
    assert!(
        t.starts_with("HTTP/1.1 200") && !t.contains("reconnect-required"),
        "{t}"
    );
    let (_a2, t) = stream_for(proxy, addr, "198.51.100.7").await;
    assert!(!t.contains("reconnect-required"), "{t}");
    // The third stream for that client is shed in-band (a browser's EventSource retries).
    let (_, t) = stream_for(proxy, addr, "198.51.100.7").await;
    assert!(t.starts_with("HTTP/1.1 200"), "{t}");
    assert!(t.contains("too_many_connections"), "{t}");
    // A WebSocket upgrade for it gets the JSON error.
    let mut ws = connect_from(proxy, addr).await;
    ws.write_all(
        b"GET /events?topic=sec/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          X-Forwarded-For: 198.51.100.7\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    // The answer leaves the connection open for another request: read up to its body's end.
    read_until(&mut ws, &mut buf, WAIT, |b| b.ends_with(b"}}")).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert_eq!(status_of(text.as_bytes()), Some(503), "{text}");
    assert_eq!(body_json(&text)["error"]["code"], "too_many_connections");
    // Other clients behind the same proxy are served, and the proxy itself is never limited.
    let mut others = Vec::new();
    for i in 1..=5 {
        let (s, t) = stream_for(proxy, addr, &format!("198.51.100.{}", 20 + i)).await;
        assert!(!t.contains("reconnect-required"), "{t}");
        others.push(s);
    }
    // Not through a trusted proxy, the header is the client's own word and is not believed:
    // 127.0.0.2 is counted as itself.
    let (_b, t) = stream_for(Ipv4Addr::new(127, 0, 0, 2), addr, "198.51.100.7").await;
    assert!(!t.contains("reconnect-required"), "{t}");
    // Closing one of the client's streams gives its place back.
    drop(a1);
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, t) = stream_for(proxy, addr, "198.51.100.7").await;
        if !t.contains("reconnect-required") {
            drop(s);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed stream never freed its place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slowloris_client_is_cut_at_the_header_timeout_while_others_are_served() {
    let server = Server::start(&["--header-timeout", "1s"]);
    for start in [
        // The lean path's head reader (a stream request) and hyper's (anything else).
        &b"GET /events?topic=sec/b HTTP/1.1\r\nHost: localhost\r\n"[..],
        &b"POST /publish HTTP/1.1\r\nHost: localhost\r\n"[..],
    ] {
        let mut slow = TcpStream::connect(server.addr).await.expect("connect");
        slow.write_all(start).await.expect("write");
        let began = Instant::now();
        let mut cut = false;
        let mut i = 0u32;
        while began.elapsed() < Duration::from_secs(8) {
            // One header byte at a time, never finishing the head.
            if slow
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                cut = true;
                break;
            }
            i += 1;
            // A legitimate client is served meanwhile.
            let answer = raw_exchange(
                server.addr,
                b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                WAIT,
            )
            .await;
            assert_eq!(status_of(&answer), Some(200));
            let mut probe = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await {
                Ok(Ok(0) | Err(_)) => {
                    cut = true;
                    break;
                }
                Ok(Ok(n)) => {
                    // An answer (408 or 400) then the close also counts as cut.
                    let text = String::from_utf8_lossy(&probe[..n]).to_string();
                    assert!(text.starts_with("HTTP/1.1 4"), "{text}");
                }
                Err(_) => {}
            }
        }
        let after = began.elapsed();
        assert!(cut, "a slowloris head was not cut within 8 s");
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(5),
            "cut after {after:?}, the header timeout is 1 s"
        );
    }
}

#[tokio::test]
async fn oversized_request_lines_headers_and_bodies_are_refused_and_change_nothing() {
    let server = Server::start(&["--max-body-bytes", "1024", "--max-data-bytes", "512"]);
    let before = server.readyz().await["head"].clone();
    let long_line = format!(
        "GET /events?topic={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(200 << 10)
    );
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200 << 10)
    );
    for request in [long_line, long_header] {
        let answer = raw_exchange(server.addr, request.as_bytes(), WAIT).await;
        let status = status_of(&answer);
        assert!(
            matches!(status, Some(400 | 414 | 431)),
            "an oversized head answered {status:?}: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
    let big = json!({"topic": "sec/c", "type": "t", "data": "x".repeat(4096)});
    let (status, v) = server.publish_raw(&big, &[]).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");
    assert_eq!(
        server.readyz().await["head"],
        before,
        "nothing was published"
    );
    server.assert_works().await;
}

#[tokio::test]
async fn cr_lf_injection_at_publish_is_refused_and_never_reaches_a_stream() {
    let server = Server::start(&[]);
    let mut sse = server.subscribe("topic=*").await;
    let before = server.readyz().await["head"].clone();
    for (event, field) in [
        (
            json!({"topic": "a\r\nevent: evil", "type": "t", "data": 1}),
            "topic",
        ),
        (
            json!({"topic": "a\n\ndata: x", "type": "t", "data": 1}),
            "topic",
        ),
        (
            json!({"topic": "a", "type": "t\r\nid: 99", "data": 1}),
            "type",
        ),
        (
            json!({"topic": "a", "type": "t", "key": "k\nretry: 1", "data": 1}),
            "key",
        ),
    ] {
        let (status, v) = server.publish_raw(&event, &[]).await;
        assert_eq!(status, 422, "{event}: {v}");
        let code = v["error"]["code"].as_str().unwrap();
        assert!(code.starts_with("invalid_"), "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v} names {field}"
        );
    }
    assert_eq!(server.readyz().await["head"], before);
    // A newline inside JSON data is escaped, so it cannot end the SSE frame either.
    let id = server
        .publish_one("a", "t", json!("line one\n\nevent: evil\ndata: x"))
        .await;
    let ev = sse.next_event().await;
    assert_eq!(ev.event, "t");
    assert_eq!(ev.last_event_id, id);
    assert_eq!(
        serde_json::from_str::<Value>(&ev.data).unwrap(),
        json!("line one\n\nevent: evil\ndata: x")
    );
}

#[tokio::test]
async fn publishing_faster_than_the_rate_is_429_with_retry_after_per_credential() {
    let server = Server::start(&[
        "--token",
        "fast-publisher-1:publish=*;subscribe=*",
        "--token",
        "calm-publisher-2:publish=*;subscribe=*",
        "--max-batch-events",
        "10",
        "--publish-rate",
        "5",
        "--publish-burst",
        "10",
    ]);
    let post = |token: &'static str, n: usize| {
        let batch: Vec<Value> = (0..n)
            .map(|i| json!({"topic": "sec/rate", "type": "t", "data": i}))
            .collect();
        server
            .http
            .post(server.url("/publish"))
            .header("authorization", format!("Bearer {token}"))
            .json(&batch)
            .send()
    };
    assert_eq!(
        post("fast-publisher-1", 10)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let head = server.readyz().await["head"].clone();
    let resp = post("fast-publisher-1", 1).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(!v.to_string().contains("fast-publisher-1"));
    assert_eq!(
        server.readyz().await["head"],
        head,
        "the refused publish stored nothing"
    );
    // Another credential has its own bucket.
    assert_eq!(
        post("calm-publisher-2", 10)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // The bucket refills at 5 events/s: after Retry-After the publish goes through.
    let deadline = Instant::now() + WAIT;
    loop {
        let status = post("fast-publisher-1", 1).await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "the bucket never refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn streams_per_credential_are_limited_and_sse_is_shed_in_band() {
    let server = Server::start(&[
        "--token",
        "stream-token-one:subscribe=*;publish=*",
        "--token",
        "stream-token-two:subscribe=*",
        "--max-streams-per-credential",
        "2",
    ]);
    let one = [("authorization", "Bearer stream-token-one")];
    let first = server.subscribe_with("topic=sec/s", &one).await;
    // A client-id session stream holds a place like any other.
    let session = [
        ("authorization", "Bearer stream-token-one"),
        ("x-client-id", "sec-session"),
    ];
    let second = server.subscribe_with("topic=sec/s", &session).await;
    // The third SSE stream answers 200 and sheds in-band: an EventSource retries after
    // `retry:` instead of giving up on a 429.
    let mut third = server.subscribe_with("topic=sec/s", &one).await;
    assert!(third.expect_retry().await > 0);
    let rest = third.read_to_end().await;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event, "reconnect-required");
    assert!(rest[0].data.contains("too_many_streams"), "{:?}", rest[0]);
    // NDJSON says it with a 429.
    let resp = server.get_events("topic=sec/s&format=ndjson", &one).await;
    assert_eq!(resp.status().as_u16(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_streams", "{v}");
    // A long-poll is not a stream, and another credential has its own count.
    let resp = server
        .http
        .get(server.url("/events?topic=sec/s&poll=1&timeout=0&lastEventId=0"))
        .header("authorization", "Bearer stream-token-one")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    drop(
        server
            .subscribe_with(
                "topic=sec/s",
                &[("authorization", "Bearer stream-token-two")],
            )
            .await,
    );
    // Closing a stream gives its place back.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = server.get_events("topic=sec/s&format=ndjson", &one).await;
        if resp.status().as_u16() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "a closed stream kept its place");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--header-timeout", "1s"]);
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, WAIT, |b| {
        String::from_utf8_lossy(b).contains("{\"status\":\"ok\"}")
    })
    .await;
    let served = Instant::now();
    // Kept alive, then idle: the server closes it once no next head came within 1 s.
    let mut rest = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection was kept past 5 s");
    let idle = served.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
}

/// A bearer token, a cookie, a ticket and a refused JWT-shaped token pass through every path
/// with the log at `trace`, and none of them appears in the log.
#[tokio::test]
async fn secrets_never_reach_the_log_even_at_trace() {
    const TOKEN: &str = "log-secret-token-a1b2c3";
    let spec = format!("{TOKEN}:publish=*;subscribe=*");
    let server = Server::start(&[
        "--token",
        &spec,
        "--log",
        "trace",
        "--jwt-hs256-secret",
        "a-jwt-secret-of-at-least-32-bytes-for-logs",
    ]);
    let bearer = format!("Bearer {TOKEN}");
    let cookie = format!("tidings_token={TOKEN}");
    server
        .publish_raw(
            &json!({"topic": "log/a", "type": "t", "data": 1}),
            &[("authorization", &bearer)],
        )
        .await;
    drop(
        server
            .subscribe_with("topic=log/a", &[("cookie", &cookie)])
            .await,
    );
    let resp = server
        .http
        .post(server.url("/tickets"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    let ticket = resp.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(
        server
            .subscribe_with(&format!("topic=log/a&ticket={ticket}"), &[])
            .await,
    );
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsb2ctc2VjcmV0In0.Zm9yZ2VkLXNpZ25hdHVyZQ";
    let resp = server
        .get_events(
            "topic=log/a",
            &[("authorization", &format!("Bearer {forged}"))],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = server
        .get_events(
            "topic=log/a",
            &[("cookie", "tidings_token=wrong-secret-xyz123")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    let log = server.stderr();
    assert!(
        log.contains("DEBUG"),
        "the log shows debug lines at least:\n{log}"
    );
    for secret in [
        TOKEN,
        ticket.as_str(),
        forged,
        "Zm9yZ2VkLXNpZ25hdHVyZQ",
        "wrong-secret-xyz123",
        "a-jwt-secret-of-at-least-32-bytes-for-logs",
    ] {
        assert!(!log.contains(secret), "`{secret}` is in the log");
    }
}
