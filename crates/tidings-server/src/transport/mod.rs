//! Per-connection delivery: turning a `Subscription` into the bytes of one wire format.

pub(crate) mod sse;
