//! Servers under test: spawning Tidings and the floor program, finding the already-running
//! Nchan and Pushpin, and the request shapes (subscribe path, publish body) each one speaks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Tidings,
    /// Tidings with every subscriber sending a client id (each holds a session).
    #[serde(rename = "tidings-ids")]
    TidingsIds,
    Floor,
    Nchan,
    Pushpin,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "tidings" => Self::Tidings,
            "tidings-ids" => Self::TidingsIds,
            "floor" => Self::Floor,
            "nchan" => Self::Nchan,
            "pushpin" => Self::Pushpin,
            other => {
                bail!("unknown target `{other}` (tidings, tidings-ids, floor, nchan, pushpin)")
            }
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tidings => "tidings",
            Self::TidingsIds => "tidings-ids",
            Self::Floor => "floor",
            Self::Nchan => "nchan",
            Self::Pushpin => "pushpin",
        }
    }
}

/// Where the peers listen (see scripts/bench-peers).
pub(crate) const NCHAN_ADDR: &str = "127.0.0.1:18100";
pub(crate) const PUSHPIN_HTTP_ADDR: &str = "127.0.0.1:18200";
pub(crate) const PUSHPIN_PUBLISH_ADDR: &str = "127.0.0.1:5661";
pub(crate) const PEER_DIR: &str = "/tmp/peer";

/// Pushpin's handler log: it records `publish channel=C receivers=N` for every item published.
const PUSHPIN_HANDLER_LOG: &str = "/tmp/peer/pushpin/log/pushpin-handler.log";
/// How long to wait for the sessions of an earlier run to leave Pushpin's handler.
const PUSHPIN_DRAIN_MAX: Duration = Duration::from_secs(120);
/// The many-topic scenario's channels `bench-0`.. probed for leftover sessions, besides `bench`.
const PUSHPIN_PROBED_TOPICS: u32 = 100;

/// The bearer secret used when `--auth` is on.
pub(crate) const BENCH_TOKEN: &str = "tidings-bench-secret-0123456789";

/// How Tidings is started.
#[derive(Debug, Clone)]
pub(crate) struct TidingsOptions {
    pub(crate) bin: PathBuf,
    pub(crate) durability: String,
    pub(crate) subscriber_queue: usize,
    pub(crate) max_connections: usize,
    pub(crate) auth: bool,
    pub(crate) extra_args: Vec<String>,
    /// Environment variables for the server process (`--server-threads`).
    pub(crate) env: Vec<(String, String)>,
}

/// A subscribe request: where to connect and what to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
    /// Complete header lines (`Name: value\r\n`...).
    pub(crate) extra_headers: String,
    pub(crate) last_event_id_header: String,
    /// Send `X-Client-Id: bench-<subscriber index>`.
    pub(crate) client_ids: bool,
}

/// A running server under test.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    pub(crate) sub_addr: SocketAddr,
    pub(crate) pub_addr: SocketAddr,
    /// Roots of the process tree whose CPU and memory are measured.
    pub(crate) pids: Vec<u32>,
    /// How the server was started, for the report.
    pub(crate) command: String,
    pub(crate) auth: bool,
    client_ids: bool,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts (tidings, floor) or finds (nchan, pushpin) a server.
    pub(crate) async fn start(kind: Kind, tidings: &TidingsOptions) -> anyhow::Result<Self> {
        match kind {
            Kind::Tidings => start_tidings(tidings).await,
            Kind::TidingsIds => {
                let mut t = start_tidings(tidings).await?;
                t.kind = Kind::TidingsIds;
                t.client_ids = true;
                Ok(t)
            }
            Kind::Floor => start_floor().await,
            Kind::Nchan => {
                let pid = read_pid(&format!("{PEER_DIR}/nchan/nginx.pid"))?;
                let addr: SocketAddr = NCHAN_ADDR.parse()?;
                probe(addr, "nchan").await?;
                Ok(Self::peer(
                    kind,
                    addr,
                    addr,
                    vec![pid],
                    "nginx -c /tmp/peer/nchan/nchan.conf",
                ))
            }
            Kind::Pushpin => {
                let mut pids = Vec::new();
                for name in ["pushpin", "zurl", "origin"] {
                    pids.push(read_pid(&format!("{PEER_DIR}/pushpin/{name}.pid"))?);
                }
                let addr: SocketAddr = PUSHPIN_HTTP_ADDR.parse()?;
                let publish: SocketAddr = PUSHPIN_PUBLISH_ADDR.parse()?;
                // scripts/bench-peers restarts Pushpin when condure crashes at the end of a
                // point; give a restart in progress a few seconds.
                let mut tries = 0;
                loop {
                    let up = match probe(addr, "pushpin").await {
                        Ok(()) => probe(publish, "pushpin's publish API").await,
                        Err(e) => Err(e),
                    };
                    match up {
                        Ok(()) => break,
                        Err(e) if tries == 20 => return Err(e),
                        Err(_) => tries += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                wait_pushpin_sessions_gone(publish).await?;
                Ok(Self::peer(
                    kind,
                    addr,
                    publish,
                    pids,
                    "pushpin --config /tmp/peer/pushpin/pushpin.conf (+ zurl, origin.py)",
                ))
            }
        }
    }

    fn peer(kind: Kind, sub: SocketAddr, publ: SocketAddr, pids: Vec<u32>, cmd: &str) -> Self {
        Self {
            kind,
            sub_addr: sub,
            pub_addr: publ,
            pids,
            command: cmd.to_owned(),
            auth: false,
            client_ids: false,
            child: None,
            _dir: None,
        }
    }

    /// Header lines every request to this target carries.
    pub(crate) fn auth_headers(&self) -> String {
        if self.auth {
            format!("Authorization: Bearer {BENCH_TOKEN}\r\n")
        } else {
            String::new()
        }
    }

    /// The subscribe request for `topic`.
    pub(crate) fn subscribe(&self, topic: &str, from_earliest: bool) -> Request {
        let path = match self.kind {
            Kind::Tidings | Kind::TidingsIds if from_earliest => {
                format!("/events?topic={topic}&lastEventId=earliest")
            }
            Kind::Tidings | Kind::TidingsIds | Kind::Floor => format!("/events?topic={topic}"),
            Kind::Nchan => format!("/sub?topic={topic}"),
            Kind::Pushpin => format!("/stream?topic={topic}"),
        };
        Request {
            addr: self.sub_addr,
            path,
            extra_headers: self.auth_headers(),
            last_event_id_header: String::new(),
            client_ids: self.client_ids,
        }
    }

    /// Stops a server this process started.
    pub(crate) async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                // SIGTERM for a graceful exit, then SIGKILL if it lingers.
                std::process::Command::new("kill")
                    .arg(pid.to_string())
                    .status()
                    .ok();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await.ok();
            }
        }
    }
}

/// The publish request (path, content type, body) for one event sent at `t` (Unix nanos).
pub(crate) fn publish_for(
    kind: Kind,
    topic: &str,
    t: u64,
    pad: &str,
    out: &mut Vec<u8>,
) -> (String, &'static str) {
    out.clear();
    match kind {
        Kind::Tidings | Kind::TidingsIds => {
            out.extend_from_slice(
                format!(r#"{{"topic":"{topic}","type":"tick","data":{{"t":{t},"p":"{pad}"}}}}"#)
                    .as_bytes(),
            );
            ("/publish".to_owned(), "application/json")
        }
        Kind::Floor => {
            out.extend_from_slice(format!(r#"{{"t":{t},"p":"{pad}"}}"#).as_bytes());
            (format!("/publish?topic={topic}"), "application/json")
        }
        Kind::Nchan => {
            out.extend_from_slice(format!(r#"{{"t":{t},"p":"{pad}"}}"#).as_bytes());
            (format!("/pub?topic={topic}"), "application/json")
        }
        Kind::Pushpin => {
            out.extend_from_slice(
                format!(
                    r#"{{"items":[{{"channel":"{topic}","formats":{{"http-stream":{{"content":"event: tick\ndata: {{\"t\":{t},\"p\":\"{pad}\"}}\n\n"}}}}}}]}}"#
                )
                .as_bytes(),
            );
            ("/publish/".to_owned(), "application/json")
        }
    }
}

fn read_pid(path: &str) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("read {path} (start the peers with `scripts/bench-peers start`)")
    })?;
    text.trim()
        .parse()
        .with_context(|| format!("pid in {path}"))
}

/// Waits until Pushpin's handler holds no session on the bench's channels.
///
/// When a run ends, the bench drops thousands of subscriber connections at once, and condure
/// (Pushpin's connection manager) tells the handler about only some of them: after a 1k run
/// the handler still counted 486-869 of 1,000 receivers, and 4,978 of 5,000 after a 5k run,
/// for about 60 s, until those sessions' keep-alives expired. A point started in that window
/// fans every event out to the dead sessions too, and the handler's `receivers=` log
/// over-counts. So before each Pushpin point this publishes an SSE comment (ignored by SSE
/// clients) to `bench` and `bench-0`.., reads the receiver counts the handler logs for it, and
/// waits until they are all zero.
async fn wait_pushpin_sessions_gone(publish: SocketAddr) -> anyhow::Result<()> {
    let channels: Vec<String> = std::iter::once("bench".to_owned())
        .chain((0..PUSHPIN_PROBED_TOPICS).map(|k| format!("bench-{k}")))
        .collect();
    let items: Vec<String> = channels
        .iter()
        .map(|c| {
            format!(
                r#"{{"channel":"{c}","formats":{{"http-stream":{{"content":": tidings-bench idle check\n\n"}}}}}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    let deadline = tokio::time::Instant::now() + PUSHPIN_DRAIN_MAX;
    let mut poster =
        crate::http::Poster::connect(crate::http::source_addr(0), publish, String::new()).await?;
    let mut waited = false;
    loop {
        let Ok(before) = std::fs::metadata(PUSHPIN_HANDLER_LOG).map(|m| m.len()) else {
            // Not the set-up of scripts/bench-peers: nothing to read the counts from.
            return Ok(());
        };
        let (status, _) = poster
            .post("/publish/", "application/json", body.as_bytes())
            .await
            .context("publish a probe to pushpin")?;
        if !(200..300).contains(&status) {
            bail!("pushpin refused the probe publish: status {status}");
        }
        let mut left = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(n) = logged_receivers(before, &channels)? {
                left = Some(n);
                break;
            }
        }
        match left {
            Some(0) => {
                if waited {
                    eprintln!("tidings-bench: pushpin's leftover sessions are gone");
                }
                return Ok(());
            }
            Some(n) if tokio::time::Instant::now() < deadline => {
                if !waited {
                    eprintln!(
                        "tidings-bench: pushpin's handler still holds {n} sessions of an earlier run; waiting for them to expire"
                    );
                    waited = true;
                }
            }
            Some(n) => bail!(
                "pushpin's handler still holds {n} sessions after {} s",
                PUSHPIN_DRAIN_MAX.as_secs()
            ),
            None if tokio::time::Instant::now() < deadline => {}
            None => {
                bail!("pushpin's handler did not log the probe publish in {PUSHPIN_HANDLER_LOG}")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The receivers the handler logged, after byte `from` of its log, for the probe's `channels`;
/// `None` until every channel's line is there.
fn logged_receivers(from: u64, channels: &[String]) -> anyhow::Result<Option<u64>> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(PUSHPIN_HANDLER_LOG)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(sum_receivers(&String::from_utf8_lossy(&bytes), channels))
}

/// Sums the `publish channel=C receivers=N` lines of `log` over `channels`; `None` unless every
/// channel has one. Only complete lines count: the handler may be writing the last one.
fn sum_receivers(log: &str, channels: &[String]) -> Option<u64> {
    let mut seen = std::collections::HashMap::new();
    for line in log.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let Some((_, rest)) = line.split_once("publish channel=") else {
            continue;
        };
        let Some((channel, n)) = rest.split_once(" receivers=") else {
            continue;
        };
        if let Ok(n) = n.trim().parse::<u64>() {
            seen.insert(channel, n);
        }
    }
    channels.iter().map(|c| seen.get(c.as_str()).copied()).sum()
}

async fn probe(addr: SocketAddr, name: &str) -> anyhow::Result<()> {
    tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("{name} is not listening on {addr} (run `scripts/bench-peers start`)")
        })?;
    Ok(())
}

/// Waits for a line containing `marker` on `stderr`/`stdout`, returns the address it names,
/// and keeps draining the stream in the background.
pub(crate) async fn wait_for_addr<R>(
    reader: R,
    marker: &'static str,
    prefix: &'static str,
) -> anyhow::Result<SocketAddr>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let mut lines = BufReader::new(reader).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(marker)
                && let Some(at) = line.find(prefix)
            {
                let rest = &line[at + prefix.len()..];
                let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                return Ok(rest[..end].trim_matches('"').parse::<SocketAddr>()?);
            }
        }
        bail!("the server exited before it was listening")
    })
    .await
    .context("the server did not start listening within 30 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(addr)
}

async fn start_tidings(o: &TidingsOptions) -> anyhow::Result<Target> {
    if !o.bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p tidings`, or pass --tidings-bin",
            o.bin.display()
        );
    }
    let dir = tempfile::Builder::new().prefix("tidings-bench").tempdir()?;
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--durability".into(),
        o.durability.clone(),
        "--subscriber-queue".into(),
        o.subscriber_queue.to_string(),
        "--max-connections".into(),
        o.max_connections.to_string(),
        // Every subscriber presents the one bench token: the per-credential stream limit
        // (10,000 by default) would refuse the rest of a 19k point in-band.
        "--max-streams-per-credential".into(),
        "0".into(),
        "--sse-keepalive".into(),
        "30s".into(),
    ];
    if o.auth {
        args.push("--token".into());
        args.push(format!("{BENCH_TOKEN}:publish=*;subscribe=*"));
    }
    args.extend(o.extra_args.iter().cloned());
    let mut child = Command::new(&o.bin)
        .args(&args)
        .envs(o.env.iter().map(|(k, v)| (k, v)))
        .env("TIDINGS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", o.bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let addr = wait_for_addr(stderr, "Tidings is listening.", "addr=").await?;
    let pid = child.id().context("tidings exited")?;
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') || a.contains(';') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    Ok(Target {
        kind: Kind::Tidings,
        sub_addr: addr,
        pub_addr: addr,
        pids: vec![pid],
        command: format!(
            "tidings {}",
            shown
                .join(" ")
                .replace(&dir.path().display().to_string(), "$TMP")
        ),
        auth: o.auth,
        client_ids: false,
        child: Some(child),
        _dir: Some(dir),
    })
}

async fn start_floor() -> anyhow::Result<Target> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .args(["floor-server", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn the floor server")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let addr = wait_for_addr(stdout, "floor listening", "addr=").await?;
    let pid = child.id().context("floor exited")?;
    Ok(Target {
        kind: Kind::Floor,
        sub_addr: addr,
        pub_addr: addr,
        pids: vec![pid],
        command: "tidings-bench floor-server --listen 127.0.0.1:0".to_owned(),
        auth: false,
        client_ids: false,
        child: Some(child),
        _dir: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_probe_receivers_from_the_handler_log() {
        let channels = vec!["bench".to_owned(), "bench-0".to_owned()];
        let log = "[INFO] 2026-11-23 05:27:55.470 control: POST /publish/ code=200 10 items=2\n\
                   [INFO] 2026-11-23 05:27:55.471 publish channel=bench receivers=486\n\
                   [INFO] 2026-11-23 05:27:55.471 publish channel=bench-0 receivers=3\n";
        assert_eq!(sum_receivers(log, &channels), Some(489));
        // A channel's line still missing, or cut short while the handler writes it.
        let partial = "[INFO] 2026-11-23 05:27:55.471 publish channel=bench receivers=0\n\
                       [INFO] 2026-11-23 05:27:55.471 publish channel=bench-0 receivers=1";
        assert_eq!(sum_receivers(partial, &channels), None);
    }
}
