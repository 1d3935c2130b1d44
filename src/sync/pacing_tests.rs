//! The pacing core with plain calls and fake time.

use super::*;

const SEC: Millis = 1_000;
const T0: Millis = 1_800_000_000_000;

fn auto() -> PaceSettings {
    PaceSettings {
        interval: PollInterval::Auto,
        budget: 1500,
        window: Duration::from_secs(30),
        share: 0.5,
        min_interval: Duration::from_secs(1),
    }
}

fn secs(p: &Plan) -> f64 {
    p.interval.as_secs_f64()
}

#[test]
fn auto_polls_as_often_as_the_share_allows_never_below_the_minimum() {
    let mut p = Pacer::new(auto(), T0);
    // 750 poll requests per 30 s: 10,000 users (16 requests) could go every 0.64 s, but
    // never faster than 1 s; 50,000 (77) every 3.08 s; 250,000 (385) every 15.4 s.
    assert_eq!(p.plan(16, T0).interval, Duration::from_secs(1));
    assert!((secs(&p.plan(77, T0)) - 3.08).abs() < 1e-9);
    assert!((secs(&p.plan(385, T0)) - 15.4).abs() < 1e-9);
    assert_eq!(
        p.plan(0, T0).interval,
        Duration::from_secs(1),
        "nobody to read"
    );
}

#[test]
fn requests_are_spread_over_the_interval() {
    let mut p = Pacer::new(auto(), T0);
    let plan = p.plan(77, T0);
    assert_eq!(plan.spacing, plan.interval / 77);
    assert_eq!(
        p.plan(1, T0).spacing,
        Duration::from_secs(1),
        "one request: the interval"
    );
    let mut fixed = Pacer::new(
        PaceSettings {
            interval: PollInterval::Every(Duration::from_secs(30)),
            ..auto()
        },
        T0,
    );
    let plan = fixed.plan(3, T0);
    assert_eq!(plan.interval, Duration::from_secs(30));
    assert_eq!(plan.spacing, Duration::from_secs(10));
    assert!(!plan.say, "a fixed interval is not announced");
}

#[test]
fn other_requests_in_the_last_window_are_taken_off_the_allowance() {
    let mut p = Pacer::new(auto(), T0);
    assert_eq!(p.allowance(T0), 750.0);
    // A burst of 500 writes: 250 left for polling, so 77 requests take 9.24 s.
    p.observe(500, 0, T0);
    assert_eq!(p.allowance(T0 + SEC), 250.0);
    assert!((secs(&p.plan(77, T0 + SEC)) - 9.24).abs() < 1e-9);
    // Writes beyond the share: polling keeps FLOOR of it (75), it does not stop.
    p.observe(1000, 0, T0 + 2 * SEC);
    assert_eq!(p.allowance(T0 + 2 * SEC), 75.0);
    // A window later they are forgotten.
    p.observe(0, 0, T0 + 32 * SEC);
    assert_eq!(p.allowance(T0 + 32 * SEC), 750.0);
}

#[test]
fn a_429_halves_the_share_and_it_recovers_a_tenth_per_window() {
    let mut p = Pacer::new(auto(), T0);
    p.observe(0, 1, T0);
    assert_eq!(p.factor(), 0.5);
    p.observe(0, 3, T0 + SEC);
    assert_eq!(p.factor(), 0.25, "each cycle with 429s halves it again");
    assert!((secs(&p.plan(77, T0 + SEC)) - 12.32).abs() < 1e-9);
    // No 429 for 29 s: not yet a whole window.
    p.observe(0, 0, T0 + 30 * SEC);
    assert_eq!(p.factor(), 0.25);
    p.observe(0, 0, T0 + 31 * SEC);
    assert!((p.factor() - 0.35).abs() < 1e-9);
    // Two more windows at once.
    p.observe(0, 0, T0 + 91 * SEC);
    assert!((p.factor() - 0.55).abs() < 1e-9);
    p.observe(0, 0, T0 + 400 * SEC);
    assert_eq!(p.factor(), 1.0, "up to the whole share, not beyond");
    // A storm cannot take it below MIN_FACTOR.
    for i in 0..20 {
        p.observe(0, 1, T0 + (401 + i) * SEC);
    }
    assert_eq!(p.factor(), MIN_FACTOR);
}

#[test]
fn the_interval_is_said_when_it_changes_more_than_twice() {
    let mut p = Pacer::new(auto(), T0);
    assert!(p.plan(77, T0).say, "the first plan is said");
    assert!(!p.plan(77, T0).say);
    assert!(!p.plan(100, T0).say, "4 s against 3.08 s: not said");
    p.observe(0, 1, T0);
    p.observe(0, 1, T0 + 30 * SEC);
    let slower = p.plan(77, T0 + 30 * SEC);
    assert!(slower.say, "4x slower after two 429 windows");
    assert!(!p.plan(77, T0 + 30 * SEC).say);
}
