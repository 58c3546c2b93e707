//! The WebSocket upgrade: checks the handshake headers (RFC 6455 §4.2.1, via tungstenite),
//! answers 101, and runs the connection over hyper's upgraded stream once hyper hands it over.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tidings_proto::ErrorCode;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::create_response_with_body;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{config, run};
use crate::ack::ConnSocket;
use crate::endpoint::TransportOptions;
use crate::http::error::HttpError;
use crate::tracked::Tracked;
use crate::transport::frame::Shape;

/// Answers an upgrade request: 101 and a task that serves the connection, or 400 if the
/// request is not a valid WebSocket handshake.
pub(crate) fn upgrade(
    mut request: http::Request<()>,
    sub: Tracked,
    shape: Shape,
    options: TransportOptions,
    endpoint: std::sync::Arc<crate::endpoint::Endpoint>,
    lease: crate::credential::Lease,
) -> Response {
    let response = match create_response_with_body(&request, Body::empty) {
        Ok(response) => response,
        Err(e) => {
            let msg = format!("WebSocket upgrade: {e}");
            return HttpError::new(ErrorCode::InvalidParameter, msg).into_response();
        }
    };
    // Served by the accept loop (not a test's in-memory pipe): the socket, for `TCP_INFO`.
    let conn = request.extensions_mut().remove::<ConnSocket>();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(config(&options)))
                        .await;
                // `upgraded` (moved into `socket`) owns the TCP socket while `run` uses `conn`.
                run(socket, sub, shape, options, endpoint, lease, conn).await;
            }
            Err(e) => {
                tracing::debug!(message = "WebSocket upgrade failed.", error = %e);
            }
        }
    });
    response
}
