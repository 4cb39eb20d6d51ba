//! One upstream validation (the initialiser of a moka flight) and what becomes of its answer:
//! cached, remembered as invalid, or replaced by a stale answer when stale-if-error allows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::entry::{CacheKey, Entry};
use super::revocation::Verdict;
use super::state::{Admission, Core};
use crate::request::key::{ApiKey, Fingerprint};
use crate::token_info::Authenticated;
use crate::validator::contract::{InvalidReason, ValidateError, Validator};

/// What a client is told to wait when the upstream budget is spent.
const BUDGET_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A validation's outcome that moka must not cache. Handed (in an `Arc`) to every caller that
/// waited on the same flight, through [`Core::readmit_uncached`].
pub(super) enum NotCached {
    Invalid(InvalidReason),
    Unavailable(ValidateError),
    /// A stale record served because the upstream could not tell (stale-if-error).
    Degraded(Arc<Entry>),
    /// A good answer fetched across a flush: true for this flight, not to be reused. Not
    /// cached anywhere; an entry only so it is admitted as cached ones are.
    Uncacheable(Arc<Entry>),
}

/// What a caller is told when a flush made an answer impossible to vet: ask again.
pub(super) fn flushed_during_validation() -> ValidateError {
    ValidateError::Unavailable {
        message: "the cache was flushed during validation".into(),
        retry_after: Some(BUDGET_RETRY_AFTER),
    }
}

impl Core {
    /// What each caller of a flight gets from an outcome moka did not cache. A positive one
    /// (uncacheable, or stale) is admitted again first, as `judge` admits a cached entry: the
    /// flight vetted it before moka handed it to the callers waiting on it, and a revocation
    /// that returned in between, or the key's expiry passing, must win (rule 4).
    pub(super) fn readmit_uncached(
        &self,
        fingerprint: Fingerprint,
        outcome: &NotCached,
    ) -> Result<Authenticated, ValidateError> {
        let (entry, degraded) = match outcome {
            NotCached::Invalid(reason) => return Err(ValidateError::Invalid(*reason)),
            NotCached::Unavailable(error) => return Err(error.clone()),
            NotCached::Degraded(entry) => (entry, true),
            NotCached::Uncacheable(entry) => (entry, false),
        };
        match self.admit(fingerprint, entry) {
            Admission::Accept if degraded => {
                Ok(Authenticated::degraded(entry.auth.info_arc().clone()))
            }
            Admission::Accept => Ok(entry.auth.clone()),
            Admission::Refuse(reason) => Err(ValidateError::Invalid(reason)),
            Admission::Recheck => Err(flushed_during_validation()),
        }
    }

    /// Runs one upstream validation: the initialiser of a moka flight, so only the first of
    /// any number of concurrent callers for a key gets here. `Ok` is inserted by moka.
    pub(super) async fn fly<V: Validator>(
        &self,
        validator: &V,
        key: &ApiKey,
    ) -> Result<Arc<Entry>, NotCached> {
        let fingerprint = key.fingerprint();
        // Read before the upstream is asked: what happened during the flight is judged
        // against these.
        let started = self.revocations.epoch();
        let creations = self.creations.load(Ordering::Acquire);

        if self.revocations.is_revoked(fingerprint) {
            tracing::debug!(cache = "negative", %fingerprint, "revoked through this instance");
            return Err(NotCached::Invalid(InvalidReason::Revoked));
        }
        let Some(permit) = self.budget.try_spend() else {
            self.counters.budget_rejections.bump();
            tracing::debug!(cache = "budget", %fingerprint, "upstream validation budget spent");
            // No stale-if-error here: whoever floods random keys spends the budget, and must
            // not be able to switch the cache into "accept what was good a while ago" mode,
            // which would keep a key revoked in the dashboard alive past its TTL.
            return Err(NotCached::Unavailable(ValidateError::Unavailable {
                message: "upstream validation budget exhausted".into(),
                retry_after: Some(BUDGET_RETRY_AFTER),
            }));
        };
        self.counters.upstream_calls.bump();
        let began = Instant::now();
        let answer = validator.validate(key).await;
        drop(permit);
        let upstream_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);

        match answer {
            Ok(auth) => self.keep_answer(fingerprint, auth, started, upstream_ms),
            Err(ValidateError::Invalid(reason)) => {
                tracing::debug!(cache = "miss", %fingerprint, upstream_ms, %reason, "API key invalid");
                self.remember_invalid(fingerprint, reason, creations);
                Err(NotCached::Invalid(reason))
            }
            Err(error) => {
                self.counters.upstream_errors.bump();
                tracing::debug!(cache = "miss", %fingerprint, upstream_ms, %error, "upstream could not tell");
                Err(self.fall_back(fingerprint, error))
            }
        }
    }

    /// A positive upstream answer: cache it unless a revocation or flush landed meanwhile, or
    /// the key has expired.
    fn keep_answer(
        &self,
        fingerprint: Fingerprint,
        auth: Authenticated,
        started: u64,
        upstream_ms: u64,
    ) -> Result<Arc<Entry>, NotCached> {
        let token_id = auth.info().token_id();
        // Read before the tombstones: a revocation they miss has a later epoch, so whoever
        // admits an answer vetted up to this one looks at the tombstones again.
        let checked = self.revocations.epoch();
        let (epoch, cacheable) = match self.revocations.vet(fingerprint, token_id, started) {
            Verdict::Clear(epoch) => (epoch, true),
            // Flushed during the flight: true now, but not to be reused.
            Verdict::Unverifiable => (checked, false),
            Verdict::Revoked => {
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "revoked while being validated");
                self.remember_invalid(fingerprint, InvalidReason::Revoked, None);
                return Err(NotCached::Invalid(InvalidReason::Revoked));
            }
            Verdict::Forgotten => {
                // A tombstone was forgotten (the bound was hit) during the flight: it may have
                // been this key's, so the answer cannot be used. Fail closed; a retry starts a
                // flight that the remaining tombstones and the upstream can vouch for.
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "a revocation was forgotten while being validated; not used");
                return Err(NotCached::Unavailable(ValidateError::Unavailable {
                    message: "revocations overflowed during validation".into(),
                    retry_after: Some(BUDGET_RETRY_AFTER),
                }));
            }
        };
        // Before any answer is used, cached or not: an expired key is refused here.
        let Some(entry) = Entry::new(auth.clone(), self.ttl, self.stale_window, epoch) else {
            tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "upstream accepted an expired key");
            self.remember_invalid(fingerprint, InvalidReason::Expired, None);
            return Err(NotCached::Invalid(InvalidReason::Expired));
        };
        let entry = Arc::new(entry);
        if !cacheable {
            tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "flushed while being validated; not cached");
            return Err(NotCached::Uncacheable(entry));
        }
        tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "API key validated");
        if let Some(stale) = &self.stale {
            stale.insert(CacheKey(fingerprint), entry.clone());
        }
        self.ids.insert(token_id, fingerprint);
        Ok(entry)
    }

    /// Caches an "invalid" answer, unless a key was created since the flight began (`creations`
    /// then differs; `None` skips the check for answers no creation can change).
    fn remember_invalid(
        &self,
        fingerprint: Fingerprint,
        reason: InvalidReason,
        creations: impl Into<Option<u64>>,
    ) {
        let key = CacheKey(fingerprint);
        // A refusal ends every positive record of the key: the stale one too, or a later
        // outage would serve it again (stale-if-error) although the upstream said no.
        self.evict(fingerprint);
        self.negative.insert(key, reason);
        // Checked after the insert: a `Created` landing before this load is seen here, one
        // landing after it removes the entry itself.
        let created_meanwhile = creations
            .into()
            .is_some_and(|before| self.creations.load(Ordering::Acquire) != before);
        if created_meanwhile {
            self.negative.invalidate(&key);
        }
    }

    /// The upstream could not tell: a stale answer if stale-if-error allows one, else `error`.
    /// Only for outages (connection failures, timeouts, 5xx), never for a spent budget (see
    /// `fly`) nor for the upstream's own rate limit.
    fn fall_back(&self, fingerprint: Fingerprint, error: ValidateError) -> NotCached {
        // Belt and braces: a key the upstream refused is never served stale, even if its stale
        // record outlived the eviction (e.g. inserted by a flight that overlapped the refusal).
        if let Some(reason) = self.negative.get(&CacheKey(fingerprint)) {
            return NotCached::Invalid(reason);
        }
        // A 429 is the upstream's answer to load, which a flood of random keys can cause: as
        // with the budget, whoever floods must not switch every instance into accepting keys
        // revoked elsewhere within the stale window.
        if matches!(error, ValidateError::UpstreamRateLimited { .. }) {
            return NotCached::Unavailable(error);
        }
        let Some(entry) = self
            .stale
            .as_ref()
            .and_then(|stale| stale.get(&CacheKey(fingerprint)))
        else {
            return NotCached::Unavailable(error);
        };
        let age = entry.validated_at.elapsed();
        if age > entry.keep_for {
            return NotCached::Unavailable(error);
        }
        match self.admit(fingerprint, &entry) {
            Admission::Accept => {
                self.counters.stale_served();
                tracing::warn!(
                    cache = "stale",
                    %fingerprint,
                    token_id = %entry.auth.info().token_id(),
                    age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "upstream unavailable: accepting a stale answer (stale-if-error)"
                );
                NotCached::Degraded(entry)
            }
            Admission::Refuse(reason) => NotCached::Invalid(reason),
            Admission::Recheck => NotCached::Unavailable(error),
        }
    }
}
