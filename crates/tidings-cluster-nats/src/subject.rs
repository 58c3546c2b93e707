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
//! A keyed event's subject adds one last token, `=` and 32 hex digits of a digest of its key
//! (`subject::keyed`), so the stream's last message per subject is the latest event per
//! `(topic, key)`: the snapshot (`snapshot.rs`). A topic's tokens never hold `=`, so that
//! token is never taken for a segment (`without_key`); its fixed length keeps any key within
//! the control line.
//!
//! Examples (prefix `tidings.ev`): `downloads/42` → `tidings.ev.downloads.42`;
//! `cloudreve://my/a b.jpg` → `tidings.ev.cloudreve~3A.~.my.a~20b~2Ejpg`.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use tidings_proto::{Key, Pattern, Selector, Topic};

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

/// The subject of an event of `topic` with `key`: the topic's subject, and for a keyed event
/// a last token naming the key.
pub fn keyed(prefix: &str, topic: &Topic, key: Option<&Key>) -> String {
    let mut out = subject(prefix, topic);
    if let Some(key) = key {
        let digest = Sha256::digest(key.as_str().as_bytes());
        out.push_str(".=");
        for b in &digest[..16] {
            write!(out, "{b:02x}").expect("a String takes any write");
        }
    }
    out
}

/// `subject` without the key token `keyed` may have added.
pub fn without_key(subject: &str) -> &str {
    match subject.rsplit_once('.') {
        Some((topic, last)) if last.starts_with('=') => topic,
        _ => subject,
    }
}

/// The subject filter of a snapshot of `selector`: every keyed subject of the topics it
/// matches, and maybe more (the reader filters by the selector again). One pattern narrows
/// it; several read every subject (NATS 2.9 takes one filter per consumer).
pub fn filter(prefix: &str, selector: &Selector) -> String {
    match selector.patterns.as_slice() {
        [Pattern::Exact(t)] => format!("{}.*", subject(prefix, t)),
        [Pattern::Prefix(p)] => match p.rsplit_once('/') {
            // The whole segments before the last `/` are fixed; what follows is any.
            Some((whole, _)) => match Topic::new(whole) {
                Ok(t) => format!("{}.>", subject(prefix, &t)),
                Err(_) => all(prefix),
            },
            None => all(prefix),
        },
        _ => all(prefix),
    }
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

    #[test]
    fn a_key_token_is_one_more_token_that_never_reads_as_a_segment() {
        let t = Topic::new("a.b/c").unwrap();
        let k = Key::new("d 1.x").unwrap();
        let s = keyed(PREFIX, &t, Some(&k));
        assert!(s.starts_with("tidings.ev.a~2Eb.c.="), "{s}");
        assert_eq!(s.len(), "tidings.ev.a~2Eb.c.=".len() + 32);
        assert_eq!(topic(PREFIX, without_key(&s)).unwrap(), t);
        assert_eq!(keyed(PREFIX, &t, None), subject(PREFIX, &t));
        assert_eq!(without_key(&subject(PREFIX, &t)), subject(PREFIX, &t));
        assert_ne!(s, keyed(PREFIX, &t, Some(&Key::new("d 2.x").unwrap())));
        let sel = |p: &str| Selector {
            patterns: vec![Pattern::parse(p).unwrap()],
            types: vec![],
        };
        assert_eq!(filter(PREFIX, &sel("a.b/c")), "tidings.ev.a~2Eb.c.*");
        assert_eq!(filter(PREFIX, &sel("a.b/c*")), "tidings.ev.a~2Eb.>");
        assert_eq!(filter(PREFIX, &sel("a.b/*")), "tidings.ev.a~2Eb.>");
        assert_eq!(filter(PREFIX, &sel("down*")), "tidings.ev.>");
        assert_eq!(filter(PREFIX, &sel("*")), "tidings.ev.>");
    }

    proptest! {
        #[test]
        fn keyed_subjects_read_back_as_their_topic(t in any_topic(), k in "[ -~]{1,20}") {
            let k = Key::new(&k).unwrap();
            let s = keyed(PREFIX, &t, Some(&k));
            prop_assert_eq!(topic(PREFIX, without_key(&s)).unwrap(), t);
        }

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
