//! Typed events end to end: a served profile's JSON Schemas refuse a publish whose data does
//! not match (422 `schema_mismatch`, naming the JSON path and the rule) and store nothing of
//! its batch; a bad schema file stops start-up by name; `tidings schema check` validates
//! offline with its documented exit codes; `tidings schema ts` prints types that `tsc`
//! compiles against the TypeScript client, and that reject a wrong use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BIN, Launch, Server};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shipped(profile: &str) -> PathBuf {
    repo().join("profiles/schemas").join(profile)
}

/// Copies a shipped catalogue into `dir`.
fn copy_catalogue(profile: &str, dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for entry in std::fs::read_dir(shipped(profile)).expect("read catalogue") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
}

const PROGRESS: &str = r#"{"DownloadID":"abc-123","Downloaded":52428800,"Total":104857600,"Speed":10485760,"Elapsed":5000000000,"ActiveConnections":8,"ChunkBitmap":[],"BitmapWidth":0,"ActualChunkSize":0,"ChunkProgress":[]}"#;

fn progress() -> Value {
    serde_json::from_str(PROGRESS).expect("example")
}

fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or_default(),
        v["error"]["message"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_that_does_not_match_is_refused_with_its_path_and_rule_and_nothing_is_stored() {
    // The schemas sit next to the config file, named relative to it; the server runs elsewhere.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_catalogue("downloads", &dir.path().join("schemas/downloads"));
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let config = conf.join("tidings.toml");
    std::fs::write(
        &config,
        "[[schemas]]\ntopics = \"downloads/*\"\ndir = \"../schemas/downloads\"\n",
    )
    .expect("write config");
    let server = Server::launch(
        Launch::new(&["--config", config.to_str().expect("utf-8")]).cwd(Path::new("/")),
    );

    let first = server
        .publish_one("downloads/abc-123", "progress", progress())
        .await;

    // A batch with one bad event: refused whole, naming the event, the path and the rule.
    let mut bad = progress();
    bad["Downloaded"] = json!("52428800");
    let (status, v) = server
        .publish_raw(
            &json!([
                {"topic": "downloads/abc-123", "type": "progress", "data": progress()},
                {"topic": "downloads/abc-123", "type": "progress", "data": bad},
            ]),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (code, message) = error_of(&v);
    assert_eq!(code, "schema_mismatch");
    assert!(
        message.starts_with("events[1].data/Downloaded: value is not of type \"integer\""),
        "{message}"
    );
    assert!(message.contains("rule `type`"), "{message}");
    assert!(
        message.contains("#/properties/Downloaded/type"),
        "{message}"
    );
    assert!(
        !message.contains("52428800"),
        "the payload's values stay out: {message}"
    );

    // A missing field: the rule is `required`, at the payload's root.
    let (status, v) = server
        .publish_raw(
            &json!({"topic": "downloads/abc-123", "type": "complete", "data": {"DownloadID": "abc-123"}}),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (code, message) = error_of(&v);
    assert_eq!(code, "schema_mismatch");
    assert!(message.starts_with("data: "), "{message}");
    assert!(message.contains("rule `required`"), "{message}");
    assert!(message.contains("Filename"), "{message}");

    // Other topics, and types without a schema, are not checked.
    let other = server
        .publish_one("camera/SN42", "progress", json!({"Downloaded": "x"}))
        .await;
    let untyped = server
        .publish_one("downloads/abc-123", "note", json!("free text"))
        .await;

    // What is stored is exactly what was accepted.
    let mut sub = server.subscribe("lastEventId=earliest").await;
    let got: Vec<(String, String)> = sub
        .events(3)
        .await
        .into_iter()
        .map(|e| (e.last_event_id, e.event))
        .collect();
    assert_eq!(
        got,
        [
            (first, "progress".to_owned()),
            (other, "progress".to_owned()),
            (untyped, "note".to_owned())
        ]
    );
    sub.expect_no_event(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_dirs_come_from_the_flag_and_the_environment_too() {
    let dir = shipped("tasks");
    let dir = dir.to_str().expect("utf-8");
    let bad = json!({"topic": "tasks/queue", "type": "command-progress", "data": {"id": "t"}});
    let by_flag = Server::start(&["--schema-dir", dir]);
    let by_env = Server::launch(Launch::new(&[]).env("TIDINGS_SCHEMA_DIRS", dir));
    for server in [&by_flag, &by_env] {
        let (status, v) = server.publish_raw(&bad, &[]).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(error_of(&v).0, "schema_mismatch");
        server
            .publish_one(
                "tasks/queue",
                "command-progress",
                json!({"id": "task-uuid", "currentStep": "COMPRESSION", "percentage": 45.67}),
            )
            .await;
    }
}

#[test]
fn a_bad_schema_file_stops_start_up_and_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schemas = dir.path().join("schemas");
    copy_catalogue("camera", &schemas);
    std::fs::write(schemas.join("afStatus.json"), r#"{"type": "focused"}"#).expect("write");
    let config = dir.path().join("tidings.toml");
    std::fs::write(
        &config,
        "[[schemas]]\ntopics = [\"camera/*\"]\ndir = \"schemas\"\n",
    )
    .expect("write config");
    let (code, stderr) = Launch::new(&["--config", config.to_str().expect("utf-8")]).run_to_exit();
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("schemas[0].dir"), "{stderr}");
    assert!(stderr.contains("afStatus.json"), "{stderr}");
    assert!(stderr.contains("not a valid JSON Schema"), "{stderr}");
}

/// `tidings schema <args>`: exit code, stdout, stderr.
fn schema(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write as _;
    let mut cmd = Command::new(BIN);
    cmd.arg("schema")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tidings");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().expect("exited"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

#[test]
fn schema_check_validates_offline_with_documented_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    std::fs::write(&good, PROGRESS).expect("write");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"DownloadID": 7, "Total": "big"}"#).expect("write");
    let downloads = shipped("downloads");
    let downloads = downloads.to_str().expect("utf-8");
    let p = |p: &Path| p.to_str().expect("utf-8").to_owned();

    let (code, out, err) = schema(&["check", &p(&good), "progress", "--dir", downloads], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: "), "{out}");

    // Every failing rule is listed, each with its path and rule.
    let (code, _, err) = schema(&["check", &p(&bad), "progress", "--dir", downloads], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("/DownloadID: value is not of type \"string\" (rule `type`"),
        "{err}"
    );
    assert!(
        err.contains("/Total: value is not of type \"integer\" (rule `type`"),
        "{err}"
    );
    assert!(err.contains("rule `required`"), "{err}");

    let (code, _, err) = schema(
        &["check", "-", "progress", "--dir", downloads],
        Some("{nope"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not JSON"), "{err}");

    let (code, _, err) = schema(&["check", &p(&good), "nonesuch", "--dir", downloads], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no schema for `nonesuch`"), "{err}");

    // A config serving two catalogues that both have `error`: --topic picks the one.
    let config = dir.path().join("all.toml");
    std::fs::write(
        &config,
        format!(
            "[[schemas]]\ntopics = \"downloads/*\"\ndir = {:?}\n\n[[schemas]]\ntopics = \"camera/*\"\ndir = {:?}\n",
            downloads,
            p(&shipped("camera"))
        ),
    )
    .expect("write");
    let camera_error = r#"{"cameraId":"SN42","code":3,"message":"busy"}"#;
    let config = p(&config);
    let (code, _, err) = schema(
        &["check", "-", "error", "--config", &config],
        Some(camera_error),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("pick one with --topic"), "{err}");
    let (code, _, err) = schema(
        &[
            "check",
            "-",
            "error",
            "--config",
            &config,
            "--topic",
            "camera/SN42",
        ],
        Some(camera_error),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = schema(
        &[
            "check",
            "-",
            "error",
            "--config",
            &config,
            "--topic",
            "downloads/x",
        ],
        Some(camera_error),
    );
    assert_eq!(code, 1, "{err}");

    // A broken schema is "nothing checked", naming the file.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("progress.json"), "{").expect("write");
    let (code, _, err) = schema(
        &["check", &p(&good), "progress", "--dir", &p(&broken)],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("progress.json: not JSON"), "{err}");
}

/// The TypeScript compiler from the TypeScript client's dev dependencies (installed by
/// `scripts/test`); this test needs it and fails without it.
fn tsc() -> PathBuf {
    let tsc = repo().join("clients/typescript/node_modules/typescript/bin/tsc");
    assert!(
        tsc.is_file(),
        "{} is missing: scripts/test installs the TypeScript client's npm packages \
         (or run `npm ci` in clients/typescript)",
        tsc.display()
    );
    tsc
}

/// Runs `tsc --noEmit` on `files` in `dir`, with `tidings-client` resolved to the client's
/// sources; returns whether it passed and what it printed.
fn compile(dir: &Path) -> (bool, String) {
    let client = repo().join("clients/typescript/src/index.ts");
    let tsconfig = json!({
        "compilerOptions": {
            "target": "ES2022",
            "module": "ES2022",
            "moduleResolution": "Bundler",
            "lib": ["ES2022", "DOM", "DOM.Iterable"],
            "strict": true,
            "noEmit": true,
            "skipLibCheck": true,
            "types": [],
            "paths": {"tidings-client": [client.to_str().expect("utf-8")]}
        },
        "include": ["*.ts"]
    });
    std::fs::write(dir.join("tsconfig.json"), tsconfig.to_string()).expect("write tsconfig");
    let out = Command::new("node")
        .arg(tsc())
        .args(["-p", "tsconfig.json"])
        .current_dir(dir)
        .output()
        .expect("run node (Node 20+ is needed by the TypeScript client's tests)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn schema_ts_prints_types_that_tsc_compiles_against_the_client_and_that_catch_misuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    for profile in ["downloads", "camera", "files", "tasks"] {
        let (code, module, err) = schema(
            &["ts", "--dir", shipped(profile).to_str().expect("utf-8")],
            None,
        );
        assert_eq!(code, 0, "{err}");
        std::fs::write(dir.path().join(format!("{profile}.ts")), module).expect("write module");
    }
    // Used as a subscriber would: listeners typed by event name, the union narrowed on `type`.
    // Every `@ts-expect-error` line must fail to compile, or tsc reports the directive unused.
    std::fs::write(
        dir.path().join("use.ts"),
        r#"
import { TidingsClient } from "tidings-client";
import type { DownloadsSubscription, DownloadsEvent, DownloadsProgress } from "./downloads.js";
import type { CameraSubscription } from "./camera.js";
import type { FilesEvents } from "./files.js";
import type { TasksSubscription } from "./tasks.js";

const client = new TidingsClient({ url: "http://127.0.0.1:1700" });
const downloads: DownloadsSubscription = client.subscribe("downloads/*");
downloads.on("progress", (e) => {
  const done: number = e.data.Downloaded;
  const id: string = e.data.DownloadID;
  const parts: number[] = e.data.ChunkProgress;
  // @ts-expect-error: Downloaded is a number
  const wrong: string = e.data.Downloaded;
  void [done, id, parts, wrong];
});
downloads.on("error", (e) => {
  const reason: string = e.data.Err;
  void reason;
});
// @ts-expect-error: not an event of the catalogue
downloads.on("progres", () => {});

function describe(e: DownloadsEvent): string {
  switch (e.type) {
    case "complete":
      return `${e.data.Filename} at ${e.data.AvgSpeed.toFixed(0)} B/s`;
    case "request":
      return e.data.Mirrors.join(",") + (e.data.Headers["User-Agent"] ?? "");
    default:
      return e.type;
  }
}
const p: DownloadsProgress = JSON.parse("{}");
void [describe, p];

const camera: CameraSubscription = client.subscribe("camera/*");
camera.on("afStatus", (e) => {
  const state: "focused" | "unlocked" | "tracking" = e.data.state;
  // @ts-expect-error: not one of the document's states
  const other: "blurry" = e.data.state;
  void [state, other];
});

const change: FilesEvents["rename"] = { type: "rename", from: "cloudreve://my/a", to: "cloudreve://my/b" };
// @ts-expect-error: a rename's type is "rename"
const notRename: FilesEvents["rename"] = { type: "delete", from: "cloudreve://my/a", to: "" };
const batch: FilesEvents["event"] = [change];
void [notRename, batch];

const tasks: TasksSubscription = client.subscribe("tasks/*");
tasks.on("task-finished", (e) => {
  const name: string = e.data.taskConfig.name;
  void name;
});
"#,
    )
    .expect("write use.ts");
    let (ok, out) = compile(dir.path());
    assert!(ok, "tsc refused the generated types:\n{out}");

    // And a wrong use without the directive fails: the check is real.
    std::fs::write(
        dir.path().join("use.ts"),
        r#"
import { TidingsClient } from "tidings-client";
import type { DownloadsSubscription } from "./downloads.js";
const sub: DownloadsSubscription = new TidingsClient({ url: "http://x" }).subscribe("downloads/*");
sub.on("paused", (e) => { const n: string = e.data.Downloaded; void n; });
"#,
    )
    .expect("write use.ts");
    let (ok, out) = compile(dir.path());
    assert!(!ok, "tsc accepted a wrong use:\n{out}");
    assert!(out.contains("TS2322"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn four_catalogues_in_one_hub_keep_their_same_named_types_apart_by_topic() {
    // The namespaces the shipped profiles use (all.toml serves all four at once).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut toml = String::new();
    for (profile, topics) in [
        ("downloads", r#"["downloads", "downloads/*"]"#),
        ("camera", r#"["camera/*"]"#),
        ("files", r#"["cloudreve://my", "cloudreve://my/*"]"#),
        ("tasks", r#"["tasks/*"]"#),
    ] {
        copy_catalogue(profile, &dir.path().join("schemas").join(profile));
        toml.push_str(&format!(
            "[[schemas]]\ntopics = {topics}\ndir = \"schemas/{profile}\"\n\n"
        ));
    }
    let config = dir.path().join("all.toml");
    std::fs::write(&config, toml).expect("write config");
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);

    // Each document's example is accepted on its own topics.
    let ok = [
        (
            "downloads/abc-123",
            "error",
            r#"{"DownloadID":"abc-123","Filename":"file.zip","Err":"connection timeout"}"#,
        ),
        (
            "camera/SN42",
            "error",
            r#"{"cameraId":"SN42","code":3,"message":"busy"}"#,
        ),
        (
            "cloudreve://my/a.txt",
            "rename",
            r#"{"type":"rename","from":"cloudreve://my/a.txt","to":"cloudreve://my/b.txt"}"#,
        ),
        (
            "tasks/queue",
            "command-progress",
            r#"{"id":"task-uuid","currentStep":"COMPRESSION","percentage":45.67}"#,
        ),
    ];
    for (topic, ty, data) in ok {
        let data: Value = serde_json::from_str(data).expect("example");
        server.publish_one(topic, ty, data).await;
    }
    // The camera's `error` on a downloads topic is checked against the downloads schema.
    let camera_error = json!({"cameraId": "SN42", "code": 3, "message": "busy"});
    let (status, v) = server
        .publish_raw(
            &json!({"topic": "downloads/x", "type": "error", "data": camera_error}),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (code, message) = error_of(&v);
    assert_eq!(code, "schema_mismatch");
    assert!(message.contains("of the `error` schema"), "{message}");
    let (status, v) = server
        .publish_raw(
            &json!({"topic": "cloudreve://my/a.txt", "type": "rename", "data": {"type": "create", "from": "cloudreve://my/a.txt", "to": ""}}),
            &[],
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(error_of(&v).1.starts_with("data/type: "), "{v}");
}
