//! [`RedisRevocationsBuilder`]: a feed's settings, every one bounded, checked at
//! [`build`](RedisRevocationsBuilder::build).

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::stats::Counters;
use super::{
    MAX_REDIS_WAIT, QUEUE_CAPACITY, RedisRevocations, RedisSetupError, Running, Shared, event,
    publisher, subscriber,
};

/// Configures a [`RedisRevocations`]; made by [`RedisRevocations::builder`].
#[must_use]
#[derive(Clone)]
pub struct RedisRevocationsBuilder {
    pub(super) url: String,
    pub(super) channel: String,
    pub(super) origin: Option<String>,
    pub(super) min_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) ping_interval: Duration,
    pub(super) timeout: Duration,
    pub(super) subscribe: bool,
}

impl RedisRevocationsBuilder {
    /// The pub/sub channel (default [`DEFAULT_CHANNEL`](super::DEFAULT_CHANNEL)). Every instance of a service must use
    /// the same one; separate services sharing a Redis should not.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// This instance's id in messages (default: process id and a random suffix). Only used to
    /// skip this instance's own messages and in logs, so it must be unique, not meaningful:
    /// 1 to 48 characters of `[A-Za-z0-9._:-]` (a host or pod name, say), or
    /// [`build`](Self::build) fails with [`RedisSetupError::InvalidOrigin`]. Other instances
    /// log an origin outside that shape as `<invalid>`.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The subscriber's reconnection delays: doubling from `min` to `max`, with jitter
    /// (defaults 100 ms and 5 s), each clamped to 1 ms..=1 h. The delay goes back to `min`
    /// only after a subscription that lasted 30 s, so a connection dropped right after each
    /// `SUBSCRIBE` (each one flushes the attached caches) is retried ever less often, up to
    /// `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min.clamp(Duration::from_millis(1), MAX_REDIS_WAIT);
        self.max_backoff = max.clamp(self.min_backoff, MAX_REDIS_WAIT);
        self
    }

    /// How often an idle subscription is checked with a `PING` (default 10 s): catches a
    /// connection that died without closing. Clamped to 10 ms..=1 h.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.clamp(Duration::from_millis(10), MAX_REDIS_WAIT);
        self
    }

    /// Deadline of one connection attempt, `SUBSCRIBE`, `PING` or `PUBLISH` (default 2 s).
    /// Clamped to 1 ms..=1 h, so no setting (`Duration::MAX` included) can overflow a deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(1), MAX_REDIS_WAIT);
        self
    }

    /// Publishes only, never subscribes: for a process that revokes keys but serves no
    /// requests (an admin CLI). [`RedisRevocations::attach`] is then pointless.
    pub fn publish_only(mut self) -> Self {
        self.subscribe = false;
        self
    }

    /// Starts the feed: spawns the subscriber and the publisher on the current Tokio runtime
    /// and returns at once (the connection is made in the background; it is not an error for
    /// Redis to be down now).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<RedisRevocations, RedisSetupError> {
        let client = ::redis::Client::open(self.url.as_str())
            .map_err(|e| RedisSetupError::Url(e.to_string()))?;
        if self.channel.is_empty() {
            return Err(RedisSetupError::EmptyChannel);
        }
        let origin = self
            .origin
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
        if !event::is_valid_origin(&origin) {
            return Err(RedisSetupError::InvalidOrigin);
        }
        let (outgoing, queue) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            client,
            channel: self.channel,
            origin,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
            ping_interval: self.ping_interval,
            timeout: self.timeout,
            caches: RwLock::new(Vec::new()),
            counters: Counters::default(),
            outgoing,
            queued: AtomicU64::new(0),
            published: watch::Sender::new(0),
            malformed_warnings: one_a_second(),
            unknown_warnings: one_a_second(),
        });
        let mut tasks = vec![tokio::spawn(publisher::run(shared.clone(), queue)).abort_handle()];
        if self.subscribe {
            tasks.push(tokio::spawn(subscriber::run(shared.clone())).abort_handle());
        }
        Ok(RedisRevocations {
            inner: Arc::new(Running { shared, tasks }),
        })
    }
}

impl fmt::Debug for RedisRevocationsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisRevocationsBuilder")
            .field("channel", &self.channel)
            .field("origin", &self.origin)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("ping_interval", &self.ping_interval)
            .field("timeout", &self.timeout)
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

/// A pace of about one event a second.
fn one_a_second() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(governor::Quota::per_second(std::num::NonZeroU32::MIN))
}
