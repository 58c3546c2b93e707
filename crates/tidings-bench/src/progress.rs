//! The `progress` scenario (issue 10): 100 downloads each reporting progress at 200 Hz to
//! 1,000 subscribers, run once without coalescing and once with `latest` at 250 ms. Measures
//! deliveries/s, bytes/s on the subscribers' sockets and server CPU, and checks with one
//! more subscriber (a tidings-client subscription) that every key's final value arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tidings_client::{Item, SubscribeOptions};
use tokio::sync::Mutex;

use crate::http::{Poster, source_addr};
use crate::procstat::{self_cpu_seconds, tree_cpu_seconds, tree_rss_bytes};
use crate::result::Point;
use crate::scenario::{Ctx, open_subscribers};
use crate::sub::{Stats, Transport, now_nanos};
use crate::target::{Kind, Target};

/// Parameters of the run.
#[derive(Debug, Clone)]
pub(crate) struct ProgressParams {
    pub(crate) subscribers: u64,
    pub(crate) keys: u64,
    /// Updates per second per key.
    pub(crate) hz: f64,
    /// `None`: no coalescing; `Some(ms)`: `latest` with this window.
    pub(crate) window_ms: Option<u64>,
    pub(crate) duration: Duration,
}

/// The rule file for a `latest` run.
fn rules(window_ms: u64) -> String {
    format!(
        "[[coalesce]]\ntypes = [\"tick\"]\ntopics = [\"bench\"]\npolicy = \"latest\"\n\
         window = \"{window_ms}ms\"\nkey = \"/DownloadID\"\nterminal = [\"complete\"]\n"
    )
}

/// One batch: every key's next value (`Downloaded` = `n`), stamped with the send time.
fn batch(keys: u64, n: u64, out: &mut Vec<u8>) {
    out.clear();
    out.push(b'[');
    let t = now_nanos();
    for k in 0..keys {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            format!(
                r#"{{"topic":"bench","type":"tick","data":{{"DownloadID":"d{k}","Downloaded":{n},"Total":104857600,"Speed":10485760,"t":{t}}}}}"#
            )
            .as_bytes(),
        );
    }
    out.push(b']');
}

/// Runs one point.
pub(crate) async fn progress(ctx: &Ctx, p: &ProgressParams) -> anyhow::Result<Point> {
    let dir = tempfile::Builder::new()
        .prefix("tidings-bench-rules")
        .tempdir()?;
    // Every Tidings target starts with `--publish-rate 0` (target.rs), so the publisher's
    // rate is what is measured.
    let mut options = ctx.tidings.clone();
    if let Some(ms) = p.window_ms {
        let file = dir.path().join("coalesce.toml");
        std::fs::write(&file, rules(ms))?;
        options
            .extra_args
            .extend(["--config".into(), file.display().to_string()]);
    }
    let target = Target::start(Kind::Tidings, &options).await?;
    let mut point = ctx.point("progress", &target);
    point.target = match p.window_ms {
        None => "tidings".to_owned(),
        Some(ms) => format!("tidings-latest-{ms}ms"),
    };
    point.subscribers = p.subscribers;
    point.rate = p.hz * p.keys as f64;
    let res = run(ctx, &target, p, &mut point).await;
    target.stop().await;
    res.map(|()| point)
}

async fn run(
    ctx: &Ctx,
    target: &Target,
    p: &ProgressParams,
    point: &mut Point,
) -> anyhow::Result<()> {
    let stats = Stats::new();
    let subs = open_subscribers(ctx, target, p.subscribers, 1, Transport::Sse, &stats).await?;
    point.connected = stats.connected.load(Relaxed);
    point.connect_failures = stats.failed.load(Relaxed);
    // The checker: the last value it saw per key.
    let finals: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let client = crate::client_sub::client(
        &format!("http://{}", target.sub_addr),
        target.auth.then_some(target.bearer.as_str()),
    )?;
    let checker = {
        let finals = finals.clone();
        tokio::spawn(async move {
            let stream = client.subscribe_with(SubscribeOptions::new(["bench"]));
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(item)) = stream.next().await {
                if let Item::Event(e) = item
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data)
                    && let (Some(k), Some(n)) = (v["DownloadID"].as_str(), v["Downloaded"].as_u64())
                {
                    finals.lock().await.insert(k.to_owned(), n);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    point.rss_after_bytes = tree_rss_bytes(&target.pids);

    // One publisher: a batch of one update per key every 1/hz s.
    let mut poster =
        Poster::connect(source_addr(1000), target.pub_addr, target.auth_headers()).await?;
    let period = Duration::from_secs_f64(1.0 / p.hz);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut body = Vec::with_capacity(p.keys as usize * 160);
    let mut n = 0u64;
    let mut errors = 0u64;
    let warm_until = Instant::now() + ctx.warmup;
    let mut window: Option<(Instant, f64, f64, u64, u64)> = None;
    let measured = loop {
        tick.tick().await;
        let now = Instant::now();
        if window.is_none() && now >= warm_until {
            stats.bytes.store(0, Relaxed);
            window = Some((
                now,
                tree_cpu_seconds(&target.pids),
                self_cpu_seconds(),
                stats.delivered.load(Relaxed),
                n,
            ));
        }
        if let Some((t0, cpu0, gen0, del0, n0)) = window
            && now.duration_since(t0) >= p.duration
        {
            let elapsed = now.duration_since(t0).as_secs_f64();
            break (
                elapsed,
                tree_cpu_seconds(&target.pids) - cpu0,
                self_cpu_seconds() - gen0,
                stats.delivered.load(Relaxed) - del0,
                stats.bytes.load(Relaxed),
                n - n0,
            );
        }
        n += 1;
        batch(p.keys, n, &mut body);
        match poster.post("/publish", "application/json", &body).await {
            Ok((200, _)) => {}
            Ok(_) | Err(_) => errors += 1,
        }
    };
    let (elapsed, cpu, gen_cpu, delivered, bytes, rounds) = measured;
    point.server_rss_end_bytes = tree_rss_bytes(&target.pids);
    // The final values: wait for the last trailing edges (a window and some slack).
    let deadline = Instant::now() + Duration::from_secs(5);
    let exact = loop {
        let f = finals.lock().await;
        let ok = f.len() as u64 == p.keys && f.values().all(|&v| v == n);
        drop(f);
        if ok || Instant::now() > deadline {
            break ok;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    checker.abort();
    subs.close();
    point.duration_s = elapsed;
    point.published = rounds * p.keys;
    point.publish_errors = errors;
    point.publish_per_s = point.published as f64 / elapsed;
    point.delivered = delivered;
    point.expected_deliveries = point.published * point.connected;
    point.deliveries_per_s = delivered as f64 / elapsed;
    point.bytes_per_s = bytes as f64 / elapsed;
    point.server_cpu_s = cpu;
    point.server_cpu_us_per_publish = cpu * 1e6 / point.published.max(1) as f64;
    point.server_cpu_us_per_delivery = cpu * 1e6 / delivered.max(1) as f64;
    point.generator_cpu_s = gen_cpu;
    point.malformed = stats.malformed.load(Relaxed);
    point.final_values_exact = Some(exact);
    point.note = format!(
        "{} keys x {} Hz; final values {}",
        p.keys,
        p.hz,
        if exact { "exact" } else { "NOT exact" }
    );
    Ok(())
}
