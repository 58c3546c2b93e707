//! Tidings cluster mode on NATS JetStream: every node publishes into one stream, and the
//! stream's sequence is the one id space of every node (docs/scaling.md).
//!
//! # Layout
//! - `subject`: the total, reversible mapping of a Tidings topic to a NATS subject.

pub mod subject;
