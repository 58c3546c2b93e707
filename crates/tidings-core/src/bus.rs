//! `Bus`: the sequencer of a cluster, beside `EventStore`. On one node the hub assigns seqs
//! under its lock; in a cluster a shared log (JetStream's stream) orders events, and every
//! node learns them from the log with their sequence (`Hub::ingest`).
//!
//! Contract every implementation keeps:
//! - `publish` is called by the hub under its lock, in the order the hub's publishes leave
//!   it; it must return at once (queue the work, hand back a future) and must enter the
//!   events into the log in the order of its calls, a batch's events in batch order.
//! - Its future resolves with one log sequence per event once the log acknowledged every one
//!   of them (the log has it as durably as it promises). A refused publish stored nothing the
//!   caller will ever be told of: its events may or may not be in the log, but an event is
//!   delivered only when a node ingests it from the log, and then with its log sequence.
//! - With an idempotency key, publishing the same key and batch again within the log's
//!   deduplication window resolves with the original sequences and stores nothing new; the
//!   same key with another batch (another `Fingerprint`) resolves with
//!   `BusError::IdempotencyConflict`.
//! - Sequences increase in log order and are the ids of the events on every node; the log's
//!   epoch (`EventStore::epoch` of the store that reads it) is every node's.
//!
//! The store a clustered hub is given reads history from the same log (`read_chunk`); the hub
//! never calls its `append`.

use std::fmt;
use std::sync::Arc;

use crate::idempotency::{Fingerprint, IdempotencyKey};
use crate::record::SharedEvent;
use crate::store::{BoxFuture, StoreError};

/// Why a bus refused a publish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The log could not take it (unreachable, refused, timed out).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The idempotency key was used, within the log's window, for another batch.
    #[error("the idempotency key was used for another batch")]
    IdempotencyConflict,
}

/// The log a clustered hub publishes into. See the module docs for the contract.
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// Enters `events` (their ids' seq is 0: the log assigns it) into the log, in order;
    /// resolves with each one's log sequence once the log acknowledged them all. `key` is
    /// the batch's idempotency key with the fingerprint of what was published under it.
    /// Called under the hub's lock: must not block.
    fn publish(
        &self,
        events: Vec<SharedEvent>,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>>;
}

/// Shared handle to any bus.
pub type DynBus = Arc<dyn Bus>;

/// Why `Hub::ingest` refused events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The event's id is of another epoch than the hub's (the log was recreated): this hub
    /// cannot deliver it; the node must be restarted to take the new epoch.
    #[error("event {id} is not of this hub's epoch {epoch:08x}")]
    Epoch {
        /// The event's id.
        id: tidings_proto::EventId,
        /// The hub's epoch.
        epoch: u32,
    },
}
