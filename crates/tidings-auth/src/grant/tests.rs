//! Grant containment (prefix, `*`, look-alikes), publish grants, and templates a claim cannot widen.

use serde_json::json;

use super::*;

fn pat(p: &str) -> Pattern {
    Pattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn grant(subscribe: &[&str]) -> Grant {
    Grant {
        name: "t".into(),
        publish: subscribe.iter().map(|p| pat(p)).collect(),
        subscribe: subscribe.iter().map(|p| pat(p)).collect(),
        admin: false,
    }
}

fn allowed(granted: &[&str], asked: &[&str]) -> bool {
    let selector = Selector {
        patterns: asked.iter().map(|p| pat(p)).collect(),
        types: vec![],
    };
    grant(granted).check_subscribe(&selector).is_ok()
}

/// (granted, asked, allowed): every edge where a prefix or `*` could reach past a grant.
const CONTAINMENT: &[(&[&str], &str, bool)] = &[
    (&["a/*"], "a/*", true),
    (&["a/*"], "a/b", true),
    (&["a/*"], "a/b/*", true),
    (&["a/*"], "a/", true),
    // `a/*x` is the exact topic `a/*x` (only a final `*` is a wildcard): inside `a/`.
    (&["a/*"], "a/*x", true),
    (&["a/*"], "a/*x*", true),
    // Wider or beside the grant.
    (&["a/*"], "a*", false),
    (&["a/*"], "a", false),
    (&["a/*"], "ab/", false),
    (&["a/*"], "ab/*", false),
    (&["a/*"], "*", false),
    (&["a/*"], "a/b*", true),
    // Unicode look-alikes are other topics: fullwidth solidus, Cyrillic `а`, division slash.
    (&["a/*"], "a\u{FF0F}b", false),
    (&["a/*"], "\u{0430}/b", false),
    (&["a/*"], "a\u{2215}b", false),
    // A decomposed `é` is not the composed one.
    (&["\u{E9}/*"], "e\u{301}/x", false),
    (&["\u{E9}/*"], "\u{E9}/x", true),
    // An exact grant covers only itself.
    (&["a/*x"], "a/*", false),
    (&["a/*x"], "a/*x", true),
    (&["a/b"], "a/b*", false),
    (&["a/b"], "a/b", true),
    (&["a/b"], "a/bc", false),
    // `*` covers everything; a longer prefix grant does not cover a shorter one.
    (&["*"], "*", true),
    (&["*"], "anything/*", true),
    (&["a/b/*"], "a/*", false),
    // Several grants: each asked pattern needs one that covers it on its own.
    (&["a/*", "b"], "b", true),
    (&["a/*", "b"], "b/*", false),
];

#[test]
fn containment_table() {
    for (granted, asked, want) in CONTAINMENT {
        assert_eq!(
            allowed(granted, &[asked]),
            *want,
            "grant {granted:?}, subscribe `{asked}`"
        );
    }
}

#[test]
fn a_forbidden_selector_mid_list_refuses_the_subscription_and_is_named() {
    let g = grant(&["a/*", "b"]);
    let selector = Selector {
        patterns: vec![pat("a/1"), pat("c/*"), pat("b")],
        types: vec![],
    };
    assert_eq!(g.check_subscribe(&selector), Err(&pat("c/*")));
}

#[test]
fn publish_needs_a_matching_grant() {
    let g = grant(&["a/*", "b"]);
    let t = |s: &str| Topic::new(s).unwrap();
    assert!(g.may_publish(&t("a/x")));
    assert!(g.may_publish(&t("b")));
    assert!(!g.may_publish(&t("bb")));
    assert!(!g.may_publish(&t("ab")));
    assert!(!g.may_publish(&t("a\u{FF0F}x")));
}

fn render(template: &str, claims: serde_json::Value) -> Result<Option<String>, TemplateError> {
    let t = GrantTemplate::parse(template).unwrap();
    t.render(|name| claims.get(name))
        .map(|p| p.map(|p| p.to_string()))
}

#[test]
fn templates_fill_from_claims() {
    assert_eq!(
        render("users/{sub}/*", json!({"sub": "alice"})),
        Ok(Some("users/alice/*".into()))
    );
    assert_eq!(
        render(
            "t/{tenant}/u/{sub}",
            json!({"sub": "bob", "tenant": "acme"})
        ),
        Ok(Some("t/acme/u/bob".into()))
    );
    assert_eq!(render("public/*", json!({})), Ok(Some("public/*".into())));
    // Without the claim, no grant.
    assert_eq!(render("users/{sub}/*", json!({})), Ok(None));
}

#[test]
fn a_claim_cannot_widen_a_template() {
    for (value, why) in [
        (json!("*"), "`*`"),
        (json!("al*"), "`*`"),
        (json!(".."), "`..`"),
        (json!("."), "`.`"),
        (json!("a/../b"), "`/`"),
        (json!("/.."), "`/`"),
        (json!("bob/x"), "`/`"),
        (json!(""), "empty"),
        (json!("a\nb"), "control"),
        (json!("{sub}"), "`{`"),
        (json!(7), "not a string"),
        (json!(["a"]), "not a string"),
        (json!(null), "not a string"),
        (json!("x".repeat(300)), "256"),
    ] {
        let err = render("users/{sub}/*", json!({ "sub": value }))
            .expect_err(&format!("{value} must be refused"));
        assert_eq!(err.claim, "sub");
        assert!(err.to_string().contains(why), "{value}: {err}");
    }
    // Look-alikes are allowed: they are other topics, still inside `users/`.
    assert_eq!(
        render("users/{sub}/*", json!({"sub": "a\u{2215}b"})),
        Ok(Some("users/a\u{2215}b/*".into()))
    );
}

#[test]
fn bad_templates_are_refused_at_configuration() {
    for (text, why) in [
        ("users/{sub", "without its `}`"),
        ("users/sub}/*", "without its `{`"),
        ("users/{}/*", "empty"),
        ("users/{sub}*", "longer value"),
        ("users/{a{b}}/*", "without its `}`"),
    ] {
        let err = GrantTemplate::parse(text).expect_err(text);
        assert!(err.contains(why), "{text}: {err}");
    }
    let t = GrantTemplate::parse("u/{sub}/{org}/*").unwrap();
    assert_eq!(t.claims().collect::<Vec<_>>(), ["sub", "org"]);
    assert_eq!(t.as_str(), "u/{sub}/{org}/*");
}
