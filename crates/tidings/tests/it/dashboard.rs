//! The operators' view over real sockets: `/admin/topics` (rates, subscriber counts, the
//! ceiling), the rates in `/admin/stats`, the dashboard's SSE stream (`/admin/stream`: sampled
//! stats and a bounded, type-filtered tail), who may read them (the admin right, by bearer or
//! cookie; routes that change something take no cookie), and the dashboard page in a real
//! browser: Debian's chromium driven by playwright-core (tests/browser/dashboard.cjs), which
//! needs `TIDINGS_TEST_PLAYWRIGHT` like tests/it/browser.rs and fails without it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BrowserScript, Server, SseClient, WAIT};

const PUB: &str = "dash-pub-secret-aaaaaaaaaaaa";
const ADMIN: &str = "dash-admin-secret-bbbbbbbbbb";

fn server() -> Server {
    Server::start(&[
        "--durability",
        "memory",
        "--token",
        &format!("{PUB}:publish=*;subscribe=*"),
        "--token",
        &format!("{ADMIN}:publish=*;subscribe=*;admin"),
    ])
}

/// `GET url` with `auth` (a header name and value), answered status and JSON (or text) body.
async fn get(url: &str, auth: Option<(&str, String)>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some((k, v)) = auth {
        req = req.header(k, v);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("request timed out")
        .expect("request");
    let status = resp.status().as_u16();
    // A stream is not read to its end: its status is the answer.
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return (status, String::new());
    }
    (status, resp.text().await.expect("body"))
}

fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

fn cookie(token: &str) -> Option<(&'static str, String)> {
    Some(("cookie", format!("tidings_token={token}")))
}

async fn publish(server: &Server, events: &Value) {
    let (status, v) = server
        .publish_raw(events, &[("authorization", &format!("Bearer {PUB}"))])
        .await;
    assert_eq!(status, 200, "{v}");
}

async fn admin_json(server: &Server, path: &str) -> Value {
    let (status, body) = get(&server.url(path), bearer(ADMIN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `path` until `ok` holds for its JSON answer; panics with the last answer after 10 s.
async fn admin_until(server: &Server, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = admin_json(server, path).await;
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_dashboard_and_admin_routes_refuse_callers_without_the_admin_right() {
    let server = server();
    for path in [
        "/metrics",
        "/dashboard",
        "/admin/stats",
        "/admin/topics",
        "/admin/connections",
        "/admin/stream",
    ] {
        let url = server.url(path);
        let (status, body) = get(&url, None).await;
        assert_eq!(status, 401, "{path} without a credential: {body}");
        assert!(
            !body.contains("\"published\""),
            "{path} leaked data: {body}"
        );
        assert_eq!(
            get(&url, bearer(PUB)).await.0,
            403,
            "{path}, no admin right"
        );
        if path != "/metrics" {
            assert_eq!(get(&url, cookie(PUB)).await.0, 403, "{path}, cookie");
        }
        assert_eq!(
            get(&url, bearer("not-a-token-at-all")).await.0,
            401,
            "{path}"
        );
        assert_eq!(get(&url, bearer(ADMIN)).await.0, 200, "{path} as admin");
    }
    // The dashboard and the read-only admin routes take the cookie (the page's own fetches
    // and its EventSource send it); `/metrics` is for scrapers, with a header.
    for path in [
        "/dashboard",
        "/admin/stats",
        "/admin/topics",
        "/admin/connections",
        "/admin/stream",
    ] {
        assert_eq!(get(&server.url(path), cookie(ADMIN)).await.0, 200, "{path}");
    }
    // The refused page is a sign-in form, without data.
    let (status, page) = get(&server.url("/dashboard"), None).await;
    assert_eq!(status, 401);
    assert!(page.contains("id=\"login\""), "{page}");
    let (_, page) = get(&server.url("/dashboard"), cookie(ADMIN)).await;
    assert!(page.contains("/admin/stream"), "the dashboard page: {page}");
    // A route that changes something never takes the cookie (a cross-site form sends it).
    let resp = reqwest::Client::new()
        .post(server.url("/admin/drain"))
        .header("cookie", format!("tidings_token={ADMIN}"))
        .send()
        .await
        .expect("drain");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(admin_json(&server, "/admin/stats").await["draining"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topics_have_rates_and_subscriber_counts_and_stop_at_the_ceiling() {
    let server = server();
    let auth = format!("Bearer {PUB}");
    let mut subs = Vec::new();
    for query in ["topic=tp/a", "topic=tp/*"] {
        let mut s = server
            .subscribe_with(query, &[("authorization", &auth)])
            .await;
        s.expect_retry().await;
        subs.push(s);
    }
    let batch = |topic: &str, n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"topic": topic, "type": "t", "data": i}))
                .collect(),
        )
    };
    publish(&server, &batch("tp/a", 30)).await;
    publish(&server, &batch("tp/b", 10)).await;
    // Sampled once a second on the server: the rates show within two samples.
    let topics = admin_until(&server, "/admin/topics", |v| {
        v["topics"][0]["topic"] == "tp/a" && v["topics"][0]["rate"].as_f64() > Some(0.0)
    })
    .await;
    let a = &topics["topics"][0];
    assert_eq!(a["events"], 30, "{topics}");
    assert_eq!(a["subscribers"], 2, "{topics}");
    let b = &topics["topics"][1];
    assert_eq!(b["topic"], "tp/b", "{topics}");
    assert_eq!(b["events"], 10, "{topics}");
    assert_eq!(b["subscribers"], 1, "{topics}");
    assert!(a["rate"].as_f64() >= b["rate"].as_f64(), "{topics}");
    assert_eq!(topics["tracked"], 2);
    assert_eq!(topics["full"], false);
    let stats = admin_until(&server, "/admin/stats", |v| {
        v["rates"]["published"].as_f64() > Some(0.0)
    })
    .await;
    assert!(stats["rates"]["delivered"].as_f64() > Some(0.0), "{stats}");
    assert_eq!(stats["connects"], 2, "{stats}");
    assert_eq!(stats["store"]["durability"], "memory", "{stats}");
    assert_eq!(
        stats["store"]["retention"]["max_events"], 1_000_000,
        "{stats}"
    );
    let limited = admin_json(&server, "/admin/topics?limit=1").await;
    assert_eq!(limited["topics"].as_array().map(Vec::len), Some(1));
    let (status, _) = get(&server.url("/admin/topics?limit=0"), bearer(ADMIN)).await;
    assert_eq!(status, 400);

    // The ceiling: 1,000 topics. Two are tracked, so of 1,000 new ones 998 find room and the
    // events of the other two are counted as untracked.
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"topic": format!("many/{i}"), "type": "t", "data": i}))
        .collect();
    publish(&server, &Value::Array(many)).await;
    let topics = admin_json(&server, "/admin/topics?limit=1000").await;
    assert_eq!(topics["tracked"], 1000, "{}", topics["tracked"]);
    assert_eq!(topics["max_topics"], 1000);
    assert_eq!(topics["full"], true);
    assert_eq!(topics["untracked"]["events"], 2);
    assert_eq!(topics["topics"].as_array().map(Vec::len), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_sends_sampled_stats_and_a_bounded_tail_of_the_chosen_types() {
    let server = server();
    let resp = reqwest::Client::new()
        .get(server.url("/admin/stream?type=wanted"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = SseClient::new(resp);
    stream.expect_retry().await;
    let first = stream.next_event().await;
    assert_eq!(first.event, "stats");
    let first: Value = serde_json::from_str(&first.data).expect("JSON");
    assert!(first["history"].is_array(), "{first}");
    assert!(first["stats"]["rates"].is_object(), "{first}");
    assert!(first["topics"]["topics"].is_array(), "{first}");

    // 500 events in one batch, every other one `wanted`: the tail carries at most 50 of
    // them, the newest, and counts the rest as skipped; `other` never shows.
    let events: Vec<Value> = (0..500)
        .map(|i| {
            let ty = if i % 2 == 0 { "wanted" } else { "other" };
            json!({"topic": "st/x", "type": ty, "data": {"i": i}})
        })
        .collect();
    publish(&server, &Value::Array(events)).await;
    let mut seen = Vec::new();
    let mut skipped = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() + skipped < 250 {
        assert!(tokio::time::Instant::now() < deadline, "tail: {seen:?}");
        let e = stream.next_event_within(WAIT).await;
        if e.event != "tail" {
            assert_eq!(e.event, "stats");
            continue;
        }
        let tail: Value = serde_json::from_str(&e.data).expect("JSON");
        let batch = tail["events"].as_array().expect("events");
        assert!(batch.len() <= 50, "{} events in one message", batch.len());
        for ev in batch {
            assert_eq!(ev["type"], "wanted", "{ev}");
            assert_eq!(ev["topic"], "st/x", "{ev}");
            seen.push(ev["data"]["i"].as_u64().expect("i"));
        }
        skipped += tail["skipped"].as_u64().expect("skipped") as usize;
    }
    assert_eq!(seen.len() + skipped, 250);
    assert_eq!(seen.last(), Some(&498), "the newest is kept");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    // Stats keep coming about once a second.
    let started = tokio::time::Instant::now();
    loop {
        let e = stream.next_event_within(Duration::from_secs(5)).await;
        if e.event == "stats" {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // A bad filter is a 400 naming the parameter.
    let (status, body) = get(&server.url("/admin/stream?typo=x"), bearer(ADMIN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("typo"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_tail_takes_topic_selectors_validated_as_on_subscribe() {
    let server = server();
    // Two selectors, an exact topic and a prefix: `sel/a` and `sel/p/...`, not `sel/ab`.
    let resp = reqwest::Client::new()
        .get(server.url("/admin/stream?topic=sel/a&topic=sel/p/*&type=t"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = SseClient::new(resp);
    stream.expect_retry().await;
    assert_eq!(stream.next_event().await.event, "stats");
    // The tail is a hub subscription with that selector: it shows in `subscribers`.
    admin_until(&server, "/admin/stats", |s| s["subscriptions"] == 1).await;
    let events: Vec<Value> = ["sel/a", "sel/ab", "sel/p/1", "sel/q", "sel/p/2", "other"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"topic": t, "type": "t", "data": i}))
        .chain([json!({"topic": "sel/a", "type": "u", "data": 99})])
        .collect();
    publish(&server, &Value::Array(events)).await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "tail: {seen:?}");
        let e = stream.next_event_within(WAIT).await;
        if e.event != "tail" {
            continue;
        }
        let tail: Value = serde_json::from_str(&e.data).expect("JSON");
        assert_eq!(tail["skipped"], 0, "{tail}");
        for ev in tail["events"].as_array().expect("events") {
            seen.push(ev["topic"].as_str().expect("topic").to_owned());
        }
    }
    assert_eq!(seen, ["sel/a", "sel/p/1", "sel/p/2"]);

    // Refused as /events refuses them (422 with the same code and message): a selector that
    // is not one, too many selectors, a bad type; nothing is opened. An unknown parameter is
    // a 400 naming it.
    let long = format!("{}*", "a".repeat(1100));
    for (query, code, names) in [
        (
            format!("topic={long}"),
            "invalid_topic",
            "longer than the limit",
        ),
        (
            "topic=a%01b".to_owned(),
            "invalid_topic",
            "control characters",
        ),
        ("topic=".to_owned(), "invalid_topic", "must not be empty"),
        (
            (0..200)
                .map(|i| format!("topic=t/{i}"))
                .collect::<Vec<_>>()
                .join("&"),
            "invalid_topic",
            "topic: more than 32 selectors",
        ),
        ("type=".to_owned(), "invalid_type", "type ``"),
    ] {
        let (status, body) = get(
            &server.url(&format!("/admin/stream?{query}")),
            bearer(ADMIN),
        )
        .await;
        assert_eq!(status, 422, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["error"]["code"], code, "{body}");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(message.contains(names), "{body}");
        let (status, body) = get(&server.url(&format!("/events?{query}")), bearer(PUB)).await;
        assert_eq!(status, 422, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["error"]["code"], code, "{body}");
        assert_eq!(v["error"]["message"], message, "{body}");
    }
    let (status, body) = get(&server.url("/admin/stream?topics=a"), bearer(ADMIN)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("topics: not a parameter"), "{body}");
    let stats = admin_json(&server, "/admin/stats").await;
    assert_eq!(stats["subscriptions"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chromium_dashboard_shows_the_tail_the_clients_and_filters_by_type() {
    let server = server();
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dashboard.png");
    let url = format!("http://{}", server.addr);
    let mut browser = BrowserScript::start("dashboard.cjs", &[&url, ADMIN, screenshot, PUB]);

    // The page is up and its stream open.
    let ready = browser.next().await;
    let before = ready["clients"].as_u64().expect("clients");
    // 1. A published event shows in the tail within a second (the page measures from the
    //    moment it is told, which is after the publish answered).
    publish(
        &server,
        &json!({"topic": "dash/a", "type": "alpha", "data": {"n": 1}}),
    )
    .await;
    browser.say("published").await;
    let seen = browser.next().await;
    assert_eq!(seen["tail"], "alpha", "{seen}");
    assert!(seen["ms"].as_f64() < Some(1000.0), "{seen}");
    eprintln!(
        "dashboard: the event showed in the tail {} ms after the publish",
        seen["ms"]
    );

    // 2. 100 subscribers connect: the client count moves by 100.
    let auth = format!("Bearer {PUB}");
    let mut subs = Vec::new();
    for _ in 0..100 {
        subs.push(
            server
                .subscribe_with("topic=dash/*", &[("authorization", &auth)])
                .await,
        );
    }
    browser.say(&format!("clients {}", before + 100)).await;
    let counted = browser.next().await;
    assert_eq!(counted["clients"], before + 100, "{counted}");

    // 3. Filter by type: after the page asks for `beta`, only `beta` events show.
    let filtered = browser.next().await;
    assert_eq!(filtered["filter"], "beta", "{filtered}");
    publish(
        &server,
        &json!([
            {"topic": "dash/a", "type": "alpha", "data": {"n": 2}},
            {"topic": "dash/b", "type": "beta", "data": {"n": 3}},
            {"topic": "dash/a", "type": "alpha", "data": {"n": 4}}
        ]),
    )
    .await;
    browser.say("published").await;
    let shown = browser.next().await;
    assert_eq!(shown["types"], json!(["beta"]), "{shown}");

    // 4. Filter by topic selector: after the page asks for `dash/b` (any type), only events
    //    on `dash/b` show, whatever their type.
    let filtered = browser.next().await;
    assert_eq!(filtered["topics"], "dash/b", "{filtered}");
    publish(
        &server,
        &json!([
            {"topic": "dash/a", "type": "gamma", "data": {"n": 5}},
            {"topic": "dash/b", "type": "gamma", "data": {"n": 6}},
            {"topic": "dash/bb", "type": "gamma", "data": {"n": 7}},
            {"topic": "dash/b", "type": "alpha", "data": {"n": 8}}
        ]),
    )
    .await;
    browser.say("published").await;
    let shown = browser.next().await;
    assert_eq!(shown["tail_topics"], json!(["dash/b"]), "{shown}");
    assert_eq!(shown["types"], json!(["alpha", "gamma"]), "{shown}");

    // 5. A selector the hub refuses: the page shows the stable error's message.
    let refused = browser.next().await;
    let note = refused["refused"].as_str().expect("refused");
    assert!(note.contains("longer than the limit"), "{refused}");

    // 6. The publish form: refused without a token (401: the cookie is not sent), and with
    //    the publish token the event reaches the hub and comes back through the tail.
    let formed = browser.next().await;
    assert!(
        formed["refused"]
            .as_str()
            .is_some_and(|r| r.starts_with("unauthorized")),
        "{formed}"
    );
    assert!(
        formed["published"]
            .as_str()
            .is_some_and(|p| p.starts_with("published ")),
        "{formed}"
    );
    assert_eq!(formed["formed"]["topic"], "dash/b", "{formed}");
    assert_eq!(
        formed["formed"]["data"],
        json!({"from": "the form"}),
        "{formed}"
    );
    // The token was kept in memory only: not in storage, not in a cookie.
    let stored = formed["stored"].as_str().expect("stored");
    assert!(!stored.contains(PUB), "the token was stored: {stored}");
    let head = admin_json(&server, "/admin/stats").await;
    assert_eq!(head["published"], 9, "{head}");
    let shot = browser.next().await;
    assert_eq!(shot["screenshot"], screenshot, "{shot}");
    assert!(
        std::fs::metadata(screenshot).expect("screenshot").len() > 10_000,
        "a real screenshot"
    );
    drop(subs);
    browser.finish().await;
}
