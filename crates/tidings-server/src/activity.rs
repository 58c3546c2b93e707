//! What the hub has been doing lately, as the admin API and the dashboard show it: rates
//! (events published and delivered, connections opened, per second) and the topics published
//! to recently, with their rates. Sampled on the server, once a second, by `sample`: nothing
//! here runs per delivery. A publish records its batch's topics (one lock per batch).
//!
//! Rates are averages over the last `WINDOW` samples (10 s), so a burst stays visible for that
//! long; the history the chart draws keeps one rate per second.
//!
//! Bounded: at most `MAX_TOPICS` topics are tracked. At the ceiling, events on a topic that
//! is not tracked yet are counted together as `untracked` (with their own rate) until a
//! tracked topic has been idle for `TOPIC_IDLE` and is forgotten, which makes room. The rate
//! history kept for the dashboard's chart is `HISTORY` samples (5 minutes).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tidings_proto::Topic;

/// Most topics tracked at once.
pub const MAX_TOPICS: usize = 1000;
/// A tracked topic without an event for this long is forgotten (milliseconds).
pub const TOPIC_IDLE_MS: u64 = 5 * 60 * 1000;
/// Samples of the rates kept (one a second: the last 5 minutes).
pub const HISTORY: usize = 300;
/// Samples a rate is averaged over.
pub const WINDOW: usize = 10;

/// Rates per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Events published.
    pub published: f64,
    /// Events delivered to subscribers (replays included).
    pub delivered: f64,
    /// Subscribe connections opened.
    pub connects: f64,
}

/// One sample of the rates, at `at_ms` (wall-clock milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken.
    pub at_ms: u64,
    /// The rates since the sample before it.
    #[serde(flatten)]
    pub rates: Rates,
}

/// The counters a sample is taken from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events published since start.
    pub published: u64,
    /// Events delivered since start.
    pub delivered: u64,
}

#[derive(Debug, Default)]
struct TopicEntry {
    events: u64,
    /// `events` at each of the last `WINDOW` samples, by sample number modulo `WINDOW` (0
    /// before the topic was tracked).
    marks: [u64; WINDOW],
    rate: f64,
    last_seen_ms: u64,
}

/// One topic as the admin API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicView {
    /// The topic.
    pub topic: Topic,
    /// Events published on it since it was first tracked.
    pub events: u64,
    /// Events per second over the last `WINDOW` samples.
    pub rate: f64,
    /// When its last event was published (ms since the Unix epoch).
    pub last_seen_ms: u64,
}

/// The tracked topics, busiest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicsView {
    /// Up to the requested number of topics, by rate then events, descending.
    pub topics: Vec<TopicView>,
    /// How many topics are tracked.
    pub tracked: usize,
    /// Whether the ceiling is reached (new topics go to `untracked`).
    pub full: bool,
    /// Events on topics that found no room, since start.
    pub untracked_events: u64,
    /// Their rate per second.
    pub untracked_rate: f64,
}

/// The counters at one sample.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    at_ms: u64,
    totals: Totals,
    connects: u64,
    untracked: u64,
}

#[derive(Debug, Default)]
struct Inner {
    topics: HashMap<Topic, TopicEntry>,
    untracked: u64,
    untracked_rate: f64,
    /// Samples taken.
    ticks: u64,
    /// The counters at the last `WINDOW` samples, by sample number modulo `WINDOW`.
    marks: [Mark; WINDOW],
    rates: Rates,
    history: VecDeque<Sample>,
}

/// Recent activity (see the module docs).
#[derive(Debug)]
pub struct Activity {
    inner: Mutex<Inner>,
    max_topics: usize,
    /// Subscribe connections opened since start.
    connects: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new(MAX_TOPICS)
    }
}

impl Activity {
    /// Activity tracking at most `max_topics` topics.
    pub fn new(max_topics: usize) -> Activity {
        Activity {
            inner: Mutex::default(),
            max_topics,
            connects: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A published batch's topics (one entry per event), at `now_ms`.
    pub(crate) fn record<'a>(&self, topics: impl IntoIterator<Item = &'a Topic>, now_ms: u64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for topic in topics {
            if let Some(e) = inner.topics.get_mut(topic) {
                e.events += 1;
                e.last_seen_ms = now_ms;
            } else if inner.topics.len() < self.max_topics {
                inner.topics.insert(
                    topic.clone(),
                    TopicEntry {
                        events: 1,
                        last_seen_ms: now_ms,
                        ..TopicEntry::default()
                    },
                );
            } else {
                inner.untracked += 1;
            }
        }
    }

    /// A subscribe connection opened (a relaxed add).
    pub(crate) fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a sample at `now_ms` from `totals`: the rates over the last `WINDOW` samples
    /// (and over the last one, for the history), each topic's rate, and forgets topics idle
    /// for `TOPIC_IDLE_MS`.
    pub fn tick(&self, totals: Totals, now_ms: u64) {
        let connects = self.connects.load(Ordering::Relaxed);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let now = Mark {
            at_ms: now_ms,
            totals,
            connects,
            untracked: inner.untracked,
        };
        let k = inner.ticks;
        let slot = (k % WINDOW as u64) as usize;
        // The oldest sample kept (the first one, until `WINDOW` were taken) and the last.
        let oldest_slot = if k < WINDOW as u64 { 0 } else { slot };
        let (oldest, last) = (
            inner.marks[oldest_slot],
            inner.marks[((k + WINDOW as u64 - 1) % WINDOW as u64) as usize],
        );
        inner.ticks += 1;
        for e in inner.topics.values_mut() {
            let then = e.marks[oldest_slot];
            e.marks[slot] = e.events;
            e.rate = rate(e.events, then, now_ms, oldest.at_ms, k);
        }
        inner.marks[slot] = now;
        inner
            .topics
            .retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < TOPIC_IDLE_MS);
        if k == 0 {
            return;
        }
        inner.untracked_rate = rate(now.untracked, oldest.untracked, now_ms, oldest.at_ms, k);
        inner.rates = Rates {
            published: rate(
                totals.published,
                oldest.totals.published,
                now_ms,
                oldest.at_ms,
                k,
            ),
            delivered: rate(
                totals.delivered,
                oldest.totals.delivered,
                now_ms,
                oldest.at_ms,
                k,
            ),
            connects: rate(connects, oldest.connects, now_ms, oldest.at_ms, k),
        };
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(Sample {
            at_ms: now_ms,
            rates: Rates {
                published: rate(
                    totals.published,
                    last.totals.published,
                    now_ms,
                    last.at_ms,
                    k,
                ),
                delivered: rate(
                    totals.delivered,
                    last.totals.delivered,
                    now_ms,
                    last.at_ms,
                    k,
                ),
                connects: rate(connects, last.connects, now_ms, last.at_ms, k),
            },
        });
    }

    /// The rates over the last `WINDOW` samples (zero before two samples).
    pub fn rates(&self) -> Rates {
        self.lock().rates
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.lock().history.iter().copied().collect()
    }

    /// Subscribe connections opened since start.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The `limit` busiest tracked topics (by rate, then events), and the totals.
    pub fn topics(&self, limit: usize) -> TopicsView {
        let inner = self.lock();
        let mut all: Vec<(&Topic, &TopicEntry)> = inner.topics.iter().collect();
        all.sort_by(|a, b| {
            b.1.rate
                .total_cmp(&a.1.rate)
                .then(b.1.events.cmp(&a.1.events))
                .then(a.0.as_str().cmp(b.0.as_str()))
        });
        TopicsView {
            topics: all
                .into_iter()
                .take(limit)
                .map(|(t, e)| TopicView {
                    topic: t.clone(),
                    events: e.events,
                    rate: e.rate,
                    last_seen_ms: e.last_seen_ms,
                })
                .collect(),
            tracked: inner.topics.len(),
            full: inner.topics.len() >= self.max_topics,
            untracked_events: inner.untracked,
            untracked_rate: inner.untracked_rate,
        }
    }
}

/// Per second from `then` at `then_ms` to `now` at `now_ms`; 0 for the first sample (`k`
/// is the sample's number) or an empty interval.
fn rate(now: u64, then: u64, now_ms: u64, then_ms: u64, k: u64) -> f64 {
    let ms = now_ms.saturating_sub(then_ms);
    if k == 0 || ms == 0 {
        return 0.0;
    }
    now.saturating_sub(then) as f64 * 1000.0 / ms as f64
}

/// Samples `activity` once a second from the hub's counters until the task is dropped.
pub(crate) async fn sample(
    hub: tidings_core::Hub,
    activity: std::sync::Arc<Activity>,
    clock: tidings_core::clock::DynClock,
) {
    let second = std::time::Duration::from_secs(1);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        sample_now(&hub, &activity, &clock);
    }
}

/// Takes one sample now. The server takes the first before it serves anything (then
/// `sample` takes one a second): rates count from a sample older than every publish, even
/// when start-up keeps the runtime busy (a topic published before the first sample would
/// show no rate until it left the window).
pub(crate) fn sample_now(
    hub: &tidings_core::Hub,
    activity: &Activity,
    clock: &tidings_core::clock::DynClock,
) {
    let s = hub.stats();
    activity.tick(
        Totals {
            published: s.published,
            delivered: s.delivered,
        },
        clock.now_ms(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    #[test]
    fn rates_are_per_second_over_the_interval() {
        let a = Activity::new(10);
        a.tick(Totals::default(), 1_000);
        assert_eq!(a.rates(), Rates::default());
        a.connected();
        a.connected();
        a.tick(
            Totals {
                published: 10,
                delivered: 40,
            },
            3_000,
        );
        assert_eq!(
            a.rates(),
            Rates {
                published: 5.0,
                delivered: 20.0,
                connects: 1.0
            }
        );
        assert_eq!(a.history().len(), 1);
        assert_eq!(a.history()[0].at_ms, 3_000);
        for i in 0..(HISTORY as u64 + 5) {
            a.tick(Totals::default(), 4_000 + i * 1000);
        }
        assert_eq!(a.history().len(), HISTORY);
    }

    #[test]
    fn a_burst_stays_in_the_rates_for_the_window_then_fades() {
        let a = Activity::new(10);
        let t = topic("burst");
        a.tick(Totals::default(), 0);
        a.record([&t, &t, &t, &t, &t], 100);
        let burst = Totals {
            published: 5,
            delivered: 5,
        };
        for i in 1..=WINDOW as u64 {
            a.tick(burst, i * 1000);
            assert!(a.rates().published > 0.0, "sample {i}");
            assert!(a.topics(1).topics[0].rate > 0.0, "sample {i}");
        }
        // The first sample's rate is the burst over one second; then it averages out.
        assert_eq!(a.history()[0].rates.published, 5.0);
        assert_eq!(a.history()[1].rates.published, 0.0);
        a.tick(burst, (WINDOW as u64 + 1) * 1000);
        assert_eq!(a.rates().published, 0.0);
        assert_eq!(a.topics(1).topics[0].rate, 0.0);
    }

    #[test]
    fn topics_are_ranked_by_rate_bounded_and_forgotten_when_idle() {
        let a = Activity::new(2);
        a.tick(Totals::default(), 0);
        let (x, y, z) = (topic("x"), topic("y"), topic("z"));
        a.record([&x, &y, &y, &y], 500);
        // At the ceiling: `z` is counted as untracked.
        a.record([&z, &z], 600);
        a.tick(Totals::default(), 1_000);
        let v = a.topics(10);
        assert_eq!(v.tracked, 2);
        assert!(v.full);
        assert_eq!(v.untracked_events, 2);
        assert_eq!(v.untracked_rate, 2.0);
        assert_eq!(v.topics[0].topic.as_str(), "y");
        assert_eq!(v.topics[0].rate, 3.0);
        assert_eq!(v.topics[1].topic.as_str(), "x");
        assert_eq!(a.topics(1).topics.len(), 1);
        // `x` goes idle and is forgotten; then `z` finds room.
        a.record([&y], TOPIC_IDLE_MS);
        a.tick(Totals::default(), TOPIC_IDLE_MS + 600);
        let v = a.topics(10);
        assert_eq!(v.tracked, 1);
        assert!(!v.full);
        a.record([&z], TOPIC_IDLE_MS + 700);
        assert_eq!(a.topics(10).tracked, 2);
    }
}
