//! The Tidings fan-out engine: assigns event ids, writes history through an `EventStore`,
//! fans each event out to the subscriptions whose selectors match, and hands a resuming
//! subscriber from history to the live stream without a gap or a duplicate.
//!
//! No sockets, no files, no HTTP: everything that does I/O is an adapter behind a trait
//! (`EventStore`), so the engine runs in a plain `#[tokio::test]` with `MemoryStore`.
//!
//! # Layout
//! - `hub`: `Hub`, the cheap-clone handle; `publish` and `subscribe`.
//! - `registry`: which subscriptions match a topic.
//! - `subscription`: one subscriber's bounded queue and its replay→live state machine.
//! - `store`: the `EventStore` trait and `MemoryStore`.
//! - `record`: `EventRecord`, an event with its per-format encodings cached.
//! - `idempotency`: keys scoped per credential, batch fingerprints, and the bounded cache of
//!   recent keyed publishes.
//! - `limits`: every bound on what the network can make the engine hold.

pub mod clock;
mod error;
mod hub;
mod idempotency;
mod limits;
pub mod record;
mod registry;
pub mod store;
mod subscription;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use error::{PublishError, SubscribeError};
pub use hub::{Hub, HubStats, NewEvent, PublishBatch, SubscribeRequest};
pub use idempotency::{Fingerprint, IdempotencyKey, IdempotencyScope};
pub use limits::Limits;
pub use record::{EventRecord, FormatSlot, SharedEvent};
pub use store::{DynStore, EventStore, KeyedBatch, MemoryStore, Retention, StoreError, StoreStats};
pub use subscription::{CloseReason, ResetReason, Step, Subscription};
