//! Revocations, creations and flushes as they change a cache's state: tombstones first (what
//! makes a revocation win), evictions after (housekeeping).

use std::sync::atomic::Ordering;

use super::entry::CacheKey;
use super::state::Core;
use crate::keys::KeyEvent;
use crate::request::key::Fingerprint;

impl Core {
    /// Applies a key event (from a subscription or a caller).
    pub(super) fn apply(&self, event: &KeyEvent) {
        match event {
            KeyEvent::Revoked {
                token_id,
                fingerprint,
            } => self.revoke(*fingerprint, token_id.as_deref()),
            KeyEvent::Created { fingerprint, .. } => self.forget_invalid(*fingerprint),
            KeyEvent::Updated { token_id } => self.apply_update(token_id),
        }
    }

    /// A key was updated, as a local source tells (its store's event, an `apply_event` call):
    /// forget its facts here, then tell [`Self::outbound`] listeners, which a feed relays to
    /// other instances.
    fn apply_update(&self, token_id: &str) {
        self.forget_facts_soon(token_id);
        {
            let mut heard = self.lock_heard_update();
            heard.count += 1;
            if *heard.token_id != *token_id {
                heard.token_id = token_id.into();
            }
        }
        self.outbound.publish(&KeyEvent::Updated {
            token_id: token_id.to_owned(),
        });
    }

    /// How many updates this cache has heard of as events so far.
    pub(super) fn updates_heard(&self) -> u64 {
        self.lock_heard_update().count
    }

    /// An update made through this cache (see `KeyStore for CachedValidator`): tells
    /// [`Self::outbound`] listeners, unless the store behind the cache already announced this
    /// very update as an event since `heard_before` (then it was told, in
    /// [`apply_update`](Self::apply_update)). Stores that announce nothing are announced for.
    /// A concurrent update of another key can hide the store's announcement, and then the
    /// update is told twice (harmless). Two concurrent updates of this same key, one of them
    /// through the store alone, may share one announcement: then another instance may keep the
    /// facts between the two for its TTL, the bound it has without a feed.
    pub(super) fn announce_update(&self, token_id: &str, heard_before: u64) {
        let told = {
            let heard = self.lock_heard_update();
            heard.count > heard_before && *heard.token_id == *token_id
        };
        if !told {
            self.outbound.publish(&KeyEvent::Updated {
                token_id: token_id.to_owned(),
            });
        }
    }

    fn lock_heard_update(&self) -> std::sync::MutexGuard<'_, super::state::HeardUpdate> {
        self.last_update_heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Revokes a key by either of its names, from a local source (a `revoke_*` call, an event
    /// of this process), then tells [`Self::outbound`] listeners, naming the key by id when
    /// this cache knows it. Synchronous and lock-brief, so it can run in an event listener.
    pub(super) fn revoke(&self, fingerprint: Option<Fingerprint>, token_id: Option<&str>) {
        if fingerprint.is_none() && token_id.is_none() {
            return;
        }
        // Resolved before the revocation evicts the entry that names it.
        let resolved: Option<String> = match token_id {
            Some(id) => Some(id.to_owned()),
            None => fingerprint.and_then(|fingerprint| self.token_id_of(fingerprint)),
        };
        self.apply_revocation(fingerprint, token_id, "local");
        self.outbound.publish(&KeyEvent::Revoked {
            token_id: resolved,
            fingerprint,
        });
    }

    /// Revokes a key named by a remote feed: applied like a local revocation (tombstone
    /// included, so it wins over validations in flight) but not echoed to `outbound`.
    #[cfg(feature = "redis")]
    pub(super) fn revoke_remote(&self, token_id: &str) {
        self.apply_revocation(None, Some(token_id), "remote");
    }

    /// `source` (`local`, `remote`) labels the revocation in the metrics.
    fn apply_revocation(
        &self,
        fingerprint: Option<Fingerprint>,
        token_id: Option<&str>,
        source: &'static str,
    ) {
        if fingerprint.is_none() && token_id.is_none() {
            return;
        }
        let indexed = token_id.and_then(|id| self.ids.take(id));
        // The tombstone is what makes revocation win; the evictions below only free memory.
        // Tombstoning the indexed fingerprint too lets a later miss refuse the key before (and
        // without) asking the upstream, which matters when the upstream is down.
        self.revocations.revoke(fingerprint.or(indexed), token_id);
        self.counters.revocations.bump();
        crate::telemetry::revocation(source);
        match fingerprint {
            Some(fingerprint) => {
                tracing::debug!(cache = "revoke", %fingerprint, token_id, "API key revoked")
            }
            None => tracing::debug!(cache = "revoke", token_id, "API key revoked"),
        }
        for fingerprint in fingerprint.into_iter().chain(indexed) {
            self.evict(fingerprint);
        }
    }

    /// The token id of a cached key, read from its entry (the mirror, the fresh cache, the
    /// stale record). `None` when none holds it: never validated here, evicted, or flushed.
    fn token_id_of(&self, fingerprint: Fingerprint) -> Option<String> {
        let key = CacheKey(fingerprint);
        let entry = self
            .front
            .get(&key)
            .or_else(|| super::poll_once(self.fresh.get(&key)).flatten())
            .or_else(|| self.stale.as_ref().and_then(|stale| stale.get(&key)))?;
        Some(entry.auth.info().token_id().to_owned())
    }

    /// Drops every positive record of a key: the mirror row and stale record at once, moka's
    /// fresh entry as [`drop_fresh`](Self::drop_fresh) can.
    pub(super) fn evict(&self, fingerprint: Fingerprint) {
        let key = self.forget_synchronously(fingerprint);
        self.drop_fresh(key);
    }

    /// Removes moka's fresh entry for `key` from synchronous code: here when moka's removal is
    /// ready at once (the usual case), else from a task. Dropping moka's pending removal is
    /// safe: its futures are cancel-safe by design (an interrupted write is kept and retried
    /// by moka itself). Outside a runtime, with moka busy, the entry stays until its next hit
    /// (which a revocation's tombstone refuses and evicts) or its TTL.
    fn drop_fresh(&self, key: CacheKey) {
        if super::poll_once(self.fresh.invalidate(&key)).is_some() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let fresh = self.fresh.clone();
                runtime.spawn(async move { fresh.invalidate(&key).await });
            }
            Err(_) => tracing::debug!(
                cache = "evict",
                "a cached answer is left to its next hit or its TTL (no runtime to evict from)"
            ),
        }
    }

    /// A key's facts changed (new claims, a rotation's grace deadline): forget its positive
    /// answers here, and only its own, before returning. No tombstone: the key is still valid,
    /// and its next request asks the upstream for the new facts. A key this cache never
    /// indexed (not validated here lately) has no answer to forget.
    pub(super) async fn forget_facts_of(&self, token_id: &str) {
        let Some(fingerprint) = self.ids.get(token_id) else {
            return;
        };
        let key = self.forget_synchronously(fingerprint);
        // Awaited, unlike `evict`: once the update returns, no hit serves the old facts (moka's
        // eviction listener also drops any mirror row a hit re-created meanwhile).
        self.fresh.invalidate(&key).await;
    }

    /// [`forget_facts_of`](Self::forget_facts_of) from synchronous code (a listener hearing of
    /// an update made through the store itself, or a remote feed; neither is echoed to
    /// `outbound` here): no tombstone stands behind an update, so the removal is
    /// [`evict`](Self::evict)'s, at once whenever moka allows.
    pub(super) fn forget_facts_soon(&self, token_id: &str) {
        if let Some(fingerprint) = self.ids.get(token_id) {
            self.evict(fingerprint);
        }
    }

    /// Drops a key's mirror row and stale record (the parts that go without a task); the
    /// caller deals with moka's fresh entry.
    fn forget_synchronously(&self, fingerprint: Fingerprint) -> CacheKey {
        let key = CacheKey(fingerprint);
        self.front.forget(&key);
        if let Some(stale) = &self.stale {
            stale.invalidate(&key);
        }
        key
    }

    /// A key was created: an "invalid" answer cached for it is now wrong.
    fn forget_invalid(&self, fingerprint: Fingerprint) {
        self.creations.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate(&CacheKey(fingerprint));
    }

    /// Forgets every positive answer (fresh and stale); answers in flight are not cached.
    pub(super) fn flush_positive(&self) {
        self.revocations.flush();
        self.counters.flushes.bump();
        self.front.clear();
        self.fresh.invalidate_all();
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
        self.ids.clear();
        tracing::debug!(cache = "flush", "positive answers flushed");
    }

    /// How many names are tombstoned, and how many were forgotten early (the bound was hit).
    pub(super) fn tombstone_counts(&self) -> (u64, u64) {
        self.revocations.counts()
    }

    /// Forgets every answer, positive and negative.
    pub(super) fn invalidate_all(&self) {
        self.flush_positive();
        self.negative.invalidate_all();
    }
}
