//! Long-poll answers over a store whose reads take time or fail.

use std::sync::Arc;
use std::time::Duration;

use tidings_core::store::BoxFuture;
use tidings_core::{
    DynStore, EventStore, Hub, Limits, MemoryStore, NewEvent, PublishBatch, ReadLimit, Retention,
    SharedEvent, StoreError, StoreLayer, SubscribeRequest,
};
use tidings_proto::{Cursor, Epoch, EventType, Pattern, Selector, Topic};

use super::*;

/// A `MemoryStore` whose history reads take `delay`, or fail with `fail`'s text.
#[derive(Debug)]
struct SlowStore {
    inner: MemoryStore,
    delay: Duration,
    fail: Option<&'static str>,
}

impl StoreLayer for SlowStore {
    fn inner(&self) -> &dyn EventStore {
        &self.inner
    }
    fn read_chunk(
        &self,
        after: u64,
        limit: ReadLimit,
    ) -> BoxFuture<'static, Result<Vec<SharedEvent>, StoreError>> {
        let read = self.inner.read_chunk(after, limit);
        let (delay, fail) = (self.delay, self.fail);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            match fail {
                Some(text) => Err(StoreError::Io(text.into())),
                None => read.await,
            }
        })
    }
}

async fn hub_with(delay: Duration, fail: Option<&'static str>, events: usize) -> Hub {
    let store: DynStore = Arc::new(SlowStore {
        inner: MemoryStore::new(Epoch(7), Retention::default()),
        delay,
        fail,
    });
    // No replay tail: the history these polls read is the store's, slow or failing.
    let limits = Limits {
        replay_cache_bytes: 0,
        ..Limits::default()
    };
    let hub = Hub::new(store, limits);
    let batch = (0..events)
        .map(|i| NewEvent {
            topic: Topic::new(if i % 2 == 0 { "a" } else { "b" }).unwrap(),
            event_type: EventType::new("tick").unwrap(),
            key: None,
            data: serde_json::value::RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap(),
        })
        .collect();
    hub.publish(PublishBatch {
        events: batch,
        origin: None,
        idempotency_key: None,
    })
    .await
    .unwrap();
    hub
}

fn subscribe(hub: &Hub, topic: &str) -> crate::tracked::Tracked {
    crate::tracked::Tracked::untracked(
        hub.subscribe(SubscribeRequest {
            selector: Selector {
                patterns: vec![Pattern::parse(topic).unwrap()],
                types: vec![],
            },
            cursor: Some(Cursor::Earliest),
            client_id: None,
        })
        .unwrap(),
    )
}

fn names() -> crate::endpoint::SessionNames {
    crate::endpoint::SessionNames::default()
}

/// `timeout=0` with events after the cursor answers them, however long the store's read
/// takes (it raced the read against the timer and answered nothing).
#[tokio::test]
async fn timeout_zero_answers_the_history_that_exists() {
    let hub = hub_with(Duration::from_millis(30), None, 10).await;
    let body = answer(subscribe(&hub, "*"), Shape::Event, Duration::ZERO, &names())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 10, "{v}");
    assert_eq!(v["cursor"], "00000007-10");
}

/// History that matches nothing is read to the end, then the timeout applies to the wait:
/// an empty answer whose cursor is past the history, not a hang and not the old cursor.
#[tokio::test]
async fn timeout_zero_with_no_match_answers_empty_past_the_history() {
    let hub = hub_with(Duration::from_millis(30), None, 10).await;
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        answer(
            subscribe(&hub, "nothing-here"),
            Shape::Event,
            Duration::ZERO,
            &names(),
        ),
    )
    .await
    .expect("a timeout=0 poll answers at once")
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["cursor"], "00000007-10");
}

/// History that cannot be read is a 503 `store_unavailable`, with nothing of the cause.
#[tokio::test]
async fn an_unreadable_history_is_store_unavailable_without_the_cause() {
    let hub = hub_with(Duration::ZERO, Some("disk /dev/sdz1 sector 99 failed"), 3).await;
    let err = answer(subscribe(&hub, "*"), Shape::Event, Duration::ZERO, &names())
        .await
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 503);
    let body = String::from_utf8(err.body()).unwrap();
    assert!(body.contains("store_unavailable"), "{body}");
    assert!(!body.contains("sdz1"), "{body}");
}
