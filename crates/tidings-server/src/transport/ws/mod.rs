//! The WebSocket transport: each event is one text frame in the endpoint's JSON shape (encoded
//! once per shape, shared by every connection). Everything ready is fed, then flushed once.
//! The server pings; a pong that does not come in time closes the connection. The loop runs
//! over any byte stream (`upgrade` gives it the upgraded HTTP connection; tests give it an
//! in-memory pipe), so the protocol is the same code everywhere.
//!
//! Close codes tell the client whether to reconnect:
//!
//! | code | meaning | reconnect? |
//! |---|---|---|
//! | the client's | the client closed: its code is echoed (1002 if its code may not be sent) | — |
//! | 1001 | server shutting down, or asked to reconnect (drain) | yes, at once, with the last id |
//! | 1002 | the client broke the protocol (bad frame, control frame over 125 bytes, …) | no (fix the client) |
//! | 1007 | the client sent a text message that is not UTF-8 | no (fix the client) |
//! | 1009 | the client sent a message over the size limit | no (fix the client) |
//! | 1011 | the server cannot read history | yes, with backoff |
//! | 4000 | slow consumer: the client fell too far behind | yes, at once, with the last id |
//! | 4001 | no pong within the pong timeout | yes |
//!
//! A client-id session's place moves only as far as the client's TCP stack acknowledged: for
//! each event frame the loop notes where its bytes end on the connection (the accept loop
//! counts what was written to the socket, `ack::ConnSocket`) and confirms the event once
//! `TCP_INFO` says those bytes were acknowledged (asked when marks pile up, on each ping, and
//! once more when the loop ends, before the socket closes). Over an in-memory pipe (tests)
//! there is no socket, and the place stays where the stream started.
//!
//! Every close is a handshake (RFC 6455 §5.5.1, §7): a client's Close is answered with a Close
//! before the server drops TCP, and after its own Close the server waits (bounded) for the
//! client's answer. Auth and Origin failures are refused with HTTP 401/403 before the upgrade.

mod upgrade;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tidings_core::{CloseReason, SessionPlace, SharedEvent, Step};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, WebSocketConfig};

use super::frame::{self, Shape};
use super::{reconnect_notice, reset_notice, session_notice};
use crate::ack::{AckTracker, ConnSocket};
use crate::credential::Lease;
use crate::endpoint::{Endpoint, TransportOptions};
use crate::tracked::Tracked;

pub(crate) use upgrade::upgrade;

/// Close code: the server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client broke the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a text message was not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: the client's message was too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server failed.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code: the client reads too slowly.
pub const CLOSE_SLOW_CONSUMER: u16 = 4000;
/// Close code: no pong in time.
pub const CLOSE_PING_TIMEOUT: u16 = 4001;
/// Close code: the credential behind the stream expired; reconnect with a fresh one.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4401;

/// How long the server waits for the other half of a close handshake (its reply reaching the
/// client, or the client's reply to the server's close) before dropping the connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The codec limits of a server connection.
pub(crate) fn config(options: &TransportOptions) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1 << 10)
        .write_buffer_size(16 << 10)
        .max_write_buffer_size(4 << 20)
        .max_message_size(Some(options.ws_max_message_bytes))
        .max_frame_size(Some(options.ws_max_message_bytes))
}

fn text(bytes: Bytes) -> Message {
    // Frames are built from validated UTF-8 strings and JSON.
    Message::Text(Utf8Bytes::try_from(bytes).expect("frames are UTF-8"))
}

/// The close a read error calls for, by the error's type: `None` when nothing can be sent (the
/// connection is gone).
fn close_for(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "text is not UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// How the per-connection loop ended.
enum End {
    /// The connection is gone (or its writes failed): nothing more can be said.
    Gone,
    /// The client sent a Close: the codec queued the reply, which must still be written.
    ClientClosed,
    /// The server closes with this code. `read_failed`: the frame reader stopped on an error,
    /// so the client's answer can only be drained as raw bytes.
    Close {
        code: u16,
        reason: &'static str,
        read_failed: bool,
    },
}

/// Bytes a server (unmasked) frame with a payload of `len` bytes takes on the wire.
fn frame_len(len: usize) -> u64 {
    let head = match len {
        0..126 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    (head + len) as u64
}

/// Notes where each of `events` (just flushed, in order) ends on the connection, counted back
/// from what the socket has been given in all: the frames are the last bytes written, so an
/// end is exact unless other bytes came after its frame within the batch (tungstenite writes
/// a pong it owed the client after the first frame it is given), and then it is later than
/// the true end, which can only delay a confirmation, never claim one.
fn mark_flushed(acks: &mut AckTracker, conn: &ConnSocket, events: &[SharedEvent], shape: Shape) {
    let lens = || {
        events
            .iter()
            .map(|e| frame_len(frame::event(e, shape).len()))
    };
    let mut end = conn.written().saturating_sub(lens().sum());
    for (e, len) in events.iter().zip(lens()) {
        end += len;
        acks.mark(end, e.seq(), conn);
    }
}

/// A session's confirmations on a real socket. The tracker exists only while events wait to
/// be confirmed, so an idle connection keeps nothing but the two handles.
struct Acks {
    place: SessionPlace,
    conn: ConnSocket,
    tracker: Option<Box<AckTracker>>,
}

impl Acks {
    /// `events` were just flushed.
    fn flushed(&mut self, events: &[SharedEvent], shape: Shape) {
        let place = &self.place;
        let tracker = self
            .tracker
            .get_or_insert_with(|| Box::new(AckTracker::new(place.clone())));
        mark_flushed(tracker, &self.conn, events, shape);
    }

    /// Confirms what the client acknowledged so far.
    fn check(&mut self) {
        if let Some(t) = self.tracker.as_mut() {
            t.check(&self.conn);
            if t.is_idle() {
                self.tracker = None;
            }
        }
    }
}

/// The subscription's next step, or `Closed(TokenExpired)` once `expiry` passes.
async fn next_step(
    sub: &mut Tracked,
    events: &mut Vec<SharedEvent>,
    expiry: Option<Instant>,
) -> Step {
    match expiry {
        None => sub.next(events).await,
        Some(at) => tokio::select! {
            biased;
            () = tokio::time::sleep_until(at) => Step::Closed(CloseReason::TokenExpired),
            step = sub.next(events) => step,
        },
    }
}

/// Runs one WebSocket connection until either side ends it. `lease` holds the credential's
/// connection slot and says when the credential behind it expires; `conn` is the connection's
/// socket when it is a real one (held open by `socket` for as long as this runs).
pub(crate) async fn run<S>(
    socket: WebSocketStream<S>,
    mut sub: Tracked,
    shape: Shape,
    options: TransportOptions,
    endpoint: Arc<Endpoint>,
    lease: Lease,
    conn: Option<ConnSocket>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Lease {
        expiry,
        slot,
        address,
    } = lease;
    // A client-id session's place moves only as far as the client's TCP stack acknowledged.
    let mut acks = match (sub.session_place(), conn) {
        (Some(place), Some(conn)) => Some(Acks {
            place,
            conn,
            tracker: None,
        }),
        _ => None,
    };
    let (mut tx, mut rx) = socket.split();
    if let Some((name, data)) = super::stream::handshake_data(&endpoint, &sub) {
        let raw = serde_json::value::RawValue::from_string(data)
            .unwrap_or_else(|_| serde_json::value::RawValue::from_string("{}".into()).expect("{}"));
        if tx
            .send(text(frame::control(shape, &name, None, &raw)))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut ping = tokio::time::interval_at(
        Instant::now() + options.ws_ping_interval,
        options.ws_ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pong_deadline: Option<Instant> = None;
    let mut events: Vec<SharedEvent> = Vec::new();
    let end = loop {
        events.clear();
        tokio::select! {
            biased;
            incoming = rx.next() => match incoming {
                None => break End::Gone,
                Some(Ok(Message::Pong(_))) => pong_deadline = None,
                Some(Ok(Message::Close(_))) => break End::ClientClosed,
                // Pings are answered by the codec (on its next read or write); client data is
                // not part of the protocol yet and is dropped (its size is bounded by the codec).
                Some(Ok(_)) => {}
                Some(Err(e)) => match close_for(&e) {
                    Some((code, reason)) => {
                        tracing::debug!(message = "WebSocket client broke the protocol.", error = %e);
                        break End::Close { code, reason, read_failed: true };
                    }
                    None => break End::Gone,
                },
            },
            step = next_step(&mut sub, &mut events, expiry) => match step {
                Step::Events => {
                    let mut ok = true;
                    for e in &events {
                        if tx.feed(text(frame::event(e, shape).clone())).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok || tx.flush().await.is_err() {
                        break End::Gone;
                    }
                    if let Some(acks) = acks.as_mut() {
                        acks.flushed(&events, shape);
                    }
                    if events.capacity() > 64 {
                        events = Vec::new();
                    }
                }
                Step::Session { resumed, cursor } => {
                    let names = &endpoint.session;
                    let name = if resumed { &names.resumed } else { &names.subscribed };
                    let client_id = sub.client_id().map_or("", |c| c.as_str());
                    let notice = session_notice(client_id, cursor);
                    let msg = frame::control(shape, name, Some(cursor), &notice);
                    if tx.send(text(msg)).await.is_err() {
                        break End::Gone;
                    }
                }
                Step::Snapshot { cursor } => {
                    let notice = super::snapshot_notice(cursor);
                    let msg = frame::control(shape, "snapshot", Some(cursor), &notice);
                    if tx.send(text(msg)).await.is_err() {
                        break End::Gone;
                    }
                }
                Step::Reset { reason, resume_after } => {
                    let notice = reset_notice(reason, resume_after);
                    let msg = frame::control(shape, "reset", Some(resume_after), &notice);
                    if tx.send(text(msg)).await.is_err() {
                        break End::Gone;
                    }
                }
                Step::Closed(reason) => {
                    if let Some((name, data)) = super::stream::disconnect_data(&endpoint, &sub, reason) {
                        let raw = serde_json::value::RawValue::from_string(data)
                            .unwrap_or_else(|_| serde_json::value::RawValue::from_string("{}".into()).expect("{}"));
                        if tx.feed(text(frame::control(shape, &name, None, &raw))).await.is_err() {
                            break End::Gone;
                        }
                    }
                    let name = &endpoint.reconnect_event;
                    let msg = frame::control(shape, name, None, &reconnect_notice(reason));
                    if tx.feed(text(msg)).await.is_err() {
                        break End::Gone;
                    }
                    let (code, reason) = match reason {
                        CloseReason::SlowConsumer => (CLOSE_SLOW_CONSUMER, "slow consumer"),
                        CloseReason::Shutdown => (CLOSE_GOING_AWAY, "server shutting down"),
                        CloseReason::Reconnect => (CLOSE_GOING_AWAY, "reconnect"),
                        CloseReason::StoreFailed => (CLOSE_INTERNAL, "history unavailable"),
                        CloseReason::Operator => (CLOSE_GOING_AWAY, "closed by an operator"),
                        CloseReason::TokenExpired => (CLOSE_TOKEN_EXPIRED, "token expired"),
                    };
                    break End::Close { code, reason, read_failed: false };
                }
            },
            () = async { tokio::time::sleep_until(pong_deadline.expect("guarded")).await }, if pong_deadline.is_some() => {
                break End::Close { code: CLOSE_PING_TIMEOUT, reason: "ping timeout", read_failed: false };
            }
            _ = ping.tick() => {
                if tx.send(Message::Ping(Bytes::new())).await.is_err() {
                    break End::Gone;
                }
                if let Some(acks) = acks.as_mut() {
                    // A quiet moment to catch up.
                    acks.check();
                }
                pong_deadline.get_or_insert(Instant::now() + options.ws_pong_timeout);
            }
        }
    };
    // Before the socket closes (and the subscription detaches its session), on every end
    // (token expiry included): what did the client's TCP stack acknowledge in the end?
    if let Some(acks) = acks.as_mut() {
        acks.check();
    }
    sub.ended(match &end {
        End::Gone => "client_gone",
        End::ClientClosed => "client_closed",
        End::Close {
            code: CLOSE_PING_TIMEOUT,
            ..
        } => "ping_timeout",
        End::Close {
            read_failed: true, ..
        } => "protocol_error",
        End::Close { .. } => "closed",
    });
    drop((sub, slot, address));
    finish(tx, rx, end).await;
}

/// Completes the close handshake `end` calls for, each wait bounded by `CLOSE_WAIT`.
async fn finish<S>(
    mut tx: SplitSink<WebSocketStream<S>, Message>,
    mut rx: SplitStream<WebSocketStream<S>>,
    end: End,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match end {
        End::Gone => {}
        End::ClientClosed => {
            // Writes the queued Close reply (the client's code, echoed); the codec then ends
            // the connection, so the server drops TCP first, as RFC 6455 §7.1.1 asks.
            if tokio::time::timeout(CLOSE_WAIT, tx.flush()).await.is_err() {
                tracing::debug!(message = "WebSocket close reply could not be written in time.");
            }
        }
        End::Close {
            code,
            reason,
            read_failed,
        } => {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static(reason),
            };
            if tokio::time::timeout(CLOSE_WAIT, tx.send(Message::Close(Some(frame))))
                .await
                .map_or(true, |sent| sent.is_err())
            {
                return;
            }
            let answered = if read_failed {
                // The frame reader stopped on the client's error, so the client's answer cannot
                // be read as frames: end the server's half of TCP and read what the client still
                // sends (its Close) as bytes until it closes, so that dropping the connection
                // does not reset it under unread data and lose the Close just sent.
                match tx.reunite(rx) {
                    Ok(mut socket) => linger(socket.get_mut()).await,
                    Err(_) => false,
                }
            } else {
                let wait = async { while let Some(Ok(_)) = rx.next().await {} };
                tokio::time::timeout(CLOSE_WAIT, wait).await.is_ok()
            };
            if !answered {
                tracing::debug!(message = "WebSocket client did not answer the close in time.");
            }
        }
    }
}

/// Shuts the server's half of `stream` and discards what arrives until the peer closes;
/// `false` if it did not within `CLOSE_WAIT`.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let until_eof = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(CLOSE_WAIT, until_eof).await.is_ok()
}
