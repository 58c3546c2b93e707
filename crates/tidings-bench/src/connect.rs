//! Connection setup (issue 16, point 3): new SSE subscriptions per second with auth and a
//! selector (a topic pattern and a type), with a fixed number of connects in flight, and the
//! server's CPU per connect. Each subscription is held once open, as a real client's would be.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::Semaphore;

use crate::procstat::{tree_cpu_seconds, tree_rss_bytes};
use crate::result::Point;
use crate::scenario::Ctx;
use crate::storm::{listen_counters, loadavg};
use crate::sub::{self, Stats, Transport};
use crate::target::{Kind, Request, Target};

/// Topics the subscriptions are spread over.
const TOPICS: u64 = 100;

/// What one connect point measured (the `connect` field of its `Point`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ConnectFigures {
    /// Connects in flight at once.
    pub(crate) in_flight: usize,
    /// The request each subscriber sent (its path and whether it carried a token).
    pub(crate) request: String,
    pub(crate) subscriptions_per_s: f64,
    pub(crate) cpu_us_per_connect: f64,
    /// `TcpExtListenOverflows` during the ramp (whole host).
    pub(crate) listen_overflows: u64,
    /// `/proc/loadavg` at the start and at the end.
    pub(crate) loadavg: String,
}

/// The subscribe request for subscriber `k`'s topic: for Tidings a pattern and a type with a
/// bearer token; the others take their plain subscribe path.
fn request(target: &Target, k: u64) -> Request {
    let path = match target.kind {
        Kind::Tidings | Kind::TidingsIds => format!("/events?topic=conn/{k}/*&type=tick"),
        Kind::Floor => format!("/events?topic=conn-{k}"),
        Kind::Nchan => format!("/sub?topic=conn-{k}"),
        Kind::Pushpin => format!("/stream?topic=conn-{k}"),
    };
    Request {
        addr: target.sub_addr,
        path,
        extra_headers: target.auth_headers(),
        last_event_id_header: String::new(),
        client_ids: false,
    }
}

/// Opens `n` subscriptions with `in_flight` connects at a time against a fresh `kind`.
pub(crate) async fn connect(
    ctx: &Ctx,
    kind: Kind,
    n: u64,
    in_flight: usize,
) -> anyhow::Result<Point> {
    let load0 = loadavg();
    let target = Target::start(kind, &ctx.tidings).await?;
    let mut point = ctx.point("connect", &target);
    point.subscribers = n;
    point.topics = TOPICS;
    let reqs: Vec<Arc<Request>> = (0..TOPICS).map(|k| Arc::new(request(&target, k))).collect();
    let stats = Stats::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    point.rss_before_bytes = tree_rss_bytes(&target.pids);
    let sem = Arc::new(Semaphore::new(in_flight.max(1)));
    let (over0, _) = listen_counters();
    let cpu0 = tree_cpu_seconds(&target.pids);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    let res = async {
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await?;
            let (req, stats) = (reqs[(i % TOPICS) as usize].clone(), stats.clone());
            tasks.push(tokio::spawn(async move {
                sub::run(i, req, Transport::Sse, stats, move |_| drop(permit)).await;
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while stats.connected.load(Relaxed) + stats.failed.load(Relaxed) < n {
            if Instant::now() > deadline {
                bail!("subscriptions did not all open within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        anyhow::Ok(())
    }
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = tree_cpu_seconds(&target.pids) - cpu0;
    let (over1, _) = listen_counters();
    point.rss_after_bytes = tree_rss_bytes(&target.pids);
    for t in tasks {
        t.abort();
    }
    target.stop().await;
    res?;
    point.connected = stats.connected.load(Relaxed);
    point.connect_failures = stats.failed.load(Relaxed);
    point.connect_per_s = point.connected as f64 / elapsed;
    point.duration_s = elapsed;
    point.server_cpu_s = cpu;
    point.rss_per_conn_bytes = point.rss_after_bytes.saturating_sub(point.rss_before_bytes) as f64
        / point.connected.max(1) as f64;
    point.malformed = stats.malformed.load(Relaxed);
    let r = &reqs[0];
    point.connect = Some(ConnectFigures {
        in_flight,
        request: format!(
            "GET {}{}",
            r.path,
            if r.extra_headers.is_empty() {
                ""
            } else {
                " + bearer token"
            }
        ),
        subscriptions_per_s: point.connect_per_s,
        cpu_us_per_connect: cpu * 1e6 / point.connected.max(1) as f64,
        listen_overflows: over1 - over0,
        loadavg: format!("{load0} → {}", loadavg()),
    });
    Ok(point)
}

/// The `connect` section of benchmarks.md: the newest run, one row per target and in-flight
/// count, with Tidings' ratio to each other target at the same count.
pub(crate) fn section(md: &mut String, all: &[Point]) {
    let mut pts = crate::report::newest(all, "connect");
    pts.sort_by_key(|p| {
        (
            p.connect.as_ref().map_or(0, |c| c.in_flight),
            ["tidings", "floor", "nchan", "pushpin"]
                .iter()
                .position(|t| *t == p.target),
        )
    });
    if !crate::report::heading(
        md,
        "(d2) Connection setup: new subscriptions per second",
        &pts,
    ) {
        return;
    }
    md.push_str(
        "Each subscriber opens one SSE subscription and holds it; a fixed number of connects are \
         in flight at once. Tidings' subscribers carry a bearer token and a selector (a topic \
         pattern and a type). CPU is the server's over the whole ramp, per connection opened.\n\n",
    );
    crate::report::commands(md, &pts);
    md.push_str(
        "| in flight | target | request | opened | failed | subscriptions/s | server CPU µs per connect | RSS per connection | listen overflows | tidings subscriptions/s ÷ target's | load average |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for p in &pts {
        let Some(c) = &p.connect else { continue };
        let tidings = pts.iter().find(|q| {
            q.target == "tidings"
                && q.connect
                    .as_ref()
                    .is_some_and(|d| d.in_flight == c.in_flight)
        });
        let ratio = match tidings {
            Some(t) if p.target != "tidings" && p.connect_per_s > 0.0 => {
                format!("{:.2}×", t.connect_per_s / p.connect_per_s)
            }
            _ => "–".to_owned(),
        };
        md.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {:.0} | {:.1} | {:.0} B | {} | {} | {} |\n",
            c.in_flight,
            p.target,
            c.request,
            p.connected,
            p.connect_failures,
            c.subscriptions_per_s,
            c.cpu_us_per_connect,
            p.rss_per_conn_bytes,
            c.listen_overflows,
            ratio,
            c.loadavg
        ));
    }
    md.push('\n');
}
