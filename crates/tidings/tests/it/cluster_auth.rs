//! Cluster mode against a `nats-server` in operator mode (decentralized JWT authorization,
//! the trust chain minted by `testing::Operator` as `nsc` would): two nodes joined with
//! `--cluster-credentials` publish and receive across nodes over real sockets; a node with
//! no credentials, a user of an account the server does not trust, a missing or broken file,
//! or a token as well is refused at startup with an error that names the setting and never
//! prints the seed.

use serde_json::json;
use tidings_cluster_nats::testing::{NatsServer as Nats, Operator};

use crate::support::{Launch, Server};

/// `tidings serve`'s exit status for invalid configuration.
const EXIT_CONFIG: i32 = 64;

fn args<'a>(nats: &'a str, creds: &'a str) -> Vec<&'a str> {
    vec![
        "--cluster-nats",
        nats,
        "--cluster-stream",
        "AUTH",
        "--cluster-credentials",
        creds,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_with_a_credentials_file_are_one_hub_on_nats_in_operator_mode() {
    let operator = Operator::new();
    let nats = Nats::start_operator(&operator);
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("tidings.creds");
    let (text, seed) = operator.user_creds("tidings");
    std::fs::write(&creds, text).expect("write the credentials file");
    let (url, path) = (nats.url(), creds.display().to_string());
    let a = Server::start(&args(&url, &path));
    // The second node takes the file from the environment, as a deployment's secret would.
    let b = Server::launch(
        Launch::new(&["--cluster-nats", &url, "--cluster-stream", "AUTH"])
            .env("TIDINGS_CLUSTER_CREDENTIALS", &path),
    );
    let mut on_b = b.subscribe("").await;
    on_b.expect_retry().await;
    b.wait_subscribers(1).await;
    let id = a
        .publish_one("secured/1", "changed", json!({ "n": 1 }))
        .await;
    let got = on_b.events(1).await;
    assert_eq!(got[0].last_event_id, id, "the same id on the other node");
    assert_eq!(got[0].data, r#"{"n":1}"#);
    for node in [&a, &b] {
        node.readyz().await; // 200: NATS connected
        assert!(!node.stderr().contains(&seed), "the seed reached the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_trusted_credentials_is_refused_and_never_prints_the_seed() {
    let operator = Operator::new();
    let nats = Nats::start_operator(&operator);
    let url = nats.url();
    let dir = tempfile::tempdir().expect("tempdir");

    // No credentials: the server refuses the connection; the node does not start.
    let (code, err) =
        Launch::new(&["--cluster-nats", &url, "--cluster-stream", "AUTH"]).run_to_exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("authorization violation"), "{err}");

    // A user signed by an account key the server's operator never signed.
    let stranger = dir.path().join("stranger.creds");
    let (text, seed) = Operator::stranger_creds("stranger");
    std::fs::write(&stranger, &text).expect("write");
    let path = stranger.display().to_string();
    let (code, err) = Launch::new(&args(&url, &path)).run_to_exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("credentials file {path}: authorization violation")),
        "{err}"
    );
    assert!(!err.contains(&seed), "the seed reached stderr: {err}");

    // A file with the seed's block only, a missing file, and a token as well: configuration
    // errors naming `cluster.credentials`, refused before any port is bound.
    let broken = dir.path().join("broken.creds");
    let seed_only = &text[text
        .find("-----BEGIN USER NKEY SEED")
        .expect("a seed block")..];
    std::fs::write(&broken, seed_only).expect("write");
    let broken = broken.display().to_string();
    let missing = dir.path().join("missing.creds").display().to_string();
    for (launch, want) in [
        (
            Launch::new(&args(&url, &broken)),
            format!("cluster.credentials: {broken}: holds one block"),
        ),
        (
            Launch::new(&args(&url, &missing)),
            format!("cluster.credentials: {missing}: No such file"),
        ),
        (
            Launch::new(&args(&url, &path)).env("TIDINGS_CLUSTER_TOKEN", "a-nats-token"),
            "cluster.credentials: cannot be set with cluster.token".to_owned(),
        ),
    ] {
        let (code, err) = launch.run_to_exit();
        assert_eq!(code, Some(EXIT_CONFIG), "{err}");
        assert!(err.contains(&want), "{want}: {err}");
        assert!(!err.contains(&seed), "the seed reached stderr: {err}");
    }
}
