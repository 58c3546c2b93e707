//! A real network partition between a Tidings node and NATS: node B runs in a network
//! namespace of its own, reached over two veth pairs, one for its clients and one for its
//! NATS connection, and the partition drops every packet on the NATS pair (a `tc` queue of
//! length 0 on both ends). Unlike a killed server, a partition answers nothing: no reset, no
//! refused connect, so only timeouts can tell. While it lasts, B (idle) turns `/readyz` 503
//! once its NATS client finds the connection dead, and refuses publishes with 503
//! `store_unavailable`; its subscribers' streams stay open, and node A (on the same NATS)
//! goes on. Once it heals, B's subscribers get everything A acknowledged
//! meanwhile, in order, once each.
//!
//! Needs root for `ip netns` and `tc` (the CI machine runs the suite as root).

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use tidings_cluster_nats::testing::NatsServer;

use crate::cluster::until_status;
use crate::cluster_faults::{assert_all_in_order, ids_through};
use crate::support::{Launch, Server, ignore};

/// Node B's token (it listens off loopback).
const SECRET: &str = "partition-test-secret-0123456789";

/// Runs a command that must succeed.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace for one node with two links to the root namespace: `clients`
/// (root `.1`, node `.2`) and `nats` (root `.5`, node `.6`), each a /30. Removed on drop
/// (deleting the namespace deletes its veth ends and, with them, their peers).
struct Netns {
    name: String,
    /// The root namespace's end of the NATS link, and the node's.
    nats_root: String,
    nats_node: String,
    /// The first three octets of both links' addresses.
    net: String,
}

impl Netns {
    fn new() -> Netns {
        let pid = std::process::id();
        let tag = pid % 100_000;
        let net = format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 250);
        let ns = Netns {
            name: format!("tdp{tag}"),
            nats_root: format!("tdpn{tag}"),
            nats_node: format!("tdpm{tag}"),
            net,
        };
        // A namespace left by an earlier run of this process id would fail the `add`.
        ignore(Command::new("ip").args(["netns", "del", &ns.name]).output());
        run(&["ip", "netns", "add", &ns.name]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        let clients = (format!("tdpc{tag}"), format!("tdpd{tag}"));
        for ((root, node), (a, b)) in [
            (clients, (1, 2)),
            ((ns.nats_root.clone(), ns.nats_node.clone()), (5, 6)),
        ] {
            run(&[
                "ip", "link", "add", &root, "type", "veth", "peer", "name", &node,
            ]);
            run(&["ip", "link", "set", &node, "netns", &ns.name]);
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{}.{a}/30", ns.net),
                "dev",
                &root,
            ]);
            run(&["ip", "link", "set", &root, "up"]);
            let at = format!("{}.{b}/30", ns.net);
            run(&["ip", "-n", &ns.name, "addr", "add", &at, "dev", &node]);
            run(&["ip", "-n", &ns.name, "link", "set", &node, "up"]);
        }
        ns
    }

    /// The node's address on its clients' link.
    fn node_ip(&self) -> String {
        format!("{}.2", self.net)
    }

    /// The root namespace's address on the NATS link.
    fn nats_ip(&self) -> String {
        format!("{}.5", self.net)
    }

    /// Drops every packet both ways on the NATS link.
    fn partition(&self) {
        // A queue of length 0 drops every packet (this kernel has no `netem`).
        let loss = ["root", "pfifo", "limit", "0"];
        run(&[&["tc", "qdisc", "add", "dev", &self.nats_root][..], &loss].concat());
        let node = [
            "ip", "netns", "exec", &self.name, "tc", "qdisc", "add", "dev",
        ];
        run(&[&node[..], &[self.nats_node.as_str()], &loss].concat());
    }

    fn heal(&self) {
        run(&["tc", "qdisc", "del", "dev", &self.nats_root, "root"]);
        let node = [
            "ip", "netns", "exec", &self.name, "tc", "qdisc", "del", "dev",
        ];
        run(&[&node[..], &[self.nats_node.as_str(), "root"]].concat());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ignore(
            Command::new("ip")
                .args(["netns", "del", &self.name])
                .output(),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_from_nats_refuses_publishes_then_catches_up_without_gap() {
    let net = Netns::new();
    // Listening on every address, so the node in the namespace reaches it over its link.
    let nats = NatsServer::start_with(&["-a", "0.0.0.0"]);
    let a = Server::start(&["--cluster-nats", &nats.url(), "--cluster-stream", "P1"]);
    // Off loopback, a node must take credentials: every request to B carries the token.
    let mut launch = Launch::new(&[
        "--token",
        &format!("{SECRET}:publish=*;subscribe=*"),
        "--listen",
        &format!("{}:0", net.node_ip()),
        "--cluster-nats",
        &format!("nats://{}:{}", net.nats_ip(), nats.port()),
        "--cluster-stream",
        "P1",
    ])
    .netns(&net.name);
    launch.auto_listen = false;
    let mut b = Server::launch(launch);
    b.authorize(SECRET);

    let mut on_b = b.subscribe("topic=p/*").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let first = a.publish_one("p/1", "changed", json!(0)).await;
    assert_eq!(on_b.ids(1).await, std::slice::from_ref(&first));

    net.partition();
    let cut = Instant::now();
    // A is untouched: every publish is acknowledged.
    let mut acked = vec![first];
    for i in 1..=20 {
        acked.push(
            a.publish_one(&format!("p/{}", i % 3), "changed", json!(i))
                .await,
        );
    }
    // B, idle, finds its connection dead (here 10 s after it connected: the NATS client
    // gives up on it once its stream consumer's heartbeats stop coming) and turns unready;
    // a publish is then refused.
    until_status(&b, "/readyz", 503).await;
    eprintln!("B unready {:?} into the partition", cut.elapsed());
    let (code, body) = b
        .publish_raw(&json!({"topic": "p/1", "type": "changed", "data": -1}), &[])
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");

    net.heal();
    until_status(&b, "/readyz", 200).await;
    let last = a.publish_one("p/2", "changed", json!(21)).await;
    acked.push(last.clone());
    // The stream B's subscriber held through the partition delivers everything A
    // acknowledged meanwhile (resuming on B with its last id if B asked it to).
    let got = ids_through(on_b, &last, &b, "topic=p/*").await;
    assert_all_in_order(&got, &acked[1..], "B's subscriber");
    // B publishes again, and A's history agrees with B's ids.
    let again = b.publish_one("p/1", "changed", json!(22)).await;
    let mut on_a = a
        .subscribe_with("topic=p/*", &[("Last-Event-ID", last.as_str())])
        .await;
    on_a.expect_retry().await;
    assert_eq!(on_a.ids(1).await, [again]);
}
