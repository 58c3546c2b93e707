//! The mapping of a Tidings topic to a NATS subject and back: total (every valid topic has a
//! subject), reversible (`topic(subject(t)) == t`) and so injective (two topics never share a
//! subject).
//!
//! A NATS subject is a list of tokens joined by `.`; a token must be non-empty, and `*` and
//! `>` are wildcards, so a published subject must not use them. Tidings topics are any UTF-8
//! without control characters: they may hold `.`, `*`, `>`, spaces, empty `/` segments
//! (`cloudreve://my/a b.jpg`) and non-ASCII text. The mapping:
//!
//! - the subject is `<prefix>.` followed by one token per `/`-separated segment of the topic,
//!   so the topic's hierarchy is the subject's (`downloads/a` → `<prefix>.downloads.a`);
//! - in a segment, the bytes `A-Z a-z 0-9 - _` stand for themselves and every other byte is
//!   `~` and two upper-case hex digits (`.` → `~2E`, `*` → `~2A`, `>` → `~3E`, space → `~20`,
//!   `~` → `~7E`, each byte of a non-ASCII character on its own);
//! - an empty segment is the token `~` alone (never the start of an escape, which always has
//!   two digits after it).
//!
//! Tokens thus hold only `A-Z a-z 0-9 - _ ~`: never empty, never a wildcard, never a space or
//! a `.`. A topic of at most 1,024 bytes gives at most 3,072 bytes after the prefix, within
//! NATS's default 4 KiB control line (`max_control_line`).
//!
//! Examples (prefix `tidings.ev`): `downloads/42` → `tidings.ev.downloads.42`;
//! `cloudreve://my/a b.jpg` → `tidings.ev.cloudreve~3A.~.my.a~20b~2Ejpg`.

use std::fmt::Write as _;

use tidings_proto::Topic;

/// Why a subject is not one `subject` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotATopicSubject(pub String);

impl std::fmt::Display for NotATopicSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotATopicSubject {}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The subject of `topic` under `prefix` (itself a valid subject without wildcards, such as
/// `tidings.ev`).
pub fn subject(prefix: &str, topic: &Topic) -> String {
    let t = topic.as_str();
    let mut out = String::with_capacity(prefix.len() + 1 + t.len() + t.len() / 4);
    out.push_str(prefix);
    for segment in t.split('/') {
        out.push('.');
        if segment.is_empty() {
            out.push('~');
            continue;
        }
        for &b in segment.as_bytes() {
            if plain(b) {
                out.push(b as char);
            } else {
                // Writing to a String cannot fail.
                write!(out, "~{b:02X}").expect("a String takes any write");
            }
        }
    }
    out
}

/// The subject that matches every topic's subject under `prefix` (the stream's filter).
pub fn all(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The topic whose subject under `prefix` is `subject`; refuses anything `subject` would not
/// have made.
pub fn topic(prefix: &str, subject: &str) -> Result<Topic, NotATopicSubject> {
    let bad = |why: &str| NotATopicSubject(format!("subject `{subject}` {why}"));
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(|| bad("is not under the stream's prefix"))?;
    let mut bytes = Vec::with_capacity(rest.len());
    for (i, token) in rest.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        if token == "~" {
            continue;
        }
        if token.is_empty() {
            return Err(bad("has an empty token"));
        }
        let mut it = token.bytes();
        while let Some(b) = it.next() {
            if plain(b) {
                bytes.push(b);
            } else if b == b'~' {
                let hex = [it.next(), it.next()];
                let [Some(h), Some(l)] = hex else {
                    return Err(bad("has a cut escape"));
                };
                let (Some(h), Some(l)) = (hex_digit(h), hex_digit(l)) else {
                    return Err(bad("has an escape that is not two upper-case hex digits"));
                };
                let byte = h << 4 | l;
                if plain(byte) {
                    return Err(bad("escapes a byte that stands for itself"));
                }
                bytes.push(byte);
            } else {
                return Err(bad("has a byte a topic's subject never has"));
            }
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("does not decode to UTF-8"))?;
    Topic::new(&text).map_err(|e| bad(&format!("decodes to an invalid topic: {e}")))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PREFIX: &str = "tidings.ev";

    fn valid_token(t: &str) -> bool {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'~')
    }

    fn assert_valid_subject(s: &str) {
        assert!(s.split('.').all(valid_token), "bad subject {s:?}");
    }

    #[test]
    fn documented_examples() {
        let t = Topic::new("cloudreve://my/a b.jpg").unwrap();
        let s = subject(PREFIX, &t);
        assert_eq!(s, "tidings.ev.cloudreve~3A.~.my.a~20b~2Ejpg");
        assert_eq!(topic(PREFIX, &s).unwrap(), t);
        let t = Topic::new("downloads/42").unwrap();
        assert_eq!(subject(PREFIX, &t), "tidings.ev.downloads.42");
        for raw in [
            "a.b",
            "*",
            "a*b",
            ">",
            "a/>",
            "/",
            "//",
            "~",
            "~7E",
            "é/日本",
            "a b",
        ] {
            let t = Topic::new(raw).unwrap_or_else(|_| Topic::new(&format!("{raw}x")).unwrap());
            let s = subject(PREFIX, &t);
            assert_valid_subject(&s);
            assert_eq!(topic(PREFIX, &s).unwrap(), t, "{raw}");
        }
    }

    #[test]
    fn refuses_what_it_never_makes() {
        for s in [
            "other.a",
            "tidings.ev",
            "tidings.ev.",
            "tidings.ev.a..b",
            "tidings.ev.a~2",
            "tidings.ev.a~2e",
            "tidings.ev.~41",
            "tidings.ev.a*",
            "tidings.ev.~C3",
            "tidings.ev.~0A",
        ] {
            assert!(topic(PREFIX, s).is_err(), "{s}");
        }
    }

    /// Topics as the proto crate accepts them, weighted towards the characters that matter.
    fn any_topic() -> impl Strategy<Value = Topic> {
        let ch = prop_oneof![
            4 => prop::sample::select(vec!['/', '.', '*', '>', ' ', '~', ':', 'a', 'Z', '0', '-', '_', '%']),
            1 => any::<char>(),
        ];
        prop::collection::vec(ch, 1..40).prop_filter_map("not a topic", |cs| {
            Topic::new(&cs.into_iter().collect::<String>()).ok()
        })
    }

    proptest! {
        #[test]
        fn round_trips_into_valid_subjects(t in any_topic()) {
            let s = subject(PREFIX, &t);
            assert_valid_subject(&s);
            prop_assert_eq!(topic(PREFIX, &s).unwrap(), t);
        }

        #[test]
        fn distinct_topics_get_distinct_subjects(a in any_topic(), b in any_topic()) {
            prop_assert_eq!(a == b, subject(PREFIX, &a) == subject(PREFIX, &b));
        }
    }
}
