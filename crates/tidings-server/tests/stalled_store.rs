//! The HTTP layer over a stalled store: with the store's commits held and its queue full,
//! `/readyz` and a new subscription still answer (they used to wait on the hub's lock,
//! which a publisher held while blocked in the store's queue).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use tidings_auth::Authorizer;
use tidings_core::testing::{HeldStore, unbounded};
use tidings_core::{Hub, Limits, MemoryStore};
use tidings_proto::Epoch;
use tidings_server::endpoint::{Endpoint, Origins, TransportOptions};
use tidings_server::{AppState, Edge, router};
use tower::ServiceExt;

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .expect("request")
}

/// Sends `req` from a thread of its own (a blocked hub blocks that thread, not the test) and
/// returns the status and the first body bytes, or gives the store up and fails after 5 s.
fn answers(store: &HeldStore, app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let app = app.clone();
    let what = req.uri().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let resp = app.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let mut body = resp.into_body().into_data_stream();
            let first = futures_util::StreamExt::next(&mut body).await;
            let bytes = first
                .and_then(Result::ok)
                .map(|b| b.to_vec())
                .unwrap_or_default();
            tx.send((status, bytes)).ok();
        });
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(answer) => answer,
        Err(_) => {
            store.abandon();
            panic!("{what} did not answer within 5 s while the store's commits were held");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_subscribe_answer_while_the_store_is_stalled() {
    const QUEUE: usize = 2;
    let store = HeldStore::new(Arc::new(MemoryStore::new(Epoch(1), unbounded())), QUEUE);
    let hub = Hub::new(store.clone(), Limits::default());
    let state = AppState {
        observers: Arc::new(tidings_server::Observers::new(
            tidings_server::Metrics::new(&[]).with_hub(&hub),
        )),
        hub,
        auth: Arc::new(Authorizer::new(vec![])),
        transport: TransportOptions::default(),
        edge: Edge::default(),
        credentials: Default::default(),
    };
    let app = router(state, &[Endpoint::default_events(Origins::SameOrigin)]);

    store.hold();
    let publishers: Vec<_> = (0..QUEUE * 4)
        .map(|i| {
            let req = Request::post("/publish")
                .header("host", "127.0.0.1")
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"topic":"t","type":"x","data":{i}}}"#
                )))
                .expect("request");
            tokio::spawn(app.clone().oneshot(req))
        })
        .collect();
    store.wait_queued(QUEUE).await;
    store.wait_full(1).await;

    let (status, body) = answers(&store, &app, get("/readyz"));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, body) = answers(&store, &app, get("/events?topic=t"));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(body.starts_with(b"retry:"), "the stream starts");

    store.release().await;
    for p in publishers {
        let resp = p.await.expect("task").expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
