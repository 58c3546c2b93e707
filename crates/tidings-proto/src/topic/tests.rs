//! Table tests for topic, type and pattern validation and matching.

use super::*;

#[test]
fn topics_accept_uri_like_names_and_refuse_control_characters() {
    for ok in [
        "downloads/abc-123",
        "camera/SN42",
        "cloudreve://my/My Photos/a.jpg",
        "a*b",
    ] {
        assert!(Topic::new(ok).is_ok(), "{ok} should be a topic");
    }
    let cases = [
        ("", "must not be empty"),
        ("a\nb", "control characters (found U+000A)"),
        ("a\rb", "U+000D"),
        ("a\0b", "U+0000"),
        ("downloads/*", "must not end with `*`"),
    ];
    for (bad, why) in cases {
        let err = Topic::new(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    assert!(
        Topic::new(&"x".repeat(MAX_TOPIC_BYTES + 1))
            .unwrap_err()
            .0
            .contains("longer")
    );
}

#[test]
fn types_refuse_line_breaks() {
    assert!(EventType::new("progress").is_ok());
    assert!(EventType::new("reconnect-required").is_ok());
    for bad in ["", "a\nb", "a\r", "\0"] {
        assert!(EventType::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn patterns_match_and_cover() {
    let t = |s| Topic::new(s).unwrap();
    let p = |s| Pattern::parse(s).unwrap();
    assert!(p("*").matches(&t("x")));
    assert!(p("downloads/*").matches(&t("downloads/a/b")));
    assert!(!p("downloads/*").matches(&t("downloads")));
    assert!(!p("downloads/*").matches(&t("uploads/a")));
    assert!(p("downloads/a").matches(&t("downloads/a")));
    assert!(!p("downloads/a").matches(&t("downloads/ab")));

    assert!(p("*").covers(&p("a/*")));
    assert!(p("a/*").covers(&p("a/b/*")));
    assert!(p("a/*").covers(&p("a/b")));
    assert!(!p("a/b/*").covers(&p("a/*")));
    assert!(!p("a/b").covers(&p("a/b/*")));
    assert!(!p("a/*").covers(&p("*")));
    assert!(Pattern::parse("a\n*").is_err());
}

#[test]
fn selector_filters_by_type() {
    let sel = Selector {
        patterns: vec![Pattern::All],
        types: vec![EventType::new("progress").unwrap()],
    };
    let topic = Topic::new("d/1").unwrap();
    assert!(sel.matches(&topic, &EventType::new("progress").unwrap()));
    assert!(!sel.matches(&topic, &EventType::new("complete").unwrap()));
}

proptest::proptest! {
    /// Whatever a client sends as a topic, selector, type, key or cursor, parsing answers
    /// (Ok or a message) and never panics; what is accepted round-trips.
    #[test]
    fn names_never_panic(s in "\\PC{0,40}|[\\x00-\\x7f]{0,40}|.{0,3}\\*") {
        if let Ok(t) = Topic::new(&s) { proptest::prop_assert_eq!(t.as_str(), s.as_str()); }
        if let Ok(p) = Pattern::parse(&s) { proptest::prop_assert_eq!(p.to_string(), s.clone()); }
        let clean = !s.is_empty() && !s.chars().any(char::is_control);
        proptest::prop_assert_eq!(EventType::new(&s).is_ok(), clean && s.len() <= MAX_TYPE_BYTES);
        proptest::prop_assert_eq!(Key::new(&s).is_ok(), clean && s.len() <= MAX_KEY_BYTES);
        let cursor = crate::Cursor::parse(&s);
        proptest::prop_assert_eq!(cursor.is_none(), s.trim().is_empty());
        if let Ok(id) = s.parse::<crate::EventId>() {
            proptest::prop_assert_eq!(id.to_string().parse::<crate::EventId>(), Ok(id));
        }
    }
}
