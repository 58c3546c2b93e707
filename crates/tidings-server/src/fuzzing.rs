//! Entry points for the fuzz targets (`fuzz/`): the lean path's request-head reader and
//! classifier, run on bytes without a socket. Not an API.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tidings_core::{Hub, Limits, MemoryStore, Retention};

use crate::endpoint::{Endpoint, Origins, TransportOptions};
use crate::http::extract;
use crate::http::subscribe::EndpointState;
use crate::lean::{self, Judged, LeanRoutes};
use crate::state::{AppState, Edge};

/// The routes of a default hub (`/events`, open, loopback names only), built once.
fn routes() -> &'static LeanRoutes {
    static ROUTES: OnceLock<LeanRoutes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let store = Arc::new(MemoryStore::new(
            tidings_proto::Epoch(1),
            Retention::default(),
        ));
        let app = AppState {
            hub: Hub::new(store, Limits::default()),
            auth: Arc::new(tidings_auth::Authorizer::new(vec![])),
            transport: TransportOptions::default(),
            edge: Edge::default(),
        };
        let ctx = EndpointState {
            app,
            endpoint: Arc::new(Endpoint::default_events(Origins::SameOrigin)),
        };
        Arc::new(HashMap::from([("/events".to_owned(), ctx)]))
    })
}

/// Reads and classifies `bytes` as the start of a connection, as the accept loop does, and
/// runs the `Host` check on a streaming head. Must never panic.
pub fn request_head(bytes: &[u8]) {
    if let Judged::Stream(parts, ctx) = lean::judge(bytes, routes()) {
        // The classifier only admits GETs to a known path.
        assert_eq!(parts.method, http::Method::GET);
        assert!(ctx.endpoint.path == parts.uri.path());
        let _verdict = extract::host(&parts.headers, None, &ctx.app);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn heads_are_classified_without_a_runtime() {
        super::request_head(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
        super::request_head(b"GET /events HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        super::request_head(b"\xff\x00 / HTTP/1.1\r\n\r\n");
        super::request_head(b"");
    }
}
