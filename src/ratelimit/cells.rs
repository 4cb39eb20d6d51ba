//! A bounded map of GCRA cells (one `governor` direct limiter per key), shared by the per-key
//! limiter and the failed-key throttle.
//!
//! Why not `governor`'s keyed limiter: it holds one quota for every key, and a key's quota here
//! can come from its own claim. Why papaya rather than moka: a hit is one lock-free lookup with
//! no bookkeeping (moka records every read for its admission policy), which keeps the limiter
//! under 100 ns per request. Bounding is ours, and mostly lossless: a cell idle for its whole
//! window holds a full bucket, exactly what a fresh cell would hold, so dropping it forgets
//! nothing. Only when the map is full of cells active within their window are some dropped at
//! random (their keys get a fresh bucket; counted in `evicted_active`).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, QuantaClock, QuantaInstant, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};

use super::RatePolicy;

type Limiter =
    governor::RateLimiter<NotKeyed, InMemoryState, MarkingClock, StateInformationMiddleware>;

/// The clock of one cell's limiter: quanta's TSC clock (a few nanoseconds a read, against tens
/// for the OS clock), which also keeps its last reading. The decision's own clock read thus
/// marks when the cell was last used: one read per decision, not two.
struct MarkingClock {
    clock: QuantaClock,
    origin: QuantaInstant,
    /// Nanoseconds since `origin` of the last reading.
    last_read: AtomicU64,
}

impl MarkingClock {
    fn nanos_since_origin(&self, instant: QuantaInstant) -> u64 {
        u64::from(instant.duration_since(self.origin))
    }
}

impl Clock for MarkingClock {
    type Instant = QuantaInstant;

    fn now(&self) -> QuantaInstant {
        let now = self.clock.now();
        // A plain store: concurrent decisions may leave a reading a few nanoseconds older,
        // which only the idle sweep reads, at window scale.
        self.last_read
            .store(self.nanos_since_origin(now), Ordering::Relaxed);
        now
    }
}

/// What a [`Cells`] map is looked up by: a form of its key type `K` (itself, or a borrowed
/// form that hashes alike), which can make the `K` to store.
pub(crate) trait Lookup<K>: Hash + papaya::Equivalent<K> {
    /// The key to store.
    fn to_key(&self) -> K;
}

/// Plain strings, for the tests of the map itself.
#[cfg(test)]
impl Lookup<String> for str {
    fn to_key(&self) -> String {
        self.to_owned()
    }
}

/// One key's GCRA state.
pub(crate) struct Cell {
    policy: RatePolicy,
    limiter: Limiter,
    /// Nanoseconds since the map's origin until which the throttle refuses (unused by the
    /// per-key limiter).
    blocked_until: AtomicU64,
}

impl Cell {
    fn new(policy: RatePolicy, clock: &QuantaClock, origin: QuantaInstant, now: u64) -> Self {
        let clock = MarkingClock {
            clock: clock.clone(),
            origin,
            last_read: AtomicU64::new(now),
        };
        Self {
            policy,
            limiter: governor::RateLimiter::direct_with_clock(policy.quota(), clock)
                .with_middleware::<StateInformationMiddleware>(),
            blocked_until: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the map's origin of the last decision.
    fn last_seen(&self) -> u64 {
        self.limiter.clock().last_read.load(Ordering::Relaxed)
    }

    fn decide(&self) -> Outcome {
        match self.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.policy.limit().saturating_sub(remaining);
                Outcome::Allowed {
                    remaining,
                    reset: self.policy.interval().saturating_mul(used),
                }
            }
            Err(not_until) => Outcome::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    fn idle_for_a_window(&self, now: u64) -> bool {
        let idle = now.saturating_sub(self.last_seen());
        idle >= nanos(self.policy.window()) && now >= self.blocked_until.load(Ordering::Relaxed)
    }
}

/// The result of one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Admitted; `remaining` more requests would be admitted right now, and the bucket is full
    /// again after `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Refused; the next request is admitted after `retry_after`.
    Limited { retry_after: Duration },
}

impl Outcome {
    /// How long a key whose spend ended in this outcome is to be blocked: until its bucket
    /// has a token again, once the spend emptied it (or it was empty); `None` while tokens
    /// are left.
    pub(crate) fn exhausted_for(self, policy: RatePolicy) -> Option<Duration> {
        match self {
            Self::Allowed { remaining: 0, .. } => Some(policy.interval()),
            Self::Allowed { .. } => None,
            Self::Limited { retry_after } => Some(retry_after),
        }
    }
}

/// What [`Cells::standing`] found.
pub(crate) struct Standing {
    /// `Some(wait)` while the key is blocked.
    pub(crate) blocked: Option<Duration>,
    /// Whether the key spent anything within its last window.
    pub(crate) active: bool,
}

/// Keys to GCRA cells, at most about `max` of them, hashed by `S`: SipHash (std's default) for
/// keys a client picks (its address), a faster hasher for ids of validated keys.
pub(crate) struct Cells<K, S = std::hash::RandomState> {
    map: papaya::HashMap<K, Cell, S>,
    max: usize,
    /// The clock every cell's limiter reads, and the origin of the cells' nanosecond marks.
    clock: QuantaClock,
    origin: QuantaInstant,
    sweeping: AtomicBool,
    evicted_active: AtomicU64,
}

impl<K: Hash + Eq + Send + Sync + 'static, S: BuildHasher + Default> Cells<K, S> {
    pub(crate) fn new(max: usize) -> Self {
        let clock = QuantaClock::default();
        Self {
            map: papaya::HashMap::builder().hasher(S::default()).build(),
            max: max.max(1),
            origin: clock.now(),
            clock,
            sweeping: AtomicBool::new(false),
            evicted_active: AtomicU64::new(0),
        }
    }

    /// A fresh cell on this map's clock, marked as used at `now`.
    fn new_cell(&self, policy: RatePolicy, now: u64) -> Cell {
        Cell::new(policy, &self.clock, self.origin, now)
    }

    /// Nanoseconds since the map's origin.
    fn now(&self) -> u64 {
        u64::from(self.clock.now().duration_since(self.origin))
    }

    /// Spends one request of `key`. A key's cell is made under `policy` the first time the key
    /// is seen and keeps that policy: where a key's policy can change (the limiter's buckets),
    /// the policy is part of the key, so a request under another policy finds another cell and
    /// never refills this one.
    pub(crate) fn check<Q: Lookup<K> + ?Sized>(&self, key: &Q, policy: RatePolicy) -> Outcome {
        {
            let map = self.map.pin();
            if let Some(cell) = map.get(key) {
                return cell.decide();
            }
        }
        self.check_new(key, policy)
    }

    /// [`check`](Self::check) for a key with no cell yet: out of line, so a hit's code stays
    /// about 1 KB instead of 13 (the insert and the sweep, inlined). Another request may make
    /// the cell meanwhile; the insert then finds it.
    #[cold]
    #[inline(never)]
    fn check_new<Q: Lookup<K> + ?Sized>(&self, key: &Q, policy: RatePolicy) -> Outcome {
        self.with_cell(key, policy, self.now(), Cell::decide)
    }

    /// Runs `f` on `key`'s cell, made under `policy` at `now` if the key has none (room made
    /// first when the map is full).
    fn with_cell<Q: Lookup<K> + ?Sized, R>(
        &self,
        key: &Q,
        policy: RatePolicy,
        now: u64,
        f: impl FnOnce(&Cell) -> R,
    ) -> R {
        let map = self.map.pin();
        if map.get(key).is_none() && map.len() >= self.max {
            self.make_room(now);
        }
        f(map.get_or_insert_with(key.to_key(), || self.new_cell(policy, now)))
    }

    /// `key`'s standing, from one lookup: whether it is blocked (the throttle's check) and
    /// whether it spent anything within its last window (it has a cell that is not idle).
    pub(crate) fn standing<Q: Lookup<K> + ?Sized>(&self, key: &Q) -> Standing {
        let now = self.now();
        let map = self.map.pin();
        let Some(cell) = map.get(key) else {
            return Standing {
                blocked: None,
                active: false,
            };
        };
        let until = cell.blocked_until.load(Ordering::Relaxed);
        Standing {
            blocked: (until > now).then(|| Duration::from_nanos(until - now)),
            active: !cell.idle_for_a_window(now),
        }
    }

    /// Spends one request of `key` under `policy`, and when that empties its bucket (or it was
    /// empty), blocks the key until a request would be admitted again.
    pub(crate) fn spend_and_block<Q: Lookup<K> + ?Sized>(
        &self,
        key: &Q,
        policy: RatePolicy,
    ) -> Outcome {
        let outcome = self.check(key, policy);
        if let Some(wait) = outcome.exhausted_for(policy) {
            self.block(key, policy, wait);
        }
        outcome
    }

    /// Blocks `key` for `wait` from now, making its cell under `policy` if it has none (this
    /// map's own spend, or a decision made elsewhere: another instance's refusals, through
    /// Redis).
    pub(crate) fn block<Q: Lookup<K> + ?Sized>(&self, key: &Q, policy: RatePolicy, wait: Duration) {
        let now = self.now();
        // Round up: a client is never let through before its bucket has a token again.
        let until = now.saturating_add(nanos(wait)).saturating_add(1);
        self.with_cell(key, policy, now, |cell| {
            cell.blocked_until.fetch_max(until, Ordering::Relaxed);
        });
    }

    /// Drops the cells idle for a whole window (lossless); if the map is still full, drops an
    /// eighth of it at random. One sweeper at a time; the others insert meanwhile (the bound is
    /// overshot by at most the number of concurrent inserts).
    fn make_room(&self, now: u64) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        let map = self.map.pin();
        map.retain(|_, cell| !cell.idle_for_a_window(now));
        let len = map.len();
        if len >= self.max {
            let target = len - (self.max - self.max / 8);
            let mut dropped = 0usize;
            map.retain(|_, _| {
                let keep = dropped >= target;
                dropped += usize::from(!keep);
                keep
            });
            self.evicted_active
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                max = self.max,
                "rate-limit map full of active keys: dropped some (their buckets restart full)"
            );
        }
        self.sweeping.store(false, Ordering::Release);
    }

    /// How many keys are tracked.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// How many cells still active within their window were dropped to stay under the bound.
    pub(crate) fn evicted_active(&self) -> u64 {
        self.evicted_active.load(Ordering::Relaxed)
    }
}

/// `duration` in nanoseconds, saturating (the unit of the limiters' atomic timestamps).
pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> RatePolicy {
        text.parse().unwrap()
    }

    fn allowed(cells: &Cells<String>, key: &str, p: RatePolicy) -> usize {
        (0..p.limit() * 2)
            .filter(|_| matches!(cells.check(key, p), Outcome::Allowed { .. }))
            .count()
    }

    #[test]
    fn a_key_gets_its_limit_and_no_more() {
        let cells = Cells::<String>::new(100);
        assert_eq!(allowed(&cells, "a", policy("5/h")), 5);
        match cells.check("a", policy("5/h")) {
            Outcome::Limited { retry_after } => {
                // One token every 12 minutes.
                assert!(
                    retry_after > Duration::from_secs(11 * 60),
                    "{retry_after:?}"
                );
                assert!(
                    retry_after <= Duration::from_secs(12 * 60),
                    "{retry_after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Another key has its own bucket.
        assert_eq!(allowed(&cells, "b", policy("5/h")), 5);
    }

    #[test]
    fn remaining_and_reset_count_down() {
        let cells = Cells::<String>::new(100);
        let p = policy("3/min");
        let Outcome::Allowed { remaining, reset } = cells.check("a", p) else {
            panic!("first request refused")
        };
        assert_eq!(remaining, 2);
        assert_eq!(reset, Duration::from_secs(20));
        let Outcome::Allowed { remaining, reset } = cells.check("a", p) else {
            panic!("second request refused")
        };
        assert_eq!((remaining, reset), (1, Duration::from_secs(40)));
    }

    #[test]
    fn a_cell_keeps_the_policy_it_was_made_with() {
        // The map never swaps a cell for a fresh one: a caller whose policies vary per key
        // makes the policy part of the key (the limiter's `Bucket`).
        let cells = Cells::<String>::new(100);
        assert_eq!(allowed(&cells, "a", policy("2/h")), 2);
        assert_eq!(allowed(&cells, "a", policy("4/h")), 0);
    }

    #[test]
    fn the_map_stays_bounded_and_counts_active_evictions() {
        let cells = Cells::<String>::new(64);
        for i in 0..1_000 {
            cells.check(format!("key-{i}").as_str(), policy("10/h"));
            assert!(cells.len() <= 64, "{} keys at {i}", cells.len());
        }
        assert!(cells.evicted_active() > 0);
    }

    #[test]
    fn idle_cells_are_dropped_before_active_ones() {
        let cells = Cells::<String>::new(4);
        // Two keys idle for a full 1-second window are dropped losslessly.
        cells.check("idle-1", policy("1/s"));
        cells.check("idle-2", policy("1/s"));
        std::thread::sleep(Duration::from_millis(1_100));
        cells.check("busy-1", policy("1/h"));
        cells.check("busy-2", policy("1/h"));
        cells.check("busy-3", policy("1/h"));
        assert_eq!(cells.evicted_active(), 0);
        assert!(matches!(
            cells.check("busy-1", policy("1/h")),
            Outcome::Limited { .. }
        ));
    }

    #[test]
    fn spend_and_block_blocks_once_the_bucket_is_empty() {
        let cells = Cells::<String>::new(16);
        let p = policy("3/min");
        cells.spend_and_block("c", p);
        cells.spend_and_block("c", p);
        assert_eq!(cells.standing("c").blocked, None);
        cells.spend_and_block("c", p);
        let wait = cells.standing("c").blocked.expect("blocked after three");
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(21),
            "{wait:?}"
        );
        assert_eq!(cells.standing("other").blocked, None);
    }
}
