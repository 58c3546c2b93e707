//! Tidings cluster mode on NATS JetStream: every node publishes into one stream, and the
//! stream's sequence is the one id space of every node (docs/scaling.md).
//!
//! `NatsCluster` is both halves a clustered hub needs (`tidings_core::Hub::clustered`):
//! - the `Bus`: a publish becomes one JetStream message per event, sent in the order the
//!   hub's lock let them out by one publisher task, with `Nats-Msg-Id` for a keyed batch;
//!   it resolves with the stream sequences JetStream acknowledged;
//! - the `EventStore` the hub replays from: `read_chunk` fetches from the stream through a
//!   short-lived pull consumer; the epoch derives from the stream's creation; retention is
//!   the stream's limits (`append` is never called on a clustered hub); its sessions live in
//!   a KV bucket (`sessions`), and a snapshot is the stream's last message per subject
//!   (`snapshot`: a keyed event's subject ends with a token of its key).
//!
//! `NatsCluster::start` runs the follower: an ordered consumer of the stream from the hub's
//! head, feeding `Hub::ingest`, recreated after the head when it fails, and a task that
//! refreshes the stream's counts.
//!
//! # Layout
//! - `subject`: the total, reversible mapping of a Tidings topic to a NATS subject.
//! - `envelope`: a message's body (type, key, origin, time, data) and its decoding.
//! - `sessions`: client-id sessions in the KV bucket `tidings-sessions-<stream>`.
//! - `snapshot`: the latest event per key under a selector, exact as of a stream sequence.
//! - `testing` (feature `testing`): real `nats-server` fixtures, one server (also in operator
//!   mode, with the JWTs it trusts) or a NATS cluster.

mod envelope;
mod sessions;
mod snapshot;
pub mod subject;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tidings_core::store::{BoxFuture, ReadLimit, SnapshotRead, SnapshotRules};
use tidings_core::{
    Bus, BusError, EventStore, Fingerprint, Hub, IdempotencyKey, KeyedBatch, Retention,
    SessionStore, SharedEvent, StoreError, StoreStats,
};
use tidings_proto::{Epoch, Selector};
use tokio::sync::{mpsc, oneshot};

/// JetStream's deduplication window for `Nats-Msg-Id`: a keyed retry within it, on any node,
/// gets the original ids.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Most events one `read_chunk` fetches (the subscription reads on until its handoff).
pub(crate) const FETCH_MAX: usize = 512;

/// Longest the follower waits for its consumer to be created before it tries again.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(2);

/// Batches waiting for the publisher task; past it a publish is refused (503).
const PUBLISH_QUEUE: usize = 4096;

/// How to reach NATS and which stream is the hub.
#[derive(Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`); any one of the cluster is enough.
    pub urls: Vec<String>,
    /// The JetStream stream: every node with the same NATS and stream is one hub.
    pub stream: String,
    /// Replicas of the stream (at most the NATS cluster's size).
    pub replicas: usize,
    /// A NATS token.
    pub token: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed), for a NATS server in
    /// operator mode; the client signs each connection's nonce with the seed, reconnections
    /// included.
    pub credentials: Option<PathBuf>,
    /// History bounds, mapped onto the stream's limits.
    pub retention: Retention,
    /// How long a detached client-id session is kept (the sessions bucket's `max_age`).
    pub session_ttl: Duration,
    /// What a snapshot keeps (`delete_types`, `max_keys`).
    pub snapshot: SnapshotRules,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("urls", &self.urls)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("credentials", &self.credentials)
            .field("retention", &self.retention)
            .field("session_ttl", &self.session_ttl)
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

/// Largest credentials file read (the ones `nsc generate creds` writes are under 2 KiB).
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// Reads the NATS credentials file at `path` (`.creds`: a user JWT and its nkey seed between
/// `-----BEGIN ...-----` lines, as `nsc generate creds` writes it) and checks that it holds
/// both and that the seed decodes. The reason it is refused never quotes the file: the seed
/// is a secret.
pub fn check_credentials_file(path: &Path) -> Result<(), String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CREDENTIALS_BYTES {
        return Err(format!(
            "larger than {MAX_CREDENTIALS_BYTES} bytes: not a NATS credentials file"
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| "not UTF-8: not a NATS credentials file".to_owned())?;
    match async_nats::ConnectOptions::new().credentials(&text) {
        Ok(_) => Ok(()),
        // async-nats's reasons, reworded so that none can carry a piece of the file. It takes
        // the first two blocks between `-----` lines, whatever their labels.
        Err(e) if e.to_string().contains("user JWT") => Err(
            "holds no block between `-----BEGIN ...-----` and `------END ...------` lines \
             (a credentials file has two: the user JWT, then its nkey seed)"
                .to_owned(),
        ),
        Err(e) if e.to_string().contains("cannot parse nkey") => Err(
            "holds one block between `-----BEGIN ...-----` and `------END ...------` lines \
             (a credentials file has two: the user JWT, then its nkey seed)"
                .to_owned(),
        ),
        Err(_) => Err("its second block is not a valid nkey seed".to_owned()),
    }
}

/// One node's handle on the cluster: the `Bus` and the `EventStore` of a clustered hub.
pub struct NatsCluster {
    client: async_nats::Client,
    stream: stream::Stream,
    prefix: String,
    epoch: Epoch,
    last_seq: AtomicU64,
    trimmed: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    publisher: mpsc::Sender<Outgoing>,
    /// Set when the follower met the stream recreated under it (another epoch).
    stale: AtomicBool,
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Notified when the connection to NATS is (re)established: the follower's consumer may
    /// have died with the old connection (or the server), so it is recreated after the head.
    reconnected: Arc<tokio::sync::Notify>,
    /// Client-id sessions, in the stream's KV bucket.
    sessions: Arc<sessions::KvSessions>,
    /// What a snapshot keeps.
    rules: SnapshotRules,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("prefix", &self.prefix)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// One batch on its way to JetStream.
struct Outgoing {
    messages: Vec<(String, bytes::Bytes)>,
    /// `Nats-Msg-Id` stem of a keyed batch (each event adds `:<index>`), and the batch's
    /// fingerprint, sent as `FINGERPRINT_HEADER` to tell a retry from a reused key.
    keyed: Option<(String, String)>,
    reply: oneshot::Sender<Result<Vec<u64>, BusError>>,
}

/// The header of a keyed event's message that carries its batch's fingerprint (hex).
const FINGERPRINT_HEADER: &str = "Tidings-Fingerprint";

pub(crate) fn io(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("NATS: {what}: {e}"))
}

/// A short-lived pull consumer for one read (a replay chunk, a snapshot): no acks, in memory,
/// and removed by JetStream 30 s after its last use if its reader could not delete it.
pub(crate) fn one_shot(
    filter_subject: String,
    deliver_policy: consumer::DeliverPolicy,
) -> consumer::pull::Config {
    consumer::pull::Config {
        filter_subject,
        deliver_policy,
        ack_policy: consumer::AckPolicy::None,
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        ..Default::default()
    }
}

impl NatsCluster {
    /// Connects to NATS, finds or creates the stream, and starts the publisher task. Call
    /// `start` with the hub built over it.
    pub async fn connect(config: &ClusterConfig) -> Result<Arc<NatsCluster>, StoreError> {
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let on_event = Arc::clone(&reconnected);
        let mut options = async_nats::ConnectOptions::new()
            .name("tidings")
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(move |event| {
                let on_event = Arc::clone(&on_event);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(message = "Connected to NATS.");
                            on_event.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(message = "Lost the connection to NATS; reconnecting.");
                        }
                        _ => {}
                    }
                }
            });
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        let mut connecting = "connect".to_owned();
        if let Some(path) = &config.credentials {
            // Read once: the user JWT and the seed stay in the client, which signs each
            // (re)connection's nonce with the seed.
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| io(&format!("read the credentials file {}", path.display()), e))?;
            connecting = format!("connect with the credentials file {}", path.display());
        }
        let client = options
            .connect(config.urls.clone())
            .await
            .map_err(|e| io(&connecting, e))?;
        let js = jetstream::new(client.clone());
        let prefix = format!("tidings.{}", config.stream);
        let r = &config.retention;
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: vec![subject::all(&prefix)],
            max_messages: r
                .max_events
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            max_bytes: r
                .max_bytes
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            max_age: r.max_age.unwrap_or(Duration::ZERO),
            num_replicas: config.replicas.max(1),
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(wanted)
            .await
            .map_err(|e| io("find or create the stream", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| io("read the stream", e))?
            .clone();
        let epoch = epoch_of(&config.stream, info.created.unix_timestamp_nanos());
        let sessions =
            sessions::KvSessions::open(&js, &config.stream, config.replicas, config.session_ttl)
                .await?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        tokio::spawn(publisher(js, stream.clone(), rx));
        let state = &info.state;
        let cluster = Arc::new(NatsCluster {
            client,
            stream,
            prefix,
            epoch,
            last_seq: AtomicU64::new(state.last_sequence),
            trimmed: AtomicU64::new(state.first_sequence.saturating_sub(1)),
            messages: AtomicU64::new(state.messages),
            bytes: AtomicU64::new(state.bytes),
            publisher: tx,
            stale: AtomicBool::new(false),
            follower: Mutex::new(None),
            reconnected,
            sessions,
            rules: config.snapshot.clone(),
        });
        tracing::info!(
            message = "Joined the cluster.",
            stream = %config.stream,
            epoch = %epoch,
            last_seq = state.last_sequence,
        );
        Ok(cluster)
    }

    /// Starts feeding `hub` from the stream (after its head) and refreshing the stream's
    /// counts; both end when the hub's last handle and this cluster are dropped, or on
    /// `stop`.
    pub fn start(self: &Arc<Self>, hub: Hub) {
        let me = Arc::clone(self);
        let task = tokio::spawn(async move { me.follow(hub).await });
        *self.follower.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops the follower.
    pub fn stop(&self) {
        if let Some(task) = self
            .follower
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }

    async fn follow(&self, hub: Hub) {
        let mut backoff = Duration::from_millis(100);
        let mut refresh = tokio::time::interval(Duration::from_secs(2));
        // After a pause (a stopped process) one tick, not a burst: the stall check below
        // compares two ticks a whole period apart.
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let start = hub.head() + 1;
            let config = consumer::pull::OrderedConfig {
                filter_subject: subject::all(&self.prefix),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            };
            // Bounded well below JetStream's request timeout: a request sent as the
            // connection dropped is not answered, and the retry after the reconnect is.
            let created =
                tokio::time::timeout(FOLLOW_TIMEOUT, self.stream.create_consumer(config)).await;
            let messages = match created {
                Ok(Ok(c)) => c.messages().await.map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            };
            match messages {
                Err(e) => {
                    tracing::warn!(message = "Could not follow the stream; retrying.", error = %e);
                }
                Ok(mut messages) => {
                    backoff = Duration::from_millis(100);
                    // The last stream sequence this consumer delivered, and its value at the
                    // previous refresh while the stream was ahead of it.
                    let mut followed = start - 1;
                    let mut stalled_at = None;
                    loop {
                        tokio::select! {
                            next = messages.next() => match next {
                                Some(Ok(msg)) => {
                                    let Ok(info) = msg.info() else { continue };
                                    let seq = info.stream_sequence;
                                    followed = followed.max(seq);
                                    self.last_seq.fetch_max(seq, Ordering::Relaxed);
                                    let Some(event) = envelope::decode(&self.prefix, self.epoch, seq, msg.subject.as_str(), &msg.payload) else {
                                        continue;
                                    };
                                    if let Err(e) = hub.ingest([event]) {
                                        tracing::error!(message = "The stream was recreated under this node; restart it to take the new epoch.", error = %e);
                                        self.stale.store(true, Ordering::Relaxed);
                                        return;
                                    }
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(message = "Following the stream failed; resuming after the head.", error = %e);
                                    break;
                                }
                                None => break,
                            },
                            _ = refresh.tick() => {
                                self.refresh().await;
                                // A consumer whose server died with it (the stream's leader
                                // in a NATS cluster) may go quiet without an error: the
                                // stream is ahead and nothing came for a whole refresh.
                                if self.last_seq.load(Ordering::Relaxed) <= followed {
                                    stalled_at = None;
                                } else if stalled_at == Some(followed) {
                                    tracing::warn!(message = "The stream's consumer stopped delivering; following again after the head.", head = hub.head(), stream_last = self.last_seq.load(Ordering::Relaxed));
                                    break;
                                } else {
                                    stalled_at = Some(followed);
                                }
                            }
                            () = self.reconnected.notified() => {
                                tracing::info!(message = "Following the stream again after the head.", head = hub.head());
                                break;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Reads the stream's counts (retention moves its front).
    async fn refresh(&self) {
        let mut stream = self.stream.clone();
        if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), stream.info()).await {
            if info.created.unix_timestamp_nanos() != 0
                && epoch_of(&info.config.name, info.created.unix_timestamp_nanos()) != self.epoch
            {
                self.stale.store(true, Ordering::Relaxed);
            }
            let s = &info.state;
            self.trimmed
                .fetch_max(s.first_sequence.saturating_sub(1), Ordering::Relaxed);
            self.last_seq.fetch_max(s.last_sequence, Ordering::Relaxed);
            self.messages.store(s.messages, Ordering::Relaxed);
            self.bytes.store(s.bytes, Ordering::Relaxed);
        }
    }

    fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }
}

/// The epoch of a stream: from its name and creation time, so every node computes the same
/// one and a recreated stream gets another.
fn epoch_of(name: &str, created_nanos: i128) -> Epoch {
    let digest = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(created_nanos.to_be_bytes())
        .finalize();
    Epoch(u32::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3],
    ]))
}

/// The `Nats-Msg-Id` stem of a keyed batch: a digest of the scope and the key (never the
/// key itself, which may be anything a client sent).
fn msg_id(key: &IdempotencyKey) -> String {
    let digest = Sha256::new()
        .chain_update(key.scope.0)
        .chain_update(key.key.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends batches to JetStream in arrival order, without waiting for one batch's
/// acknowledgements before sending the next. A keyed batch JetStream found a duplicate of is
/// checked against the original's fingerprint (`FINGERPRINT_HEADER`).
async fn publisher(
    js: jetstream::Context,
    stream: stream::Stream,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    while let Some(out) = rx.recv().await {
        let mut acks = Vec::with_capacity(out.messages.len());
        let mut failed = None;
        for (i, (subject, payload)) in out.messages.into_iter().enumerate() {
            let mut publish = jetstream::message::PublishMessage::build().payload(payload);
            if let Some((stem, fingerprint)) = &out.keyed {
                publish = publish
                    .message_id(format!("{stem}:{i}"))
                    .header(FINGERPRINT_HEADER, fingerprint.as_str());
            }
            match js.send_publish(subject, publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    failed = Some(BusError::Store(io("publish", e)));
                    break;
                }
            }
        }
        let reply = out.reply;
        let fingerprint = out.keyed.map(|(_, fp)| fp);
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::with_capacity(acks.len());
            let mut duplicate = None;
            for ack in acks {
                match ack.await {
                    Ok(ack) => {
                        if ack.duplicate {
                            duplicate.get_or_insert(ack.sequence);
                        }
                        seqs.push(ack.sequence);
                    }
                    Err(e) => {
                        failed.get_or_insert(BusError::Store(io("acknowledgement", e)));
                    }
                }
            }
            if let (None, Some(seq), Some(fp)) = (&failed, duplicate, &fingerprint) {
                failed = check_original(&stream, seq, fp).await.err();
            }
            // The publisher may have gone away; the events are in the stream regardless.
            drop(reply.send(match failed {
                Some(e) => Err(e),
                None => Ok(seqs),
            }));
        });
    }
}

/// A duplicate's original, at `seq`, was published with fingerprint `fp`, or the key was
/// reused for another batch.
async fn check_original(stream: &stream::Stream, seq: u64, fp: &str) -> Result<(), BusError> {
    let original = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| BusError::Store(io("read a keyed original", e)))?;
    let theirs = original
        .headers
        .get(FINGERPRINT_HEADER)
        .map(|v| v.as_str().to_owned());
    if theirs.as_deref() == Some(fp) {
        Ok(())
    } else {
        Err(BusError::IdempotencyConflict)
    }
}

fn hex(fp: &Fingerprint) -> String {
    let mut out = String::with_capacity(64);
    for b in fp.0 {
        use std::fmt::Write as _;
        write!(out, "{b:02x}").expect("a String takes any write");
    }
    out
}

impl Bus for NatsCluster {
    fn publish(
        &self,
        events: Vec<SharedEvent>,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>> {
        if !self.connected() {
            return Box::pin(std::future::ready(Err(BusError::Store(StoreError::Io(
                "NATS is unreachable".into(),
            )))));
        }
        let messages = events
            .iter()
            .map(|e| {
                (
                    subject::keyed(&self.prefix, &e.event.topic, e.event.key.as_ref()),
                    envelope::encode(e),
                )
            })
            .collect();
        let (reply, rx) = oneshot::channel();
        let out = Outgoing {
            messages,
            keyed: key.map(|(k, fp)| (msg_id(k), hex(&fp))),
            reply,
        };
        if self.publisher.try_send(out).is_err() {
            return Box::pin(std::future::ready(Err(BusError::Store(StoreError::Io(
                "too many publishes waiting for NATS".into(),
            )))));
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(BusError::Store(StoreError::Io(
                    "NATS publisher stopped".into(),
                )))
            })
        })
    }
}

impl EventStore for NatsCluster {
    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    fn trimmed_through(&self) -> u64 {
        self.trimmed.load(Ordering::Relaxed)
    }

    fn append(
        &self,
        _events: Vec<SharedEvent>,
        _keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        // A clustered hub publishes through the bus; only a hub built wrongly gets here.
        Box::pin(std::future::ready(Err(StoreError::Io(
            "a cluster's history is written through its bus, never appended".into(),
        ))))
    }

    fn find_keyed(
        &self,
        _key: &IdempotencyKey,
    ) -> BoxFuture<'static, Result<Option<KeyedBatch>, StoreError>> {
        // Keys are JetStream's `Nats-Msg-Id`s, deduplicated by the stream itself.
        Box::pin(std::future::ready(Ok(None)))
    }

    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        let stream = self.stream.clone();
        let prefix = self.prefix.clone();
        let epoch = self.epoch;
        let want = limit.events.clamp(1, FETCH_MAX);
        let filter = subject::all(&self.prefix);
        Box::pin(async move {
            let config = one_shot(
                filter,
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
            );
            let consumer = stream
                .create_consumer(config)
                .await
                .map_err(|e| io("open a replay consumer", e))?;
            let name = consumer.cached_info().name.clone();
            let mut batch = consumer
                .fetch()
                .max_messages(want)
                .messages()
                .await
                .map_err(|e| io("fetch history", e))?;
            let mut out = Vec::new();
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(|e| io("fetch history", e))?;
                let Ok(info) = msg.info() else { continue };
                if let Some(event) = envelope::decode(
                    &prefix,
                    epoch,
                    info.stream_sequence,
                    msg.subject.as_str(),
                    &msg.payload,
                ) {
                    out.push(event);
                }
            }
            tokio::spawn(async move { drop(stream.delete_consumer(&name).await) });
            Ok(limit.take(out))
        })
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            events: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_seq: self.last_seq(),
            trimmed_through: self.trimmed_through(),
        }
    }

    fn health(&self) -> Option<StoreError> {
        if self.stale.load(Ordering::Relaxed) {
            return Some(StoreError::Corrupt(
                "the stream was recreated; restart this node".into(),
            ));
        }
        (!self.connected()).then(|| StoreError::Io("NATS is unreachable".into()))
    }

    fn sessions(&self) -> Option<&dyn SessionStore> {
        Some(&*self.sessions)
    }

    fn snapshot(
        &self,
        selector: &Selector,
        max_bytes: usize,
    ) -> BoxFuture<'static, Result<SnapshotRead, StoreError>> {
        Box::pin(snapshot::read(
            self.stream.clone(),
            self.prefix.clone(),
            self.epoch,
            self.rules.clone(),
            selector.clone(),
            max_bytes,
        ))
    }
}

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
