//! The upstream budget: how many validations may be in flight, and how many may start per
//! second. Only cache misses (the one task leading a flight) ever spend it; hits never look.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The fastest rate accepted: governor's interval is 1 s / rate, which must stay above zero.
const MAX_PER_SECOND: u32 = 1_000_000;

pub(super) struct Budget {
    in_flight: Semaphore,
    /// GCRA through `governor`: `per_second` calls per second, one second's worth of burst.
    rate: Option<DefaultDirectRateLimiter>,
}

impl Budget {
    pub(super) fn new(max_in_flight: usize, per_second: Option<u32>) -> Self {
        Self {
            in_flight: Semaphore::new(max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
            rate: per_second
                .and_then(|n| NonZeroU32::new(n.clamp(1, MAX_PER_SECOND)))
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
        }
    }

    /// A permit for one upstream call, or `None` at once when the budget is spent: a miss never
    /// queues behind others, it answers "unavailable, retry in a second".
    pub(super) fn try_spend(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.in_flight.try_acquire().ok()?;
        match &self.rate {
            Some(rate) if rate.check().is_err() => None,
            _ => Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_semaphore_bounds_calls_in_flight() {
        let budget = Budget::new(2, None);
        let first = budget.try_spend();
        let second = budget.try_spend();
        assert!(first.is_some() && second.is_some());
        assert!(budget.try_spend().is_none());
        drop(first);
        assert!(budget.try_spend().is_some());
    }

    #[test]
    fn the_fastest_rate_is_clamped_not_zero() {
        let budget = Budget::new(usize::MAX, Some(u32::MAX));
        assert!(budget.try_spend().is_some());
    }

    #[test]
    fn the_rate_allows_one_second_of_burst() {
        let budget = Budget::new(1000, Some(10));
        let granted = (0..50).filter(|_| budget.try_spend().is_some()).count();
        // 10 per second: the burst, plus at most one refill while the loop runs.
        assert!((10..=11).contains(&granted), "{granted}");
    }
}
