//! Prometheus metrics (`GET /metrics`, text format 0.0.4, encoded by `prometheus-client`).
//!
//! Two kinds of numbers: what the HTTP layer counts as it happens (connections, resets and
//! `reconnect-required` sent, auth failures, publish and store-commit latency), held in
//! `prometheus-client` metrics; and what the engine already counts in plain atomics
//! (published, delivered, replayed, subscriptions, sessions, store state), read by `HubCollector` at
//! scrape time, so the fan-out pays nothing for metrics beyond the engine's own per-step
//! count. Process RSS and open file descriptors are read from `/proc` at scrape time.
//!
//! No label carries a secret, a client id or a topic: the only topic label is
//! `tidings_events_published_by_prefix_total{prefix}`, whose values are the operator's
//! allow-list (`metrics.topic_prefixes`), so every label set is bounded by configuration.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tidings_core::store::BoxFuture;
use tidings_core::{DynStore, EventStore, Hub, KeyedBatch, SharedEvent, StoreError, StoreLayer};
use tidings_proto::Topic;

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A connection's endpoint and transport.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnLabels {
    /// The endpoint's configured name (bounded by the configuration).
    pub(crate) endpoint: Arc<str>,
    /// `sse`, `ndjson`, `websocket` or `poll`.
    pub(crate) transport: &'static str,
}

/// One stable reason string (a code from a fixed set).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    pub(crate) reason: &'static str,
}

/// A configured topic prefix.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Prefix {
    pub(crate) prefix: Arc<str>,
}

/// Every metric the HTTP layer updates, and the registry that encodes them with the
/// engine's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) connections: Family<ConnLabels, Gauge>,
    pub(crate) connections_opened: Family<ConnLabels, Counter>,
    pub(crate) resets_sent: Family<Reason, Counter>,
    pub(crate) reconnects_sent: Family<Reason, Counter>,
    pub(crate) slow_consumer_disconnects: Counter,
    pub(crate) auth_failures: Family<Reason, Counter>,
    pub(crate) publish_latency: Histogram,
    pub(crate) commit_latency: Histogram,
    published_by_prefix: Family<Prefix, Counter>,
    prefixes: Vec<Arc<str>>,
}

/// Latency buckets: 100 µs to about 6.5 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 17)
}

impl Metrics {
    /// The HTTP layer's metrics; events whose topic starts with one of `prefixes` are also
    /// counted under that prefix (the longest that matches). `with_hub` adds the engine's.
    pub fn new(prefixes: &[String]) -> Metrics {
        let mut registry = Registry::default();
        let connections = Family::<ConnLabels, Gauge>::default();
        registry.register(
            "tidings_connections",
            "Open subscribe connections, by endpoint and transport",
            connections.clone(),
        );
        let connections_opened = Family::<ConnLabels, Counter>::default();
        registry.register(
            "tidings_connections_opened",
            "Subscribe connections opened, by endpoint and transport",
            connections_opened.clone(),
        );
        let resets_sent = Family::<Reason, Counter>::default();
        registry.register(
            "tidings_resets_sent",
            "reset notices sent to subscribers, by reason",
            resets_sent.clone(),
        );
        let reconnects_sent = Family::<Reason, Counter>::default();
        registry.register(
            "tidings_reconnect_required_sent",
            "Subscriptions ended by the hub (reconnect-required), by reason",
            reconnects_sent.clone(),
        );
        let slow_consumer_disconnects = Counter::default();
        registry.register(
            "tidings_slow_consumer_disconnects",
            "Subscriptions closed because their queue filled up",
            slow_consumer_disconnects.clone(),
        );
        let auth_failures = Family::<Reason, Counter>::default();
        registry.register(
            "tidings_auth_failures",
            "Requests refused for their credential, by reason (missing, invalid, jwt_expired, jwt_bad_signature, jwt_invalid, ticket, cookie_only, forbidden)",
            auth_failures.clone(),
        );
        let publish_latency = Histogram::new(latency_buckets());
        registry.register(
            "tidings_publish_duration_seconds",
            "Time from a publish request's arrival to its answer, for accepted publishes",
            publish_latency.clone(),
        );
        let commit_latency = Histogram::new(latency_buckets());
        registry.register(
            "tidings_store_commit_duration_seconds",
            "Time from handing a batch to the store to its commit (fsync in durable mode)",
            commit_latency.clone(),
        );
        let published_by_prefix = Family::<Prefix, Counter>::default();
        registry.register(
            "tidings_events_published_by_prefix",
            "Events published under each configured topic prefix (metrics.topic_prefixes)",
            published_by_prefix.clone(),
        );
        let mut prefixes: Vec<Arc<str>> = prefixes.iter().map(|p| Arc::from(p.as_str())).collect();
        // Longest first: an event counts under the most specific prefix only.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in &prefixes {
            // Present from the start, at 0, so a rate is defined before the first event.
            drop(published_by_prefix.get_or_create(&Prefix { prefix: p.clone() }));
        }
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            connections,
            connections_opened,
            resets_sent,
            reconnects_sent,
            slow_consumer_disconnects,
            auth_failures,
            publish_latency,
            commit_latency,
            published_by_prefix,
            prefixes,
        }
    }

    /// Adds the counters `hub` keeps, read at each scrape.
    pub fn with_hub(mut self, hub: &Hub) -> Metrics {
        self.registry
            .register_collector(Box::new(HubCollector { hub: hub.clone() }));
        self
    }

    /// The whole exposition, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts one failed authentication or authorization.
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&Reason { reason }).inc();
    }

    /// The index of the configured prefix each topic counts under, appended to `out`
    /// (nothing when no prefixes are configured).
    pub(crate) fn match_prefixes<'a>(
        &self,
        topics: impl Iterator<Item = &'a Topic>,
        out: &mut Vec<usize>,
    ) {
        if self.prefixes.is_empty() {
            return;
        }
        for topic in topics {
            let t = topic.as_str();
            if let Some(i) = self.prefixes.iter().position(|p| t.starts_with(&**p)) {
                out.push(i);
            }
        }
    }

    /// Counts published events under the prefixes `match_prefixes` found.
    pub(crate) fn published(&self, matched: &[usize]) {
        for &i in matched {
            self.published_by_prefix
                .get_or_create(&Prefix {
                    prefix: self.prefixes[i].clone(),
                })
                .inc();
        }
    }
}

/// The engine's counters, read at scrape time.
#[derive(Debug)]
struct HubCollector {
    hub: Hub,
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.hub.stats();
        let e = &mut encoder;
        counter(
            e,
            "tidings_events_published",
            "Events published (stored and fanned out)",
            s.published,
        )?;
        counter(
            e,
            "tidings_events_delivered",
            "Events handed to subscriber connections, live and replayed",
            s.delivered,
        )?;
        counter(
            e,
            "tidings_events_replayed",
            "Events read from history and handed to resuming subscribers",
            s.replayed,
        )?;
        counter(
            e,
            "tidings_events_coalesced",
            "Published events a [[coalesce]] window superseded or folded into a batch",
            s.coalesced,
        )?;
        counter(
            e,
            "tidings_deliveries_conflated",
            "Queued deliveries a lagging subscriber's conflation replaced by a newer event of the same key",
            s.conflated,
        )?;
        counter(
            e,
            "tidings_deliveries_dropped",
            "Deliveries refused at a full subscriber queue (the subscriber resumes them from history)",
            s.dropped,
        )?;
        gauge(
            e,
            "tidings_coalescing_keys",
            "Keys (latest) and paths (merge) coalescing windows hold now",
            clamp(s.coalescing_keys as u64),
        )?;
        gauge(
            e,
            "tidings_subscriptions",
            "Open subscriptions",
            clamp(s.subscribers as u64),
        )?;
        gauge(
            e,
            "tidings_sessions",
            "Client-id sessions held (attached, or detached within their TTL)",
            clamp(s.sessions as u64),
        )?;
        gauge(
            e,
            "tidings_head_seq",
            "Seq of the last event delivered",
            clamp(s.head),
        )?;
        gauge(
            e,
            "tidings_store_events",
            "Events retained in the store",
            clamp(s.store.events),
        )?;
        gauge(
            e,
            "tidings_store_bytes",
            "Bytes retained in the store",
            clamp(s.store.bytes),
        )?;
        gauge(
            e,
            "tidings_store_healthy",
            "1 while the store takes appends, 0 once it failed",
            i64::from(self.hub.store_health().is_none()),
        )?;
        Ok(())
    }
}

/// Resident memory and open file descriptors of this process, from `/proc` (Linux; elsewhere
/// the two series are absent).
#[derive(Debug)]
struct ProcessCollector;

/// Resident set size in bytes (`VmRSS` in `/proc/self/status`, which is in kB).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(rss) = rss_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                clamp(rss),
            )?;
        }
        if let Some(fds) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                clamp(fds),
            )?;
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Most file descriptors the process may open",
                clamp(soft),
            )?;
        }
        Ok(())
    }
}

/// The store, with each append's commit timed into `tidings_store_commit_duration_seconds`.
#[derive(Debug)]
pub(crate) struct TimedStore {
    inner: DynStore,
    commits: Histogram,
}

impl TimedStore {
    pub(crate) fn wrap(inner: DynStore, commits: Histogram) -> DynStore {
        Arc::new(TimedStore { inner, commits })
    }
}

impl StoreLayer for TimedStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

    fn append(
        &self,
        events: Vec<SharedEvent>,
        keyed: Option<KeyedBatch>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let started = Instant::now();
        let commit = self.inner.append(events, keyed);
        let histogram = self.commits.clone();
        Box::pin(async move {
            let result = commit.await;
            if result.is_ok() {
                histogram.observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::metrics::histogram::Histogram;
    use tidings_core::{MemoryStore, Retention};
    use tidings_proto::Epoch;

    use super::{TimedStore, latency_buckets};

    /// The timing wrapper hands on the store's session table (a restart keeps sessions).
    #[test]
    fn the_timed_store_forwards_its_sessions() {
        let inner: tidings_core::DynStore =
            Arc::new(MemoryStore::new(Epoch(7), Retention::default()));
        assert!(inner.sessions().is_some());
        let timed = TimedStore::wrap(inner, Histogram::new(latency_buckets()));
        assert!(timed.sessions().is_some());
    }

    /// docs/grafana-dashboard.json is valid JSON, and every metric its queries name is one
    /// this module registers (a renamed metric would leave a panel silently empty). Families
    /// without samples yet are left out of a scrape, so the names are checked against the
    /// registrations here, and against a fresh scrape where it has them.
    #[test]
    fn the_grafana_dashboard_uses_only_metrics_that_exist() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json"))
                .expect("the Grafana dashboard is JSON");
        let hub = tidings_core::Hub::new(
            Arc::new(MemoryStore::new(Epoch(1), Retention::default())),
            tidings_core::Limits::default(),
        );
        let exposed = super::Metrics::new(&[]).with_hub(&hub).render();
        let registered = include_str!("metrics.rs");
        let mut names = Vec::new();
        for panel in doc["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let mut rest = expr;
                while let Some(at) = ["tidings_", "process_"]
                    .iter()
                    .filter_map(|p| rest.find(p))
                    .min()
                {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[at + name.len()..];
                    names.push(name);
                }
            }
        }
        assert!(names.len() > 20, "{names:?}");
        for name in names {
            let family = ["_bucket", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                registered.contains(&format!("\"{family}\"")),
                "the dashboard queries `{name}`, which /metrics does not expose"
            );
            // Families without labels are in every scrape.
            let labelled = [
                "tidings_connections",
                "tidings_resets_sent",
                "tidings_reconnect_required_sent",
                "tidings_auth_failures",
                "tidings_events_published_by_prefix",
            ];
            if !labelled.iter().any(|f| family.starts_with(f)) {
                assert!(
                    exposed.contains(&format!("\n{name}")),
                    "`{name}` is not in a scrape"
                );
            }
        }
    }
}
