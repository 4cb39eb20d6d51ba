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
/// waited on the same flight.
pub(super) enum NotCached {
    Invalid(InvalidReason),
    Unavailable(ValidateError),
    /// A stale answer served because the upstream could not tell.
    Degraded(Authenticated),
    /// A good answer fetched across a flush: true for this flight, not to be reused.
    Uncacheable(Authenticated),
}

impl NotCached {
    pub(super) fn to_result(&self) -> Result<Authenticated, ValidateError> {
        match self {
            Self::Invalid(reason) => Err(ValidateError::Invalid(*reason)),
            Self::Unavailable(error) => Err(error.clone()),
            Self::Degraded(auth) | Self::Uncacheable(auth) => Ok(auth.clone()),
        }
    }
}

impl Core {
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
            Err(error @ ValidateError::Unavailable { .. }) => {
                self.counters.upstream_errors.bump();
                tracing::debug!(cache = "miss", %fingerprint, upstream_ms, %error, "upstream could not tell");
                Err(self.fall_back(fingerprint, error))
            }
        }
    }

    /// A positive upstream answer: cache it unless a revocation or flush landed meanwhile.
    fn keep_answer(
        &self,
        fingerprint: Fingerprint,
        auth: Authenticated,
        started: u64,
        upstream_ms: u64,
    ) -> Result<Arc<Entry>, NotCached> {
        let token_id = auth.info().token_id();
        let epoch = match self.revocations.vet(fingerprint, token_id, started) {
            Verdict::Clear(epoch) => epoch,
            Verdict::Revoked => {
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "revoked while being validated");
                self.remember_invalid(fingerprint, InvalidReason::Revoked, None);
                return Err(NotCached::Invalid(InvalidReason::Revoked));
            }
            Verdict::Unverifiable => {
                tracing::debug!(cache = "miss", %fingerprint, token_id, upstream_ms, "flushed while being validated; not cached");
                return Err(NotCached::Uncacheable(auth));
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
        let Some(entry) = Entry::new(auth.clone(), self.ttl, self.stale_window, epoch) else {
            tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "upstream accepted an expired key");
            self.remember_invalid(fingerprint, InvalidReason::Expired, None);
            return Err(NotCached::Invalid(InvalidReason::Expired));
        };
        tracing::debug!(cache = "miss", %fingerprint, %token_id, upstream_ms, "API key validated");
        let entry = Arc::new(entry);
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
    /// Only for upstream faults, never for a spent budget (see `fly`).
    fn fall_back(&self, fingerprint: Fingerprint, error: ValidateError) -> NotCached {
        // Belt and braces: a key the upstream refused is never served stale, even if its stale
        // record outlived the eviction (e.g. inserted by a flight that overlapped the refusal).
        if let Some(reason) = self.negative.get(&CacheKey(fingerprint)) {
            return NotCached::Invalid(reason);
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
                NotCached::Degraded(Authenticated::degraded(entry.auth.info_arc().clone()))
            }
            Admission::Refuse(reason) => NotCached::Invalid(reason),
            Admission::Recheck => NotCached::Unavailable(error),
        }
    }
}
