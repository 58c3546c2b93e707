//! Publishing: one event or a batch per call, as one request with a fresh `Idempotency-Key`
//! that every retry of that call reuses, so a retry after a lost answer is stored once.
//! Transient failures (network, timeout, 5xx) are retried with a short bounded backoff.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tidings_proto::api::PublishResponse;
use tidings_proto::{EventId, EventType, Key, Topic};

use crate::backoff::{Backoff, random_unit};
use crate::client::{Client, MAX_ERROR_BYTES, read_capped};
use crate::error::{Error, ErrorKind};

/// Bound on a publish answer: a few dozen bytes per id, for batches far beyond the hub's limit.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// An event to publish. Its topic, type and key are validated when it is made, so a bad one
/// is refused before anything is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Where to publish it.
    pub topic: Topic,
    /// What kind of event it is.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The entity it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<Key>,
    /// The payload, as JSON text.
    #[serde(default = "json_null")]
    pub data: Box<RawValue>,
}

fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

impl NewEvent {
    /// An event of `event_type` on `topic` carrying `data` (anything that serializes to
    /// JSON).
    pub fn new(topic: &str, event_type: &str, data: &impl Serialize) -> Result<NewEvent, Error> {
        let data = serde_json::value::to_raw_value(data)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("data: {e}")))?;
        Ok(NewEvent {
            topic: Topic::new(topic).map_err(|e| invalid("topic", e))?,
            event_type: EventType::new(event_type).map_err(|e| invalid("type", e))?,
            key: None,
            data,
        })
    }

    /// The same event with data given as JSON text, checked to be one JSON value.
    pub fn with_json(mut self, json: &str) -> Result<NewEvent, Error> {
        self.data = tidings_proto::json::compact(json)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("data: {e}")))?;
        Ok(self)
    }

    /// The same event about the entity `key` (a download id, a file path, …).
    pub fn key(mut self, key: &str) -> Result<NewEvent, Error> {
        self.key = Some(Key::new(key).map_err(|e| invalid("key", e))?);
        Ok(self)
    }
}

fn invalid(field: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("{field}: {e}"))
}

impl Client {
    /// Publishes one event and returns its id: `None` when a coalescing window on the hub
    /// holds it (accepted; it goes out when the window closes, unless a newer event of its
    /// key supersedes it).
    pub async fn publish(&self, event: &NewEvent) -> Result<Option<EventId>, Error> {
        let body = serde_json::to_vec(event).expect("an event serializes");
        let mut ids = self.post_publish(Bytes::from(body), 1).await?;
        Ok(ids.remove(0))
    }

    /// Publishes a batch, stored all or nothing, and returns the ids in order (`None` for an
    /// event a coalescing window holds). The hub bounds a batch (1000 events and 1 MiB by
    /// default); split larger inputs.
    pub async fn publish_batch(&self, events: &[NewEvent]) -> Result<Vec<Option<EventId>>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::to_vec(events).expect("events serialize");
        self.post_publish(Bytes::from(body), events.len()).await
    }

    async fn post_publish(&self, body: Bytes, count: usize) -> Result<Vec<Option<EventId>>, Error> {
        let key = idempotency_key();
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        loop {
            let err = match self.post_once(body.clone(), &key).await {
                Ok(ids) if ids.len() == count => return Ok(ids),
                Ok(ids) => Error::new(
                    ErrorKind::Protocol,
                    format!("the hub answered {} ids for {count} events", ids.len()),
                ),
                Err(e) => e,
            };
            if err.is_permanent() || backoff.failures() + 1 >= self.inner.publish_attempts {
                return Err(err);
            }
            tokio::time::sleep(backoff.next_delay(random_unit())).await;
        }
    }

    async fn post_once(&self, body: Bytes, key: &str) -> Result<Vec<Option<EventId>>, Error> {
        let resp = self
            .request(reqwest::Method::POST, "/publish")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .timeout(self.inner.request_timeout)
            .body(body)
            .send()
            .await
            .map_err(Error::from_reqwest)?;
        let status = resp.status().as_u16();
        let bytes = if status == 200 {
            read_capped(resp, MAX_ANSWER_BYTES, false).await?
        } else {
            read_capped(resp, MAX_ERROR_BYTES, true).await?
        };
        if status != 200 {
            return Err(Error::from_answer(status, &bytes));
        }
        let answer: PublishResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                "the publish answer is not `{\"ids\":[…]}`",
            )
            .with_source(e)
        })?;
        answer
            .ids
            .iter()
            .map(|id| {
                // An empty id: a coalescing window holds the event.
                if id.is_empty() {
                    return Ok(None);
                }
                id.parse().map(Some).map_err(|e| {
                    Error::new(ErrorKind::Protocol, format!("the hub answered id `{id}`"))
                        .with_source(e)
                })
            })
            .collect()
    }
}

/// 128 random bits, hex: unique per publish call.
fn idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: fall back to time and a counter, still unique within this process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&t.to_le_bytes());
        bytes[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
