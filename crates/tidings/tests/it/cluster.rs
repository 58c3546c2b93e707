//! Cluster mode end to end: a real `nats-server -js` (free loopback port, temporary store
//! directory, killed on drop) and three `tidings serve --cluster-nats` nodes. Publish on A,
//! receive on B and C over SSE with the same ids; resume on C with an id seen on B (no gap,
//! no duplicate); NATS down: publish 503 `store_unavailable` and `/readyz` 503, then back up
//! and resume with no gap.

use std::time::{Duration, Instant};

use serde_json::json;
use tidings_cluster_nats::testing::NatsServer as Nats;

use crate::support::{Server, parse_id};

fn node(nats: &Nats, stream: &str) -> Server {
    Server::start(&["--cluster-nats", &nats.url(), "--cluster-stream", stream])
}

/// `GET path`'s status.
async fn status(server: &Server, path: &str) -> u16 {
    server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls until `path` answers `want`, for at most 20 s.
async fn until_status(server: &Server, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if status(server, path).await == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_on_one_node_reaches_every_node_with_the_same_ids_and_resumes_on_another() {
    let nats = Nats::start();
    let (a, b, c) = (node(&nats, "E1"), node(&nats, "E1"), node(&nats, "E1"));
    let mut on_b = b.subscribe("").await;
    let mut on_c = c.subscribe("").await;
    on_b.expect_retry().await;
    on_c.expect_retry().await;
    b.wait_subscribers(1).await;
    c.wait_subscribers(1).await;
    // Topics NATS could not carry as they are: a space, `.`, `*`, `>`, empty segments.
    let topics = [
        "cloudreve://my/a b.jpg",
        "a.b/*x",
        "x/>",
        "plain/1",
        "plain/2",
    ];
    let mut published = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        published.push(a.publish_one(topic, "changed", json!({ "i": i })).await);
    }
    let (epoch, first) = parse_id(&published[0]);
    for (i, id) in published.iter().enumerate() {
        assert_eq!(
            parse_id(id),
            (epoch.clone(), first + i as u64),
            "one id space"
        );
    }
    let on_b_events = on_b.events(5).await;
    let on_c_events = on_c.events(5).await;
    for events in [&on_b_events, &on_c_events] {
        let ids: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
        assert_eq!(ids, published, "same ids on every node");
    }
    assert_eq!(on_c_events[0].data, r#"{"i":0}"#);
    // A client that saw up to published[1] on B resumes on C: exactly what it missed, then
    // what is published after, from any node.
    let mut resumed = c
        .subscribe_with("", &[("Last-Event-ID", &published[1])])
        .await;
    resumed.expect_retry().await;
    let later = b.publish_one("plain/3", "changed", json!({ "i": 5 })).await;
    let mut want: Vec<String> = published[2..].to_vec();
    want.push(later);
    assert_eq!(resumed.ids(4).await, want, "no gap, no duplicate");
    resumed.expect_no_event(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_refuses_publishes_and_readiness_then_streams_resume_without_gap() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats, "E2"), node(&nats, "E2"));
    let mut on_b = b.subscribe("").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let before = a.publish_one("t/1", "changed", json!(1)).await;
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&before));
    nats.kill();
    until_status(&a, "/readyz", 503).await;
    let (code, body) = a
        .publish_raw(&json!({"topic": "t/1", "type": "changed", "data": 2}), &[])
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert!(
        !body.to_string().contains("NATS"),
        "the cause stays in the log: {body}"
    );
    nats.restart();
    until_status(&a, "/readyz", 200).await;
    until_status(&b, "/readyz", 200).await;
    let after = a.publish_one("t/1", "changed", json!(3)).await;
    // B's stream stayed open through the outage and continues with the next id.
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&after));
    assert_eq!(
        parse_id(&after).1,
        parse_id(&before).1 + 1,
        "nothing of the refused publish"
    );
}
