//! `ReplayTail`: the hub's most recently delivered events, kept in a ring bounded by bytes, so
//! a subscription resuming near the head replays the very `SharedEvent`s the fan-out handed out
//! (their cached wire encodings shared with every live connection) without asking the store.
//!
//! The hub pushes each event as it fans it out, under its lock, in seq order; subscriptions read
//! the ring under its own `RwLock` only (lock order: hub, then tail; never the other way). The
//! ring knows `base`: every event the hub delivered with seq in `(base, newest]` is in the ring,
//! and those are every event the store holds in that range (the hub delivers only committed
//! events, all of them, in seq order; in cluster mode the follower ingests the log in order), so
//! a replay at a position at or above `base` reads the ring and gets exactly what the store would
//! give. Evicting from the front (past `max_bytes`, counted as `EventRecord::size`) raises `base`.
//!
//! The ring also indexes its events by topic, so a replay for exact topics (the usual resume:
//! one topic, or a few) visits only their events instead of every event after the cursor.

use std::collections::{HashMap, VecDeque};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use tidings_proto::Topic;

use crate::record::SharedEvent;

/// The ring of recently delivered events. See the module docs.
#[derive(Debug)]
pub(crate) struct ReplayTail {
    /// Most bytes (`EventRecord::size`) held; 0 turns the ring off.
    max_bytes: usize,
    inner: RwLock<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// In seq order, oldest first.
    events: VecDeque<SharedEvent>,
    /// Sum of `size()` over `events`.
    bytes: usize,
    /// Every delivered event with seq in `(base, newest]` is in `events`.
    base: u64,
    /// The number of `events[0]`: events are numbered in push order, `events[i]` is
    /// `first + i`.
    first: u64,
    /// Per topic, the numbers of its events in the ring, oldest first (no empty lists).
    by_topic: HashMap<Topic, VecDeque<u64>>,
}

impl Ring {
    /// The event numbered `n` (one of `by_topic`'s).
    fn numbered(&self, n: u64) -> &SharedEvent {
        &self.events[usize::try_from(n - self.first).unwrap_or(usize::MAX)]
    }

    /// The numbers of `numbers` (one topic's) whose events come after `after`.
    fn after<'r>(
        &'r self,
        numbers: &'r VecDeque<u64>,
        after: u64,
    ) -> impl Iterator<Item = u64> + 'r {
        let start = numbers.partition_point(|&n| self.numbered(n).seq() <= after);
        numbers.range(start..).copied()
    }
}

/// What a replay over some topics' events of the ring (`ReplayTail::read_topics_after`)
/// learned besides `scan`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicsRead {
    /// The seq of the last of the topics' events after the cursor (`None`: there is none).
    pub(crate) last: Option<u64>,
    /// The newest event in the ring, of any topic: once the topics' events are all read, none
    /// of the others up to it needs reading.
    pub(crate) newest: u64,
}

impl ReplayTail {
    /// An empty ring over a hub whose head is `head`: nothing at or below it is in the ring.
    pub(crate) fn new(max_bytes: usize, head: u64) -> ReplayTail {
        ReplayTail {
            max_bytes,
            inner: RwLock::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                base: head,
                first: 0,
                by_topic: HashMap::new(),
            }),
        }
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Ring> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Ring> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event the hub just delivered (called under the hub's lock, in seq order),
    /// evicting the oldest past `max_bytes`. O(1) amortised (one topic lookup per event).
    pub(crate) fn push(&self, event: &SharedEvent) {
        if self.max_bytes == 0 {
            return;
        }
        let size = event.size();
        let mut ring = self.write_lock();
        let ring = &mut *ring;
        if size > self.max_bytes {
            // It would not fit alone: the ring starts over after it.
            ring.events.clear();
            ring.by_topic.clear();
            ring.first = 0;
            ring.bytes = 0;
            ring.base = event.seq();
            return;
        }
        let n = ring.first + ring.events.len() as u64;
        let topic = &event.event.topic;
        match ring.by_topic.get_mut(topic) {
            Some(numbers) => numbers.push_back(n),
            None => {
                ring.by_topic.insert(topic.clone(), VecDeque::from([n]));
            }
        }
        ring.events.push_back(SharedEvent::clone(event));
        ring.bytes += size;
        while ring.bytes > self.max_bytes {
            let Some(old) = ring.events.pop_front() else {
                break;
            };
            ring.first += 1;
            ring.bytes -= old.size();
            ring.base = old.seq();
            // The oldest event is the oldest of its topic.
            let topic = &old.event.topic;
            if let Some(numbers) = ring.by_topic.get_mut(topic) {
                numbers.pop_front();
                if numbers.is_empty() {
                    ring.by_topic.remove(topic);
                }
            }
        }
    }

    /// Runs `scan` over the ring's events after `after`, in seq order, under the ring's read
    /// lock, if the ring can answer for `after`: `after >= base` and some event follows it.
    /// `None`: ask the store.
    pub(crate) fn read_after<R>(
        &self,
        after: u64,
        scan: impl FnOnce(&mut dyn Iterator<Item = &SharedEvent>) -> R,
    ) -> Option<R> {
        if self.max_bytes == 0 {
            return None;
        }
        let ring = self.read_lock();
        if after < ring.base {
            return None;
        }
        let start = ring.events.partition_point(|e| e.seq() <= after);
        if start == ring.events.len() {
            return None;
        }
        Some(scan(&mut ring.events.range(start..)))
    }

    /// `read_after` over only the events of `topics` (distinct), in seq order, through the
    /// per-topic index: a replay for a few exact topics visits their events only. Answers when
    /// `read_after` would (`after >= base` and some event, of any topic, follows it), with
    /// what `TopicsRead` says about the events it did not visit.
    pub(crate) fn read_topics_after<R>(
        &self,
        after: u64,
        topics: &[&Topic],
        scan: impl FnOnce(&mut dyn Iterator<Item = &SharedEvent>) -> R,
    ) -> Option<(R, TopicsRead)> {
        if self.max_bytes == 0 {
            return None;
        }
        let ring = self.read_lock();
        let newest = ring.events.back()?.seq();
        if after < ring.base || newest <= after {
            return None;
        }
        let lists: Vec<&VecDeque<u64>> = topics
            .iter()
            .filter_map(|t| ring.by_topic.get(*t))
            .collect();
        let numbers: Vec<u64> = match lists.as_slice() {
            [one] => ring.after(one, after).collect(),
            many => {
                let mut all: Vec<u64> = many.iter().flat_map(|l| ring.after(l, after)).collect();
                all.sort_unstable();
                all
            }
        };
        let read = TopicsRead {
            last: numbers.last().map(|&n| ring.numbered(n).seq()),
            newest,
        };
        let answer = scan(&mut numbers.iter().map(|&n| ring.numbered(n)));
        Some((answer, read))
    }

    /// Every delivered event above this seq is in the ring (`None`: the ring is off).
    pub(crate) fn base(&self) -> Option<u64> {
        (self.max_bytes > 0).then(|| self.read_lock().base)
    }

    /// Events and bytes (`EventRecord::size`) held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let ring = self.read_lock();
        (ring.events.len(), ring.bytes)
    }
}

#[cfg(test)]
mod tests {
    use tidings_proto::{Event, EventId, EventType, Topic};

    use super::*;
    use crate::record::EventRecord;

    fn event(seq: u64, data_len: usize) -> SharedEvent {
        on("t", seq, data_len)
    }

    fn on(topic: &str, seq: u64, data_len: usize) -> SharedEvent {
        EventRecord::new(Event {
            id: EventId { epoch: 1, seq },
            topic: Topic::new(topic).unwrap(),
            event_type: EventType::new("x").unwrap(),
            key: None,
            origin: None,
            time: 0,
            data: serde_json::value::RawValue::from_string(format!("\"{}\"", "d".repeat(data_len)))
                .unwrap(),
        })
    }

    fn seqs_after(tail: &ReplayTail, after: u64) -> Option<Vec<u64>> {
        tail.read_after(after, |it| it.map(|e| e.seq()).collect())
    }

    fn topics_after(
        tail: &ReplayTail,
        after: u64,
        topics: &[&str],
    ) -> Option<(Vec<u64>, TopicsRead)> {
        let topics: Vec<Topic> = topics.iter().map(|t| Topic::new(t).unwrap()).collect();
        let topics: Vec<&Topic> = topics.iter().collect();
        tail.read_topics_after(after, &topics, |it| it.map(|e| e.seq()).collect())
    }

    #[test]
    fn the_topic_index_gives_each_topics_events_in_seq_order_and_follows_eviction() {
        let size = on("a", 1, 10).size();
        let tail = ReplayTail::new(6 * size, 0);
        // a b a c b a
        for (seq, t) in [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "b"), (6, "a")] {
            tail.push(&on(t, seq, 10));
        }
        let read = |last, newest| TopicsRead { last, newest };
        assert_eq!(
            topics_after(&tail, 0, &["a"]),
            Some((vec![1, 3, 6], read(Some(6), 6)))
        );
        assert_eq!(
            topics_after(&tail, 1, &["b", "a"]),
            Some((vec![2, 3, 5, 6], read(Some(6), 6)))
        );
        assert_eq!(
            topics_after(&tail, 4, &["c"]),
            Some((vec![], read(None, 6))),
            "nothing of c after 4: the ring still answers, up to its newest"
        );
        assert_eq!(
            topics_after(&tail, 0, &["nope"]),
            Some((vec![], read(None, 6)))
        );
        assert_eq!(
            topics_after(&tail, 6, &["a"]),
            None,
            "nothing after the newest"
        );
        // Evicting 1 (a) and 2 (b) drops them from their lists.
        tail.push(&on("c", 7, 10));
        tail.push(&on("c", 8, 10));
        assert_eq!(tail.base(), Some(2));
        assert_eq!(topics_after(&tail, 1, &["a"]), None, "below base");
        assert_eq!(
            topics_after(&tail, 2, &["a", "b", "c"]),
            Some((vec![3, 4, 5, 6, 7, 8], read(Some(8), 8)))
        );
        assert_eq!(
            topics_after(&tail, 2, &["b"]),
            Some((vec![5], read(Some(5), 8)))
        );
        // Evicting every event of b forgets the topic.
        for seq in 9..=14 {
            tail.push(&on("a", seq, 10));
        }
        assert!(
            !tail
                .read_lock()
                .by_topic
                .contains_key(&Topic::new("b").unwrap())
        );
        assert_eq!(tail.read_lock().by_topic.len(), 1);
        // An event larger than the ring empties the index too.
        tail.push(&on("d", 15, 10 + 10 * size));
        assert!(tail.read_lock().by_topic.is_empty());
        tail.push(&on("a", 16, 10));
        assert_eq!(
            topics_after(&tail, 15, &["a"]),
            Some((vec![16], read(Some(16), 16)))
        );
    }

    #[test]
    fn keeps_the_newest_within_its_bytes_and_raises_base_as_it_evicts() {
        let size = event(1, 10).size();
        let tail = ReplayTail::new(3 * size, 10);
        assert_eq!(tail.base(), Some(10));
        assert_eq!(seqs_after(&tail, 10), None, "empty: the store answers");
        for seq in 11..=13 {
            tail.push(&event(seq, 10));
        }
        assert_eq!(tail.held(), (3, 3 * size));
        assert_eq!(tail.base(), Some(10));
        assert_eq!(seqs_after(&tail, 10), Some(vec![11, 12, 13]));
        assert_eq!(seqs_after(&tail, 12), Some(vec![13]));
        assert_eq!(seqs_after(&tail, 13), None, "nothing after the newest");
        assert_eq!(seqs_after(&tail, 9), None, "below base: the store answers");
        tail.push(&event(14, 10));
        assert_eq!(tail.held(), (3, 3 * size), "bounded by bytes");
        assert_eq!(tail.base(), Some(11), "evicting 11 raised base to it");
        assert_eq!(seqs_after(&tail, 10), None);
        assert_eq!(seqs_after(&tail, 11), Some(vec![12, 13, 14]));
        // A large event evicts as many small ones as it needs.
        tail.push(&event(15, 10 + 2 * size));
        assert_eq!(tail.held().0, 1);
        assert_eq!(tail.base(), Some(14));
        assert_eq!(seqs_after(&tail, 14), Some(vec![15]));
    }

    #[test]
    fn an_event_larger_than_the_ring_empties_it() {
        let tail = ReplayTail::new(200, 0);
        tail.push(&event(1, 10));
        tail.push(&event(2, 500));
        assert_eq!(tail.held(), (0, 0));
        assert_eq!(tail.base(), Some(2));
        tail.push(&event(3, 10));
        assert_eq!(seqs_after(&tail, 2), Some(vec![3]));
        assert_eq!(seqs_after(&tail, 1), None);
    }

    #[test]
    fn off_at_zero_bytes() {
        let tail = ReplayTail::new(0, 5);
        tail.push(&event(6, 1));
        assert_eq!(tail.held(), (0, 0));
        assert_eq!(tail.base(), None);
        assert_eq!(seqs_after(&tail, 5), None);
    }

    #[test]
    fn skipped_seqs_are_found_by_position() {
        // Cluster mode: the log may skip numbers.
        let tail = ReplayTail::new(10_000, 3);
        for seq in [5, 9, 10, 20] {
            tail.push(&event(seq, 1));
        }
        assert_eq!(seqs_after(&tail, 3), Some(vec![5, 9, 10, 20]));
        assert_eq!(seqs_after(&tail, 6), Some(vec![9, 10, 20]));
        assert_eq!(seqs_after(&tail, 10), Some(vec![20]));
    }
}
