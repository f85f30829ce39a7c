//! The retry policy: a bounded try count and exponential backoff with jitter.
//!
//! Pure: the caller owns the clock and the random source, so the policy is
//! tested without sleeping. Only permanent failures count against the try
//! count ([`crate::failure`]); transient ones back off and go on.

use std::time::Duration;

use crate::failure::FailureClass;

/// How often and how patiently a failed stage is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 0 means unlimited (as in the
    /// original's Try count).
    pub try_count: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// The try count is spent: the session ends Canceled with its last error.
    GiveUp,
}

impl RetryPolicy {
    /// The decision after `failed_tries` tries have failed (1 after the first).
    /// `jitter` in `0.0..=1.0` scales the delay into `[delay/2, delay]`, so a
    /// fleet of stores that failed together does not retry together.
    pub fn after_failure(&self, failed_tries: u32, jitter: f64) -> RetryDecision {
        if self.try_count != 0 && failed_tries >= self.try_count {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(self.backoff(failed_tries, jitter))
    }

    /// The delay after `failed_tries` failures in a row (1 after the first):
    /// doubling from `initial_backoff`, capped at `max_backoff`, scaled by
    /// `jitter` into `[delay/2, delay]`.
    pub fn backoff(&self, failed_tries: u32, jitter: f64) -> Duration {
        let doublings = failed_tries.saturating_sub(1).min(32);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max_backoff);
        let scale = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        full.mul_f64(scale)
    }
}

/// The failed tries of one stage (a download, an apply, an upload batch),
/// by class: permanent ones count against the try count, transient ones only
/// lengthen the backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tries {
    /// Permanent failures so far; what the try count limits.
    pub permanent: u32,
    /// Transient failures since the last success or permanent failure.
    pub transient_streak: u32,
}

impl Tries {
    /// Records a failure of `class` and says what to do next.
    pub fn failed(
        &mut self,
        policy: &RetryPolicy,
        class: FailureClass,
        jitter: f64,
    ) -> RetryDecision {
        match class {
            FailureClass::Transient => {
                self.transient_streak = self.transient_streak.saturating_add(1);
                RetryDecision::RetryAfter(policy.backoff(self.transient_streak, jitter))
            }
            FailureClass::Permanent => {
                self.permanent = self.permanent.saturating_add(1);
                self.transient_streak = 0;
                policy.after_failure(self.permanent, jitter)
            }
        }
    }

    /// The stage moved on: its next failure starts a new count.
    pub fn reset(&mut self) {
        *self = Tries::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(try_count: u32) -> RetryPolicy {
        RetryPolicy {
            try_count,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }

    /// The delay doubles after each failure and stops growing at the maximum.
    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let p = policy(0);
        let delays: Vec<_> = (1..=9)
            .map(|n| match p.after_failure(n, 1.0) {
                RetryDecision::RetryAfter(d) => d.as_secs(),
                RetryDecision::GiveUp => panic!("unlimited policy gave up"),
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    /// After `try_count` failed tries the policy gives up, not before.
    #[test]
    fn gives_up_once_the_try_count_is_spent() {
        let p = policy(3);
        assert!(matches!(
            p.after_failure(1, 0.0),
            RetryDecision::RetryAfter(_)
        ));
        assert!(matches!(
            p.after_failure(2, 0.0),
            RetryDecision::RetryAfter(_)
        ));
        assert_eq!(p.after_failure(3, 0.0), RetryDecision::GiveUp);
    }

    /// A try count of 0 never gives up, even after very many failures.
    #[test]
    fn zero_try_count_is_unlimited_and_does_not_overflow() {
        let p = policy(0);
        assert_eq!(
            p.after_failure(u32::MAX, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(60))
        );
    }

    /// Jitter keeps the delay between half and all of the nominal delay.
    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let p = policy(0);
        let at = |j| match p.after_failure(3, j) {
            RetryDecision::RetryAfter(d) => d,
            RetryDecision::GiveUp => unreachable!(),
        };
        assert_eq!(at(0.0), Duration::from_secs(2));
        assert_eq!(at(1.0), Duration::from_secs(4));
        assert_eq!(at(7.0), Duration::from_secs(4));
    }

    /// Transient failures never give up, however many, and back off up to
    /// the maximum; permanent ones give up at the try count.
    #[test]
    fn only_permanent_failures_spend_the_try_count() {
        let p = policy(1);
        let mut tries = Tries::default();
        for n in 1..=1000 {
            match tries.failed(&p, FailureClass::Transient, 1.0) {
                RetryDecision::RetryAfter(d) => assert!(d <= p.max_backoff, "try {n}: {d:?}"),
                RetryDecision::GiveUp => panic!("gave up after {n} transient failures"),
            }
        }
        assert_eq!(tries.permanent, 0);
        assert_eq!(
            tries.failed(&p, FailureClass::Transient, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(
            tries.failed(&p, FailureClass::Permanent, 1.0),
            RetryDecision::GiveUp
        );
    }

    /// A permanent failure restarts the transient backoff; a reset forgets all.
    #[test]
    fn permanent_failure_restarts_the_transient_backoff() {
        let p = policy(3);
        let mut tries = Tries::default();
        for _ in 0..5 {
            tries.failed(&p, FailureClass::Transient, 1.0);
        }
        tries.failed(&p, FailureClass::Permanent, 1.0);
        assert_eq!(
            tries.failed(&p, FailureClass::Transient, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        tries.reset();
        assert_eq!(tries, Tries::default());
    }
}
