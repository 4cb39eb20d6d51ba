//! Revocations shared across instances over Redis pub/sub (feature `redis`).
//!
//! Behind a load balancer every instance has its own [`CachedValidator`]. Without a shared
//! feed, a key revoked through instance A stays accepted on instance B until B's cache TTL runs
//! out. [`RedisRevocations`] closes that gap for every revocation made through this crate:
//!
//! - **Publishing.** Every revocation a cache applies from a local source
//!   ([`CachedValidator::revoke_token_id`] & co., its inner validator's `invalidate`, the
//!   Scalekit client's [`invalidate_token`](crate::scalekit::ScalekitClient::invalidate_token)) is
//!   evicted locally *synchronously*, then handed to a channel; a background task publishes it
//!   to Redis. The revoking call never waits on Redis.
//! - **Subscribing.** A background task subscribes to the channel and revokes each announced
//!   token id in every attached cache: a tombstone, exactly like a local revocation, so an
//!   announcement that lands while a validation of that key is in flight still wins.
//! - **Updates.** A key updated through the crate (its claims, its description: the cache as a
//!   [`KeyStore`](crate::keys::KeyStore), the Scalekit client's `update_token`,
//!   `InMemoryTokens::update`) is announced the same way, once; other instances forget their
//!   cached answers for that key (no tombstone: it stays valid) and ask the upstream on its
//!   next request. [`RedisRevocations::publish_updated`] announces a key updated elsewhere.
//! - **Gaps.** Redis pub/sub is at-most-once: messages sent while the subscription is down are
//!   lost for good. So every time the subscription is (re)established, the attached caches drop
//!   their positive entries ([`CachedValidator::flush_positive`]) before they are trusted again.
//!   While Redis is unreachable requests keep flowing on the local cache, and the staleness
//!   bound falls back to the cache TTL; [`stats`](RedisRevocations::stats) says so
//!   (`connected: false`) and every state change is logged.
//! - **Never on the request path.** A cache hit does exactly what it does without this feature.
//!
//! Messages name keys by token id only ([format](RevocationMessage)); never the key, never its
//! fingerprint (fingerprints are keyed per process anyway). A revocation made by key is
//! published only when its token id is known locally: the Scalekit client looks it up before
//! revoking, and a cache knows the id of every key it has validated.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use axum_api_key::redis::RedisRevocations;
//! use axum_api_key::{ApiKeyLayer, InMemoryTokens, TokenInfo};
//! use axum_api_key::cache::CachedValidator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tokens = InMemoryTokens::new(); // or a ScalekitClient
//! let cache = CachedValidator::builder(tokens.clone())
//!     .ttl(Duration::from_secs(300))
//!     .build();
//!
//! // Keep it alive as long as the app: dropping the last clone stops its tasks.
//! let revocations = RedisRevocations::builder("redis://127.0.0.1:6379")
//!     .channel("myapp:revocations")
//!     .build()?;
//! revocations.attach(&cache);
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|info: TokenInfo| async move { info.token_id().to_owned() }))
//!     .layer(ApiKeyLayer::new(cache.clone()));
//!
//! // Later, on this instance: evicted here at once, and on every other instance about one
//! // network hop later.
//! cache.revoke_token_id("key_0123456789abcdefghij");
//! # Ok(())
//! # }
//! ```

mod builder;
mod event;
mod publisher;
mod stats;
mod subscriber;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

pub use builder::RedisRevocationsBuilder;
pub use event::{Rejected, RevocationMessage, VERSION};

use self::event::Kind;
pub use stats::RedisStats;

use self::stats::Counters;
use crate::cache::CachedValidator;
use crate::cache::RemoteHandle;
use crate::keys::{KeyEvent, KeyEventListener, KeyEvents};

/// The channel used unless [`RedisRevocationsBuilder::channel`] says otherwise.
pub const DEFAULT_CHANNEL: &str = "axum-api-key:revocations";

/// How many revocations may wait for Redis before new ones are dropped (and counted).
const QUEUE_CAPACITY: usize = 1024;

/// The longest timeout or interval the builder keeps: longer settings are clamped to it.
const MAX_REDIS_WAIT: Duration = Duration::from_secs(3600);

/// A Redis pub/sub feed of revocations, shared by every instance of a service; see the
/// [module docs](self).
///
/// Clones share the feed. Its two background tasks (subscriber, publisher) stop when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedisRevocations {
    inner: Arc<Running>,
}

/// Why a [`RedisRevocations`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL is not a Redis URL (`redis://[user:password@]host[:port][/db]`, `rediss://`
    /// needs a TLS feature of the `redis` crate).
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The channel name is empty.
    #[error("the Redis channel name is empty")]
    EmptyChannel,
    /// The origin is not 1 to 48 characters of `[A-Za-z0-9._:-]`.
    #[error("invalid origin: use 1 to 48 characters of [A-Za-z0-9._:-]")]
    InvalidOrigin,
}

/// The feed's tasks, aborted when the last [`RedisRevocations`] clone goes.
struct Running {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the tasks and the publishing listeners share.
pub(crate) struct Shared {
    client: ::redis::Client,
    channel: String,
    origin: String,
    min_backoff: Duration,
    max_backoff: Duration,
    ping_interval: Duration,
    timeout: Duration,
    caches: RwLock<Vec<RemoteHandle>>,
    counters: Counters,
    outgoing: mpsc::Sender<Announcement>,
    /// Messages accepted into the queue so far.
    queued: AtomicU64,
    /// Messages published so far; [`RedisRevocations::drain`] waits on it.
    published: watch::Sender<u64>,
    /// Pace the warnings about ignored messages, malformed and unknown (about one a second
    /// each): anyone who can publish on the channel could otherwise fill the logs. The
    /// counters count them all.
    malformed_warnings: governor::DefaultDirectRateLimiter,
    unknown_warnings: governor::DefaultDirectRateLimiter,
}

impl RedisRevocations {
    /// Starts configuring a feed on the Redis server at `url` (`redis://host:port[/db]`, as in
    /// a `REDIS_URL`).
    pub fn builder(url: impl Into<String>) -> RedisRevocationsBuilder {
        RedisRevocationsBuilder {
            url: url.into(),
            channel: DEFAULT_CHANNEL.to_owned(),
            origin: None,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            subscribe: true,
        }
    }

    /// A feed configured from `REDIS_URL` (and `REDIS_CHANNEL`, default [`DEFAULT_CHANNEL`]),
    /// or `None` when `REDIS_URL` is unset or empty.
    ///
    /// # Panics
    ///
    /// Like [`RedisRevocationsBuilder::build`], outside a Tokio runtime.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum_api_key::redis::RedisRevocations;
    ///
    /// if let Some(revocations) = RedisRevocations::from_env()? {
    ///     println!("sharing revocations on {}", revocations.channel());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_env() -> Result<Option<Self>, RedisSetupError> {
        Self::builder_from_env()
            .map(RedisRevocationsBuilder::build)
            .transpose()
    }

    /// A builder configured from `REDIS_URL` and `REDIS_CHANNEL` (see
    /// [`from_env`](Self::from_env)), for further settings; `None` when `REDIS_URL` is unset.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum_api_key::redis::RedisRevocations;
    ///
    /// let feed = match RedisRevocations::builder_from_env() {
    ///     Some(builder) => Some(builder.publish_only().build()?),
    ///     None => None,
    /// };
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder_from_env() -> Option<RedisRevocationsBuilder> {
        let url = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let mut builder = Self::builder(url.trim());
        if let Some(channel) = std::env::var("REDIS_CHANNEL")
            .ok()
            .filter(|c| !c.trim().is_empty())
        {
            builder = builder.channel(channel.trim());
        }
        Some(builder)
    }

    /// Listens for revocations and updates on behalf of `cache`, and publishes those it
    /// applies from local sources (see [`CachedValidator::local_revocations`]). Any number of caches
    /// may be attached; each is flushed of positive entries now, since whatever it cached
    /// before had no feed to vet it.
    ///
    /// Attaching holds the cache weakly: a dropped cache is simply forgotten.
    pub fn attach<V>(&self, cache: &CachedValidator<V>) -> &Self {
        let handle = cache.remote_handle();
        handle.flush_positive();
        self.shared()
            .caches
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
        cache
            .local_revocations()
            .subscribe(Arc::new(Publishing(self.shared().clone())));
        self
    }

    /// Publishes the revocations and updates announced on `events` too: for a process that
    /// revokes or updates keys without a cache of its own (an admin tool with a
    /// [`ScalekitClient`](crate::scalekit::ScalekitClient), say). Do not combine it with
    /// [`attach`](Self::attach) on a cache that already listens to the same `events`: each
    /// revocation would then be published twice (harmless, but wasted).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use axum_api_key::redis::RedisRevocations;
    /// use axum_api_key::keys::KeyEventSource;
    /// use axum_api_key::scalekit::ScalekitClient;
    ///
    /// let client = ScalekitClient::from_env()?;
    /// let revocations = RedisRevocations::builder("redis://127.0.0.1:6379").build()?;
    /// revocations.publish_events_of(client.key_events());
    /// client.invalidate_token("key_0123456789abcdefghij").await?;
    /// // A short-lived process must wait for the message to leave.
    /// assert!(revocations.drain(Duration::from_secs(5)).await);
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish_events_of(&self, events: &KeyEvents) -> &Self {
        events.subscribe(Arc::new(Publishing(self.shared().clone())));
        self
    }

    /// Announces that `token_id` was revoked (without applying it to any local cache: use
    /// [`CachedValidator::revoke_token_id`] for that, which also announces it when attached).
    /// Returns at once; `false` when the queue is full (Redis long unreachable) and the
    /// announcement was dropped.
    pub fn publish_revoked(&self, token_id: &str) -> bool {
        self.shared().enqueue(Kind::Revoked, token_id)
    }

    /// Announces that `token_id`'s facts changed (its claims, its description), so other
    /// instances forget their cached answers for it and ask the upstream again on its next
    /// request: for a key updated outside this process (in the Scalekit dashboard, say).
    /// Updates made through an attached cache, or through a store whose events are published
    /// here, are announced without this. Returns at once; `false` when the queue is full.
    pub fn publish_updated(&self, token_id: &str) -> bool {
        self.shared().enqueue(Kind::Updated, token_id)
    }

    /// Waits until every announcement queued before this call has been published, up to
    /// `timeout`; `true` if they all were. Call it before a short-lived process exits.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let target = self.shared().queued.load(Ordering::Acquire);
        let mut published = self.shared().published.subscribe();
        tokio::time::timeout(timeout, published.wait_for(|done| *done >= target))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// `true` while the subscription is up: revocations from other instances then arrive
    /// within about one network hop. `false` means the staleness bound is the cache TTL.
    pub fn is_connected(&self) -> bool {
        self.shared().counters.is_connected()
    }

    /// A snapshot of the feed's state and counters.
    pub fn stats(&self) -> RedisStats {
        self.shared().counters.snapshot()
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.shared().channel
    }

    /// This instance's origin id, sent with every message (so it can skip its own).
    pub fn origin(&self) -> &str {
        &self.shared().origin
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl fmt::Debug for RedisRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("channel", &self.channel())
            .field("origin", &self.origin())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Queues an announcement; never waits.
    fn enqueue(&self, kind: Kind, token_id: &str) -> bool {
        if !event::is_token_id(token_id) {
            // Every subscriber would drop it. Not logged: it may be anything, a key included.
            self.counters.not_an_id.bump();
            tracing::warn!(
                redis = "publish",
                len = token_id.len(),
                "not announced: not a token id (1 to 40 letters, digits, `_`, `-`); other instances refuse the key within their cache TTL"
            );
            return false;
        }
        let message = RevocationMessage::now(token_id, &self.origin);
        match self.outgoing.try_send(Announcement { kind, message }) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(_) => {
                self.counters.publish_dropped.bump();
                match kind {
                    Kind::Revoked => tracing::warn!(
                        redis = "publish",
                        token_id,
                        "revocation queue full (Redis unreachable for long?): not announced; other instances refuse the key within their cache TTL"
                    ),
                    Kind::Updated => tracing::warn!(
                        redis = "publish",
                        token_id,
                        "revocation queue full (Redis unreachable for long?): update not announced; other instances see it within their cache TTL"
                    ),
                }
                false
            }
        }
    }

    /// The live caches (dead ones are forgotten on the way).
    fn caches(&self) -> Vec<RemoteHandle> {
        let mut caches = self.caches.write().unwrap_or_else(PoisonError::into_inner);
        caches.retain(RemoteHandle::is_alive);
        caches.clone()
    }
}

/// What the publisher sends: a message and its type.
struct Announcement {
    kind: Kind,
    message: RevocationMessage,
}

/// Hands the revocations and updates of a [`KeyEvents`] list to the publisher.
struct Publishing(Arc<Shared>);

impl KeyEventListener for Publishing {
    fn on_event(&self, event: &KeyEvent) {
        match event {
            KeyEvent::Revoked {
                token_id: Some(token_id),
                ..
            } => {
                self.0.enqueue(Kind::Revoked, token_id);
            }
            KeyEvent::Updated { token_id } => {
                self.0.enqueue(Kind::Updated, token_id);
            }
            KeyEvent::Revoked { token_id: None, .. } => {
                // Naming the key (or its per-process fingerprint) to other instances is not an
                // option; they will refuse it within their TTL.
                self.0.counters.unresolved.bump();
                tracing::info!(
                    redis = "publish",
                    "revocation by key not announced: its token id is unknown here (revoke by token id to reach every instance at once)"
                );
            }
            _ => {}
        }
    }
}
