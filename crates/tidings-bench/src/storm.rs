//! The reconnect storm (issue 16, point 4): subscribers on a few topics of a durable hub, one
//! publisher per topic that keeps going, the hub restarted (SIGTERM, then started again on the
//! same address and data), every client reconnecting at once with its `Last-Event-ID`. Measures
//! the time until every client has everything it missed, the new server's peak RSS, the
//! kernel's listen overflows, and that no event was lost or delivered twice. Against the floor,
//! the same herd of connects to a fresh server (it has no history to restart with).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, watch};

use crate::http::{Poster, connect_from, find, read_head, source_addr};
use crate::procstat::{rss_bytes, tree_cpu_seconds};
use crate::result::Point;
use crate::scenario::Ctx;
use crate::sub::{Body, now_nanos};
use crate::target::{BENCH_TOKEN, Kind, Target, TidingsOptions};

/// Parameters of one storm.
#[derive(Debug, Clone)]
pub(crate) struct StormParams {
    pub(crate) subscribers: u64,
    pub(crate) topics: u64,
    /// Events/s published in total while the clients are live (spread over the topics).
    pub(crate) rate: f64,
    /// Events published to each topic after the restart, before the clients come back.
    pub(crate) missed: u64,
    /// Most seconds to wait for the herd to catch up.
    pub(crate) deadline: Duration,
    /// `--listen-backlog` for the restarted hub (`None`: its default).
    pub(crate) backlog: Option<u32>,
}

/// What one storm measured (the `storm` field of its `Point`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(crate) struct StormFigures {
    pub(crate) missed_per_topic: u64,
    /// SIGTERM to the new hub listening.
    pub(crate) restart_s: f64,
    /// From the herd's start (the hub accepting) until every client had its response head.
    pub(crate) all_heads_s: f64,
    /// From the herd's start until every client had received everything it missed.
    pub(crate) all_caught_up_s: f64,
    pub(crate) caught_up_p50_ms: f64,
    pub(crate) caught_up_p99_ms: f64,
    /// Clients that had caught up within the deadline.
    pub(crate) caught_up: u64,
    /// Connects that failed during the herd and were retried.
    pub(crate) connect_retries: u64,
    /// Streams refused in-band (over a limit) and retried, over the whole run.
    pub(crate) refused: u64,
    /// `TcpExtListenOverflows` / `TcpExtListenDrops` (`nstat`) during the herd, whole host.
    pub(crate) listen_overflows: u64,
    pub(crate) listen_drops: u64,
    /// Peak resident memory of the restarted server (VmHWM), and its RSS once caught up.
    pub(crate) peak_rss_bytes: u64,
    /// The server's CPU seconds from the herd's start until all caught up.
    pub(crate) herd_cpu_s: f64,
    /// Events that never arrived (a gap in a topic's numbering) and events that came twice.
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    /// Every client ended with exactly every acknowledged event of its topic.
    pub(crate) exact: bool,
    /// The listen backlog the server asked for, as `ss` showed it (Send-Q of the listener).
    pub(crate) backlog: u64,
    /// `/proc/loadavg` at the start and at the end.
    pub(crate) loadavg: String,
}

/// State shared by every storm client.
#[derive(Debug)]
struct Shared {
    /// 0: the first connection; 1: the herd may reconnect.
    gate: watch::Receiver<u32>,
    /// When the herd was let go.
    herd_at: Mutex<Option<Instant>>,
    /// Per topic: the count of events a client must have to be caught up (set at the herd).
    targets: Vec<AtomicU64>,
    connected: AtomicU64,
    disconnected: AtomicU64,
    heads: AtomicU64,
    last_head_ns: AtomicU64,
    caught: AtomicU64,
    caught_ms: Mutex<Vec<f64>>,
    retries: AtomicU64,
    /// Streams the hub refused in-band (`reconnect-required` with a limit's reason).
    refused: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    malformed: AtomicU64,
    /// Per client: the next event number it expects (how many it has, in order).
    next: Vec<AtomicU64>,
}

impl Shared {
    fn since_herd(&self) -> Option<Duration> {
        self.herd_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|t| t.elapsed())
    }
}

fn topic(k: u64) -> String {
    format!("storm-{k}")
}

/// `/proc/loadavg`'s first three fields.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `TcpExtListenOverflows` and `TcpExtListenDrops` from /proc/net/netstat (what `nstat -az`
/// prints), for the whole network namespace.
pub(crate) fn listen_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let find = |name: &str| {
            names
                .split_whitespace()
                .position(|n| n == name)
                .and_then(|i| values.split_whitespace().nth(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        return (find("ListenOverflows"), find("ListenDrops"));
    }
    (0, 0)
}

/// The accept-queue size of the socket listening on `port` (Send-Q of `ss -ltn`).
fn listen_backlog(port: u16) -> u64 {
    let Ok(out) = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
    else {
        return 0;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(2).and_then(|q| q.parse().ok()))
        .unwrap_or(0)
}

/// VmHWM (peak resident memory) of one process in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A Tidings process the storm can restart on the same address and data directory.
struct Hub {
    child: Child,
    addr: std::net::SocketAddr,
    pid: u32,
}

async fn spawn_hub(
    o: &TidingsOptions,
    dir: &Path,
    listen: &str,
    max_connections: u64,
    backlog: Option<u32>,
) -> anyhow::Result<Hub> {
    if !o.bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p tidings`, or pass --tidings-bin",
            o.bin.display()
        );
    }
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        listen.into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--durability".into(),
        "durable".into(),
        "--max-connections".into(),
        max_connections.to_string(),
        // The bench's clients come from 16 loopback addresses, all with one token.
        "--max-connections-per-ip".into(),
        "0".into(),
        "--max-streams-per-credential".into(),
        "0".into(),
        // Every stream is closed at once: the herd is what this measures.
        "--drain-spread".into(),
        "0s".into(),
        "--sse-keepalive".into(),
        "30s".into(),
        "--token".into(),
        format!("{BENCH_TOKEN}:publish=*;subscribe=*"),
    ];
    if let Some(b) = backlog {
        args.extend(["--listen-backlog".into(), b.to_string()]);
    }
    args.extend(o.extra_args.iter().cloned());
    let mut cmd = Command::new(&o.bin);
    cmd.args(&args)
        .env("TIDINGS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &o.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", o.bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let addr = crate::target::wait_for_addr(stderr, "Tidings is listening.", "addr=").await?;
    let pid = child.id().context("tidings exited")?;
    Ok(Hub { child, addr, pid })
}

impl Hub {
    /// SIGTERM, and wait (up to 30 s) for the exit.
    async fn terminate(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status()
            .context("run kill")?;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await.ok();
                bail!("tidings did not exit within 30 s of SIGTERM")
            }
        }
    }
}

/// One publisher per topic: events numbered from 0 on its topic, each with an idempotency
/// key, retried (over a new connection if need be) until acknowledged, so a restart neither
/// loses nor doubles one. `burst` asks every publisher for `missed` events in one request.
struct Publishers {
    acked: Arc<Vec<AtomicU64>>,
    burst: Arc<Vec<AtomicBool>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Publishers {
    fn start(addr: std::net::SocketAddr, topics: u64, rate: f64, missed: u64) -> Self {
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..topics).map(|_| AtomicU64::new(0)).collect());
        let burst: Arc<Vec<AtomicBool>> =
            Arc::new((0..topics).map(|_| AtomicBool::new(false)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(topics as f64 / rate.max(0.001));
        let tasks = (0..topics)
            .map(|k| {
                let (acked, burst, stop) = (acked.clone(), burst.clone(), stop.clone());
                tokio::spawn(async move {
                    publish_topic(addr, k, period, missed, &acked, &burst, &stop).await;
                })
            })
            .collect();
        Self {
            acked,
            burst,
            stop,
            tasks,
        }
    }

    fn acked(&self) -> Vec<u64> {
        self.acked.iter().map(|a| a.load(Relaxed)).collect()
    }

    async fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                // Stuck on a hub that stopped answering: dropped with the runtime.
            }
        }
    }
}

async fn publish_topic(
    addr: std::net::SocketAddr,
    k: u64,
    period: Duration,
    missed: u64,
    acked: &[AtomicU64],
    burst: &[AtomicBool],
    stop: &AtomicBool,
) {
    let auth = format!("Authorization: Bearer {BENCH_TOKEN}\r\n");
    let mut poster: Option<Poster> = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0u64;
    let mut body = Vec::with_capacity(512);
    while !stop.load(Relaxed) {
        let bursting = burst[k as usize].load(Relaxed);
        let count = if bursting {
            missed.max(1)
        } else {
            tick.tick().await;
            1
        };
        body.clear();
        body.push(b'[');
        for n in next..next + count {
            if n > next {
                body.push(b',');
            }
            body.extend_from_slice(
                format!(
                    r#"{{"topic":"{}","type":"tick","data":{{"n":{n},"t":{}}}}}"#,
                    topic(k),
                    now_nanos()
                )
                .as_bytes(),
            );
        }
        body.push(b']');
        let key = format!("Idempotency-Key: storm-{k}-{next}-{count}\r\n");
        // Until acknowledged: a refused or failed publish may be retried with the same key.
        loop {
            if stop.load(Relaxed) {
                return;
            }
            let p = match &mut poster {
                Some(p) => p,
                None => match Poster::connect(source_addr(1000 + k), addr, auth.clone()).await {
                    Ok(p) => poster.insert(p),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            match p
                .post_with("/publish", "application/json", &key, &body)
                .await
            {
                Ok((200..=299, _)) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => {
                    poster = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        next += count;
        acked[k as usize].store(next, Relaxed);
        if bursting {
            burst[k as usize].store(false, Relaxed);
        }
    }
}

/// One client: subscribes to its topic, checks every event's number, and when its stream
/// ends waits for the herd, then reconnects with the id of the last event it got.
async fn client(
    i: u64,
    k: u64,
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let mut permit = permit;
    let mut last_id: Option<String> = None;
    let mut generation = 0u32;
    let mut caught = false;
    let mut gate = shared.gate.clone();
    loop {
        if gate.wait_for(|g| *g >= generation).await.is_err() {
            return;
        }
        let res = subscribe_once(
            i,
            k,
            addr,
            &shared,
            &mut last_id,
            generation,
            &mut caught,
            &mut permit,
        )
        .await;
        match res {
            // Connected, then the stream ended: wait for the next generation.
            Ok(true) => {
                shared.disconnected.fetch_add(1, Relaxed);
                generation += 1;
            }
            // Never got a head: retry the same generation.
            Ok(false) | Err(_) => {
                if generation > 0 {
                    shared.retries.fetch_add(1, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection; `Ok(true)` once it had its response head and then ended.
#[allow(clippy::too_many_arguments)]
async fn subscribe_once(
    i: u64,
    k: u64,
    addr: std::net::SocketAddr,
    shared: &Shared,
    last_id: &mut Option<String>,
    generation: u32,
    caught: &mut bool,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> anyhow::Result<bool> {
    let mut stream = connect_from(source_addr(i), addr).await?;
    // A client back from the restart resumes after the last event it got; one that got none
    // yet asks for its topic's whole history (the hub started empty).
    let (query, resume) = match (generation, last_id.as_deref()) {
        (0, _) => ("", String::new()),
        (_, Some(id)) => ("", format!("Last-Event-ID: {id}\r\n")),
        (_, None) => ("&lastEventId=earliest", String::new()),
    };
    let req = format!(
        "GET /events?topic={}{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {BENCH_TOKEN}\r\n{resume}\r\n",
        topic(k)
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let head = read_head(&mut stream, &mut buf).await?;
    if head.status != 200 {
        shared.malformed.fetch_add(1, Relaxed);
        return Ok(false);
    }
    permit.take();
    if generation == 0 {
        shared.connected.fetch_add(1, Relaxed);
    } else {
        shared.heads.fetch_add(1, Relaxed);
        if let Some(t) = shared.since_herd() {
            shared.last_head_ns.fetch_max(t.as_nanos() as u64, Relaxed);
        }
    }
    let mut body = Body::new(head.chunked);
    let mut raw = buf;
    let mut read_buf = vec![0u8; 16 * 1024];
    let me = &shared.next[i as usize];
    loop {
        if !raw.is_empty() {
            let (used, refused) = events(body.push(&raw)?, me, shared, last_id);
            raw.clear();
            body.consume(used);
            if refused {
                // Over a limit (too many streams, connections): not served, try again.
                shared.refused.fetch_add(1, Relaxed);
                return Ok(false);
            }
        }
        if generation > 0
            && !*caught
            && me.load(Relaxed) >= shared.targets[k as usize].load(Relaxed)
        {
            *caught = true;
            shared.caught.fetch_add(1, Relaxed);
            if let Some(t) = shared.since_herd() {
                shared
                    .caught_ms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(t.as_secs_f64() * 1e3);
            }
        }
        let n = match stream.read(&mut read_buf).await {
            Ok(0) | Err(_) => return Ok(true),
            Ok(n) => n,
        };
        raw.extend_from_slice(&read_buf[..n]);
    }
}

/// Handles the complete SSE events in `payload`; returns the bytes used, and whether the hub
/// refused the stream in-band (`reconnect-required` for any reason but its own shutdown).
fn events(
    payload: &[u8],
    next: &AtomicU64,
    shared: &Shared,
    last_id: &mut Option<String>,
) -> (usize, bool) {
    let mut start = 0;
    let mut refused = false;
    while let Some(rel) = find(&payload[start..], b"\n\n") {
        let block = &payload[start..start + rel];
        start += rel + 2;
        if find(block, b"event: reconnect-required").is_some() {
            refused |= find(block, b"\"shutdown\"").is_none();
            continue;
        }
        if find(block, b"event: tick").is_none() {
            continue; // a comment or `retry:`
        }
        let id = block
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"id: "))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let n = find(block, b"\"n\":").and_then(|at| {
            let digits: Vec<u8> = block[at + 4..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            std::str::from_utf8(&digits).ok()?.parse::<u64>().ok()
        });
        let (Some(id), Some(n)) = (id, n) else {
            shared.malformed.fetch_add(1, Relaxed);
            continue;
        };
        let want = next.load(Relaxed);
        if n < want {
            shared.duplicated.fetch_add(1, Relaxed);
            continue;
        }
        if n > want {
            shared.lost.fetch_add(n - want, Relaxed);
        }
        next.store(n + 1, Relaxed);
        *last_id = Some(id);
    }
    (start, refused)
}

async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while !done() {
        if Instant::now() > until {
            eprintln!("tidings-bench: storm: {what} did not happen within {deadline:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Runs one storm against `kind` (tidings or floor).
pub(crate) async fn storm(ctx: &Ctx, kind: Kind, p: &StormParams) -> anyhow::Result<Point> {
    match kind {
        Kind::Tidings => storm_tidings(ctx, p).await,
        Kind::Floor => herd_floor(ctx, p).await,
        other => bail!(
            "the storm runs against tidings and floor, not {}",
            other.name()
        ),
    }
}

fn new_shared(p: &StormParams) -> (Arc<Shared>, watch::Sender<u32>) {
    let (gate_tx, gate) = watch::channel(0u32);
    let shared = Arc::new(Shared {
        gate,
        herd_at: Mutex::new(None),
        targets: (0..p.topics).map(|_| AtomicU64::new(u64::MAX)).collect(),
        connected: AtomicU64::new(0),
        disconnected: AtomicU64::new(0),
        heads: AtomicU64::new(0),
        last_head_ns: AtomicU64::new(0),
        caught: AtomicU64::new(0),
        caught_ms: Mutex::new(Vec::new()),
        retries: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        duplicated: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        next: (0..p.subscribers).map(|_| AtomicU64::new(0)).collect(),
    });
    (shared, gate_tx)
}

fn base_point(ctx: &Ctx, kind: Kind, p: &StormParams, command: String) -> Point {
    Point {
        run_id: ctx.run_id,
        scenario: "storm".to_owned(),
        target: kind.name().to_owned(),
        command: ctx.command.clone(),
        server_command: command,
        machine: ctx.machine.clone(),
        transport: "sse".to_owned(),
        loadgen: "raw".to_owned(),
        subscribers: p.subscribers,
        topics: p.topics,
        rate: p.rate,
        ..Point::default()
    }
}

async fn storm_tidings(ctx: &Ctx, p: &StormParams) -> anyhow::Result<Point> {
    let load0 = loadavg();
    let dir = tempfile::Builder::new().prefix("tidings-storm").tempdir()?;
    let max_connections = p.subscribers + p.topics + 100;
    let hub = spawn_hub(
        &ctx.tidings,
        dir.path(),
        "127.0.0.1:0",
        max_connections,
        p.backlog,
    )
    .await?;
    let addr = hub.addr;
    let mut point = base_point(
        ctx,
        Kind::Tidings,
        p,
        format!(
            "tidings serve --listen {addr} --data-dir $TMP --durability durable --max-connections {max_connections} --max-connections-per-ip 0 --max-streams-per-credential 0 --drain-spread 0s --sse-keepalive 30s --token '…:publish=*;subscribe=*'{}",
            p.backlog
                .map(|b| format!(" --listen-backlog {b}"))
                .unwrap_or_default()
        ),
    );
    let (shared, gate) = new_shared(p);
    // The first connections: ramped, not measured.
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency));
    let mut tasks = Vec::with_capacity(p.subscribers as usize);
    for i in 0..p.subscribers {
        let permit = sem.clone().acquire_owned().await?;
        let shared = shared.clone();
        tasks.push(tokio::spawn(client(
            i,
            i % p.topics,
            addr,
            shared,
            Some(permit),
        )));
    }
    let res = async {
        if !wait_until("the first connections", Duration::from_secs(120), || {
            shared.connected.load(Relaxed) == p.subscribers
        })
        .await
        {
            bail!(
                "only {} of {} subscribers connected",
                shared.connected.load(Relaxed),
                p.subscribers
            );
        }
        point.connected = p.subscribers;
        point.rss_before_bytes = rss_bytes(hub.pid);
        let publishers = Publishers::start(addr, p.topics, p.rate, p.missed);
        // Live for a moment before the restart.
        let live = publishers.acked();
        wait_until("live publishing", Duration::from_secs(30), || {
            publishers.acked().iter().zip(&live).all(|(a, b)| a > b)
        })
        .await;
        tokio::time::sleep(ctx.warmup).await;
        // The restart.
        let t_term = Instant::now();
        hub.terminate().await?;
        if !wait_until("every stream ended", Duration::from_secs(30), || {
            shared.disconnected.load(Relaxed) == p.subscribers
        })
        .await
        {
            bail!("streams still open after the hub exited");
        }
        let hub = spawn_hub(
            &ctx.tidings,
            dir.path(),
            &addr.to_string(),
            max_connections,
            p.backlog,
        )
        .await?;
        let restart_s = t_term.elapsed().as_secs_f64();
        // What the clients missed: `missed` events on every topic, published to the new hub.
        for b in publishers.burst.iter() {
            b.store(true, Relaxed);
        }
        wait_until("the missed events", Duration::from_secs(30), || {
            publishers.burst.iter().all(|b| !b.load(Relaxed))
        })
        .await;
        let targets = publishers.acked();
        for (t, v) in shared.targets.iter().zip(&targets) {
            t.store(*v, Relaxed);
        }
        let backlog = listen_backlog(addr.port());
        let (over0, drop0) = listen_counters();
        let cpu0 = tree_cpu_seconds(&[hub.pid]);
        // The herd.
        *shared
            .herd_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        gate.send_replace(1);
        wait_until("every client catching up", p.deadline, || {
            shared.caught.load(Relaxed) == p.subscribers
        })
        .await;
        let caught_s = shared.since_herd().unwrap_or_default().as_secs_f64();
        let herd_cpu_s = tree_cpu_seconds(&[hub.pid]) - cpu0;
        let (over1, drop1) = listen_counters();
        let peak = peak_rss_bytes(hub.pid);
        point.server_rss_end_bytes = rss_bytes(hub.pid);
        // Live again: the publishers go on for a moment, then stop; every client must end
        // with exactly what was acknowledged on its topic.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acked = publishers.acked.clone();
        publishers.stop().await;
        let final_counts: Vec<u64> = acked.iter().map(|a| a.load(Relaxed)).collect();
        let exact = wait_until("the last events", Duration::from_secs(30), || {
            (0..p.subscribers).all(|i| {
                shared.next[i as usize].load(Relaxed) >= final_counts[(i % p.topics) as usize]
            })
        })
        .await;
        let mut ms = shared
            .caught_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ms.sort_by(f64::total_cmp);
        let lost = shared.lost.load(Relaxed);
        let duplicated = shared.duplicated.load(Relaxed);
        let figures = StormFigures {
            missed_per_topic: p.missed,
            restart_s,
            all_heads_s: shared.last_head_ns.load(Relaxed) as f64 / 1e9,
            // Until the deadline when not all caught up (`caught_up` says how many did).
            all_caught_up_s: caught_s,
            caught_up_p50_ms: quantile(&ms, 0.5),
            caught_up_p99_ms: quantile(&ms, 0.99),
            caught_up: shared.caught.load(Relaxed),
            connect_retries: shared.retries.load(Relaxed),
            refused: shared.refused.load(Relaxed),
            listen_overflows: over1 - over0,
            listen_drops: drop1 - drop0,
            peak_rss_bytes: peak,
            herd_cpu_s,
            lost,
            duplicated,
            exact: exact && lost == 0 && duplicated == 0,
            backlog,
            loadavg: format!("{load0} → {}", loadavg()),
        };
        point.connect_per_s = shared.heads.load(Relaxed) as f64 / figures.all_heads_s.max(1e-9);
        point.duration_s = figures.all_caught_up_s;
        point.malformed = shared.malformed.load(Relaxed);
        point.published = final_counts.iter().sum();
        point.delivered = shared.next.iter().map(|n| n.load(Relaxed)).sum();
        point.server_cpu_s = herd_cpu_s;
        point.storm = Some(figures);
        hub.terminate().await.ok();
        anyhow::Ok(())
    }
    .await;
    for t in tasks {
        t.abort();
    }
    res.map(|()| point)
}

/// The floor has no history to restart with: the same herd of connects to a fresh floor.
async fn herd_floor(ctx: &Ctx, p: &StormParams) -> anyhow::Result<Point> {
    let load0 = loadavg();
    let target = Target::start(Kind::Floor, &ctx.tidings).await?;
    let mut point = base_point(ctx, Kind::Floor, p, target.command.clone());
    let (shared, gate) = new_shared(p);
    // Every client waits for the gate's first opening (generation 1) before connecting.
    let addr = target.sub_addr;
    let mut tasks = Vec::with_capacity(p.subscribers as usize);
    for i in 0..p.subscribers {
        let shared = shared.clone();
        let mut gate_rx = shared.gate.clone();
        tasks.push(tokio::spawn(async move {
            if gate_rx.wait_for(|g| *g >= 1).await.is_err() {
                return;
            }
            loop {
                let ok = async {
                    let mut s = connect_from(source_addr(i), addr).await?;
                    s.write_all(
                        format!(
                            "GET /events?topic={} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n",
                            topic(i % shared.targets.len() as u64)
                        )
                        .as_bytes(),
                    )
                    .await?;
                    let mut buf = Vec::new();
                    let head = read_head(&mut s, &mut buf).await?;
                    anyhow::ensure!(head.status == 200, "status {}", head.status);
                    anyhow::Ok(s)
                }
                .await;
                match ok {
                    Ok(s) => {
                        shared.heads.fetch_add(1, Relaxed);
                        if let Some(t) = shared.since_herd() {
                            shared.last_head_ns.fetch_max(t.as_nanos() as u64, Relaxed);
                        }
                        // Held open until the run ends.
                        std::future::pending::<()>().await;
                        drop(s);
                    }
                    Err(_) => {
                        shared.retries.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    let (over0, drop0) = listen_counters();
    let cpu0 = tree_cpu_seconds(&target.pids);
    *shared
        .herd_at
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    gate.send_replace(1);
    wait_until("every floor connect", p.deadline, || {
        shared.heads.load(Relaxed) == p.subscribers
    })
    .await;
    let (over1, drop1) = listen_counters();
    let heads_s = shared.last_head_ns.load(Relaxed) as f64 / 1e9;
    let figures = StormFigures {
        all_heads_s: heads_s,
        connect_retries: shared.retries.load(Relaxed),
        listen_overflows: over1 - over0,
        listen_drops: drop1 - drop0,
        herd_cpu_s: tree_cpu_seconds(&target.pids) - cpu0,
        peak_rss_bytes: target.pids.first().map_or(0, |&pid| peak_rss_bytes(pid)),
        backlog: listen_backlog(addr.port()),
        loadavg: format!("{load0} → {}", loadavg()),
        ..StormFigures::default()
    };
    point.connected = shared.heads.load(Relaxed);
    point.connect_per_s = point.connected as f64 / heads_s.max(1e-9);
    point.server_cpu_s = figures.herd_cpu_s;
    point.storm = Some(figures);
    for t in tasks {
        t.abort();
    }
    target.stop().await;
    Ok(point)
}

/// One line for the terminal.
pub(crate) fn summary(p: &Point) -> String {
    let Some(s) = &p.storm else {
        return format!("storm {} (no figures)", p.target);
    };
    format!(
        "storm    {:<8} subs={} topics={} missed/topic={} restart={:.2}s heads={:.3}s caught_up={:.3}s (p50 {:.0} ms, p99 {:.0} ms, {}/{}) connect/s={:.0} retries={} refused={} overflows={} drops={} backlog={} peak_rss={:.1}MB herd_cpu={:.2}s lost={} dup={} exact={} load={}",
        p.target,
        p.subscribers,
        p.topics,
        s.missed_per_topic,
        s.restart_s,
        s.all_heads_s,
        s.all_caught_up_s,
        s.caught_up_p50_ms,
        s.caught_up_p99_ms,
        s.caught_up,
        p.subscribers,
        p.connect_per_s,
        s.connect_retries,
        s.refused,
        s.listen_overflows,
        s.listen_drops,
        s.backlog,
        s.peak_rss_bytes as f64 / 1e6,
        s.herd_cpu_s,
        s.lost,
        s.duplicated,
        s.exact,
        s.loadavg
    )
}

/// The `storm` section of benchmarks.md (the newest run).
pub(crate) fn section(md: &mut String, all: &[Point]) {
    let pts = crate::report::newest(all, "storm");
    if !crate::report::heading(md, "(i) Reconnect storm after a restart", &pts) {
        return;
    }
    md.push_str(
        "Subscribers on a few topics of a durable hub; one publisher per topic keeps going (each \
         event numbered, sent with an idempotency key and retried until acknowledged). The hub \
         gets SIGTERM (it closes every stream at once), starts again on the same address and data, \
         takes `missed` events per topic, and then every client reconnects at once with the id of \
         the last event it got. *Heads*: from the herd's start (the hub accepting) until every \
         client has its response head; *caught up*: until every client has every event it \
         missed. Lost and duplicated count gaps and repeats in each client's numbering; *exact*: \
         every client ended with exactly the acknowledged events of its topic. Overflows are the \
         kernel's `TcpExtListenOverflows` during the herd. The floor has no history: its row is \
         the same herd of connects to a fresh floor server.\n\n",
    );
    crate::report::commands(md, &pts);
    md.push_str(
        "| target | clients | topics | missed per topic | restart s | all heads s | connects/s | all caught up s | p50 / p99 caught up ms | listen backlog | overflows | connect retries | peak RSS | server CPU s (herd) | lost | duplicated | exact | load average |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for p in &pts {
        let Some(s) = &p.storm else { continue };
        let tidings = p.target == "tidings";
        let or_dash = |v: String| if tidings { v } else { "–".to_owned() };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.0} | {} | {} | {} | {} | {} | {:.1} MB | {:.2} | {} | {} | {} | {} |\n",
            p.target,
            p.subscribers,
            or_dash(p.topics.to_string()),
            or_dash(s.missed_per_topic.to_string()),
            or_dash(format!("{:.2}", s.restart_s)),
            s.all_heads_s,
            p.connect_per_s,
            or_dash(format!("{:.3}", s.all_caught_up_s)),
            or_dash(format!("{:.0} / {:.0}", s.caught_up_p50_ms, s.caught_up_p99_ms)),
            s.backlog,
            s.listen_overflows,
            s.connect_retries,
            s.peak_rss_bytes as f64 / 1e6,
            s.herd_cpu_s,
            or_dash(s.lost.to_string()),
            or_dash(s.duplicated.to_string()),
            or_dash(s.exact.to_string()),
            s.loadavg
        ));
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_for(n: u64) -> Arc<Shared> {
        new_shared(&StormParams {
            subscribers: n,
            topics: 1,
            rate: 1.0,
            missed: 1,
            deadline: Duration::from_secs(1),
            backlog: None,
        })
        .0
    }

    #[test]
    fn numbers_find_gaps_and_repeats_and_keep_the_last_id() {
        let shared = shared_for(1);
        let mut last = None;
        let p = b"retry: 1000\n\nid: e-1\nevent: tick\ndata: {\"n\":0,\"t\":5}\n\n\
                  id: e-2\nevent: tick\ndata: {\"n\":1,\"t\":5}\n\n\
                  id: e-4\nevent: tick\ndata: {\"n\":3,\"t\":5}\n\n\
                  id: e-3\nevent: tick\ndata: {\"n\":1,\"t\":5}\n\n\
                  event: reconnect-required\ndata: {}\n\nid: e-5\nevent: tick\ndata: {\"n\"";
        let (used, refused) = events(p, &shared.next[0], &shared, &mut last);
        assert!(refused, "a reconnect-required without the shutdown reason");
        assert_eq!(shared.next[0].load(Relaxed), 4);
        assert_eq!(shared.lost.load(Relaxed), 1, "n=2 never came");
        assert_eq!(shared.duplicated.load(Relaxed), 1, "n=1 came twice");
        assert_eq!(shared.malformed.load(Relaxed), 0);
        assert_eq!(last.as_deref(), Some("e-4"));
        assert_eq!(&p[used..], b"id: e-5\nevent: tick\ndata: {\"n\"");
    }

    #[test]
    fn reads_the_listen_counters() {
        // Present on every Linux; both counters only grow.
        let (a, b) = listen_counters();
        let (c, d) = listen_counters();
        assert!(c >= a && d >= b);
        assert!(
            std::fs::read_to_string("/proc/net/netstat")
                .is_ok_and(|t| t.contains("ListenOverflows"))
        );
    }

    #[test]
    fn quantiles_of_sorted_times() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
