//! The upstream budget: how many validations may be in flight, and how many may start per
//! second. Only cache misses (the one task leading a flight) ever spend it; hits never look.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

pub(super) struct Budget {
    in_flight: Semaphore,
    rate: Option<RateLimit>,
}

impl Budget {
    pub(super) fn new(max_in_flight: usize, per_second: Option<u32>) -> Self {
        Self {
            in_flight: Semaphore::new(max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
            rate: per_second.map(RateLimit::per_second),
        }
    }

    /// A permit for one upstream call, or `None` at once when the budget is spent: a miss never
    /// queues behind others, it answers "unavailable, retry in a second".
    pub(super) fn try_spend(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.in_flight.try_acquire().ok()?;
        match &self.rate {
            Some(rate) if !rate.try_take() => None,
            _ => Some(permit),
        }
    }
}

/// A lock-free token bucket (GCRA): one atomic "theoretical arrival time", a burst of one
/// second's worth of calls.
struct RateLimit {
    origin: Instant,
    interval_nanos: u64,
    burst_nanos: u64,
    theoretical_arrival: AtomicU64,
}

impl RateLimit {
    fn per_second(per_second: u32) -> Self {
        let per_second = u64::from(per_second.max(1));
        let second = Duration::from_secs(1).as_nanos() as u64;
        Self {
            origin: Instant::now(),
            interval_nanos: second / per_second,
            burst_nanos: second,
            theoretical_arrival: AtomicU64::new(0),
        }
    }

    fn try_take(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut arrival = self.theoretical_arrival.load(Ordering::Relaxed);
        loop {
            let next = arrival.max(now) + self.interval_nanos;
            if next - now > self.burst_nanos {
                return false;
            }
            match self.theoretical_arrival.compare_exchange_weak(
                arrival,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => arrival = current,
            }
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
    fn the_rate_allows_one_second_of_burst() {
        let budget = Budget::new(1000, Some(10));
        let granted = (0..50).filter(|_| budget.try_spend().is_some()).count();
        // 10 per second: the burst, plus at most one refill while the loop runs.
        assert!((10..=11).contains(&granted), "{granted}");
    }
}
