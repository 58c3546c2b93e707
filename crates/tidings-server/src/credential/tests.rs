//! The ticket table: single use, expiry on the injected clock, the bound; and the cookie.

use std::sync::Arc;

use tidings_auth::{Authorizer, Grant, StaticToken};
use tidings_core::clock::ManualClock;

use super::*;

fn caller() -> Caller {
    Authorizer::new(vec![StaticToken {
        secret: "a-static-secret".into(),
        grant: Grant::everything("t"),
    }])
    .identify(Some("a-static-secret"))
    .unwrap()
}

#[test]
fn a_ticket_opens_once_and_only_within_its_ttl() {
    let clock = ManualClock::new(1_000_000);
    let tickets = Tickets::new(Duration::from_secs(60), clock.clone());
    let t = tickets.issue(caller()).unwrap();
    assert_eq!(t.len(), 43, "32 random bytes, base64url");
    assert_ne!(t, tickets.issue(caller()).unwrap(), "each ticket is new");
    assert_eq!(tickets.redeem(&t).unwrap().id, caller().id);
    assert_eq!(tickets.redeem(&t).unwrap_err(), TicketError::Unknown);
    assert_eq!(tickets.redeem("made-up").unwrap_err(), TicketError::Unknown);

    let late = tickets.issue(caller()).unwrap();
    clock.advance(59_999);
    let just_in_time = tickets.issue(caller()).unwrap();
    clock.advance(1);
    assert_eq!(tickets.redeem(&late).unwrap_err(), TicketError::Expired);
    assert!(tickets.redeem(&just_in_time).is_ok());
}

#[test]
fn the_table_is_bounded_and_sweeps_expired_tickets() {
    let clock = ManualClock::new(0);
    let tickets = Tickets::new(Duration::from_secs(1), clock.clone());
    for _ in 0..MAX_TICKETS {
        tickets.issue(caller()).unwrap();
    }
    assert_eq!(tickets.len(), MAX_TICKETS);
    let e = tickets.issue(caller()).unwrap_err();
    assert_eq!(e.0.error.code, ErrorCode::Overloaded);
    clock.advance(1_000);
    // All expired: the next issue sweeps them.
    tickets.issue(caller()).unwrap();
    assert_eq!(tickets.len(), 1);
}

#[test]
fn the_cookie_is_found_by_name_among_others() {
    let creds = Credentials::new(
        CredentialOptions {
            cookie_name: "tk".into(),
            ..CredentialOptions::default()
        },
        Arc::new(tidings_core::clock::SystemClock),
    );
    let mut h = HeaderMap::new();
    assert_eq!(creds.cookie(&h), None);
    h.append(COOKIE, "a=1; tkx=no".parse().unwrap());
    h.append(COOKIE, "b=2; tk=the-token; c=3".parse().unwrap());
    assert_eq!(creds.cookie(&h), Some("the-token"));
    let mut empty = HeaderMap::new();
    empty.append(COOKIE, "tk=".parse().unwrap());
    assert_eq!(creds.cookie(&empty), None);
}
