//! The Autobahn|Testsuite (`wstest -m fuzzingclient`) against a real server's WebSocket
//! endpoint, over every case that does not need an echo (the case list and why:
//! tests/autobahn/). Any case that does not end OK fails the test, as does a NON-STRICT result
//! outside the short, justified list below.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Server;

/// How many cases the pinned suite runs with `fuzzingclient.json` (a change means the list or
/// the suite changed, and the list must be re-derived).
const CASES: usize = 151;

/// NON-STRICT results Autobahn may give, with why each is acceptable (tests/autobahn/README.md).
const NON_STRICT_ALLOWED: &[(&str, &str)] = &[
    ("3.2", "no echo before the 1002"),
    ("3.3", "no echo before the 1002"),
    ("3.4", "no echo before the 1002"),
    ("4.1.3", "no echo before the 1002"),
    ("4.1.4", "no echo before the 1002"),
    ("4.1.5", "no echo before the 1002"),
    ("4.2.3", "no echo before the 1002"),
    ("4.2.4", "no echo before the 1002"),
    ("4.2.5", "no echo before the 1002"),
    ("5.15", "no echo before the 1002"),
    (
        "6.4.3",
        "UTF-8 is checked per complete frame, not per TCP chunk",
    ),
    (
        "6.4.4",
        "UTF-8 is checked per complete frame, not per TCP chunk",
    ),
];

/// The whole run is bounded: about 151 cases of a few milliseconds, plus the 6.4.* waits.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn case_order(id: &str) -> Vec<u32> {
    id.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

#[tokio::test]
async fn autobahn_fuzzingclient_finds_no_fault_in_the_websocket_endpoint() {
    let wstest = std::env::var("TIDINGS_TEST_WSTEST").unwrap_or_else(|_| {
        panic!(
            "TIDINGS_TEST_WSTEST is not set: run ./scripts/test, which installs the Autobahn \
             testsuite (Python 2.7) into target/test-deps/autobahn"
        )
    });
    let server = Server::start(&["--durability", "memory"]);
    let work = tempfile::tempdir().unwrap();
    let spec_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/autobahn/fuzzingclient.json"
    );
    let mut spec: Value =
        serde_json::from_str(&std::fs::read_to_string(spec_path).unwrap()).unwrap();
    let outdir = work.path().join("report");
    spec["outdir"] = json!(outdir);
    spec["servers"] = json!([{"agent": "tidings", "url": format!("ws://{}/events", server.addr)}]);
    let spec_file = work.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();

    let child = tokio::process::Command::new(&wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_file)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {wstest}: {e}"));
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("wstest did not finish within {RUN_LIMIT:?}"))
        .expect("wstest output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "wstest failed:\n{log}");

    let index = std::fs::read_to_string(outdir.join("index.json"))
        .unwrap_or_else(|e| panic!("no Autobahn report ({e}):\n{log}"));
    let index: Value = serde_json::from_str(&index).unwrap();
    let results: BTreeMap<String, Value> = index["tidings"]
        .as_object()
        .unwrap_or_else(|| panic!("no results for agent tidings:\n{index}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut bad = Vec::new();
    for (case, result) in &results {
        let behavior = result["behavior"].as_str().unwrap_or("?");
        let close = result["behaviorClose"].as_str().unwrap_or("?");
        let behavior_ok = match behavior {
            "OK" | "INFORMATIONAL" => true,
            "NON-STRICT" => NON_STRICT_ALLOWED.iter().any(|(c, _)| c == case),
            _ => false,
        };
        if !behavior_ok || !matches!(close, "OK" | "INFORMATIONAL") {
            bad.push((
                case_order(case),
                format!(
                    "{case}: {behavior} / close {close} (server close code {})",
                    result["remoteCloseCode"]
                ),
            ));
        }
    }
    bad.sort();
    let bad: Vec<String> = bad.into_iter().map(|(_, line)| line).collect();
    assert!(
        bad.is_empty(),
        "Autobahn cases not OK (reports in {}):\n{}",
        work.keep().display(),
        bad.join("\n")
    );
    assert_eq!(
        results.len(),
        CASES,
        "the suite ran a different number of cases: {:?}",
        results.keys().collect::<Vec<_>>()
    );
    for group in ["2.", "3.", "4.", "5.", "6.", "7."] {
        assert!(
            results.keys().any(|k| k.starts_with(group)),
            "no {group}* case ran"
        );
    }
    server.assert_works().await;
}
