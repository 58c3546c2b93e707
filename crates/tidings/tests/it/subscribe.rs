//! `GET /events`: response headers, the `retry:` line, exact frame bytes, selectors (exact,
//! prefix, `*`, several, type filter), per-topic order under concurrent publishers, keepalive.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tidings_proto::sse::SseItem;

use crate::support::Server;

#[tokio::test(flavor = "multi_thread")]
async fn headers_retry_line_and_exact_frame_bytes() {
    let server = Server::start(&["--sse-retry", "1500ms", "--sse-keepalive", "0s"]);
    let resp = server.get_events("topic=f/x", &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    let mut body = resp.bytes_stream();

    // Sent with whitespace and unsorted keys: delivered compact, in the publisher's order.
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("content-type", "application/json")
        .body(concat!(
            r#"{"topic": "f/x", "type": "progress","#,
            "\n",
            r#" "data": { "b" : [1, 2, {"c": null}],"#,
            "\n\t",
            r#" "a": "é\n\"q\" \u00e9 x" } }"#
        ))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    let id = v["ids"][0].as_str().expect("id").to_owned();
    let expected = format!(
        "retry: 1500\n\nid: {id}\nevent: progress\ndata: {}\n\n",
        r#"{"b":[1,2,{"c":null}],"a":"é\n\"q\" \u00e9 x"}"#
    );
    let mut raw = Vec::new();
    let read = async {
        while raw.len() < expected.len() {
            match body.next().await {
                Some(Ok(b)) => raw.extend_from_slice(&b),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("frame in time");
    assert_eq!(String::from_utf8_lossy(&raw), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn selectors_exact_prefix_all_several_and_type_filter() {
    let server = Server::start(&[]);
    let mut exact = server.subscribe("topic=downloads/a").await;
    let mut prefix = server.subscribe("topic=downloads/*").await;
    let mut all = server.subscribe("topic=*").await;
    let mut default = server.subscribe("").await;
    let mut several = server
        .subscribe("topic=downloads/a&topic=cloud%3A%2F%2Fmy%2F*")
        .await;
    let mut typed = server
        .subscribe("topic=downloads/*&type=complete&type=error")
        .await;
    let mut ignored = server.subscribe("topic=downloads/b&_=12345").await;
    for s in [
        &mut exact,
        &mut prefix,
        &mut all,
        &mut default,
        &mut several,
        &mut typed,
        &mut ignored,
    ] {
        s.expect_retry().await;
    }
    let events = [
        ("downloads/a", "progress"),
        ("downloads/ab", "complete"),
        ("downloads/b/c", "error"),
        ("downloads", "complete"),
        ("cloud://my/photos/x.jpg", "created"),
        ("cloud://your/x", "created"),
        ("downloads/a", "complete"),
        ("downloads/b", "paused"),
    ];
    let mut ids = Vec::new();
    for (topic, ty) in events {
        ids.push(server.publish_one(topic, ty, json!({"topic": topic})).await);
    }
    // A final marker on every topic family lets each subscriber know when to stop reading.
    let picks = |f: &dyn Fn(&str, &str) -> bool| -> Vec<String> {
        events
            .iter()
            .zip(&ids)
            .filter(|((t, ty), _)| f(t, ty))
            .map(|(_, id)| id.clone())
            .collect()
    };
    let cases: Vec<(&str, &mut crate::support::SseClient, Vec<String>)> = vec![
        ("exact", &mut exact, picks(&|t, _| t == "downloads/a")),
        (
            "prefix",
            &mut prefix,
            picks(&|t, _| t.starts_with("downloads/")),
        ),
        ("all", &mut all, ids.clone()),
        ("default", &mut default, ids.clone()),
        (
            "several",
            &mut several,
            picks(&|t, _| t == "downloads/a" || t.starts_with("cloud://my/")),
        ),
        (
            "typed",
            &mut typed,
            picks(&|t, ty| t.starts_with("downloads/") && (ty == "complete" || ty == "error")),
        ),
        (
            "ignored-param",
            &mut ignored,
            picks(&|t, _| t == "downloads/b"),
        ),
    ];
    for (name, sub, want) in cases {
        let got: Vec<String> = sub.ids(want.len()).await;
        assert_eq!(got, want, "{name}");
        sub.expect_no_event(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_subscriptions_are_4xx_json() {
    let server = Server::start(&["--max-topics", "2"]);
    for (query, status, code) in [
        ("topics=a", 400, "invalid_parameter"),
        ("topic=", 422, "invalid_topic"),
        ("topic=a&topic=b&topic=c", 422, "invalid_topic"),
        ("type=", 422, "invalid_type"),
    ] {
        let resp = server.get_events(query, &[]).await;
        assert_eq!(resp.status().as_u16(), status, "{query}");
        let v: Value = resp.json().await.expect("json error");
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_topic_order_holds_under_concurrent_publishers() {
    let server = std::sync::Arc::new(Server::start(&["--durability", "memory"]));
    let mut sub = server.subscribe("topic=order/*").await;
    sub.expect_retry().await;
    const TOPICS: usize = 4;
    const PER_TOPIC: u64 = 150;
    let mut tasks = Vec::new();
    for t in 0..TOPICS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let topic = format!("order/{t}");
            let mut n = 0;
            while n < PER_TOPIC {
                // Mix single events and small batches.
                if n % 7 == 3 && n + 3 <= PER_TOPIC {
                    let batch: Vec<Value> = (n..n + 3)
                        .map(|i| json!({"topic": topic, "type": "n", "data": {"t": t, "n": i}}))
                        .collect();
                    server.publish(&Value::Array(batch)).await;
                    n += 3;
                } else {
                    server
                        .publish_one(&topic, "n", json!({"t": t, "n": n}))
                        .await;
                    n += 1;
                }
            }
        }));
    }
    let total = TOPICS as u64 * PER_TOPIC;
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq = 0;
    for _ in 0..total {
        let ev = sub.next_event().await;
        let seq: u64 = ev
            .last_event_id
            .split_once('-')
            .expect("id")
            .1
            .parse()
            .expect("seq");
        assert!(
            seq > last_seq,
            "ids went backwards: {} after seq {last_seq}",
            ev.last_event_id
        );
        last_seq = seq;
        let v: Value = serde_json::from_str(&ev.data).expect("json data");
        let topic = v["t"].to_string();
        let want = next.entry(topic.clone()).or_insert(0);
        assert_eq!(v["n"], *want, "order/{topic}: out of order live");
        *want += 1;
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    // Order per topic, checked via a second replay that filters one topic at a time.
    for t in 0..TOPICS {
        let mut sub = server
            .subscribe(&format!("topic=order/{t}&lastEventId=earliest"))
            .await;
        for want in 0..PER_TOPIC {
            let ev = sub.next_event().await;
            let v: Value = serde_json::from_str(&ev.data).expect("json");
            assert_eq!(v["n"], want, "order/{t}: out of order");
        }
        sub.expect_no_event(Duration::from_millis(100)).await;
    }
    assert!(next.values().all(|n| *n == PER_TOPIC), "{next:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_topic_order_live() {
    let server = std::sync::Arc::new(Server::start(&["--durability", "memory"]));
    const TOPICS: usize = 3;
    const PER_TOPIC: u64 = 200;
    let mut subs = Vec::new();
    for t in 0..TOPICS {
        let mut s = server.subscribe(&format!("topic=live/{t}")).await;
        s.expect_retry().await;
        subs.push(s);
    }
    let mut tasks = Vec::new();
    for t in 0..TOPICS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_TOPIC {
                server
                    .publish_one(&format!("live/{t}"), "n", json!(n))
                    .await;
            }
        }));
    }
    for (t, sub) in subs.iter_mut().enumerate() {
        for want in 0..PER_TOPIC {
            let ev = sub.next_event().await;
            assert_eq!(ev.data, want.to_string(), "live/{t} out of order");
        }
    }
    for t in tasks {
        t.await.expect("publisher");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_comment_arrives() {
    let server = Server::start(&["--sse-keepalive", "300ms"]);
    let mut sub = server.subscribe("topic=k").await;
    sub.expect_retry().await;
    let mut comments = 0;
    while comments < 2 {
        match sub.next_item_within(Duration::from_secs(5)).await {
            Some(SseItem::Comment(c)) => {
                assert_eq!(c, "keepalive");
                comments += 1;
            }
            other => panic!("expected a keepalive comment, got {other:?}"),
        }
    }
    // Keepalives stay off with 0s.
    let quiet = Server::start(&["--sse-keepalive", "0s"]);
    let mut sub = quiet.subscribe("topic=k").await;
    sub.expect_retry().await;
    let idle = tokio::time::timeout(Duration::from_millis(800), sub.next_item()).await;
    assert!(
        idle.is_err(),
        "something arrived with keepalive off: {idle:?}"
    );
}
