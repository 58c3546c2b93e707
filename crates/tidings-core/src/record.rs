//! `EventRecord`: an event as the engine shares it between the store, the fan-out and every
//! connection, with each wire encoding computed at most once and shared by all subscribers.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tidings_proto::Event;

/// How many distinct wire encodings one event can carry at once. Slots are per encoding, not
/// per transport: the server uses 0 for SSE frames, 1 for the JSON `event` shape and 2 for
/// the JSON `envelope` shape (WebSocket, NDJSON and long-poll share 1 and 2); 3 is free.
pub const FORMAT_SLOTS: usize = 4;

/// A slot in the per-event encoding cache, owned by one wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatSlot(pub usize);

/// An event plus its cached encodings. Shared as `Arc<EventRecord>`.
#[derive(Debug)]
pub struct EventRecord {
    /// The event.
    pub event: Event,
    /// A `[[coalesce]]` rule keyed it and it is no terminal: a lagging subscriber's queue may
    /// replace it with a newer event of the same topic and key (`SubscriberQueue::offer`).
    pub conflatable: bool,
    encoded: [OnceLock<Bytes>; FORMAT_SLOTS],
}

/// The unit the engine passes around: cheap to clone, immutable.
pub type SharedEvent = Arc<EventRecord>;

impl EventRecord {
    /// Wraps an event.
    pub fn new(event: Event) -> SharedEvent {
        EventRecord::with_conflation(event, false)
    }

    /// Wraps an event a lagging subscriber's queue may (or may not) conflate.
    pub fn with_conflation(event: Event, conflatable: bool) -> SharedEvent {
        Arc::new(EventRecord {
            conflatable: conflatable && event.key.is_some(),
            event,
            encoded: Default::default(),
        })
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.event.id.seq
    }

    /// Approximate size in memory and on the wire: used for byte bounds.
    pub fn size(&self) -> usize {
        let e = &self.event;
        64 + e.topic.as_str().len()
            + e.event_type.as_str().len()
            + e.data.get().len()
            + e.key.as_ref().map_or(0, |k| k.as_str().len())
            + e.origin.as_ref().map_or(0, |k| k.as_str().len())
    }

    /// The encoding in `slot`, computed by `encode` on first use and shared afterwards.
    ///
    /// # Panics
    /// If `slot` is not below [`FORMAT_SLOTS`] (slots are fixed at start-up).
    pub fn encoded(&self, slot: FormatSlot, encode: impl FnOnce(&Event) -> Bytes) -> &Bytes {
        self.encoded[slot.0].get_or_init(|| encode(&self.event))
    }
}
