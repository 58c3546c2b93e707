//! `tidings watch` as a real source: a real temp directory, real file operations (create,
//! write, mkdir, rename, delete, a burst of 2,000 files created then deleted), a real
//! `tidings serve` and an SSE subscriber, which receives each change as an event with its
//! path under the topic root, on the topic of the change's folder; removing the directory ends the watcher with exit code 1 and a
//! clear message.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::support::{BIN, Server, SseClient, WAIT};

const ROOT: &str = "cloudreve://my";
const BURST: usize = 2_000;

/// Starts `tidings watch dir` against `server`, and waits until it says it is watching.
async fn watch(server: &Server, dir: &Path) -> (Child, tokio::task::JoinHandle<String>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("watch")
        .arg(dir)
        .args([
            "--topic-root",
            ROOT,
            "--url",
            &format!("http://{}", server.addr),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDINGS_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn tidings watch");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("tidings watch says it is watching in time")
        .expect("read stderr")
        .unwrap_or_default();
    assert!(first.starts_with("tidings: watching "), "{first}");
    // The rest of its stderr, for the end of the test.
    let rest = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (child, rest)
}

/// One received change: (type, from, to), checked against the event's name.
async fn next_change(sub: &mut SseClient) -> (String, String, String) {
    let e = sub.next_event_within(WAIT).await;
    let v: Value = serde_json::from_str(&e.data).expect("JSON data");
    let field = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {v}"))
            .to_owned()
    };
    assert_eq!(field("type"), e.event, "the data's type is the event's");
    // The data is exactly {type, from, to}, in that order.
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{v}");
    assert!(e.data.starts_with("{\"type\":"), "{}", e.data);
    (field("type"), field("from"), field("to"))
}

/// Reads changes until `want` arrives; returns the ones before it.
async fn until(sub: &mut SseClient, want: (&str, &str, &str)) -> Vec<(String, String, String)> {
    let mut before = Vec::new();
    loop {
        let c = next_change(sub).await;
        if (c.0.as_str(), c.1.as_str(), c.2.as_str()) == want {
            return before;
        }
        before.push(c);
    }
}

fn uri(rel: &str) -> String {
    format!("{ROOT}/{rel}")
}

#[tokio::test(flavor = "multi_thread")]
async fn file_operations_become_events_under_the_topic_root_and_a_vanished_directory_stops_it() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("watched");
    std::fs::create_dir(&dir).expect("mkdir");
    // The subscriber takes the subtree, as Cloudreve's `uri=cloudreve://my` does.
    let mut sub = server
        .subscribe("topic=cloudreve%3A%2F%2Fmy&topic=cloudreve%3A%2F%2Fmy%2F*")
        .await;
    let (mut child, stderr) = watch(&server, &dir).await;

    // Create and write a file; append to it.
    std::fs::write(dir.join("a.txt"), b"hello").expect("write");
    let a = uri("a.txt");
    assert_eq!(until(&mut sub, ("create", &a, "")).await, []);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("a.txt"))
            .expect("open");
        f.write_all(b" world").expect("append");
    }
    // The first write's modify may come first; nothing else does.
    let before = until(&mut sub, ("modify", &a, "")).await;
    assert!(before.is_empty(), "{before:?}");

    // A folder, a move into it, a delete.
    // (The move waits for the folder's event: a folder is watched once the watcher has seen
    // it, and a move into a folder it has not seen yet is a delete plus the folder's scan.)
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let before = until(&mut sub, ("create", &uri("sub"), "")).await;
    assert!(
        before
            .iter()
            .all(|c| c == &("modify".to_owned(), a.clone(), String::new())),
        "{before:?}"
    );
    std::fs::rename(dir.join("a.txt"), dir.join("sub/b.txt")).expect("rename");
    let b = uri("sub/b.txt");
    assert_eq!(until(&mut sub, ("rename", &a, &b)).await, []);
    std::fs::remove_file(dir.join("sub/b.txt")).expect("remove");
    assert_eq!(until(&mut sub, ("delete", &b, "")).await, []);

    // A burst: 2,000 files created and written, then deleted; every one arrives.
    for i in 0..BURST {
        std::fs::write(dir.join(format!("f{i:04}.dat")), i.to_string()).expect("write");
    }
    let mut created: HashSet<String> = HashSet::new();
    while created.len() < BURST {
        let (ty, from, _) = next_change(&mut sub).await;
        assert!(ty == "create" || ty == "modify", "{ty} {from}");
        if ty == "create" {
            assert!(created.insert(from.clone()), "{from} created twice");
        }
    }
    for i in 0..BURST {
        std::fs::remove_file(dir.join(format!("f{i:04}.dat"))).expect("remove");
    }
    let mut deleted: HashSet<String> = HashSet::new();
    while deleted.len() < BURST {
        let (ty, from, _) = next_change(&mut sub).await;
        if ty == "delete" {
            assert!(deleted.insert(from.clone()), "{from} deleted twice");
        } else {
            assert_eq!(ty, "modify", "{from}");
        }
    }
    assert_eq!(created, deleted);
    // The burst went through a bounded queue: the watcher's peak memory stays small.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().expect("running")))
        .expect("read the watcher's /proc status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!("tidings watch peak RSS after {BURST}+{BURST} changes: {peak_kib} KiB");
    assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
    let want: HashSet<String> = (0..BURST).map(|i| uri(&format!("f{i:04}.dat"))).collect();
    assert_eq!(created, want);

    // The directory goes away: the watcher says so and exits 1.
    std::fs::remove_dir_all(&dir).expect("remove the watched directory");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("tidings watch exits when its directory is gone")
        .expect("wait");
    assert_eq!(status.code(), Some(1));
    let stderr = stderr.await.expect("stderr");
    assert!(
        stderr.contains("disappeared (deleted or moved away); stopping"),
        "{stderr}"
    );
    // Its last changes were published before it stopped.
    assert_eq!(until(&mut sub, ("delete", &uri("sub"), "")).await, []);
}
