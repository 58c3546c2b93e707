//! The scenarios: fan-out (one or many topics), idle connections, churn, durable publish
//! throughput and replay. Each returns measured `Point`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::http::{Poster, connect_from, read_head, source_addr};
use crate::procstat::{self_cpu_seconds, tree_cpu_seconds, tree_rss_bytes};
use crate::result::Point;
use crate::sub::{self, Stats, Transport, now_nanos};
use crate::target::{Kind, Target, TidingsOptions};

/// What every scenario needs to know about the invocation.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) run_id: u64,
    pub(crate) command: String,
    pub(crate) machine: String,
    pub(crate) tidings: TidingsOptions,
    /// Connections opened concurrently during a ramp.
    pub(crate) connect_concurrency: usize,
    pub(crate) warmup: Duration,
    /// Which load generator the subscribers are.
    pub(crate) loadgen: Loadgen,
}

/// The subscribers' implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Loadgen {
    /// Raw-socket readers that parse frames minimally (`sub.rs`).
    Raw,
    /// `tidings-client` subscriptions, as an application would hold them (`client_sub.rs`).
    Client,
}

impl Ctx {
    pub(crate) fn point(&self, scenario: &str, target: &Target) -> Point {
        Point {
            run_id: self.run_id,
            scenario: scenario.to_owned(),
            target: target.kind.name().to_owned(),
            command: self.command.clone(),
            server_command: target.command.clone(),
            machine: self.machine.clone(),
            transport: "sse".to_owned(),
            topics: 1,
            loadgen: match self.loadgen {
                Loadgen::Raw => "raw",
                Loadgen::Client => "client",
            }
            .to_owned(),
            ..Point::default()
        }
    }
}

/// Subscribers opened for a run.
pub(crate) struct Subscribers {
    tasks: Vec<JoinHandle<()>>,
    ramp: Duration,
}

impl Subscribers {
    pub(crate) fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Opens `n` subscribers spread over `topics` topics; waits until every one has its response
/// head (or failed).
pub(crate) async fn open_subscribers(
    ctx: &Ctx,
    target: &Target,
    n: u64,
    topics: u64,
    transport: Transport,
    stats: &Arc<Stats>,
) -> anyhow::Result<Subscribers> {
    let reqs: Vec<Arc<crate::target::Request>> = (0..topics.max(1))
        .map(|k| Arc::new(target.subscribe(&topic_name(k, topics), false)))
        .collect();
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency));
    let start = Instant::now();
    let before = stats.connected.load(Relaxed) + stats.failed.load(Relaxed);
    let mut tasks = Vec::with_capacity(n as usize);
    let client = match ctx.loadgen {
        Loadgen::Raw => None,
        Loadgen::Client => Some(crate::client_sub::client(
            &format!("http://{}", target.sub_addr),
            target.auth.then_some(target.bearer.as_str()),
        )?),
    };
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let stats = stats.clone();
        let k = i % topics.max(1);
        if let Some(client) = &client {
            let (client, topic) = (client.clone(), topic_name(k, topics));
            tasks.push(tokio::spawn(async move {
                crate::client_sub::run(i, client, topic, transport, stats, move |_| drop(permit))
                    .await;
            }));
            continue;
        }
        let req = reqs[k as usize].clone();
        tasks.push(tokio::spawn(async move {
            sub::run(i, req, transport, stats, move |_| drop(permit)).await;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.connected.load(Relaxed) + stats.failed.load(Relaxed) - before < n {
        if Instant::now() > deadline {
            bail!("subscribers did not all connect within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Subscribers {
        tasks,
        ramp: start.elapsed(),
    })
}

fn topic_name(k: u64, topics: u64) -> String {
    if topics <= 1 {
        "bench".to_owned()
    } else {
        format!("bench-{k}")
    }
}

/// A fixed-rate publisher: `workers` keep-alive connections, each publishing its share.
pub(crate) struct Publisher {
    pub(crate) published: Arc<AtomicU64>,
    pub(crate) errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Publisher {
    pub(crate) async fn start(
        target: &Target,
        rate: f64,
        topics: u64,
        workers: usize,
        pad: &str,
    ) -> anyhow::Result<Self> {
        let published = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let per_worker = rate / workers as f64;
        let period = Duration::from_secs_f64((1.0 / per_worker).max(0.001));
        let per_tick = (per_worker * period.as_secs_f64()).round().max(1.0) as u64;
        let topic_counter = Arc::new(AtomicU64::new(0));
        for w in 0..workers {
            let mut poster = Poster::connect(
                source_addr(1000 + w as u64),
                target.pub_addr,
                target.auth_headers(),
            )
            .await?;
            let published = published.clone();
            let errors = errors.clone();
            let stop = stop.clone();
            let topic_counter = topic_counter.clone();
            let pad = pad.to_owned();
            // Each worker's publish request shape depends only on the target, so build a
            // throwaway Target view: the body builder needs just the kind.
            let kind = target.kind;
            let stagger = period.mul_f64(w as f64 / workers as f64);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(stagger).await;
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut body = Vec::with_capacity(512);
                while !stop.load(Relaxed) {
                    tick.tick().await;
                    for _ in 0..per_tick {
                        let k = topic_counter.fetch_add(1, Relaxed) % topics.max(1);
                        let topic = topic_name(k, topics);
                        let (path, ct) =
                            publish_request(kind, &topic, now_nanos(), &pad, &mut body);
                        match poster.post(&path, ct, &body).await {
                            Ok((s, _)) if (200..300).contains(&s) => {
                                published.fetch_add(1, Relaxed);
                            }
                            Ok(_) => {
                                errors.fetch_add(1, Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Relaxed);
                                return;
                            }
                        }
                    }
                }
            }));
        }
        Ok(Self {
            published,
            errors,
            stop,
            tasks,
        })
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                // A publish stuck on a slow server; it is dropped with the runtime.
            }
        }
    }
}

fn publish_request(
    kind: Kind,
    topic: &str,
    t: u64,
    pad: &str,
    out: &mut Vec<u8>,
) -> (String, &'static str) {
    crate::target::publish_for(kind, topic, t, pad, out)
}

/// Parameters of a fan-out point.
#[derive(Debug, Clone)]
pub(crate) struct FanoutParams {
    pub(crate) subscribers: u64,
    pub(crate) topics: u64,
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) transport: Transport,
    pub(crate) publishers: usize,
    pub(crate) payload_bytes: usize,
    /// The run compares `tidings-ids` (a client id per subscriber) with the others: its
    /// points are the `fanout-sessions` scenario, kept apart from the plain fan-out.
    pub(crate) sessions: bool,
    /// The run compares `tidings-all` (every feature on, `crate::everything`) with the
    /// floor: its points are the `fanout-all` scenario.
    pub(crate) everything: bool,
}

/// (a)/(b): `subscribers` spread over `topics`, `rate` events/s in total.
pub(crate) async fn fanout(ctx: &Ctx, kind: Kind, p: &FanoutParams) -> anyhow::Result<Point> {
    let scenario = if p.everything {
        "fanout-all"
    } else if p.sessions {
        "fanout-sessions"
    } else if p.topics > 1 {
        "topics"
    } else {
        "fanout"
    };
    let target = Target::start(kind, &ctx.tidings).await?;
    let mut point = ctx.point(scenario, &target);
    point.subscribers = p.subscribers;
    point.topics = p.topics;
    point.rate = p.rate;
    point.transport = match p.transport {
        Transport::Sse => "sse",
        Transport::Ws => "ws",
    }
    .to_owned();
    if p.transport == Transport::Ws
        && !matches!(kind, Kind::Tidings | Kind::TidingsIds | Kind::TidingsAll)
    {
        point.note = "WebSocket is measured for tidings only".to_owned();
        target.stop().await;
        return Ok(point);
    }
    let res = fanout_on(ctx, &target, p, &mut point).await;
    target.stop().await;
    res.map(|()| point)
}

async fn fanout_on(
    ctx: &Ctx,
    target: &Target,
    p: &FanoutParams,
    point: &mut Point,
) -> anyhow::Result<()> {
    let stats = Stats::new();
    point.rss_before_bytes = tree_rss_bytes(&target.pids);
    let subs = open_subscribers(ctx, target, p.subscribers, p.topics, p.transport, &stats).await?;
    point.connected = stats.connected.load(Relaxed);
    point.connect_failures = stats.failed.load(Relaxed);
    point.connect_per_s = point.connected as f64 / subs.ramp.as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    point.rss_after_bytes = tree_rss_bytes(&target.pids);
    point.rss_per_conn_bytes = point.rss_after_bytes.saturating_sub(point.rss_before_bytes) as f64
        / point.connected.max(1) as f64;
    let pad = "x".repeat(p.payload_bytes);
    let publisher = Publisher::start(target, p.rate, p.topics, p.publishers, &pad).await?;
    let scraped = Arc::new(AtomicU64::new(0));
    let scraper = (target.kind == Kind::TidingsAll)
        .then(|| crate::everything::scrape_metrics(target, scraped.clone()));
    tokio::time::sleep(ctx.warmup).await;
    let cpu0 = tree_cpu_seconds(&target.pids);
    let gen0 = self_cpu_seconds();
    let del0 = stats.delivered.load(Relaxed);
    let pub0 = publisher.published.load(Relaxed);
    let err0 = publisher.errors.load(Relaxed);
    stats.reset_latency();
    stats.measuring.store(true, Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(p.duration).await;
    stats.measuring.store(false, Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = tree_cpu_seconds(&target.pids);
    let gen1 = self_cpu_seconds();
    let del1 = stats.delivered.load(Relaxed);
    let pub1 = publisher.published.load(Relaxed);
    let err1 = publisher.errors.load(Relaxed);
    point.server_rss_end_bytes = tree_rss_bytes(&target.pids);
    publisher.stop().await;
    subs.close();
    if let Some(scraper) = scraper {
        scraper.abort();
        let n = scraped.load(Relaxed);
        anyhow::ensure!(n > 0, "/metrics was never scraped successfully");
        point.note_extra = format!("/metrics scraped {n} times");
    }
    let h = stats.latency();
    point.duration_s = elapsed;
    point.published = pub1 - pub0;
    point.publish_errors = err1 - err0;
    point.publish_per_s = point.published as f64 / elapsed;
    point.delivered = del1 - del0;
    let per_topic = point.connected as f64 / p.topics.max(1) as f64;
    point.expected_deliveries = (point.published as f64 * per_topic).round() as u64;
    point.deliveries_per_s = point.delivered as f64 / elapsed;
    point.malformed = stats.malformed.load(Relaxed);
    point.other_events = stats.other_events.load(Relaxed);
    point.p50_us = h.value_at_quantile(0.50);
    point.p90_us = h.value_at_quantile(0.90);
    point.p99_us = h.value_at_quantile(0.99);
    point.p999_us = h.value_at_quantile(0.999);
    point.max_us = h.max();
    point.server_cpu_s = cpu1 - cpu0;
    point.server_cpu_us_per_delivery = point.server_cpu_s * 1e6 / point.delivered.max(1) as f64;
    point.server_cpu_us_per_publish = point.server_cpu_s * 1e6 / point.published.max(1) as f64;
    point.generator_cpu_s = gen1 - gen0;
    Ok(())
}

/// (c): `n` idle subscribers; server RSS before and after.
pub(crate) async fn idle(
    ctx: &Ctx,
    kind: Kind,
    n: u64,
    hold: Duration,
    transport: Transport,
) -> anyhow::Result<Point> {
    let target = Target::start(kind, &ctx.tidings).await?;
    let mut point = ctx.point("idle", &target);
    point.subscribers = n;
    point.transport = match transport {
        Transport::Sse => "sse",
        Transport::Ws => "ws",
    }
    .to_owned();
    if transport == Transport::Ws
        && !matches!(kind, Kind::Tidings | Kind::TidingsIds | Kind::TidingsAll)
    {
        point.note = "WebSocket is measured for tidings only".to_owned();
        target.stop().await;
        return Ok(point);
    }
    let res = async {
        let stats = Stats::new();
        tokio::time::sleep(Duration::from_millis(300)).await;
        point.rss_before_bytes = tree_rss_bytes(&target.pids);
        let subs = open_subscribers(ctx, &target, n, 1, transport, &stats).await?;
        point.connected = stats.connected.load(Relaxed);
        point.connect_failures = stats.failed.load(Relaxed);
        point.connect_per_s = point.connected as f64 / subs.ramp.as_secs_f64();
        let cpu0 = tree_cpu_seconds(&target.pids);
        let t0 = Instant::now();
        tokio::time::sleep(hold).await;
        point.server_cpu_s = tree_cpu_seconds(&target.pids) - cpu0;
        point.duration_s = t0.elapsed().as_secs_f64();
        point.rss_after_bytes = tree_rss_bytes(&target.pids);
        point.rss_per_conn_bytes = point.rss_after_bytes.saturating_sub(point.rss_before_bytes)
            as f64
            / point.connected.max(1) as f64;
        subs.close();
        anyhow::Ok(())
    }
    .await;
    target.stop().await;
    res.map(|()| point)
}

/// (d): `concurrency` loops of connect, subscribe, read the head, disconnect.
pub(crate) async fn churn(
    ctx: &Ctx,
    kind: Kind,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Point> {
    let target = Target::start(kind, &ctx.tidings).await?;
    let mut point = ctx.point("churn", &target);
    point.subscribers = concurrency as u64;
    let req = Arc::new(target.subscribe("bench", false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let cpu0 = tree_cpu_seconds(&target.pids);
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (req, ok, failed, counter) = (req.clone(), ok.clone(), failed.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Relaxed);
                let res = async {
                    let mut s = connect_from(source_addr(i), req.addr).await?;
                    s.write_all(
                        format!(
                            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{}\r\n",
                            req.path, req.addr, req.extra_headers
                        )
                        .as_bytes(),
                    )
                    .await?;
                    buf.clear();
                    let head = read_head(&mut s, &mut buf).await?;
                    anyhow::ensure!(head.status == 200, "status {}", head.status);
                    anyhow::Ok(())
                };
                match tokio::time::timeout(Duration::from_secs(5), res).await {
                    Ok(Ok(())) => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.ok();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    point.server_cpu_s = tree_cpu_seconds(&target.pids) - cpu0;
    point.duration_s = elapsed;
    point.churn_connects = ok.load(Relaxed);
    point.churn_failures = failed.load(Relaxed);
    point.churn_per_s = point.churn_connects as f64 / elapsed;
    target.stop().await;
    Ok(point)
}

/// Publishes `count` events on `topic` in batches of `batch` with `workers` connections;
/// returns (acknowledged events, errors).
pub(crate) async fn publish_batches(
    target: &Target,
    workers: usize,
    batch: usize,
    stop_at: Option<Instant>,
    count: Option<u64>,
    pad: &str,
) -> anyhow::Result<(u64, u64)> {
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut poster = Poster::connect(
            source_addr(w as u64),
            target.pub_addr,
            target.auth_headers(),
        )
        .await?;
        let (acked, errors, issued) = (acked.clone(), errors.clone(), issued.clone());
        let pad = pad.to_owned();
        let kind = target.kind;
        tasks.push(tokio::spawn(async move {
            let mut body = Vec::with_capacity(batch * 128);
            loop {
                if stop_at.is_some_and(|s| Instant::now() >= s) {
                    return;
                }
                let n = batch as u64;
                if let Some(c) = count
                    && issued.fetch_add(n, Relaxed) >= c
                {
                    return;
                }
                if batch == 1 && kind != Kind::Tidings {
                    // One event in the peer's own publish request (Nchan: POST /pub?topic=).
                    let (path, ct) = publish_request(kind, "bench", now_nanos(), &pad, &mut body);
                    match poster.post(&path, ct, &body).await {
                        Ok((200..=299, _)) => acked.fetch_add(n, Relaxed),
                        Ok(_) => errors.fetch_add(1, Relaxed),
                        Err(_) => {
                            errors.fetch_add(1, Relaxed);
                            return;
                        }
                    };
                    continue;
                }
                body.clear();
                if batch > 1 {
                    body.push(b'[');
                }
                let t = now_nanos();
                for i in 0..batch {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(
                        format!(
                            r#"{{"topic":"bench","type":"tick","data":{{"t":{t},"p":"{pad}"}}}}"#
                        )
                        .as_bytes(),
                    );
                }
                if batch > 1 {
                    body.push(b']');
                }
                match poster.post("/publish", "application/json", &body).await {
                    Ok((200..=299, _)) => acked.fetch_add(n, Relaxed),
                    Ok(_) => errors.fetch_add(1, Relaxed),
                    Err(_) => {
                        errors.fetch_add(1, Relaxed);
                        return;
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok((acked.load(Relaxed), errors.load(Relaxed)))
}

/// (e): `workers` concurrent keep-alive publishers, `batch` events per request, for
/// `duration`, into `kind` (Tidings in its configured durability, or the floor, which takes
/// one event per request in the same body shape).
pub(crate) async fn publish(
    ctx: &Ctx,
    kind: Kind,
    workers: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Point> {
    anyhow::ensure!(
        matches!(kind, Kind::Tidings | Kind::Floor | Kind::Nchan),
        "publish measures tidings, floor and nchan only"
    );
    anyhow::ensure!(
        kind == Kind::Tidings || batch == 1,
        "the floor and nchan take one event per request"
    );
    let target = Target::start(kind, &ctx.tidings).await?;
    let mut point = ctx.point("publish", &target);
    point.subscribers = workers as u64;
    point.rate = batch as f64;
    if kind == Kind::Tidings {
        point.durability.clone_from(&ctx.tidings.durability);
        point.note_extra = format!(
            "{workers} publishers, {batch} event(s) per request, durability {}",
            ctx.tidings.durability
        );
    } else {
        point.note_extra = format!("{workers} publishers, 1 event per request, {}", kind.name());
    }
    let cpu0 = tree_cpu_seconds(&target.pids);
    let t0 = Instant::now();
    let res = publish_batches(&target, workers, batch, Some(t0 + duration), None, "x").await;
    let elapsed = t0.elapsed().as_secs_f64();
    point.server_cpu_s = tree_cpu_seconds(&target.pids) - cpu0;
    point.server_rss_end_bytes = tree_rss_bytes(&target.pids);
    target.stop().await;
    let (acked, errors) = res?;
    point.duration_s = elapsed;
    point.published = acked;
    point.publish_errors = errors;
    point.publish_per_s = acked as f64 / elapsed;
    point.server_cpu_us_per_publish = point.server_cpu_s * 1e6 / acked.max(1) as f64;
    Ok(point)
}

/// (f): publish `count` events (batches of 1000), then one subscriber from `earliest` reads
/// them all.
pub(crate) async fn replay(ctx: &Ctx, count: u64, transport: Transport) -> anyhow::Result<Point> {
    let target = Target::start(Kind::Tidings, &ctx.tidings).await?;
    let mut point = ctx.point("replay", &target);
    point.subscribers = 1;
    point.transport = match transport {
        Transport::Sse => "sse",
        Transport::Ws => "ws",
    }
    .to_owned();
    let res = async {
        let t0 = Instant::now();
        let (acked, errors) = publish_batches(&target, 4, 1000, None, Some(count), "x").await?;
        let load_s = t0.elapsed().as_secs_f64();
        point.published = acked;
        point.publish_errors = errors;
        point.publish_per_s = acked as f64 / load_s;
        let stats = Stats::new();
        let req = Arc::new(target.subscribe("bench", true));
        let cpu0 = tree_cpu_seconds(&target.pids);
        let t1 = Instant::now();
        let s2 = stats.clone();
        let task = tokio::spawn(async move { sub::run(0, req, transport, s2, |_| ()).await });
        let deadline = t1 + Duration::from_secs(300);
        while stats.delivered.load(Relaxed) < acked {
            if Instant::now() > deadline || task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = t1.elapsed().as_secs_f64();
        point.server_cpu_s = tree_cpu_seconds(&target.pids) - cpu0;
        task.abort();
        point.duration_s = elapsed;
        point.delivered = stats.delivered.load(Relaxed);
        point.expected_deliveries = acked;
        point.deliveries_per_s = point.delivered as f64 / elapsed;
        point.malformed = stats.malformed.load(Relaxed);
        point.other_events = stats.other_events.load(Relaxed);
        point.server_cpu_us_per_delivery = point.server_cpu_s * 1e6 / point.delivered.max(1) as f64;
        point.note = format!(
            "loaded {acked} events in {load_s:.1} s ({:.0} events/s in batches of 1000, 4 publishers)",
            point.publish_per_s
        );
        anyhow::Ok(())
    }
    .await
    .context("replay");
    target.stop().await;
    res.map(|()| point)
}
