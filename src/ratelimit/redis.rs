//! [`RedisLimiter`]: the same limits shared by every instance, one atomic Lua script per
//! decision (feature `redis`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;

use super::RatePolicy;
use super::cells::Outcome;

/// The key prefix unless [`RedisLimiterBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "axum-api-key:rl";

/// The deadline of one decision unless [`RedisLimiterBuilder::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// GCRA with the server's clock. KEYS[1]: the bucket; ARGV[1]: the emission interval in µs;
/// ARGV[2]: the burst. Returns {allowed, remaining, wait_us, reset_us}. The key holds the
/// "theoretical arrival time" and expires when the bucket would be full again, so idle
/// buckets vanish by themselves.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tau
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tau - new_tat) / interval), 0, new_tat - now}
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
///   closed. Reconnection runs in the background with backoff (100 ms doubling to 5 s).
/// - **Observable**: each change between connected and degraded is logged (warn when degraded,
///   info when back) and counted in [`RedisLimiterStats`].
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
    connection: RwLock<Option<MultiplexedConnection>>,
    connecting: AtomicBool,
    connected: AtomicBool,
    backoff_ms: AtomicU64,
    origin: Instant,
    next_attempt_ms: AtomicU64,
    decisions: AtomicU64,
    fallbacks: AtomicU64,
    state_changes: AtomicU64,
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
}

/// Builds a [`RedisLimiter`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisLimiterBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
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

    /// The Redis key of a bucket.
    pub(crate) fn key(&self, name: &str, id: &str, policy: RatePolicy) -> String {
        format!("{}:{name}:{policy}:{id}", self.inner.prefix)
    }

    /// One decision by Redis, or `None` when Redis cannot decide within the deadline.
    pub(crate) async fn check(&self, key: &str, policy: RatePolicy) -> Option<Outcome> {
        let inner = &self.inner;
        let connection = inner
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(mut connection) = connection else {
            inner.clone().spawn_connect();
            inner.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let interval = u64::try_from(policy.interval().as_micros()).unwrap_or(u64::MAX);
        let mut invocation = inner.script.key(key);
        invocation.arg(interval).arg(policy.limit());
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        match tokio::time::timeout(inner.timeout, call).await {
            Ok(Ok((allowed, remaining, wait_us, reset_us))) => {
                inner.set_connected(true, "");
                inner.decisions.fetch_add(1, Ordering::Relaxed);
                let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
                Some(if allowed == 1 {
                    Outcome::Allowed {
                        remaining: u32::try_from(remaining).unwrap_or(0),
                        reset: micros(reset_us),
                    }
                } else {
                    Outcome::Limited {
                        retry_after: micros(wait_us),
                    }
                })
            }
            Ok(Err(error)) => {
                inner.fail(&format!("{:?}", error.kind()));
                None
            }
            Err(_) => {
                inner.fail("timeout");
                None
            }
        }
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_connected(&self, connected: bool, reason: &str) {
        if self.connected.swap(connected, Ordering::Relaxed) != connected {
            self.state_changes.fetch_add(1, Ordering::Relaxed);
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

    /// A failed call: local limits decide, and the connection is rebuilt in the background.
    fn fail(self: &Arc<Self>, reason: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.set_connected(false, reason);
        *self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.clone().spawn_connect();
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
        runtime.spawn(async move {
            let deadline = Duration::from_secs(1).max(self.timeout);
            let attempt =
                tokio::time::timeout(deadline, self.client.get_multiplexed_async_connection())
                    .await;
            match attempt {
                Ok(Ok(connection)) => {
                    *self
                        .connection
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some(connection);
                    self.backoff_ms.store(0, Ordering::Relaxed);
                    self.next_attempt_ms.store(0, Ordering::Relaxed);
                }
                Ok(Err(_)) | Err(_) => {
                    let backoff = match self.backoff_ms.load(Ordering::Relaxed) {
                        0 => 100,
                        ms => (ms * 2).min(5_000),
                    };
                    self.backoff_ms.store(backoff, Ordering::Relaxed);
                    self.next_attempt_ms
                        .store(self.now_ms() + backoff, Ordering::Relaxed);
                    self.set_connected(false, "connect failed");
                }
            }
            self.connecting.store(false, Ordering::Release);
        });
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
                connecting: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                backoff_ms: AtomicU64::new(0),
                origin: Instant::now(),
                next_attempt_ms: AtomicU64::new(0),
                decisions: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                state_changes: AtomicU64::new(0),
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
