//! The session table alone: TTL on the injected time, eviction order, takeover.

use tidings_proto::{Key, Pattern, Selector};

use super::*;

const E: Epoch = Epoch(7);

fn at(seq: u64) -> Option<EventId> {
    Some(EventId::new(E, seq))
}

fn sel(p: &str) -> Selector {
    Selector {
        patterns: vec![Pattern::parse(p).unwrap()],
        types: vec![],
    }
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[test]
fn a_detached_session_lives_for_its_ttl_and_not_a_moment_longer() {
    let mut t = Sessions::new(1000, 10);
    let o = t.open(&key("a"), &sel("*"), E, 1, 0);
    assert!(o.resumed.is_none());
    o.place.unwrap().set(5);
    t.detach(&key("a"), 1, 100);
    let o = t.open(&key("a"), &sel("*"), E, 2, 1099);
    assert_eq!(o.resumed, at(5), "within the TTL");
    t.detach(&key("a"), 2, 2000);
    let o = t.open(&key("a"), &sel("*"), E, 3, 3000);
    assert_eq!(o.resumed, None, "expired at exactly the TTL");
}

#[test]
fn an_attached_session_never_expires_and_a_newer_connection_takes_it_over() {
    let mut t = Sessions::new(10, 10);
    let first = t.open(&key("a"), &sel("*"), E, 1, 0).place.unwrap();
    first.set(3);
    // The old connection is not yet known to be gone when the client reconnects.
    let second = t.open(&key("a"), &sel("*"), E, 2, 1_000_000);
    assert_eq!(second.resumed, at(3));
    let second = second.place.unwrap();
    first.advance(9);
    assert_eq!(
        second.get(),
        3,
        "the old connection cannot move the new one's place"
    );
    // The old one going away does not start the TTL: the new one holds the session.
    t.detach(&key("a"), 1, 1_000_000);
    assert_eq!(t.open(&key("a"), &sel("*"), E, 3, 2_000_000).resumed, at(3));
}

#[test]
fn another_selector_is_another_session() {
    let mut t = Sessions::new(1000, 10);
    t.open(&key("a"), &sel("x"), E, 1, 0);
    t.detach(&key("a"), 1, 0);
    assert!(t.open(&key("a"), &sel("y"), E, 2, 0).resumed.is_none());
    assert_eq!(t.len(), 1);
}

#[test]
fn a_full_table_evicts_the_session_detached_longest_and_never_an_attached_one() {
    let mut t = Sessions::new(1000, 2);
    t.open(&key("a"), &sel("*"), E, 1, 0);
    t.open(&key("b"), &sel("*"), E, 2, 0);
    t.detach(&key("b"), 2, 10);
    t.detach(&key("a"), 1, 20);
    // Full: `c` evicts `b` (detached first).
    assert!(t.open(&key("c"), &sel("*"), E, 3, 30).place.is_some());
    assert_eq!(t.len(), 2);
    assert!(
        t.open(&key("b"), &sel("*"), E, 4, 40).resumed.is_none(),
        "evicted: subscribed, not resumed"
    );
    // Now `b` (new) evicted `a`; `b` and `c` are attached: no room for `d`.
    assert!(t.open(&key("a"), &sel("*"), E, 5, 50).resumed.is_none());
    let mut t2 = Sessions::new(1000, 1);
    t2.open(&key("x"), &sel("*"), E, 1, 0);
    let d = t2.open(&key("d"), &sel("*"), E, 2, 0);
    assert!(
        d.place.is_none() && d.resumed.is_none(),
        "no room, no session"
    );
    assert!(t2.open(&key("x"), &sel("*"), E, 3, 0).resumed.is_some());
}

#[test]
fn a_snapshot_restores_places_and_ttl_and_skips_the_expired() {
    let mut t = Sessions::new(1000, 10);
    t.open(&key("a"), &sel("x*"), E, 1, 0).place.unwrap().set(4);
    t.detach(&key("a"), 1, 100);
    t.open(&key("b"), &sel("*"), E, 2, 0).place.unwrap().set(9);
    t.detach(&key("b"), 2, 10);
    let saved = t.snapshot(500);
    assert_eq!(saved.len(), 2);
    let mut u = Sessions::new(1000, 10);
    // At 1050 `b` (detached at 10) has expired; `a` (at 100) has 50 ms left.
    u.restore(saved, 1050);
    assert_eq!(u.len(), 1);
    let o = u.open(&key("a"), &sel("x*"), Epoch(8), 3, 1060);
    assert_eq!(
        o.resumed,
        at(4),
        "the place keeps the epoch it was counted in"
    );
}

#[test]
fn restore_keeps_the_newest_within_the_bound_and_skips_what_does_not_parse() {
    let saved = |id: &str, at: u64| SavedSession {
        client_id: id.to_owned(),
        patterns: vec!["*".to_owned()],
        types: vec![],
        epoch: E.0,
        place: 1,
        detached_at: at,
    };
    let mut bad = saved("c", 30);
    bad.patterns = vec!["not a topic\n".to_owned()];
    let mut t = Sessions::new(1000, 2);
    t.restore(vec![saved("a", 10), saved("b", 20), bad], 40);
    assert_eq!(t.len(), 1, "`a` is past the bound, `c` does not parse");
    assert!(t.open(&key("b"), &sel("*"), E, 1, 50).resumed.is_some());
    assert!(t.open(&key("a"), &sel("*"), E, 2, 50).resumed.is_none());
}

#[test]
fn adopt_takes_another_hubs_session_unless_its_own_is_attached_or_further() {
    let saved = |id: &str, place: u64, at: u64| SavedSession {
        client_id: id.to_owned(),
        patterns: vec!["*".to_owned()],
        types: vec![],
        epoch: E.0,
        place,
        detached_at: at,
    };
    let mut t = Sessions::new(1000, 2);
    // Unknown here: taken in, and the client resumes after its place.
    assert_eq!(t.adopt(saved("a", 5, 10), E, 20), Some(5));
    assert_eq!(t.open(&key("a"), &sel("*"), E, 1, 30).resumed, at(5));
    // Attached here: this hub's own wins.
    assert_eq!(t.adopt(saved("a", 9, 30), E, 40), None);
    assert!(t.detach(&key("a"), 1, 50));
    t.map[&key("a")].place.set(12);
    // Detached here further than the saved place: kept.
    assert_eq!(t.adopt(saved("a", 9, 60), E, 70), Some(12));
    // The saved one is further: it wins.
    assert_eq!(t.adopt(saved("a", 20, 80), E, 90), Some(20));
    // Expired, from another epoch, or no room: nothing to resume.
    assert_eq!(t.adopt(saved("b", 3, 0), E, 1000), None);
    assert_eq!(t.adopt(saved("b", 3, 900), Epoch(8), 1000), None);
    assert_eq!(t.len(), 2, "`b` was taken in, counted in its own epoch");
    t.open(&key("c"), &sel("*"), E, 2, 1000);
    t.open(&key("d"), &sel("*"), E, 3, 1000);
    assert_eq!(t.adopt(saved("e", 3, 1000), E, 1000), None, "all attached");
}
