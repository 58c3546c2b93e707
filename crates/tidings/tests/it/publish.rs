//! `POST /publish`: ids of single events and batches, every error status and code with a
//! message naming the field, all-or-nothing batches, idempotency keys and size limits.

use serde_json::{Value, json};

use crate::support::{Server, ids_of, parse_id};

#[tokio::test(flavor = "multi_thread")]
async fn single_and_batch_ids_share_the_epoch_and_increase() {
    let server = Server::start(&[]);
    let first = server.publish_one("p/a", "created", json!({"n": 1})).await;
    let batch = server
        .publish(&json!([
            {"topic": "p/a", "type": "t", "data": 1},
            {"topic": "p/b", "type": "t", "data": "two", "key": "k2"},
            {"topic": "p/c", "type": "t"}
        ]))
        .await;
    assert_eq!(batch.len(), 3);
    let (epoch, seq0) = parse_id(&first);
    let mut last = seq0;
    for id in &batch {
        let (e, seq) = parse_id(id);
        assert_eq!(e, epoch, "{id} is from another epoch than {first}");
        assert_eq!(
            seq,
            last + 1,
            "batch ids are not consecutive: {batch:?} after {first}"
        );
        last = seq;
    }
    let ready = server.readyz().await;
    assert_eq!(ready["epoch"], epoch.as_str());
    assert_eq!(ready["head"], last);

    // What was published is what is delivered (data compacted, missing data is null).
    let mut sub = server.subscribe("lastEventId=earliest").await;
    let evs = sub.events(4).await;
    let got: Vec<(&str, &str, &str)> = evs
        .iter()
        .map(|e| (e.last_event_id.as_str(), e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (first.as_str(), "created", r#"{"n":1}"#),
            (batch[0].as_str(), "t", "1"),
            (batch[1].as_str(), "t", r#""two""#),
            (batch[2].as_str(), "t", "null"),
        ]
    );
}

async fn expect_error(
    server: &Server,
    content_type: &str,
    body: &str,
    status: u16,
    code: &str,
    field: &str,
) {
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("publish");
    let got = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body for {body:?} is not JSON ({e}): {text}"));
    assert_eq!(got, status, "{body:?} → {text}");
    assert_eq!(v["error"]["code"], code, "{body:?} → {text}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains(field),
        "{body:?}: message {msg:?} does not name {field:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_its_status_code_and_names_the_field() {
    let server = Server::start(&["--max-batch-events", "3", "--max-data-bytes", "100"]);
    let json_ct = "application/json";
    let ok = r#"{"topic":"a","type":"t","data":1}"#;
    expect_error(
        &server,
        "text/plain",
        ok,
        415,
        "unsupported_media_type",
        "Content-Type",
    )
    .await;
    expect_error(
        &server,
        "",
        ok,
        415,
        "unsupported_media_type",
        "Content-Type",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"#,
        400,
        "malformed_json",
        "body",
    )
    .await;
    expect_error(&server, json_ct, "", 400, "malformed_json", "body").await;
    expect_error(&server, json_ct, "[]", 422, "invalid_event", "body").await;
    expect_error(&server, json_ct, "42", 422, "invalid_event", "event").await;
    expect_error(
        &server,
        json_ct,
        r#"[{"topic":"a","type":"t"}, 7]"#,
        422,
        "invalid_event",
        "events[1]",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"a","type":"t","colour":1}"#,
        422,
        "invalid_event",
        "colour",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"type":"t"}"#,
        422,
        "invalid_topic",
        "topic",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"","type":"t"}"#,
        422,
        "invalid_topic",
        "topic",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"a*","type":"t"}"#,
        422,
        "invalid_topic",
        "topic",
    )
    .await;
    let long_topic = format!(r#"{{"topic":"{}","type":"t"}}"#, "x".repeat(1025));
    expect_error(&server, json_ct, &long_topic, 422, "invalid_topic", "topic").await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"a","type":"a\nb"}"#,
        422,
        "invalid_type",
        "type",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"a"}"#,
        422,
        "invalid_type",
        "type",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"[{"topic":"a","type":"t"},{"topic":"a","type":""}]"#,
        422,
        "invalid_type",
        "events[1].type",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"{"topic":"a","type":"t","key":""}"#,
        422,
        "invalid_key",
        "key",
    )
    .await;
    expect_error(
        &server,
        json_ct,
        r#"[{"topic":"a","type":"t"},{"topic":"a","type":"t"},{"topic":"a","type":"t","key":"a\u0000"}]"#,
        422,
        "invalid_key",
        "events[2].key",
    )
    .await;
    let four = r#"[{"topic":"a","type":"t"},{"topic":"a","type":"t"},{"topic":"a","type":"t"},{"topic":"a","type":"t"}]"#;
    expect_error(&server, json_ct, four, 413, "batch_too_large", "3").await;
    let big = format!(
        r#"[{{"topic":"a","type":"t"}},{{"topic":"a","type":"t","data":"{}"}}]"#,
        "x".repeat(200)
    );
    expect_error(
        &server,
        json_ct,
        &big,
        413,
        "event_too_large",
        "events[1].data",
    )
    .await;
    let big_one = format!(r#"{{"topic":"a","type":"t","data":"{}"}}"#, "x".repeat(200));
    expect_error(&server, json_ct, &big_one, 413, "event_too_large", "data").await;
    // Media type parameters and +json are fine.
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("content-type", "application/json; charset=utf-8")
        .body(ok)
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 200);
    // Nothing of the refused publishes was stored: only the one good event.
    assert_eq!(server.readyz().await["head"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_bad_event_publishes_nothing() {
    let server = Server::start(&[]);
    let before = server.publish_one("b/x", "before", json!(0)).await;
    let (status, body) = server
        .publish_raw(
            &json!([
                {"topic": "b/x", "type": "t", "data": 1},
                {"topic": "b/x", "type": "t", "data": 2},
                {"topic": "b/x*", "type": "t", "data": 3},
                {"topic": "b/x", "type": "t", "data": 4}
            ]),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_topic");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("events[2].topic"),
        "{body}"
    );
    let after = server.publish_one("b/x", "after", json!(5)).await;
    assert_eq!(
        parse_id(&after).1,
        parse_id(&before).1 + 1,
        "the refused batch used ids"
    );

    let mut sub = server.subscribe("lastEventId=earliest").await;
    let evs = sub.events(2).await;
    assert_eq!(evs[0].event, "before");
    assert_eq!(evs[1].event, "after");
    assert_eq!(evs[1].last_event_id, after);
    sub.expect_no_event(std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_retry_returns_the_original_ids_once() {
    let server = Server::start(&[]);
    let body = json!([
        {"topic": "i/a", "type": "t", "data": 1},
        {"topic": "i/a", "type": "t", "data": 2}
    ]);
    let key = [("Idempotency-Key", "order-42")];
    let (s1, v1) = server.publish_raw(&body, &key).await;
    assert_eq!(s1, 200, "{v1}");
    let (s2, v2) = server.publish_raw(&body, &key).await;
    assert_eq!(s2, 200, "{v2}");
    assert_eq!(v1["ids"], v2["ids"], "a retry got new ids");

    let other = json!([{"topic": "i/a", "type": "t", "data": 3}]);
    let (s3, v3) = server.publish_raw(&other, &key).await;
    assert_eq!(s3, 422, "{v3}");
    assert_eq!(v3["error"]["code"], "idempotency_conflict");
    assert!(
        v3["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("Idempotency-Key"),
        "{v3}"
    );

    // A different key publishes anew.
    let (s4, v4) = server
        .publish_raw(&body, &[("Idempotency-Key", "order-43")])
        .await;
    assert_eq!(s4, 200);
    assert_ne!(v4["ids"], v1["ids"]);

    let mut sub = server.subscribe("lastEventId=earliest").await;
    let evs = sub.events(4).await;
    let data: Vec<&str> = evs.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["1", "2", "1", "2"]);
    sub.expect_no_event(std::time::Duration::from_millis(300))
        .await;
    assert_eq!(server.readyz().await["head"], 4);
}

/// Publishes `body` with `Authorization: Bearer {secret}` and `Idempotency-Key: {key}`.
async fn publish_keyed(server: &Server, secret: &str, key: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {secret}");
    server
        .publish_raw(body, &[("authorization", &auth), ("idempotency-key", key)])
        .await
}

/// Two credentials use the same Idempotency-Key for different bodies: each is its own key.
/// Neither blocks the other (no 422), neither learns which keys the other used, and each
/// retry gets its own original ids, from the hub's memory and, after a kill -9, from the store.
#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_are_scoped_per_credential() {
    const A: &str = "tenant-a-secret-1";
    const B: &str = "tenant-b-secret-1";
    let mut server = Server::start(&[
        "--durability",
        "durable",
        "--token",
        &format!("{A}:publish=*;subscribe=*"),
        "--token",
        &format!("{B}:publish=*;subscribe=*"),
    ]);
    let body_a = json!([
        {"topic": "scoped/a", "type": "t", "data": "a1"},
        {"topic": "scoped/a", "type": "t", "data": "a2"}
    ]);
    let body_b = json!({"topic": "scoped/b", "type": "t", "data": "b1"});

    let (s, first_a) = publish_keyed(&server, A, "shared-key", &body_a).await;
    assert_eq!(s, 200, "{first_a}");
    let (s, first_b) = publish_keyed(&server, B, "shared-key", &body_b).await;
    assert_eq!(s, 200, "B was blocked by A's key: {first_b}");
    assert_eq!(ids_of(&first_a).len(), 2);
    assert_eq!(ids_of(&first_b).len(), 1);
    assert!(
        !ids_of(&first_a).contains(&ids_of(&first_b)[0]),
        "{first_a} {first_b}"
    );

    // Retries get their own originals; a key only B used is free for A (no probing).
    let retry = publish_keyed(&server, A, "shared-key", &body_a).await;
    assert_eq!(retry, (200, first_a.clone()));
    let retry = publish_keyed(&server, B, "shared-key", &body_b).await;
    assert_eq!(retry, (200, first_b.clone()));
    let (s, only_b) = publish_keyed(&server, B, "b-only", &body_b).await;
    assert_eq!(s, 200, "{only_b}");
    let (s, a_on_b_key) = publish_keyed(&server, A, "b-only", &body_a).await;
    assert_eq!(s, 200, "A learned that B used `b-only`: {a_on_b_key}");
    assert_ne!(a_on_b_key, only_b);
    // Within one credential, a reused key is still a conflict.
    let (s, conflict) = publish_keyed(&server, B, "shared-key", &body_a).await;
    assert_eq!(s, 422, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    let head = server.readyz().await["head"].clone();
    assert_eq!(head, 6, "2 + 1 + 1 + 2 events");

    // After a kill -9 the hub remembers nothing: the answers come from the store.
    server.restart();
    let retry = publish_keyed(&server, B, "shared-key", &body_b).await;
    assert_eq!(retry, (200, first_b));
    let retry = publish_keyed(&server, A, "shared-key", &body_a).await;
    assert_eq!(retry, (200, first_a));
    let retry = publish_keyed(&server, A, "b-only", &body_a).await;
    assert_eq!(retry, (200, a_on_b_key));
    let (s, conflict) = publish_keyed(&server, B, "shared-key", &body_a).await;
    assert_eq!(s, 422, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(
        server.readyz().await["head"],
        head,
        "nothing was published twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_and_data_over_the_limits_are_413() {
    let server = Server::start(&["--max-body-bytes", "10KiB", "--max-data-bytes", "1KiB"]);
    // Over the body limit (declared length).
    let data = "x".repeat(20 * 1024);
    let (status, v) = server
        .publish_raw(&json!({"topic": "l", "type": "t", "data": data}), &[])
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("body"),
        "{v}"
    );

    // Over the body limit, streamed without a Content-Length. Written on a raw socket that
    // then waits (without sending the rest), so the answer cannot be lost to a reset.
    let mut sock = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut req = b"POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = 11 * 1024;
    req.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
    req.extend(std::iter::repeat_n(b' ', chunk));
    req.extend_from_slice(b"\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut sock, &req)
        .await
        .expect("write");
    let mut answer = Vec::new();
    crate::support::read_until(
        &mut sock,
        &mut answer,
        std::time::Duration::from_secs(10),
        |b| String::from_utf8_lossy(b).contains("}}"),
    )
    .await;
    assert_eq!(
        crate::support::status_of(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("body_too_large"));

    // Under the body limit, data over the data limit.
    let data = "y".repeat(2 * 1024);
    let (status, v) = server
        .publish_raw(&json!({"topic": "l", "type": "t", "data": data}), &[])
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "event_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("data"),
        "{v}"
    );

    // Just under both limits works.
    let data = "z".repeat(1000);
    server.publish_one("l", "t", json!(data)).await;
    assert_eq!(server.readyz().await["head"], 1);
}

/// The main listener answers `POST /publish` before its router (`http/front.rs`): every
/// refusal keeps its status and code, the CORS headers and `connection: close` after a refused
/// body, and the other methods and paths near `/publish` still get the router's answers.
#[tokio::test(flavor = "multi_thread")]
async fn publish_before_the_router_keeps_every_refusal_cors_header_and_method_answer() {
    use std::time::Duration;

    use crate::support::{WAIT, raw_exchange, status_of};

    const APP: &str = "https://app.example";
    const TOKEN: &str = "front-publisher-1";
    let server = Server::start(&[
        "--token",
        &format!("{TOKEN}:publish=front/*;subscribe=*"),
        "--cors-origin",
        APP,
        "--max-body-bytes",
        "1KiB",
        "--max-data-bytes",
        "512",
        "--publish-rate",
        "1",
        "--publish-burst",
        "1",
        "--max-batch-events",
        "1",
    ]);
    let good = json!({"topic": "front/a", "type": "t", "data": 1}).to_string();
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: String| {
        let mut req = server
            .http
            .request(method.parse().unwrap(), server.url(path))
            .header("origin", APP);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let resp = req.body(body).send().await.expect("send");
            let status = resp.status().as_u16();
            let head = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                head,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let header = |h: &reqwest::header::HeaderMap, name: &str| {
        h.get(name).map(|v| v.to_str().unwrap().to_owned())
    };
    let bearer = format!("Bearer {TOKEN}");
    let json_auth = [
        ("content-type", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    // Each refusal of a request with a body: its status and code, the page's CORS grant, and
    // `connection: close`.
    type Refusal<'a> = (&'a str, &'a [(&'a str, &'a str)], String, u16, &'a str);
    let refusals: [Refusal<'_>; 5] = [
        (
            "no credential",
            &json_auth[..1],
            good.clone(),
            401,
            "unauthorized",
        ),
        (
            "not JSON",
            &[("content-type", "text/plain"), ("authorization", &bearer)],
            good.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            &json_auth,
            "x".repeat(2048),
            413,
            "body_too_large",
        ),
        (
            "malformed",
            &json_auth,
            "{".to_owned(),
            400,
            "malformed_json",
        ),
        (
            "not granted",
            &json_auth,
            json!({"topic": "elsewhere", "type": "t"}).to_string(),
            403,
            "forbidden",
        ),
    ];
    for (what, headers, body, status, code) in refusals {
        let (got, head, v) = send("POST", "/publish", headers, body).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {v}"
        );
        assert_eq!(
            header(&head, "access-control-allow-origin").as_deref(),
            Some(APP),
            "{what}"
        );
        assert_eq!(header(&head, "vary").as_deref(), Some("origin"), "{what}");
        assert_eq!(
            header(&head, "connection").as_deref(),
            Some("close"),
            "{what}"
        );
    }
    // Accepted: ids, the CORS grant, the connection kept. Another origin gets no grant.
    let (status, head, v) = send("POST", "/publish", &json_auth, good.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ids"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        header(&head, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert_eq!(
        header(&head, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(header(&head, "connection"), None);
    // The credential's rate (1/s, burst 1) is spent: the next publishes are refused with
    // `Retry-After` until it refills.
    let (status, head, v) = send("POST", "/publish", &json_auth, good.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert!(header(&head, "retry-after").is_some());
    assert_eq!(
        header(&head, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    // The router still answers everything else on and near `/publish`.
    let preflight = [
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type, x-client-id",
        ),
    ];
    let (status, head, _) = send("OPTIONS", "/publish", &preflight, String::new()).await;
    assert_eq!(status, 204);
    assert_eq!(
        header(&head, "access-control-allow-origin").as_deref(),
        Some(APP)
    );
    for (method, path, status, code) in [
        ("OPTIONS", "/publish", 405, "method_not_allowed"),
        ("GET", "/publish", 405, "method_not_allowed"),
        ("PUT", "/publish", 405, "method_not_allowed"),
        ("POST", "/publish/", 404, "not_found"),
        ("POST", "/publishx", 404, "not_found"),
    ] {
        let (got, _, v) = send(method, path, &json_auth, good.clone()).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}"
        );
    }
    let (status, _, _) = send("HEAD", "/publish", &json_auth, String::new()).await;
    assert_eq!(status, 405, "HEAD");

    // An open hub refuses a publish naming another host (DNS rebinding), before reading it,
    // and closes the connection.
    let open = Server::start(&[]);
    let body = good.as_bytes();
    let request = format!(
        "POST /publish HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{good}",
        body.len()
    );
    let answer = raw_exchange(open.addr, request.as_bytes(), WAIT).await;
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert_eq!(status_of(&answer), Some(403), "{text}");
    assert!(text.contains("\"forbidden_host\""), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    let named = request.replace("evil.example", "localhost");
    let answer = raw_exchange(open.addr, named.as_bytes(), Duration::from_millis(300)).await;
    assert_eq!(status_of(&answer), Some(200));
}
