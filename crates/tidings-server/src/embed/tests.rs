//! `Embedded` without a socket: in-process publishes get the HTTP path's codes and one id
//! sequence with it, and the routes answer under the application's prefix and state type.

use axum::body::Body;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tidings_proto::{ErrorCode, EventId};
use tower::ServiceExt as _;

use super::{Embedded, Outgoing};
use crate::RawConfig;

fn embedded(toml: &str) -> Embedded {
    let mut raw = RawConfig::from_toml(toml).expect("test config parses");
    raw.store.durability = Some("memory".to_owned());
    Embedded::build(raw.validate().expect("valid")).expect("builds")
}

/// The application's own state type, to show the routes fit any `Router<S>`.
#[derive(Clone)]
struct AppState {
    name: &'static str,
}

async fn send(
    app: axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, "127.0.0.1:8080");
    if body.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("answer");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn in_process_and_http_publishes_share_one_id_sequence_and_one_set_of_rules() {
    let tidings = embedded("");
    let app: axum::Router = axum::Router::new()
        .route(
            "/",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move { s.name },
            ),
        )
        .merge(tidings.router("/tidings"))
        .with_state(AppState { name: "downloads" });

    let first = tidings
        .publish(
            "downloads/abc-123",
            "queued",
            &json!({"DownloadID": "abc-123"}),
        )
        .await
        .expect("in-process publish")
        .expect("no coalescing: an id");
    let (status, answer) = send(
        app.clone(),
        Method::POST,
        "/tidings/publish",
        Some(json!({"topic": "downloads/abc-123", "type": "started", "data": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let second: EventId = answer["ids"][0]
        .as_str()
        .expect("an id")
        .parse()
        .expect("a Tidings id");
    assert_eq!((second.epoch, second.seq), (first.epoch, first.seq + 1));

    // The application's own routes still answer; unknown ones are not Tidings'.
    let (status, _) = send(app.clone(), Method::GET, "/tidings/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Refusals carry the codes POST /publish answers with.
    let bad_topic = tidings.publish("downloads/*", "queued", &json!({})).await;
    assert_eq!(
        bad_topic.expect_err("a selector is no topic").code,
        ErrorCode::InvalidTopic
    );
    let bad_type = tidings.publish("downloads/a", "", &json!({})).await;
    let err = bad_type.expect_err("an empty type");
    assert_eq!(err.code, ErrorCode::InvalidType);
    assert!(err.message.starts_with("type:"), "{}", err.message);
    let bad_key = tidings
        .publish_batch(&[Outgoing::new("a", "b", json!(1)).key("x\ny")], None)
        .await;
    assert_eq!(
        bad_key.expect_err("a key with a newline").code,
        ErrorCode::InvalidKey
    );
    let empty = tidings.publish_batch(&[], None).await;
    assert_eq!(
        empty.expect_err("an empty batch").code,
        ErrorCode::InvalidEvent
    );
    // The hub's own events cannot be forged in-process either.
    let forged = tidings.publish("downloads/a", "resumed", &json!({})).await;
    assert_eq!(
        forged.expect_err("a reserved name").code,
        ErrorCode::ReservedType
    );
}

#[tokio::test]
async fn limits_and_idempotency_keys_hold_in_process() {
    let tidings = embedded("[limits]\nmax_data_bytes = \"1KiB\"\nmax_batch_events = 2\n");
    let big = tidings
        .publish("a", "b", &json!({"blob": "x".repeat(2000)}))
        .await
        .expect_err("over the event size");
    assert_eq!(big.code, ErrorCode::EventTooLarge, "{big}");
    let three = vec![Outgoing::new("a", "b", json!(1)); 3];
    let err = tidings
        .publish_batch(&three, None)
        .await
        .expect_err("over the batch size");
    assert_eq!(err.code, ErrorCode::BatchTooLarge);

    let two = vec![
        Outgoing::new("a", "b", json!(1)),
        Outgoing::new("a", "c", json!(2)),
    ];
    let ids = tidings
        .publish_batch(&two, Some("k1"))
        .await
        .expect("keyed batch");
    let again = tidings
        .publish_batch(&two, Some("k1"))
        .await
        .expect("a retry");
    assert_eq!(ids, again, "a retried key returns the first ids");
    let next = tidings
        .publish("a", "d", &json!(null))
        .await
        .expect("publish")
        .expect("an id");
    assert_eq!(
        next.seq,
        ids[1].expect("an id").seq + 1,
        "the retry stored nothing"
    );
}

#[tokio::test]
async fn in_process_publishes_are_checked_against_the_schemas_too() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../profiles/schemas/downloads"
    );
    let tidings = embedded(&format!("schema_dirs = [{dir:?}]\n"));
    let err = tidings
        .publish(
            "downloads/abc-123",
            "paused",
            &json!({"DownloadID": "abc-123"}),
        )
        .await
        .expect_err("a payload missing its fields");
    assert_eq!(err.code, ErrorCode::SchemaMismatch, "{err}");
    assert!(err.message.starts_with("data: "), "{err}");
    assert!(err.message.contains("rule `required`"), "{err}");
    tidings
        .publish(
            "downloads/abc-123",
            "paused",
            &json!({"DownloadID": "abc-123", "Filename": "file.zip", "Downloaded": 52428800}),
        )
        .await
        .expect("the document's example");
}

#[tokio::test]
async fn shutdown_on_the_signal_refuses_new_publishes() {
    let tidings = embedded("");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = tokio::spawn(tidings.shutdown_on(async move {
        rx.await.ok();
    }));
    tidings
        .publish("a", "b", &json!(1))
        .await
        .expect("open before the signal");
    tx.send(()).expect("signal");
    stop.await.expect("shutdown task");
    let refused = tidings
        .publish("a", "b", &json!(1))
        .await
        .expect_err("closed");
    assert_eq!(refused.code, ErrorCode::ShuttingDown, "{refused}");
    tidings.close().await.expect("flush");
}
