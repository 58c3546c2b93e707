//! Validated names: `Topic`, `EventType`, `Key`, and the `Selector` a subscription asks for.
//!
//! Selector syntax: `*` alone matches every topic; a pattern ending in `*` matches every topic
//! that starts with what precedes the `*` (`downloads/*` matches `downloads/a` and
//! `downloads/a/b`, `cloudreve://my/*` a whole tree); anything else matches that exact topic.
//! A topic therefore never ends in `*`.

use std::fmt;
use std::sync::Arc;

/// Longest topic, in bytes.
pub const MAX_TOPIC_BYTES: usize = 1024;
/// Longest event type, in bytes.
pub const MAX_TYPE_BYTES: usize = 128;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a name was refused. The message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError(pub String);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValidationError {}

fn check_name(value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError("must not be empty".into()));
    }
    if value.len() > max {
        return Err(ValidationError(format!(
            "is {} bytes, longer than the limit of {max}",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ValidationError(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $extra:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: &str) -> Result<Self, ValidationError> {
                check_name(value, $max)?;
                let extra: fn(&str) -> Result<(), ValidationError> = $extra;
                extra(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A topic: 1 to 1024 bytes of UTF-8 without control characters, not ending in `*`.
    Topic,
    MAX_TOPIC_BYTES,
    |v| {
        if v.ends_with('*') {
            Err(ValidationError("must not end with `*` (that makes it a selector)".into()))
        } else {
            Ok(())
        }
    }
);

name_type!(
    /// An event type (the SSE `event:` field): 1 to 128 bytes without control characters, so
    /// no CR, LF or NUL can break the framing.
    EventType,
    MAX_TYPE_BYTES,
    |_| Ok(())
);

name_type!(
    /// The entity an event is about (a download id, a file path): 1 to 1024 bytes without
    /// control characters.
    Key,
    MAX_KEY_BYTES,
    |_| Ok(())
);

/// One pattern of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every topic.
    All,
    /// `prefix*`: every topic starting with `prefix`.
    Prefix(Arc<str>),
    /// An exact topic.
    Exact(Topic),
}

impl Pattern {
    /// Parses one pattern in the syntax described in the module docs.
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        if value == "*" {
            return Ok(Pattern::All);
        }
        match value.strip_suffix('*') {
            Some(prefix) => {
                check_name(prefix, MAX_TOPIC_BYTES)?;
                Ok(Pattern::Prefix(Arc::from(prefix)))
            }
            None => Topic::new(value).map(Pattern::Exact),
        }
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &Topic) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(p) => topic.as_str().starts_with(&**p),
            Pattern::Exact(t) => t == topic,
        }
    }

    /// Whether every topic `other` matches is matched by `self` (used by grants).
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::All, _) => true,
            (_, Pattern::All) => false,
            (Pattern::Prefix(p), Pattern::Prefix(q)) => q.starts_with(&**p),
            (Pattern::Prefix(p), Pattern::Exact(t)) => t.as_str().starts_with(&**p),
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::All => f.write_str("*"),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Exact(t) => f.write_str(t.as_str()),
        }
    }
}

/// What a subscription asks for: one or more patterns, and optionally a set of event types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Topic patterns; an event matches when any of them does. Never empty.
    pub patterns: Vec<Pattern>,
    /// When non-empty, only events of these types match.
    pub types: Vec<EventType>,
}

impl Selector {
    /// Everything: `*`, any type.
    pub fn all() -> Self {
        Selector {
            patterns: vec![Pattern::All],
            types: Vec::new(),
        }
    }

    /// Whether an event on `topic` of type `ty` matches.
    pub fn matches(&self, topic: &Topic, ty: &EventType) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
            && (self.types.is_empty() || self.types.contains(ty))
    }
}

#[cfg(test)]
mod tests;
