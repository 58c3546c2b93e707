//! What an idle client-id session costs: 100k clients subscribe with a client id and go away,
//! and the growth of the resident set is divided by their number. Its own test target, so no
//! other test allocates meanwhile. Prints the figure (no assertion on it beyond a loose
//! bound); rerun with
//! `cargo test -p tidings-core --release --test session_memory -- --nocapture`.

use std::sync::Arc;

use tidings_core::{Hub, Limits, MemoryStore, Retention, SubscribeRequest};
use tidings_proto::{Epoch, Key, Pattern, Selector};

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test]
async fn bytes_per_idle_session_at_100k() {
    const N: usize = 100_000;
    let store = Arc::new(MemoryStore::new(Epoch(1), Retention::default()));
    let hub = Hub::new(
        store,
        Limits {
            max_sessions: N,
            ..Limits::default()
        },
    );
    let selector = Selector {
        patterns: vec![Pattern::parse("cloudreve://my/").unwrap()],
        types: vec![],
    };
    // The ids are made first, so only what the hub keeps is measured.
    let ids: Vec<Key> = (0..N)
        .map(|i| Key::new(&format!("3f7c3393-eecf-4c2a-9a6b-{i:012}")).unwrap())
        .collect();
    let before = rss();
    for id in &ids {
        let sub = hub
            .subscribe(SubscribeRequest {
                selector: selector.clone(),
                cursor: None,
                client_id: Some(id.clone()),
            })
            .unwrap();
        drop(sub);
    }
    let after = rss();
    assert_eq!(hub.stats().sessions, N);
    assert_eq!(hub.stats().subscribers, 0);
    let per = after.saturating_sub(before) / N as u64;
    eprintln!("bytes per idle session at {N} sessions (resident set growth): {per}");
    if before > 0 {
        assert!(
            per < 4096,
            "an idle session should cost well under a page: {per}"
        );
    }
}
