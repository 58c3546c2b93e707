//! Saved client-id sessions in the store file: replaced as a whole, read back after a reopen,
//! and a hub over the reopened store resumes the session where its place was.

use std::sync::Arc;

use tidings_core::{
    Hub, Limits, NewEvent, PublishBatch, SavedSession, SessionStore, Step, SubscribeRequest,
};
use tidings_proto::{EventType, Key, Pattern, Selector, Topic};

use super::durable;

fn saved(id: &str, place: u64) -> SavedSession {
    SavedSession {
        client_id: id.to_owned(),
        patterns: vec!["files/*".to_owned()],
        types: vec!["changed".to_owned()],
        epoch: 1,
        place,
        detached_at: 1_700_000_000_000,
    }
}

#[tokio::test]
async fn saved_sessions_are_replaced_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    {
        let store = durable(&path);
        assert!(
            store.load_sessions().unwrap().is_empty(),
            "a new file has none"
        );
        store
            .save_sessions(vec![saved("a", 1), saved("b", 2)])
            .await
            .unwrap();
        store.save_sessions(vec![saved("b", 5)]).await.unwrap();
    }
    let store = durable(&path);
    assert_eq!(store.load_sessions().unwrap(), vec![saved("b", 5)]);
}

fn request() -> SubscribeRequest {
    SubscribeRequest {
        selector: Selector {
            patterns: vec![Pattern::parse("files/*").unwrap()],
            types: vec![],
        },
        cursor: None,
        client_id: Some(Key::new("3f7c3393-eecf-4c2a-9a6b-000000000001").unwrap()),
    }
}

async fn publish(hub: &Hub) -> u64 {
    let event = NewEvent {
        topic: Topic::new("files/x").unwrap(),
        event_type: EventType::new("changed").unwrap(),
        key: None,
        data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
    };
    hub.publish(PublishBatch {
        events: vec![event],
        origin: None,
        idempotency_key: None,
    })
    .await
    .unwrap()[0]
        .seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_on_the_reopened_store_resumes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.redb");
    let (first, second) = {
        let hub = Hub::new(Arc::new(durable(&path)), Limits::default());
        let sub = hub.subscribe(request()).unwrap();
        let first = publish(&hub).await;
        sub.session_place().unwrap().confirm(first);
        drop(sub);
        let second = publish(&hub).await;
        hub.shutdown();
        hub.flush().await.unwrap();
        (first, second)
    };
    let hub = Hub::new(Arc::new(durable(&path)), Limits::default());
    let mut sub = hub.subscribe(request()).unwrap();
    let mut out = Vec::new();
    match sub.next(&mut out).await {
        Step::Session { resumed, cursor } => {
            assert!(resumed);
            assert_eq!(cursor.seq, first);
        }
        other => panic!("expected the session step, got {other:?}"),
    }
    assert_eq!(sub.next(&mut out).await, Step::Events);
    let seqs: Vec<u64> = out.iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, vec![second]);
}
