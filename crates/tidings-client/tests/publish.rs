//! Publishing against a scripted loopback server (tokio time paused): a transient failure
//! is retried with the same `Idempotency-Key` and body, each call gets a new key, a 4xx is
//! not retried, and retries are bounded.

use std::sync::{Arc, Mutex};

use tidings_client::{Client, ErrorKind, NewEvent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A request as the server saw it: lower-cased head, and body.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim())
        })
    }
}

/// Answers each request with the next `(status, body)`; 503 once the script is out.
async fn scripted(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= at + 4 + len {
                        let body = String::from_utf8_lossy(&buf[at + 4..at + 4 + len]).into_owned();
                        break (head, body);
                    }
                }
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            log.lock().expect("lock").push(Seen { head, body });
            let (status, body) = script.next().unwrap_or((503, "{}"));
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            // The client may have gone; nothing to do about it here.
            sock.write_all(answer.as_bytes()).await.ok();
        }
    });
    (url, seen)
}

fn event(n: u32) -> NewEvent {
    NewEvent::new("t/1", "tick", &serde_json::json!({ "n": n })).expect("event")
}

#[tokio::test(start_paused = true)]
async fn retries_reuse_the_idempotency_key_and_body_and_each_call_gets_a_new_one() {
    let (url, seen) = scripted(vec![
        (503, r#"{"error":{"code":"shutting_down","message":"bye"}}"#),
        (200, r#"{"ids":["0000000a-1"]}"#),
        (200, r#"{"ids":["0000000a-2","0000000a-3"]}"#),
    ])
    .await;
    let client = Client::builder(&url)
        .token("s3cret-token")
        .build()
        .expect("client");
    assert!(
        !format!("{client:?}").contains("s3cret"),
        "Debug hides the token"
    );
    let id = client
        .publish(&event(1))
        .await
        .expect("published after a retry")
        .expect("not coalesced");
    assert_eq!(id.to_string(), "0000000a-1");
    let ids = client
        .publish_batch(&[event(2), event(3)])
        .await
        .expect("batch");
    assert_eq!(ids.len(), 2);

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    let keys: Vec<&str> = seen
        .iter()
        .map(|s| s.header("idempotency-key").expect("an idempotency key"))
        .collect();
    assert_eq!(keys[0], keys[1], "a retry reuses its call's key");
    assert_ne!(keys[1], keys[2], "another call gets another key");
    assert_eq!(seen[0].body, seen[1].body, "a retry resends the same body");
    assert_eq!(
        seen[0].body,
        r#"{"topic":"t/1","type":"tick","data":{"n":1}}"#
    );
    assert!(seen[2].body.starts_with('['), "a batch is an array");
    assert_eq!(seen[0].header("authorization"), Some("bearer s3cret-token"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_event_is_not_retried() {
    let (url, seen) = scripted(vec![(
        422,
        r#"{"error":{"code":"invalid_type","message":"type: must not be empty"}}"#,
    )])
    .await;
    let client = Client::new(&url).expect("client");
    let err = client.publish(&event(1)).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.code(), Some(tidings_client::ErrorCode::InvalidType));
    assert_eq!(err.to_string(), "type: must not be empty (invalid_type)");
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_a_bounded_number_of_times() {
    let (url, seen) = scripted(Vec::new()).await;
    let client = Client::builder(&url)
        .publish_attempts(4)
        .build()
        .expect("client");
    let err = client.publish(&event(1)).await.expect_err("keeps failing");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!err.is_permanent());
    assert_eq!(seen.lock().expect("lock").len(), 4);
}

#[test]
fn events_are_checked_before_sending() {
    for (topic, ty) in [("", "t"), ("a*", "t"), ("a", "")] {
        let err = NewEvent::new(topic, ty, &1).expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    let e = event(1);
    assert!(e.clone().with_json("{not json").is_err());
    assert_eq!(
        e.with_json("{ \"a\" : [1, 2] }").expect("json").data.get(),
        r#"{"a":[1,2]}"#
    );
    assert!(Client::new("ftp://x").is_err());
    let no_tls = Client::new("https://hub.example").expect_err("no TLS in this build");
    assert!(no_tls.to_string().contains("no TLS"), "{no_tls}");
    assert!(
        Client::builder("http://x")
            .token("two\nlines")
            .build()
            .is_err()
    );
}
