//! Test fixtures (feature `testing`): real `nats-server -js` processes on free loopback ports,
//! alone (`NatsServer`) or as a NATS cluster of servers joined by routes (`NatsServers`), each
//! with a store directory of its own, killed on drop. This crate's tests and the end-to-end
//! tests of `tidings` share them.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server has to listen and, in a cluster, JetStream to elect its meta leader.
const READY: Duration = Duration::from_secs(30);

/// A free loopback port (bound and released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One `nats-server` with JetStream on fixed ports and a store directory of its own, so it
/// can be killed and started again with its streams; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    /// Arguments after the common ones (cluster, configuration file).
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl NatsServer {
    /// A single server, listening once this returns.
    pub fn start() -> NatsServer {
        NatsServer::start_with(&[])
    }

    /// A single server with more arguments (e.g. `-c <file>` for its authorization).
    pub fn start_with(extra: &[&str]) -> NatsServer {
        let mut server = NatsServer::new(extra.iter().map(|s| (*s).to_owned()).collect());
        server.restart();
        server
    }

    fn new(extra: Vec<String>) -> NatsServer {
        NatsServer {
            child: None,
            port: free_port(),
            monitor: free_port(),
            extra,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's own directory (its JetStream store is under it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server again (after `kill`) on the same ports and store; returns once it
    /// listens.
    pub fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-sd"])
            .arg(self.dir.path().join("js"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (kill -9) and reap; a no-op when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.kill());
            drop(child.wait());
        }
    }

    /// `GET path` on the monitoring port: the status and the body, `None` if it does not
    /// answer.
    pub fn monitor(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Some((status, body.to_owned()))
    }

    /// Whether `/healthz` says JetStream is ready (in a cluster: it knows its meta leader).
    pub fn healthy(&self) -> bool {
        self.child.is_some() && matches!(self.monitor("/healthz"), Some((200, _)))
    }

    /// The name of the server that leads `stream`'s replicas, as this server knows it.
    pub fn stream_leader(&self, stream: &str) -> Option<String> {
        let (_, body) = self.monitor("/jsz?streams=true")?;
        let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .filter_map(|a| a["stream_detail"].as_array())
            .flatten()
            .find(|s| s["name"] == stream)?["cluster"]["leader"]
            .as_str()
            .map(str::to_owned)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS cluster: `n` servers named `n0`, `n1`.., each with JetStream and its own store,
/// joined by routes on free loopback ports; killed on drop.
#[derive(Debug)]
pub struct NatsServers {
    /// The servers, in name order.
    pub servers: Vec<NatsServer>,
}

impl NatsServers {
    /// Starts `n` servers and waits until each reports JetStream healthy (a meta leader
    /// elected), so a stream with `n` replicas can be created.
    pub fn start(n: usize) -> NatsServers {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let all: Vec<String> = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        let servers = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let mut server = NatsServer::new(vec![
                    "--server_name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "tidings-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    all.join(","),
                ]);
                server.restart();
                server
            })
            .collect();
        let cluster = NatsServers { servers };
        cluster.wait_healthy();
        cluster
    }

    /// Every server's URL (a client given all of them reconnects to any that lives).
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// Waits until every running server reports JetStream healthy.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + READY;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            while !server.healthy() {
                assert!(
                    Instant::now() < deadline,
                    "nats-server on {} never reported JetStream healthy: {:?}",
                    server.port,
                    server.monitor("/healthz")
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The index of the server leading `stream`, once a running server names one.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.servers
            .iter()
            .filter(|s| s.child.is_some())
            .find_map(|s| s.stream_leader(stream))
            .and_then(|name| name.strip_prefix('n')?.parse().ok())
    }
}
