//! `Sessions`: the table of client-id sessions, and `SessionStore`, the trait it is saved
//! through. A subscription that carries a client id opens (or resumes) the session of that
//! id; while it is attached, its connection confirms the session's place (the seq through
//! which the client is known to have everything matching: see `SessionPlace`); once it
//! detaches, the session is kept for `Limits::session_ttl_ms` on the hub's `Clock`, and a
//! reconnect with the same id and selector resumes after that place.
//!
//! Bounded: at most `Limits::max_sessions` sessions. A new one evicts the session detached the
//! longest (expired ones are exactly the oldest detached, since every session has the same
//! TTL); if every session is attached, the new client gets no session (it is told
//! `subscribed`, and a later reconnect is `subscribed` again). An evicted or expired session
//! is gone: its client is told `subscribed`, never a false `resumed`.
//!
//! No I/O and no lock of its own: the hub keeps the table under its state lock, loads it from
//! the store's `SessionStore` when it starts and saves it there when it flushes. A store that
//! shares its sessions with other hubs (a cluster's KV bucket, `SessionStore::shared`) is
//! told instead of each attach, detach and checkpointed place (`session_changed`), and the hub
//! takes in one client's saved session when that client attaches (`Sessions::adopt`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tidings_proto::{Epoch, EventId, EventType, Key, Pattern, Selector};

use crate::store::{BoxFuture, StoreError};

/// Where an attached subscription records its session's place. Each attach gets its own, so
/// a connection that was taken over by a newer one with the same client id cannot move the
/// place the newer one resumed from.
#[derive(Debug, Clone)]
pub(crate) struct Place(Arc<AtomicU64>);

impl Place {
    fn new(seq: u64) -> Place {
        Place(Arc::new(AtomicU64::new(seq)))
    }

    /// Everything matching up to `seq` reached the client. Never moves back.
    pub(crate) fn advance(&self, seq: u64) {
        self.0.fetch_max(seq, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the place where a subscription starts (before it hands anything out).
    pub(crate) fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::Relaxed);
    }
}

/// A connection's handle on its session's place. The connection calls `confirm` with the seq
/// of an event once it knows the client has it (for a TCP stream: once the client's TCP
/// stack acknowledged the bytes that carried it), never merely because it was written.
#[derive(Debug, Clone)]
pub struct SessionPlace(pub(crate) Place);

impl SessionPlace {
    /// The client has every matching event up to `seq`. Never moves the place back.
    pub fn confirm(&self, seq: u64) {
        self.0.advance(seq);
    }

    /// The seq the session would resume after now.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A session as a `SessionStore` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// The client id.
    pub client_id: String,
    /// The selector's patterns, as written (`Pattern`'s display form).
    pub patterns: Vec<String>,
    /// The selector's types.
    pub types: Vec<String>,
    /// The epoch of the place (a place from another epoch resumes with `reset`).
    pub epoch: u32,
    /// The seq the session resumes after.
    pub place: u64,
    /// When the session was detached (ms on the hub's clock); its TTL runs from there.
    pub detached_at: u64,
}

/// Where the hub keeps its sessions between runs. A store that has one returns it from
/// `EventStore::sessions`; the redb store keeps them in the store file (so `durable` mode
/// keeps them across a restart), a NATS adapter can keep them in a KV bucket.
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// The sessions saved last (read once, when a hub starts on this store).
    fn load_sessions(&self) -> Result<Vec<SavedSession>, StoreError>;

    /// Replaces the saved sessions with `sessions` (called when the hub flushes, at shutdown).
    /// A shared store is handed none: it resolves once the changes reported so far
    /// (`session_changed`) are written.
    fn save_sessions(
        &self,
        sessions: Vec<SavedSession>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Whether other hubs share these sessions (a cluster's KV bucket). The hub then loads no
    /// session at start; it reads a client's own with `load_session` when the client
    /// attaches, and reports each change with `session_changed` instead of `save_sessions`.
    fn shared(&self) -> bool {
        false
    }

    /// The saved session of `client_id`, if any (a shared store only). A session another hub
    /// still holds attached may be waited for, briefly, until that hub lets it go.
    fn load_session(
        &self,
        _client_id: &str,
    ) -> BoxFuture<'static, Result<Option<SavedSession>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// A shared store's news of one session: attached with its place (on attach, and at each
    /// checkpoint while its place moves) or detached (at detach, with its final place). Called
    /// under the hub's lock, in the order the changes happened: must not block (queue the
    /// write; the latest change of a session supersedes one not yet written).
    fn session_changed(&self, _session: SavedSession, _attached: bool) {}
}

#[derive(Debug)]
struct Session {
    selector: Selector,
    epoch: Epoch,
    place: Place,
    /// The subscription attached now, if any.
    owner: Option<u64>,
    /// Its key in `Sessions::idle` while detached: (detached at, serial).
    idle_since: Option<(u64, u64)>,
}

/// What opening a session found.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The place of a live session with the same selector: the stream resumes after it.
    pub(crate) resumed: Option<EventId>,
    /// Where the subscription records its progress; `None` if the table had no room.
    pub(crate) place: Option<Place>,
}

/// The session table.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: HashMap<Key, Session>,
    /// Detached sessions, oldest first: (detached at ms, serial) → client id.
    idle: BTreeMap<(u64, u64), Key>,
    serial: u64,
    ttl_ms: u64,
    max: usize,
}

impl Sessions {
    pub(crate) fn new(ttl_ms: u64, max: usize) -> Sessions {
        Sessions {
            map: HashMap::new(),
            idle: BTreeMap::new(),
            serial: 0,
            ttl_ms,
            max,
        }
    }

    /// Sessions held now (attached or not yet expired).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Drops the sessions detached longer than the TTL.
    pub(crate) fn expire(&mut self, now: u64) {
        while let Some(entry) = self.idle.first_entry() {
            if entry.key().0.saturating_add(self.ttl_ms) > now {
                break;
            }
            let id = entry.remove();
            self.map.remove(&id);
        }
    }

    /// Opens the session of `client_id` for subscription `sub` on `selector`. A live session
    /// with the same selector is resumed (and taken over, if another subscription still holds
    /// it); otherwise a new one starts in `epoch` (its place is set by the caller with
    /// `Place::set`).
    pub(crate) fn open(
        &mut self,
        client_id: &Key,
        selector: &Selector,
        epoch: Epoch,
        sub: u64,
        now: u64,
    ) -> Opened {
        self.expire(now);
        if let Some(s) = self.map.get_mut(client_id)
            && s.selector == *selector
        {
            if let Some(k) = s.idle_since.take() {
                self.idle.remove(&k);
            }
            let resumed = EventId::new(s.epoch, s.place.get());
            s.place = Place::new(resumed.seq);
            s.owner = Some(sub);
            // From here on the place counts in the hub's epoch (the caller sets it).
            s.epoch = epoch;
            return Opened {
                resumed: Some(resumed),
                place: Some(s.place.clone()),
            };
        }
        if let Some(old) = self.map.remove(client_id) {
            // A different selector is a different session.
            if let Some(k) = old.idle_since {
                self.idle.remove(&k);
            }
        } else if self.map.len() >= self.max {
            match self.idle.pop_first() {
                Some((_, evicted)) => {
                    self.map.remove(&evicted);
                }
                None => {
                    return Opened {
                        resumed: None,
                        place: None,
                    };
                }
            }
        }
        let place = Place::new(0);
        self.map.insert(
            client_id.clone(),
            Session {
                selector: selector.clone(),
                epoch,
                place: place.clone(),
                owner: Some(sub),
                idle_since: None,
            },
        );
        Opened {
            resumed: None,
            place: Some(place),
        }
    }

    /// Subscription `sub` of `client_id` went away: if it still holds the session, the TTL
    /// starts now.
    /// Returns whether it did (a connection a newer one took over detaches nothing).
    pub(crate) fn detach(&mut self, client_id: &Key, sub: u64, now: u64) -> bool {
        let Some(s) = self.map.get_mut(client_id) else {
            return false;
        };
        if s.owner != Some(sub) {
            return false;
        }
        s.owner = None;
        self.serial += 1;
        let k = (now, self.serial);
        s.idle_since = Some(k);
        self.idle.insert(k, client_id.clone());
        self.expire(now);
        true
    }

    /// Whether a subscription holds `client_id`'s session now.
    pub(crate) fn is_attached(&self, client_id: &Key) -> bool {
        self.map.get(client_id).is_some_and(|s| s.owner.is_some())
    }

    /// One session as a `SessionStore` keeps it, and whether it is attached.
    pub(crate) fn saved(&self, client_id: &Key, now: u64) -> Option<(SavedSession, bool)> {
        let s = self.map.get(client_id)?;
        Some((saved_of(client_id, s, now), s.owner.is_some()))
    }

    /// Every attached session, for a shared store's checkpoint.
    pub(crate) fn attached(&self, now: u64) -> Vec<SavedSession> {
        self.map
            .iter()
            .filter(|(_, s)| s.owner.is_some())
            .map(|(id, s)| saved_of(id, s, now))
            .collect()
    }

    /// Takes in `saved`, one client's session another hub saved (a shared store), unless this
    /// table's own is attached, or is the same session at or past the saved place. Returns the
    /// place the client would resume after, in `epoch`, if the table now holds one. An
    /// expired or unparseable session, or no room (every session attached), takes nothing.
    pub(crate) fn adopt(&mut self, saved: SavedSession, epoch: Epoch, now: u64) -> Option<u64> {
        self.expire(now);
        if saved.detached_at.saturating_add(self.ttl_ms) <= now {
            return None;
        }
        let (id, selector) = parse_saved(&saved)?;
        let resumes = |s: &Session| (s.epoch == epoch).then(|| s.place.get());
        if let Some(local) = self.map.get(&id) {
            if local.owner.is_some() {
                return None;
            }
            if local.selector == selector
                && local.epoch.0 == saved.epoch
                && local.place.get() >= saved.place
            {
                return resumes(local);
            }
            if let Some(old) = self.map.remove(&id)
                && let Some(k) = old.idle_since
            {
                self.idle.remove(&k);
            }
        } else if self.map.len() >= self.max {
            let (_, evicted) = self.idle.pop_first()?;
            self.map.remove(&evicted);
        }
        self.serial += 1;
        let k = (saved.detached_at, self.serial);
        self.idle.insert(k, id.clone());
        let session = Session {
            selector,
            epoch: Epoch(saved.epoch),
            place: Place::new(saved.place),
            owner: None,
            idle_since: Some(k),
        };
        let place = resumes(&session);
        self.map.insert(id, session);
        place
    }

    /// Every live session, for a `SessionStore`. One still attached (a connection the
    /// shutdown grace did not outlast) is saved as detached `now`.
    pub(crate) fn snapshot(&mut self, now: u64) -> Vec<SavedSession> {
        self.expire(now);
        self.map
            .iter()
            .map(|(id, s)| saved_of(id, s, now))
            .collect()
    }

    /// Takes in sessions saved by an earlier run: oldest first, within the bound, skipping
    /// expired ones and any that no longer parse (a saved session is never trusted blindly).
    pub(crate) fn restore(&mut self, mut saved: Vec<SavedSession>, now: u64) {
        saved.sort_by_key(|s| s.detached_at);
        let keep = saved.len().min(self.max);
        for s in saved.into_iter().rev().take(keep).rev() {
            if s.detached_at.saturating_add(self.ttl_ms) <= now {
                continue;
            }
            let Some((id, selector)) = parse_saved(&s) else {
                tracing::warn!(message = "Skipped a saved session that does not parse.");
                continue;
            };
            if let Some(old) = self.map.remove(&id)
                && let Some(k) = old.idle_since
            {
                self.idle.remove(&k);
            }
            self.serial += 1;
            let k = (s.detached_at, self.serial);
            self.idle.insert(k, id.clone());
            self.map.insert(
                id,
                Session {
                    selector,
                    epoch: Epoch(s.epoch),
                    place: Place::new(s.place),
                    owner: None,
                    idle_since: Some(k),
                },
            );
        }
    }
}

/// A session as saved; one still attached counts as detached `now`.
fn saved_of(id: &Key, s: &Session, now: u64) -> SavedSession {
    SavedSession {
        client_id: id.as_str().to_owned(),
        patterns: s.selector.patterns.iter().map(|p| p.to_string()).collect(),
        types: s
            .selector
            .types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        epoch: s.epoch.0,
        place: s.place.get(),
        detached_at: s.idle_since.map_or(now, |(at, _)| at),
    }
}

fn parse_saved(s: &SavedSession) -> Option<(Key, Selector)> {
    let id = Key::new(&s.client_id).ok()?;
    let patterns = s
        .patterns
        .iter()
        .map(|p| Pattern::parse(p).ok())
        .collect::<Option<Vec<_>>>()?;
    let types = s
        .types
        .iter()
        .map(|t| EventType::new(t).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((id, Selector { patterns, types }))
}

#[cfg(test)]
mod tests;
