//! Test fixtures (feature `testing`): real `nats-server -js` processes on free loopback ports,
//! alone (`NatsServer`), in operator mode (`NatsServer::start_operator`, trusting the JWTs an
//! `Operator` mints, as `nsc` would), or as a NATS cluster of servers joined by routes
//! (`NatsServers`), each with a store directory of its own, killed on drop. This crate's tests
//! and the end-to-end tests of `tidings` share them.

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
        server.first_start();
        server
    }

    /// A single server in operator mode: it trusts `operator`'s JWTs (from its own
    /// configuration file, with a memory resolver preloaded with the accounts), so only a
    /// client with the credentials of a user of `operator`'s account gets in. JetStream is on
    /// for that account.
    pub fn start_operator(operator: &Operator) -> NatsServer {
        let mut server = NatsServer::new(Vec::new());
        let conf = server.dir.path().join("operator.conf");
        let jwt = server.dir.path().join("operator.jwt");
        std::fs::write(&jwt, &operator.jwt).expect("write the operator's JWT");
        std::fs::write(&conf, operator.server_config(&jwt)).expect("write the configuration");
        server.extra = vec!["-c".into(), conf.display().to_string()];
        server.first_start();
        server
    }

    /// Starts a new server. A port `free_port` released can be taken before the server binds
    /// it (by any process's outgoing connection, on a busy machine); then it tries others.
    fn first_start(&mut self) {
        for _ in 0..4 {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(log) if log.contains("address already in use") => {
                    self.port = free_port();
                    self.monitor = free_port();
                }
                Err(log) => panic!("{log}"),
            }
        }
        if let Err(log) = self.spawn_and_wait() {
            panic!("{log}");
        }
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
        if let Err(log) = self.spawn_and_wait() {
            panic!("{log}");
        }
    }

    /// Runs the server; once it listens `Ok`, else why not (with its log).
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        // Its log (appended across restarts) says why when it does not come up.
        let log_path = self.dir.path().join("nats-server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("the server's log file");
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-sd"])
            .arg(self.dir.path().join("js"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "nats-server exited ({status}) before listening:\n{}",
                    log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("nats-server did not listen:\n{}", log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
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

/// The trust chain of NATS's decentralized authorization, minted as `nsc` would (which is not
/// packaged): an operator, its system account and one account with JetStream, each a key
/// pair and a JWT signed by its issuer, so a test can hand out users' credentials files.
pub struct Operator {
    jwt: String,
    system: (nkeys::KeyPair, String),
    account: (nkeys::KeyPair, String),
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("account", &self.account.0.public_key())
            .finish_non_exhaustive()
    }
}

/// Limits with no bound (`-1`), for an account or a user.
const UNLIMITED: [&str; 3] = ["subs", "data", "payload"];

impl Operator {
    /// A new operator with a system account and one account with JetStream.
    pub fn new() -> Operator {
        let operator = nkeys::KeyPair::new_operator();
        let system = nkeys::KeyPair::new_account();
        let account = nkeys::KeyPair::new_account();
        let jwt = sign(
            &operator,
            &operator.public_key(),
            "tidings-test",
            serde_json::json!({
                "type": "operator",
                "version": 2,
                "system_account": system.public_key(),
            }),
        );
        let system_jwt = account_jwt(&operator, &system, "SYS", false);
        let account_jwt = account_jwt(&operator, &account, "TIDINGS", true);
        Operator {
            jwt,
            system: (system, system_jwt),
            account: (account, account_jwt),
        }
    }

    /// A credentials file (`.creds`, the format `nsc generate creds` writes) of a new user
    /// of the account, and the user's seed (to check that it is never printed).
    pub fn user_creds(&self, name: &str) -> (String, String) {
        creds(&self.account.0, name)
    }

    /// A credentials file of a user whose account no operator the server trusts signed
    /// (another account key), and its seed.
    pub fn stranger_creds(name: &str) -> (String, String) {
        creds(&nkeys::KeyPair::new_account(), name)
    }

    /// The server's configuration: the operator (its JWT in the file `operator_jwt`), the
    /// system account, and both accounts' JWTs in a memory resolver.
    fn server_config(&self, operator_jwt: &Path) -> String {
        let system = self.system.0.public_key();
        let account = self.account.0.public_key();
        format!(
            "operator: \"{}\"\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: \"{}\"\n  {account}: \"{}\"\n}}\n",
            operator_jwt.display(),
            self.system.1,
            self.account.1,
        )
    }
}

impl Default for Operator {
    fn default() -> Operator {
        Operator::new()
    }
}

/// An account's JWT, signed by `operator`; with JetStream (no storage bound) or without.
fn account_jwt(
    operator: &nkeys::KeyPair,
    account: &nkeys::KeyPair,
    name: &str,
    jetstream: bool,
) -> String {
    let mut limits = serde_json::json!({
        "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
    });
    for key in UNLIMITED {
        limits[key] = (-1).into();
    }
    if jetstream {
        for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[key] = (-1).into();
        }
    }
    sign(
        operator,
        &account.public_key(),
        name,
        serde_json::json!({
            "type": "account",
            "version": 2,
            "limits": limits,
            "default_permissions": { "pub": {}, "sub": {} },
        }),
    )
}

/// A new user of `account`: its credentials file and its seed.
fn creds(account: &nkeys::KeyPair, name: &str) -> (String, String) {
    let user = nkeys::KeyPair::new_user();
    let mut nats = serde_json::json!({ "type": "user", "version": 2, "pub": {}, "sub": {} });
    for key in UNLIMITED {
        nats[key] = (-1).into();
    }
    let jwt = sign(account, &user.public_key(), name, nats);
    let seed = user.seed().expect("a new key pair has its seed");
    let file = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    (file, seed)
}

/// A NATS JWT: the header `{"typ":"JWT","alg":"ed25519-nkey"}` and the claims (`jti`, `iat`,
/// `iss`, `sub`, `name`, `nats`) in base64url without padding, signed by `issuer`'s key.
fn sign(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    // The JWT's id: nsc takes a digest of the claims too (base32); the server only reads it.
    let digest = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>()
        .into();
    let head = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64.encode(claims.to_string());
    let signed = format!("{head}.{body}");
    let signature = issuer.sign(signed.as_bytes()).expect("a seed signs");
    format!("{signed}.{}", b64.encode(signature))
}
