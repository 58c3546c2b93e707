//! `Limits`: every bound on what a client can make the hub hold. The server takes its HTTP
//! limits from here too, so one struct documents them all.

/// Bounds on input and on per-subscriber state. Defaults suit one machine serving tens of
/// thousands of subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest publish request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest `data` of one event, in bytes (compact JSON).
    pub max_data_bytes: usize,
    /// Most events in one publish batch.
    pub max_batch_events: usize,
    /// Most topic patterns in one subscription.
    pub max_patterns: usize,
    /// Most event types in one subscription's type filter.
    pub max_types: usize,
    /// Events a subscriber may have queued before it counts as too slow and is closed with
    /// `reconnect-required` (it then resumes from history).
    pub subscriber_queue_events: usize,
    /// Bytes (`EventRecord::size`) a subscriber may have queued before it counts as too
    /// slow, so large events cannot make one slow subscriber pin unbounded memory.
    pub subscriber_queue_bytes: usize,
    /// Events a subscriber may have queued before its queue is conflated: queued events a
    /// newer event of the same topic and key superseded (those a `[[coalesce]]` rule keyed,
    /// terminals excepted) are dropped, so a slow client catches up to the current state.
    /// Only past `subscriber_queue_events` is it closed. 0 turns conflation off.
    pub subscriber_queue_soft_events: usize,
    /// Most events read from the store per replay step.
    pub replay_chunk: usize,
    /// Most bytes (`EventRecord::size`) read from the store per replay step. One subscriber's
    /// replay holds at most one such chunk at a time: it is handed to the connection, which
    /// writes it before asking for the next. (Raised to the largest possible event if lower,
    /// so one event always fits.)
    pub replay_chunk_bytes: usize,
    /// Most bytes (`EventRecord::size`) of replayed events held at once across all
    /// subscribers. A replay step takes `replay_chunk_bytes` from this budget before it reads
    /// and gives the unused part back at once, the rest when the connection asks for the next
    /// step (it has written the chunk by then) or closes. A step that finds the budget spent
    /// waits for room, so thousands of clients resuming at once after a restart cost this
    /// much memory, not thousands of chunks. Each held event's wire encoding (cached on the
    /// event) adds about its size again. (A budget smaller than one read is one read.)
    pub replay_memory_bytes: usize,
    /// Most bytes (`EventRecord::size`) of recently delivered events the hub keeps in memory
    /// (the replay tail), so a subscription resuming near the head replays them from there:
    /// no store read, no decode, and the wire encodings the live connections already made.
    /// Only a resume from further back reads the store. Each kept event's cached encodings
    /// add about its size again. 0 turns the tail off (every replay reads the store).
    pub replay_cache_bytes: usize,
    /// Most events handed to a connection in one step (one write).
    pub delivery_batch: usize,
    /// Most bytes (`EventRecord::size`) of one snapshot (`GET /snapshot`, `snapshot=1`): a
    /// larger one is refused (`SnapshotError::TooLarge`) rather than cut short. A snapshot
    /// read takes this much of `replay_memory_bytes` while it reads, and keeps what it holds
    /// until the connection has written it. (Lowered to `replay_memory_bytes` if higher.)
    pub snapshot_max_bytes: usize,
    /// Idempotency keys the hub remembers in memory (oldest forgotten first). A store that
    /// keeps history also keeps each key with its events, so a retry of a forgotten key still
    /// finds it there; in `memory` mode a forgotten key publishes again.
    pub idempotency_keys: usize,
    /// Bytes the remembered idempotency keys may take: each costs its length plus a fixed
    /// overhead of about 170 bytes (the batch's fingerprint and id range, the map and order
    /// slots); the oldest are forgotten first. The default holds the default number of keys
    /// of up to about 100 bytes each.
    pub idempotency_cache_bytes: usize,
    /// Longest idempotency key, in bytes.
    pub max_idempotency_key_bytes: usize,
    /// How long a client-id session is kept after its last connection went away, in ms.
    pub session_ttl_ms: u64,
    /// Most client-id sessions held at once (the one detached longest goes first).
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_data_bytes: 64 << 10,
            max_batch_events: 1000,
            max_patterns: 32,
            max_types: 32,
            subscriber_queue_events: 4096,
            subscriber_queue_bytes: 4 << 20,
            subscriber_queue_soft_events: 1024,
            replay_chunk: 1024,
            replay_chunk_bytes: 64 << 10,
            replay_memory_bytes: 32 << 20,
            replay_cache_bytes: 16 << 20,
            delivery_batch: 256,
            snapshot_max_bytes: 8 << 20,
            idempotency_keys: 100_000,
            idempotency_cache_bytes: 32 << 20,
            max_idempotency_key_bytes: 256,
            session_ttl_ms: 5 * 60 * 1000,
            max_sessions: 100_000,
        }
    }
}
