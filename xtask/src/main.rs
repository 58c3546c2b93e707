//! Project automation in Rust: `cargo xtask ci` (every check, as CI runs them),
//! `cargo xtask tidy` (project rules that clippy cannot express), `cargo xtask deny`
//! (supply-chain rules) and `cargo xtask fuzz-smoke` (a short run of every fuzz target).

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
        "deny" => deny(&root),
        "fuzz-smoke" => fuzz_smoke(&root),
        "typescript" => typescript(&root, Build::Yes),
        _ => bail!("usage: cargo xtask ci | tidy | deny | fuzz-smoke | typescript"),
    }
}

/// Everything CI checks, in order from fastest to slowest, stopping at the first failure.
/// (`cargo test` builds every binary the tests run, so there is no separate build step.)
/// Needs cargo-deny and cargo-fuzz on `PATH` and a nightly toolchain: `scripts/test`
/// installs the tools.
fn ci(root: &Path) -> anyhow::Result<()> {
    run(root, "cargo", &["fmt", "--all", "--check"])?;
    run(
        root,
        "rustfmt",
        &[
            "--edition",
            "2024",
            "--check",
            "fuzz/fuzz_targets/config.rs",
            "fuzz/fuzz_targets/publish_body.rs",
            "fuzz/fuzz_targets/request_head.rs",
            "fuzz/fuzz_targets/selectors.rs",
            "fuzz/fuzz_targets/sse_decoder.rs",
        ],
    )?;
    tidy(root)?;
    deny(root)?;
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
    test(root)?;
    // `cargo test` just built the binary the client's tests run.
    typescript(root, Build::No)?;
    fuzz_smoke(root)
}

/// The TypeScript client (`clients/typescript`): type-checked and built with `tsc`, then its
/// tests under Node against the `tidings` binary `cargo test` built, one of them in Debian's
/// Chromium through playwright-core. Ends with one plain `typescript: N passed, N failed`
/// line. Needs Node 20+, the client's npm packages and `/usr/bin/chromium`: `scripts/test`
/// installs them.
#[allow(
    clippy::print_stdout,
    reason = "the test report goes to stdout, as node's does"
)]
fn typescript(root: &Path, build: Build) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let dir = root.join("clients/typescript");
    need_tool(root, "node", &["--version"], "Node.js")?;
    if !dir.join("node_modules/typescript").is_dir()
        || !dir.join("node_modules/playwright-core").is_dir()
    {
        bail!("the TypeScript client's npm packages are not installed: scripts/test installs them");
    }
    // The binary the tests run. After `cargo test` it is there already: building it again with
    // `-p tidings` would recompile it with other features (the workspace's unified set differs)
    // and cost CI a minute and a half for nothing.
    if build == Build::Yes {
        run(root, "cargo", &["build", "-p", "tidings", "--locked"])?;
    }
    run(
        &dir,
        "node",
        &["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
    )?;
    let mut tests: Vec<String> = std::fs::read_dir(dir.join("test"))
        .context("list clients/typescript/test")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("test/{name}"))
        .collect();
    tests.sort();
    let mut args = vec![
        "--experimental-websocket".to_owned(),
        "--test".to_owned(),
        "--test-concurrency=1".to_owned(),
        "--test-reporter=tap".to_owned(),
    ];
    args.extend(tests);
    eprintln!("==> node {} (in clients/typescript)", args.join(" "));
    let mut child = Command::new("node")
        .args(&args)
        .current_dir(&dir)
        .env("TIDINGS_BIN", root.join("target/debug/tidings"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start node --test")?;
    let stdout = child.stdout.take().context("node --test stdout")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("read node --test output")?;
        println!("{line}");
        if let Some(n) = line.strip_prefix("# pass ") {
            passed = n.trim().parse().unwrap_or(0);
        } else if let Some(n) = line.strip_prefix("# fail ") {
            failed = n.trim().parse().unwrap_or(0);
        }
    }
    let status = child.wait().context("wait for node --test")?;
    println!("typescript: {passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        bail!("the TypeScript client's tests failed with {status}");
    }
    if passed == 0 {
        bail!("the TypeScript client's tests ran no test");
    }
    Ok(())
}

/// The dependency tree's licenses, duplicates and sources against `deny.toml`. Advisories
/// are not checked here: their database is fetched from a git host CI cannot reach
/// (docs/supply-chain.md).
fn deny(root: &Path) -> anyhow::Result<()> {
    need_tool(root, "cargo", &["deny", "--version"], "cargo-deny")?;
    run(
        root,
        "cargo",
        &["deny", "--locked", "check", "bans", "licenses", "sources"],
    )
}

/// Every fuzz target of `fuzz/`, briefly: each starts from its seeds and runs until
/// `FUZZ_SMOKE_RUNS` executions or `FUZZ_SMOKE_SECONDS`, whichever comes first. A crash or a
/// failed check fails CI; the input is left in `fuzz/artifacts/TARGET/` (docs/fuzzing.md).
/// New inputs go to `target/fuzz-smoke/`, never into the committed seeds.
fn fuzz_smoke(root: &Path) -> anyhow::Result<()> {
    const TARGETS: [&str; 5] = [
        "sse_decoder",
        "request_head",
        "selectors",
        "publish_body",
        "config",
    ];
    let nightly = ["run", "nightly", "cargo", "fuzz"];
    need_tool(
        root,
        "rustup",
        &[&nightly[..], &["--version"]].concat(),
        "cargo-fuzz",
    )?;
    // Unoptimised (`--dev`): building the targets optimised took CI five and a half minutes,
    // this about half of that; a smoke run is bounded by time, not by executions, and the
    // long campaigns (docs/fuzzing.md) use optimised builds.
    let build = [
        "build",
        "--dev",
        "--sanitizer",
        "none",
        "--debug-assertions",
    ];
    run(root, "rustup", &[&nightly[..], &build[..]].concat())?;
    let runs = std::env::var("FUZZ_SMOKE_RUNS").unwrap_or_else(|_| "100000".to_owned());
    let seconds = std::env::var("FUZZ_SMOKE_SECONDS").unwrap_or_else(|_| "10".to_owned());
    for target in TARGETS {
        let corpus = root.join("target/fuzz-smoke").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
        let corpus = corpus.display().to_string();
        let seeds = format!("fuzz/seeds/{target}");
        let runs = format!("-runs={runs}");
        let seconds = format!("-max_total_time={seconds}");
        let args = [
            "run",
            "--dev",
            "--sanitizer",
            "none",
            "--debug-assertions",
            target,
            &corpus,
            &seeds,
            "--",
            &runs,
            &seconds,
        ];
        run(root, "rustup", &[&nightly[..], &args[..]].concat()).with_context(|| {
            format!("fuzz target `{target}` failed; see fuzz/artifacts/{target}/")
        })?;
    }
    Ok(())
}

/// Whether a task builds what it runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    Yes,
    No,
}

/// Fails with a pointer to `scripts/test` when a tool CI needs is missing.
fn need_tool(root: &Path, program: &str, args: &[&str], tool: &str) -> anyhow::Result<()> {
    let found = Command::new(program)
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        bail!("{tool} is not installed (or no nightly toolchain): scripts/test installs it");
    }
    Ok(())
}

/// `cargo test` for the whole workspace, echoing its output and ending with one plain line
/// that sums every `test result:` line (`N passed, N failed`): cargo's own last line belongs
/// to whichever target ran last, often a doc-test run with nothing in it.
#[allow(
    clippy::print_stdout,
    reason = "the test report goes to stdout, as cargo's does"
)]
fn test(root: &Path) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let args = ["test", "--workspace", "--locked", "--no-fail-fast"];
    eprintln!("==> cargo {}", args.join(" "));
    let mut child = Command::new("cargo")
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("read cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let status = child.wait().context("wait for cargo test")?;
    println!("{passed} passed, {failed} failed");
    if !status.success() || failed > 0 {
        bail!("cargo test failed with {status}");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// The number before `what` in `ok. 12 passed; 0 failed; ...`.
fn count(summary: &str, what: &str) -> u64 {
    summary
        .split(';')
        .find_map(|part| {
            let part = part.trim();
            let part = part
                .strip_prefix("ok. ")
                .or_else(|| part.strip_prefix("FAILED. "))
                .unwrap_or(part);
            part.strip_suffix(what)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
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
    for dir in ["crates", "xtask", "fuzz"] {
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
        // Among our crates the client knows only the wire contract.
        (
            "tidings-client",
            &[
                "tidings-core",
                "tidings-server",
                "tidings-auth",
                "tidings-store-redb",
                "axum",
            ],
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

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_cargo_summaries() {
        let ok = "ok. 42 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.1s";
        assert_eq!((count(ok, " passed"), count(ok, " failed")), (42, 0));
        let bad = "FAILED. 39 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!((count(bad, " passed"), count(bad, " failed")), (39, 1));
    }
}
