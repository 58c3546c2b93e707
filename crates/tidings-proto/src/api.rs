//! JSON bodies of the HTTP API that are not events themselves.

use serde::{Deserialize, Serialize};

/// Answer to a publish: the ids assigned, in the order of the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishResponse {
    /// One id per published event; an empty string for an event a coalescing window holds
    /// (accepted: it goes out when its window closes, unless a newer event of its key
    /// supersedes it or it is folded into a merged batch).
    pub ids: Vec<String>,
    /// How many of the events a coalescing window holds (left out when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub coalesced: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Payload of the `reset` event: the subscriber's cursor cannot be honoured, so it must
/// refetch its state; the stream continues live from `cursor`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResetNotice {
    /// `cursor_expired`, `epoch_mismatch`, `cursor_ahead` or `invalid_cursor`.
    pub reason: String,
    /// The id the stream continues after.
    pub cursor: String,
}

/// Payload of the `reconnect-required` event: the server is closing this stream; reconnect
/// at once with the last id seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReconnectNotice {
    /// `shutdown`, `slow_consumer`, `store_failed`, or `too_many_connections` (a stream
    /// refused at the connection limit).
    pub reason: String,
}
