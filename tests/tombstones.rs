//! Revocation tombstones are bounded (design rule 8) and revocation still wins when the bound
//! is hit (rule 4): through the public API only, a flood of revocations far beyond
//! `max_tombstones` (what anyone who can publish on a Redis feed can send) keeps their number
//! bounded, and a revoked key stays refused: cached before the flood, or in flight during it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{CreateToken, KeyEventSource, KeyEvents};
use axum_api_key::{ApiKey, Authenticated, InMemoryTokens, ValidateError, Validator};
use tokio::sync::{Notify, Semaphore};

const BOUND: usize = 64;
const FLOOD: usize = 20_000;

fn flood(cache: &CachedValidator<impl Validator>) {
    for i in 0..FLOOD {
        cache.revoke_token_id(&format!("apit_flood{i:08}"));
        assert!(cache.stats().tombstones <= BOUND as u64);
    }
}

#[tokio::test]
async fn a_flood_of_revocations_stays_bounded_and_a_revoked_key_stays_refused() {
    let tokens = InMemoryTokens::new();
    let cache = CachedValidator::builder(tokens.clone())
        .max_tombstones(BOUND)
        .build();
    let revoked = tokens.create(CreateToken::new("org_1")).unwrap();
    let kept = tokens.create(CreateToken::new("org_1")).unwrap();
    for created in [&revoked, &kept] {
        cache.validate(&created.key).await.unwrap();
        cache.validate(&created.key).await.unwrap();
    }
    assert_eq!(cache.stats().hits, 2, "both cached");

    tokens.invalidate(&revoked.token_id);
    assert!(matches!(
        cache.validate(&revoked.key).await,
        Err(ValidateError::Invalid(_))
    ));
    flood(&cache);

    let stats = cache.stats();
    assert!(stats.tombstones <= BOUND as u64, "{stats:?}");
    assert!(
        stats.tombstones_evicted >= (FLOOD - BOUND) as u64,
        "the bound was hit: {stats:?}"
    );
    // Its tombstone is long gone; the key is refused all the same.
    assert!(matches!(
        cache.validate(&revoked.key).await,
        Err(ValidateError::Invalid(_))
    ));
    // What the flood cost: the kept key's cached answer is checked upstream again, once.
    let calls = cache.stats().upstream_calls;
    cache.validate(&kept.key).await.unwrap();
    assert_eq!(
        cache.stats().upstream_calls,
        calls + 1,
        "rechecked upstream"
    );
    cache.validate(&kept.key).await.unwrap();
    assert_eq!(cache.stats().upstream_calls, calls + 1, "then cached again");
}

/// A validator whose answers can be held after the upstream gave them.
#[derive(Clone)]
struct Held {
    tokens: InMemoryTokens,
    hold: Arc<AtomicBool>,
    held: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl Validator for Held {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let answer = self.tokens.validate(key).await;
        if self.hold.load(Ordering::SeqCst) {
            self.held.notify_one();
            let _permit = self.release.acquire().await;
        }
        answer
    }
}

impl KeyEventSource for Held {
    fn key_events(&self) -> &KeyEvents {
        self.tokens.key_events()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_in_flight_across_a_forgotten_revocation_is_not_accepted() {
    let tokens = InMemoryTokens::new();
    let upstream = Held {
        tokens: tokens.clone(),
        hold: Arc::new(AtomicBool::new(true)),
        held: Arc::new(Notify::new()),
        release: Arc::new(Semaphore::new(0)),
    };
    let cache = CachedValidator::builder(upstream.clone())
        .max_tombstones(BOUND)
        .build();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();

    // The upstream has said "valid"; the answer is held before it reaches the cache.
    let held = upstream.held.notified();
    let in_flight = tokio::spawn({
        let cache = cache.clone();
        let key = created.key.clone();
        async move { cache.validate(&key).await }
    });
    held.await;
    // Revoked through this cache only (as a Redis announcement does: the upstream still says
    // valid), then the tombstone is flooded out.
    cache.revoke_token_id(&created.token_id);
    flood(&cache);
    upstream.hold.store(false, Ordering::SeqCst);
    upstream.release.add_permits(1);

    let answer = in_flight.await.unwrap();
    assert!(
        answer.is_err(),
        "a validation in flight when the key was revoked was accepted"
    );
    assert_eq!(cache.stats().hits, 0, "and nothing was cached");
}
