//! The envelope shape end to end: a payload with its own `type` field is framed with the
//! event's type only (one `type` key), on an envelope endpoint; the event shape is unchanged.

use serde_json::json;

use crate::support::Server;

#[tokio::test]
async fn the_event_type_wins_over_a_payloads_own_type_in_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tasks.toml");
    std::fs::write(
        &config,
        r#"
        [[endpoints]]
        name = "tasks"
        path = "/tasks"
        shape = "envelope"
        "#,
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let id = server
        .publish_one(
            "tasks/queue",
            "queue-update",
            json!({"type": "task-finished", "uploadQueued": 3}),
        )
        .await;
    let get = |path: String| {
        let http = server.http.clone();
        async move {
            let resp = http.get(path).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.text().await.unwrap()
        }
    };
    let body = get(server.url("/tasks?poll=1&timeout=0&lastEventId=earliest")).await;
    let frame = format!(
        r#"{{"success":true,"id":"{id}","data":{{"type":"queue-update","uploadQueued":3}}}}"#
    );
    assert!(body.contains(&frame), "{body}");
    assert_eq!(body.matches(r#""type""#).count(), 1, "{body}");
    // The event shape on /events keeps the payload as published.
    let body = get(server.url("/events?poll=1&timeout=0&lastEventId=earliest")).await;
    assert!(
        body.contains(r#""type":"queue-update","data":{"type":"task-finished","uploadQueued":3}"#),
        "{body}"
    );
}

/// `sse_data = "envelope"`: an SSE stream whose `data:` is the envelope frame, while the
/// `event:` line and the `id:` stay the event's own.
#[tokio::test]
async fn sse_data_can_be_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sse.toml");
    std::fs::write(
        &config,
        r#"
        [[endpoints]]
        name = "wrapped"
        path = "/wrapped"
        sse_data = "envelope"
        "#,
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let id = server
        .publish_one("tasks/queue", "queue-update", json!({"uploadQueued": 3}))
        .await;
    let resp = server
        .http
        .get(server.url("/wrapped?lastEventId=earliest"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = crate::support::SseClient::new(resp);
    let event = sse.next_event().await;
    assert_eq!(event.last_event_id, id);
    assert_eq!(event.event, "queue-update");
    assert_eq!(
        event.data,
        format!(
            r#"{{"success":true,"id":"{id}","data":{{"type":"queue-update","uploadQueued":3}}}}"#
        )
    );
    // The built-in /events keeps the payload untouched.
    let resp = server
        .http
        .get(server.url("/events?lastEventId=earliest"))
        .send()
        .await
        .unwrap();
    let event = crate::support::SseClient::new(resp).next_event().await;
    assert_eq!(event.data, r#"{"uploadQueued":3}"#);
}
