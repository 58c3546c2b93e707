//! Project automation in Rust: `cargo xtask ci` (every check, as CI runs them) and
//! `cargo xtask tidy` (project rules that clippy cannot express).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    match task.as_str() {
        "ci" => ci(&root),
        "tidy" => tidy(&root),
        _ => bail!("usage: cargo xtask ci | tidy"),
    }
}

/// Everything CI checks, in order from fastest to slowest, stopping at the first failure.
/// (`cargo test` builds every binary the tests run, so there is no separate build step.)
fn ci(root: &Path) -> anyhow::Result<()> {
    run(root, "cargo", &["fmt", "--all", "--check"])?;
    tidy(root)?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run(
        root,
        "cargo",
        &["test", "--workspace", "--locked", "--no-fail-fast"],
    )?;
    Ok(())
}

fn run(root: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Project rules: every `.rs` file starts with a `//!` line; no `dbg!`, `todo!`,
/// `unimplemented!` or ignored tests; the dependency directions of ARCHITECTURE.md hold.
fn tidy(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect_rs(&root.join(dir), &mut files)?;
    }
    let banned = [
        concat!("db", "g!("),
        concat!("to", "do!("),
        concat!("unimpl", "emented!("),
        concat!("#[ig", "nore"),
    ];
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{rel}: does not start with a `//!` line saying what it owns"
            ));
        }
        for b in banned {
            if text.contains(b) {
                problems.push(format!("{rel}: contains `{b}`"));
            }
        }
    }
    problems.extend(dependency_rules(root)?);
    if problems.is_empty() {
        eprintln!("==> tidy: {} files OK", files.len());
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "node_modules")
            {
                continue;
            }
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The crate graph rules: the engine knows no HTTP, store engine or network; only the server
/// knows axum/hyper; clients never depend on the engine or the server.
fn dependency_rules(root: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rules: &[(&str, &[&str])] = &[
        (
            "tidings-proto",
            &["tokio", "axum", "hyper", "redb", "tidings-core"],
        ),
        (
            "tidings-core",
            &[
                "axum",
                "hyper",
                "tower-http",
                "redb",
                "fjall",
                "async-nats",
                "reqwest",
            ],
        ),
        ("tidings-auth", &["axum", "hyper", "tokio", "tidings-core"]),
        ("tidings-store-redb", &["axum", "hyper"]),
        (
            "tidings-client",
            &["tidings-core", "tidings-server", "axum"],
        ),
    ];
    let mut problems = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        let Some((_, banned)) = rules.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let is_dev = dep["kind"].as_str() == Some("dev");
            if !is_dev && banned.contains(&dep_name) {
                problems.push(format!(
                    "{name} must not depend on {dep_name} (ARCHITECTURE.md)"
                ));
            }
        }
    }
    Ok(problems)
}
