//! Hostile input: garbage bytes, huge headers, bad percent-encoding and non-UTF-8 in the
//! query and `Last-Event-ID`, a 10 MB publish body, and many abandoned connections; the
//! server keeps answering afterwards.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Server, ignore, raw_exchange, read_until, status_of};

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_oversized_input_do_not_hurt_the_server() {
    let server = Server::start(&[]);
    let t = Duration::from_secs(5);

    // Not HTTP at all.
    let resp = raw_exchange(server.addr, b"\x00\x01\x02 hello there \xff\xfe\r\n\r\n", t).await;
    let status = status_of(&resp);
    assert!(
        status.is_some_and(|s| (400..500).contains(&s)),
        "garbage got {status:?}: {:?}",
        String::from_utf8_lossy(&resp)
    );
    let resp = raw_exchange(
        server.addr,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        t,
    )
    .await;
    let status = status_of(&resp);
    assert!(
        status.is_some_and(|s| (400..500).contains(&s)),
        "TLS hello got {status:?}: {:?}",
        String::from_utf8_lossy(&resp)
    );

    // A 100 KB header.
    let mut req =
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw_exchange(server.addr, &req, t).await;
    let status = status_of(&resp);
    assert!(
        matches!(status, Some(200 | 400 | 431)),
        "100 KB header got {status:?}"
    );

    // Bad percent-encoding and non-UTF-8 in the query.
    for target in [
        &b"/events?topic=%ZZ&type=%"[..],
        b"/events?topic=%FF%FE",
        b"/events?topic=a\xff\xfe",
        b"/events?lastEventId=%FF",
        b"/events?%FF=1",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let resp = raw_exchange(server.addr, &req, Duration::from_millis(500)).await;
        let status = status_of(&resp);
        let shown = String::from_utf8_lossy(target);
        assert!(
            matches!(status, Some(200) | Some(400..=499)),
            "{shown}: got {status:?}: {:?}",
            String::from_utf8_lossy(&resp)
        );
    }

    // Last-Event-ID that is not UTF-8: an in-band reset (invalid_cursor), not an error.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: \xff\xfe\x80\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, t, |b| {
        String::from_utf8_lossy(b).contains("invalid_cursor")
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("event: reset\n"), "{text}");
    drop(s);

    // A declared 10 MB body is refused from its Content-Length, before it is sent.
    let mut sock = TcpStream::connect(server.addr).await.expect("connect");
    sock.write_all(
        b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n[",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    read_until(&mut sock, &mut answer, t, |b| {
        String::from_utf8_lossy(b).contains("}}")
    })
    .await;
    assert_eq!(
        status_of(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("body_too_large"));
    // The body was not read: the connection ends, and the answer says so (a client must not
    // pool it).
    assert!(
        String::from_utf8_lossy(&answer)
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(sock);

    // A 10 MB body actually sent, declared and streamed: 413, read while the upload goes on.
    let body = vec![b'['; 10 * 1024 * 1024];
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer to a declared 10 MB body");
    assert_eq!(resp.status().as_u16(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..160).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("an answer to a chunked 10 MB body");
    assert_eq!(resp.status().as_u16(), 413);

    // 200 connections opened and dropped, some mid-request.
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut c = TcpStream::connect(server.addr).await.expect("connect");
        match i % 4 {
            0 => {}
            1 => {
                ignore(c.write_all(b"GET /events HTTP/1.1\r\nHost").await);
            }
            2 => {
                ignore(
                    c.write_all(b"GET /events?topic=x HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .await,
                );
            }
            _ => {
                ignore(c
                    .write_all(b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"to")
                    .await);
            }
        }
        conns.push(c);
    }
    drop(conns);

    server.assert_works().await;
    let ready = server.readyz().await;
    assert_eq!(ready["status"], "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_are_json_errors() {
    let server = Server::start(&[]);
    let resp = server
        .http
        .get(server.url("/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 404);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_found");
    let resp = server
        .http
        .get(server.url("/publish"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 405);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "method_not_allowed");
}
