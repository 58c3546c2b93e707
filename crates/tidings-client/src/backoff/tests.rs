//! The backoff schedule: doubling, cap, jitter bounds, reset and the `retry:` hint.

use std::time::Duration;

use super::Backoff;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn doubles_from_one_second_to_thirty_two_and_stays() {
    let mut b = Backoff::reconnect();
    let bases: Vec<Duration> = (0..9)
        .map(|_| {
            let base = b.base();
            b.next_delay(0.0);
            base
        })
        .collect();
    let want: Vec<Duration> = [1, 2, 4, 8, 16, 32, 32, 32, 32]
        .into_iter()
        .map(Duration::from_secs)
        .collect();
    assert_eq!(bases, want);
}

#[test]
fn jitter_stays_within_half_and_whole_of_the_base() {
    let mut b = Backoff::reconnect();
    assert_eq!(b.next_delay(0.0), secs(1.0));
    assert_eq!(b.next_delay(0.5), secs(1.5));
    assert!(b.next_delay(0.999_999) > secs(2.0));
    // Out-of-range jitter is clamped, never negative or above the base.
    assert_eq!(b.next_delay(7.0), secs(4.0));
    assert_eq!(b.next_delay(-1.0), secs(16.0));
}

#[test]
fn a_success_resets_the_schedule() {
    let mut b = Backoff::reconnect();
    for _ in 0..4 {
        b.next_delay(0.0);
    }
    assert_eq!(b.base(), secs(16.0));
    b.reset();
    assert_eq!(b.failures(), 0);
    assert_eq!(b.next_delay(0.0), secs(1.0));
}

#[test]
fn the_retry_hint_replaces_the_initial_delay_and_is_capped() {
    let mut b = Backoff::reconnect();
    b.set_initial(Duration::from_millis(2000));
    assert_eq!(b.next_delay(0.0), secs(2.0));
    assert_eq!(b.next_delay(0.0), secs(4.0));
    b.set_initial(Duration::from_secs(600));
    assert_eq!(b.next_delay(0.0), secs(32.0));
}

#[test]
fn very_many_failures_do_not_overflow() {
    let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    for _ in 0..100 {
        assert!(b.next_delay(0.3) <= secs(4.0));
    }
    assert_eq!(b.base(), secs(4.0));
}

#[test]
fn random_unit_is_in_range() {
    for _ in 0..100 {
        let r = super::random_unit();
        assert!((0.0..1.0).contains(&r), "{r}");
    }
}
