//! What callers hand the engine: `PublishBatch` (of `NewEvent`s) and `SubscribeRequest`,
//! validated at the edge, checked against `Limits` by the hub.

use serde_json::value::RawValue;
use tidings_proto::{Cursor, EventType, Key, Selector, Topic};

use crate::idempotency::IdempotencyKey;

/// An event to publish, already validated at the edge.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Topic to publish on.
    pub topic: Topic,
    /// Event type.
    pub event_type: EventType,
    /// Optional entity key.
    pub key: Option<Key>,
    /// Compact JSON payload.
    pub data: Box<RawValue>,
}

/// One publish: all of its events are stored and delivered, or none.
#[derive(Debug, Clone)]
pub struct PublishBatch {
    /// The events, in order.
    pub events: Vec<NewEvent>,
    /// The publisher's client id: not echoed to subscriptions with the same client id.
    pub origin: Option<Key>,
    /// Makes a retry of this batch (same key, same scope) return the original ids.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// What a subscription asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Topics and types.
    pub selector: Selector,
    /// Where to resume; `None` starts live.
    pub cursor: Option<Cursor>,
    /// The subscriber's client id (its own publishes are not delivered to it).
    pub client_id: Option<Key>,
}
