//! Local-first shared limits ([`RedisLimiterBuilder::local_first`](super::RedisLimiterBuilder::local_first)):
//! an instance takes tokens from the shared Redis bucket a few at a time (a lease) and spends
//! them here without a round trip.
//!
//! Why leases rather than counting locally and syncing the counts later: Redis only ever hands
//! out tokens the shared bucket has, so the instances together never spend more tokens than
//! the limit grants (a token is spent at most [`LEASE_TTL`] after Redis counted it, so a
//! stretch of time may also see the leased tokens left from before it: at most one and a half
//! leases per instance). What a lease costs is the
//! other way: tokens leased and left unspent expire unused, burning the shared quota with no
//! request behind them. So a lease is sized by demand, not by the limit: about half of what
//! this instance saw of the bucket's requests in the last [`LEASE_TTL`] (at most a twentieth
//! of the burst, 1 to 64), so it is spent well before it expires unless demand drops at once;
//! a bucket seeing fewer than four requests a lease lifetime here leases one token at a time
//! and fetches none ahead, which is the strict mode's one decision per request.
//!
//! A refusal is kept too, until the moment Redis named for the bucket's next token: no
//! instance can make that moment come sooner (others only spend), so refusing locally until
//! then is what Redis would answer, and a client hammering past its limit costs no round trips.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RatePolicy;
use super::cells::{Outcome, nanos};

/// How long leased tokens stay spendable: short, so a token is spent close to when the shared
/// bucket counted it, and unspent ones do not sit out of reach of other instances for long.
pub const LEASE_TTL: Duration = Duration::from_secs(1);

/// The most tokens one lease takes.
const MAX_LEASE: u32 = 64;

/// The most tokens a lease takes under `policy`: a twentieth of the burst, 1 to
/// [`MAX_LEASE`].
pub(super) fn max_lease(policy: RatePolicy) -> u32 {
    (policy.limit() / 20).clamp(1, MAX_LEASE)
}

/// What Redis said about the shared bucket when it granted a lease.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grant {
    /// Tokens granted (at least one).
    pub(super) tokens: u32,
    /// Tokens left in the shared bucket after the grant.
    pub(super) shared_left: u32,
    /// When the shared bucket is full again, from the grant.
    pub(super) refill: Duration,
}

/// One bucket's lease on this instance.
struct Lease {
    tokens: AtomicU32,
    /// Nanoseconds since the map's origin after which the tokens are void.
    expires: AtomicU64,
    shared_left: AtomicU32,
    /// Nanoseconds since the map's origin when the shared bucket is full again.
    full_at: AtomicU64,
    /// A fetch of the next lease is under way.
    fetching: AtomicBool,
    /// Nanoseconds since the map's origin until which Redis refuses the bucket (0: not).
    refused_until: AtomicU64,
    /// Demand: requests seen since `window_start` (nanoseconds since the map's origin), and in
    /// the window of one lease lifetime before it.
    window_start: AtomicU64,
    window_count: AtomicU32,
    last_count: AtomicU32,
}

impl Lease {
    fn new() -> Self {
        Self {
            tokens: AtomicU32::new(0),
            expires: AtomicU64::new(0),
            shared_left: AtomicU32::new(0),
            full_at: AtomicU64::new(0),
            fetching: AtomicBool::new(false),
            refused_until: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            window_count: AtomicU32::new(0),
            last_count: AtomicU32::new(0),
        }
    }

    /// Counts a request at `now` (approximate under races, which only sizes leases).
    fn note_request(&self, now: u64, window: u64) {
        let start = self.window_start.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(start);
        if elapsed < window {
            self.window_count.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ended = self.window_count.swap(1, Ordering::Relaxed);
        // More than one window ago: the window just before this one saw nothing.
        let last = if elapsed < window.saturating_mul(2) {
            ended
        } else {
            0
        };
        self.last_count.store(last, Ordering::Relaxed);
        self.window_start.store(now, Ordering::Relaxed);
    }

    /// Tokens to lease next under `policy`: half the recent demand per lease lifetime.
    fn size(&self, policy: RatePolicy) -> u32 {
        let demand = self
            .last_count
            .load(Ordering::Relaxed)
            .max(self.window_count.load(Ordering::Relaxed));
        (demand / 2).clamp(1, max_lease(policy))
    }

    /// Neither a spendable token nor a standing refusal: nothing left to keep.
    fn is_void(&self, now: u64) -> bool {
        now >= self.expires.load(Ordering::Acquire)
            && now >= self.refused_until.load(Ordering::Acquire)
    }
}

/// What [`Leases::take`] decided.
pub(super) enum Taken {
    /// Spent a leased token; `fetch_ahead` when this caller should fetch the next lease now
    /// (the lease runs low and no one else is fetching it).
    Spent { outcome: Outcome, fetch_ahead: bool },
    /// Refused until the time Redis named.
    Refused(Outcome),
    /// No spendable token here: ask Redis.
    Empty,
}

/// Bucket keys (the Redis keys, built from ids of validated keys) to leases, at most about
/// `max` of them. A full map first drops expired leases (lossless: their tokens are void);
/// if none expired, a new lease is not kept and its bucket goes to Redis per request.
pub(super) struct Leases {
    map: papaya::HashMap<String, Lease, foldhash::fast::RandomState>,
    max: usize,
    origin: Instant,
    /// A lease's lifetime in nanoseconds ([`LEASE_TTL`]; shorter in unit tests), which is
    /// also the window demand is counted over.
    window: u64,
    /// Leases granted but not kept because the map was full of live ones.
    pub(super) unkept: AtomicU64,
    sweeping: AtomicBool,
}

impl Leases {
    pub(super) fn new(max: usize) -> Self {
        Self::with_ttl(max, LEASE_TTL)
    }

    fn with_ttl(max: usize, ttl: Duration) -> Self {
        Self {
            window: nanos(ttl),
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            max: max.max(1),
            origin: Instant::now(),
            unkept: AtomicU64::new(0),
            sweeping: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    /// Spends one leased token of `key`, if a live lease has one.
    pub(super) fn take(&self, key: &str, policy: RatePolicy) -> Taken {
        let map = self.map.pin();
        let Some(lease) = map.get(key) else {
            return Taken::Empty;
        };
        let now = self.now();
        lease.note_request(now, self.window);
        // Leased tokens first: Redis granted them, so they are spendable even when a later
        // call (racing a fetch ahead that took the bucket's last tokens) was refused.
        let spent = (now < lease.expires.load(Ordering::Acquire))
            .then(|| {
                lease
                    .tokens
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .ok()
            })
            .flatten();
        let Some(before) = spent else {
            let refused_until = lease.refused_until.load(Ordering::Acquire);
            return match refused_until.checked_sub(now) {
                Some(wait) if wait > 0 => Taken::Refused(Outcome::Limited {
                    retry_after: Duration::from_nanos(wait),
                }),
                _ => Taken::Empty,
            };
        };
        let left = before - 1;
        let full_at = lease.full_at.load(Ordering::Relaxed);
        let outcome = Outcome::Allowed {
            remaining: lease
                .shared_left
                .load(Ordering::Relaxed)
                .saturating_add(left),
            reset: Duration::from_nanos(full_at.saturating_sub(now)),
        };
        let size = lease.size(policy);
        let fetch_ahead =
            size > 1 && left <= size / 2 && !lease.fetching.swap(true, Ordering::AcqRel);
        Taken::Spent {
            outcome,
            fetch_ahead,
        }
    }

    /// How many tokens to lease for `key` now: by its recent demand here, one when it has no
    /// lease entry yet.
    pub(super) fn wanted(&self, key: &str, policy: RatePolicy) -> u32 {
        self.map
            .pin()
            .get(key)
            .map_or(1, |lease| lease.size(policy))
    }

    /// Keeps `grant`'s tokens for `key` (the caller spent none of them), added to what a live
    /// lease still holds; a void lease's tokens are dropped first.
    pub(super) fn keep(&self, key: &str, grant: Grant) {
        let now = self.now();
        let expires = now.saturating_add(self.window);
        let full_at = now.saturating_add(nanos(grant.refill));
        self.with_lease(key, now, |lease| {
            if now >= lease.expires.load(Ordering::Acquire) {
                lease.tokens.store(0, Ordering::Release);
            }
            lease
                .shared_left
                .store(grant.shared_left, Ordering::Relaxed);
            lease.full_at.store(full_at, Ordering::Relaxed);
            lease.tokens.fetch_add(grant.tokens, Ordering::AcqRel);
            lease.expires.store(expires, Ordering::Release);
        });
    }

    /// Keeps Redis's refusal of `key` for `retry_after`.
    pub(super) fn keep_refusal(&self, key: &str, retry_after: Duration) {
        let now = self.now();
        let until = now.saturating_add(nanos(retry_after));
        self.with_lease(key, now, |lease| {
            lease.refused_until.fetch_max(until, Ordering::AcqRel);
        });
    }

    /// Runs `change` on `key`'s lease, made if missing and the map has room: a full map first
    /// drops void leases; if it is still full, nothing is kept (counted in `unkept`).
    fn with_lease(&self, key: &str, now: u64, change: impl FnOnce(&Lease)) {
        let map = self.map.pin();
        if let Some(lease) = map.get(key) {
            return change(lease);
        }
        if map.len() >= self.max {
            // One sweeper at a time: a map full of live leases is not scanned once per request.
            if !self.sweeping.swap(true, Ordering::Acquire) {
                map.retain(|_, lease| !lease.is_void(now));
                self.sweeping.store(false, Ordering::Release);
            }
            if map.len() >= self.max {
                self.unkept.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        change(map.get_or_insert_with(key.to_owned(), Lease::new));
    }

    /// The fetch ahead for `key` is over (kept or failed): another may start.
    pub(super) fn fetched(&self, key: &str) {
        if let Some(lease) = self.map.pin().get(key) {
            lease.fetching.store(false, Ordering::Release);
        }
    }

    /// How many buckets have a lease entry here.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> RatePolicy {
        text.parse().unwrap()
    }

    fn grant(tokens: u32) -> Grant {
        Grant {
            tokens,
            shared_left: 50,
            refill: Duration::from_secs(6),
        }
    }

    fn spent(taken: Taken) -> Option<(u32, bool)> {
        match taken {
            Taken::Spent {
                outcome: Outcome::Allowed { remaining, .. },
                fetch_ahead,
            } => Some((remaining, fetch_ahead)),
            _ => None,
        }
    }

    #[test]
    fn leases_are_sized_by_demand_up_to_a_twentieth_of_the_burst() {
        assert_eq!(max_lease(policy("20/min")), 1);
        assert_eq!(max_lease(policy("200/min")), 10);
        assert_eq!(max_lease(policy("1000000/s")), MAX_LEASE);

        let leases = Leases::with_ttl(10, Duration::from_millis(100));
        let p = policy("1000/min"); // at most 50
        assert_eq!(leases.wanted("k", p), 1, "no demand seen yet");
        leases.keep("k", grant(0));
        for _ in 0..30 {
            leases.take("k", p);
        }
        assert_eq!(leases.wanted("k", p), 15, "half the demand of this window");
        std::thread::sleep(Duration::from_millis(110));
        leases.take("k", p);
        assert_eq!(
            leases.wanted("k", p),
            15,
            "half the demand of the last window"
        );
        for _ in 0..200 {
            leases.take("k", p);
        }
        assert_eq!(leases.wanted("k", p), 50, "capped");
        // Demand gone for two windows: one token at a time again.
        std::thread::sleep(Duration::from_millis(210));
        leases.take("k", p);
        assert_eq!(leases.wanted("k", p), 1);
    }

    #[test]
    fn a_lease_spends_exactly_its_tokens_and_asks_for_more_once_at_half() {
        let leases = Leases::new(10);
        let p = policy("400/min"); // leases of up to 20
        assert!(matches!(leases.take("k", p), Taken::Empty));
        leases.keep("k", grant(0));
        for _ in 0..20 {
            leases.take("k", p); // demand: 20 a lease lifetime, so leases of 10
        }
        leases.keep("k", grant(9));
        let mut fetches = 0;
        for left in (0..9).rev() {
            let (remaining, fetch_ahead) = spent(leases.take("k", p)).expect("a token");
            assert_eq!(remaining, 50 + left);
            fetches += usize::from(fetch_ahead);
        }
        assert_eq!(fetches, 1, "one fetch ahead while one is under way");
        assert!(matches!(leases.take("k", p), Taken::Empty));
        leases.fetched("k");
        leases.keep("k", grant(2));
        assert!(spent(leases.take("k", p)).is_some_and(|(_, ahead)| ahead));
        assert!(matches!(leases.take("other", p), Taken::Empty));
    }

    #[test]
    fn sparse_demand_fetches_nothing_ahead() {
        let leases = Leases::new(10);
        let p = policy("1000/min");
        leases.keep("k", grant(3));
        for _ in 0..3 {
            let (_, fetch_ahead) = spent(leases.take("k", p)).expect("a token");
            assert!(!fetch_ahead, "three requests do not call for a lease ahead");
        }
    }

    #[test]
    fn a_refusal_stands_until_the_time_redis_named() {
        let leases = Leases::new(10);
        let p = policy("200/min");
        leases.keep_refusal("k", Duration::from_millis(200));
        match leases.take("k", p) {
            Taken::Refused(Outcome::Limited { retry_after }) => {
                assert!(retry_after <= Duration::from_millis(200), "{retry_after:?}");
                assert!(retry_after > Duration::from_millis(100), "{retry_after:?}");
            }
            _ => panic!("not refused"),
        }
        assert!(matches!(leases.take("other", p), Taken::Empty));
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            matches!(leases.take("k", p), Taken::Empty),
            "ask Redis again"
        );
    }

    #[test]
    fn a_full_map_drops_void_leases_and_keeps_no_more_live_ones() {
        let leases = Leases::new(2);
        leases.keep("a", grant(5));
        leases.keep("b", grant(5));
        leases.keep("c", grant(5));
        assert_eq!(leases.len(), 2);
        assert_eq!(leases.unkept.load(Ordering::Relaxed), 1);
        assert!(matches!(leases.take("c", policy("200/min")), Taken::Empty));
    }
}
