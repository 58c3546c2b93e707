//! A small download manager that embeds Tidings: its own axum routes (`GET /downloads`,
//! `POST /downloads`) beside the hub's under `/tidings`, and a simulated download queue that
//! publishes the downloads API's events in-process (`request`, `queued`, `started`,
//! `progress`, `paused`, `resumed`, `complete`, `error`, `removed`, `system`).
//!
//! ```text
//! cargo run -p tidings-server --example embedded -- --listen 127.0.0.1:1700
//! curl -N http://127.0.0.1:1700/tidings/events?topic=downloads/*
//! curl -X POST http://127.0.0.1:1700/downloads -H 'content-type: application/json' \
//!      -d '{"url": "https://example.com/file.zip"}'
//! ```
//!
//! Flags: `--listen ADDR` [127.0.0.1:1700], `--tick-ms N` (pause between two events of a
//! download) [250], `--demo N` (downloads started on their own at start-up) [2]. Stops on
//! Ctrl-C or SIGTERM: streams are told `reconnect-required`, then the process exits.

#![allow(
    clippy::print_stdout,
    reason = "an example application: its stdout is how a person (and the test) finds it"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tidings_server::{Embedded, Outgoing, RawConfig};

/// The application's own state: the hub handle and its view of the downloads.
#[derive(Clone)]
struct Manager {
    tidings: Embedded,
    downloads: Arc<Mutex<BTreeMap<String, Value>>>,
    next: Arc<Mutex<u64>>,
    tick: Duration,
}

struct Args {
    listen: SocketAddr,
    tick: Duration,
    demo: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        listen: "127.0.0.1:1700".parse()?,
        tick: Duration::from_millis(250),
        demo: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag}: needs a value"))?;
        match flag.as_str() {
            "--listen" => out.listen = value.parse()?,
            "--tick-ms" => out.tick = Duration::from_millis(value.parse()?),
            "--demo" => out.demo = value.parse()?,
            _ => anyhow::bail!("unknown flag {flag}; use --listen, --tick-ms, --demo"),
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    // The hub's settings as a struct: history in memory, everything else at its default.
    let mut raw = RawConfig::default();
    raw.store.durability = Some("memory".to_owned());
    // A download manager publishes `resumed` itself (a paused download goes on), and the hub's
    // own event for a resumed client-id session has that name by default: rename the hub's.
    raw.session_resumed_event = Some("session-resumed".to_owned());
    let tidings = Embedded::build(raw.validate()?)?;

    let manager = Manager {
        tidings: tidings.clone(),
        downloads: Arc::default(),
        next: Arc::new(Mutex::new(1)),
        tick: args.tick,
    };
    let app = axum::Router::new()
        .route("/downloads", get(list).post(add))
        .merge(tidings.router("/tidings"))
        .with_state(manager.clone());

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tidings
        .publish(
            "system",
            "system",
            &json!({"Message": format!("Server started on port {}", addr.port())}),
        )
        .await?;
    // The test (and a person) read this line to find the port.
    println!("embedded: listening on http://{addr}");

    for n in 0..args.demo {
        let url = format!("https://example.com/demo-{n}.zip");
        let m = manager.clone();
        let (id, filename) = m.enqueue(&url);
        tokio::spawn(async move { m.simulate(id, filename, url).await });
    }

    let signal = tidings.shutdown_on(stop_signal());
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    tidings.close().await?;
    println!("embedded: stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("embedded: cannot listen for SIGTERM ({e}); Ctrl-C only");
            tokio::signal::ctrl_c().await.ok();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `GET /downloads`: the manager's current view, built from what it published.
async fn list(State(m): State<Manager>) -> Json<Value> {
    let downloads = m.downloads.lock().expect("downloads lock");
    Json(json!({ "downloads": downloads.values().cloned().collect::<Vec<_>>() }))
}

/// `POST /downloads` `{"url": "…"}`: queues a download and answers its id.
async fn add(
    State(m): State<Manager>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let Some(url) = body.get("url").and_then(Value::as_str).map(str::to_owned) else {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "url: is required".to_owned(),
        ));
    };
    let (id, filename) = m.enqueue(&url);
    let answer = json!({"DownloadID": id});
    tokio::spawn(async move { m.simulate(id, filename, url).await });
    Ok(Json(answer))
}

impl Manager {
    fn enqueue(&self, url: &str) -> (String, String) {
        let n = {
            let mut next = self.next.lock().expect("counter lock");
            let n = *next;
            *next += 1;
            n
        };
        let id = format!("dl-{n}");
        let filename = url.rsplit('/').next().unwrap_or("download").to_owned();
        (id, filename)
    }

    /// Publishes `data` as `event_type` on `downloads/<id>`, keyed by the id, and records
    /// the status. A refusal is the hub shutting down: the simulation stops.
    async fn emit(&self, id: &str, event_type: &str, data: Value) -> bool {
        let event = Outgoing::new(format!("downloads/{id}"), event_type, data).key(id);
        match self.tidings.publish_batch(&[event], None).await {
            Ok(_) => {
                let mut downloads = self.downloads.lock().expect("downloads lock");
                let entry = downloads
                    .entry(id.to_owned())
                    .or_insert_with(|| json!({"DownloadID": id}));
                entry["status"] = json!(event_type);
                true
            }
            Err(e) => {
                eprintln!("embedded: {id} stops: {e}");
                false
            }
        }
    }

    /// One download's life, as the downloads API reports it. Every third one fails and is
    /// removed; the others pause once, resume and complete.
    async fn simulate(self, id: String, filename: String, url: String) {
        let n: u64 = id.trim_start_matches("dl-").parse().unwrap_or(0);
        let total: u64 = 104_857_600;
        let dest = format!("/home/user/downloads/{filename}");
        let chunks = 8u64;
        let mut steps: Vec<(&str, Value)> = vec![
            (
                "request",
                json!({"ID": format!("req-{n}"), "URL": url, "Filename": filename, "Path": "/downloads", "Mirrors": [], "Headers": {}}),
            ),
            (
                "queued",
                json!({"DownloadID": id, "Filename": filename, "URL": url, "DestPath": dest}),
            ),
            (
                "started",
                json!({"DownloadID": id, "URL": url, "Filename": filename, "Total": total, "DestPath": dest}),
            ),
        ];
        let progress = |done: u64| {
            let downloaded = total * done / 4;
            let per_chunk = total / chunks;
            let chunk_progress: Vec<u64> = (0..chunks)
                .map(|c| downloaded.saturating_sub(c * per_chunk).min(per_chunk))
                .collect();
            json!({
                "DownloadID": id, "Downloaded": downloaded, "Total": total, "Speed": 10_485_760,
                "Elapsed": done * 2_500_000_000u64, "ActiveConnections": 8,
                "ChunkBitmap": chunk_progress.iter().map(|&p| u8::from(p == per_chunk)).collect::<Vec<_>>(),
                "BitmapWidth": chunks, "ActualChunkSize": per_chunk, "ChunkProgress": chunk_progress,
            })
        };
        steps.push(("progress", progress(1)));
        if n.is_multiple_of(3) {
            steps.push((
                "error",
                json!({"DownloadID": id, "Filename": filename, "Err": "connection timeout"}),
            ));
            steps.push(("removed", json!({"DownloadID": id, "Filename": filename})));
        } else {
            steps.push(("progress", progress(2)));
            steps.push((
                "paused",
                json!({"DownloadID": id, "Filename": filename, "Downloaded": total / 2}),
            ));
            steps.push(("resumed", json!({"DownloadID": id, "Filename": filename})));
            steps.push(("progress", progress(3)));
            steps.push(("progress", progress(4)));
            steps.push((
                "complete",
                json!({"DownloadID": id, "Filename": filename, "Elapsed": 10_000_000_000u64, "Total": total, "AvgSpeed": 10_485_760}),
            ));
        }
        for (event_type, data) in steps {
            tokio::time::sleep(self.tick).await;
            if !self.emit(&id, event_type, data).await {
                return;
            }
        }
    }
}
