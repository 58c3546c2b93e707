//! Fuzz target: the names and ids a client sends (`tidings_proto` topic.rs and event.rs):
//! `Topic`, `EventType`, `Key`, selector `Pattern`s, `EventId`s and `Last-Event-ID` cursors.
//! The input, as text, is split at LF into the strings tried.
//!
//! Checks: a value that parses displays as the text it came from and parses again to itself;
//! an id built from any 12 bytes round-trips through its text and through a cursor; the serde
//! form accepts exactly what `new` accepts; `covers` agrees with `matches` (if `p` covers `q`,
//! every topic `q` matches, `p` matches).
#![no_main]

use tidings_proto::{Cursor, EventId, EventType, Key, Pattern, Selector, Topic};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    if let Some(raw) = input.get(..12) {
        let (epoch, seq) = raw.split_at(4);
        let id = EventId {
            epoch: u32::from_le_bytes(epoch.try_into().expect("4 bytes")),
            seq: u64::from_le_bytes(seq.try_into().expect("8 bytes")),
        };
        let text = id.to_string();
        assert_eq!(text.parse::<EventId>(), Ok(id), "{text}");
        assert_eq!(Cursor::parse(&text), Some(Cursor::After(id)), "{text}");
    }
    let text = String::from_utf8_lossy(input);
    let parts: Vec<&str> = text.split('\n').collect();
    for part in &parts {
        one(part);
    }
    if let [p, q, t, ..] = parts[..] {
        let (Ok(p), Ok(q), Ok(t)) = (Pattern::parse(p), Pattern::parse(q), Topic::new(t)) else {
            return;
        };
        if p.covers(&q) && q.matches(&t) {
            assert!(
                p.matches(&t),
                "{p} covers {q}, which matches {t}, but {p} does not"
            );
        }
        let ty = EventType::new("t").expect("a valid type");
        let selector = Selector {
            patterns: vec![p.clone(), q.clone()],
            types: Vec::new(),
        };
        assert_eq!(selector.matches(&t, &ty), p.matches(&t) || q.matches(&t));
    }
});

fn one(s: &str) {
    let json = serde_json::to_string(s).expect("a string serializes");
    if let Ok(t) = Topic::new(s) {
        assert_eq!(t.to_string(), s);
        assert!(!s.ends_with('*') && !s.chars().any(char::is_control));
        assert_eq!(Pattern::parse(s), Ok(Pattern::Exact(t.clone())));
        assert!(Pattern::parse(s).is_ok_and(|p| p.matches(&t)));
    }
    assert_eq!(
        serde_json::from_str::<Topic>(&json).ok(),
        Topic::new(s).ok()
    );
    if let Ok(ty) = EventType::new(s) {
        assert_eq!(ty.to_string(), s);
        assert!(s.len() <= 128 && !s.contains(['\r', '\n', '\0']));
    }
    assert_eq!(
        serde_json::from_str::<EventType>(&json).ok(),
        EventType::new(s).ok()
    );
    if let Ok(k) = Key::new(s) {
        assert_eq!(k.to_string(), s);
    }
    assert_eq!(serde_json::from_str::<Key>(&json).ok(), Key::new(s).ok());
    if let Ok(p) = Pattern::parse(s) {
        let shown = p.to_string();
        assert_eq!(shown, s);
        assert_eq!(Pattern::parse(&shown), Ok(p.clone()));
        assert!(p.covers(&p));
    }
    if let Ok(id) = s.parse::<EventId>() {
        assert_eq!(id.to_string().parse::<EventId>(), Ok(id), "{s}");
    }
    match Cursor::parse(s) {
        None => assert!(s.trim().is_empty()),
        Some(Cursor::Earliest) => assert_eq!(s.trim(), "earliest"),
        Some(Cursor::After(id)) => {
            assert_eq!(s.trim().parse::<EventId>(), Ok(id));
            assert_eq!(Cursor::parse(&id.to_string()), Some(Cursor::After(id)));
        }
        Some(Cursor::Invalid) => assert!(s.trim().parse::<EventId>().is_err()),
    }
}
