//! The service a listener's HTTP connections run: it tags each request with its peer (and, for
//! an upgrade, its socket), answers the main listener's `POST /publish` itself, and hands
//! everything else to the listener's axum router.
//!
//! `POST /publish` is the one route a publisher calls once per event. Through the router it
//! paid for a cloned router per request, the two `from_fn` middlewares' boxed futures and
//! cloned states, the route's dispatch and a cloned `AppState` for the handler; here it is a
//! match on method and path, then the same checks in the same order with the same answers:
//! the `Host` check (`router::edge_guard`), the handler (`publish::publish_on`), the CORS
//! headers of the publish routes (`router::cors_guard`), and `connection: close` after an
//! error answer to a request with a body. Every other method and path on `/publish` (`HEAD`,
//! `OPTIONS` preflights, `GET`, `/publish/`) still goes to the router, which answers it as
//! before. Parsing stays hyper's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::header::{ORIGIN, UPGRADE};
use http::{Method, Request};
use hyper::body::Incoming;
use tower::Service as _;

use super::{head, publish, router};
use crate::ack::ConnSocket;
use crate::state::AppState;
use crate::tracked::RemoteAddr;

/// What a listener's connections serve: its router, and the state `POST /publish` is answered
/// with when the router has that route (the main listener's).
#[derive(Clone)]
pub(crate) struct Front {
    router: Router,
    publish: Option<Arc<AppState>>,
}

impl Front {
    /// A listener whose requests all go to `router`.
    pub(crate) fn new(router: Router) -> Self {
        Self {
            router,
            publish: None,
        }
    }

    /// The main listener: `router` is `router::router(state, ..)`, and `POST /publish` is
    /// answered here with `state`, as that router would.
    pub(crate) fn with_publish(router: Router, state: AppState) -> Self {
        Self {
            router,
            publish: Some(Arc::new(state)),
        }
    }

    /// The service of one connection from `peer`, on `socket`.
    pub(crate) fn connection(&self, peer: RemoteAddr, socket: ConnSocket) -> FrontConnection {
        FrontConnection {
            front: self.clone(),
            peer,
            socket,
        }
    }
}

/// A [`Front`] serving one connection (hyper's service of it).
pub(crate) struct FrontConnection {
    front: Front,
    peer: RemoteAddr,
    socket: ConnSocket,
}

type PublishFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for FrontConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<axum::routing::future::RouteFuture<Infallible>, PublishFuture>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // Every request learns its peer's address (for the connection table and logs); an
        // upgrade request also learns its socket and how many bytes were written to it, so a
        // WebSocket can confirm its session's place from what the client acknowledged.
        request.extensions_mut().insert(self.peer);
        if request.headers().contains_key(UPGRADE) {
            request.extensions_mut().insert(self.socket.clone());
        }
        if let Some(state) = &self.front.publish
            && request.method() == Method::POST
            && request.uri().path() == "/publish"
        {
            let state = Arc::clone(state);
            return Either::Right(Box::pin(async move {
                Ok(answer_publish(&state, request.map(Body::new)).await)
            }));
        }
        // A router is always ready; `call` on a clone is what `oneshot` would do.
        Either::Left(self.front.router.clone().call(request))
    }
}

/// `POST /publish` as the main router answers it: `Host` check, the handler, the publish
/// routes' CORS headers, `connection: close` after refusing a request with a body.
async fn answer_publish(state: &AppState, request: Request<Body>) -> Response {
    let has_body = router::has_body(request.headers());
    let mut response = match router::check_host(&request, state) {
        Err(e) => e.into_response(),
        Ok(()) => {
            let origin = request.headers().get(ORIGIN).cloned();
            let mut response = publish::publish_on(state, request).await.into_response();
            head::cors(response.headers_mut(), state.edge.cors(), origin.as_ref());
            response
        }
    };
    router::close_after_refusal(&mut response, has_body);
    response
}
