//! Replays the committed seed inputs of the server's fuzz targets (fuzz/seeds/) through the
//! same checks the fuzzer runs, so `cargo test` catches a regression without a nightly
//! toolchain.

use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path).expect("a seed file");
            (path, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn request_head_seeds_hold() {
    for (_path, bytes) in seeds("request_head") {
        super::request_head(&bytes);
    }
}

#[test]
fn publish_body_seeds_hold() {
    for (_path, bytes) in seeds("publish_body") {
        super::publish_body(&bytes);
    }
}

#[test]
fn config_seeds_hold() {
    for (path, bytes) in seeds("config") {
        let text = String::from_utf8(bytes).unwrap_or_else(|_| panic!("{}", path.display()));
        super::config_toml(&text);
    }
}

/// The seeds reach the interesting side of each check: a head the lean path streams, a body
/// that is accepted, a config that validates.
#[test]
fn seeds_include_accepted_inputs() {
    let streams = seeds("request_head").iter().any(|(_, b)| {
        super::route_tables()
            .iter()
            .any(|r| matches!(crate::lean::judge(b, r), crate::lean::Judged::Stream(..)))
    });
    assert!(streams, "no request_head seed is a lean stream");
    let max = tidings_core::Limits::default().max_batch_events;
    let accepted = seeds("publish_body")
        .iter()
        .any(|(_, b)| crate::http::publish::parse_events(b, max).is_ok());
    assert!(accepted, "no publish_body seed is accepted");
    let valid = seeds("config").iter().any(|(_, b)| {
        crate::config::RawConfig::from_toml(std::str::from_utf8(b).unwrap_or(""))
            .and_then(crate::config::RawConfig::validate)
            .is_ok()
    });
    assert!(valid, "no config seed validates");
}
