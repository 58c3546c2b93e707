//! Client-id sessions through the hub: `subscribed` vs `resumed`, what a resume replays (from
//! the confirmed place only), echo suppression live and in replay, the TTL on the injected
//! clock, a restart through the store's `SessionStore`, and a trimmed place.

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::{Cursor, Epoch, EventId, EventType, Key, Pattern, Selector, Topic};

use super::*;
use crate::clock::ManualClock;
use crate::request::NewEvent;
use crate::store::{MemoryStore, Retention};
use crate::subscription::Step;

const E: Epoch = Epoch(7);

fn store(retention: Retention) -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(E, retention))
}

fn unbounded() -> Retention {
    Retention {
        max_events: None,
        max_bytes: None,
        max_age: None,
    }
}

fn ev(topic: &str) -> NewEvent {
    NewEvent {
        topic: Topic::new(topic).unwrap(),
        event_type: EventType::new("changed").unwrap(),
        key: None,
        data: serde_json::value::RawValue::from_string("{}".to_owned()).unwrap(),
    }
}

async fn publish(hub: &Hub, topic: &str, origin: Option<&str>) -> u64 {
    hub.publish(PublishBatch {
        events: vec![ev(topic)],
        origin: origin.map(|o| Key::new(o).unwrap()),
        idempotency_key: None,
    })
    .await
    .unwrap()[0]
        .seq
}

fn req(client: &str, cursor: Option<Cursor>) -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::parse("files/*").unwrap()],
            types: vec![],
        },
        cursor,
        client_id: Some(Key::new(client).unwrap()),
    }
}

/// Every step ready now, events as seqs.
async fn ready(sub: &mut Subscription) -> (Vec<u64>, Vec<Step>) {
    let mut seqs = Vec::new();
    let mut steps = Vec::new();
    loop {
        let mut out = Vec::new();
        match tokio::time::timeout(Duration::ZERO, sub.next(&mut out)).await {
            Err(_) => return (seqs, steps),
            Ok(Step::Events) => seqs.extend(out.iter().map(|e| e.seq())),
            Ok(step) => steps.push(step),
        }
    }
}

fn session(resumed: bool, seq: u64) -> Step {
    Step::Session {
        resumed,
        cursor: EventId::new(E, seq),
    }
}

#[tokio::test]
async fn a_resume_replays_after_the_confirmed_place_once_and_in_order() {
    let hub = Hub::new(store(unbounded()), Limits::default());
    publish(&hub, "files/a", None).await; // 1, before the session
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    let place = sub.session_place().unwrap();
    assert_eq!(
        place.get(),
        1,
        "a new session starts where the stream starts"
    );
    for t in ["files/a", "other", "files/b"] {
        publish(&hub, t, None).await; // 2, 3, 4
    }
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(steps, vec![session(false, 1)]);
    assert_eq!(seqs, vec![2, 4]);
    // Only 2 is known to have reached the client: 4 was written, not acknowledged.
    place.confirm(2);
    drop(sub);
    assert_eq!(hub.stats().sessions, 1);
    publish(&hub, "files/c", None).await; // 5, while away
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    publish(&hub, "files/d", None).await; // 6, live
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(steps, vec![session(true, 2)]);
    assert_eq!(
        seqs,
        vec![4, 5, 6],
        "4 again (never confirmed), then 5, then live"
    );
}

#[tokio::test]
async fn last_event_id_is_exact_and_wins_over_the_place() {
    let hub = Hub::new(store(unbounded()), Limits::default());
    let sub = hub.subscribe(req("c1", None)).unwrap();
    for _ in 0..3 {
        publish(&hub, "files/a", None).await;
    }
    drop(sub);
    let cursor = Cursor::After(EventId::new(E, 2));
    let mut sub = hub.subscribe(req("c1", Some(cursor))).unwrap();
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(steps, vec![session(true, 2)]);
    assert_eq!(seqs, vec![3]);
    assert_eq!(sub.session_place().unwrap().get(), 2);
}

#[tokio::test]
async fn own_events_are_suppressed_live_and_in_replay() {
    let hub = Hub::new(store(unbounded()), Limits::default());
    let mut me = hub.subscribe(req("me", None)).unwrap();
    let mut other = hub.subscribe(req("other", None)).unwrap();
    publish(&hub, "files/a", Some("me")).await; // 1
    publish(&hub, "files/a", None).await; // 2
    assert_eq!(ready(&mut me).await.0, vec![2]);
    assert_eq!(ready(&mut other).await.0, vec![1, 2]);
    drop(me);
    publish(&hub, "files/a", Some("me")).await; // 3, while away: replay skips it
    publish(&hub, "files/a", Some("other")).await; // 4
    let mut me = hub.subscribe(req("me", None)).unwrap();
    let (seqs, steps) = ready(&mut me).await;
    assert_eq!(steps, vec![session(true, 0)]);
    assert_eq!(seqs, vec![2, 4]);
}

#[tokio::test]
async fn a_session_expires_after_its_ttl_on_the_hubs_clock() {
    let clock = ManualClock::new(1_000);
    let limits = Limits {
        session_ttl_ms: 60_000,
        ..Limits::default()
    };
    let hub = Hub::with_clock(store(unbounded()), limits, clock.clone());
    drop(hub.subscribe(req("c1", None)).unwrap());
    clock.advance(59_999);
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    assert_eq!(ready(&mut sub).await.1, vec![session(true, 0)]);
    drop(sub);
    clock.advance(60_000);
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    assert_eq!(ready(&mut sub).await.1, vec![session(false, 0)]);
}

#[tokio::test]
async fn sessions_outlive_the_hub_through_its_store() {
    let s = store(unbounded());
    let hub = Hub::new(s.clone(), Limits::default());
    let sub = hub.subscribe(req("c1", None)).unwrap();
    publish(&hub, "files/a", None).await;
    sub.session_place().unwrap().confirm(1);
    drop(sub);
    publish(&hub, "files/b", None).await;
    hub.shutdown();
    hub.flush().await.unwrap();
    drop(hub);
    let hub = Hub::new(s, Limits::default());
    assert_eq!(hub.stats().sessions, 1);
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(steps, vec![session(true, 1)]);
    assert_eq!(seqs, vec![2]);
}

#[tokio::test]
async fn a_place_overtaken_by_retention_is_resumed_then_reset() {
    let retention = Retention {
        max_events: Some(2),
        ..unbounded()
    };
    let hub = Hub::new(store(retention), Limits::default());
    drop(hub.subscribe(req("c1", None)).unwrap());
    for _ in 0..5 {
        publish(&hub, "files/a", None).await;
    }
    let mut sub = hub.subscribe(req("c1", None)).unwrap();
    let (seqs, steps) = ready(&mut sub).await;
    assert_eq!(
        steps,
        vec![
            session(true, 5),
            Step::Reset {
                reason: ResetReason::CursorExpired,
                resume_after: EventId::new(E, 5),
            }
        ]
    );
    assert!(seqs.is_empty(), "never a silent gap: {seqs:?}");
}

#[tokio::test]
async fn an_evicted_session_is_subscribed_again() {
    let limits = Limits {
        max_sessions: 1,
        ..Limits::default()
    };
    let hub = Hub::new(store(unbounded()), limits);
    drop(hub.subscribe(req("a", None)).unwrap());
    drop(hub.subscribe(req("b", None)).unwrap());
    assert_eq!(hub.stats().sessions, 1);
    let mut sub = hub.subscribe(req("a", None)).unwrap();
    assert_eq!(ready(&mut sub).await.1, vec![session(false, 0)]);
}
