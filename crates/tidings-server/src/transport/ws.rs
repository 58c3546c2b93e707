//! The WebSocket transport: each event is one text frame in the endpoint's JSON shape (encoded
//! once per shape, shared by every connection). Everything ready is fed, then flushed once.
//! The server pings; a pong that does not come in time closes the connection.
//!
//! Close codes tell the client whether to reconnect:
//!
//! | code | meaning | reconnect? |
//! |---|---|---|
//! | 1001 | server shutting down | yes, with the last id |
//! | 1009 | the client sent a message over the size limit | no (fix the client) |
//! | 1011 | the server cannot read history | yes, with backoff |
//! | 4000 | slow consumer: the client fell too far behind | yes, at once, with the last id |
//! | 4001 | no pong within the pong timeout | yes |
//!
//! Auth and Origin failures are refused with HTTP 401/403 before the upgrade.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tidings_core::{CloseReason, SharedEvent, Step, Subscription};
use tokio::time::{Instant, MissedTickBehavior};

use super::frame::{self, Shape};
use super::{reconnect_notice, reset_notice};
use crate::endpoint::TransportOptions;

/// Close code: the server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client's message was too big.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server failed.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code: the client reads too slowly.
pub const CLOSE_SLOW_CONSUMER: u16 = 4000;
/// Close code: no pong in time.
pub const CLOSE_PING_TIMEOUT: u16 = 4001;

fn text(bytes: Bytes) -> Message {
    // Frames are built from validated UTF-8 strings and JSON.
    Message::Text(Utf8Bytes::try_from(bytes).expect("frames are UTF-8"))
}

/// Runs one WebSocket connection until either side ends it.
pub(crate) async fn run(
    socket: WebSocket,
    mut sub: Subscription,
    shape: Shape,
    options: TransportOptions,
) {
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval_at(
        Instant::now() + options.ws_ping_interval,
        options.ws_ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pong_deadline: Option<Instant> = None;
    let mut events: Vec<SharedEvent> = Vec::new();
    let close = loop {
        events.clear();
        tokio::select! {
            biased;
            incoming = rx.next() => match incoming {
                None => return,
                Some(Ok(Message::Pong(_))) => pong_deadline = None,
                Some(Ok(Message::Close(_))) => return,
                // Pings are answered by the protocol layer; client data is not part of the
                // protocol yet and is dropped (its size is bounded by the codec).
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
                        break Some((CLOSE_TOO_BIG, "message too big"));
                    }
                    return;
                }
            },
            step = sub.next(&mut events) => match step {
                Step::Events => {
                    let mut ok = true;
                    for e in &events {
                        if tx.feed(text(frame::event(e, shape).clone())).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok || tx.flush().await.is_err() {
                        return;
                    }
                    if events.capacity() > 64 {
                        events = Vec::new();
                    }
                }
                Step::Reset { reason, resume_after } => {
                    let notice = reset_notice(reason, resume_after);
                    let msg = frame::control(shape, "reset", Some(resume_after), &notice);
                    if tx.send(text(msg)).await.is_err() {
                        return;
                    }
                }
                Step::Closed(reason) => {
                    let msg = frame::control(shape, "reconnect-required", None, &reconnect_notice(reason));
                    if tx.feed(text(msg)).await.is_err() {
                        return;
                    }
                    break Some(match reason {
                        CloseReason::SlowConsumer => (CLOSE_SLOW_CONSUMER, "slow consumer"),
                        CloseReason::Shutdown => (CLOSE_GOING_AWAY, "server shutting down"),
                        CloseReason::StoreFailed => (CLOSE_INTERNAL, "history unavailable"),
                    });
                }
            },
            () = async { tokio::time::sleep_until(pong_deadline.expect("guarded")).await }, if pong_deadline.is_some() => {
                break Some((CLOSE_PING_TIMEOUT, "ping timeout"));
            }
            _ = ping.tick() => {
                if tx.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
                pong_deadline.get_or_insert(Instant::now() + options.ws_pong_timeout);
            }
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        if tx.send(Message::Close(Some(frame))).await.is_ok() {
            // Give the client a moment to answer the close, bounded.
            let wait = async { while let Some(Ok(_)) = rx.next().await {} };
            if tokio::time::timeout(std::time::Duration::from_secs(2), wait)
                .await
                .is_err()
            {
                tracing::debug!(message = "WebSocket client did not answer the close in time.");
            }
        }
    }
}
