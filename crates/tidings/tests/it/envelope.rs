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
