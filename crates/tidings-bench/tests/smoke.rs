//! Runs `tidings-bench smoke` against the debug `tidings` binary, with either load generator
//! (raw sockets, and tidings-client subscriptions), `client-parse`, and short runs of the
//! storm, progress and cluster scenarios, so the bench cannot rot. No timing assertions: the
//! smoke only checks that events were delivered and well-formed, `client-parse` that every
//! event was parsed and a rate reported, the scenarios that they ran to their report.

use std::path::PathBuf;
use std::process::Command;

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.clone(), PathBuf::from)
}

fn tidings_bin(root: &std::path::Path) -> PathBuf {
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target_dir.join("debug").join("tidings");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "tidings"])
            .current_dir(root)
            .status()
            .expect("run cargo build -p tidings");
        assert!(status.success(), "cargo build -p tidings failed");
    }
    bin
}

/// Runs `tidings-bench` with `args` (after `--tidings-bin` and `--out`); returns stdout.
fn bench(out: &std::path::Path, args: &[&str]) -> String {
    let root = workspace_root();
    let bin = tidings_bin(&root);
    let output = Command::new(env!("CARGO_BIN_EXE_tidings-bench"))
        .arg("--tidings-bin")
        .arg(&bin)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("run tidings-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // A scenario reports a point it could not measure and goes on to the next.
    assert!(
        !stdout.contains("FAILED"),
        "{args:?}: a point failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

#[test]
fn smoke_delivers_well_formed_events() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(
        out.path(),
        &["smoke", "--subscribers", "200", "--duration", "2"],
    );
    assert!(stdout.contains("smoke: ok"), "stdout:\n{stdout}");
}

#[test]
fn smoke_with_tidings_client_subscribers() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(
        out.path(),
        &[
            "--loadgen",
            "client",
            "smoke",
            "--subscribers",
            "50",
            "--duration",
            "2",
        ],
    );
    assert!(stdout.contains("smoke: ok"), "stdout:\n{stdout}");
}

#[test]
fn client_parse_reads_every_event_of_both_framings() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(out.path(), &["client-parse", "--events", "20000"]);
    assert!(stdout.contains("client-parse sse"), "stdout:\n{stdout}");
    assert!(stdout.contains("client-parse ndjson"), "stdout:\n{stdout}");
    let json = std::fs::read(out.path().join("client-parse.json")).expect("result file");
    let results: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    for r in results.as_array().expect("a list") {
        assert_eq!(r["events"], 20000, "{r}");
        assert!(r["events_per_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
    }
}

/// The reconnect storm end to end on a small herd: the hub is restarted under its clients and
/// every client ends with exactly every acknowledged event of its topic, none twice.
#[test]
fn storm_restarts_the_hub_and_every_client_catches_up_exactly() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(
        out.path(),
        &[
            "--warmup",
            "0.3",
            "storm",
            "--targets",
            "tidings",
            "--subscribers",
            "200",
            "--topics",
            "4",
            "--rate",
            "40",
            "--missed",
            "20",
            "--deadline",
            "30",
            "--backlog",
            "512",
        ],
    );
    assert!(stdout.contains("storm    tidings"), "stdout:\n{stdout}");
    let file = std::fs::read_dir(out.path())
        .expect("results")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-storm-tidings-"))
        .unwrap_or_else(|| panic!("no storm result; stdout:\n{stdout}"));
    let point: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).expect("read")).expect("JSON");
    let storm = &point["storm"];
    assert_eq!(storm["caught_up"], 200, "{point}");
    assert_eq!(storm["lost"], 0, "{point}");
    assert_eq!(storm["duplicated"], 0, "{point}");
    assert_eq!(storm["exact"], true, "{point}");
    assert_eq!(
        storm["backlog"], 512,
        "the restarted hub's listener: {point}"
    );
    assert!(
        point["delivered"].as_u64().is_some_and(|d| d > 0),
        "{point}"
    );
}

/// The progress workload, both ways (without coalescing, then `latest`), on a small scale: it
/// starts Tidings with its own rules file and arguments, which must stay valid.
#[test]
fn progress_runs_with_and_without_coalescing() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(
        out.path(),
        &[
            "--warmup",
            "0.3",
            "progress",
            "--subscribers",
            "20",
            "--keys",
            "5",
            "--hz",
            "20",
            "--window-ms",
            "250",
            "--duration",
            "1",
        ],
    );
    let measured = stdout
        .lines()
        .filter(|l| l.starts_with("progress ") && l.contains("deliveries/s="))
        .count();
    assert_eq!(measured, 2, "both ways measured; stdout:\n{stdout}");
}

/// The cluster scenario on two nodes over a real `nats-server` (on PATH, as the README's test
/// command installs it), briefly: the single node, the nodes, and the publish throughput.
#[test]
fn cluster_runs_two_nodes_over_nats() {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout = bench(
        out.path(),
        &[
            "--warmup",
            "0.3",
            "cluster",
            "--nodes",
            "2",
            "--subscribers-per-node",
            "20",
            "--rate",
            "10",
            "--duration",
            "1",
            "--publish-duration",
            "1",
        ],
    );
    for want in [
        "cluster2-node0",
        "cluster2-node1",
        "cluster-publish cluster2",
    ] {
        assert!(stdout.contains(want), "{want} missing; stdout:\n{stdout}");
    }
}
