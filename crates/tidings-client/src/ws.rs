//! The WebSocket transport of a subscription: the upgrade request (same path, headers and
//! cursor as SSE), and reading text frames, which carry the JSON-lines shape. The hub's pings
//! are answered by tungstenite as frames are read; its close codes say whether to go on.

use futures_util::StreamExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::frame::{Frame, json_frame};

/// An open WebSocket to the hub.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code: the client's message was too big (retrying the same thing cannot help).
const CLOSE_TOO_BIG: u16 = 1009;

/// Opens a WebSocket on `path` (e.g. `/events?topic=…`), resuming after `cursor`.
pub(crate) async fn connect(
    client: &Client,
    path: &str,
    cursor: Option<&str>,
) -> Result<Socket, Error> {
    let inner = &client.inner;
    let url = format!(
        "ws{}{path}",
        inner.base.strip_prefix("http").unwrap_or(&inner.base)
    );
    let mut request = url
        .into_client_request()
        .map_err(|e| Error::new(ErrorKind::InvalidInput, "a WebSocket URL").with_source(e))?;
    let headers = request.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        // Values were checked when the client was built; a cursor is an id the hub sent.
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    if let Some(token) = &inner.token {
        put("authorization", &format!("Bearer {token}"));
    }
    if let Some(id) = &inner.client_id {
        put("x-client-id", id);
    }
    if let Some(cursor) = cursor {
        put("last-event-id", cursor);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(inner.max_frame_bytes))
        .max_frame_size(Some(inner.max_frame_bytes));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(inner.request_timeout, connect).await {
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            "the hub did not answer the WebSocket upgrade in time",
        )),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let body = resp.body().as_deref().unwrap_or_default();
            Err(Error::from_answer(resp.status().as_u16(), body))
        }
        Ok(Err(e)) => {
            Err(Error::new(ErrorKind::Connect, "the hub could not be reached").with_source(e))
        }
    }
}

/// Reads the next message, pushing its frame (if it is one) to `out`.
pub(crate) async fn next_frames(socket: &mut Socket, out: &mut Vec<Frame>) -> Result<(), Error> {
    match socket.next().await {
        None => Err(Error::new(
            ErrorKind::Connect,
            "the hub closed the WebSocket",
        )),
        Some(Err(e)) => Err(Error::new(ErrorKind::Connect, "the WebSocket broke").with_source(e)),
        Some(Ok(Message::Text(text))) => {
            out.push(json_frame(text.as_bytes())?);
            Ok(())
        }
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                (u16::from(f.code), f.reason.to_string())
            });
            let kind = if code == CLOSE_TOO_BIG {
                ErrorKind::Rejected
            } else {
                ErrorKind::Connect
            };
            Err(Error::new(
                kind,
                format!("the hub closed the WebSocket ({code} {reason})"),
            ))
        }
        // Pings are answered by tungstenite; pongs and binary frames carry no events.
        Some(Ok(_)) => Ok(()),
    }
}
