//! Runs `tidings-bench smoke` against the debug `tidings` binary, so the bench cannot rot.
//! No timing assertions: the smoke only checks that events were delivered and well-formed.

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

#[test]
fn smoke_delivers_well_formed_events() {
    let root = workspace_root();
    let bin = tidings_bin(&root);
    let out = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_tidings-bench"))
        .arg("--tidings-bin")
        .arg(&bin)
        .arg("--out")
        .arg(out.path())
        .args(["smoke", "--subscribers", "200", "--duration", "2"])
        .output()
        .expect("run tidings-bench smoke");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("smoke: ok"), "stdout:\n{stdout}");
}
