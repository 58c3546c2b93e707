//! Events and their ids. An id is `<epoch>-<seq>`: the epoch (8 lowercase hex digits) names
//! the store the id came from, the sequence number orders every event of that store. A cursor
//! from another epoch is never trusted.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::topic::{EventType, Key, Topic};

/// Identity of one event history. A new store, or a store that may have lost acknowledged
/// ordering, gets a new random epoch; ids from another epoch are answered with a `reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(pub u32);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The id of one event: monotonic within an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    /// The history this id belongs to.
    pub epoch: u32,
    /// Position in that history; the first event is 1, 0 means "before everything".
    pub seq: u64,
}

impl EventId {
    /// The id `seq` of `epoch`.
    pub fn new(epoch: Epoch, seq: u64) -> Self {
        EventId {
            epoch: epoch.0,
            seq,
        }
    }

    /// The epoch part.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.epoch, self.seq)
    }
}

/// Why an id string was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event id is `<8 hex digits>-<decimal sequence>`")
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for EventId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let (epoch, seq) = s.split_once('-').ok_or(ParseIdError)?;
        if epoch.len() != 8 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdError);
        }
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIdError);
        }
        let epoch = u32::from_str_radix(epoch, 16).map_err(|_| ParseIdError)?;
        let seq = seq.parse().map_err(|_| ParseIdError)?;
        Ok(EventId { epoch, seq })
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a resuming subscriber wants to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Everything still retained (`Last-Event-ID: earliest`).
    Earliest,
    /// Everything after this id.
    After(EventId),
    /// A value that is not an id: the subscriber is told `reset`.
    Invalid,
}

impl Cursor {
    /// Parses a `Last-Event-ID` value. An empty value means "no cursor" (`None`).
    pub fn parse(value: &str) -> Option<Cursor> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if value == "earliest" {
            return Some(Cursor::Earliest);
        }
        Some(value.parse().map(Cursor::After).unwrap_or(Cursor::Invalid))
    }
}

/// One published event, as every transport and the store see it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Assigned by the hub's sequencer.
    pub id: EventId,
    /// Where it was published.
    pub topic: Topic,
    /// What kind of event it is (the SSE `event:` name).
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The entity it is about, for snapshots and coalescing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Key>,
    /// The client id of the publisher, so its own events are not echoed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Key>,
    /// Publish time, milliseconds since the Unix epoch.
    pub time: u64,
    /// The payload: compact JSON, passed through as published.
    pub data: Box<RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_garbage() {
        let id = EventId {
            epoch: 0xa1b2c3d4,
            seq: 1042,
        };
        assert_eq!(id.to_string(), "a1b2c3d4-1042");
        assert_eq!("a1b2c3d4-1042".parse::<EventId>(), Ok(id));
        for bad in [
            "",
            "1042",
            "a1b2c3d4-",
            "a1b2c3d-1",
            "a1b2c3d4-1x",
            "zzzzzzzz-1",
            "a1b2c3d4--1",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
        assert!(
            "a1b2c3d4-99999999999999999999999"
                .parse::<EventId>()
                .is_err()
        );
    }

    #[test]
    fn cursors() {
        assert_eq!(Cursor::parse(""), None);
        assert_eq!(Cursor::parse("earliest"), Some(Cursor::Earliest));
        assert_eq!(Cursor::parse("junk"), Some(Cursor::Invalid));
        assert_eq!(
            Cursor::parse("00000001-5"),
            Some(Cursor::After(EventId { epoch: 1, seq: 5 }))
        );
    }
}
