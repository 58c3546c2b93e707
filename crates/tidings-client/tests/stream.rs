//! The subscription loop against a scripted loopback HTTP server, with tokio time paused so
//! backoff delays are measured exactly: the reconnect schedule, its reset after a success,
//! the `retry:` hint, `reconnect-required` (at once), resume by `Last-Event-ID`, the
//! keep-alive timeout, and a permanent error that stops retrying.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use tidings_client::{Client, DisconnectCause, Disconnected, ErrorKind, Item};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the scripted server does with one request.
#[derive(Clone)]
enum Reply {
    /// An error answer with a Tidings JSON body; the connection closes.
    Status(u16),
    /// A 200 event stream with `body`; then the connection closes, or stays open silent.
    Stream { body: &'static str, hold: bool },
}

/// A request the server saw: when, and its head.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    head: String,
}

/// Serves `script` in order, one reply per connection; after the script, holds silent.
async fn scripted(script: Vec<Reply>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            log.lock().expect("lock").push(Seen {
                at: Instant::now(),
                head: String::from_utf8_lossy(&head).to_lowercase(),
            });
            let reply = script.next().unwrap_or(Reply::Stream {
                body: "",
                hold: true,
            });
            tokio::spawn(async move {
                match reply {
                    Reply::Status(code) => {
                        let body = format!(
                            r#"{{"error":{{"code":"{}","message":"scripted"}}}}"#,
                            if code == 401 {
                                "unauthorized"
                            } else {
                                "shutting_down"
                            }
                        );
                        let answer = format!(
                            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        // The client may have gone; nothing to do about it here.
                        sock.write_all(answer.as_bytes()).await.ok();
                    }
                    Reply::Stream { body, hold } => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        if sock.write_all(body.as_bytes()).await.is_err() {
                            return;
                        }
                        if hold {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

fn gaps(seen: &[Seen]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// The delay a `Disconnected` item announced.
fn retry_in(item: &Item) -> Duration {
    match item {
        Item::Disconnected(d) => d.retry_in,
        other => panic!("expected a disconnect, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_to_32s_with_jitter_and_resets_after_a_connection() {
    let mut script = vec![Reply::Status(503); 7];
    // A connection that succeeds, then drops: the schedule starts over.
    script.push(Reply::Stream {
        body: ": hi\n\n",
        hold: false,
    });
    script.push(Reply::Status(503));
    let (url, seen) = scripted(script).await;
    let client = Client::new(&url).expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["a/*"]));

    let mut announced = Vec::new();
    for _ in 0..7 {
        let item = stream.next().await.expect("item").expect("transient");
        announced.push(retry_in(&item));
    }
    let bases = [1, 2, 4, 8, 16, 32, 32].map(Duration::from_secs);
    for (d, base) in announced.iter().zip(bases) {
        assert!(*d > base / 2 && *d <= base, "{d:?} not in (½, 1]·{base:?}");
    }
    // The connection after the 7th wait succeeds.
    let item = stream.next().await.expect("item").expect("ok");
    assert!(
        matches!(item, Item::Connected(ref c) if c.opened_before == 0),
        "{item:?}"
    );
    let item = stream.next().await.expect("item").expect("ok");
    let after_success = retry_in(&item);
    assert!(after_success <= Duration::from_secs(1), "{after_success:?}");
    let item = stream.next().await.expect("item").expect("ok");
    assert!(retry_in(&item) <= Duration::from_secs(2), "{item:?}");

    // The server saw each attempt exactly when the client said it would come.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 9);
    let measured = gaps(&seen);
    let mut want = announced.clone();
    want.push(after_success);
    for (m, w) in measured.iter().zip(&want) {
        let off = m.abs_diff(*w);
        assert!(
            off < Duration::from_millis(5),
            "waited {m:?}, announced {w:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_hint_sets_the_first_delay() {
    let script = vec![
        Reply::Stream {
            body: "retry: 5000\n\n",
            hold: false,
        },
        Reply::Status(503),
    ];
    let (url, _seen) = scripted(script).await;
    let client = Client::new(&url).expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["*"]));
    assert!(matches!(stream.next().await, Some(Ok(Item::Connected(_)))));
    let first = retry_in(&stream.next().await.expect("item").expect("ok"));
    assert!(
        first > Duration::from_millis(2500) && first <= Duration::from_secs(5),
        "{first:?}"
    );
    let second = retry_in(&stream.next().await.expect("item").expect("ok"));
    assert!(
        second > Duration::from_secs(5) && second <= Duration::from_secs(10),
        "{second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn reconnect_required_reconnects_at_once_and_resumes_from_the_last_id() {
    let script = vec![
        Reply::Stream {
            body: "retry: 2000\n\nid: 0000000a-7\nevent: progress\ndata: {\"n\":7}\n\n\
                   event: reconnect-required\ndata: {\"reason\":\"shutdown\"}\n\n",
            hold: true,
        },
        Reply::Stream {
            body: "id: 0000000a-8\nevent: progress\ndata: {\"n\":8}\n\n",
            hold: true,
        },
    ];
    let (url, seen) = scripted(script).await;
    let client = Client::builder(&url)
        .client_id("cli-1")
        .build()
        .expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["d/*"]));
    let mut items = Vec::new();
    for _ in 0..5 {
        items.push(stream.next().await.expect("item").expect("ok"));
    }
    assert!(matches!(&items[0], Item::Connected(c) if c.resumed_from.is_none()));
    assert!(matches!(&items[1], Item::Event(e) if e.id == "0000000a-7" && e.data == r#"{"n":7}"#));
    match &items[2] {
        Item::Disconnected(d) => {
            assert_eq!(d.retry_in, Duration::ZERO);
            assert!(matches!(&d.cause, DisconnectCause::ReconnectRequired(r) if r == "shutdown"));
        }
        other => panic!("expected reconnect-required, got {other:?}"),
    }
    assert!(
        matches!(&items[3], Item::Connected(c) if c.resumed_from.as_deref() == Some("0000000a-7"))
    );
    assert!(matches!(&items[4], Item::Event(e) if e.id == "0000000a-8"));

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(gaps(&seen), [Duration::ZERO]);
    assert!(
        seen[0].head.starts_with("get /events?topic=d%2f*"),
        "{}",
        seen[0].head
    );
    assert!(!seen[0].head.contains("last-event-id"));
    assert!(
        seen[1].head.contains("last-event-id: 0000000a-7\r\n"),
        "{}",
        seen[1].head
    );
    for s in &seen {
        assert!(s.head.contains("x-client-id: cli-1\r\n"), "{}", s.head);
    }
}

#[tokio::test(start_paused = true)]
async fn a_hub_that_keeps_asking_to_reconnect_without_events_gets_backoff() {
    const ASK: &str = "event: reconnect-required\ndata: {\"reason\":\"shutdown\"}\n\n";
    let script = vec![
        Reply::Stream {
            body: ASK,
            hold: true,
        },
        Reply::Stream {
            body: ASK,
            hold: true,
        },
        Reply::Stream {
            body: "id: 0000000a-1\nevent: t\ndata: 1\n\n",
            hold: false,
        },
    ];
    let (url, seen) = scripted(script).await;
    let client = Client::new(&url).expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["*"]));
    let mut delays = Vec::new();
    while delays.len() < 2 {
        if let Item::Disconnected(d) = stream.next().await.expect("item").expect("ok") {
            delays.push(d.retry_in);
        }
    }
    assert_eq!(
        delays[0],
        Duration::ZERO,
        "the first request is honoured at once"
    );
    assert!(delays[1] > Duration::from_millis(500), "{:?}", delays[1]);
    loop {
        if let Item::Event(e) = stream.next().await.expect("item").expect("ok") {
            assert_eq!(e.id, "0000000a-1");
            break;
        }
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(gaps(&seen)[0], Duration::ZERO);
    assert!(gaps(&seen)[1].abs_diff(delays[1]) < Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_dropped_after_the_keepalive_timeout() {
    let script = vec![Reply::Stream {
        body: "id: 0000000a-3\nevent: t\ndata: 1\n\n",
        hold: true,
    }];
    let (url, seen) = scripted(script).await;
    let client = Client::builder(&url)
        .keepalive(Duration::from_secs(10), 3)
        .build()
        .expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["*"]));
    let start = Instant::now();
    assert!(matches!(stream.next().await, Some(Ok(Item::Connected(_)))));
    assert!(matches!(stream.next().await, Some(Ok(Item::Event(_)))));
    match stream.next().await.expect("item").expect("transient") {
        Item::Disconnected(Disconnected {
            cause: DisconnectCause::Failed(e),
            ..
        }) => {
            assert_eq!(e.kind(), ErrorKind::Timeout);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let silent = start.elapsed();
    assert!(
        silent.abs_diff(Duration::from_secs(30)) < Duration::from_millis(5),
        "{silent:?}"
    );
    // It reconnects and resumes from the event it saw.
    assert!(matches!(stream.next().await, Some(Ok(Item::Connected(_)))));
    let seen = seen.lock().expect("lock").clone();
    assert!(seen[1].head.contains("last-event-id: 0000000a-3\r\n"));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_ends_the_stream_without_retrying() {
    let (url, seen) = scripted(vec![Reply::Status(401), Reply::Status(503)]).await;
    let client = Client::new(&url).expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["*"]));
    let err = stream.next().await.expect("item").expect_err("401");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.is_permanent());
    assert_eq!(err.status(), Some(401));
    assert!(stream.next().await.is_none());
    // Give a wrongly scheduled retry every chance to happen.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn invalid_selectors_are_refused_before_connecting() {
    let client = Client::new("http://127.0.0.1:9").expect("client");
    let mut stream = std::pin::pin!(client.subscribe(["a/*/b*", ""]));
    let err = stream.next().await.expect("item").expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(stream.next().await.is_none());
}
