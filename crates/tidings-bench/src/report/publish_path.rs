//! The report's sections for issue 16's publish path: many topics against the floor and Nchan
//! (one row per topic count), single-event publish against the floor, and the fan-out with
//! every feature on. Each compares points of one run.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{commands, heading, ms, newest, ratio};
use crate::result::Point;

/// Issue 16's bars: many topics ≤ 1.2× the floor and ≤ 0.8× Nchan; everything on ≤ 1.15× the
/// floor; single-event `memory` publish ≥ 0.8× the floor's rate.
const TOPICS_FLOOR_BAR: f64 = 1.2;
const TOPICS_NCHAN_BAR: f64 = 0.8;
const ALL_FLOOR_BAR: f64 = 1.15;
const MEMORY_PUBLISH_BAR: f64 = 0.8;

fn cpu_of(pts: &[&Point], pick: impl Fn(&Point) -> bool) -> f64 {
    pts.iter()
        .find(|p| pick(p) && p.note.is_empty() && p.delivered > 0)
        .map_or(0.0, |p| p.server_cpu_us_per_delivery)
}

fn verdict(r: f64, bar: f64, within: bool) -> &'static str {
    if r <= 0.0 {
        ""
    } else if (r <= bar) == within {
        " (met)"
    } else {
        " (missed)"
    }
}

/// (b): many topics, few subscribers each; one row per (topics, target).
pub(super) fn topics_section(md: &mut String, all: &[Point]) {
    let mut pts = newest(all, "topics");
    if !heading(md, "(b) Many topics, few subscribers each", &pts) {
        return;
    }
    pts.sort_by_key(|p| (p.topics, super::TARGETS.iter().position(|t| *t == p.target)));
    let p0 = pts[0];
    wl!(
        md,
        "{:.0} events/s published in total, spread over the topics in turn, {:.0} s measured per point after a \
         warm-up, {} transport. Tidings with a bearer token and its redb history; the floor parses each \
         publish's JSON body as Tidings does.\n",
        p0.rate,
        p0.duration_s,
        p0.transport
    );
    commands(md, &pts);
    wl!(
        md,
        "| topics | subscribers | target | connected | published/s | deliveries/s | delivered/expected | p50 ms | p99 ms | server CPU µs/delivery | server CPU µs/publish |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in &pts {
        if !p.note.is_empty() {
            wl!(
                md,
                "| {} | {} | {} | {} |",
                p.topics,
                p.subscribers,
                p.target,
                p.note
            );
            continue;
        }
        wl!(
            md,
            "| {} | {} | {} | {} | {:.1} |",
            p.topics,
            p.subscribers,
            p.target,
            delivery_cells(p),
            p.server_cpu_us_per_publish,
        );
    }
    wl!(
        md,
        "\nRatios of server CPU per delivery (same run; target: tidings / floor ≤ {TOPICS_FLOOR_BAR}×, \
         tidings / nchan ≤ {TOPICS_NCHAN_BAR}×):\n\n\
         | topics | subscribers per topic | tidings / floor | tidings / nchan |\n|---:|---:|---:|---:|"
    );
    let ts: BTreeSet<u64> = pts.iter().map(|p| p.topics).collect();
    for &t in &ts {
        let cpu = |target: &str| cpu_of(&pts, |p| p.topics == t && p.target == target);
        let per = pts
            .iter()
            .find(|p| p.topics == t)
            .map_or(0, |p| p.subscribers / t.max(1));
        let (f, n) = (cpu("tidings") / cpu("floor"), cpu("tidings") / cpu("nchan"));
        wl!(
            md,
            "| {t} | {per} | {}{} | {}{} |",
            ratio(cpu("tidings"), cpu("floor")),
            verdict(f, TOPICS_FLOOR_BAR, true),
            ratio(cpu("tidings"), cpu("nchan")),
            verdict(n, TOPICS_NCHAN_BAR, true),
        );
    }
    wl!(md);
}

/// The cells both tables share: connected | published/s | deliveries/s | delivered/expected |
/// p50 ms | p99 ms | server CPU µs/delivery.
fn delivery_cells(p: &Point) -> String {
    format!(
        "{} | {:.0} | {:.0} | {:.1}% | {} | {} | {:.2}",
        p.connected,
        p.publish_per_s,
        p.deliveries_per_s,
        100.0 * p.delivered as f64 / p.expected_deliveries.max(1) as f64,
        ms(p.p50_us),
        ms(p.p99_us),
        p.server_cpu_us_per_delivery,
    )
}

/// (l): the 10k fan-out with every feature on (`tidings-all`) against the floor.
pub(super) fn everything_section(md: &mut String, all: &[Point]) {
    let pts = newest(all, "fanout-all");
    if !heading(
        md,
        "(l) Everything on: the fan-out with every feature",
        &pts,
    ) {
        return;
    }
    wl!(
        md,
        "`tidings-all`: publishers and subscribers present a JWT (HS256), every subscriber sends a client id \
         (a session each, its place confirmed from TCP acknowledgements), a `[[coalesce]]` `latest` rule \
         covers another event type, and `/metrics` is scraped once a second. Target: ≤ {ALL_FLOOR_BAR}× the \
         floor's CPU per delivery.\n"
    );
    commands(md, &pts);
    wl!(
        md,
        "| subscribers | target | connected | published/s | deliveries/s | delivered/expected | p50 ms | p99 ms | server CPU µs/delivery | remark |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for p in &pts {
        wl!(
            md,
            "| {} | {} | {} | {} |",
            p.subscribers,
            p.target,
            delivery_cells(p),
            p.note_extra,
        );
    }
    wl!(
        md,
        "\n| subscribers | tidings-all / floor | tidings / floor |\n|---:|---:|---:|"
    );
    let ns: BTreeSet<u64> = pts.iter().map(|p| p.subscribers).collect();
    for &n in &ns {
        let cpu = |target: &str| cpu_of(&pts, |p| p.subscribers == n && p.target == target);
        wl!(
            md,
            "| {n} | {}{} | {} |",
            ratio(cpu("tidings-all"), cpu("floor")),
            verdict(cpu("tidings-all") / cpu("floor"), ALL_FLOOR_BAR, true),
            ratio(cpu("tidings"), cpu("floor")),
        );
    }
    wl!(md);
}

/// The set-up a publish point measured (older points kept it in `note`).
pub(super) fn setup(p: &Point) -> &str {
    if p.note_extra.is_empty() {
        &p.note
    } else {
        &p.note_extra
    }
}

/// Single-event publish, Tidings in each durability and the floor, from the newest run that
/// measured the floor.
pub(super) fn single_publish_section(md: &mut String, all: &[Point]) {
    let run = all
        .iter()
        .filter(|p| p.scenario == "publish" && p.target == "floor")
        .map(|p| p.run_id)
        .max();
    let pts: Vec<&Point> = all
        .iter()
        .filter(|p| p.scenario == "publish" && Some(p.run_id) == run)
        .collect();
    if !heading(
        md,
        "(e, one run) Single-event publish: Tidings against the floor",
        &pts,
    ) {
        return;
    }
    wl!(
        md,
        "Each request carries one event; every publisher holds one HTTP/1.1 keep-alive connection and \
         sends its next event when the previous one is acknowledged. Targets: `durable` at least Nchan's \
         in-memory publish rate; `memory` ≥ {MEMORY_PUBLISH_BAR}× the floor's.\n"
    );
    commands(md, &pts);
    wl!(
        md,
        "| target | setup | acknowledged | errors | events/s | server CPU µs per publish | events/s / floor's | CPU per publish / floor's |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    let floor = pts.iter().find(|p| p.target == "floor");
    for p in &pts {
        let (r, c) = floor.map_or((String::new(), String::new()), |f| {
            (
                ratio(p.publish_per_s, f.publish_per_s),
                ratio(p.server_cpu_us_per_publish, f.server_cpu_us_per_publish),
            )
        });
        wl!(
            md,
            "| {} | {} | {} | {} | {:.0} | {:.2} | {r} | {c} |",
            p.target,
            setup(p),
            p.published,
            p.publish_errors,
            p.publish_per_s,
            p.server_cpu_us_per_publish,
        );
    }
    wl!(md);
}
