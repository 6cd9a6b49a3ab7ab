//! Token buckets for disk bandwidth and operations, changeable while the VM runs.
//!
//! A bucket holds up to `size` tokens and gains `size` tokens every `refill_time`; an optional
//! one-time burst is spent first. A request that finds the bucket holding at least
//! `min(cost, size)` tokens proceeds and may drive the balance below zero (a debt the refill pays
//! back), so requests larger than the bucket are delayed, never refused, and the long-run rate is
//! exact. A request that cannot proceed waits; [`RateLimiter::wait_time`] says for how long.

use std::time::{Duration, Instant};

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    size: u64,
    refill_time: Duration,
    one_time_burst: u64,
    balance: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `size` tokens refilled every `refill_time`, with an extra one-time burst.
    /// `None` when `size` or `refill_time` is zero (no limit).
    pub fn new(
        size: u64,
        one_time_burst: u64,
        refill_time: Duration,
        now: Instant,
    ) -> Option<Self> {
        if size == 0 || refill_time.is_zero() {
            return None;
        }
        Some(Self {
            size,
            refill_time,
            one_time_burst,
            balance: size as f64,
            last: now,
        })
    }

    /// A bucket for exactly `per_second` tokens a second, holding about `refill_time` worth of
    /// them (at least one token; the refill time is adjusted so the rate stays exact).
    pub fn per_second(per_second: u64, refill_time: Duration, now: Instant) -> Option<Self> {
        if per_second == 0 {
            return None;
        }
        let size = ((per_second as f64 * refill_time.as_secs_f64()).round() as u64).max(1);
        let refill = Duration::from_secs_f64(size as f64 / per_second as f64);
        Self::new(size, 0, refill, now)
    }

    /// Tokens gained per second.
    pub fn rate(&self) -> f64 {
        self.size as f64 / self.refill_time.as_secs_f64()
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.balance = (self.balance + elapsed * self.rate()).min(self.size as f64);
    }

    /// Tokens available now (the one-time burst included); negative while in debt.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.balance + self.one_time_burst as f64
    }

    /// Whether `tokens` may be taken now.
    pub fn can_consume(&mut self, tokens: u64, now: Instant) -> bool {
        self.available(now) >= tokens.min(self.size) as f64
    }

    /// Takes `tokens` (call after [`Self::can_consume`]); the burst is spent first.
    pub fn consume(&mut self, tokens: u64, now: Instant) {
        self.refill(now);
        let from_burst = tokens.min(self.one_time_burst);
        self.one_time_burst -= from_burst;
        self.balance -= (tokens - from_burst) as f64;
    }

    /// How long until `tokens` may be taken.
    pub fn wait_time(&mut self, tokens: u64, now: Instant) -> Duration {
        let missing = tokens.min(self.size) as f64 - self.available(now);
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate())
        }
    }
}

/// How often buckets refill: small enough that a limit change shows within 100 ms and rates
/// are smooth, large enough to hold a 128 KiB request at 1 MiB/s.
pub const REFILL_TIME: Duration = Duration::from_millis(125);

/// The limits of one disk: bandwidth and operations.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    bw_limit: u64,
    iops_limit: u64,
}

impl RateLimiter {
    /// Limits of `bw` bytes/s and `iops` operations/s (0 = unlimited).
    pub fn new(bw: u64, iops: u64, now: Instant) -> Self {
        Self {
            bandwidth: TokenBucket::per_second(bw, REFILL_TIME, now),
            ops: TokenBucket::per_second(iops, REFILL_TIME, now),
            bw_limit: bw,
            iops_limit: iops,
        }
    }

    /// The configured limits `(bw, iops)`, 0 = unlimited.
    pub fn limits(&self) -> (u64, u64) {
        (self.bw_limit, self.iops_limit)
    }

    /// Takes `bytes` and one operation if both buckets allow; false (nothing taken) otherwise.
    pub fn try_consume(&mut self, bytes: u64, now: Instant) -> bool {
        let bw_ok = self
            .bandwidth
            .as_mut()
            .is_none_or(|b| b.can_consume(bytes, now));
        let ops_ok = self.ops.as_mut().is_none_or(|b| b.can_consume(1, now));
        if !(bw_ok && ops_ok) {
            return false;
        }
        if let Some(b) = &mut self.bandwidth {
            b.consume(bytes, now);
        }
        if let Some(b) = &mut self.ops {
            b.consume(1, now);
        }
        true
    }

    /// How long until a request of `bytes` may proceed.
    pub fn wait_time(&mut self, bytes: u64, now: Instant) -> Duration {
        let bw = self
            .bandwidth
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_time(bytes, now));
        let ops = self
            .ops
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_time(1, now));
        bw.max(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_means_unlimited() {
        let t = Instant::now();
        assert!(TokenBucket::new(0, 0, MS, t).is_none());
        assert!(TokenBucket::per_second(0, REFILL_TIME, t).is_none());
        let mut rl = RateLimiter::new(0, 0, t);
        for _ in 0..10_000 {
            assert!(rl.try_consume(1 << 30, t));
        }
        assert_eq!(rl.wait_time(1 << 30, t), Duration::ZERO);
    }

    #[test]
    fn bucket_refills_at_its_rate_up_to_its_size() {
        let t = Instant::now();
        let mut b = TokenBucket::new(1000, 0, 100 * MS, t).unwrap();
        assert_eq!(b.rate(), 10_000.0);
        assert!(b.can_consume(1000, t));
        b.consume(1000, t);
        assert!(!b.can_consume(1, t));
        assert!((b.available(t + 50 * MS) - 500.0).abs() < 1e-6);
        // Never more than the size, however long it rests.
        assert!((b.available(t + 10_000 * MS) - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn one_time_burst_is_spent_first_and_only_once() {
        let t = Instant::now();
        let mut b = TokenBucket::new(100, 1000, 100 * MS, t).unwrap();
        assert!(b.can_consume(100, t));
        b.consume(1000, t);
        assert!(
            (b.available(t) - 100.0).abs() < 1e-6,
            "burst gone, bucket full"
        );
        b.consume(100, t);
        assert!(!b.can_consume(1, t));
    }

    #[test]
    fn requests_larger_than_the_bucket_wait_for_a_full_bucket_then_run_into_debt() {
        let t = Instant::now();
        let mut b = TokenBucket::new(100, 0, 100 * MS, t).unwrap();
        b.consume(60, t);
        assert!(!b.can_consume(500, t), "needs a full bucket");
        assert_eq!(b.wait_time(500, t), 60 * MS);
        let t1 = t + 60 * MS;
        assert!(b.can_consume(500, t1));
        b.consume(500, t1);
        // 400 tokens of debt: the next request waits 400 ms + its own cost.
        assert_eq!(b.wait_time(100, t1), 500 * MS);
    }

    #[test]
    fn limiter_needs_both_buckets_and_takes_nothing_when_refused() {
        let t = Instant::now();
        // 8 MiB/s, 10 ops/s: a bucket holds 1 MiB and 1.25 -> 1 op.
        let mut rl = RateLimiter::new(8 << 20, 10, t);
        assert_eq!(rl.limits(), (8 << 20, 10));
        assert!(rl.try_consume(4096, t));
        assert!(!rl.try_consume(4096, t), "ops bucket is empty");
        let wait = rl.wait_time(4096, t);
        assert!(wait > 50 * MS && wait <= 100 * MS, "{wait:?}");
        assert!(rl.try_consume(4096, t + 100 * MS));
    }

    #[test]
    fn long_run_rate_matches_the_limit() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(4 << 20, 0, t0);
        let mut now = t0;
        let mut bytes = 0u64;
        // Simulated 10 s of 128 KiB requests issued as soon as allowed.
        while now < t0 + Duration::from_secs(10) {
            if rl.try_consume(128 << 10, now) {
                bytes += 128 << 10;
            } else {
                now += rl.wait_time(128 << 10, now).max(Duration::from_micros(1));
            }
        }
        let rate = bytes as f64 / 10.0;
        let err = (rate - f64::from(4u32 << 20)).abs() / f64::from(4u32 << 20);
        assert!(err < 0.02, "rate {rate} off by {err}");
    }
}
