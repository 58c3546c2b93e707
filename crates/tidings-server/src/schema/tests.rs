//! The catalogue: the shipped profiles' schemas accept their seed documents' own examples,
//! a mismatch names the path and the rule, bad schema files are refused by name, and a
//! directory applies only to its topics.

use std::path::PathBuf;

use serde_json::json;

use super::*;

fn profile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../profiles/schemas/{name}"))
}

fn catalogue(pattern: &str, dir: PathBuf) -> Catalogue {
    Catalogue::load(&[(vec![Pattern::parse(pattern).unwrap()], dir)])
        .unwrap_or_else(|(_, e)| panic!("{e}"))
}

fn check(c: &Catalogue, topic: &str, ty: &str, data: &Value) -> Result<(), Box<Mismatch>> {
    let raw = RawValue::from_string(data.to_string()).unwrap();
    c.check(
        &Topic::new(topic).unwrap(),
        &EventType::new(ty).unwrap(),
        &raw,
    )
}

/// The example payloads of each seed document, verbatim, by profile and event type.
fn seed_examples() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "downloads",
            "progress",
            r#"{"DownloadID":"abc-123","Downloaded":52428800,"Total":104857600,"Speed":10485760,"Elapsed":5000000000,"ActiveConnections":8,"ChunkBitmap":[],"BitmapWidth":0,"ActualChunkSize":0,"ChunkProgress":[]}"#,
        ),
        (
            "downloads",
            "started",
            r#"{"DownloadID":"abc-123","URL":"https://example.com/file.zip","Filename":"file.zip","Total":104857600,"DestPath":"/home/user/downloads/file.zip"}"#,
        ),
        (
            "downloads",
            "complete",
            r#"{"DownloadID":"abc-123","Filename":"file.zip","Elapsed":10000000000,"Total":104857600,"AvgSpeed":10485760}"#,
        ),
        (
            "downloads",
            "error",
            r#"{"DownloadID":"abc-123","Filename":"file.zip","Err":"connection timeout"}"#,
        ),
        (
            "downloads",
            "paused",
            r#"{"DownloadID":"abc-123","Filename":"file.zip","Downloaded":52428800}"#,
        ),
        (
            "downloads",
            "resumed",
            r#"{"DownloadID":"abc-123","Filename":"file.zip"}"#,
        ),
        (
            "downloads",
            "queued",
            r#"{"DownloadID":"abc-123","Filename":"file.zip","URL":"https://example.com/file.zip","DestPath":"/home/user/downloads/file.zip"}"#,
        ),
        (
            "downloads",
            "removed",
            r#"{"DownloadID":"abc-123","Filename":"file.zip"}"#,
        ),
        (
            "downloads",
            "request",
            r#"{"ID":"req-123","URL":"https://example.com/file.zip","Filename":"file.zip","Path":"/downloads","Mirrors":[],"Headers":{}}"#,
        ),
        (
            "downloads",
            "system",
            r#"{"Message":"Server started on port 1700"}"#,
        ),
        ("camera", "connected", r#"{"cameraId":"*"}"#),
        ("camera", "disconnected", r#"{"cameraId":"SN42"}"#),
        (
            "camera",
            "disconnected",
            r#"{"cameraId":"SN42","reason":"usb"}"#,
        ),
        (
            "camera",
            "propertyChanged",
            r#"{"cameraId":"SN42","codes":[256,260]}"#,
        ),
        ("camera", "afStatus", r#"{"state":"focused"}"#),
        (
            "camera",
            "downloadComplete",
            r#"{"cameraId":"SN42","filename":"DSC0001.JPG","savedPath":"/photos/DSC0001.JPG"}"#,
        ),
        (
            "camera",
            "transferProgress",
            r#"{"cameraId":"SN42","contentId":7,"fileId":1,"percent":42.5}"#,
        ),
        (
            "camera",
            "contentsTransfer",
            r#"{"cameraId":"SN42","files":["DSC0001.JPG"]}"#,
        ),
        (
            "camera",
            "operationResult",
            r#"{"cameraId":"SN42","operation":"focus","result":0}"#,
        ),
        (
            "camera",
            "error",
            r#"{"cameraId":"SN42","code":-1,"message":"busy"}"#,
        ),
        (
            "files",
            "create",
            r#"{"type":"create","from":"cloudreve://my/a.txt","to":""}"#,
        ),
        (
            "files",
            "rename",
            r#"{"type":"rename","from":"cloudreve://my/a.txt","to":"cloudreve://my/b.txt"}"#,
        ),
        (
            "files",
            "event",
            r#"[{"type":"modify","from":"cloudreve://my/b.txt","to":""}]"#,
        ),
        (
            "tasks",
            "queue-update",
            r#"{"compressionActive":true,"uploadActive":true,"compressionRunning":2,"compressionRunningConfigs":[],"uploadRunning":1,"uploadRunningConfigs":[],"compressionQueued":5,"compressionQueuedConfigs":[],"uploadQueued":3,"uploadQueuedConfigs":[]}"#,
        ),
        (
            "tasks",
            "command-progress",
            r#"{"type":"command-progress","id":"task-uuid","currentStep":"COMPRESSION","percentage":45.67}"#,
        ),
        (
            "tasks",
            "task-finished",
            r#"{"taskConfig":{"id":"task-uuid","name":"my-post","status":"completed","cli":"…"}}"#,
        ),
    ]
}

#[test]
fn every_shipped_schema_accepts_its_seed_documents_examples() {
    for (name, ty, example) in seed_examples() {
        let c = catalogue("*", profile(name));
        let data: Value = serde_json::from_str(example).unwrap();
        assert_eq!(check(&c, "t", ty, &data), Ok(()), "{name}/{ty}: {example}");
    }
}

#[test]
fn the_shipped_profiles_name_the_documents_event_types() {
    let types =
        |name: &str| -> Vec<String> { load_dir(&profile(name)).unwrap().into_keys().collect() };
    assert_eq!(
        types("downloads"),
        [
            "complete", "error", "paused", "progress", "queued", "removed", "request", "resumed",
            "started", "system"
        ]
    );
    assert_eq!(
        types("camera"),
        [
            "afStatus",
            "connected",
            "contentsTransfer",
            "disconnected",
            "downloadComplete",
            "error",
            "operationResult",
            "propertyChanged",
            "transferProgress"
        ]
    );
    assert_eq!(
        types("files"),
        ["create", "delete", "event", "modify", "rename"]
    );
    assert_eq!(
        types("tasks"),
        ["command-progress", "queue-update", "task-finished"]
    );
}

#[test]
fn a_mismatch_names_the_json_path_and_the_rule() {
    let c = catalogue("downloads/*", profile("downloads"));
    let wrong_type = json!({"DownloadID": "a", "Filename": "f", "Downloaded": "lots"});
    let m = check(&c, "downloads/a", "paused", &wrong_type).unwrap_err();
    assert_eq!(m.instance_path, "/Downloaded");
    assert_eq!(m.keyword, "type");
    assert_eq!(m.schema_path, "/properties/Downloaded/type");
    assert_eq!(m.event_type, "paused");
    assert!(
        !m.message.contains("lots"),
        "the payload's values stay out: {m}"
    );
    assert_eq!(
        m.to_string(),
        "/Downloaded: value is not of type \"integer\" (rule `type` at \
         #/properties/Downloaded/type of the `paused` schema)"
    );

    let missing = json!({"DownloadID": "a"});
    let m = check(&c, "downloads/a", "resumed", &missing).unwrap_err();
    assert_eq!(
        (m.instance_path.as_str(), m.keyword.as_str()),
        ("", "required")
    );
    assert!(m.message.contains("Filename"), "{m}");

    let nested = json!({"ID": "r", "URL": "u", "Filename": "f", "Path": "p", "Mirrors": ["a", 7], "Headers": {}});
    let m = check(&c, "downloads/a", "request", &nested).unwrap_err();
    assert_eq!(m.instance_path, "/Mirrors/1");

    let two = json!({"DownloadID": 1, "Filename": 2});
    let m = check(&c, "downloads/a", "removed", &two).unwrap_err();
    assert_eq!(m.more, 1, "{m}");
}

#[test]
fn a_directory_applies_only_to_its_topics_and_types() {
    let c = catalogue("downloads/*", profile("downloads"));
    let bad = json!({"DownloadID": 7});
    assert!(check(&c, "downloads/a", "removed", &bad).is_err());
    assert_eq!(
        check(&c, "camera/a", "removed", &bad),
        Ok(()),
        "another topic"
    );
    assert_eq!(
        check(&c, "downloads/a", "unlisted", &bad),
        Ok(()),
        "a type without a schema"
    );
    assert!(Catalogue::default().is_empty());
    assert_eq!(
        check(&Catalogue::default(), "downloads/a", "removed", &bad),
        Ok(())
    );
}

#[test]
fn two_profiles_with_the_same_type_name_keep_apart_by_topic() {
    let c = Catalogue::load(&[
        (
            vec![Pattern::parse("downloads/*").unwrap()],
            profile("downloads"),
        ),
        (vec![Pattern::parse("camera/*").unwrap()], profile("camera")),
    ])
    .unwrap_or_else(|(_, e)| panic!("{e}"));
    let camera_error = json!({"cameraId": "SN42", "code": 3, "message": "busy"});
    assert_eq!(check(&c, "camera/SN42", "error", &camera_error), Ok(()));
    let m = check(&c, "downloads/x", "error", &camera_error).unwrap_err();
    assert_eq!(m.keyword, "required");
    assert_eq!(c.candidates("error").len(), 2);
}

#[test]
fn a_bad_schema_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("progress.json", "{not json", "not JSON"),
        (
            "progress.json",
            r#"{"type": 12}"#,
            "not a valid JSON Schema",
        ),
        (
            "progress.json",
            r#"{"$ref": "https://example.com/x.json"}"#,
            "not a valid JSON Schema",
        ),
    ];
    for (file, text, want) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert_eq!(err.file, path);
        assert!(err.to_string().contains(want), "{err}");
        assert!(err.to_string().contains("progress.json"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
    let err = load_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("holds no `<type>.json` schema"),
        "{err}"
    );
    let err = load_dir(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");

    // Other files are not schemas; a file name that is no event type is refused.
    std::fs::write(dir.path().join("README.md"), "# notes").unwrap();
    std::fs::write(dir.path().join("ok.json"), "{}").unwrap();
    assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
    std::fs::write(dir.path().join("a\tb.json"), "{}").unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is not an event type"), "{err}");
}

#[test]
fn typescript_names_and_shapes() {
    assert_eq!(ts::pascal("queue-update"), "QueueUpdate");
    assert_eq!(ts::pascal("afStatus"), "AfStatus");
    assert_eq!(ts::pascal("3d"), "T3d");
    let schemas = load_dir(&profile("downloads")).unwrap();
    let module = ts::module("Downloads", "tidings-client", &schemas);
    assert!(
        module.contains("export interface DownloadsProgress {"),
        "{module}"
    );
    assert!(module.contains("  Downloaded: number;"), "{module}");
    assert!(
        module.contains("  ChunkProgress: Array<number>;"),
        "{module}"
    );
    assert!(
        module.contains("  Headers: {\n    [key: string]: string;\n  };"),
        "{module}"
    );
    assert!(
        module.contains("  \"progress\": DownloadsProgress;"),
        "{module}"
    );
    let camera = ts::module(
        "Camera",
        "tidings-client",
        &load_dir(&profile("camera")).unwrap(),
    );
    assert!(
        camera.contains("  state: \"focused\" | \"unlocked\" | \"tracking\";"),
        "{camera}"
    );
    assert!(camera.contains("  source?: unknown;"), "{camera}");
    let files = ts::module(
        "Files",
        "tidings-client",
        &load_dir(&profile("files")).unwrap(),
    );
    assert!(
        files.contains("export type FilesEventData = Array<{"),
        "{files}"
    );
    assert!(files.contains("  \"event\": FilesEventData;"), "{files}");
}
