//! The seed documents' client code in a real browser against `profiles/all.toml`: Debian's
//! chromium driven by playwright-core (tests/profiles/browser.cjs), one page per profile on
//! that profile's origin, native `EventSource` and `WebSocket`. The download manager's page
//! takes a ticket instead of its `Authorization` header and Cloudreve's takes the JWT as the
//! credential cookie and its client id as `clientId=` (docs/profiles.md, "In a browser");
//! the camera's and NZB Flow's code runs verbatim. Each gets the documents' example payloads
//! exactly.
//!
//! Needs `TIDINGS_TEST_PLAYWRIGHT` (installed by `./scripts/test`) and chromium at
//! `/usr/bin/chromium` (`TIDINGS_TEST_CHROMIUM` to override); without them the test fails.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::profiles::{
    CAMERA, DOWNLOADS, PORTS, TASKS, TOKEN, change, files_jwt, publish_ok, start,
};
use crate::support::BrowserScript;

#[tokio::test(flavor = "multi_thread")]
async fn chromium_runs_each_documents_client_against_all_toml() {
    let _ports = PORTS.lock().await;
    let server = start("all", &[]);

    // What the download manager's page asks its own backend for: a one-time ticket.
    let resp = reqwest::Client::new()
        .post(server.url("/tickets"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .json(&json!({"topics": ["downloads", "downloads/*"]}))
        .send()
        .await
        .expect("POST /tickets");
    assert_eq!(resp.status(), 200);
    let ticket: Value = resp.json().await.expect("JSON");
    let ticket = ticket["ticket"].as_str().expect("a ticket").to_owned();
    let jwt = files_jwt();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profiles/browser.cjs");
    let mut browser = BrowserScript::run(Path::new(script), &[&ticket, &jwt]);
    let mut seen: Vec<Value> = Vec::new();
    let mut until = async |what: &str, seen: &mut Vec<Value>, done: &dyn Fn(&[Value]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(seen) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {seen:#?}"
            );
            seen.push(browser.next_for(what).await);
        }
    };
    let opened = |label: &'static str| {
        move |s: &[Value]| {
            s.iter()
                .any(|v| v["label"] == label && v.get("open").is_some())
        }
    };
    until(
        "the downloads page's stream",
        &mut seen,
        &opened("downloads"),
    )
    .await;
    until("the camera page's stream", &mut seen, &opened("camera")).await;
    until(
        "the files page's subscription",
        &mut seen,
        &|s: &[Value]| {
            s.iter()
                .any(|v| v["label"] == "files" && v["log"][0] == "Subscription established")
        },
    )
    .await;
    until("the tasks page's socket", &mut seen, &opened("tasks")).await;

    for (topic, ty, data) in DOWNLOADS {
        publish_ok(&server, topic, ty, data).await;
    }
    for (ty, data) in CAMERA {
        publish_ok(&server, "camera/SN42", ty, data).await;
    }
    for (topic, ty, data) in TASKS {
        publish_ok(&server, topic, ty, data).await;
    }
    let a = change("create", "", "cloudreve://my/docs/a.txt");
    publish_ok(&server, "cloudreve://my/docs/a.txt", "event", &a).await;

    let count = |s: &[Value], label: &str, key: &str| {
        s.iter()
            .filter(|v| v["label"] == label && v.get(key).is_some())
            .count()
    };
    until("everything published", &mut seen, &|s: &[Value]| {
        count(s, "downloads", "event") >= 10
            && count(s, "camera", "event") >= 10
            && count(s, "tasks", "message") >= 3
            && count(s, "tasks", "log") >= 3
            && s.iter()
                .any(|v| v["label"] == "files" && v["event"] == "event")
            && s.iter().any(|v| {
                v["label"] == "files" && v["log"][0] == "create:  -> cloudreve://my/docs/a.txt"
            })
            && s.iter()
                .any(|v| v["label"] == "camera" && v.get("log").is_some())
            && s.iter()
                .any(|v| v["label"] == "downloads" && v["log"][0] == "Download complete: file.zip")
            && s.iter().any(|v| {
                v["label"] == "downloads" && v["error"][0] == "Download error: connection timeout"
            })
    })
    .await;

    let events = |label: &str| -> Vec<(String, String)> {
        seen.iter()
            .filter(|v| v["label"] == label && v.get("event").is_some())
            .map(|v| {
                (
                    v["event"].as_str().unwrap_or_default().to_owned(),
                    v["data"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let want: Vec<(String, String)> = DOWNLOADS
        .iter()
        .map(|(_, t, d)| ((*t).to_owned(), (*d).to_owned()))
        .collect();
    assert_eq!(events("downloads"), want);
    let mut camera = vec![("connected".to_owned(), r#"{"cameraId":"*"}"#.to_owned())];
    camera.extend(
        CAMERA
            .iter()
            .map(|(t, d)| ((*t).to_owned(), (*d).to_owned())),
    );
    assert_eq!(events("camera"), camera);
    let files = events("files");
    assert_eq!(
        files.first().map(|e| e.0.as_str()),
        Some("subscribed"),
        "{files:?}"
    );
    assert!(
        files.contains(&("event".to_owned(), a.clone())),
        "{files:?}"
    );
    let messages: Vec<&str> = seen
        .iter()
        .filter(|v| v["label"] == "tasks")
        .filter_map(|v| v["message"].as_str())
        .collect();
    for (text, (_, ty, data)) in messages.iter().zip(TASKS) {
        let want_data = format!("{{\"type\":\"{ty}\",{}", &data[1..]);
        assert!(text.starts_with("{\"success\":true,"), "{text}");
        assert!(text.ends_with(&format!("\"data\":{want_data}}}")), "{text}");
    }
    let logs = |label: &str| -> Vec<Value> {
        seen.iter()
            .filter(|v| v["label"] == label)
            .filter_map(|v| v.get("log").cloned())
            .collect()
    };
    assert!(logs("downloads").contains(&json!(["Progress: 52428800/104857600 bytes"])));
    assert_eq!(
        logs("camera"),
        vec![json!(["File saved:", "/home/user/photos/DSC00001.JPG"])]
    );
    // (The page's console arguments are read asynchronously, so lines may come reordered.)
    let tasks = logs("tasks");
    assert!(
        tasks.contains(&json!(["Task task-uuid: 45.67%"])),
        "{tasks:?}"
    );
    assert!(
        tasks.contains(&json!(["Task completed:", "my-post"])),
        "{tasks:?}"
    );
    let mut queue: Value = serde_json::from_str(TASKS[0].2).expect("JSON");
    queue["type"] = json!("queue-update");
    assert!(
        tasks.contains(&json!(["Queue status:", queue])),
        "{tasks:?}"
    );
}
