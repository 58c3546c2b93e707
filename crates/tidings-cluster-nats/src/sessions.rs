//! Client-id sessions shared by every node, in the JetStream KV bucket
//! `tidings-sessions-<stream>` (`tidings_core::SessionStore`, shared).
//!
//! - Key: the client id with every byte other than `A-Z a-z 0-9 - _` written `=XX` (KV keys
//!   allow only `A-Z a-z 0-9 - _ / = .`), so two ids never share a key.
//! - Value: JSON `{"clientId","patterns","types","epoch","place","detachedAt","attached"}`.
//! - TTL: the bucket's `max_age` is the session TTL, and every write restarts an entry's age,
//!   so a detached session's entry goes when its TTL runs out (an attached one is written
//!   again before that).
//! - Writes: the hub reports an attach, a detach, and at each checkpoint the places of
//!   attached sessions (`session_changed`, under its lock, never blocking). The latest news
//!   of each client waits in a bounded map for one writer task, so a session is written at
//!   most once per checkpoint, and an unchanged one not at all.
//! - `save_sessions` (the hub's checkpoint and shutdown) waits, bounded, until the writer has
//!   written what was reported before it.
//! - Reads: one `get` when a client attaches to a node (`load_session`). An entry another
//!   node still holds attached is read again, for at most `ATTACHED_WAIT`, until that node
//!   writes its detach with the final place.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tidings_core::store::BoxFuture;
use tidings_core::{SavedSession, SessionStore, StoreError};
use tokio::sync::Notify;

use crate::io;

/// Longest `load_session` waits for another node to let an attached session go.
const ATTACHED_WAIT: Duration = Duration::from_secs(1);

/// Most sessions' news waiting for the writer (while NATS is away); past it news is dropped
/// and the next checkpoint or detach writes again.
const MAX_WAITING: usize = 100_000;

/// Longest one write may take before the writer moves on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The bucket of stream `stream`.
pub(crate) fn bucket(stream: &str) -> String {
    format!("tidings-sessions-{stream}")
}

/// The KV key of a client id.
pub(crate) fn key(client_id: &str) -> String {
    let mut out = String::with_capacity(client_id.len());
    for &b in client_id.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            write!(out, "={b:02X}").expect("a String takes any write");
        }
    }
    out
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Value {
    client_id: String,
    patterns: Vec<String>,
    types: Vec<String>,
    epoch: u32,
    place: u64,
    detached_at: u64,
    attached: bool,
}

impl Value {
    fn of(s: SavedSession, attached: bool) -> Value {
        Value {
            client_id: s.client_id,
            patterns: s.patterns,
            types: s.types,
            epoch: s.epoch,
            place: s.place,
            detached_at: s.detached_at,
            attached,
        }
    }

    fn saved(self) -> SavedSession {
        SavedSession {
            client_id: self.client_id,
            patterns: self.patterns,
            types: self.types,
            epoch: self.epoch,
            place: self.place,
            detached_at: self.detached_at,
        }
    }
}

/// The sessions bucket and its writer's queue.
pub(crate) struct KvSessions {
    kv: kv::Store,
    /// The latest news per KV key, waiting for the writer, and how much news was ever queued.
    waiting: Mutex<Waiting>,
    wake: Arc<Notify>,
    /// How much of the news queued (`Waiting::queued`) the writer has written.
    written: tokio::sync::watch::Sender<u64>,
    ttl: Duration,
}

#[derive(Default)]
struct Waiting {
    news: HashMap<String, Value>,
    queued: u64,
}

impl std::fmt::Debug for KvSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvSessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl KvSessions {
    /// Finds or creates the bucket of `stream` and starts its writer.
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        stream: &str,
        replicas: usize,
        ttl: Duration,
    ) -> Result<Arc<KvSessions>, StoreError> {
        let name = bucket(stream);
        // The bucket's stream, as JetStream's KV defines it (`KV_<bucket>` on
        // `$KV.<bucket>.>`), made here: async-nats's `create_key_value` first reads the
        // account's limits, a reply NATS 2.9 shapes differently.
        let config = async_nats::jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some("Tidings client-id sessions".into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            max_age: ttl.max(Duration::from_secs(1)),
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| io("find or create the sessions bucket", e))?;
        let kv = js
            .get_key_value(&name)
            .await
            .map_err(|e| io("open the sessions bucket", e))?;
        let me = Arc::new(KvSessions {
            kv,
            waiting: Mutex::new(Waiting::default()),
            wake: Arc::new(Notify::new()),
            written: tokio::sync::watch::Sender::new(0),
            ttl,
        });
        tokio::spawn(writer(Arc::downgrade(&me), Arc::clone(&me.wake)));
        Ok(me)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes what waits, until the store is dropped. A write that fails is put back unless
/// newer news of the session came meanwhile, and retried after a pause.
async fn writer(me: std::sync::Weak<KvSessions>, wake: Arc<Notify>) {
    // What each attached session's entry holds, to skip writing it again unchanged: (place,
    // when written). Only attached sessions are kept, so it is bounded by them.
    let mut written: HashMap<String, (u64, Instant)> = HashMap::new();
    loop {
        let Some(store) = me.upgrade() else { return };
        let (batch, upto) = {
            let mut waiting = store.waiting();
            (std::mem::take(&mut waiting.news), waiting.queued)
        };
        if batch.is_empty() {
            store.written.send_replace(upto);
            drop(store);
            // Woken by news, or look again now and then (the store may have been dropped).
            drop(tokio::time::timeout(Duration::from_secs(5), wake.notified()).await);
            continue;
        }
        let refresh = store.ttl / 2;
        let mut failed = false;
        for (key, value) in batch {
            if value.attached
                && written
                    .get(&key)
                    .is_some_and(|(place, at)| *place == value.place && at.elapsed() < refresh)
            {
                continue;
            }
            let body = match serde_json::to_vec(&value) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let put = tokio::time::timeout(WRITE_TIMEOUT, store.kv.put(&key, body.into())).await;
            match put {
                Ok(Ok(_)) => {
                    if value.attached {
                        written.insert(key, (value.place, Instant::now()));
                    } else {
                        written.remove(&key);
                    }
                }
                _ => {
                    failed = true;
                    store.waiting().news.entry(key).or_insert(value);
                }
            }
        }
        if !failed {
            store.written.send_replace(upto);
        }
        drop(store);
        if failed {
            tracing::warn!(message = "Could not save sessions to NATS; retrying.");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl SessionStore for KvSessions {
    fn load_sessions(&self) -> Result<Vec<SavedSession>, StoreError> {
        // Shared: read per client on attach, never all at start.
        Ok(Vec::new())
    }

    fn save_sessions(
        &self,
        sessions: Vec<SavedSession>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        // A hub that knows the store is shared hands nothing here: it waits for what it
        // reported to be written (at a checkpoint, and at shutdown after the last detaches).
        for s in sessions {
            self.session_changed(s, false);
        }
        let upto = self.waiting().queued;
        let mut written = self.written.subscribe();
        Box::pin(async move {
            let done = written.wait_for(|w| *w >= upto);
            match tokio::time::timeout(WRITE_TIMEOUT, done).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(io(
                    "save sessions",
                    "the sessions bucket did not answer in time",
                )),
            }
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn load_session(
        &self,
        client_id: &str,
    ) -> BoxFuture<'static, Result<Option<SavedSession>, StoreError>> {
        let kv = self.kv.clone();
        let key = key(client_id);
        Box::pin(async move {
            let deadline = Instant::now() + ATTACHED_WAIT;
            loop {
                let got = kv
                    .get(key.as_str())
                    .await
                    .map_err(|e| io("read a session", e))?;
                let Some(bytes) = got else { return Ok(None) };
                let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                    tracing::warn!(message = "Skipped a saved session that does not parse.");
                    return Ok(None);
                };
                if !value.attached || Instant::now() >= deadline {
                    return Ok(Some(value.saved()));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    }

    fn session_changed(&self, session: SavedSession, attached: bool) {
        let key = key(&session.client_id);
        let mut waiting = self.waiting();
        if waiting.news.len() >= MAX_WAITING && !waiting.news.contains_key(&key) {
            return;
        }
        waiting.news.insert(key, Value::of(session, attached));
        waiting.queued += 1;
        drop(waiting);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_never_shared() {
        assert_eq!(key("3f7c-AB_9"), "3f7c-AB_9");
        assert_eq!(key("a.b/c=d é"), "a=2Eb=2Fc=3Dd=20=C3=A9");
        assert_ne!(key("a=2E"), key("a."));
        for id in ["x y", "=", ".a.", "a>*"] {
            let k = key(id);
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='),
                "{k}"
            );
        }
    }
}
