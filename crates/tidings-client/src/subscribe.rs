//! Subscribing: a `Stream` of items over one logical subscription that outlives any single
//! connection. The loop, one connection at a time: connect (sending `Last-Event-ID` with the
//! last id seen), read frames until the connection ends, is dropped for silence, or the hub
//! says `reconnect-required`; then wait per the backoff schedule (not at all after
//! `reconnect-required`) and connect again. A permanent error ends the stream.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use tidings_proto::{EventId, EventType, Pattern};

use crate::backoff::{Backoff, random_unit};
use crate::client::{Client, MAX_ERROR_BYTES, read_capped};
use crate::error::{Error, ErrorKind};
use crate::frame::{Decoder, Frame};
use crate::ws;

/// One item of a subscription.
#[derive(Debug)]
#[non_exhaustive]
pub enum Item {
    /// An event.
    Event(Event),
    /// The hub could not resume from the last id (history expired, or it came from another
    /// store): events were missed, so refetch your state. The stream goes on after
    /// [`Reset::cursor`].
    Reset(Reset),
    /// A connection opened (the first, or a reconnect).
    Connected(Connected),
    /// The connection ended; the client reconnects after [`Disconnected::retry_in`].
    Disconnected(Disconnected),
    /// A [`Since::Snapshot`] subscription's snapshot is complete: the events before this
    /// item were the current state (the newest event per key), the events after it are live.
    Snapshot(SnapshotEnd),
}

/// The end of a snapshot: everything up to [`SnapshotEnd::cursor`] is reflected in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotEnd {
    /// The snapshot's cursor: the stream resumes after it (a reconnect sends it as
    /// `Last-Event-ID`, so the hub does not send the snapshot again).
    pub cursor: String,
}

/// An event received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Its id as sent (`<epoch>-<seq>` on the hub's own routes); see [`Event::event_id`].
    pub id: String,
    /// Its type (the SSE `event:` name).
    pub event_type: String,
    /// Its topic. The JSON-lines framing carries it; SSE frames do not, so it is `None`
    /// there.
    pub topic: Option<String>,
    /// The entity it is about, when it has one (JSON-lines framing only).
    pub key: Option<String>,
    /// The payload, compact JSON text.
    pub data: String,
}

impl Event {
    /// The id, parsed; `None` if the endpoint sent something other than a Tidings id.
    pub fn event_id(&self) -> Option<EventId> {
        self.id.parse().ok()
    }

    /// The payload deserialized into `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// The `reset` notice: what was missed cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reset {
    /// `cursor_expired`, `epoch_mismatch`, `cursor_ahead` or `invalid_cursor`.
    pub reason: String,
    /// The id the stream continues after (the client resumes from it from now on).
    pub cursor: String,
}

/// A connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connected {
    /// The `Last-Event-ID` this connection resumed from (`earliest` for all history), or
    /// `None` for a fresh start at "now".
    pub resumed_from: Option<String>,
    /// How many connections this subscription opened before this one (0 for the first).
    pub opened_before: u64,
}

/// A connection ended and will be reopened.
#[derive(Debug)]
#[non_exhaustive]
pub struct Disconnected {
    /// Why.
    pub cause: DisconnectCause,
    /// How long the client waits before reconnecting.
    pub retry_in: Duration,
}

/// Why a connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// The hub sent `reconnect-required` with this reason (`shutdown`, `slow_consumer`): the
    /// client reconnects at once (with backoff if the hub asked again on a connection that
    /// delivered nothing).
    ReconnectRequired(String),
    /// A transient failure: the connection could not be opened, broke, or went silent.
    Failed(Error),
}

impl std::fmt::Display for DisconnectCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectCause::ReconnectRequired(reason) => {
                write!(f, "the hub asked for a reconnect ({reason})")
            }
            DisconnectCause::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Since {
    /// Only events published from now on. Until the first event arrives there is no id to
    /// resume from, so a reconnect before then starts from "now" again: events published
    /// while it was away are missed. Use [`Since::Earliest`] or [`Since::After`] where that
    /// matters.
    #[default]
    Now,
    /// Everything the hub still retains, then live.
    Earliest,
    /// Everything after this id, then live.
    After(String),
    /// The current state first (`snapshot=1`: the newest event per key under the selectors,
    /// as ordinary events), then [`Item::Snapshot`], then live from exactly there, with no
    /// gap and no duplicate. A reconnect resumes from the last id received like any other
    /// (cut during the snapshot, the hub replays history after the last snapshot event
    /// received; before any event, it sends the snapshot again). The hub refuses it with a
    /// client id (a session's place must only move over events the client got).
    Snapshot,
}

/// How events are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framing {
    /// Server-Sent Events: what browsers speak. Carries id, type and data.
    #[default]
    Sse,
    /// One JSON object per line (`format=ndjson`): also carries topic and key.
    Ndjson,
    /// One JSON text frame per event over a WebSocket: also carries topic and key.
    WebSocket,
}

/// What to subscribe to.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    selectors: Vec<String>,
    types: Vec<String>,
    since: Since,
    framing: Framing,
}

impl SubscribeOptions {
    /// Topics matching any of `selectors`: `*` (everything, also the default when empty),
    /// `downloads/*` (a prefix), or an exact topic.
    pub fn new<S: AsRef<str>>(selectors: impl IntoIterator<Item = S>) -> SubscribeOptions {
        SubscribeOptions {
            selectors: selectors
                .into_iter()
                .map(|s| s.as_ref().to_owned())
                .collect(),
            ..SubscribeOptions::default()
        }
    }

    /// Only events of these types.
    pub fn types<S: AsRef<str>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.types = types.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// Where to start [default: now].
    pub fn since(mut self, since: Since) -> Self {
        self.since = since;
        self
    }

    /// The wire framing [default: SSE].
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// `GET /events?…` with selectors and types checked, or why not.
    fn path(&self) -> Result<String, Error> {
        let mut extra = Vec::new();
        if self.framing == Framing::Ndjson {
            extra.push(("format", "ndjson"));
        }
        if self.since == Since::Snapshot {
            extra.push(("snapshot", "1"));
        }
        selector_path("/events", &self.selectors, &self.types, &extra)
    }
}

/// `route?topic=…&type=…&extra…`, with every selector and type checked first.
pub(crate) fn selector_path<S: AsRef<str>, T: AsRef<str>>(
    route: &str,
    selectors: &[S],
    types: &[T],
    extra: &[(&str, &str)],
) -> Result<String, Error> {
    let mut query = reqwest::Url::parse("http://x/").expect("a valid URL");
    {
        let mut q = query.query_pairs_mut();
        for s in selectors {
            let s = s.as_ref();
            Pattern::parse(s)
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("selector `{s}`: {e}")))?;
            q.append_pair("topic", s);
        }
        for t in types {
            let t = t.as_ref();
            EventType::new(t)
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("type `{t}`: {e}")))?;
            q.append_pair("type", t);
        }
        for (name, value) in extra {
            q.append_pair(name, value);
        }
    }
    Ok(match query.query() {
        Some(q) if !q.is_empty() => format!("{route}?{q}"),
        _ => route.to_owned(),
    })
}

impl Client {
    /// Subscribes to topics matching `selectors` (see [`SubscribeOptions::new`]) from now
    /// on, over SSE.
    pub fn subscribe<S: AsRef<str>>(
        &self,
        selectors: impl IntoIterator<Item = S>,
    ) -> impl Stream<Item = Result<Item, Error>> + Send + 'static {
        self.subscribe_with(SubscribeOptions::new(selectors))
    }

    /// Subscribes with every option. The stream ends only after yielding a permanent error.
    pub fn subscribe_with(
        &self,
        options: SubscribeOptions,
    ) -> impl Stream<Item = Result<Item, Error>> + Send + 'static {
        let path = options.path();
        let cursor = match options.since {
            Since::Now | Since::Snapshot => None,
            Since::Earliest => Some("earliest".to_owned()),
            Since::After(id) => Some(id),
        };
        let state = Subscription {
            client: self.clone(),
            path,
            framing: options.framing,
            cursor,
            backoff: Backoff::reconnect(),
            conn: None,
            wait: None,
            opened: 0,
            received: 0,
            idle_reconnect: false,
            pending: VecDeque::new(),
            frames: Vec::new(),
            done: false,
        };
        futures_util::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
    }
}

/// The state of one subscription across its connections.
struct Subscription {
    client: Client,
    /// The request path and query, or the reason the options are invalid.
    path: Result<String, Error>,
    framing: Framing,
    /// Sent as `Last-Event-ID` on the next connection: the last id seen (or the reset
    /// cursor), else where the caller asked to start.
    cursor: Option<String>,
    backoff: Backoff,
    conn: Option<Connection>,
    /// Wait this long before the next connection attempt.
    wait: Option<Duration>,
    /// Connections opened so far.
    opened: u64,
    /// Events received on the current connection.
    received: u64,
    /// The last connection ended with `reconnect-required` before delivering any event.
    idle_reconnect: bool,
    pending: VecDeque<Result<Item, Error>>,
    frames: Vec<Frame>,
    done: bool,
}

/// One open connection: an HTTP stream with its decoder, or a WebSocket.
enum Connection {
    Http {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: Decoder,
    },
    Ws(Box<ws::Socket>),
}

impl Connection {
    /// Waits for the next bytes or message and decodes what it can into `out`; an error
    /// means the connection is over (frames decoded before it are still in `out`).
    async fn next_frames(&mut self, out: &mut Vec<Frame>) -> Result<(), Error> {
        match self {
            Connection::Http { body, decoder } => match body.next().await {
                None => Err(Error::new(ErrorKind::Connect, "the hub closed the stream")),
                Some(Err(e)) => Err(Error::from_reqwest(e)),
                Some(Ok(chunk)) => decoder.feed(&chunk, out),
            },
            Connection::Ws(socket) => ws::next_frames(socket, out).await,
        }
    }
}

impl Subscription {
    async fn next(&mut self) -> Option<Result<Item, Error>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.conn.take() {
                None => self.connect().await,
                Some(conn) => self.read(conn).await,
            }
        }
    }

    async fn connect(&mut self) {
        if let Some(wait) = self.wait.take() {
            tokio::time::sleep(wait).await;
        }
        let path = match &self.path {
            Ok(p) => p.clone(),
            Err(e) => {
                let e = Error::new(e.kind(), e.to_string());
                return self.fail(e);
            }
        };
        let inner = &self.client.inner;
        if self.framing == Framing::WebSocket {
            match ws::connect(&self.client, &path, self.cursor.as_deref()).await {
                Ok(socket) => self.opened(Connection::Ws(Box::new(socket))),
                Err(e) => self.fail(e),
            }
            return;
        }
        let mut req = self.client.request(reqwest::Method::GET, &path);
        if let Some(cursor) = &self.cursor {
            req = req.header("last-event-id", cursor);
        }
        let sent = tokio::time::timeout(inner.request_timeout, req.send()).await;
        let resp = match sent {
            Err(_) => {
                return self.fail(Error::new(
                    ErrorKind::Timeout,
                    "the hub did not answer the subscription in time",
                ));
            }
            Ok(Err(e)) => return self.fail(Error::from_reqwest(e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        if status != 200 {
            // An error body is small; bound the wait for it like any answer.
            let body = tokio::time::timeout(
                inner.request_timeout,
                read_capped(resp, MAX_ERROR_BYTES, true),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
            return self.fail(Error::from_answer(status, &body));
        }
        self.opened(Connection::Http {
            body: resp.bytes_stream().boxed(),
            decoder: Decoder::new(self.framing, inner.max_frame_bytes),
        });
    }

    fn opened(&mut self, conn: Connection) {
        self.backoff.reset();
        self.conn = Some(conn);
        self.pending.push_back(Ok(Item::Connected(Connected {
            resumed_from: self.cursor.clone(),
            opened_before: self.opened,
        })));
        self.opened += 1;
        self.received = 0;
    }

    async fn read(&mut self, mut conn: Connection) {
        let inner = &self.client.inner;
        let silence = inner.keepalive.saturating_mul(inner.keepalive_misses);
        let mut frames = std::mem::take(&mut self.frames);
        let decoded = match tokio::time::timeout(silence, conn.next_frames(&mut frames)).await {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("no bytes from the hub for {silence:?}: the connection is dead"),
            )),
            Ok(result) => result,
        };
        // Frames before a decoding error are still delivered, in order.
        let mut reconnect = None;
        for frame in frames.drain(..) {
            match frame {
                Frame::Event(e) => {
                    self.received += 1;
                    if !e.id.is_empty() {
                        self.cursor = Some(e.id.clone());
                    }
                    self.pending.push_back(Ok(Item::Event(e)));
                }
                Frame::Reset(r) => {
                    self.cursor = Some(r.cursor.clone());
                    self.pending.push_back(Ok(Item::Reset(r)));
                }
                Frame::Snapshot(cursor) => {
                    self.cursor = Some(cursor.clone());
                    self.pending
                        .push_back(Ok(Item::Snapshot(SnapshotEnd { cursor })));
                }
                Frame::Session(cursor) => self.cursor = Some(cursor),
                Frame::Retry(hint) => self.backoff.set_initial(hint),
                Frame::Reconnect(reason) => {
                    reconnect = Some(reason);
                    break;
                }
            }
        }
        self.frames = frames;
        if let Some(reason) = reconnect {
            // At once, unless the hub keeps asking without delivering anything (still
            // draining, say): then the backoff applies, so the client never spins.
            let idle = self.received == 0;
            let retry_in = if idle && self.idle_reconnect {
                self.backoff.next_delay(random_unit())
            } else {
                Duration::ZERO
            };
            self.idle_reconnect = idle;
            self.wait = Some(retry_in);
            self.pending.push_back(Ok(Item::Disconnected(Disconnected {
                cause: DisconnectCause::ReconnectRequired(reason),
                retry_in,
            })));
            return;
        }
        match decoded {
            Ok(()) => self.conn = Some(conn),
            Err(e) => self.fail(e),
        }
    }

    /// A failed attempt or a broken connection: stop on a permanent error, else schedule
    /// the next attempt.
    fn fail(&mut self, error: Error) {
        self.conn = None;
        if error.is_permanent() {
            self.done = true;
            self.pending.push_back(Err(error));
            return;
        }
        let retry_in = self.backoff.next_delay(random_unit());
        self.wait = Some(retry_in);
        self.pending.push_back(Ok(Item::Disconnected(Disconnected {
            cause: DisconnectCause::Failed(error),
            retry_in,
        })));
    }
}
