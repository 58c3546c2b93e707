//! Where a request's credential comes from, and the one-time connect tickets. A subscribe
//! request presents, in this order of precedence: `Authorization: Bearer`, `?ticket=`, the
//! endpoint's query token parameter (if it has one), the credential cookie. A publish takes
//! the header, or the cookie only when the configured custom header is present too (a
//! cross-site page cannot add one without a CORS preflight), so a cookie alone never
//! publishes (CSRF).
//!
//! A ticket (`POST /tickets`) is 32 random bytes, base64url; the table keeps only its SHA-256
//! digest with the caller it stands for (grant narrowed, subscribe only), and the lookup is
//! by digest, so its time does not depend on how much of a wrong ticket matched. Redeeming
//! removes it: a ticket opens one subscription within its TTL. The table is bounded; expired
//! tickets are swept as it grows. Time comes from the injected clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::COOKIE;
use sha2::{Digest, Sha256};
use tidings_auth::{Caller, CredentialId};
use tidings_core::clock::{self, DynClock};
use tidings_proto::ErrorCode;

use crate::http::error::HttpError;
use crate::rate::PublishRate;

/// Most tickets held at once (issued and neither used nor swept).
pub const MAX_TICKETS: usize = 100_000;
/// Below this many held tickets, issuing never sweeps.
const SWEEP_FLOOR: usize = 1024;

/// How credentials are taken from requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialOptions {
    /// How long a ticket may wait for its connection.
    pub ticket_ttl: Duration,
    /// The cookie carrying a token.
    pub cookie_name: String,
    /// A header whose presence lets a cookie-authenticated publish through (`None`: a cookie
    /// never authenticates a publish).
    pub cookie_publish_header: Option<http::HeaderName>,
    /// Events per second one credential may publish (0: no limit).
    pub publish_rate: u32,
    /// Events one credential may publish in a burst.
    pub publish_burst: u32,
    /// Streams (SSE, NDJSON, WebSocket) one credential may hold open (0: no limit; the
    /// anonymous caller of an open hub is not limited).
    pub max_streams: usize,
}

impl Default for CredentialOptions {
    /// 60 s tickets, the `tidings_token` cookie, no cookie publish, 10,000 events/s.
    fn default() -> Self {
        CredentialOptions {
            ticket_ttl: Duration::from_secs(60),
            cookie_name: "tidings_token".to_owned(),
            cookie_publish_header: None,
            publish_rate: 10_000,
            publish_burst: 20_000,
            max_streams: 10_000,
        }
    }
}

/// The credential settings and the ticket table, shared by every connection (one pointer:
/// every idle lean stream carries a copy while it opens).
#[derive(Debug, Clone)]
pub struct Credentials(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    options: CredentialOptions,
    tickets: Tickets,
    publish_rate: PublishRate,
    /// Open streams per credential.
    streams: Mutex<HashMap<CredentialId, usize>>,
}

impl Credentials {
    /// Credentials with these settings, tickets timed by `clock`.
    pub fn new(options: CredentialOptions, clock: DynClock) -> Credentials {
        Credentials(Arc::new(Shared {
            tickets: Tickets::new(options.ticket_ttl, clock.clone()),
            publish_rate: PublishRate::new(options.publish_rate, options.publish_burst, clock),
            streams: Mutex::new(HashMap::new()),
            options,
        }))
    }

    /// The settings.
    pub(crate) fn options(&self) -> &CredentialOptions {
        &self.0.options
    }

    /// Takes `events` from the caller's publish bucket, or answers 429 with `Retry-After`.
    pub(crate) fn publish_rate(&self, id: CredentialId, events: usize) -> Result<(), HttpError> {
        self.0.publish_rate.take(id, events).map_err(|secs| {
            HttpError::new(
                ErrorCode::RateLimited,
                format!(
                    "this credential publishes more than {} events per second; retry after \
                     {secs} s",
                    self.0.options.publish_rate
                ),
            )
            .retry_after(secs)
        })
    }

    /// A place for one more stream of `caller`'s credential, held until the stream ends;
    /// 429 `too_many_streams` when it has its most open (`None`: not limited).
    pub(crate) fn open_stream(&self, caller: &Caller) -> Result<Option<StreamSlot>, HttpError> {
        let max = self.0.options.max_streams;
        if max == 0 || caller.id == CredentialId::ANONYMOUS {
            return Ok(None);
        }
        let mut streams = self.0.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = streams.entry(caller.id).or_insert(0);
        if *n >= max {
            return Err(HttpError::new(
                ErrorCode::TooManyStreams,
                format!("this credential has {max} streams open, the most it may; close one"),
            ));
        }
        *n += 1;
        Ok(Some(StreamSlot {
            credentials: self.clone(),
            id: caller.id,
        }))
    }

    /// The ticket table.
    pub(crate) fn tickets(&self) -> &Tickets {
        &self.0.tickets
    }

    /// Now, in milliseconds since the Unix epoch, from the injected clock (credential expiry
    /// is judged against it).
    pub(crate) fn now_ms(&self) -> u64 {
        self.0.tickets.clock.now_ms()
    }

    /// The value of the credential cookie, if the request carries it (the first one).
    pub(crate) fn cookie<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.0.options.cookie_name.as_str();
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim_matches('"'))
            .filter(|v| !v.is_empty())
    }
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials::new(CredentialOptions::default(), clock::system())
    }
}

/// One open stream's place under its credential's limit; given back when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    credentials: Credentials,
    id: CredentialId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self
            .credentials
            .0
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = streams.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&self.id);
            }
        }
    }
}

/// What a stream holds for its credential: when it expires, its place under the
/// credential's stream limit, and (through a trusted proxy) its place under the limit of the
/// client address the proxy names.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    pub(crate) expiry: Option<tokio::time::Instant>,
    pub(crate) slot: Option<StreamSlot>,
    pub(crate) address: Option<crate::listener::AddressSlot>,
}

/// A held ticket.
#[derive(Debug)]
struct Held {
    caller: Caller,
    expires_ms: u64,
}

/// The ticket table.
#[derive(Debug)]
pub(crate) struct Tickets {
    ttl: Duration,
    clock: DynClock,
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    held: HashMap<[u8; 32], Held>,
    /// Issuing sweeps expired tickets once `held` reaches this size.
    sweep_at: usize,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketError {
    /// Never issued, or already used.
    Unknown,
    /// Issued, but its TTL passed before it was used.
    Expired,
}

impl From<TicketError> for HttpError {
    fn from(e: TicketError) -> HttpError {
        HttpError::new(
            ErrorCode::Unauthorized,
            match e {
                TicketError::Unknown => "ticket: not valid (unknown, or already used)",
                TicketError::Expired => "ticket: expired; ask POST /tickets for a new one",
            },
        )
    }
}

impl Tickets {
    pub(crate) fn new(ttl: Duration, clock: DynClock) -> Tickets {
        Tickets {
            ttl,
            clock,
            inner: Mutex::new(Table {
                held: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }

    /// The TTL in whole seconds, as `expires_in` says it.
    pub(crate) fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// Issues a ticket standing for `caller`; `Err` when the table is full of live tickets.
    pub(crate) fn issue(&self, caller: Caller) -> Result<String, HttpError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|_| HttpError::new(ErrorCode::Internal, "ticket: no randomness available"))?;
        let ticket = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if table.held.len() >= table.sweep_at {
            table.held.retain(|_, h| h.expires_ms > now);
            table.sweep_at = (table.held.len() * 2).clamp(SWEEP_FLOOR, MAX_TICKETS);
        }
        if table.held.len() >= MAX_TICKETS {
            return Err(HttpError::new(
                ErrorCode::Overloaded,
                "ticket: too many unused tickets are held; retry shortly",
            ));
        }
        table.held.insert(
            digest(&ticket),
            Held {
                caller,
                expires_ms: now.saturating_add(ttl_ms),
            },
        );
        Ok(ticket)
    }

    /// The caller a ticket stands for; the ticket is used up either way.
    pub(crate) fn redeem(&self, ticket: &str) -> Result<Caller, TicketError> {
        let now = self.clock.now_ms();
        let held = {
            let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            table.held.remove(&digest(ticket))
        };
        match held {
            None => Err(TicketError::Unknown),
            Some(h) if h.expires_ms <= now => Err(TicketError::Expired),
            Some(h) => Ok(h.caller),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().held.len()
    }
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

#[cfg(test)]
mod tests;
