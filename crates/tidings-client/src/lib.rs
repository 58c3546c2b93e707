//! A client for the Tidings event hub: publish events, and subscribe
//! to a stream that survives restarts without losing or repeating anything.
//!
//! Everything a long-lived subscriber needs is on by default:
//!
//! - **Resume.** Every reconnect sends `Last-Event-ID` with the last id seen, so the hub
//!   replays exactly what was missed, then goes live.
//! - **Backoff.** A failed connection is retried after 1 s, doubling to 32 s, with jitter;
//!   a successful connection resets it. The hub's `retry:` hint replaces the first delay.
//! - **`reset`.** When the hub cannot honour the cursor (history expired, another store),
//!   the stream yields [`Item::Reset`]: refetch your state; the stream goes on from there.
//! - **`reconnect-required`.** When the hub drains (shutdown, slow consumer) the client
//!   reconnects at once and resumes.
//! - **Dead connections.** A stream silent for longer than a few keep-alive intervals is
//!   dropped and reopened.
//! - **Safe publish retries.** Each publish call gets a fresh `Idempotency-Key`, reused on
//!   its retries, so a retried publish is stored once.
//!
//! Errors say whether retrying can help ([`Error::is_permanent`]): a 401, 403 or other 4xx
//! ends a subscription and is returned; network failures and 5xx are retried.
//!
//! # Publish
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_client::Error> {
//! use tidings_client::{Client, NewEvent};
//!
//! let client = Client::builder("http://127.0.0.1:1700").token("secret").build()?;
//! let event = NewEvent::new(
//!     "downloads/abc-123",
//!     "progress",
//!     &serde_json::json!({"DownloadID": "abc-123", "Downloaded": 52428800}),
//! )?
//! .key("abc-123")?;
//! // `None`: a coalescing window on the hub holds it (see the hub's `[[coalesce]]`).
//! if let Some(id) = client.publish(&event).await? {
//!     println!("published {id}");
//! }
//!
//! // A batch is stored all or nothing; the ids come back in order.
//! let done = NewEvent::new("downloads/abc-123", "complete", &serde_json::json!({}))?;
//! let ids = client.publish_batch(&[event, done]).await?;
//! assert_eq!(ids.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # Subscribe
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidings_client::Error> {
//! use futures_util::StreamExt as _;
//! use tidings_client::{Client, Item};
//!
//! let client = Client::new("http://127.0.0.1:1700")?;
//! let mut stream = std::pin::pin!(client.subscribe(["downloads/*"]));
//! while let Some(item) = stream.next().await {
//!     match item? {
//!         Item::Event(e) => println!("{} {} {}", e.id, e.event_type, e.data),
//!         Item::Reset(r) => println!("history lost ({}): reload the downloads list", r.reason),
//!         Item::Disconnected(d) => eprintln!("{}; reconnecting in {:?}", d.cause, d.retry_in),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`SubscribeOptions`] adds type filters, a starting point ([`Since::Earliest`] replays all
//! retained history; [`Since::Snapshot`] sends the current state first, the newest event per
//! key, then [`Item::Snapshot`], then live events from exactly there) and the transport: SSE (the default), JSON lines or WebSocket; the last
//! two also carry each event's topic and key ([`Framing`]). A failure that cannot be retried
//! ends the stream after yielding it as `Err`.
//!
//! [`Client::snapshot`] fetches that state on its own (`GET /snapshot`), with the cursor a
//! subscription continues from ([`Snapshot::since`]).
//!
//! This build speaks plain `http://` only (no TLS stack); put a TLS-terminating proxy in
//! front of a remote hub.
//!
//! # Backoff
//!
//! The schedule is a plain value, [`Backoff`], so it can be inspected or reused:
//!
//! ```
//! use std::time::Duration;
//! use tidings_client::Backoff;
//!
//! let mut b = Backoff::reconnect();
//! // Jitter 0 gives the full delay: 1 s, 2 s, 4 s, … 32 s.
//! assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
//! assert_eq!(b.next_delay(0.0), Duration::from_secs(2));
//! // Any jitter keeps the delay within (half, whole] of the base.
//! let d = b.next_delay(0.9);
//! assert!(d > Duration::from_secs(2) && d <= Duration::from_secs(4));
//! b.reset();
//! assert_eq!(b.next_delay(0.0), Duration::from_secs(1));
//! ```
#![deny(missing_docs)]

mod backoff;
mod client;
mod error;
mod frame;
mod publish;
mod snapshot;
mod subscribe;
mod ws;

pub use backoff::Backoff;
pub use client::{Client, ClientBuilder};
pub use error::{Error, ErrorKind};
pub use publish::NewEvent;
pub use snapshot::Snapshot;
pub use subscribe::{
    Connected, DisconnectCause, Disconnected, Event, Framing, Item, Reset, Since, SnapshotEnd,
    SubscribeOptions,
};
pub use tidings_proto::{ErrorCode, EventId};
