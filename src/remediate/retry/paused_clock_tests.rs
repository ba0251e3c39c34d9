//! The rate limiter on tokio's paused clock: spacing asserted exactly,
//! minutes of waiting in no real time.

use super::*;

#[tokio::test(start_paused = true)]
async fn calls_are_spaced_exactly_one_interval_apart_per_provider() {
    let limiter = RateLimiter::new(Some(2.0), &HashMap::new());
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..4 {
        limiter.acquire("tatum").await;
        at.push(start.elapsed());
    }
    assert_eq!(
        at,
        [0, 500, 1_000, 1_500].map(Duration::from_millis).to_vec()
    );
    // Another provider has its own slots: not behind tatum's queue.
    limiter.acquire("slack").await;
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
}

#[tokio::test(start_paused = true)]
async fn a_slow_own_rate_waits_minutes_without_holding_the_test() {
    let own = HashMap::from([("tatum".to_string(), 1.0 / 60.0)]);
    let limiter = RateLimiter::new(None, &own);
    let start = Instant::now();
    for _ in 0..3 {
        limiter.acquire("tatum").await;
    }
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    // Unlimited by default: no wait at all.
    limiter.acquire("github").await;
    assert_eq!(start.elapsed(), Duration::from_secs(120));
}
