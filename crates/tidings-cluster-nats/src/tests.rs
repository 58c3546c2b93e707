//! `NatsCluster` against a real `nats-server -js` (`testing::NatsServer`: a free loopback
//! port, a temporary store directory, killed on drop): two nodes on one stream get the same ids,
//! replay reads the stream, a keyed retry through the other node is deduplicated, and a
//! recreated stream has another epoch; a node joins a server in operator mode with a
//! credentials file, also after a reconnection, and a missing or foreign one is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_core::{
    Coalescing, DynBus, DynStore, Hub, IdempotencyKey, IdempotencyScope, Limits, NewEvent,
    PublishBatch, ReadLimit, Retention, SubscribeRequest,
};
use tidings_proto::{Cursor, EventType, Pattern, Selector, Topic};

use super::testing::NatsServer;
use super::*;

/// The cluster settings of a node on the NATS servers at `urls`, stream `stream`.
fn config(urls: Vec<String>, stream: &str) -> ClusterConfig {
    ClusterConfig {
        urls,
        stream: stream.to_owned(),
        replicas: 1,
        token: None,
        credentials: None,
        retention: Retention::default(),
        session_ttl: Duration::from_secs(60),
        snapshot: tidings_core::SnapshotRules::default(),
    }
}

/// Polls `ok` until it holds, for at most 20 s.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node(nats: &NatsServer, stream: &str) -> (Arc<NatsCluster>, Hub) {
    node_with(&config(vec![nats.url()], stream)).await
}

/// A started node with these settings.
async fn node_with(settings: &ClusterConfig) -> (Arc<NatsCluster>, Hub) {
    let cluster = NatsCluster::connect(settings).await.unwrap();
    let hub = Hub::clustered(
        Arc::clone(&cluster) as DynStore,
        Arc::clone(&cluster) as DynBus,
        Limits::default(),
        tidings_core::clock::system(),
        Coalescing::default(),
    );
    cluster.start(hub.clone());
    (cluster, hub)
}

fn batch(topic: &str, n: usize, key: Option<&str>) -> PublishBatch {
    PublishBatch {
        events: (0..n)
            .map(|i| NewEvent {
                topic: Topic::new(topic).unwrap(),
                event_type: EventType::new("changed").unwrap(),
                key: None,
                data: serde_json::value::RawValue::from_string(format!("{{\"i\":{i}}}")).unwrap(),
            })
            .collect(),
        origin: None,
        idempotency_key: key.map(|k| IdempotencyKey {
            scope: IdempotencyScope::ANONYMOUS,
            key: k.to_owned(),
        }),
    }
}

fn everything(cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::All],
            types: vec![],
        },
        cursor,
        client_id: None,
    }
}

/// Reads events from `sub` until `n` came (or the deadline passed).
async fn take(sub: &mut tidings_core::Subscription, n: usize) -> Vec<tidings_proto::EventId> {
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ids.len() < n {
        let mut out = Vec::new();
        match tokio::time::timeout_at(deadline, sub.next(&mut out)).await {
            Err(_) => break,
            Ok(tidings_core::Step::Events) => ids.extend(out.iter().map(|e| e.event.id)),
            Ok(step) => panic!("unexpected step {step:?}"),
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_id_space_and_history() {
    let nats = NatsServer::start();
    let (a_cluster, a) = node(&nats, "T1").await;
    let (b_cluster, b) = node(&nats, "T1").await;
    assert_eq!(a.epoch(), b.epoch(), "the epoch derives from the stream");
    let mut on_b = b.subscribe(everything(None)).unwrap();
    let topic = "cloudreve://my/a b.jpg";
    let from_a = a.publish(batch(topic, 3, None)).await.unwrap();
    let from_b = b.publish(batch("x.y/*>", 2, None)).await.unwrap();
    assert_eq!(
        from_a
            .iter()
            .chain(&from_b)
            .map(|id| id.seq)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let got = take(&mut on_b, 5).await;
    assert_eq!(got, [from_a.clone(), from_b.clone()].concat());
    // Replay reads the stream: a subscription on A from the first id gets the rest.
    let mut resumed = a
        .subscribe(everything(Some(Cursor::After(from_a[0]))))
        .unwrap();
    assert_eq!(take(&mut resumed, 4).await, got[1..].to_vec());
    let chunk = a_cluster
        .read_chunk(0, ReadLimit::events(10))
        .await
        .unwrap();
    assert_eq!(chunk.len(), 5);
    assert_eq!(chunk[0].event.topic.as_str(), topic);
    assert_eq!(chunk[3].event.topic.as_str(), "x.y/*>");
    assert_eq!(b_cluster.stats().last_seq, 5);
    // A keyed retry through the other node is the same publish.
    let first = a.publish(batch("k", 2, Some("key-1"))).await.unwrap();
    let retry = b.publish(batch("k", 2, Some("key-1"))).await.unwrap();
    assert_eq!(first, retry);
    let again = a.publish(batch("k", 1, None)).await.unwrap();
    assert_eq!(again[0].seq, 8, "the retry stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_has_another_epoch() {
    let nats = NatsServer::start();
    let first = NatsCluster::connect(&config(vec![nats.url()], "T2"))
        .await
        .unwrap();
    let again = NatsCluster::connect(&config(vec![nats.url()], "T2"))
        .await
        .unwrap();
    assert_eq!(first.epoch(), again.epoch());
    let js = jetstream::new(first.client.clone());
    js.delete_stream("T2").await.unwrap();
    let recreated = NatsCluster::connect(&config(vec![nats.url()], "T2"))
        .await
        .unwrap();
    assert_ne!(first.epoch(), recreated.epoch());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_refuses_publishes_and_the_follower_resumes_without_gap() {
    let mut nats = NatsServer::start();
    let (_cluster, a) = node(&nats, "T3").await;
    let (_other, b) = node(&nats, "T3").await;
    let mut on_b = b.subscribe(everything(None)).unwrap();
    let before = a.publish(batch("t", 1, None)).await.unwrap();
    until("the other node ingesting", || b.head() == before[0].seq).await;
    nats.kill();
    until("readiness turning", || a.store_health().is_some()).await;
    let refused = a.publish(batch("t", 1, None)).await;
    assert!(
        matches!(refused, Err(tidings_core::PublishError::Store(_))),
        "{refused:?}"
    );
    nats.restart();
    until("reconnecting", || a.store_health().is_none()).await;
    until("the other node reconnecting", || b.store_health().is_none()).await;
    let after = a.publish(batch("t", 2, None)).await.unwrap();
    let got = take(&mut on_b, 3).await;
    assert_eq!(
        got,
        [before, after].concat(),
        "the stream stayed open, no gap"
    );
    assert_eq!(got.iter().map(|id| id.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_three_replicas_survives_its_leader_killed() {
    let mut servers = super::testing::NatsServers::start(3);
    let settings = ClusterConfig {
        replicas: 3,
        ..config(servers.urls(), "R3")
    };
    let (cluster, hub) = node_with(&settings).await;
    let mut stream = cluster.stream.clone();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 3);
    let replicas = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
    assert_eq!(
        replicas, 2,
        "a leader and two followers: {:?}",
        info.cluster
    );
    let before = hub.publish(batch("r", 5, None)).await.unwrap();
    let mut leader = None;
    until("a server naming the stream's leader", || {
        leader = servers.stream_leader("R3");
        leader.is_some()
    })
    .await;
    let leader = leader.unwrap();
    servers.servers[leader].kill();
    // Publishes are refused or delayed while the two left elect a leader, then acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match hub.publish(batch("r", 5, None)).await {
            Ok(ids) => break ids,
            Err(e) => assert!(Instant::now() < deadline, "no new leader: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let new_leader = servers.stream_leader("R3");
    assert!(new_leader.is_some_and(|l| l != leader), "{new_leader:?}");
    // Nothing acknowledged before the kill is gone from the history. The JetStream API may
    // still time out while the servers settle their metadata leader (a reader is told
    // `store_unavailable` and retries, as this does).
    let chunk = loop {
        match cluster.read_chunk(0, ReadLimit::events(100)).await {
            Ok(chunk) => break chunk,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no history after the kill: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stored: Vec<_> = chunk.iter().map(|e| e.event.id).collect();
    for id in before.iter().chain(&after) {
        assert!(stored.contains(id), "{id:?} lost; stored {stored:?}");
    }
}

/// Snapshots taken on one node while another publishes keyed events: each is exactly the
/// newest event per key among the events up to its cursor, however the two race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_exact_as_of_its_cursor_under_concurrent_publishing() {
    let nats = NatsServer::start();
    let (_a_cluster, a) = node(&nats, "T4").await;
    let (_b_cluster, b) = node(&nats, "T4").await;
    let publisher = tokio::spawn(async move {
        let mut published = Vec::new();
        for n in 0..300u64 {
            let key = format!("k{}", n % 7);
            let mut one = batch("snap/x", 1, None);
            one.events[0].key = Some(tidings_proto::Key::new(&key).unwrap());
            let id = a.publish(one).await.unwrap()[0];
            published.push((id.seq, key));
        }
        published
    });
    let selector = Selector {
        patterns: vec![Pattern::Prefix("snap/".into())],
        types: vec![],
    };
    let mut snapshots = Vec::new();
    while !publisher.is_finished() {
        let snap = b.snapshot(selector.clone()).await.unwrap();
        let rows: Vec<(u64, String)> = snap
            .events
            .iter()
            .map(|e| (e.seq(), e.event.key.as_ref().unwrap().as_str().to_owned()))
            .collect();
        snapshots.push((snap.cursor.seq, rows));
    }
    let published = publisher.await.unwrap();
    assert!(snapshots.len() > 1, "snapshots raced the publisher");
    for (cursor, rows) in snapshots {
        let mut newest = std::collections::BTreeMap::new();
        for (seq, key) in published.iter().filter(|(seq, _)| *seq <= cursor) {
            newest.insert(key.clone(), *seq);
        }
        let mut want: Vec<(u64, String)> = newest.into_iter().map(|(k, s)| (s, k)).collect();
        want.sort();
        assert_eq!(rows, want, "the snapshot as of {cursor}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file_joins_nats_in_operator_mode_and_signs_again_on_reconnect() {
    let operator = super::testing::Operator::new();
    let mut nats = NatsServer::start_operator(&operator);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("node.creds");
    let (text, seed) = operator.user_creds("node");
    std::fs::write(&creds, text).unwrap();
    check_credentials_file(&creds).unwrap();
    let with_creds = ClusterConfig {
        credentials: Some(creds.clone()),
        ..config(vec![nats.url()], "C1")
    };
    // Creating the stream and the sessions bucket needs JetStream in the user's account.
    let (_cluster, a) = node_with(&with_creds).await;
    let mut on_a = a.subscribe(everything(None)).unwrap();
    let before = a.publish(batch("t", 1, None)).await.unwrap();
    // A reconnection is a new CONNECT with the server's new nonce: without the credentials
    // it would be refused, and the node would stay unready.
    nats.kill();
    until("readiness turning", || a.store_health().is_some()).await;
    nats.restart();
    until("reconnecting with the credentials", || {
        a.store_health().is_none()
    })
    .await;
    let after = a.publish(batch("t", 1, None)).await.unwrap();
    assert_eq!(take(&mut on_a, 2).await, [before, after].concat());

    // No credentials, or a user of an account the server does not trust: refused at once.
    let refused = NatsCluster::connect(&config(vec![nats.url()], "C1"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("authorization violation"),
        "{refused}"
    );
    let stranger = dir.path().join("stranger.creds");
    let (text, stranger_seed) = super::testing::Operator::stranger_creds("stranger");
    std::fs::write(&stranger, text).unwrap();
    let refused = NatsCluster::connect(&ClusterConfig {
        credentials: Some(stranger.clone()),
        ..config(vec![nats.url()], "C1")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("authorization violation"), "{refused}");
    assert!(
        refused.contains(&stranger.display().to_string()),
        "{refused}"
    );
    assert!(!refused.contains(&stranger_seed), "{refused}");

    // A file that is not a credentials file: the reason, never a piece of it.
    let broken = dir.path().join("broken.creds");
    let seed_block =
        format!("-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n");
    let jwt_block =
        "-----BEGIN NATS USER JWT-----\neyJ0.eyJ1.c2ln\n------END NATS USER JWT------\n";
    let cut = seed_block.replace(&seed, &seed[..seed.len() - 2]);
    for (text, want) in [
        (format!("just the seed: {seed}\n"), "holds no block"),
        (seed_block.clone(), "holds one block"),
        (
            format!("{jwt_block}{cut}"),
            "second block is not a valid nkey seed",
        ),
    ] {
        std::fs::write(&broken, text).unwrap();
        let reason = check_credentials_file(&broken).unwrap_err();
        assert!(reason.contains(want), "{reason}");
        assert!(!reason.contains(&seed[..seed.len() - 2]), "{reason}");
    }
    let reason = check_credentials_file(&dir.path().join("missing.creds")).unwrap_err();
    assert!(reason.contains("No such file"), "{reason}");
}
