//! Test support: spawning the real `tidings` binary (`Server`), HTTP helpers, an SSE reader
//! with timeouts (`SseClient`) and raw-socket helpers.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};
use tidings_proto::sse::{Decoder, SseEvent, SseItem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const BIN: &str = env!("CARGO_BIN_EXE_tidings");
/// How long to wait for anything that should happen "now".
pub const WAIT: Duration = Duration::from_secs(10);

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// How to launch the binary.
#[derive(Debug, Clone)]
pub struct Launch {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Add `--listen 127.0.0.1:0`.
    pub auto_listen: bool,
    /// Add `--data-dir <tempdir>/data`.
    pub auto_data_dir: bool,
    /// Start under this file descriptor limit (soft and hard), via `sh -c 'ulimit -n'`.
    pub nofile: Option<u64>,
    /// Start inside this network namespace (`ip netns exec`, which execs: the pid is the
    /// server's).
    pub netns: Option<String>,
}

impl Launch {
    pub fn new(args: &[&str]) -> Launch {
        Launch {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            cwd: None,
            auto_listen: true,
            auto_data_dir: true,
            nofile: None,
            netns: None,
        }
    }

    /// Starts the server inside network namespace `ns`.
    pub fn netns(mut self, ns: &str) -> Launch {
        self.netns = Some(ns.to_owned());
        self
    }

    pub fn nofile(mut self, limit: u64) -> Launch {
        self.nofile = Some(limit);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Launch {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Launch {
        self.cwd = Some(dir.to_owned());
        self
    }

    pub fn bare(mut self) -> Launch {
        self.auto_listen = false;
        self.auto_data_dir = false;
        self
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut cmd = match (&self.netns, self.nofile) {
            (Some(ns), None) => {
                let mut ip = Command::new("ip");
                ip.args(["netns", "exec", ns.as_str(), BIN]);
                ip
            }
            (Some(_), Some(_)) => panic!("a launch in a netns takes no nofile limit"),
            (None, None) => Command::new(BIN),
            (None, Some(n)) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                sh
            }
        };
        cmd.arg("serve");
        if self.auto_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if self.auto_data_dir {
            cmd.arg("--data-dir").arg(data_dir);
        }
        cmd.args(&self.args);
        for (k, _) in std::env::vars() {
            if k.starts_with("TIDINGS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a launch that is expected to exit by itself (invalid configuration).
    pub fn run_to_exit(&self) -> (Option<i32>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = self
            .command(&dir.path().join("data"))
            .spawn()
            .expect("spawn tidings");
        let status = wait_exit(&mut child, WAIT);
        let Some(status) = status else {
            ignore(child.kill());
            ignore(child.wait());
            panic!(
                "tidings did not exit within {WAIT:?} for args {:?}",
                self.args
            );
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        (status.code(), strip_ansi(&err))
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `tidings serve`, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub launch: Launch,
    pub dir: Arc<tempfile::TempDir>,
    pub log: Arc<Mutex<String>>,
    pub http: reqwest::Client,
    /// Headers every request of `http` and every stream carries (`authorize`).
    pub headers: reqwest::header::HeaderMap,
}

impl Server {
    /// Starts a server on a free loopback port with a fresh data dir and `args`.
    pub fn start(args: &[&str]) -> Server {
        Server::launch(Launch::new(args))
    }

    pub fn launch(launch: Launch) -> Server {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Server::spawn(launch, dir)
    }

    fn spawn(launch: Launch, dir: Arc<tempfile::TempDir>) -> Server {
        let mut child = launch
            .command(&dir.path().join("data"))
            .spawn()
            .expect("spawn tidings");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(&line);
                    if line.contains("Tidings is listening.")
                        && let Some(addr) = parse_addr(&line)
                        && let Some(tx) = tx.take()
                    {
                        ignore(tx.send(addr));
                    }
                    let mut log = log.lock().expect("log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                ignore(child.kill());
                ignore(child.wait());
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "tidings did not report listening; args {:?}; stderr:\n{}",
                    launch.args,
                    log.lock().expect("log lock")
                );
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Server {
            child: Some(child),
            addr,
            launch,
            dir,
            log,
            http,
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    /// Every later request to this server, streams included, carries `Bearer <token>`.
    pub fn authorize(&mut self, token: &str) {
        let value = format!("Bearer {token}");
        self.headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&value).expect("a token is a header value"),
        );
        self.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .default_headers(self.headers.clone())
            .build()
            .expect("client");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stderr(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            ignore(child.kill());
            ignore(child.wait());
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM failed");
    }

    /// Waits (up to 15 s) for the process to exit after a signal.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        match wait_exit(&mut child, Duration::from_secs(15)) {
            Some(status) => status,
            None => {
                ignore(child.kill());
                ignore(child.wait());
                panic!(
                    "tidings did not exit after SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Stops (SIGKILL if still running) and starts again with the same args and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        let next = Server::spawn(self.launch.clone(), self.dir.clone());
        let old = std::mem::replace(self, next);
        drop(old);
    }

    // ----- HTTP helpers -----

    pub async fn publish_raw(&self, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.http.post(self.url("/publish")).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("publish request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("publish body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("publish answer is not JSON ({e}): {text:?}"));
        (status, value)
    }

    /// Publishes `body` (one event or a batch); asserts 200; returns the ids.
    pub async fn publish(&self, body: &Value) -> Vec<String> {
        let (status, v) = self.publish_raw(body, &[]).await;
        assert_eq!(status, 200, "publish failed: {v}");
        ids_of(&v)
    }

    /// Publishes one event; returns its id.
    pub async fn publish_one(&self, topic: &str, ty: &str, data: Value) -> String {
        let ids = self
            .publish(&json!({"topic": topic, "type": ty, "data": data}))
            .await;
        assert_eq!(ids.len(), 1);
        ids.into_iter().next().expect("one id")
    }

    pub async fn readyz(&self) -> Value {
        let resp = self
            .http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.expect("readyz json")
    }

    /// Waits until the hub counts exactly `n` subscriptions (as `/readyz` reports them), so a
    /// test publishes only once its subscriber is registered; panics after `WAIT`.
    pub async fn wait_subscribers(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let now = self.readyz().await["subscribers"].as_u64();
            if now == Some(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub never counted {n} subscribers (last: {now:?})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Opens `GET /events?<query>`; asserts 200.
    pub async fn subscribe(&self, query: &str) -> SseClient {
        self.subscribe_with(query, &[]).await
    }

    pub async fn subscribe_with(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let resp = self.get_events(query, headers).await;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.text().await.unwrap_or_default();
            panic!("subscribe {query:?} answered {status}: {body}");
        }
        SseClient::new(resp)
    }

    pub async fn get_events(&self, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let url = if query.is_empty() {
            self.url("/events")
        } else {
            self.url(&format!("/events?{query}"))
        };
        // No overall timeout on streams: the SseClient bounds every read.
        let client = reqwest::Client::builder()
            .default_headers(self.headers.clone())
            .build()
            .expect("client");
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        tokio::time::timeout(WAIT, req.send())
            .await
            .expect("subscribe timed out")
            .expect("subscribe request")
    }

    /// `/healthz` answers 200, and a fresh publish reaches a fresh subscriber.
    pub async fn assert_works(&self) {
        let resp = self
            .http
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(resp.status().as_u16(), 200, "healthz");
        let topic = format!("check/{}", unique());
        let mut sub = self.subscribe(&format!("topic={topic}")).await;
        sub.expect_retry().await;
        let id = self.publish_one(&topic, "ping", json!({"ok": true})).await;
        let ev = sub.next_event().await;
        assert_eq!(ev.last_event_id, id);
        assert_eq!(ev.event, "ping");
        assert_eq!(ev.data, r#"{"ok":true}"#);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The `addr` field of a log line, in the pretty (`addr=…`) or the JSON (`"addr":"…"`) format.
pub fn parse_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) {
        return fields.get("addr")?.as_str()?.parse().ok();
    }
    let at = line.find("addr=")?;
    let rest = &line[at + 5..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

pub fn ids_of(v: &Value) -> Vec<String> {
    v["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids in {v}"))
        .iter()
        .map(|i| i.as_str().expect("id string").to_owned())
        .collect()
}

/// Splits `<8hex>-<seq>`.
pub fn parse_id(id: &str) -> (String, u64) {
    let (epoch, seq) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("bad id {id:?}"));
    assert_eq!(epoch.len(), 8, "epoch of {id:?}");
    assert!(
        epoch.bytes().all(|b| b.is_ascii_hexdigit()),
        "epoch of {id:?}"
    );
    (
        epoch.to_owned(),
        seq.parse().unwrap_or_else(|_| panic!("seq of {id:?}")),
    )
}

/// A process-unique number for topic names.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A tiny xorshift PRNG (seed printed by callers, so failures can be replayed).
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn from_time() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An SSE response being read, every read bounded by a timeout.
pub struct SseClient {
    pub headers: reqwest::header::HeaderMap,
    stream: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    decoder: Decoder,
    pending: std::collections::VecDeque<SseItem>,
    pub raw: Vec<u8>,
    pub keep_raw: bool,
    ended: bool,
}

impl std::fmt::Debug for SseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseClient").finish_non_exhaustive()
    }
}

impl SseClient {
    pub fn new(resp: reqwest::Response) -> SseClient {
        SseClient {
            headers: resp.headers().clone(),
            stream: resp.bytes_stream().boxed(),
            decoder: Decoder::new(1 << 20),
            pending: Default::default(),
            raw: Vec::new(),
            keep_raw: false,
            ended: false,
        }
    }

    /// The next item, `None` at the end of the stream; panics after `timeout`.
    pub async fn next_item_within(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no SSE item within {timeout:?}"));
            match chunk {
                None | Some(Err(_)) => self.ended = true,
                Some(Ok(bytes)) => {
                    if self.keep_raw {
                        self.raw.extend_from_slice(&bytes);
                    }
                    let mut out = Vec::new();
                    self.decoder
                        .feed(&bytes, &mut out)
                        .expect("SSE line too long");
                    self.pending.extend(out);
                }
            }
        }
    }

    pub async fn next_item(&mut self) -> Option<SseItem> {
        self.next_item_within(WAIT).await
    }

    /// The first item must be `retry`; returns its value.
    pub async fn expect_retry(&mut self) -> u64 {
        match self.next_item().await {
            Some(SseItem::Retry(ms)) => ms,
            other => panic!("expected retry first, got {other:?}"),
        }
    }

    /// The next event (comments and retry hints skipped); panics at the end or on timeout.
    pub async fn next_event(&mut self) -> SseEvent {
        self.next_event_within(WAIT).await
    }

    pub async fn next_event_within(&mut self, timeout: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item_within(left).await {
                Some(SseItem::Event(e)) => return e,
                Some(_) => {}
                None => panic!("stream ended while an event was expected"),
            }
        }
    }

    /// The ids of the next `n` events.
    pub async fn ids(&mut self, n: usize) -> Vec<String> {
        self.events(n)
            .await
            .into_iter()
            .map(|e| e.last_event_id)
            .collect()
    }

    /// `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next_event().await);
        }
        v
    }

    /// Asserts that no event arrives within `quiet` (used only to check absence).
    pub async fn expect_no_event(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            if let Some(item) = self.pending.pop_front() {
                if let SseItem::Event(e) = item {
                    panic!("unexpected event {e:?}");
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return,
                Ok(None | Some(Err(_))) => {
                    self.ended = true;
                    return;
                }
                Ok(Some(Ok(bytes))) => {
                    let mut out = Vec::new();
                    self.decoder
                        .feed(&bytes, &mut out)
                        .expect("SSE line too long");
                    self.pending.extend(out);
                }
            }
        }
    }

    /// Reads to the end of the stream, returning the events on the way.
    pub async fn read_to_end(&mut self) -> Vec<SseEvent> {
        let mut v = Vec::new();
        while let Some(item) = self.next_item().await {
            if let SseItem::Event(e) = item {
                v.push(e);
            }
        }
        v
    }
}

/// Writes `request` to a fresh connection and reads until EOF (or `timeout`, then returns
/// what arrived). Returns the raw bytes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    ignore(s.write_all(request).await);
    let mut buf = Vec::new();
    ignore(tokio::time::timeout(timeout, read_all(&mut s, &mut buf)).await);
    buf
}

async fn read_all(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads from `s` until `pred(bytes)` holds; panics after `timeout` or at EOF.
pub async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
    pred: impl Fn(&[u8]) -> bool,
) {
    let fut = async {
        let mut chunk = [0u8; 8192];
        while !pred(buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(true) => {}
        Ok(false) => panic!(
            "EOF before the expected bytes; got {:?}",
            String::from_utf8_lossy(buf)
        ),
        Err(_) => panic!("timed out; got {:?}", String::from_utf8_lossy(buf)),
    }
}

/// The status code of a raw HTTP response, if it has one.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Splits a raw HTTP/1.1 response into head and de-chunked body. `complete` says whether the
/// terminating zero-length chunk was seen.
pub fn dechunk(raw: &[u8]) -> (String, Vec<u8>, bool) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split + 4..];
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (head, body, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).expect("chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            return (head, body, true);
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (head, body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Discards a result on purpose (cleanup and deliberately hostile writes may fail).
pub fn ignore<T>(_value: T) {}

/// A Node script driving Debian's Chromium through playwright-core (`tests/browser/*.cjs`):
/// it reports one JSON object per line on stdout, and reads cues (one per line) on stdin.
/// Killed when dropped.
pub struct BrowserScript {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl BrowserScript {
    /// Runs `node tests/browser/SCRIPT ARGS…` with `PLAYWRIGHT_CORE` (from
    /// `TIDINGS_TEST_PLAYWRIGHT`) and `CHROMIUM` (`TIDINGS_TEST_CHROMIUM`, else
    /// `/usr/bin/chromium`); fails, never skips, when either is missing.
    pub fn start(script: &str, args: &[&str]) -> BrowserScript {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/browser")
            .join(script);
        BrowserScript::run(&script, args)
    }

    /// Runs `node SCRIPT ARGS…` (any script path), as `start` does.
    pub fn run(script: &Path, args: &[&str]) -> BrowserScript {
        use tokio::io::AsyncBufReadExt as _;
        let playwright = std::env::var("TIDINGS_TEST_PLAYWRIGHT").unwrap_or_else(|_| {
            panic!(
                "TIDINGS_TEST_PLAYWRIGHT is not set: run ./scripts/test, which installs \
                 playwright-core into target/test-deps/node"
            )
        });
        let chromium =
            std::env::var("TIDINGS_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: scripts/test installs Debian's chromium with apt-get"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .args(args)
            .env("PLAYWRIGHT_CORE", &playwright)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().expect("stdin");
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        BrowserScript {
            child,
            stdin,
            lines,
        }
    }

    /// The script's next report, within 60 s (a browser starting on a loaded machine); a
    /// report with `failed` in it fails the test.
    pub async fn next(&mut self) -> Value {
        self.next_for("its next report").await
    }

    /// `next`, naming what the test waits for when the report does not come.
    pub async fn next_for(&mut self, what: &str) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser reports within 60 s ({what})"))
            .expect("read the browser's report")
            .unwrap_or_else(|| panic!("the browser script ended before {what}"));
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        assert!(v.get("failed").is_none(), "the browser script failed: {v}");
        v
    }

    /// Sends the script a cue (a line).
    pub async fn say(&mut self, cue: &str) {
        self.stdin
            .write_all(format!("{cue}\n").as_bytes())
            .await
            .expect("tell the browser");
    }

    /// Waits up to 30 s for the script to close the browser and exit 0.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the browser closes")
            .expect("node exit");
        assert!(status.success(), "node exited with {status}");
    }
}
