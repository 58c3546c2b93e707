//! `/openapi.json` against the live server: schemathesis (PyPI) derives requests from the
//! document, valid and invalid at every boundary of every operation (its coverage phase,
//! deterministic), sends them over real sockets and checks each answer against the document
//! (status, content type, schema, SSE events) and the server against common faults (5xx,
//! accepting what the schema forbids, undocumented statuses).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Server;

#[test]
fn schemathesis_finds_nothing_against_the_live_document() {
    let python = std::env::var("TIDINGS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("TIDINGS_TEST_PYTHON is not set: run ./scripts/test, which installs schemathesis")
    });
    let schemathesis = std::path::Path::new(&python).with_file_name("schemathesis");
    let server = Server::start(&["--durability", "memory", "--sse-keepalive", "1s"]);
    // Its cache goes to a scratch directory, not the repository.
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = scratch.path().join("out.txt");
    let mut child = Command::new(&schemathesis)
        .args([
            "run",
            &server.url("/openapi.json"),
            "--checks",
            "all",
            // Its generator reuses one Idempotency-Key value across different bodies, and
            // the hub rightly answers the second with 422 `idempotency_conflict` (state, not
            // schema); schemathesis would only accept 409 there. Every other check runs.
            "--exclude-checks",
            "positive_data_acceptance",
            // A drain is for good: from then on every subscribe and `/readyz` answer 503,
            // as documented, and schemathesis counts any 5xx as a server error. Its
            // routing and document are checked in the server's unit tests, its behaviour in
            // tests/it/reconnect.rs.
            "--exclude-path",
            "/admin/drain",
            "--phases",
            "coverage",
            // Every valid subscribe request opens a stream that never ends, so each such case
            // lasts the whole timeout (about fifty of them: 160 s at 3 s, 70 s at 1 s); an
            // answer of the JSON routes takes milliseconds.
            "--request-timeout",
            "1",
            "--no-color",
        ])
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("output file"))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", schemathesis.display()));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            crate::support::ignore(child.kill());
            panic!("schemathesis did not finish within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.success(), "schemathesis found failures:\n{report}");
    assert!(
        report.contains("Tested: 14"),
        "not every operation was tested:\n{report}"
    );
}
