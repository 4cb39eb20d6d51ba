//! [`RedisLimiter`]: the same limits shared by every instance, one atomic Lua script per
//! decision (feature `redis`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;

use super::RatePolicy;
use super::bucket::Bucket;
use super::cells::Outcome;
use super::lease::{Grant, Leases, Taken};

/// The key prefix unless [`RedisLimiterBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "axum-api-key:rl";

/// The deadline of one decision unless [`RedisLimiterBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// GCRA with the server's clock. KEYS[1]: the bucket; ARGV[1]: the emission interval in µs;
/// ARGV[2]: the burst; ARGV[3]: how many tokens to take at most (1 per decision; a lease takes
/// more). Returns {granted, remaining, wait_us, reset_us}: `granted` is 0 when the bucket has
/// no token (then `wait_us` says when it will), else as many as asked that the bucket has. The
/// key holds the "theoretical arrival time" and expires when the bucket would be full again,
/// so idle buckets vanish by themselves.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local available = math.floor((now + tau - tat) / interval)
if available < 1 then
  return {0, 0, tat + interval - tau - now, tat - now}
end
local granted = math.min(want, available)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {granted, available - granted, 0, new_tat - now}
";

/// Limits shared through Redis: give the same one (or one built from the same URL and prefix)
/// to the [`RateLimitLayer`](super::RateLimitLayer)s of every instance.
///
/// - **One round trip per decision**: an atomic Lua script (GCRA on the server's `TIME`, so
///   instance clocks do not matter) reads and updates the bucket; the bucket's key expires
///   when it would be full again, so Redis holds only buckets used within their window.
/// - **Never a stalled or failed request**: every call has a deadline
///   ([`DEFAULT_TIMEOUT`]); on a timeout, an error, or while (re)connecting, the layer's local
///   buckets decide instead. During an outage every instance therefore enforces the limit on
///   its own (up to N times the limit across N instances): limits fail open to local, never
///   closed. Reconnection runs in the background with backoff (100 ms doubling to 5 s, reset
///   by a decision Redis makes, so a Redis that connects but never answers in time is not
///   reconnected to once per request).
/// - **Observable**: each change between connected and degraded is logged (warn when degraded,
///   info when back) and counted in [`RedisLimiterStats`].
/// - **Local-first, if asked** ([`RedisLimiterBuilder::local_first`]): tokens leased a few at
///   a time and spent without a round trip; the instances together still never spend more
///   tokens than the limit grants.
///
/// ```no_run
/// use axum_api_key::ratelimit::{RateLimitLayer, RedisLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisLimiter::builder("redis://127.0.0.1:6379").prefix("myapp:rl").build()?;
/// let limit = RateLimitLayer::new("100/min".parse()?).redis(redis);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    script: ::redis::Script,
    prefix: Box<str>,
    timeout: Duration,
    /// The connection and its number: a failed call drops only the connection it used, never
    /// a newer one another task just made.
    connection: RwLock<Option<(u64, MultiplexedConnection)>>,
    connects: AtomicU64,
    /// Timeouts since the last answer: a connection is dropped only after a few in a row.
    timeouts_in_a_row: AtomicU32,
    connecting: AtomicBool,
    connected: AtomicBool,
    backoff_ms: AtomicU64,
    origin: Instant,
    next_attempt_ms: AtomicU64,
    decisions: AtomicU64,
    fallbacks: AtomicU64,
    state_changes: AtomicU64,
    /// Local-first mode: tokens leased from the shared buckets.
    leases: Option<Leases>,
    leased: AtomicU64,
}

/// Counters of a [`RedisLimiter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimiterStats {
    /// Whether the last call succeeded.
    pub connected: bool,
    /// Decisions Redis made.
    pub decisions: u64,
    /// Decisions left to the local buckets (Redis down, slow or connecting).
    pub fallbacks: u64,
    /// Changes between connected and degraded.
    pub state_changes: u64,
    /// Connections made (the first one included). A Redis that connects but does not answer
    /// in time makes this grow with the backoff (100 ms doubling to 5 s, reset by a decision
    /// Redis made), not with the request rate.
    pub connects: u64,
    /// Local-first mode: decisions made here without a round trip (a leased token spent, or a
    /// refusal Redis made still standing).
    pub leased: u64,
    /// Local-first mode: buckets with a lease on this instance now.
    pub leases: usize,
}

/// Builds a [`RedisLimiter`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisLimiterBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    local_first: bool,
}

/// Why a [`RedisLimiter`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct RedisLimiterError(String);

impl RedisLimiter {
    /// Starts a builder for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            local_first: false,
        }
    }

    /// The counters.
    pub fn stats(&self) -> RedisLimiterStats {
        let inner = &self.inner;
        RedisLimiterStats {
            connected: inner.connected.load(Ordering::Relaxed),
            decisions: inner.decisions.load(Ordering::Relaxed),
            fallbacks: inner.fallbacks.load(Ordering::Relaxed),
            state_changes: inner.state_changes.load(Ordering::Relaxed),
            connects: inner.connects.load(Ordering::Relaxed),
            leased: inner.leased.load(Ordering::Relaxed),
            leases: inner.leases.as_ref().map_or(0, Leases::len),
        }
    }

    /// Whether the last call succeeded.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Starts connecting now (otherwise the first decision does, and falls back meanwhile).
    /// Needs a Tokio runtime; without one it does nothing.
    pub fn connect(&self) {
        self.inner.clone().spawn_connect();
    }

    /// Whether tokens are leased ([`RedisLimiterBuilder::local_first`]).
    pub(crate) fn is_local_first(&self) -> bool {
        self.inner.leases.is_some()
    }

    /// The Redis key of a client's failed-key allowance. `!` cannot occur in a limit's name,
    /// so no rate-limit bucket shares it.
    pub(crate) fn failed_keys_key(
        &self,
        policy: RatePolicy,
        client: &super::throttle::ClientKey,
    ) -> String {
        format!("{}:!failed-keys:{policy}:{client}", self.inner.prefix)
    }

    /// One strict decision by Redis (no lease, whatever the mode), or `None` when Redis
    /// cannot decide within the deadline.
    pub(crate) async fn spend_shared(&self, key: &str, policy: RatePolicy) -> Option<Outcome> {
        self.inner
            .take(key, policy, 1)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// The Redis key of a bucket: `<prefix>:<limit name>:<policy>:<owner>`, the owner as
    /// [`Owner::write_redis`](super::bucket::Owner::write_redis) spells it (`k:<token id>`, `u:<length>:<organization>:<user>`,
    /// `o:<organization>`).
    pub(crate) fn key(&self, name: &str, bucket: Bucket<'_>) -> String {
        let mut key = format!("{}:{name}:{}:", self.inner.prefix, bucket.policy);
        bucket.owner.write_redis(&mut key);
        key
    }

    /// One decision by Redis, or `None` when Redis cannot decide within the deadline.
    pub(crate) async fn check(&self, key: &str, policy: RatePolicy) -> Option<Outcome> {
        let Some(leases) = &self.inner.leases else {
            return self.spend_shared(key, policy).await;
        };
        // Local-first: a lease for this request and, if demand calls for it, the next few.
        let want = leases.wanted(key, policy);
        let (outcome, grant) = self.inner.take(key, policy, want).await?;
        match (outcome, grant) {
            // Kept even when this request spent the only token: the entry counts the demand
            // that sizes the next leases.
            (_, Some(grant)) => leases.keep(
                key,
                Grant {
                    tokens: grant.tokens - 1,
                    ..grant
                },
            ),
            (Outcome::Limited { retry_after }, None) => leases.keep_refusal(key, retry_after),
            (Outcome::Allowed { .. }, None) => {}
        }
        Some(outcome)
    }

    /// Local-first mode: spends a token this instance leased for `key`, without a round trip;
    /// `None` when there is none (then [`check`](Self::check) asks Redis). Fetches the next
    /// lease in the background when this one runs low.
    pub(crate) fn check_leased(&self, key: &str, policy: RatePolicy) -> Option<Outcome> {
        let leases = self.inner.leases.as_ref()?;
        let outcome = match leases.take(key, policy) {
            Taken::Spent {
                outcome,
                fetch_ahead,
            } => {
                if fetch_ahead {
                    self.fetch_ahead(key, policy);
                }
                outcome
            }
            Taken::Refused(outcome) => outcome,
            Taken::Empty => return None,
        };
        self.inner.leased.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::redis_limiter_decision("lease");
        Some(outcome)
    }

    /// Leases the next tokens of `key` in a task, so the request that spends the last one
    /// does not wait for Redis.
    fn fetch_ahead(&self, key: &str, policy: RatePolicy) {
        let inner = self.inner.clone();
        let owned = key.to_owned();
        let fetch = async move {
            if let Some(leases) = &inner.leases {
                let want = leases.wanted(&owned, policy);
                if let Some((_, Some(grant))) = inner.take(&owned, policy, want).await {
                    leases.keep(&owned, grant);
                }
                leases.fetched(&owned);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(fetch)),
            // No runtime to fetch from: the next request asks Redis itself.
            Err(_) => {
                if let Some(leases) = &self.inner.leases {
                    leases.fetched(key);
                }
            }
        }
    }
}

impl Inner {
    /// Takes up to `want` tokens of `key`'s shared bucket: the decision for the request at
    /// hand, and what was granted (`None` when refused). `None` when Redis did not answer in
    /// time (then the local buckets decide).
    async fn take(
        self: &Arc<Self>,
        key: &str,
        policy: RatePolicy,
        want: u32,
    ) -> Option<(Outcome, Option<Grant>)> {
        let connection = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some((number, mut connection)) = connection else {
            self.clone().spawn_connect();
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::redis_limiter_decision("fallback");
            return None;
        };
        let interval = u64::try_from(policy.interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(key);
        invocation
            .arg(interval)
            .arg(policy.limit())
            .arg(want.max(1));
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((granted, remaining, wait_us, reset_us))) => {
                self.set_connected(true, "");
                // Redis decides again: the next failure may reconnect at once.
                if self.backoff_ms.load(Ordering::Relaxed) != 0 {
                    self.backoff_ms.store(0, Ordering::Relaxed);
                    self.next_attempt_ms.store(0, Ordering::Relaxed);
                }
                if self.timeouts_in_a_row.load(Ordering::Relaxed) != 0 {
                    self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                }
                self.decisions.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::redis_limiter_decision("redis");
                let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
                let remaining = u32::try_from(remaining).unwrap_or(0);
                // Never more than asked, whatever the reply says.
                Some(match u32::try_from(granted).unwrap_or(0).min(want.max(1)) {
                    0 => (
                        Outcome::Limited {
                            retry_after: micros(wait_us),
                        },
                        None,
                    ),
                    // The request at hand spends one; the others are the caller's to keep.
                    tokens => (
                        Outcome::Allowed {
                            remaining: remaining.saturating_add(tokens - 1),
                            reset: micros(reset_us),
                        },
                        Some(Grant {
                            tokens,
                            shared_left: remaining,
                            refill: micros(reset_us),
                        }),
                    ),
                })
            }
            Ok(Err(error)) => {
                self.fail(number, &format!("{:?}", error.kind()), true);
                None
            }
            Err(_) => {
                // A slow answer still arrives, in order, on a multiplexed connection: only a
                // few timeouts in a row suggest a peer that went away without closing it.
                let in_a_row = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                self.fail(number, "timeout", in_a_row >= TIMEOUTS_BEFORE_RECONNECT);
                None
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_connected(&self, connected: bool, reason: &str) {
        if self.connected.swap(connected, Ordering::Relaxed) != connected {
            self.state_changes.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::redis_limiter_connected(connected);
            if connected {
                tracing::info!("Redis rate limits: connected, limits shared again");
            } else {
                tracing::warn!(
                    reason,
                    "Redis rate limits: degraded, local limits decide until Redis answers"
                );
            }
        }
    }

    /// A failed call on connection `number`: local limits decide and, when `drop_it`, that
    /// connection (and only that one: another task may have made a newer one meanwhile) is
    /// rebuilt in the background.
    fn fail(self: &Arc<Self>, number: u64, reason: &str, drop_it: bool) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::redis_limiter_decision("fallback");
        self.set_connected(false, reason);
        if !drop_it {
            return;
        }
        let dropped = {
            let mut slot = self
                .connection
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some((current, _)) if *current == number => {
                    *slot = None;
                    true
                }
                Some(_) => false,
                None => true,
            }
        };
        if dropped {
            self.timeouts_in_a_row.store(0, Ordering::Relaxed);
            self.clone().spawn_connect();
        }
    }

    fn spawn_connect(self: Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.now_ms() < self.next_attempt_ms.load(Ordering::Relaxed)
            || self.connecting.swap(true, Ordering::Acquire)
        {
            return;
        }
        // The backoff grows with every attempt, made or failed, and only a decision Redis
        // makes resets it: a Redis that accepts connections but does not answer in time is
        // reconnected to ever less often, not once per timed-out request.
        let backoff = match self.backoff_ms.load(Ordering::Relaxed) {
            0 => 100,
            ms => ms.saturating_mul(2).min(5_000),
        };
        self.backoff_ms.store(backoff, Ordering::Relaxed);
        self.next_attempt_ms
            .store(self.now_ms().saturating_add(backoff), Ordering::Relaxed);
        // Cleared when the attempt ends, or when its task is dropped unfinished (a runtime
        // shutting down): a flag left set would stop every later attempt.
        let attempt_ends = AttemptEnds(self.clone());
        runtime.spawn(async move {
            let _attempt_ends = attempt_ends;
            let deadline = Duration::from_secs(1).max(self.timeout);
            let attempt =
                tokio::time::timeout(deadline, self.client.get_multiplexed_async_connection())
                    .await;
            match attempt {
                Ok(Ok(connection)) => {
                    let number = self.connects.fetch_add(1, Ordering::Relaxed) + 1;
                    *self
                        .connection
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some((number, connection));
                }
                Ok(Err(_)) | Err(_) => self.set_connected(false, "connect failed"),
            }
        });
    }
}

/// How many timeouts in a row drop a connection.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Lets the next connection attempt start once this one has ended, however it ends.
struct AttemptEnds(Arc<Inner>);

impl Drop for AttemptEnds {
    fn drop(&mut self) {
        self.0.connecting.store(false, Ordering::Release);
    }
}

impl RedisLimiterBuilder {
    /// The prefix of every key (default [`DEFAULT_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The deadline of one decision (default [`DEFAULT_TIMEOUT`]; at least 1 ms). Past it, the
    /// local buckets decide.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Local-first mode (off by default): each instance leases tokens from the shared buckets
    /// a few at a time and spends them without a round trip; the next lease is fetched in the
    /// background when one runs half out. A lease is sized by demand: half of this instance's
    /// requests for the bucket in the last [`LEASE_TTL`](super::LEASE_TTL), at most a
    /// twentieth of the burst (1 to 64), so a bucket with few requests here leases one token at
    /// a time and fetches none ahead (the strict mode's one round trip per request). Redis
    /// never hands out more tokens than a bucket has, so the instances together never spend
    /// more tokens than the limit grants (a token is spent at most `LEASE_TTL` after Redis
    /// counted it, so a stretch of time may also see the leased tokens left from before it, at
    /// most one and a half leases per instance); tokens
    /// leased and left unspent expire with their lease, so when demand stops short the
    /// instances admit a little less than the limit, at most one and a half leases each.
    /// `RateLimit`'s `r` is then this instance's view: the shared bucket at the last lease plus
    /// its own leased tokens.
    ///
    /// ```no_run
    /// use axum_api_key::ratelimit::{RateLimitLayer, RedisLimiter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisLimiter::builder("redis://127.0.0.1:6379").local_first(true).build()?;
    /// let limit = RateLimitLayer::new("1000/min".parse()?).redis(redis); // leases of 1 to 50
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_first(mut self, on: bool) -> Self {
        self.local_first = on;
        self
    }

    /// Builds the limiter; it connects in the background on first use (or on
    /// [`RedisLimiter::connect`]).
    pub fn build(self) -> Result<RedisLimiter, RedisLimiterError> {
        let client = ::redis::Client::open(self.url.as_str())
            .map_err(|error| RedisLimiterError(format!("{:?}", error.kind())))?;
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                client,
                script: ::redis::Script::new(SCRIPT),
                prefix: self.prefix.into_boxed_str(),
                timeout: self.timeout,
                connection: RwLock::new(None),
                connects: AtomicU64::new(0),
                timeouts_in_a_row: AtomicU32::new(0),
                connecting: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                backoff_ms: AtomicU64::new(0),
                origin: Instant::now(),
                next_attempt_ms: AtomicU64::new(0),
                decisions: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                state_changes: AtomicU64::new(0),
                leases: self
                    .local_first
                    .then(|| Leases::new(super::DEFAULT_MAX_KEYS)),
                leased: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("stats", &self.stats())
            .finish()
    }
}
