//! Prometheus-style metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): install any recorder (`metrics-exporter-prometheus`, say) and the crate reports
//! to it. Without the feature nothing is recorded and nothing is compiled into the hot path.
//!
//! | Series | Type | Labels |
//! |---|---|---|
//! | `api_key_requests_total` | counter | `outcome`: `accepted`, `missing`, `malformed`, `invalid`, `forbidden`, `unavailable`, `rate_limited` |
//! | `api_key_cache_lookups_total` | counter | `result`: `hit`, `miss`, `negative`, `stale` |
//! | `api_key_upstream_requests_total` | counter | `operation`: `validate`, `create`, `list`, `update`, `invalidate`; `result`: `ok` or an error class (`not_found`, `timeout`, `connect_error`...) |
//! | `api_key_upstream_duration_seconds` | histogram | `operation` |
//! | `api_key_revocations_total` | counter | `source`: `local`, `remote` |
//! | `api_key_redis_connected` | gauge | none (1 while the Redis feed is subscribed) |
//! | `api_key_rate_limit_decisions_total` | counter | `limiter`: `key`, `failed_key`; `decision`: `allowed`, `limited` |
//!
//! Every label value is a `&'static str` from these fixed lists: the number of series is
//! bounded, and no key, token id or fingerprint can ever become a label.

// Without the feature the arguments go unused; with it, some helpers serve only some features.
#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]
#![allow(dead_code)]

/// `api_key_requests_total{outcome}`.
pub const REQUESTS: &str = "api_key_requests_total";
/// `api_key_cache_lookups_total{result}`.
pub const CACHE_LOOKUPS: &str = "api_key_cache_lookups_total";
/// `api_key_upstream_requests_total{operation,result}`.
pub const UPSTREAM_REQUESTS: &str = "api_key_upstream_requests_total";
/// `api_key_upstream_duration_seconds{operation}` (histogram).
pub const UPSTREAM_DURATION: &str = "api_key_upstream_duration_seconds";
/// `api_key_revocations_total{source}`.
pub const REVOCATIONS: &str = "api_key_revocations_total";
/// `api_key_redis_connected` (gauge, 0 or 1).
pub const REDIS_CONNECTED: &str = "api_key_redis_connected";
/// `api_key_rate_limit_decisions_total{limiter,decision}`.
pub const RATE_LIMIT_DECISIONS: &str = "api_key_rate_limit_decisions_total";
/// `api_key_redis_limiter_connected` (gauge, 0 or 1).
pub const REDIS_LIMITER_CONNECTED: &str = "api_key_redis_limiter_connected";
/// `api_key_redis_limiter_decisions_total{result}`.
pub const REDIS_LIMITER_DECISIONS: &str = "api_key_redis_limiter_decisions_total";

/// The outcome of one authentication, the `outcome` label of [`REQUESTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A valid key: the request went on.
    Accepted,
    /// No credentials (refused with 401, or let through anonymously by an optional layer).
    Missing,
    /// A malformed request or a value that cannot be a key, refused locally (400, or 401 with
    /// no validator asked).
    Malformed,
    /// The validator refused the key (401).
    Invalid,
    /// A valid key without the scope a route needs (403, from an extractor or guard).
    Forbidden,
    /// The validator could not tell (503).
    Unavailable,
    /// Refused by the failed-key throttle or a rate limit (429).
    RateLimited,
}

impl Outcome {
    pub const fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Counts one authentication outcome.
#[inline(always)]
pub(crate) fn request(outcome: Outcome) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REQUESTS, "outcome" => outcome.label()).increment(1);
}

/// Counts one cache lookup: `hit`, `miss`, `negative` or `stale`.
#[inline(always)]
pub(crate) fn cache_lookup(result: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(CACHE_LOOKUPS, "result" => result).increment(1);
}

/// Counts one revocation applied to a cache: `source` is `local` or `remote`.
#[inline(always)]
pub(crate) fn revocation(source: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REVOCATIONS, "source" => source).increment(1);
}

/// Sets the Redis feed's connection gauge.
#[inline(always)]
pub(crate) fn redis_connected(connected: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(REDIS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// Sets the Redis rate limiter's connection gauge (on each change).
#[inline(always)]
pub(crate) fn redis_limiter_connected(connected: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(REDIS_LIMITER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// Counts one decision of a Redis-shared limit by where it was made: `redis` (a round trip),
/// `lease` (local-first: a leased token or a standing refusal), `fallback` (Redis could not
/// decide in time: the local buckets did).
#[inline(always)]
pub(crate) fn redis_limiter_decision(result: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(REDIS_LIMITER_DECISIONS, "result" => result).increment(1);
}

/// Counts one rate-limit decision: `limiter` is `key` (the per-key [`RateLimitLayer`]) or
/// `failed_key` (the failed-key throttle); `decision` is `allowed` or `limited`.
///
/// [`RateLimitLayer`]: crate::ratelimit::RateLimitLayer
#[inline(always)]
pub(crate) fn rate_limit(limiter: &'static str, decision: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(RATE_LIMIT_DECISIONS, "limiter" => limiter, "decision" => decision)
        .increment(1);
}

/// Times one upstream call; a zero-sized no-op without the feature.
pub(crate) struct UpstreamTimer {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
    operation: &'static str,
}

impl UpstreamTimer {
    #[inline(always)]
    pub(crate) fn start(operation: &'static str) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
            operation,
        }
    }

    /// Records the call's `result` (a static class name, never a message) and its duration.
    #[inline(always)]
    pub(crate) fn finish(self, result: &'static str) {
        #[cfg(feature = "metrics")]
        {
            let elapsed: std::time::Duration = self.started.elapsed();
            ::metrics::counter!(UPSTREAM_REQUESTS, "operation" => self.operation, "result" => result)
                .increment(1);
            ::metrics::histogram!(UPSTREAM_DURATION, "operation" => self.operation)
                .record(elapsed.as_secs_f64());
        }
    }
}

/// Describes every series (help text and units) to the installed recorder. Call it once after
/// installing one; without the feature it does nothing.
///
/// ```
/// // Install a recorder first (`metrics-exporter-prometheus`, say), then:
/// axum_api_key::telemetry::describe();
/// assert_eq!(axum_api_key::telemetry::REQUESTS, "api_key_requests_total");
/// ```
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            REQUESTS,
            "Authentications by outcome (accepted, missing, malformed, invalid, forbidden, unavailable, rate_limited)"
        );
        describe_counter!(
            CACHE_LOOKUPS,
            "Cache lookups by result (hit, miss, negative, stale)"
        );
        describe_counter!(
            UPSTREAM_REQUESTS,
            "Calls to the key service by operation and result"
        );
        describe_histogram!(
            UPSTREAM_DURATION,
            Unit::Seconds,
            "Duration of calls to the key service"
        );
        describe_counter!(
            REVOCATIONS,
            "Revocations applied to the cache by source (local, remote)"
        );
        describe_gauge!(
            REDIS_CONNECTED,
            "1 while the Redis revocation feed is subscribed, else 0"
        );
        describe_counter!(
            RATE_LIMIT_DECISIONS,
            "Rate-limit decisions by limiter (key, failed_key) and decision (allowed, limited)"
        );
        describe_gauge!(
            REDIS_LIMITER_CONNECTED,
            "1 while the Redis rate limiter's last call succeeded (limits shared), else 0"
        );
        describe_counter!(
            REDIS_LIMITER_DECISIONS,
            "Decisions of Redis-shared limits by where they were made (redis, lease, fallback)"
        );
    }
}
