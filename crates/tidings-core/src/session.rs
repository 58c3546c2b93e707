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
//! the store's `SessionStore` when it starts and saves it there when it flushes.

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
    fn save_sessions(
        &self,
        sessions: Vec<SavedSession>,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
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
    pub(crate) fn detach(&mut self, client_id: &Key, sub: u64, now: u64) {
        let Some(s) = self.map.get_mut(client_id) else {
            return;
        };
        if s.owner != Some(sub) {
            return;
        }
        s.owner = None;
        self.serial += 1;
        let k = (now, self.serial);
        s.idle_since = Some(k);
        self.idle.insert(k, client_id.clone());
        self.expire(now);
    }

    /// Every live session, for a `SessionStore`. One still attached (a connection the
    /// shutdown grace did not outlast) is saved as detached `now`.
    pub(crate) fn snapshot(&mut self, now: u64) -> Vec<SavedSession> {
        self.expire(now);
        self.map
            .iter()
            .map(|(id, s)| SavedSession {
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
            })
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
