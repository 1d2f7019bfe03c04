//! The per-connection rate limits: a token bucket that starts full and
//! refills at `rate` tokens a second up to `burst`. Each connection has two,
//! one spent by chat messages and one by joins and leaves, each spent only
//! by requests that pass every other check.

use std::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_sec: f64, burst: f64) -> Self {
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: burst,
            refilled_at: Instant::now(),
        }
    }

    /// Takes one token if there is one; false means the message is over the
    /// limit and must be dropped.
    pub(crate) fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// Returns a token taken for a request that was then refused for
    /// another reason (the server's room cap, answered after the take).
    pub(crate) fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_full_bucket_allows_the_burst_then_refuses() {
        let start = Instant::now();
        let mut bucket = TokenBucket {
            refilled_at: start,
            ..TokenBucket::new(10.0, 20.0)
        };
        assert!((0..20).all(|_| bucket.try_take_at(start)));
        assert!(!bucket.try_take_at(start));
    }

    #[test]
    fn tokens_come_back_at_the_sustained_rate_up_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket {
            refilled_at: start,
            ..TokenBucket::new(10.0, 20.0)
        };
        while bucket.try_take_at(start) {}
        // 100 ms at 10/s is exactly one token.
        let later = start + Duration::from_millis(100);
        assert!(bucket.try_take_at(later));
        assert!(!bucket.try_take_at(later));
        // A long pause refills to the burst, never beyond.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..100).filter(|_| bucket.try_take_at(much_later)).count(),
            20
        );
    }

    #[test]
    fn a_token_given_back_can_be_taken_again_but_never_beyond_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket {
            refilled_at: start,
            ..TokenBucket::new(0.001, 3.0)
        };
        while bucket.try_take_at(start) {}
        bucket.give_back();
        assert!(bucket.try_take_at(start));
        assert!(!bucket.try_take_at(start));
        // Giving back to a full bucket does not raise it past the burst.
        let mut full = TokenBucket {
            refilled_at: start,
            ..TokenBucket::new(0.001, 3.0)
        };
        full.give_back();
        assert_eq!((0..10).filter(|_| full.try_take_at(start)).count(), 3);
    }
}
