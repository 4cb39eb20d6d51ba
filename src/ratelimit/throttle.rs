//! [`FailedKeyThrottle`]: a client that presents too many refused keys waits, without any
//! upstream call.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap};

use super::RatePolicy;
use super::cells::Cells;

/// How many clients the throttle tracks unless [`FailedKeyThrottle::max_clients`] says otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// The longest [`ClientKey::named`] value kept as is; longer names are hashed.
const MAX_NAME_LEN: usize = 64;

/// Who sent a request, for the throttle: an address (IPv6 folded to its /64, which one host
/// usually owns whole) or a name chosen by the app.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address, or the /64 prefix of an IPv6 address.
    Ip(IpAddr),
    /// An app-defined name (at most 64 bytes; longer names are replaced by a hash).
    Named(Box<str>),
}

impl super::cells::Lookup<ClientKey> for ClientKey {
    fn to_key(&self) -> ClientKey {
        self.clone()
    }
}

impl ClientKey {
    /// The key of an address: IPv4 (or IPv4-mapped IPv6) as is, other IPv6 addresses cut to
    /// their /64, so one host cannot rotate through its 2^64 addresses.
    ///
    /// ```
    /// use axum_api_key::ratelimit::ClientKey;
    ///
    /// let a = ClientKey::ip("2001:db8::1".parse().unwrap());
    /// let b = ClientKey::ip("2001:db8::ffff:2".parse().unwrap());
    /// assert_eq!(a, b);
    /// ```
    pub fn ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::Ip(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::Ip(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }

    /// An app-defined client name (a tenant, a device id). Names longer than 64 bytes are
    /// replaced by a hash of them, so the map's memory stays bounded.
    pub fn named(name: &str) -> Self {
        if name.len() <= MAX_NAME_LEN {
            Self::Named(name.into())
        } else {
            Self::Named(format!("#{}", blake3::hash(name.as_bytes()).to_hex()).into())
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Named(name) => name.fmt(f),
        }
    }
}

/// The client named by `X-Forwarded-For`, for an app behind exactly `trusted_proxies` proxies
/// that each append the address they received the request from.
///
/// Only the last `trusted_proxies` entries were written by your proxies; everything to their
/// left came from the client and can be forged. So this takes the `trusted_proxies`-th entry
/// from the right (every `X-Forwarded-For` field counts, in order), and gives `None` when there
/// are fewer entries (the request did not come through all your proxies), when
/// `trusted_proxies` is 0, or when that entry is not an address (`1.2.3.4`, `1.2.3.4:5`,
/// `2001:db8::1` or `[2001:db8::1]:5`). On `None`, use the peer address.
///
/// ```
/// use axum_api_key::ratelimit::forwarded_client;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// // The client forged the first entry; your one proxy appended the real address.
/// headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
/// assert_eq!(forwarded_client(&headers, 1), Some("203.0.113.7".parse().unwrap()));
/// assert_eq!(forwarded_client(&headers, 3), None);
/// ```
pub fn forwarded_client(headers: &HeaderMap, trusted_proxies: usize) -> Option<IpAddr> {
    if trusted_proxies == 0 {
        return None;
    }
    let mut seen = 0usize;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let value = value.to_str().ok()?;
        for entry in value.rsplit(',') {
            seen += 1;
            if seen == trusted_proxies {
                return parse_address(entry.trim_matches([' ', '\t']));
            }
        }
    }
    None
}

fn parse_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

/// An app-defined client-key function for [`ClientSource::Custom`].
pub type ClientFn = Arc<dyn Fn(&HeaderMap, &Extensions) -> Option<ClientKey> + Send + Sync>;

/// Where the throttle finds the client of a request.
#[derive(Clone)]
pub enum ClientSource {
    /// The peer address from [`ConnectInfo<SocketAddr>`](ConnectInfo) (serve the app with
    /// `into_make_service_with_connect_info::<SocketAddr>()`). The default.
    PeerAddr,
    /// [`forwarded_client`] with this many trusted proxies, falling back to the peer address.
    ForwardedFor {
        /// How many proxies of yours append to `X-Forwarded-For` in front of the app.
        trusted_proxies: usize,
    },
    /// An app-defined function.
    Custom(ClientFn),
}

impl fmt::Debug for ClientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerAddr => f.write_str("PeerAddr"),
            Self::ForwardedFor { trusted_proxies } => f
                .debug_struct("ForwardedFor")
                .field("trusted_proxies", trusted_proxies)
                .finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// A refusal to serve a throttled client: how long it should wait (`Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` field: rounded up, at least 1.
    pub fn seconds(&self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Counters of a [`FailedKeyThrottle`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleStats {
    /// Clients tracked now (bounded by [`FailedKeyThrottle::max_clients`]).
    pub clients: usize,
    /// Refusals recorded.
    pub refusals: u64,
    /// Checks answered "wait" (requests that got 429 without an upstream call).
    pub throttled: u64,
    /// Clients still within their window that were dropped to stay under the bound.
    pub evicted_active: u64,
}

/// Throttles clients that present refused keys: after `policy.limit()` refusals in a burst, a
/// client may present one more unknown key per `policy.interval()` (GCRA through `governor`),
/// and meanwhile its unknown keys get 429 without an upstream call.
///
/// Keys it presents that are cached as valid keep working (the pipeline asks the throttle only
/// before an upstream call), and other clients are unaffected. The map of clients is bounded
/// ([`DEFAULT_MAX_CLIENTS`]): clients idle for a whole window are forgotten first (losslessly:
/// their bucket would be full again anyway), and only a map full of clients active within their
/// window loses some of them (counted in [`ThrottleStats::evicted_active`]).
///
/// **Two call points** in the authentication pipeline:
///
/// 1. before asking the validator about a key that is not cached: [`check`](Self::check)`(&client)`,
///    and on `Err(retry)` answer 429 with `Retry-After: retry.seconds()`;
/// 2. after the validator answers `Invalid`: [`record_refusal`](Self::record_refusal)`(&client)`.
///
/// Flood bound: one client makes at most `limit + limit * t / window` refused upstream calls
/// in `t` seconds, plus the calls already in flight when its bucket emptied.
///
/// ```
/// use axum_api_key::ratelimit::{ClientKey, FailedKeyThrottle};
///
/// let throttle = FailedKeyThrottle::new("3/min".parse().unwrap());
/// let client = ClientKey::ip("203.0.113.7".parse().unwrap());
/// for _ in 0..3 {
///     assert!(throttle.check(&client).is_ok()); // ... validator says Invalid:
///     throttle.record_refusal(&client);
/// }
/// let wait = throttle.check(&client).unwrap_err();
/// assert!(wait.seconds() <= 21); // one refusal comes back every 20 s
/// // Another client is unaffected.
/// assert!(throttle.check(&ClientKey::ip("198.51.100.1".parse().unwrap())).is_ok());
/// ```
pub struct FailedKeyThrottle {
    policy: RatePolicy,
    source: ClientSource,
    /// Shared with the tasks that apply what Redis says of a client.
    cells: Arc<Cells<ClientKey>>,
    /// Where the refusals of every instance are counted together (feature `redis`).
    #[cfg(feature = "redis")]
    shared: Option<super::redis::RedisLimiter>,
    refusals: AtomicU64,
    throttled: AtomicU64,
    /// Upstream validations in flight per client that presented a refused key within its
    /// window, in a fixed array of striped counters (the client's hash picks the stripe):
    /// bounded memory, and a client flooding with a slow
    /// upstream can hold at most `max_in_flight` of the validator's slots.
    in_flight: Box<[AtomicU32]>,
    max_in_flight: u32,
    stripe_hasher: RandomState,
}

/// How many stripes of in-flight counters a throttle keeps.
const IN_FLIGHT_STRIPES: usize = 4096;

/// Upstream validations one client may have in flight at once, unless
/// [`FailedKeyThrottle::max_in_flight_per_client`] says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT_PER_CLIENT: u32 = 4;

/// One client's upstream validation, counted while it is in flight (see
/// [`FailedKeyThrottle::begin`]).
pub struct InFlight {
    throttle: Arc<FailedKeyThrottle>,
    client: ClientKey,
    /// `None`: not counted (a client with no recent refusal).
    stripe: Option<usize>,
}

impl InFlight {
    /// The client.
    pub fn client(&self) -> &ClientKey {
        &self.client
    }

    /// Records that the validator refused the key (the second call point).
    pub fn refused(&self) {
        self.throttle.record_refusal(&self.client);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(stripe) = self.stripe {
            self.throttle.in_flight[stripe].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("client", &self.client)
            .finish()
    }
}

impl FailedKeyThrottle {
    /// A throttle allowing `policy` refused keys per client, clients found by their peer address.
    pub fn new(policy: RatePolicy) -> Self {
        Self {
            policy,
            source: ClientSource::PeerAddr,
            cells: Arc::new(Cells::new(DEFAULT_MAX_CLIENTS)),
            #[cfg(feature = "redis")]
            shared: None,
            refusals: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            in_flight: (0..IN_FLIGHT_STRIPES).map(|_| AtomicU32::new(0)).collect(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT_PER_CLIENT,
            stripe_hasher: RandomState::new(),
        }
    }

    /// How many upstream validations a client that presented a refused key within its window
    /// may have in flight at once (default [`DEFAULT_MAX_IN_FLIGHT_PER_CLIENT`], at least 1):
    /// past it, its unknown keys get 429 at once. Without it, a flooding client at a slow
    /// upstream would keep holding the validator's in-flight slots between its refusals.
    /// Clients with no recent refusal are not held to it (their concurrent requests for a key
    /// whose cache entry just expired, or with the cache off, all go through).
    #[must_use]
    pub fn max_in_flight_per_client(mut self, max: u32) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Both checks before an upstream call: the client's refusals allowance and its
    /// in-flight bound. `Ok` carries a ticket that counts the call until dropped; call
    /// [`InFlight::refused`] when the validator refuses the key.
    pub fn begin(self: &Arc<Self>, client: ClientKey) -> Result<InFlight, RetryAfter> {
        let standing = self.cells.standing(&client);
        if let Some(wait) = standing.blocked {
            return Err(self.refuse(wait));
        }
        // Only a client that presented a refused key lately is held to the in-flight bound: a
        // clean client's concurrent requests (a key whose cache entry just expired, a cache
        // turned off) all go through, as the validator's own bounds allow.
        let stripe = if standing.active {
            let stripe = (self.stripe_hasher.hash_one(&client) as usize) % IN_FLIGHT_STRIPES;
            let counter = &self.in_flight[stripe];
            if counter.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
                counter.fetch_sub(1, Ordering::AcqRel);
                return Err(self.refuse(Duration::from_secs(1)));
            }
            Some(stripe)
        } else {
            None
        };
        crate::telemetry::rate_limit("failed_key", "allowed");
        Ok(InFlight {
            throttle: self.clone(),
            client,
            stripe,
        })
    }

    /// How many clients to track at most (default [`DEFAULT_MAX_CLIENTS`]).
    #[must_use]
    pub fn max_clients(mut self, max_clients: usize) -> Self {
        self.cells = Arc::new(Cells::new(max_clients));
        self
    }

    /// Counts every instance's refused keys together, through Redis (feature `redis`): each
    /// refusal also spends the client's shared allowance (one atomic script, off the request
    /// path), and once that is spent, the instance that learns it blocks the client as its own
    /// allowance would. So across N instances a flooding client gets about the policy's
    /// allowance plus one refusal per instance (each learns of the block on its next refusal),
    /// not N times the allowance. Redis down or slow: each instance's own allowance still
    /// holds, as without Redis.
    ///
    /// ```no_run
    /// use axum_api_key::ratelimit::{FailedKeyThrottle, RedisLimiter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisLimiter::builder("redis://127.0.0.1:6379").build()?;
    /// let throttle = FailedKeyThrottle::default().redis(redis);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn redis(mut self, redis: super::redis::RedisLimiter) -> Self {
        self.shared = Some(redis);
        self
    }

    /// Where to find the client of a request (default [`ClientSource::PeerAddr`]).
    #[must_use]
    pub fn client_source(mut self, source: ClientSource) -> Self {
        self.source = source;
        self
    }

    /// The policy: refused keys allowed per client.
    pub fn policy(&self) -> RatePolicy {
        self.policy
    }

    /// The client of a request, by the configured [`ClientSource`]; `None` when it cannot be
    /// told (no `ConnectInfo`, a custom function that declines). Without a client, the pipeline
    /// skips the throttle (and the upstream budget still bounds the flood).
    pub fn client_of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<ClientKey> {
        let peer = || {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| ClientKey::ip(addr.ip()))
        };
        match &self.source {
            ClientSource::PeerAddr => peer(),
            ClientSource::ForwardedFor { trusted_proxies } => {
                match forwarded_client(headers, *trusted_proxies) {
                    Some(ip) => Some(ClientKey::ip(ip)),
                    None => peer(),
                }
            }
            ClientSource::Custom(source) => source(headers, extensions),
        }
    }

    /// Before an upstream call for a key that is not cached: `Err` while `client` has no
    /// refusals left.
    pub fn check(&self, client: &ClientKey) -> Result<(), RetryAfter> {
        match self.cells.standing(client).blocked {
            None => Ok(()),
            Some(wait) => Err(self.refuse(wait)),
        }
    }

    /// A throttled request, counted.
    fn refuse(&self, wait: Duration) -> RetryAfter {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::rate_limit("failed_key", "limited");
        RetryAfter(wait)
    }

    /// After the validator refused a key `client` presented.
    pub fn record_refusal(&self, client: &ClientKey) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        let outcome = self.cells.spend_and_block(client, self.policy);
        if outcome.exhausted_for(self.policy).is_some() {
            tracing::debug!(%client, "client throttled after refused keys");
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.shared {
            self.share_refusal(redis, client);
        }
    }

    /// Spends `client`'s shared allowance in a task (the request's answer does not wait on
    /// Redis), and blocks the client here when that allowance is spent. Tasks are as many as
    /// refusals, which the throttle and the upstream budget bound; each ends within the
    /// limiter's deadline.
    #[cfg(feature = "redis")]
    fn share_refusal(&self, redis: &super::redis::RedisLimiter, client: &ClientKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (redis, cells, policy) = (redis.clone(), self.cells.clone(), self.policy);
        let key = redis.failed_keys_key(policy, client);
        let client = client.clone();
        runtime.spawn(async move {
            let spent = redis.spend_shared(&key, policy).await;
            // Allowance left, or Redis down: this instance's own allowance stands.
            let Some(wait) = spent.and_then(|outcome| outcome.exhausted_for(policy)) else {
                return;
            };
            cells.block(&client, policy, wait);
            tracing::debug!(%client, "client throttled: its refused keys on every instance spent the shared allowance");
        });
    }

    /// The counters.
    pub fn stats(&self) -> ThrottleStats {
        ThrottleStats {
            clients: self.cells.len(),
            refusals: self.refusals.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            evicted_active: self.cells.evicted_active(),
        }
    }
}

impl Default for FailedKeyThrottle {
    /// 10 refused keys per minute per client.
    fn default() -> Self {
        Self::new(RatePolicy::TEN_PER_MINUTE)
    }
}

impl fmt::Debug for FailedKeyThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedKeyThrottle")
            .field("policy", &self.policy)
            .field("source", &self.source)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests;
