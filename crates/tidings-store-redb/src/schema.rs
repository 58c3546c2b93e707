//! The on-disk layout (format version 4): the `events` and `meta` tables, the keyed-batch
//! tables, and the byte encoding of one event. (The latest-per-key tables of v4 are
//! described in `latest`.)
//!
//! Version history: v1 had `events` and `meta`; v2 added `idempotency` and
//! `idempotency_by_seq` (see `migrate::v2`); v3 replaced them with `keyed_batches` and
//! `keyed_batches_by_seq`, whose keys are scoped per credential and whose fingerprints are
//! SHA-256 (see `migrate::v3`); v4 added `latest` and `latest_by_seq` (see `migrate::v4`).
//!
//! # Tables
//! - `events`: `u64` seq → event bytes (below). Seqs are strictly increasing and contiguous
//!   from the first retained one to the last; retention deletes only from the front.
//! - `meta`: `&str` name → bytes, little-endian integers:
//!   - `format_version` (`u32`): the format of the whole file; see `migrate`.
//!   - `epoch` (`u32`): the epoch every id read from this file carries.
//!   - `trimmed_through` (`u64`): highest seq retention has deleted (0: none).
//!   - `events` (`u64`), `bytes` (`u64`): how many rows `events` holds and the sum of their value
//!     lengths, updated in the same transaction as the rows, so stats are O(1).
//!   - `clean_shutdown` (empty value): present only while no acknowledged event can be missing
//!     from the durable state: written by a durable commit at flush and close, removed by a
//!     durable commit before the first unfsynced append after it.
//!
//! - `keyed_batches` (v3): `[u8; 32]` row id → `fingerprint [u8; 32] | first_seq u64 LE |
//!   count u32 LE` (44 bytes), written in the same transaction as the batch's events. The row
//!   id is [`keyed_row`]: SHA-256 of a tag, the key's 32-byte scope and the key's bytes, so
//!   the same key in two scopes is two rows, and neither the key nor the scope is on disk.
//! - `keyed_batches_by_seq` (v3): `u64` first seq → `[u8; 32]` row id, so retention can drop a
//!   key together with its events (a key lives while its batch's first event does).
//!
//! # One event (the value in `events`)
//! ```text
//! flags   u8        bit 0: key present, bit 1: origin present; other bits are 0
//! time    u64 LE    publish time, ms since the Unix epoch
//! topic   u32 LE length, then that many bytes of UTF-8
//! type    u32 LE length, then UTF-8
//! key     (if flag) u32 LE length, then UTF-8
//! origin  (if flag) u32 LE length, then UTF-8
//! data    the rest: compact JSON, as published
//! ```
//! The epoch and seq are not in the value: the seq is the row key and the epoch is the store's.
//! Decoding validates every field as the hub did on publish (topic, type and key rules, JSON
//! data); anything that does not decode is `StoreError::Corrupt`, never a panic.

use redb::TableDefinition;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tidings_core::{Fingerprint, IdempotencyKey, KeyedBatch, StoreError};
use tidings_proto::{Epoch, Event, EventId, EventType, Key, Topic};

/// seq → encoded event.
pub(crate) const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
/// name → little-endian value.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// Row id of a keyed batch ([`keyed_row`]) → fingerprint, first seq, count (v3).
pub(crate) const KEYED: TableDefinition<'_, &[u8; 32], &[u8]> =
    TableDefinition::new("keyed_batches");
/// First seq of a keyed batch → its row id (v3).
pub(crate) const KEYED_BY_SEQ: TableDefinition<'_, u64, &[u8; 32]> =
    TableDefinition::new("keyed_batches_by_seq");

/// The row id of an idempotency key in `keyed_batches`: SHA-256 over a tag, the 32-byte scope,
/// then the key's bytes (the scope's fixed length keeps the two apart).
pub(crate) fn keyed_row(key: &IdempotencyKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tidings keyed batch v3\0");
    h.update(key.scope.0);
    h.update(key.key.as_bytes());
    h.finalize().into()
}

/// Length of a `keyed_batches` value.
const KEYED_LEN: usize = 32 + 8 + 4;

/// Encodes the value of a `keyed_batches` row.
pub(crate) fn encode_keyed(batch: &KeyedBatch) -> [u8; KEYED_LEN] {
    let mut out = [0u8; KEYED_LEN];
    out[..32].copy_from_slice(&batch.fingerprint.0);
    out[32..40].copy_from_slice(&batch.first_seq.to_le_bytes());
    out[40..].copy_from_slice(&batch.count.to_le_bytes());
    out
}

/// Decodes a `keyed_batches` row found for `key`.
pub(crate) fn decode_keyed(key: &IdempotencyKey, bytes: &[u8]) -> Result<KeyedBatch, StoreError> {
    let corrupt = || StoreError::Corrupt("a keyed-batch row is malformed".into());
    let bytes: &[u8; KEYED_LEN] = bytes.try_into().map_err(|_| corrupt())?;
    let (fingerprint, rest) = bytes.split_at(32);
    let (first_seq, count) = rest.split_at(8);
    Ok(KeyedBatch {
        key: key.clone(),
        fingerprint: Fingerprint(fingerprint.try_into().map_err(|_| corrupt())?),
        first_seq: u64::from_le_bytes(first_seq.try_into().map_err(|_| corrupt())?),
        count: u32::from_le_bytes(count.try_into().map_err(|_| corrupt())?),
    })
}

/// Meta key: format version, `u32`.
pub(crate) const FORMAT_VERSION: &str = "format_version";
/// Meta key: store epoch, `u32`.
pub(crate) const EPOCH: &str = "epoch";
/// Meta key: highest seq deleted by retention, `u64`.
pub(crate) const TRIMMED_THROUGH: &str = "trimmed_through";
/// Meta key: rows in `events`, `u64`.
pub(crate) const EVENT_COUNT: &str = "events";
/// Meta key: sum of the value lengths in `events`, `u64`.
pub(crate) const EVENT_BYTES: &str = "bytes";
/// Meta key: present after a clean shutdown (see the module docs).
pub(crate) const CLEAN_SHUTDOWN: &str = "clean_shutdown";

const FLAG_KEY: u8 = 1;
const FLAG_ORIGIN: u8 = 2;
/// flags + time.
const HEADER: usize = 1 + 8;

/// Appends the encoding of `event` to `out` (cleared first).
pub(crate) fn encode_event(event: &Event, out: &mut Vec<u8>) {
    out.clear();
    let mut flags = 0;
    if event.key.is_some() {
        flags |= FLAG_KEY;
    }
    if event.origin.is_some() {
        flags |= FLAG_ORIGIN;
    }
    out.push(flags);
    out.extend_from_slice(&event.time.to_le_bytes());
    put_str(out, event.topic.as_str());
    put_str(out, event.event_type.as_str());
    if let Some(key) = &event.key {
        put_str(out, key.as_str());
    }
    if let Some(origin) = &event.origin {
        put_str(out, origin.as_str());
    }
    out.extend_from_slice(event.data.get().as_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names are validated to at most 1024 bytes, far below u32::MAX.
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the event stored under `seq`, giving it an id in `epoch`.
pub(crate) fn decode_event(epoch: Epoch, seq: u64, bytes: &[u8]) -> Result<Event, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq}: {what}"));
    let mut r = Reader { bytes, pos: 0 };
    let flags = r.take(1).ok_or_else(|| corrupt("truncated flags"))?[0];
    if flags & !(FLAG_KEY | FLAG_ORIGIN) != 0 {
        return Err(corrupt("unknown flag bits"));
    }
    let time = r.u64().ok_or_else(|| corrupt("truncated time"))?;
    let topic = r.str().ok_or_else(|| corrupt("bad topic bytes"))?;
    let topic = Topic::new(topic).map_err(|e| corrupt(&format!("topic {e}")))?;
    let ty = r.str().ok_or_else(|| corrupt("bad type bytes"))?;
    let event_type = EventType::new(ty).map_err(|e| corrupt(&format!("type {e}")))?;
    let mut optional_key = |flag: u8, name: &str| -> Result<Option<Key>, StoreError> {
        if flags & flag == 0 {
            return Ok(None);
        }
        let s = r
            .str()
            .ok_or_else(|| corrupt(&format!("bad {name} bytes")))?;
        Key::new(s)
            .map(Some)
            .map_err(|e| corrupt(&format!("{name} {e}")))
    };
    let key = optional_key(FLAG_KEY, "key")?;
    let origin = optional_key(FLAG_ORIGIN, "origin")?;
    let data = std::str::from_utf8(r.rest()).map_err(|_| corrupt("data is not UTF-8"))?;
    let data = RawValue::from_string(data.to_owned())
        .map_err(|e| corrupt(&format!("data is not JSON: {e}")))?;
    Ok(Event {
        id: EventId::new(epoch, seq),
        topic,
        event_type,
        key,
        origin,
        time,
        data,
    })
}

/// The publish time of an encoded event, without decoding the rest (for age retention).
pub(crate) fn event_time(seq: u64, bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .get(1..HEADER)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("event {seq}: truncated time")))
}

/// Reads a `u32` meta value.
pub(crate) fn meta_u32(name: &str, bytes: &[u8]) -> Result<u32, StoreError> {
    bytes
        .try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| StoreError::Corrupt(format!("meta `{name}` is not a u32")))
}

/// Reads a `u64` meta value.
pub(crate) fn meta_u64(name: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| StoreError::Corrupt(format!("meta `{name}` is not a u64")))
}

/// A bounds-checked cursor over a value: every read returns `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::try_from(len).ok()?)?).ok()
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = self.bytes.get(self.pos..).unwrap_or_default();
        self.pos = self.bytes.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: Option<&str>, origin: Option<&str>) -> Event {
        Event {
            id: EventId { epoch: 9, seq: 7 },
            topic: Topic::new("downloads/abc").unwrap(),
            event_type: EventType::new("progress").unwrap(),
            key: key.map(|k| Key::new(k).unwrap()),
            origin: origin.map(|k| Key::new(k).unwrap()),
            time: 1_700_000_000_123,
            data: RawValue::from_string(r#"{"done":1}"#.into()).unwrap(),
        }
    }

    #[test]
    fn round_trip_with_and_without_optional_fields() {
        for (key, origin) in [
            (None, None),
            (Some("abc"), None),
            (None, Some("c1")),
            (Some("k"), Some("o")),
        ] {
            let e = event(key, origin);
            let mut buf = Vec::new();
            encode_event(&e, &mut buf);
            let d = decode_event(Epoch(3), 7, &buf).unwrap();
            assert_eq!(d.id, EventId { epoch: 3, seq: 7 });
            assert_eq!(d.topic, e.topic);
            assert_eq!(d.event_type, e.event_type);
            assert_eq!(d.key, e.key);
            assert_eq!(d.origin, e.origin);
            assert_eq!(d.time, e.time);
            assert_eq!(d.data.get(), e.data.get());
            assert_eq!(event_time(7, &buf).unwrap(), e.time);
        }
    }

    #[test]
    fn every_truncation_and_bad_flag_is_corrupt_not_a_panic() {
        let mut buf = Vec::new();
        encode_event(&event(Some("k"), Some("o")), &mut buf);
        for len in 0..buf.len() {
            assert!(matches!(
                decode_event(Epoch(1), 1, &buf[..len]),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut bad = buf.clone();
        bad[0] |= 0x80;
        assert!(matches!(
            decode_event(Epoch(1), 1, &bad),
            Err(StoreError::Corrupt(_))
        ));
        let mut huge = buf.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_event(Epoch(1), 1, &huge),
            Err(StoreError::Corrupt(_))
        ));
        assert!(event_time(1, &buf[..5]).is_err());
        assert!(meta_u32("x", &[1, 2]).is_err());
        assert!(meta_u64("x", &[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn keyed_rows_round_trip_and_separate_scopes() {
        use tidings_core::IdempotencyScope;
        let key = |scope: u8, k: &str| IdempotencyKey {
            scope: IdempotencyScope([scope; 32]),
            key: k.into(),
        };
        let batch = KeyedBatch {
            key: key(1, "order-1"),
            fingerprint: Fingerprint([7; 32]),
            first_seq: u64::MAX - 3,
            count: 1000,
        };
        let bytes = encode_keyed(&batch);
        assert_eq!(decode_keyed(&batch.key, &bytes).unwrap(), batch);
        for len in [0, 20, KEYED_LEN - 1, KEYED_LEN + 1] {
            let mut bad = bytes.to_vec();
            bad.resize(len, 0);
            assert!(matches!(
                decode_keyed(&batch.key, &bad),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert_ne!(keyed_row(&key(1, "order-1")), keyed_row(&key(2, "order-1")));
        assert_ne!(keyed_row(&key(1, "order-1")), keyed_row(&key(1, "order-2")));
        assert_eq!(keyed_row(&key(1, "order-1")), keyed_row(&key(1, "order-1")));
    }
}
