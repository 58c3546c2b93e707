//! The publish rate per credential: a token bucket per `CredentialId` (events per second, a
//! burst), on the injected clock. A publish takes as many tokens as it has events, all or
//! none; when the bucket is short, the answer is 429 with the seconds until it holds enough.
//! The table is bounded: buckets that have refilled completely carry no state worth keeping
//! and are swept as it grows.

use std::collections::HashMap;
use std::sync::Mutex;

use tidings_auth::CredentialId;
use tidings_core::clock::DynClock;

/// Below this many buckets, taking never sweeps.
const SWEEP_FLOOR: usize = 1024;

/// The per-credential publish rate.
#[derive(Debug)]
pub(crate) struct PublishRate {
    /// Events per second (0: no limit).
    per_second: u32,
    /// Most events in one burst (at least the largest batch).
    burst: u32,
    clock: DynClock,
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<CredentialId, Bucket>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths of an event (so refills are exact in whole milliseconds).
    milli_tokens: u64,
    at_ms: u64,
}

impl PublishRate {
    pub(crate) fn new(per_second: u32, burst: u32, clock: DynClock) -> PublishRate {
        PublishRate {
            per_second,
            burst,
            clock,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }

    /// Takes `events` tokens from `id`'s bucket; `Err(seconds)` (at least 1) until enough
    /// will be there.
    pub(crate) fn take(&self, id: CredentialId, events: usize) -> Result<(), u64> {
        if self.per_second == 0 {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let full = u64::from(self.burst) * 1000;
        let per_ms = u64::from(self.per_second);
        let want = (events as u64).saturating_mul(1000).min(full);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.buckets.len() >= table.sweep_at {
            table.buckets.retain(|_, b| {
                b.milli_tokens + now.saturating_sub(b.at_ms).saturating_mul(per_ms) < full
            });
            table.sweep_at = (table.buckets.len() * 2).max(SWEEP_FLOOR);
        }
        let bucket = table.buckets.entry(id).or_insert(Bucket {
            milli_tokens: full,
            at_ms: now,
        });
        let refill = now.saturating_sub(bucket.at_ms).saturating_mul(per_ms);
        bucket.milli_tokens = (bucket.milli_tokens + refill).min(full);
        bucket.at_ms = now.max(bucket.at_ms);
        if bucket.milli_tokens >= want {
            bucket.milli_tokens -= want;
            return Ok(());
        }
        let missing_ms = (want - bucket.milli_tokens).div_ceil(per_ms);
        Err(missing_ms.div_ceil(1000).max(1))
    }
}

#[cfg(test)]
mod tests {
    use tidings_core::clock::ManualClock;

    use super::*;

    fn id(n: u8) -> CredentialId {
        CredentialId([n; 32])
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let clock = ManualClock::new(1_000_000);
        let rate = PublishRate::new(10, 20, clock.clone());
        assert_eq!(rate.take(id(1), 20), Ok(()));
        assert_eq!(
            rate.take(id(1), 1),
            Err(1),
            "empty: wait a second (0.1 s rounded up)"
        );
        assert_eq!(
            rate.take(id(2), 20),
            Ok(()),
            "another credential has its own bucket"
        );
        clock.advance(500);
        assert_eq!(rate.take(id(1), 5), Ok(()), "5 tokens refilled in 0.5 s");
        assert_eq!(rate.take(id(1), 1), Err(1));
        clock.advance(10_000);
        assert_eq!(
            rate.take(id(1), 30),
            Ok(()),
            "a batch beyond the burst costs the burst"
        );
        assert_eq!(rate.take(id(1), 20), Err(2), "20 tokens take 2 s");
        // All or nothing: the refused take left the bucket as it was.
        clock.advance(1_000);
        assert_eq!(rate.take(id(1), 10), Ok(()));
        assert_eq!(PublishRate::new(0, 0, clock).take(id(1), 1_000_000), Ok(()));
    }

    #[test]
    fn full_buckets_are_swept_as_the_table_grows() {
        let clock = ManualClock::new(0);
        let rate = PublishRate::new(1, 1, clock.clone());
        for n in 0..=255u8 {
            for m in 0..8u8 {
                let mut bytes = [n; 32];
                bytes[0] = m;
                rate.take(CredentialId(bytes), 1).unwrap();
            }
        }
        assert_eq!(rate.table.lock().unwrap().buckets.len(), 2048);
        clock.advance(1_000);
        rate.take(id(7), 1).unwrap();
        assert!(
            rate.table.lock().unwrap().buckets.len() <= 1,
            "refilled buckets are dropped"
        );
    }
}
