//! Seams for the fuzz targets in `fuzz/`: each function runs one parser that the network or an
//! operator feeds, on plain bytes and without a socket, and panics when a property it checks
//! does not hold. Not an API: hidden from the docs, used by `fuzz/fuzz_targets/*` and by the
//! tests below, which replay the committed seed inputs in every `cargo test`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::value::RawValue;
use tidings_auth::{Authorizer, Grant, GrantTemplate, JwtKey, JwtRules, JwtVerifier, StaticToken};
use tidings_core::{Hub, Limits, MemoryStore, NewEvent, Retention};
use tidings_proto::{Epoch, Pattern};

use crate::config::{RawConfig, layered};
use crate::endpoint::{Cors, Endpoint, Origins, TransportOptions, Transports};
use crate::http::extract;
use crate::http::publish::parse_events;
use crate::http::subscribe::{self, Prepared};
use crate::lean::{self, Judged, LeanRoutes};
use crate::state::{AppState, Edge};
use crate::transport::frame::Shape;

/// The lean path's head reader and classifier, over two fixed route tables (an open hub, and
/// one with a token and an endpoint with a fixed selector and a query token).
///
/// Checks: a head taken as a stream is a complete `GET` to a route of the table, and its
/// request is then either opened as a stream or refused with a 4xx (never a 5xx, never a
/// panic); the answer does not depend on how the bytes were split into reads (a proper prefix
/// of a head taken as a stream, or of one that needs more, needs more).
pub fn request_head(bytes: &[u8]) {
    for routes in route_tables() {
        let whole = lean::judge(bytes, routes);
        match &whole {
            Judged::NeedMore => assert!(bytes.len() < lean::MAX_HEAD),
            Judged::Other => {}
            Judged::Stream(parts, ctx) => {
                assert_eq!(parts.method, http::Method::GET);
                assert_eq!(ctx.endpoint.path, parts.uri.path());
                assert!(routes.get(parts.uri.path()).is_some());
                assert!(subscribe::is_stream_request(parts));
                // As the lean path does: the `Host` check, then the request's own checks.
                match extract::host(&parts.headers, None, &ctx.app)
                    .and_then(|()| subscribe::prepare(ctx, parts))
                {
                    Ok(Prepared::Stream(..)) => {}
                    Ok(_) => panic!("a lean head was prepared as something other than a stream"),
                    Err(e) => assert!(e.status().is_client_error(), "{:?}", e.0),
                }
            }
        }
        if matches!(whole, Judged::Other) {
            continue;
        }
        let len = bytes.len();
        for cut in [
            1,
            len / 3,
            len / 2,
            len.saturating_sub(3),
            len.saturating_sub(1),
        ] {
            if cut > 0 && cut < len {
                assert!(
                    matches!(lean::judge(&bytes[..cut], routes), Judged::NeedMore),
                    "the first {cut} bytes of a head were judged before the head was complete"
                );
            }
        }
    }
}

fn route_tables() -> &'static [LeanRoutes; 2] {
    static TABLES: OnceLock<[LeanRoutes; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let pats = |list: &[&str]| -> Vec<Pattern> {
            list.iter()
                .map(|p| Pattern::parse(p).expect("a valid pattern"))
                .collect()
        };
        let feed = Endpoint {
            name: "feed".to_owned(),
            listen: None,
            path: "/feed".to_owned(),
            topics: Some(pats(&["downloads/*", "system"])),
            shape: Shape::Envelope,
            query_token: Some("token".to_owned()),
            origins: Origins::List(vec!["https://app.example".to_owned()]),
            transports: Transports {
                sse: false,
                ..Transports::ALL
            },
            cors: Cors::new(vec!["https://app.example".to_owned()]),
            ..Endpoint::default_events(Origins::Any)
        };
        let root = Endpoint {
            name: "root".to_owned(),
            path: "/".to_owned(),
            query_token: Some("access_token".to_owned()),
            ..Endpoint::default_events(Origins::Any)
        };
        let open = app(vec![]);
        let closed = app(vec![StaticToken {
            secret: "fuzz-secret-token".into(),
            grant: Grant {
                name: "fuzz".to_owned(),
                publish: pats(&["downloads/*"]),
                subscribe: pats(&["downloads/*", "system"]),
                admin: false,
            },
        }]);
        let events = Endpoint::default_events(Origins::SameOrigin);
        [
            crate::http::router::lean_routes(&open, [&events, &feed].into_iter()),
            crate::http::router::lean_routes(&closed, [&events, &root].into_iter()),
        ]
    })
}

/// An app over `tokens`; with any token, JWTs (HS256, with a per-subject template) are
/// accepted too, so a fuzzed bearer of JWT shape reaches the verifier.
fn app(tokens: Vec<StaticToken>) -> AppState {
    let store = Arc::new(MemoryStore::new(Epoch(0xf022), Retention::default()));
    let jwt = (!tokens.is_empty()).then(|| {
        let key = JwtKey::hs256(b"fuzz-jwt-hs256-secret-of-32-bytes").expect("a 32-byte secret");
        let rules = JwtRules {
            subscribe_templates: vec![GrantTemplate::parse("users/{sub}/*").expect("a template")],
            ..JwtRules::default()
        };
        JwtVerifier::new(vec![key], rules).expect("one key")
    });
    let hub = Hub::new(store, Limits::default());
    AppState {
        observers: Arc::new(crate::Observers::new(
            crate::Metrics::new(&[]).with_hub(&hub),
        )),
        hub,
        auth: Arc::new(Authorizer::new(tokens).with_jwt(jwt)),
        transport: TransportOptions::default(),
        edge: Edge::default(),
        credentials: Default::default(),
    }
}

/// The publish body parser (JSON → validated events, the step before grants and the engine).
///
/// Checks: a body is either a non-empty list of at most `max_batch_events` events or a 4xx;
/// the accepted events, written back as a body, parse to the same events (so the compacted
/// payload is still valid JSON and compacting is idempotent).
pub fn publish_body(bytes: &[u8]) {
    let max_batch = Limits::default().max_batch_events;
    let events = match parse_events(bytes, max_batch) {
        Ok((events, _origins)) => events,
        Err(e) => {
            assert!(e.status().is_client_error(), "{:?}", e.0);
            return;
        }
    };
    assert!(!events.is_empty() && events.len() <= max_batch);
    let body = write_body(&events);
    let (again, _) = parse_events(&body, max_batch)
        .unwrap_or_else(|e| panic!("accepted events written back were refused: {:?}", e.0));
    assert_eq!(summary(&events), summary(&again));
}

/// One event as a publisher writes it (for the round trip).
#[derive(Serialize)]
struct OutEvent<'a> {
    topic: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    data: &'a RawValue,
}

fn write_body(events: &[NewEvent]) -> Vec<u8> {
    let out: Vec<OutEvent<'_>> = events
        .iter()
        .map(|e| OutEvent {
            topic: e.topic.as_str(),
            event_type: e.event_type.as_str(),
            key: e.key.as_ref().map(|k| k.as_str()),
            data: &e.data,
        })
        .collect();
    let written = match out.as_slice() {
        [one] => serde_json::to_vec(one),
        many => serde_json::to_vec(many),
    };
    written.expect("events serialize")
}

fn summary(events: &[NewEvent]) -> Vec<(String, String, Option<String>, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.topic.to_string(),
                e.event_type.to_string(),
                e.key.as_ref().map(ToString::to_string),
                e.data.get().to_owned(),
            )
        })
        .collect()
}

/// The config loader: TOML text → `RawConfig` → `validate`.
///
/// Checks: no panic; a file's settings survive being merged under empty flags and environment
/// (validating the merged config gives the same result, so the layering forgets no field the
/// file can set); a valid config keeps the invariants `validate` promises.
pub fn config_toml(text: &str) {
    let Ok(raw) = RawConfig::from_toml(text) else {
        return;
    };
    let direct = raw.clone().validate();
    let merged = match layered([raw, RawConfig::default(), RawConfig::default()]) {
        Ok(merged) => merged.validate(),
        Err(e) => panic!("a file's settings could not be layered: {e:?}"),
    };
    assert_eq!(
        format!("{direct:?}"),
        format!("{merged:?}"),
        "a setting was lost when the file was merged under empty flags"
    );
    let config = match direct {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.setting.is_empty() && !e.reason.is_empty(), "{e:?}");
            return;
        }
    };
    let limits = &config.limits;
    assert!(limits.max_data_bytes <= limits.max_body_bytes);
    assert!(limits.subscriber_queue_bytes >= limits.max_data_bytes);
    if config.tokens.is_empty() {
        assert!(config.listen.ip().is_loopback(), "{}", config.listen);
    }
    let mut names = HashMap::new();
    for e in &config.endpoints {
        assert!(e.path.starts_with('/'), "{}", e.path);
        assert!(names.insert(e.name.as_str(), ()).is_none(), "{}", e.name);
    }
}

#[cfg(test)]
mod tests;
