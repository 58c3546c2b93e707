//! Subscribe connections as operators see them. Every subscription a transport serves is a
//! `Tracked`: it logs one line when it opens and one when it closes (endpoint, transport,
//! remote address, selector, client id, duration, events delivered, close reason), counts the resets
//! and `reconnect-required` notices the hub hands it, keeps the connection gauges, and sits
//! in the `Connections` table (the admin API's view) while it lives.
//!
//! A `Tracked` adds nothing per event: the delivered count is the engine's own
//! per-subscription counter, read when someone asks. Transports' unit tests drive an
//! untracked one (`Tracked::untracked`), which only passes the steps through.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tidings_core::{CloseReason, SharedEvent, Step, Subscription, SubscriptionProbe};
use tidings_proto::{EventId, Pattern, Selector};

use crate::metrics::{ConnLabels, Metrics, Reason};
use crate::transport::reconnect_notice;

/// The peer address of the connection a request came on (a request extension, set by the
/// accept loop on both connection paths).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAddr(pub(crate) SocketAddr);

/// The transport a subscription is served over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Sse,
    Ndjson,
    WebSocket,
    Poll,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ndjson => "ndjson",
            Transport::WebSocket => "websocket",
            Transport::Poll => "poll",
        }
    }
}

/// One open subscribe connection, as the admin API lists it.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) id: u64,
    pub(crate) labels: ConnLabels,
    pub(crate) remote: Option<SocketAddr>,
    /// `topic=a/*,b type=x`: what the subscription selects (never a credential).
    pub(crate) selector: String,
    /// The session's client id, for a subscription that named one.
    pub(crate) client_id: Option<tidings_proto::Key>,
    /// Wall-clock milliseconds since the Unix epoch when it opened.
    pub(crate) since_ms: u64,
    started: Instant,
    /// Its queue depth and delivered count, and a way to close it.
    pub(crate) probe: SubscriptionProbe,
    /// Why it ended: the hub's close reason, or what the transport said (the first wins).
    end: OnceLock<&'static str>,
    observers: Arc<Observers>,
}

/// The open subscribe connections, by id (ascending: ids are handed out in order, so a page
/// boundary is stable while connections come and go).
#[derive(Debug, Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnInfo>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Up to `limit` connections with an id greater than `after`, in id order.
    pub(crate) fn page(&self, after: u64, limit: usize) -> Vec<Arc<ConnInfo>> {
        self.lock()
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The connection with `id`, if it is open.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ConnInfo>> {
        self.lock().get(&id).cloned()
    }

    /// How many are open.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Everything `Tracked` reports to: the metrics and the table of open connections.
#[derive(Debug, Clone)]
pub struct Observers {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connections: Arc<Connections>,
    /// Recent rates and topics, sampled once a second (`activity::sample`).
    pub(crate) activity: Arc<crate::activity::Activity>,
    /// A token that may read `/metrics` (`metrics.token`).
    pub(crate) metrics_token: Option<tidings_auth::Secret>,
    /// The store's durability mode and retention bounds, as `/admin/stats` shows them.
    pub(crate) store_setup: Arc<serde_json::Value>,
}

impl Observers {
    /// Observers reporting to `metrics`, with an empty connection table.
    pub fn new(metrics: Metrics) -> Observers {
        Observers {
            metrics: Arc::new(metrics),
            connections: Arc::default(),
            activity: Arc::default(),
            metrics_token: None,
            store_setup: Arc::new(serde_json::Value::Null),
        }
    }

    /// Shows the store's durability mode and retention bounds in `/admin/stats`.
    pub fn with_store_setup(
        mut self,
        durability: &crate::config::Durability,
        retention: &tidings_core::Retention,
    ) -> Observers {
        use crate::config::Durability;
        let (mode, fsync_interval_ms) = match durability {
            Durability::Durable => ("durable", None),
            Durability::Fast { interval } => ("fast", Some(interval.as_millis())),
            Durability::Memory => ("memory", None),
        };
        self.store_setup = Arc::new(serde_json::json!({
            "durability": mode,
            "fsync_interval_ms": fsync_interval_ms,
            "retention": {
                "max_events": retention.max_events,
                "max_bytes": retention.max_bytes,
                "max_age_s": retention.max_age.map(|a| a.as_secs()),
            },
        }));
        self
    }

    /// Lets `token` read `/metrics`.
    pub fn with_metrics_token(mut self, token: Option<tidings_auth::Secret>) -> Observers {
        self.metrics_token = token;
        self
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// A peer address as the connection lines show it (`127.0.0.1:5000`, `[::1]:5000`): an IPv4
/// one assembled in a stack buffer with `itoa`, because std's `Display` of a `SocketAddrV4`
/// goes through `core::fmt` for each part (about 1,300 instructions, callgrind) and every
/// connect writes one.
struct Peer(SocketAddr);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return self.0.fmt(f);
        };
        let mut buf = [0u8; 21];
        let mut len = 0;
        let mut push = |text: &[u8]| {
            buf[len..len + text.len()].copy_from_slice(text);
            len += text.len();
        };
        let mut digits = itoa::Buffer::new();
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                push(b".");
            }
            push(digits.format(octet).as_bytes());
        }
        push(b":");
        push(digits.format(v4.port()).as_bytes());
        // Only ASCII digits, dots and a colon went in.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| std::fmt::Error)?)
    }
}

/// A subscription being served, with its bookkeeping (one pointer beside the subscription:
/// every idle stream carries it).
#[derive(Debug)]
pub(crate) struct Tracked {
    sub: Subscription,
    info: Option<Arc<ConnInfo>>,
}

/// `topic=a/*,b type=x`: what a selector selects, for logs and the admin API.
/// Written piece by piece (a pattern's `Display` through `core::fmt` cost about 900
/// instructions a connect).
pub(crate) fn describe(selector: &Selector) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("topic=");
    for (i, p) in selector.patterns.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match p {
            Pattern::All => s.push('*'),
            Pattern::Prefix(prefix) => {
                s.push_str(prefix);
                s.push('*');
            }
            Pattern::Exact(topic) => s.push_str(topic.as_str()),
        }
    }
    if !selector.types.is_empty() {
        s.push_str(" type=");
        for (i, t) in selector.types.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(t.as_str());
        }
    }
    s
}

impl Tracked {
    /// Starts tracking `sub`, served on `endpoint` over `transport`.
    pub(crate) fn new(
        sub: Subscription,
        selector: String,
        endpoint: Arc<str>,
        transport: Transport,
        remote: Option<SocketAddr>,
        observers: &Arc<Observers>,
    ) -> Tracked {
        let id = observers
            .connections
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let info = Arc::new(ConnInfo {
            id,
            labels: ConnLabels {
                endpoint,
                transport: transport.as_str(),
            },
            remote,
            selector,
            client_id: sub.client_id().cloned(),
            since_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            started: Instant::now(),
            probe: sub.probe(),
            end: OnceLock::new(),
            observers: observers.clone(),
        });
        let metrics = &observers.metrics;
        metrics.connections.get_or_create(&info.labels).inc();
        metrics.connections_opened.get_or_create(&info.labels).inc();
        observers.activity.connected();
        observers.connections.lock().insert(id, info.clone());
        tracing::info!(
            message = "Connection opened.",
            conn = id,
            endpoint = %info.labels.endpoint,
            transport = info.labels.transport,
            remote = remote.map(|r| tracing::field::display(Peer(r))),
            selector = %info.selector,
            client_id = info.client_id.as_ref().map(|c| c.as_str()),
        );
        Tracked {
            sub,
            info: Some(info),
        }
    }

    /// `sub` with no bookkeeping (transports' unit tests).
    #[cfg(test)]
    pub(crate) fn untracked(sub: Subscription) -> Tracked {
        Tracked { sub, info: None }
    }

    /// `Subscription::next`, counting what the hub says.
    pub(crate) async fn next(&mut self, out: &mut Vec<SharedEvent>) -> Step {
        let step = self.sub.next(out).await;
        if let Some(info) = &self.info {
            info.observe(&step);
        }
        step
    }

    /// `Subscription::next_or_idle`, counting what the hub says.
    pub(crate) async fn next_or_idle(
        &mut self,
        out: &mut Vec<SharedEvent>,
        idle: impl Future<Output = ()>,
    ) -> Option<Step> {
        let step = self.sub.next_or_idle(out, idle).await;
        if let (Some(info), Some(step)) = (&self.info, &step) {
            info.observe(step);
        }
        step
    }

    /// The subscription itself, for a transport that awaits its steps directly (no wrapper
    /// future in an idle stream's state) and hands each to `observe`.
    pub(crate) fn subscription(&mut self) -> &mut Subscription {
        &mut self.sub
    }

    /// Counts what the hub said in `step` (what `next` does after its await).
    pub(crate) fn observe(&self, step: &Step) {
        if let Some(info) = &self.info {
            info.observe(step);
        }
    }

    /// `Subscription::position`.
    pub(crate) fn position(&self) -> EventId {
        self.sub.position()
    }

    /// Records why the transport ended the connection (for the close line), unless the hub
    /// ended it first.
    pub(crate) fn ended(&mut self, why: &'static str) {
        if let Some(info) = &self.info {
            info.end(why);
        }
    }
}

/// The subscription's own accessors (selector, client id, place), read through.
impl std::ops::Deref for Tracked {
    type Target = Subscription;

    fn deref(&self) -> &Subscription {
        &self.sub
    }
}

impl ConnInfo {
    fn end(&self, why: &'static str) {
        // The first reason wins (a later one only followed from it): a second `set` is
        // refused, which is what is wanted.
        let _first = self.end.set(why).is_ok();
    }

    fn observe(&self, step: &Step) {
        let metrics = &self.observers.metrics;
        match step {
            Step::Events | Step::Session { .. } | Step::Snapshot { .. } => {}
            Step::Reset { reason, .. } => {
                metrics
                    .resets_sent
                    .get_or_create(&Reason {
                        reason: reason.as_str(),
                    })
                    .inc();
            }
            Step::Closed(reason) => {
                // A long-poll answers what it has instead of sending the notice.
                if self.labels.transport != Transport::Poll.as_str() {
                    let code = reconnect_code(*reason);
                    metrics
                        .reconnects_sent
                        .get_or_create(&Reason { reason: code })
                        .inc();
                }
                if *reason == CloseReason::SlowConsumer {
                    metrics.slow_consumer_disconnects.inc();
                }
                self.end(reconnect_code(*reason));
            }
        }
    }
}

/// The reason a `reconnect-required` notice carries for `reason`.
fn reconnect_code(reason: CloseReason) -> &'static str {
    match reconnect_notice(reason).reason.as_str() {
        "store_unavailable" => "store_unavailable",
        _ => reason.as_str(),
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(info) = &self.info else { return };
        info.observers.connections.lock().remove(&info.id);
        info.observers
            .metrics
            .connections
            .get_or_create(&info.labels)
            .dec();
        let reason = info
            .end
            .get()
            .copied()
            .unwrap_or(match info.labels.transport {
                "poll" => "answered",
                _ => "client_gone",
            });
        tracing::info!(
            message = "Connection closed.",
            conn = info.id,
            endpoint = %info.labels.endpoint,
            transport = info.labels.transport,
            remote = info.remote.map(|r| tracing::field::display(Peer(r))),
            selector = %info.selector,
            client_id = info.client_id.as_ref().map(|c| c.as_str()),
            duration_ms = info.started.elapsed().as_millis() as u64,
            delivered = self.sub.delivered(),
            reason,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_described_as_their_patterns_read() {
        let selector = |q: &[&str], types: &[&str]| Selector {
            patterns: q.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            types: types
                .iter()
                .map(|t| tidings_proto::EventType::new(t).unwrap())
                .collect(),
        };
        assert_eq!(describe(&selector(&["*"], &[])), "topic=*");
        assert_eq!(
            describe(&selector(&["conn/1/*", "b", "a/b/c"], &["tick", "x"])),
            "topic=conn/1/*,b,a/b/c type=tick,x"
        );
        let s = selector(&["x/*", "y"], &[]);
        let shown: Vec<String> = s.patterns.iter().map(ToString::to_string).collect();
        assert_eq!(describe(&s), format!("topic={}", shown.join(",")));
    }

    #[test]
    fn peers_read_as_std_writes_them() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:5000",
            "255.255.255.255:65535",
            "10.2.30.4:80",
            "[::1]:443",
            "[2001:db8::8:800:200c:417a]:65535",
            "[::ffff:192.0.2.1]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(Peer(addr).to_string(), addr.to_string());
        }
    }
}
