//! `tidings-bench`: the command line — scenarios against targets, the floor server, the
//! report and the CI smoke run.

mod client_sub;
mod cluster;
mod connect;
mod everything;
mod floor;
mod http;
mod procstat;
mod progress;
mod report;
mod result;
mod scenario;
mod storm;
mod sub;
mod target;
mod threads;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::result::Point;
use crate::scenario::{Ctx, FanoutParams, Loadgen};
use crate::sub::Transport;
use crate::target::{Kind, TidingsOptions};

#[derive(Debug, Parser)]
#[command(
    name = "tidings-bench",
    about = "Benchmarks Tidings side by side with a floor program, Nchan and Pushpin."
)]
struct Cli {
    /// Where JSON results are written (one file per measured point).
    #[arg(long, global = true, default_value = "target/bench")]
    out: PathBuf,
    /// The tidings binary [default: `tidings` next to this program].
    #[arg(long, global = true)]
    tidings_bin: Option<PathBuf>,
    /// Tidings durability [default: durable for publish/replay, fast otherwise].
    #[arg(long, global = true)]
    durability: Option<String>,
    #[arg(long, global = true, default_value_t = 4096)]
    subscriber_queue: usize,
    #[arg(long, global = true, default_value_t = 19_000)]
    max_connections: usize,
    /// Run Tidings without a token (anonymous loopback mode); by default publish and
    /// subscribe carry a bearer token.
    #[arg(long, global = true)]
    no_auth: bool,
    /// Seconds of publishing before the measured window.
    #[arg(long, global = true, default_value_t = 2.0)]
    warmup: f64,
    /// Connections opened concurrently while ramping up.
    #[arg(long, global = true, default_value_t = 256)]
    connect_concurrency: usize,
    /// Worker threads of the load generator.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Worker threads of the Tidings server (`TOKIO_WORKER_THREADS` in its environment)
    /// [default: one per core].
    #[arg(long, global = true)]
    server_threads: Option<usize>,
    /// The subscribers: `raw` sockets parsing minimally, or `client`, tidings-client
    /// subscriptions (the Rust client a user runs), for fanout and topics.
    #[arg(long, global = true, value_enum, default_value = "raw")]
    loadgen: Loadgen,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// (a) one topic, many subscribers; with --topics K, (b) many topics; with
    /// `--targets tidings-all,floor`, (l) every feature on.
    Fanout {
        #[arg(long, default_value = "tidings,floor", value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value = "1000", value_delimiter = ',')]
        subscribers: Vec<u64>,
        /// Events/s published in total (each subscriber of one topic receives all of them).
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Topics the subscribers are spread over; several values measure each in turn, in
        /// the same run (e.g. `100,1000`).
        #[arg(long, default_value = "1", value_delimiter = ',')]
        topics: Vec<u64>,
        /// Seconds measured per point.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// `sse`, `ws`, or both (`sse,ws`: each point measured over both in one run).
        #[arg(long, value_enum, default_value = "sse", value_delimiter = ',')]
        transport: Vec<TransportArg>,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
    },
    /// Issue 10's progress workload: `keys` downloads at `hz` updates/s each, to
    /// `subscribers`, without coalescing and with `latest` at `window_ms`.
    Progress {
        #[arg(long, default_value_t = 1000)]
        subscribers: u64,
        #[arg(long, default_value_t = 100)]
        keys: u64,
        #[arg(long, default_value_t = 200.0)]
        hz: f64,
        #[arg(long, default_value_t = 250)]
        window_ms: u64,
        /// Seconds measured per point.
        #[arg(long, default_value_t = 8.0)]
        duration: f64,
    },
    /// (c) idle connections: server memory per connection.
    Idle {
        #[arg(long, default_value = "tidings,floor", value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value = "5000", value_delimiter = ',')]
        subscribers: Vec<u64>,
        #[arg(long, default_value_t = 3.0)]
        hold: f64,
        #[arg(long, value_enum, default_value = "sse")]
        transport: TransportArg,
    },
    /// (d) connection churn: connect, read the head, disconnect, in a loop.
    Churn {
        #[arg(long, default_value = "tidings,floor", value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// (e) publish throughput into Tidings (durable by default), and into the floor.
    Publish {
        /// `tidings`, `floor` and/or `nchan` (the floor and Nchan take one event per
        /// request; Nchan keeps its messages in memory).
        #[arg(long, default_value = "tidings", value_delimiter = ',')]
        targets: Vec<String>,
        /// Tidings durability modes measured in this run, one point each, e.g.
        /// `durable,memory` [default: --durability, else durable].
        #[arg(long, value_delimiter = ',')]
        modes: Vec<String>,
        #[arg(long, default_value_t = 64)]
        publishers: usize,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// (f) replay: publish N events, then one subscriber reads them from `earliest`.
    Replay {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, value_enum, default_value = "sse")]
        transport: TransportArg,
    },
    /// (k) cluster mode: 2 and 3 nodes over one nats-server against a single node, same
    /// subscribers per node, publisher on node 0; then publish throughput into node 0.
    Cluster {
        #[arg(long, default_value = "2,3", value_delimiter = ',')]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        subscribers_per_node: u64,
        /// Events/s published on node 0.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Seconds measured per fan-out point.
        #[arg(long, default_value_t = 8.0)]
        duration: f64,
        /// Concurrent publishers of the throughput part.
        #[arg(long, default_value_t = 64)]
        publishers: usize,
        /// Seconds of the throughput part.
        #[arg(long, default_value_t = 5.0)]
        publish_duration: f64,
        #[arg(long, default_value = "nats-server")]
        nats_server: PathBuf,
    },
    /// Issue 16's reconnect storm: `subscribers` on `topics` of a durable hub, publishers
    /// going on, the hub restarted (SIGTERM, then start), every client reconnecting at once
    /// with its Last-Event-ID. Against `floor`: the same herd of connects to a fresh server.
    Storm {
        #[arg(long, default_value = "tidings,floor", value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value_t = 19_000)]
        subscribers: u64,
        #[arg(long, default_value_t = 10)]
        topics: u64,
        /// Events/s published in total while the clients are live.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Events published to each topic while the clients are away.
        #[arg(long, default_value_t = 100)]
        missed: u64,
        /// Most seconds to wait for every client to catch up.
        #[arg(long, default_value_t = 60.0)]
        deadline: f64,
        /// The restarted hub's --listen-backlog [default: the hub's default].
        #[arg(long)]
        backlog: Option<u32>,
    },
    /// Issue 16's connection setup: new SSE subscriptions/s with auth and a selector, with
    /// `in-flight` connects at a time; server CPU per connect.
    Connect {
        #[arg(long, default_value = "tidings,floor", value_delimiter = ',')]
        targets: Vec<String>,
        #[arg(long, default_value_t = 5000)]
        subscribers: u64,
        #[arg(long, default_value = "128,1024", value_delimiter = ',')]
        in_flight: Vec<usize>,
    },
    /// Issue 16's lock question: the one-topic fan-out with the server on each of
    /// `server-threads` worker threads, in one run.
    Threads {
        #[arg(long, default_value = "10000", value_delimiter = ',')]
        subscribers: Vec<u64>,
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        #[arg(long, default_value_t = 8.0)]
        duration: f64,
        #[arg(long, default_value = "1,2", value_delimiter = ',')]
        worker_threads: Vec<usize>,
    },
    /// Regenerates docs/benchmarks.md and docs/bench/*.svg from the JSON results.
    Report {
        #[arg(long, default_value = "docs")]
        docs: PathBuf,
    },
    /// A short run against tidings; fails if nothing was delivered or a frame was malformed.
    Smoke {
        #[arg(long, default_value_t = 200)]
        subscribers: u64,
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
    },
    /// The Rust client's own cost: events/s one tidings-client subscription parses from a
    /// loopback source that is never the bottleneck (SSE and JSON lines).
    ClientParse {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
    },
    /// Runs the floor server (used by `--targets floor`).
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Sse,
    Ws,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Sse => Self::Sse,
            TransportArg::Ws => Self::Ws,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::FloorServer { listen } = &cli.command {
        return exit(floor::serve(listen));
    }
    if let Cmd::Report { docs } = &cli.command {
        return exit(report::write(&cli.out, docs));
    }
    if let Cmd::ClientParse {
        events,
        payload_bytes,
    } = &cli.command
    {
        return exit(client_parse(&cli.out, *events, *payload_bytes));
    }
    rlimit::increase_nofile_limit(u64::MAX).ok();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit(Err(e.into())),
    };
    exit(rt.block_on(run(cli)))
}

fn exit(res: anyhow::Result<()>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidings-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `client-parse`: both framings, printed and written to `<out>/client-parse.json`.
fn client_parse(out: &std::path::Path, events: u64, payload_bytes: usize) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for framing in [
        tidings_client::Framing::Sse,
        tidings_client::Framing::Ndjson,
    ] {
        let r = client_sub::parse_cost(framing, events, payload_bytes)?;
        say(&format!(
            "client-parse {:<6} {} events of {} data bytes: {:.0} events/s ({:.0} ns/event; process CPU {:.0} ns/event)",
            r.framing,
            r.events,
            r.payload_bytes,
            r.events_per_s,
            r.ns_per_event,
            r.process_cpu_ns_per_event
        ));
        results.push(r);
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("client-parse.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    writeln!(out, "{line}").ok();
    out.flush().ok();
}

fn summary(p: &Point) -> String {
    format!(
        "{:<8} {:<8} subs={:<6} conn={:<6} fail={} connect/s={:.0} rss/conn={:.0}B pub/s={:.0} deliv/s={:.0} ({}/{}) p50={}us p99={}us p999={}us max={}us cpu={:.2}s cpu/deliv={:.3}us gen_cpu={:.2}s malformed={} {}",
        p.scenario,
        p.target,
        p.subscribers,
        p.connected,
        p.connect_failures,
        p.connect_per_s,
        p.rss_per_conn_bytes,
        p.publish_per_s,
        p.deliveries_per_s,
        p.delivered,
        p.expected_deliveries,
        p.p50_us,
        p.p99_us,
        p.p999_us,
        p.max_us,
        p.server_cpu_s,
        p.server_cpu_us_per_delivery,
        p.generator_cpu_s,
        p.malformed,
        p.note
    )
}

fn default_tidings_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tidings")))
        .unwrap_or_else(|| PathBuf::from("target/release/tidings"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let durable_default = matches!(cli.command, Cmd::Publish { .. } | Cmd::Replay { .. });
    let mut extra_args = Vec::new();
    if matches!(cli.command, Cmd::Replay { .. }) {
        extra_args.extend(["--retention-max-events".to_owned(), "0".to_owned()]);
    }
    let ctx = Ctx {
        run_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: procstat::machine(),
        tidings: TidingsOptions {
            bin: cli.tidings_bin.clone().unwrap_or_else(default_tidings_bin),
            durability: cli
                .durability
                .clone()
                .unwrap_or_else(|| if durable_default { "durable" } else { "fast" }.to_owned()),
            subscriber_queue: cli.subscriber_queue,
            max_connections: cli.max_connections,
            auth: !cli.no_auth,
            extra_args,
            env: cli
                .server_threads
                .map(|n| vec![("TOKIO_WORKER_THREADS".to_owned(), n.to_string())])
                .unwrap_or_default(),
        },
        connect_concurrency: cli.connect_concurrency,
        loadgen: cli.loadgen,
        warmup: Duration::from_secs_f64(cli.warmup),
    };
    let save = |p: &Point| -> anyhow::Result<()> {
        let path = p.save(&cli.out)?;
        say(&format!("{}  -> {}", summary(p), path.display()));
        Ok(())
    };
    match cli.command {
        Cmd::Fanout {
            targets,
            subscribers,
            rate,
            topics,
            duration,
            transport,
            publishers,
            payload_bytes,
        } => {
            let kinds = parse_targets(&targets)?;
            for (&topics, &n) in topics
                .iter()
                .flat_map(|t| subscribers.iter().map(move |n| (t, n)))
            {
                for &transport in &transport {
                    for &kind in &kinds {
                        let params = FanoutParams {
                            subscribers: n,
                            topics,
                            rate,
                            duration: Duration::from_secs_f64(duration),
                            transport: transport.into(),
                            publishers,
                            payload_bytes,
                            sessions: kinds.contains(&Kind::TidingsIds),
                            everything: kinds.contains(&Kind::TidingsAll),
                        };
                        match scenario::fanout(&ctx, kind, &params).await {
                            Ok(p) => save(&p)?,
                            Err(e) => {
                                say(&format!("fanout {} subs={n}: FAILED: {e:#}", kind.name()));
                            }
                        }
                    }
                }
            }
        }
        Cmd::Progress {
            subscribers,
            keys,
            hz,
            window_ms,
            duration,
        } => {
            for window in [None, Some(window_ms)] {
                let params = progress::ProgressParams {
                    subscribers,
                    keys,
                    hz,
                    window_ms: window,
                    duration: Duration::from_secs_f64(duration),
                };
                match progress::progress(&ctx, &params).await {
                    Ok(p) => {
                        save(&p)?;
                        say(&format!(
                            "progress {:<22} deliveries/s={:.0} bytes/s={:.0} server_cpu={:.2}s final_exact={:?}",
                            p.target,
                            p.deliveries_per_s,
                            p.bytes_per_s,
                            p.server_cpu_s,
                            p.final_values_exact
                        ));
                    }
                    Err(e) => say(&format!("progress window={window:?}: FAILED: {e:#}")),
                }
            }
        }
        Cmd::Idle {
            targets,
            subscribers,
            hold,
            transport,
        } => {
            let hold = Duration::from_secs_f64(hold);
            for &n in &subscribers {
                for kind in parse_targets(&targets)? {
                    match scenario::idle(&ctx, kind, n, hold, transport.into()).await {
                        Ok(p) => save(&p)?,
                        Err(e) => say(&format!("idle {} subs={n}: FAILED: {e:#}", kind.name())),
                    }
                }
            }
        }
        Cmd::Churn {
            targets,
            concurrency,
            duration,
        } => {
            for kind in parse_targets(&targets)? {
                match scenario::churn(&ctx, kind, concurrency, Duration::from_secs_f64(duration))
                    .await
                {
                    Ok(p) => save(&p)?,
                    Err(e) => say(&format!("churn {}: FAILED: {e:#}", kind.name())),
                }
            }
        }
        Cmd::Publish {
            targets,
            modes,
            publishers,
            batch,
            duration,
        } => {
            let modes = if modes.is_empty() {
                vec![ctx.tidings.durability.clone()]
            } else {
                modes
            };
            let mut runs = Vec::new();
            for kind in parse_targets(&targets)? {
                if kind == Kind::Tidings {
                    runs.extend(modes.iter().map(|m| (kind, Some(m.clone()))));
                } else {
                    runs.push((kind, None));
                }
            }
            for (kind, mode) in runs {
                let mut ctx = ctx.clone();
                if let Some(m) = &mode {
                    ctx.tidings.durability.clone_from(m);
                }
                let p = scenario::publish(
                    &ctx,
                    kind,
                    publishers,
                    batch,
                    Duration::from_secs_f64(duration),
                )
                .await?;
                say(&format!(
                    "publish  {} {} publishers={publishers} batch={batch} acked={} errors={} events/s={:.0} cpu/publish={:.2}us",
                    p.target,
                    mode.as_deref().unwrap_or(""),
                    p.published,
                    p.publish_errors,
                    p.publish_per_s,
                    p.server_cpu_us_per_publish
                ));
                save(&p)?;
            }
        }
        Cmd::Replay { events, transport } => {
            let p = scenario::replay(&ctx, events, transport.into()).await?;
            say(&format!(
                "replay   tidings  delivered={}/{} in {:.2}s events/s={:.0} malformed={} other={} ({})",
                p.delivered,
                p.expected_deliveries,
                p.duration_s,
                p.deliveries_per_s,
                p.malformed,
                p.other_events,
                p.note
            ));
            save(&p)?;
        }
        Cmd::Cluster {
            nodes,
            subscribers_per_node,
            rate,
            duration,
            publishers,
            publish_duration,
            nats_server,
        } => {
            let params = cluster::ClusterParams {
                nodes,
                subscribers_per_node,
                rate,
                duration: Duration::from_secs_f64(duration),
                publishers,
                publish_duration: Duration::from_secs_f64(publish_duration),
                nats_server,
            };
            let points = cluster::run(&ctx, &params).await?;
            say(&cluster::summary(&points));
            for p in &points {
                p.save(&cli.out)?;
            }
        }
        Cmd::Storm {
            targets,
            subscribers,
            topics,
            rate,
            missed,
            deadline,
            backlog,
        } => {
            let params = storm::StormParams {
                subscribers,
                topics: topics.max(1),
                rate,
                missed,
                deadline: Duration::from_secs_f64(deadline),
                backlog,
            };
            for kind in parse_targets(&targets)? {
                match storm::storm(&ctx, kind, &params).await {
                    Ok(p) => {
                        say(&storm::summary(&p));
                        save(&p)?;
                    }
                    Err(e) => say(&format!("storm {}: FAILED: {e:#}", kind.name())),
                }
            }
        }
        Cmd::Connect {
            targets,
            subscribers,
            in_flight,
        } => {
            for &c in &in_flight {
                for kind in parse_targets(&targets)? {
                    match connect::connect(&ctx, kind, subscribers, c).await {
                        Ok(p) => save(&p)?,
                        Err(e) => say(&format!(
                            "connect {} in-flight={c}: FAILED: {e:#}",
                            kind.name()
                        )),
                    }
                }
            }
        }
        Cmd::Threads {
            subscribers,
            rate,
            duration,
            worker_threads,
        } => {
            for &n in &subscribers {
                let params = FanoutParams {
                    subscribers: n,
                    topics: 1,
                    rate,
                    duration: Duration::from_secs_f64(duration),
                    transport: Transport::Sse,
                    publishers: 4,
                    payload_bytes: 64,
                    sessions: false,
                    everything: false,
                };
                match threads::threads(&ctx, &params, &worker_threads).await {
                    Ok(points) => {
                        for p in &points {
                            save(p)?;
                        }
                    }
                    Err(e) => say(&format!("threads subs={n}: FAILED: {e:#}")),
                }
            }
        }
        Cmd::Smoke {
            subscribers,
            duration,
        } => smoke(&ctx, subscribers, duration).await?,
        Cmd::Report { .. } | Cmd::FloorServer { .. } | Cmd::ClientParse { .. } => {
            unreachable!("handled before the runtime")
        }
    }
    Ok(())
}

fn parse_targets(names: &[String]) -> anyhow::Result<Vec<Kind>> {
    names.iter().map(|n| Kind::parse(n.trim())).collect()
}

async fn smoke(ctx: &Ctx, subscribers: u64, duration: f64) -> anyhow::Result<()> {
    let mut ctx = ctx.clone();
    ctx.warmup = Duration::from_millis(500);
    let params = FanoutParams {
        subscribers,
        topics: 1,
        rate: 20.0,
        duration: Duration::from_secs_f64(duration),
        transport: Transport::Sse,
        publishers: 1,
        payload_bytes: 16,
        sessions: false,
        everything: false,
    };
    let p = scenario::fanout(&ctx, Kind::Tidings, &params).await?;
    say(&summary(&p));
    anyhow::ensure!(
        p.connected == subscribers,
        "only {} of {subscribers} subscribers connected",
        p.connected
    );
    anyhow::ensure!(p.published > 0, "nothing was published");
    anyhow::ensure!(p.delivered > 0, "nothing was delivered");
    anyhow::ensure!(p.malformed == 0, "{} malformed frames", p.malformed);
    anyhow::ensure!(
        p.delivered * 10 >= p.expected_deliveries * 9,
        "delivered {} of about {} expected",
        p.delivered,
        p.expected_deliveries
    );
    say("smoke: ok");
    Ok(())
}
