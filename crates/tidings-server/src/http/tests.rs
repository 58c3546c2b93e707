//! The REST routes without a socket: `router(state).oneshot(request)` against a hub built by
//! `App::build` on a memory store. Status, the stable error code and the field named in the
//! message are checked for each bad input; the real-socket suite is crates/tidings/tests/it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::{App, RawConfig, router};

/// A router over a fresh memory-store hub configured by `toml` (file syntax).
fn hub(toml: &str) -> Router {
    let mut raw = RawConfig::from_toml(toml).expect("test config parses");
    raw.store.durability = Some("memory".to_owned());
    let config = raw.validate().expect("test config is valid");
    let endpoints = config.endpoints.clone();
    let app = App::build(config).expect("memory hub builds");
    router(app.state().clone(), &endpoints)
}

fn request(method: Method, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(HOST, "127.0.0.1:1700")
}

fn publish(body: impl Into<Body>) -> Request<Body> {
    request(Method::POST, "/publish")
        .header(CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

/// Sends `req` and returns the status and the JSON body (which every route answers with).
/// Every answer here is due at once: a request left waiting fails after a few seconds.
async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let answer = tokio::time::timeout(Duration::from_secs(5), router.clone().oneshot(req));
    let resp = answer.await.expect("answered at once").expect("infallible");
    let status = resp.status();
    let ct = resp.headers().get(CONTENT_TYPE).cloned();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(
        ct.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

#[track_caller]
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str, names: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(message.contains(names), "{message:?} should name {names:?}");
}

#[tokio::test]
async fn publish_accepts_an_event_and_a_batch_and_answers_their_ids() {
    let hub = hub("");
    let (status, body) = send(
        &hub,
        publish(r#"{"topic":"a/b","type":"t","data":{"n":1}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(1), "{body}");

    let batch = json!([{"topic": "a", "type": "t"}, {"topic": "a", "type": "u", "key": "k"}]);
    let (status, body) = send(&hub, publish(batch.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids = body["ids"].as_array().expect("ids");
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    let (_, ready) = send(
        &hub,
        request(Method::GET, "/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(ready["head"], 3, "{ready}");
}

#[tokio::test]
async fn publish_refuses_bad_bodies_with_their_code_and_field() {
    let hub = hub(
        "[limits]\nmax_batch_events = 2\nmax_body_bytes = \"1KiB\"\nmax_data_bytes = \"64B\"\n",
    );
    let cases: Vec<(Request<Body>, u16, &str, &str)> = vec![
        (
            request(Method::POST, "/publish")
                .body(Body::from(r#"{"topic":"a","type":"t"}"#))
                .unwrap(),
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            request(Method::POST, "/publish")
                .header(CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"topic":"a","type":"t"}"#))
                .unwrap(),
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (publish("{"), 400, "malformed_json", "body"),
        (publish("[]"), 422, "invalid_event", "batch is empty"),
        (
            publish("7"),
            422,
            "invalid_event",
            "event: expected a JSON object",
        ),
        (
            publish(r#"{"topic":"a","type":"t","colour":1}"#),
            422,
            "invalid_event",
            "colour",
        ),
        (
            publish(r#"{"type":"t"}"#),
            422,
            "invalid_topic",
            "topic: is required",
        ),
        (
            publish(r#"{"topic":"downloads/*","type":"t"}"#),
            422,
            "invalid_topic",
            "topic: must not end with `*`",
        ),
        (
            publish(r#"{"topic":"a"}"#),
            422,
            "invalid_type",
            "type: is required",
        ),
        (
            publish(r#"[{"topic":"a","type":"t"},{"topic":"a","type":""}]"#),
            422,
            "invalid_type",
            "events[1].type",
        ),
        (
            publish(r#"{"topic":"a","type":"t","key":""}"#),
            422,
            "invalid_key",
            "key",
        ),
        (
            publish(
                r#"[{"topic":"a","type":"t"},{"topic":"a","type":"t"},{"topic":"a","type":"t"}]"#,
            ),
            413,
            "batch_too_large",
            "limit is 2",
        ),
        (
            publish(format!(
                r#"{{"topic":"a","type":"t","data":"{}"}}"#,
                "x".repeat(100)
            )),
            413,
            "event_too_large",
            "data",
        ),
        (
            publish(format!(
                r#"{{"topic":"a","type":"t","data":"{}"}}"#,
                "x".repeat(2000)
            )),
            413,
            "body_too_large",
            "1024 bytes",
        ),
        (
            request(Method::POST, "/publish")
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_LENGTH, "5000")
                .body(Body::from(r#"{"topic":"a","type":"t"}"#))
                .unwrap(),
            413,
            "body_too_large",
            "body",
        ),
        (
            request(Method::POST, "/publish")
                .header(CONTENT_TYPE, "application/json")
                .header("idempotency-key", "")
                .body(Body::from(r#"{"topic":"a","type":"t"}"#))
                .unwrap(),
            400,
            "invalid_parameter",
            "Idempotency-Key",
        ),
    ];
    for (i, (req, status, code, names)) in cases.into_iter().enumerate() {
        let got = send(&hub, req).await;
        assert!(got.0.as_u16() == status, "case {i}: {got:?}");
        assert_error(&got, status, code, names);
    }
    let (_, ready) = send(
        &hub,
        request(Method::GET, "/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        ready["head"], 0,
        "a refused publish stored something: {ready}"
    );
}

#[tokio::test]
async fn publish_checks_the_credential_and_its_grant() {
    let hub = hub(
        "listen = \"0.0.0.0:1700\"\n[[auth.tokens]]\ntoken = \"downloads-secret\"\npublish = [\"downloads/*\"]\n",
    );
    let with = |token: Option<&str>, body: &str| {
        let mut req = request(Method::POST, "/publish").header(CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        req.body(Body::from(body.to_owned())).unwrap()
    };
    let event = r#"{"topic":"downloads/1","type":"t"}"#;
    let got = send(&hub, with(None, event)).await;
    assert_error(&got, 401, "unauthorized", "Authorization: Bearer");
    let got = send(&hub, with(Some("wrong-secret"), event)).await;
    assert_error(&got, 401, "unauthorized", "bearer token is not valid");
    assert!(!got.1.to_string().contains("wrong-secret"), "{}", got.1);
    let got = send(
        &hub,
        with(Some("downloads-secret"), r#"{"topic":"system","type":"t"}"#),
    )
    .await;
    assert_error(&got, 403, "forbidden", "system");
    let (status, body) = send(&hub, with(Some("downloads-secret"), event)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn health_and_readiness() {
    let hub = hub("");
    let (status, body) = send(
        &hub,
        request(Method::GET, "/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
    let (status, body) = send(
        &hub,
        request(Method::GET, "/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["head"], 0, "{body}");
    assert_eq!(body["subscribers"], 0, "{body}");
    assert!(body["epoch"].is_string(), "{body}");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let hub = hub("");
    let got = send(
        &hub,
        request(Method::GET, "/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(&got, 404, "not_found", "no such route");
    let got = send(
        &hub,
        request(Method::GET, "/publish")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&got, 405, "method_not_allowed", "method");
    let got = send(
        &hub,
        request(Method::POST, "/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&got, 405, "method_not_allowed", "method");
    let got = send(
        &hub,
        request(Method::DELETE, "/events")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&got, 405, "method_not_allowed", "method");
}

fn poll(query: &str) -> Request<Body> {
    request(Method::GET, &format!("/events?poll=1&{query}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn long_poll_with_timeout_0_answers_at_once() {
    let hub = hub("");
    // Nothing stored: an empty answer with the cursor to poll from, without waiting.
    let (status, body) = send(&hub, poll("timeout=0")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], json!([]), "{body}");
    let empty_cursor = body["cursor"].as_str().expect("cursor").to_owned();

    let batch = json!([
        {"topic": "a", "type": "t", "data": 1},
        {"topic": "b", "type": "t", "data": 2},
        {"topic": "a", "type": "u", "data": 3},
    ]);
    let (_, published) = send(&hub, publish(batch.to_string())).await;
    let ids = published["ids"].as_array().expect("ids").clone();

    let (status, body) = send(&hub, poll(&format!("timeout=0&lastEventId={empty_cursor}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().expect("events");
    let datas: Vec<&Value> = events.iter().map(|e| &e["data"]).collect();
    assert_eq!(datas, [&json!(1), &json!(2), &json!(3)], "{body}");
    assert_eq!(body["cursor"], ids[2], "{body}");

    let (_, body) = send(
        &hub,
        poll(&format!("timeout=0&topic=a&lastEventId={empty_cursor}")),
    )
    .await;
    let datas: Vec<&Value> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(datas, [&json!(1), &json!(3)], "topic filter: {body}");

    let (_, body) = send(
        &hub,
        poll(&format!(
            "timeout=0&lastEventId={}",
            body["cursor"].as_str().unwrap()
        )),
    )
    .await;
    assert_eq!(
        body["events"],
        json!([]),
        "nothing after the last id: {body}"
    );

    let got = send(&hub, poll("timeout=soon")).await;
    assert_error(&got, 400, "invalid_parameter", "timeout");
    let got = send(&hub, poll("topic=a%01")).await;
    assert_error(&got, 422, "invalid_topic", "topic");
    let got = send(&hub, poll("colour=red")).await;
    assert_error(&got, 400, "invalid_parameter", "colour");
}

/// The OpenAPI document names exactly the routes the router serves: the fixed ones and every
/// endpoint of the main listener; each documented operation reaches its handler (no 404
/// `not_found` or 405 from the fallbacks); every error code is in the error schema.
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let toml = "[[endpoints]]\nname = \"feed\"\npath = \"/feed\"\nshape = \"envelope\"\n\
                query_token = \"token\"\n";
    let hub = hub(toml);
    let endpoints = {
        let mut raw = RawConfig::from_toml(toml).unwrap();
        raw.store.durability = Some("memory".to_owned());
        raw.validate().unwrap().endpoints
    };
    let resp = hub
        .clone()
        .oneshot(
            request(Method::GET, "/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, super::openapi::document(&endpoints));

    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    documented.sort();
    let mut served: Vec<(String, String)> = super::openapi::FIXED_ROUTES
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .chain(endpoints.iter().map(|e| (e.path.clone(), "get".to_owned())))
        .chain(
            endpoints
                .iter()
                .filter(|e| e.path == super::router::BUILT_IN_PATH)
                .map(|_| ("/snapshot".to_owned(), "get".to_owned())),
        )
        .collect();
    served.sort();
    assert_eq!(documented, served);

    for (path, method) in &documented {
        let fixed = super::openapi::FIXED_ROUTES.iter().any(|(p, _)| p == path);
        let uri = if fixed {
            path.clone()
        } else {
            format!("{path}?poll=1&timeout=0")
        };
        let req = match method.as_str() {
            "get" => request(Method::GET, &uri),
            "delete" => request(Method::DELETE, &uri.replace("{id}", "123")),
            "post" => request(Method::POST, &uri).header(CONTENT_TYPE, "application/json"),
            other => panic!("undocumented method {other}"),
        };
        let req = req.body(Body::from("{}")).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), hub.clone().oneshot(req))
            .await
            .expect("answered")
            .unwrap();
        let status = resp.status().as_u16();
        let streaming = resp
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"text/event-stream");
        // A stream (the dashboard's) answered 200 and never ends: its head is the answer.
        let body = if streaming {
            Default::default()
        } else {
            axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap()
        };
        let text = String::from_utf8_lossy(&body);
        assert!(
            status != 405 && !(status == 404 && text.contains("no such route")),
            "{method} {uri} is documented but not routed: {status} {text}"
        );
    }

    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["const"].as_str().unwrap())
        .collect();
    let all: Vec<&str> = tidings_proto::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(codes, all);
}
