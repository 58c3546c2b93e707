//! Browser-safe credentials over real sockets: one-time connect tickets (`POST /tickets`,
//! `?ticket=` on SSE, NDJSON, long-poll and WebSocket; single use, narrowed, expiring), the
//! credential cookie (default and configured name), and the CSRF rule: a publish with only a
//! cookie is refused and publishes nothing, unless the configured custom header comes with it.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Server, SseClient};

const TOKEN: &str = "browser-user-token";
const PUBLISHER: &str = "publisher-token-xyz";

fn server(extra: &[&str]) -> Server {
    let user = format!("{TOKEN}:name=user;publish=rooms/*;subscribe=rooms/*");
    let publisher = format!("{PUBLISHER}:name=publisher;publish=*;subscribe=*");
    let mut args = vec!["--token", &user, "--token", &publisher];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `POST /tickets` with `headers` and an optional JSON body: status and answer.
async fn ticket_raw(
    server: &Server,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server.http.post(server.url("/tickets"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("tickets request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("tickets answer is JSON"))
}

/// A fresh ticket for `TOKEN`, narrowed to `topics` if given.
async fn ticket(server: &Server, topics: Option<&[&str]>) -> String {
    let body = topics.map(|t| json!({ "topics": t }));
    let (status, v) = ticket_raw(server, &[("authorization", &bearer(TOKEN))], body).await;
    assert_eq!(status, 200, "{v}");
    v["ticket"].as_str().expect("ticket").to_owned()
}

async fn publish_as_publisher(server: &Server, topic: &str, n: u64) {
    let (status, v) = server
        .publish_raw(
            &json!({"topic": topic, "type": "t", "data": {"n": n}}),
            &[("authorization", &bearer(PUBLISHER))],
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

/// The status and error body of `GET /events?<query>` that is refused.
async fn refused(server: &Server, query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let resp = server.get_events(query, headers).await;
    let status = resp.status().as_u16();
    assert_ne!(status, 200, "{query}: expected a refusal");
    (status, resp.json().await.expect("error JSON"))
}

/// The `n` of an SSE event's data (the default endpoint sends the event's data as is).
fn n_of(ev: &tidings_proto::sse::SseEvent) -> Value {
    serde_json::from_str::<Value>(&ev.data).expect("data is JSON")["n"].clone()
}

fn assert_error(v: &Value, code: &str, says: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains(says), "`{msg}` does not say `{says}`");
}

#[tokio::test]
async fn a_ticket_opens_exactly_one_subscription_within_its_narrowed_grant() {
    let server = server(&[]);

    // Minting needs a credential, and the topics must lie inside the caller's grant.
    let (status, v) = ticket_raw(&server, &[], None).await;
    assert_eq!(status, 401, "{v}");
    assert_error(&v, "unauthorized", "bearer token is required");
    for escape in ["*", "rooms*", "roomsx/*", "other/a"] {
        let (status, v) = ticket_raw(
            &server,
            &[("authorization", &bearer(TOKEN))],
            Some(json!({ "topics": [escape] })),
        )
        .await;
        assert_eq!(status, 403, "{escape}: {v}");
        assert_error(&v, "forbidden", "topics");
    }
    let (status, v) = ticket_raw(
        &server,
        &[("authorization", &bearer(TOKEN))],
        Some(json!({ "topics": ["rooms/a"] })),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["expires_in"], 60);
    let t = v["ticket"].as_str().expect("ticket").to_owned();
    assert!(t.len() >= 40, "an opaque random ticket: {t}");
    assert!(!t.contains(TOKEN));

    // SSE with the ticket receives events.
    let mut sse = server
        .subscribe_with(&format!("ticket={t}&topic=rooms/a"), &[])
        .await;
    publish_as_publisher(&server, "rooms/a", 1).await;
    let ev = sse.next_event().await;
    assert_eq!(n_of(&ev), 1);

    // The same ticket again: refused, whatever the transport.
    let (status, v) = refused(&server, &format!("ticket={t}&topic=rooms/a"), &[]).await;
    assert_eq!(status, 401);
    assert_error(&v, "unauthorized", "already used");
    // The first stream is unaffected.
    publish_as_publisher(&server, "rooms/a", 2).await;
    let ev = sse.next_event().await;
    assert_eq!(n_of(&ev), 2);

    // Narrowed: a ticket for rooms/a opens nothing else, though the token could.
    let narrow = ticket(&server, Some(&["rooms/a"])).await;
    let (status, v) = refused(&server, &format!("ticket={narrow}&topic=rooms/b"), &[]).await;
    assert_eq!(status, 403, "{v}");
    assert_error(&v, "forbidden", "rooms/b");
    // ... and that refusal used it up.
    let (status, _) = refused(&server, &format!("ticket={narrow}&topic=rooms/a"), &[]).await;
    assert_eq!(status, 401);
    // Unnarrowed: the caller's whole subscribe grant, still nothing beyond it.
    let whole = ticket(&server, None).await;
    let (status, _) = refused(&server, &format!("ticket={whole}&topic=other"), &[]).await;
    assert_eq!(status, 403);
    let whole = ticket(&server, None).await;
    drop(
        server
            .subscribe_with(&format!("ticket={whole}&topic=rooms/b"), &[])
            .await,
    );

    // NDJSON, long-poll and WebSocket take tickets too.
    let t = ticket(&server, Some(&["rooms/*"])).await;
    let resp = server
        .get_events(&format!("ticket={t}&topic=rooms/c&format=ndjson"), &[])
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    drop(resp);
    let t = ticket(&server, Some(&["rooms/*"])).await;
    let poll = server.http.get(server.url(&format!(
        "/events?ticket={t}&topic=rooms/a&poll=1&timeout=0&lastEventId=0"
    )));
    let resp = poll.send().await.expect("poll");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap()
    );
    let t = ticket(&server, Some(&["rooms/*"])).await;
    let url = format!("ws://{}/events?ticket={t}&topic=rooms/w", server.addr);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .expect("ws connect in time")
    .expect("ws with a ticket");
    publish_as_publisher(&server, "rooms/w", 7).await;
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("ws open")
            .expect("ws frame")
        {
            Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(frame["data"]["n"], 7, "{frame}");
    let (status, _) = refused(&server, &format!("ticket={t}"), &[]).await;
    assert_eq!(status, 401, "a WebSocket used the ticket up too");
    assert!(
        !server.stderr().contains(&t),
        "a ticket never reaches the log"
    );
}

#[tokio::test]
async fn a_ticket_expires_after_its_ttl() {
    let server = server(&["--ticket-ttl", "1s"]);
    let (status, v) = ticket_raw(&server, &[("authorization", &bearer(TOKEN))], None).await;
    assert_eq!(status, 200);
    assert_eq!(v["expires_in"], 1);
    // Twenty tickets minted now; one is tried every 150 ms until one is refused as expired.
    let mut tickets = Vec::new();
    for _ in 0..20 {
        tickets.push(ticket(&server, None).await);
    }
    let started = std::time::Instant::now();
    let mut opened = 0;
    let mut expired = None;
    for t in &tickets {
        let resp = server
            .get_events(&format!("ticket={t}&topic=rooms/a"), &[])
            .await;
        match resp.status().as_u16() {
            200 => opened += 1,
            401 => {
                let v: Value = resp.json().await.unwrap();
                assert_error(&v, "unauthorized", "expired");
                expired = Some(started.elapsed());
                break;
            }
            other => panic!("ticket answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let expired = expired.expect("a ticket expired within 3 s");
    assert!(opened >= 1, "tickets open before their TTL ({opened})");
    assert!(expired >= Duration::from_millis(500), "{expired:?}");
}

#[tokio::test]
async fn a_cookie_subscribes_but_never_publishes_alone() {
    let server = server(&[]);
    let cookie = format!("theme=dark; tidings_token={TOKEN}");
    let mut sse: SseClient = server
        .subscribe_with("topic=rooms/a", &[("cookie", &cookie)])
        .await;
    publish_as_publisher(&server, "rooms/a", 1).await;
    let ev = sse.next_event().await;
    assert_eq!(n_of(&ev), 1);
    // The cookie's grant applies.
    let (status, _) = refused(&server, "topic=other", &[("cookie", &cookie)]).await;
    assert_eq!(status, 403);
    // A bad cookie is a 401 like a bad header.
    let (status, _) = refused(
        &server,
        "topic=rooms/a",
        &[("cookie", "tidings_token=wrong-one")],
    )
    .await;
    assert_eq!(status, 401);

    // A publish with only the cookie: 403, nothing published, the stream sees nothing of it.
    let head = server.readyz().await["head"].clone();
    let (status, v) = server
        .publish_raw(
            &json!({"topic": "rooms/a", "type": "t", "data": {"n": 666}}),
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert_error(&v, "cookie_only_publish", "cookie");
    assert!(!v.to_string().contains(TOKEN));
    assert_eq!(server.readyz().await["head"], head);
    publish_as_publisher(&server, "rooms/a", 2).await;
    let ev = sse.next_event().await;
    assert_eq!(n_of(&ev), 2);
    // With a bearer header it publishes (the header wins over the cookie).
    let (status, v) = server
        .publish_raw(
            &json!({"topic": "rooms/a", "type": "t", "data": {"n": 3}}),
            &[("cookie", &cookie), ("authorization", &bearer(TOKEN))],
        )
        .await;
    assert_eq!(status, 200, "{v}");

    // A cookie mints a ticket (a browser page's way to a ticket).
    let (status, v) = ticket_raw(&server, &[("cookie", &cookie)], None).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        !server.stderr().contains(TOKEN),
        "the token never reaches the log"
    );
}

#[tokio::test]
async fn the_cookie_name_and_the_cookie_publish_header_are_configurable() {
    let server = server(&[
        "--cookie-name",
        "sess",
        "--cookie-publish-header",
        "X-Tidings-Publish",
    ]);
    drop(
        server
            .subscribe_with("topic=rooms/a", &[("cookie", &format!("sess={TOKEN}"))])
            .await,
    );
    let (status, _) = refused(
        &server,
        "topic=rooms/a",
        &[("cookie", &format!("tidings_token={TOKEN}"))],
    )
    .await;
    assert_eq!(status, 401, "only the configured cookie counts");

    let event = json!({"topic": "rooms/a", "type": "t", "data": {}});
    let cookie = format!("sess={TOKEN}");
    let (status, v) = server.publish_raw(&event, &[("cookie", &cookie)]).await;
    assert_eq!(status, 403, "{v}");
    assert_error(&v, "cookie_only_publish", "cookie");
    let (status, v) = server
        .publish_raw(&event, &[("cookie", &cookie), ("x-tidings-publish", "1")])
        .await;
    assert_eq!(status, 200, "the opted-in header lets it through: {v}");
    // The cookie's grant still rules.
    let other = json!({"topic": "other", "type": "t", "data": {}});
    let (status, _) = server
        .publish_raw(&other, &[("cookie", &cookie), ("x-tidings-publish", "1")])
        .await;
    assert_eq!(status, 403);
}

/// The CORS headers of an answer, as (allow-origin, allow-credentials, vary).
fn cors_of(h: &reqwest::header::HeaderMap) -> (Option<String>, Option<String>, Option<String>) {
    let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
    (
        get("access-control-allow-origin"),
        get("access-control-allow-credentials"),
        get("vary"),
    )
}

#[tokio::test]
async fn cors_names_exact_origins_with_credentials_on_every_path_and_answers_preflights() {
    const APP: &str = "https://app.example";
    let server = server(&[
        "--cors-origin",
        APP,
        "--cookie-publish-header",
        "X-Tidings-Publish",
    ]);
    let cookie = format!("tidings_token={TOKEN}");
    let allowed = (
        Some(APP.to_owned()),
        Some("true".to_owned()),
        Some("origin".to_owned()),
    );

    // An EventSource stream (the lean path) from the allowed origin, with the cookie.
    let resp = server
        .get_events("topic=rooms/a", &[("origin", APP), ("cookie", &cookie)])
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(cors_of(resp.headers()), allowed);
    drop(resp);
    // Its refusals are readable by the page too.
    let resp = server
        .get_events("topic=other", &[("origin", APP), ("cookie", &cookie)])
        .await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(cors_of(resp.headers()), allowed);
    // Another origin, or a look-alike, gets no CORS grant (the browser hides the answer).
    for evil in [
        "https://evil.example",
        "https://app.example.evil",
        "http://app.example",
        "null",
    ] {
        let resp = server
            .get_events("topic=rooms/a", &[("origin", evil), ("cookie", &cookie)])
            .await;
        let (origin, creds, vary) = cors_of(resp.headers());
        assert_eq!((origin, creds), (None, None), "{evil}");
        assert_eq!(vary.as_deref(), Some("origin"));
    }
    // Long-poll (hyper's path) and publish carry the same headers.
    let resp = server
        .http
        .get(server.url("/events?topic=rooms/a&poll=1&timeout=0&lastEventId=0"))
        .header("origin", APP)
        .header("authorization", bearer(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(cors_of(resp.headers()), allowed);
    let resp = server
        .http
        .post(server.url("/publish"))
        .header("origin", APP)
        .header("authorization", bearer(TOKEN))
        .json(&json!({"topic": "rooms/a", "type": "t", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(cors_of(resp.headers()), allowed);

    // Preflights: the resume cursor, the credential, a client id and the publish header are
    // allowed request headers for the allowed origin; anything else is 403.
    let preflight = |path: &str, origin: &str, method: &str, headers: &str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let resp = preflight(
        "/events",
        APP,
        "GET",
        "last-event-id, authorization, x-client-id",
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(cors_of(resp.headers()).0.as_deref(), Some(APP));
    let allow = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for h in ["last-event-id", "authorization", "x-client-id"] {
        assert!(allow.contains(h), "{allow}");
    }
    for path in ["/publish", "/tickets"] {
        let resp = preflight(
            path,
            APP,
            "POST",
            "content-type, authorization, x-tidings-publish, x-client-id",
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 204, "{path}");
        assert_eq!(cors_of(resp.headers()), allowed, "{path}");
    }
    let resp = preflight("/publish", "https://evil.example", "POST", "content-type")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(cors_of(resp.headers()).0, None);

    // The WebSocket Origin allow-list still holds: a cross-site upgrade is refused.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{}/events?topic=rooms/a", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    req.headers_mut()
        .insert("authorization", bearer(TOKEN).parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403);
        }
        other => panic!(
            "a cross-site upgrade was not refused: {:?}",
            other.map(|_| ())
        ),
    }
}

/// An endpoint with its own client-id header and CORS list: a preflight may ask for that
/// header (and not for `X-Client-Id`, which this route does not read); a page from the allowed
/// origin then opens a session on it with a ticket and the header, and reads its events.
#[tokio::test]
async fn an_endpoints_client_id_header_is_allowed_by_its_preflight_and_opens_a_session_with_a_ticket()
 {
    const APP: &str = "https://files.example";
    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("files.toml");
    std::fs::write(
        &config,
        r#"
        [[endpoints]]
        name = "files"
        path = "/api/v4/file/events"
        transports = ["sse"]
        client_id_header = "X-Cr-Client-Id"
        client_id_uuid = true
        cors_origins = ["https://files.example"]
        "#,
    )
    .unwrap();
    let server = server(&["--config", config.to_str().unwrap()]);
    let preflight = |headers: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/api/v4/file/events"))
            .header("origin", APP)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", headers)
            .send()
    };
    let resp = preflight("x-cr-client-id, last-event-id").await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let allow = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    let allowed: Vec<&str> = allow.split(", ").collect();
    assert!(allowed.contains(&"x-cr-client-id"), "{allow}");
    assert!(!allowed.contains(&"x-client-id"), "{allow}");
    let resp = preflight("x-client-id").await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "not this route's header");

    let ticket = ticket(&server, Some(&["rooms/*"])).await;
    let resp = reqwest::Client::new()
        .get(server.url(&format!(
            "/api/v4/file/events?topic=rooms/f&ticket={ticket}"
        )))
        .header("origin", APP)
        .header("X-Cr-Client-Id", ID)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], APP);
    let mut sub = SseClient::new(resp);
    sub.expect_retry().await;
    let opened = sub.next_event().await;
    assert_eq!(opened.event, "subscribed");
    assert!(opened.data.contains(ID), "{}", opened.data);
    publish_as_publisher(&server, "rooms/f", 7).await;
    assert_eq!(sub.next_event().await.data, r#"{"n":7}"#);
    // The ticket was used up: the same one cannot reopen the session.
    let resp = reqwest::Client::new()
        .get(server.url(&format!(
            "/api/v4/file/events?topic=rooms/f&ticket={ticket}"
        )))
        .header("X-Cr-Client-Id", ID)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
