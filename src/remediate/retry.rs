//! How hard to try a provider call: bounded attempts, exponential backoff
//! with jitter, the provider's `Retry-After`, and a per-provider rate limit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call (first try included) before the incident fails for
    /// this run.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time, capped at `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// A `Retry-After` longer than this is not waited for within a run: the
    /// incident fails now and is retried on the next run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` is 1-based): the
    /// provider's `Retry-After` if it sent one, else `base * 2^(attempt-1)`
    /// capped, scaled by a random factor in [0.5, 1) so that many incidents
    /// failing together do not retry in lockstep.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        exp.mul_f64(0.5 + 0.5 * unit_random())
    }
}

/// A uniformly distributed number in [0, 1). Jitter needs no more than the
/// randomly keyed hasher std already has.
fn unit_random() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After` given in seconds. The HTTP-date form is rare for
/// APIs; it falls back to normal backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Spaces calls to each provider at least `1 / rate` seconds apart.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    /// Providers with a rate of their own (`providers.<name>.rate_limit`).
    own: HashMap<String, Option<Duration>>,
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// `per_second` of `None` or `<= 0` means unlimited; `own` gives some
    /// providers their own rate.
    pub fn new(per_second: Option<f64>, own: &HashMap<String, f64>) -> Arc<RateLimiter> {
        let interval =
            |r: f64| (r.is_finite() && r > 0.0).then(|| Duration::from_secs_f64(1.0 / r));
        Arc::new(RateLimiter {
            interval: per_second.and_then(interval),
            own: own.iter().map(|(p, r)| (p.clone(), interval(*r))).collect(),
            next: Mutex::new(HashMap::new()),
        })
    }

    fn interval_for(&self, provider: &str) -> Option<Duration> {
        self.own.get(provider).copied().unwrap_or(self.interval)
    }

    /// Waits for this provider's next free slot.
    pub async fn acquire(&self, provider: &str) {
        let Some(interval) = self.interval_for(provider) else {
            return;
        };
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let entry = next.entry(provider.to_string()).or_insert(now);
            let slot = (*entry).max(now);
            *entry = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_jittered() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 < Duration::from_millis(100));
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(100) && d2 < Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(175) && d9 < Duration::from_millis(350));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[tokio::test]
    async fn rate_limit_spaces_calls_per_provider() {
        let limiter = RateLimiter::new(Some(20.0), &HashMap::new());
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("tatum").await;
        }
        // Three tatum calls need at least two 50 ms gaps.
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_provider_can_have_its_own_rate() {
        let own = HashMap::from([("tatum".to_string(), 4.0), ("slack".to_string(), 0.0)]);
        let limiter = RateLimiter::new(Some(100.0), &own);
        assert_eq!(
            limiter.interval_for("tatum"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            limiter.interval_for("github"),
            Some(Duration::from_millis(10))
        );
        assert_eq!(limiter.interval_for("slack"), None, "0 means unlimited");
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("tatum").await;
        }
        // Three tatum calls at 4/s need two 250 ms gaps.
        assert!(start.elapsed() >= Duration::from_millis(500));
    }
}

#[cfg(test)]
mod paused_clock_tests;
