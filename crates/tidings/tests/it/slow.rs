//! Slow subscribers: a connection that stops reading is cut off with `reconnect-required`
//! (`slow_consumer`) while publishers and other subscribers carry on unaffected.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Server, dechunk, read_until};

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_subscriber_is_told_to_reconnect_without_slowing_anyone() {
    let server = std::sync::Arc::new(Server::start(&[
        "--durability",
        "memory",
        // Room for a reader that the test machine's load delays by a few events, far less
        // than the 400 × 50 KB the slow one is sent.
        "--subscriber-queue",
        "64",
    ]));
    // The slow one: sends its request, reads the head, then stops reading.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(
        b"GET /events?topic=slow/* HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut slow_buf = Vec::new();
    read_until(&mut slow, &mut slow_buf, Duration::from_secs(10), |b| {
        b.windows(9).any(|w| w == b"retry: 20")
    })
    .await;
    let mut normal = server.subscribe("topic=slow/*").await;
    normal.expect_retry().await;

    const N: usize = 400;
    let payload = "p".repeat(50_000);
    let reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(N);
        for _ in 0..N {
            let ev = normal.next_event().await;
            assert_eq!(ev.data.len(), 50_002);
            ids.push(ev.last_event_id);
        }
        ids
    });
    let mut published = Vec::with_capacity(N);
    for i in 0..N {
        published.push(
            server
                .publish_one(&format!("slow/{}", i % 3), "big", json!(payload))
                .await,
        );
    }
    let received = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the normal subscriber fell behind")
        .expect("reader");
    assert_eq!(received, published);

    // Now read the slow socket to its end.
    let mut rest = slow_buf;
    let read = async {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("the slow stream never ended");
    let (head, body, complete) = dechunk(&rest);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(complete, "the slow stream did not end with the last chunk");
    let text = String::from_utf8_lossy(&body);
    let notice = "event: reconnect-required\ndata: {\"reason\":\"slow_consumer\"}\n\n";
    assert!(
        text.ends_with(notice),
        "the slow stream ends with: {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    let delivered = text.matches("event: big\n").count();
    assert!(
        delivered < N,
        "the slow subscriber got everything ({delivered}); the test did not make it slow"
    );
    server.assert_works().await;
}
