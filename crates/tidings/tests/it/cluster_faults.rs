//! Cluster mode under faults, end to end: real `nats-server` processes (the fixtures of
//! `tidings_cluster_nats::testing`) and `tidings serve --cluster-nats` nodes.
//! - A 3-server NATS cluster with stream replicas 3: the server leading the stream is killed
//!   (kill -9) while a node publishes; every acknowledged event reaches the other nodes, in
//!   order, and is replayable afterwards.
//! - A Tidings node is killed (kill -9) under 1,000 clients spread over three nodes; its
//!   clients resume on another node with `Last-Event-ID`: each client gets every event
//!   exactly once, in order.
//! - A node stopped (SIGSTOP) while another publishes falls behind; continued (SIGCONT), it
//!   catches up in order.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tidings_cluster_nats::testing::{NatsServer, NatsServers};
use tidings_proto::sse::{Decoder, SseItem};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Server, SseClient, parse_id};

/// How long a faulted cluster may take to deliver what was acknowledged.
const SETTLE: Duration = Duration::from_secs(30);

fn node(urls: &[String], stream: &str, replicas: &str) -> Server {
    Server::start(&[
        "--cluster-nats",
        &urls.join(","),
        "--cluster-stream",
        stream,
        "--cluster-replicas",
        replicas,
    ])
}

fn seqs(ids: &[String]) -> Vec<u64> {
    ids.iter().map(|id| parse_id(id).1).collect()
}

/// Reads `sub`'s events (a stream of `query` on `node`) until one has id `last`; returns
/// their ids. Told `reconnect-required` (a replay read failing while JetStream elects a
/// leader), it resumes on the same node after the last id it got, as a client does.
pub(crate) async fn ids_through(
    sub: SseClient,
    last: &str,
    node: &Server,
    query: &str,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut sub = sub;
    let mut ids: Vec<String> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let next = tokio::time::timeout(left, sub.next_event_within(left + SETTLE)).await;
        let Ok(event) = next else {
            panic!(
                "{last} never came; got {} events, the last {:?}; the node's log:\n{}",
                ids.len(),
                ids.last(),
                node.stderr()
            );
        };
        if event.event == "reconnect-required" {
            eprintln!("resuming after {:?}: {}", ids.last(), event.data);
            let resume = ids.last().map_or("earliest", String::as_str);
            sub = node
                .subscribe_with(query, &[("Last-Event-ID", resume)])
                .await;
            sub.expect_retry().await;
            continue;
        }
        assert_eq!(event.event, "changed", "an event, not a notice: {event:?}");
        let done = event.last_event_id == last;
        ids.push(event.last_event_id);
        if done {
            return ids;
        }
    }
}

/// `got` rises strictly (no duplicate, in order) and holds every id of `acked`.
pub(crate) fn assert_all_in_order(got: &[String], acked: &[String], who: &str) {
    let got_seqs = seqs(got);
    assert!(
        got_seqs.windows(2).all(|w| w[0] < w[1]),
        "{who}: ids out of order or repeated: {got_seqs:?}"
    );
    let missing: Vec<&String> = acked.iter().filter(|id| !got.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{who}: acknowledged events lost: {missing:?}"
    );
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid} failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_nats_stream_leader_of_three_loses_no_acknowledged_event() {
    let mut nats = NatsServers::start(3);
    let urls = nats.urls();
    let (a, b, c) = (
        node(&urls, "F1", "3"),
        node(&urls, "F1", "3"),
        node(&urls, "F1", "3"),
    );
    let mut on_b = b.subscribe("topic=f/*").await;
    let mut on_c = c.subscribe("topic=f/*").await;
    on_b.expect_retry().await;
    on_c.expect_retry().await;
    b.wait_subscribers(1).await;
    c.wait_subscribers(1).await;
    let leader = {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(i) = nats.stream_leader("F1") {
                break i;
            }
            assert!(Instant::now() < deadline, "no server leads the stream");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // Publish one event at a time; kill the stream's leader a third of the way through.
    // Refusals (503 while JetStream elects a new leader) are fine; every 200 counts.
    const ACKED: usize = 120;
    let mut acked = Vec::new();
    let mut refused = 0;
    let deadline = Instant::now() + SETTLE;
    let mut i = 0;
    while acked.len() < ACKED {
        assert!(
            Instant::now() < deadline,
            "only {} publishes acknowledged ({refused} refused)",
            acked.len()
        );
        if acked.len() == ACKED / 3 && nats.servers[leader].pid().is_some() {
            nats.servers[leader].kill();
        }
        let (code, body) = a
            .publish_raw(
                &json!({"topic": format!("f/{}", i % 4), "type": "changed", "data": i}),
                &[],
            )
            .await;
        i += 1;
        match code {
            200 => acked.push(body["ids"][0].as_str().expect("an id").to_owned()),
            503 => refused += 1,
            _ => panic!("publish answered {code}: {body}"),
        }
    }
    assert!(
        nats.servers[leader].pid().is_none(),
        "the leader was killed"
    );
    let last = acked.last().expect("acknowledged ids").clone();
    assert_all_in_order(
        &ids_through(on_b, &last, &b, "topic=f/*").await,
        &acked,
        "node B",
    );
    assert_all_in_order(
        &ids_through(on_c, &last, &c, "topic=f/*").await,
        &acked,
        "node C",
    );
    // The history kept by the two surviving NATS servers has every acknowledged event.
    let mut replay = c
        .subscribe_with("topic=f/*", &[("Last-Event-ID", "earliest")])
        .await;
    replay.expect_retry().await;
    assert_all_in_order(
        &ids_through(replay, &last, &c, "topic=f/*").await,
        &acked,
        "replay",
    );
    let new_leader = nats.stream_leader("F1");
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "another server leads the stream: {new_leader:?}"
    );
}

/// What one lean client saw: the ids, in order, and how often it connected.
#[derive(Debug, Default)]
struct Seen {
    ids: Vec<String>,
    connects: u32,
    notices: Vec<String>,
}

/// A lean SSE client over a raw socket (HTTP/1.0, so the body is the bare stream): starts on
/// node `first`, and when its stream ends (its node died) resumes on the next node with
/// `Last-Event-ID`, until it receives the event of type `end`.
async fn lean_client(nodes: Arc<Vec<SocketAddr>>, first: usize, topic: &str) -> Seen {
    let mut seen = Seen::default();
    let mut at = first;
    let mut buf = vec![0u8; 16 << 10];
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a client never got to the end: {seen:?}"
        );
        let addr = nodes[at % nodes.len()];
        at += 1;
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        let resume = seen
            .ids
            .last()
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request =
            format!("GET /events?topic={topic} HTTP/1.0\r\nHost: 127.0.0.1\r\n{resume}\r\n");
        if s.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        seen.connects += 1;
        let mut head = Vec::new();
        let mut in_body = false;
        let mut decoder = Decoder::new(1 << 16);
        let mut items = Vec::new();
        loop {
            let n = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => panic!("a client stalled: {seen:?}"),
            };
            let mut body = &buf[..n];
            if !in_body {
                // Still in the response head: take bytes up to its end.
                let mut used = 0;
                while used < body.len() && !in_body {
                    head.push(body[used]);
                    used += 1;
                    in_body = head.ends_with(b"\r\n\r\n");
                }
                if !in_body {
                    continue;
                }
                assert!(
                    head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200"),
                    "subscribe answered {:?}",
                    String::from_utf8_lossy(&head)
                );
                body = &body[used..];
            }
            decoder.feed(body, &mut items).expect("SSE line bound");
            for item in items.drain(..) {
                let SseItem::Event(e) = item else { continue };
                match e.event.as_str() {
                    "changed" => seen.ids.push(e.last_event_id),
                    "end" => return seen,
                    _ => seen.notices.push(e.event),
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_node_under_1000_clients_loses_nothing_and_they_resume_elsewhere() {
    const CLIENTS: usize = 1_000;
    const EVENTS: usize = 120;
    let nats = NatsServer::start();
    let urls = [nats.url()];
    let (a, b, mut c) = (
        node(&urls, "F2", "1"),
        node(&urls, "F2", "1"),
        node(&urls, "F2", "1"),
    );
    let nodes = Arc::new(vec![a.addr, b.addr, c.addr]);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let nodes = Arc::clone(&nodes);
            tokio::spawn(async move { lean_client(nodes, i % 3, "load").await })
        })
        .collect();
    for (i, server) in [&a, &b, &c].into_iter().enumerate() {
        let on_it = (CLIENTS + 2 - i) / 3;
        server.wait_subscribers(on_it as u64).await;
    }
    let started = Instant::now();
    // One publisher on A; C is killed a third of the way through, under load.
    let mut acked = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        if i == EVENTS / 3 {
            c.kill9();
        }
        acked.push(a.publish_one("load", "changed", json!({ "i": i })).await);
    }
    a.publish_one("load", "end", json!(1)).await;
    let mut resumed = 0;
    for (i, client) in clients.into_iter().enumerate() {
        let seen = client.await.expect("a client task");
        assert!(seen.notices.is_empty(), "client {i}: {:?}", seen.notices);
        assert_eq!(
            seqs(&seen.ids),
            seqs(&acked),
            "client {i} (connected {} times): every event once, in order",
            seen.connects
        );
        assert_eq!(seen.ids, acked, "client {i}: the same ids on every node");
        if i % 3 == 2 {
            assert!(seen.connects >= 2, "client {i} of the killed node resumed");
            resumed += 1;
        }
    }
    assert_eq!(resumed, CLIENTS / 3);
    eprintln!(
        "{CLIENTS} clients, {EVENTS} events, node killed: checked in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_node_falls_behind_and_catches_up_in_order() {
    let nats = NatsServer::start();
    let urls = [nats.url()];
    let (a, b) = (node(&urls, "F3", "1"), node(&urls, "F3", "1"));
    let mut on_b = b.subscribe("topic=s/*").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let first = a.publish_one("s/0", "changed", json!(0)).await;
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&first));
    // B is frozen while A keeps publishing (and being acknowledged) for a while: its
    // consumer's messages pile up unread and its heartbeats go missing.
    signal(b.pid(), "-STOP");
    let mut acked = vec![first.clone()];
    let stopped = Instant::now();
    let mut i = 1;
    while i < 100 || stopped.elapsed() < Duration::from_secs(3) {
        acked.push(
            a.publish_one(&format!("s/{}", i % 5), "changed", json!(i))
                .await,
        );
        i += 1;
    }
    signal(b.pid(), "-CONT");
    let last = acked.last().expect("ids").clone();
    let mut got = vec![first.clone()];
    got.extend(ids_through(on_b, &last, &b, "topic=s/*").await);
    assert_eq!(got, acked, "B delivered everything once, in publish order");
    // B's history reads the same from any point.
    let mut replay = b
        .subscribe_with("topic=s/*", &[("Last-Event-ID", &first)])
        .await;
    replay.expect_retry().await;
    assert_eq!(
        ids_through(replay, &last, &b, "topic=s/*").await,
        acked[1..].to_vec()
    );
    // And B publishes again, in the same id space.
    let after = b.publish_one("s/0", "changed", json!("after")).await;
    assert_eq!(parse_id(&after).1, parse_id(&last).1 + 1);
}
