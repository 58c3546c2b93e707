//! Auth with static tokens: missing or invalid bearer → 401 on publish and subscribe;
//! publish or subscribe outside the grant → 403 naming the topic; granted actions work.

use serde_json::{Value, json};

use crate::support::Server;

const PUB: &str = "publisher-secret-1";
const SUB: &str = "subscriber-secret-1";
const BOTH: &str = "all-powerful-secret";

fn server() -> Server {
    Server::start(&[
        "--token",
        &format!("{PUB}:publish=allowed/*,exact/one"),
        "--token",
        &format!("{SUB}:subscribe=allowed/*"),
        "--token",
        &format!("{BOTH}:publish=*;subscribe=*"),
    ])
}

async fn publish_as(server: &Server, auth: Option<&str>, topic: &str) -> (u16, Value) {
    let mut req = server
        .http
        .post(server.url("/publish"))
        .json(&json!({"topic": topic, "type": "t", "data": 1}));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("publish");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

async fn subscribe_status(
    server: &Server,
    auth: Option<&str>,
    query: &str,
) -> (u16, Option<Value>) {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
    let resp = server.get_events(query, &headers).await;
    let status = resp.status().as_u16();
    if status == 200 {
        return (status, None);
    }
    (status, Some(resp.json().await.expect("json")))
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_invalid_credentials_are_401() {
    let server = server();
    let bad = [
        None,
        Some("Bearer wrong-secret-123"),
        Some("Basic abc"),
        Some("Bearer "),
        Some(PUB),
    ];
    for auth in bad {
        let (status, v) = publish_as(&server, auth, "allowed/x").await;
        assert_eq!(status, 401, "{auth:?}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized");
        let (status, v) = subscribe_status(&server, auth, "topic=allowed/*").await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(v.expect("body")["error"]["code"], "unauthorized");
    }
    assert_eq!(server.readyz().await["head"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_outside_the_grant_are_403_and_granted_ones_work() {
    let server = server();
    let pub_auth = format!("Bearer {PUB}");
    let sub_auth = format!("Bearer {SUB}");

    let (status, v) = publish_as(&server, Some(&pub_auth), "secret/x").await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("secret/x"),
        "{v}"
    );
    // A batch with one forbidden topic is refused whole, naming that event.
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("authorization", &pub_auth)
        .json(&json!([
            {"topic": "allowed/a", "type": "t"},
            {"topic": "exact/two", "type": "t"}
        ]))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.expect("json");
    let msg = v["error"]["message"].as_str().expect("msg");
    assert!(
        msg.contains("events[1].topic") && msg.contains("exact/two"),
        "{v}"
    );
    // The subscriber token may not publish.
    let (status, _) = publish_as(&server, Some(&sub_auth), "allowed/x").await;
    assert_eq!(status, 403);

    for query in [
        "topic=secret/*",
        "",
        "topic=*",
        "topic=allowed/a&topic=other",
        "topic=allow*",
    ] {
        let (status, v) = subscribe_status(&server, Some(&sub_auth), query).await;
        assert_eq!(status, 403, "{query:?}: {v:?}");
        assert_eq!(v.expect("body")["error"]["code"], "forbidden");
    }
    // The publisher token may not subscribe.
    let (status, _) = subscribe_status(&server, Some(&pub_auth), "topic=allowed/*").await;
    assert_eq!(status, 403);

    // Allowed: subscribe within the grant, publish within the grant.
    let mut sub = server
        .subscribe_with("topic=allowed/*", &[("authorization", &sub_auth)])
        .await;
    let mut narrow = server
        .subscribe_with("topic=allowed/a/b", &[("authorization", &sub_auth)])
        .await;
    sub.expect_retry().await;
    narrow.expect_retry().await;
    let (status, v) = publish_as(&server, Some(&pub_auth), "allowed/a/b").await;
    assert_eq!(status, 200, "{v}");
    let id = v["ids"][0].as_str().expect("id").to_owned();
    let (status, _) = publish_as(&server, Some(&pub_auth), "exact/one").await;
    assert_eq!(status, 200);
    let (status, _) = publish_as(&server, Some(&format!("bearer {BOTH}")), "anything").await;
    assert_eq!(status, 200, "the scheme is case-insensitive");
    assert_eq!(sub.next_event().await.last_event_id, id);
    assert_eq!(narrow.next_event().await.last_event_id, id);
    let mut everything = server
        .subscribe_with(
            "lastEventId=earliest",
            &[("authorization", &format!("Bearer {BOTH}"))],
        )
        .await;
    assert_eq!(everything.events(3).await.len(), 3);
}
