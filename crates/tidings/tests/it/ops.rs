//! Operating the hub: `/metrics` scraped over a real socket while events flow, parsed by
//! Prometheus's own Python parser (`tests/clients/metrics_parse.py`), with every counter
//! checked to move by exactly what the test did; who may read it; and the separate metrics
//! listener.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::{Server, WAIT, parse_addr, read_until};

const PUB: &str = "pub-secret-aaaaaaaaaaaaaaaa";
const NARROW: &str = "narrow-secret-bbbbbbbbbbbbbb";
const METRICS: &str = "metrics-secret-cccccccccccc";
const ADMIN: &str = "admin-secret-dddddddddddddddd";

/// One parsed exposition.
#[derive(Debug)]
pub(crate) struct Scrape {
    pub(crate) families: HashMap<String, String>,
    pub(crate) samples: Vec<(String, HashMap<String, String>, f64)>,
    pub(crate) text: String,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn python() -> String {
    std::env::var("TIDINGS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TIDINGS_TEST_PYTHON is not set: run ./scripts/test, which installs Python's \
             prometheus-client"
        )
    })
}

/// Parses `text` with `prometheus_client.parser`; panics with the parser's error if it
/// rejects the document.
pub(crate) fn parse(text: &str) -> Scrape {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/metrics_parse.py"
    );
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "Prometheus's parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let families = v["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap_or_default().to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                s[0].as_str().expect("name").to_owned(),
                labels,
                s[2].as_f64().expect("value"),
            )
        })
        .collect();
    Scrape {
        families,
        samples,
        text: text.to_owned(),
    }
}

/// `GET url` with `token`: the status and the body.
async fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("GET timed out")
        .expect("GET");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, resp.text().await.expect("body"))
}

pub(crate) async fn scrape(url: &str, token: Option<&str>) -> Scrape {
    let (status, ct, body) = get(url, token).await;
    assert_eq!(status, 200, "{url}: {body}");
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content type {ct}"
    );
    parse(&body)
}

/// Scrapes until `done` holds, or panics at the deadline with the last scrape.
pub(crate) async fn scrape_until(
    url: &str,
    token: Option<&str>,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(url, token).await;
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what}: not seen within {WAIT:?}; last scrape:\n{}", s.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address the server logged for its metrics listener.
async fn metrics_addr(server: &Server) -> SocketAddr {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = server.stderr();
        if let Some(addr) = log
            .lines()
            .filter(|l| l.contains("Metrics are listening."))
            .find_map(parse_addr)
        {
            return addr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics listener in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {token}"))]
}

async fn publish_as(server: &Server, token: Option<&str>, topic: &str) -> u16 {
    let headers: Vec<(&str, String)> = token.map(|t| bearer(t).to_vec()).unwrap_or_default();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = server
        .publish_raw(&json!({"topic": topic, "type": "t", "data": 1}), &headers)
        .await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_by_exactly_what_happened_under_load() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--token",
        &format!("{PUB}:publish=*;subscribe=*"),
        "--token",
        &format!("{NARROW}:publish=orders/*;subscribe=orders/*"),
        "--token",
        &format!("{ADMIN}:publish=*;subscribe=*;admin"),
        "--metrics-token",
        METRICS,
        "--metrics-topic-prefix",
        "orders/",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let own = format!("http://{}/metrics", metrics_addr(&server).await);
    let main = server.url("/metrics");
    let before = scrape(&own, Some(METRICS)).await;
    assert_eq!(before.families["tidings_events_published"], "counter");
    assert_eq!(
        before.families["tidings_publish_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        before.value(
            "tidings_events_published_by_prefix_total",
            &[("prefix", "orders/")]
        ),
        0.0,
        "an allow-listed prefix is there from the start"
    );

    // Who may read: the metrics token or the admin right (on both listeners).
    assert_eq!(get(&own, None).await.0, 401);
    assert_eq!(get(&own, Some("not-a-token-at-all")).await.0, 401);
    assert_eq!(get(&own, Some(PUB)).await.0, 403);
    assert_eq!(get(&main, Some(METRICS)).await.0, 200);
    assert_eq!(get(&own, Some(ADMIN)).await.0, 200);
    assert_eq!(get(&main, Some(ADMIN)).await.0, 200);
    let other = own.replace("/metrics", "/healthz");
    assert_eq!(
        get(&other, Some(METRICS)).await.0,
        404,
        "the metrics listener serves /metrics only"
    );

    // 20 SSE and 2 NDJSON subscribers to orders/*.
    let auth = bearer(PUB);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut sse = Vec::new();
    for _ in 0..20 {
        let mut s = server.subscribe_with("topic=orders/*", &auth).await;
        s.expect_retry().await;
        sse.push(s);
    }
    let mut ndjson = Vec::new();
    for _ in 0..2 {
        let resp = server
            .get_events("topic=orders/*&format=ndjson", &auth)
            .await;
        assert_eq!(resp.status().as_u16(), 200);
        ndjson.push(resp.bytes_stream());
    }
    let open = scrape(&own, Some(METRICS)).await;
    let conns = |s: &Scrape, t: &str| {
        s.value(
            "tidings_connections",
            &[("endpoint", "events"), ("transport", t)],
        )
    };
    assert_eq!(conns(&open, "sse"), 20.0);
    assert_eq!(conns(&open, "ndjson"), 2.0);
    assert_eq!(open.value("tidings_subscriptions", &[]), 22.0);

    // Load: 4 publishers × 50 events to orders/, 50 to other/, scraped while they run.
    const PER: usize = 50;
    let server = std::sync::Arc::new(server);
    let mut publishers = Vec::new();
    for p in 0..5 {
        let server = server.clone();
        publishers.push(tokio::spawn(async move {
            let topic = if p < 4 {
                format!("orders/{p}")
            } else {
                "other/x".to_owned()
            };
            for _ in 0..PER {
                assert_eq!(publish_as(&server, Some(PUB), &topic).await, 200);
            }
        }));
    }
    let mut during = 0;
    while publishers.iter().any(|p| !p.is_finished()) {
        scrape(&main, Some(METRICS)).await;
        during += 1;
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    assert!(during >= 1, "no scrape ran during the load");
    for s in &mut sse {
        assert_eq!(s.events(4 * PER).await.len(), 4 * PER);
    }
    for stream in &mut ndjson {
        let mut buf = Vec::new();
        // Complete lines that are not keepalives (empty).
        let lines = |buf: &[u8]| {
            let mut parts: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            parts.pop();
            parts.into_iter().filter(|l| !l.is_empty()).count()
        };
        while lines(&buf) < 4 * PER {
            let chunk = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("NDJSON stalled")
                .expect("NDJSON ended")
                .expect("NDJSON chunk");
            buf.extend_from_slice(&chunk);
        }
        assert_eq!(lines(&buf), 4 * PER);
    }

    // Refusals: 3 without a credential, 2 with an unknown one, 1 outside the grant.
    for _ in 0..3 {
        assert_eq!(publish_as(&server, None, "orders/1").await, 401);
    }
    for _ in 0..2 {
        assert_eq!(
            publish_as(&server, Some("wrong-secret-zzzzzzzz"), "orders/1").await,
            401
        );
    }
    assert_eq!(publish_as(&server, Some(NARROW), "other/x").await, 403);

    let after = scrape(&own, Some(METRICS)).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let published = (5 * PER) as f64;
    assert_eq!(delta("tidings_events_published_total", &[]), published);
    assert_eq!(
        delta(
            "tidings_events_published_by_prefix_total",
            &[("prefix", "orders/")]
        ),
        (4 * PER) as f64
    );
    assert_eq!(
        delta("tidings_events_delivered_total", &[]),
        (4 * PER * 22) as f64,
        "every orders/ event to each of the 22 subscribers, nothing else"
    );
    assert_eq!(
        delta("tidings_publish_duration_seconds_count", &[]),
        published
    );
    assert_eq!(
        delta("tidings_store_commit_duration_seconds_count", &[]),
        published,
        "one commit timed per publish"
    );
    assert!(delta("tidings_publish_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(
        delta("tidings_connections_opened_total", &[("transport", "sse")]),
        20.0
    );
    // missing: /metrics once, publish 3×; invalid: /metrics once, publish 2×; forbidden:
    // /metrics with a publisher's token, publish outside the grant.
    let failures = |r: &str| delta("tidings_auth_failures_total", &[("reason", r)]);
    assert_eq!(failures("missing"), 4.0);
    assert_eq!(failures("invalid"), 3.0);
    assert_eq!(failures("forbidden"), 2.0);
    assert!(after.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(after.value("process_open_fds", &[]) >= 22.0);
    for secret in [PUB, NARROW, METRICS, ADMIN] {
        assert!(!after.text.contains(secret), "a secret in /metrics");
    }

    drop(sse);
    drop(ndjson);
    scrape_until(&own, Some(METRICS), "connections closed", |s| {
        conns(s, "sse") == 0.0
            && conns(s, "ndjson") == 0.0
            && s.value("tidings_subscriptions", &[]) == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_resets_and_slow_consumers_are_counted() {
    let server = Server::start(&["--durability", "memory", "--subscriber-queue", "16"]);
    let url = server.url("/metrics");
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"topic": "r/x", "type": "t", "data": i}))
        .collect();
    let ids = server.publish(&json!(batch)).await;
    let before = scrape(&url, None).await;

    // A resume after the first event replays the other nine.
    let mut resumed = server
        .subscribe_with("topic=r/*", &[("last-event-id", &ids[0])])
        .await;
    resumed.expect_retry().await;
    assert_eq!(resumed.events(9).await.len(), 9);
    // A cursor that is not an id: a reset.
    let mut lost = server
        .subscribe_with("topic=r/*", &[("last-event-id", "nonsense")])
        .await;
    lost.expect_retry().await;
    assert_eq!(lost.next_event().await.event, "reset");
    let s = scrape(&url, None).await;
    assert_eq!(
        s.value("tidings_events_replayed_total", &[])
            - before.value("tidings_events_replayed_total", &[]),
        9.0
    );
    assert_eq!(
        s.value("tidings_resets_sent_total", &[("reason", "invalid_cursor")]),
        1.0
    );

    // A subscriber that stops reading is cut off as a slow consumer once it reads again.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /events?topic=slow/* HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut slow, &mut buf, WAIT, |b| {
        b.windows(6).any(|w| w == b"retry:")
    })
    .await;
    let payload = "p".repeat(50_000);
    for _ in 0..200 {
        server.publish_one("slow/x", "big", json!(payload)).await;
    }
    // Read the slow stream to its end: what was queued, then the notice.
    let read = async {
        use tokio::io::AsyncReadExt as _;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match slow.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the slow stream never ended");
    let tail = &buf[buf.len().saturating_sub(300)..];
    assert!(
        String::from_utf8_lossy(tail).contains("event: reconnect-required"),
        "the slow stream did not end with reconnect-required"
    );
    scrape_until(&url, None, "the slow consumer counted", |s| {
        s.value("tidings_slow_consumer_disconnects_total", &[]) == 1.0
            && s.value(
                "tidings_reconnect_required_sent_total",
                &[("reason", "slow_consumer")],
            ) == 1.0
    })
    .await;
}

/// The JSON log lines written so far, each parsed (every line must be one JSON object).
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .stderr()
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// Waits for the JSON log line that `pick` accepts.
async fn log_line(server: &Server, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    logged(server, what, |s| {
        json_lines(s).into_iter().find(|v| pick(v))
    })
    .await
}

/// Polls the server's log until `find` returns something; panics after `WAIT`.
async fn logged<T>(server: &Server, what: &str, find: impl Fn(&Server) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = find(server) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line for {what}:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_connection_open_and_close_and_no_secret() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--log-format",
        "json",
        "--log",
        "info,tidings_server=debug",
        "--token",
        &format!("{PUB}:publish=*;subscribe=*"),
    ]);
    let auth = bearer(PUB);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut sub = server
        .subscribe_with("topic=logs/*&type=t&clientId=tab-7", &auth)
        .await;
    sub.expect_retry().await;
    assert_eq!(sub.next_event().await.event, "subscribed");
    let opened = log_line(&server, "the SSE open", |v| {
        v["message"] == "Connection opened." && v["transport"] == "sse"
    })
    .await;
    assert_eq!(opened["level"], "INFO");
    assert!(opened["timestamp"].is_string());
    assert_eq!(opened["endpoint"], "events");
    assert_eq!(opened["selector"], "topic=logs/* type=t");
    assert_eq!(opened["client_id"], "tab-7");
    let remote = opened["remote"].as_str().expect("remote address");
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    let conn = opened["conn"].as_u64().expect("connection id");
    for _ in 0..3 {
        assert_eq!(publish_as(&server, Some(PUB), "logs/a").await, 200);
    }
    assert_eq!(sub.events(3).await.len(), 3);
    drop(sub);
    let closed = log_line(&server, "the SSE close", |v| {
        v["message"] == "Connection closed." && v["conn"] == conn
    })
    .await;
    assert_eq!(closed["endpoint"], "events");
    assert_eq!(closed["transport"], "sse");
    assert_eq!(closed["remote"], remote);
    assert_eq!(closed["selector"], "topic=logs/* type=t");
    assert_eq!(closed["client_id"], "tab-7");
    assert_eq!(closed["delivered"], 3);
    assert_eq!(closed["reason"], "client_gone");
    assert!(closed["duration_ms"].is_u64());

    // A long-poll is a connection too: it closes once answered.
    let resp = server
        .get_events("topic=logs/*&poll=1&timeout=0&lastEventId=earliest", &auth)
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let polled = log_line(&server, "the long-poll close", |v| {
        v["message"] == "Connection closed." && v["transport"] == "poll"
    })
    .await;
    assert_eq!(polled["delivered"], 3);
    assert_eq!(polled["reason"], "answered");
    // Without a client id the field is absent.
    assert!(polled.get("client_id").is_none(), "{polled}");

    // A refusal carries its stable code.
    assert_eq!(
        publish_as(&server, Some("wrong-secret-zzzzzzzz"), "logs/a").await,
        401
    );
    let refused = log_line(&server, "the refusal", |v| {
        v["message"] == "Request refused."
    })
    .await;
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(refused["status"], 401);
    let log = server.stderr();
    assert!(!log.contains(PUB), "the token reached the log");
    assert!(
        !log.contains("wrong-secret"),
        "a presented secret reached the log"
    );
}

/// Waits for the text log line containing `what`.
async fn text_line(server: &Server, what: &str) -> String {
    logged(server, what, |s| {
        s.stderr()
            .lines()
            .find(|l| l.contains(what))
            .map(str::to_owned)
    })
    .await
}

/// The default text format (what an operator tails): the connection lines carry every field
/// the JSON lines do, in `name=value` form after the time, level and target, and no secret.
#[tokio::test(flavor = "multi_thread")]
async fn text_logs_carry_the_connection_fields_and_no_secret() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--token",
        &format!("{PUB}:publish=*;subscribe=*"),
    ]);
    let auth = bearer(PUB);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut sub = server
        .subscribe_with("topic=logs/*&type=t&clientId=tab-7", &auth)
        .await;
    sub.expect_retry().await;
    assert_eq!(sub.next_event().await.event, "subscribed");
    let opened = text_line(&server, "Connection opened.").await;
    // `2026-12-02T01:20:43.881464Z  INFO tidings_server::tracked: Connection opened. conn=1 …`
    let (time, rest) = opened.split_at(27);
    assert!(
        time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{opened}"
    );
    assert!(
        rest.starts_with("  INFO tidings_server::tracked: Connection opened. conn="),
        "{opened}"
    );
    for field in [
        " endpoint=events ",
        " transport=\"sse\" ",
        " remote=127.0.0.1:",
        " selector=topic=logs/* type=t ",
        " client_id=\"tab-7\"",
    ] {
        assert!(opened.contains(field), "{field} missing: {opened}");
    }
    assert_eq!(publish_as(&server, Some(PUB), "logs/a").await, 200);
    assert_eq!(sub.events(1).await.len(), 1);
    drop(sub);
    let closed = text_line(&server, "Connection closed.").await;
    for field in [
        " endpoint=events ",
        " transport=\"sse\" ",
        " selector=topic=logs/* type=t ",
        " delivered=1 ",
        " reason=\"client_gone\"",
        " duration_ms=",
    ] {
        assert!(closed.contains(field), "{field} missing: {closed}");
    }
    let log = server.stderr();
    assert!(!log.contains(PUB), "the token reached the log");
}

async fn admin_call(method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("admin call timed out")
        .expect("admin call");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_lists_pages_and_closes_connections_for_admins_only() {
    let server = Server::start(&[
        "--durability",
        "memory",
        "--token",
        &format!("{PUB}:publish=*;subscribe=*"),
        "--token",
        &format!("{ADMIN}:publish=*;subscribe=*;admin"),
    ]);
    let stats_url = server.url("/admin/stats");
    assert_eq!(
        admin_call(reqwest::Method::GET, &stats_url, None).await.0,
        401
    );
    assert_eq!(
        admin_call(reqwest::Method::GET, &stats_url, Some(PUB))
            .await
            .0,
        403
    );
    let list_url = server.url("/admin/connections");
    assert_eq!(
        admin_call(reqwest::Method::GET, &list_url, Some(PUB))
            .await
            .0,
        403
    );

    let auth = bearer(PUB);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut subs = Vec::new();
    // The first is a client-id session (it opens with `subscribed`).
    for query in ["topic=adm/*&clientId=adm-1", "topic=adm/*", "topic=adm/*"] {
        let mut s = server.subscribe_with(query, &auth).await;
        s.expect_retry().await;
        if query.contains("clientId") {
            assert_eq!(s.next_event().await.event, "subscribed");
        }
        subs.push(s);
    }
    for _ in 0..2 {
        assert_eq!(publish_as(&server, Some(PUB), "adm/x").await, 200);
    }
    for s in &mut subs {
        assert_eq!(s.events(2).await.len(), 2);
    }

    let (status, stats) = admin_call(reqwest::Method::GET, &stats_url, Some(ADMIN)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["published"], 2);
    assert_eq!(stats["delivered"], 6);
    assert_eq!(stats["subscriptions"], 3);
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["sessions"], 1);
    assert_eq!(stats["draining"], false);
    let metrics = scrape(&server.url("/metrics"), Some(ADMIN)).await;
    assert_eq!(metrics.value("tidings_sessions", &[]), 1.0);
    assert_eq!(stats["store"]["healthy"], true);

    let (status, first) = admin_call(
        reqwest::Method::GET,
        &format!("{list_url}?limit=2"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let page = first["connections"].as_array().expect("connections");
    assert_eq!(page.len(), 2);
    for c in page {
        assert_eq!(c["endpoint"], "events");
        assert_eq!(c["transport"], "sse");
        assert_eq!(c["selector"], "topic=adm/*");
        assert_eq!(c["delivered"], 2);
        assert_eq!(c["queued"], 0);
        assert!(
            c["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{c}"
        );
        assert!(c["connected_since_ms"].as_u64().unwrap() > 1_600_000_000_000);
    }
    // Listed in id order, which is the order they opened in.
    assert_eq!(page[0]["client_id"], "adm-1");
    assert_eq!(page[1]["client_id"], Value::Null);
    let next = first["next"].as_u64().expect("a next page");
    let (_, second) = admin_call(
        reqwest::Method::GET,
        &format!("{list_url}?limit=2&after={next}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(second["connections"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], Value::Null);
    for bad in ["limit=0", "limit=5000", "after=x", "colour=red"] {
        let (status, body) = admin_call(
            reqwest::Method::GET,
            &format!("{list_url}?{bad}"),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
    }

    // Close the first listed: only an admin may; that subscriber is told to reconnect.
    let id = page[0]["id"].as_u64().unwrap();
    let one = server.url(&format!("/admin/connections/{id}"));
    assert_eq!(
        admin_call(reqwest::Method::DELETE, &one, Some(PUB)).await.0,
        403
    );
    assert_eq!(
        admin_call(reqwest::Method::DELETE, &one, Some(ADMIN))
            .await
            .0,
        204
    );
    // Which subscriber it was is not visible from here: poll each in turn until one is told.
    let deadline = tokio::time::Instant::now() + WAIT;
    let told = 'found: loop {
        for (i, s) in subs.iter_mut().enumerate() {
            if let Ok(ev) = tokio::time::timeout(Duration::from_millis(50), s.next_event()).await {
                assert_eq!(ev.event, "reconnect-required");
                assert_eq!(ev.data, r#"{"reason":"operator"}"#);
                break 'found i;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody was told to reconnect"
        );
    };
    for (i, s) in subs.iter_mut().enumerate() {
        if i != told {
            s.expect_no_event(Duration::from_millis(200)).await;
        }
    }
    scrape_until(
        &server.url("/metrics"),
        Some(ADMIN),
        "the close counted",
        |s| {
            s.value(
                "tidings_reconnect_required_sent_total",
                &[("reason", "operator")],
            ) == 1.0
                && s.value("tidings_connections", &[("transport", "sse")]) == 2.0
        },
    )
    .await;
    let (status, body) = admin_call(reqwest::Method::DELETE, &one, Some(ADMIN)).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = admin_call(
        reqwest::Method::DELETE,
        &server.url("/admin/connections/abc"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, 400);
}
