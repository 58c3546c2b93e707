//! The `tidings-all` target (issue 16, point 5): Tidings with every feature that has landed
//! on, for the fan-out against the floor in one run. Publishers and subscribers present a JWT
//! (HS256, minted by `tidings token`), every subscriber sends a client id (a session each), a
//! `[[coalesce]]` rule covers another event type than the one published, and `/metrics` is
//! scraped once a second while the point runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use crate::target::{Kind, Target, TidingsOptions};

/// The HS256 secret of the bench's hub (given to the server and to `tidings token` through the
/// environment, never on a command line).
const JWT_SECRET: &str = "tidings-bench-jwt-secret-0123456789abcdef";

/// The coalescing rule: `latest` on a type the bench does not publish, so every published event
/// pays the rule lookup and nothing is held.
const CONFIG: &str = r#"[[coalesce]]
types = ["progress"]
policy = "latest"
window = "250ms"
key = "/id"
terminal = ["complete"]
"#;

/// Starts Tidings with every feature on; the target's bearer is a freshly minted JWT.
pub(crate) async fn start(o: &TidingsOptions) -> anyhow::Result<Target> {
    let token = mint(o).await?;
    let mut opts = o.clone();
    opts.auth = false; // no static token: the JWT is the only credential
    let env = [("TIDINGS_JWT_HS256_SECRET", JWT_SECRET)];
    let mut t = crate::target::start_tidings_with(&opts, &env, Some(CONFIG)).await?;
    t.kind = Kind::TidingsAll;
    t.auth = true;
    t.bearer = token;
    t.client_ids = true;
    t.command.push_str(
        " (TIDINGS_JWT_HS256_SECRET set; config: one [[coalesce]] latest rule on type `progress`)",
    );
    Ok(t)
}

/// A JWT for every topic, with the admin right (to read `/metrics`), valid for two hours.
async fn mint(o: &TidingsOptions) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(&o.bin)
        .args([
            "token",
            "--publish",
            "*",
            "--subscribe",
            "*",
            "--admin",
            "--ttl",
            "2h",
            "--sub",
            "bench",
        ])
        .env("TIDINGS_JWT_HS256_SECRET", JWT_SECRET)
        .output()
        .await
        .with_context(|| format!("run {} token", o.bin.display()))?;
    if !out.status.success() {
        bail!(
            "tidings token failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    anyhow::ensure!(
        token.split('.').count() == 3,
        "tidings token printed no JWT"
    );
    Ok(token)
}

/// Scrapes `/metrics` once a second until aborted; counts the scrapes answered 200 with a
/// body, and fails the count (leaves it) on anything else.
pub(crate) fn scrape_metrics(target: &Target, scraped: Arc<AtomicU64>) -> JoinHandle<()> {
    let addr = target.sub_addr;
    let auth = target.auth_headers();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Ok(Ok(true)) =
                tokio::time::timeout(Duration::from_secs(5), scrape_once(addr, &auth)).await
            {
                scraped.fetch_add(1, Relaxed);
            }
        }
    })
}

async fn scrape_once(addr: SocketAddr, auth: &str) -> anyhow::Result<bool> {
    let mut s = crate::http::connect_from(crate::http::source_addr(0), addr).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let head = crate::http::read_head(&mut s, &mut buf).await?;
    s.read_to_end(&mut buf).await?;
    Ok(head.status == 200 && buf.windows(7).any(|w| w == b"tidings"))
}
