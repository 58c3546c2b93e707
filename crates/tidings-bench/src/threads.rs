//! Does the hub's lock limit it on this machine (issue 16, point 7)? The one-topic fan-out
//! with the server on 1 and then 2 worker threads (`TOKIO_WORKER_THREADS`), in one run:
//! throughput and CPU per delivery for each.

use crate::result::Point;
use crate::scenario::{self, Ctx, FanoutParams};
use crate::target::Kind;

/// Runs `params` against Tidings once per entry of `threads`.
pub(crate) async fn threads(
    ctx: &Ctx,
    params: &FanoutParams,
    threads: &[usize],
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &t in threads {
        let mut ctx = ctx.clone();
        ctx.tidings.env.retain(|(k, _)| k != "TOKIO_WORKER_THREADS");
        ctx.tidings
            .env
            .push(("TOKIO_WORKER_THREADS".to_owned(), t.to_string()));
        let mut p = scenario::fanout(&ctx, Kind::Tidings, params).await?;
        p.scenario = "threads".to_owned();
        p.server_threads = Some(t);
        p.note = format!(
            "{t} server worker thread(s); load average {}",
            crate::storm::loadavg()
        );
        points.push(p);
    }
    Ok(points)
}

/// The `threads` section of benchmarks.md (the newest run).
pub(crate) fn section(md: &mut String, all: &[Point]) {
    let mut pts = crate::report::newest(all, "threads");
    pts.sort_by_key(|p| (p.subscribers, p.server_threads));
    if !crate::report::heading(
        md,
        "(j) The hub's lock: 1 and 2 server worker threads",
        &pts,
    ) {
        return;
    }
    md.push_str(
        "The one-topic fan-out against Tidings with its runtime on 1 and then on 2 worker threads \
         (`TOKIO_WORKER_THREADS`), one run. Every delivery is handed out under the hub's one \
         lock; if that lock were the ceiling, the second thread would add little throughput.\n\n",
    );
    crate::report::commands(md, &pts);
    md.push_str(
        "| subscribers | server threads | published/s | deliveries/s | p50 ms | p99 ms | server CPU µs/delivery | server CPU s | note |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for p in &pts {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {} |\n",
            p.subscribers,
            p.server_threads.unwrap_or(0),
            p.publish_per_s,
            p.deliveries_per_s,
            p.p50_us as f64 / 1000.0,
            p.p99_us as f64 / 1000.0,
            p.server_cpu_us_per_delivery,
            p.server_cpu_s,
            p.note
        ));
    }
    md.push('\n');
}
