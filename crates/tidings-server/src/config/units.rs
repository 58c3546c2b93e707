//! Parsing of the human units settings are written in: durations (`30s`, `7d`) and sizes
//! (`64KiB`, `1MB`), each error naming the setting.

use std::time::Duration;

use super::{ConfigError, bad};

/// Splits `text` into its leading number and the unit after it, and scales the number by the
/// unit's factor from `units`; `example` goes into the message when either part is wrong.
fn scaled(
    setting: &str,
    text: &str,
    units: &[(&str, u64)],
    example: &str,
) -> Result<u64, ConfigError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let wrong = || bad(setting, format!("`{text}` is not {example}"));
    let n: u64 = num.parse().map_err(|_| wrong())?;
    let factor = units
        .iter()
        .find(|(name, _)| *name == unit.trim())
        .map(|(_, f)| *f)
        .ok_or_else(wrong)?;
    n.checked_mul(factor)
        .ok_or_else(|| bad(setting, format!("`{text}` is too large")))
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d`.
pub fn duration(
    setting: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or(default).trim();
    let units = [
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
        ("h", 3_600_000),
        ("d", 86_400_000),
    ];
    let ms = scaled(
        setting,
        text,
        &units,
        "a duration like 30s, 500ms, 5m, 2h, 7d",
    )?;
    Ok(Duration::from_millis(ms))
}

/// A duration that must not be zero.
pub(super) fn nonzero(
    setting: &str,
    value: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let d = duration(setting, value, default)?;
    if d.is_zero() {
        return Err(bad(setting, "must be greater than 0"));
    }
    Ok(d)
}

/// A count that must not be zero.
pub(super) fn positive(
    setting: &str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(bad(setting, "must be greater than 0")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// Parses `1048576`, `64KiB`, `1MiB`, `1GiB`, `10KB`, `5MB`.
pub fn size(setting: &str, value: Option<&str>, default: &str) -> Result<usize, ConfigError> {
    let text = value.unwrap_or(default).trim();
    let units = [
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("KB", 1000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];
    let bytes = scaled(setting, text, &units, "a size like 65536, 64KiB, 1MiB")?;
    usize::try_from(bytes).map_err(|_| bad(setting, format!("`{text}` is too large")))
}
