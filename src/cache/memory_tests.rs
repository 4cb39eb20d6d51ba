//! The cache's memory layout: one shared entry, and the compact id index at work.

use std::sync::{Arc, Mutex};

use super::CachedValidator;
use super::entry::CacheKey;
use crate::keys::{KeyEvent, KeyEventListener};
use crate::{ApiKey, TokenInfo, ValidateError, Validator, validator_fn};

fn cache() -> CachedValidator<impl Validator> {
    let upstream = validator_fn(|_key: ApiKey| async {
        Ok::<_, ValidateError>(TokenInfo::builder("key_1", "org_1").build())
    });
    CachedValidator::builder(upstream)
        .stale_if_error(std::time::Duration::from_secs(60))
        .build_standalone()
}

fn key() -> ApiKey {
    ApiKey::new("k".repeat(40))
}

#[tokio::test]
async fn moka_the_mirror_and_the_stale_record_share_one_entry() {
    let cache = cache();
    let key = key();
    cache.validate(&key).await.unwrap(); // a miss: moka and the stale record
    cache.validate(&key).await.unwrap(); // a hit: the mirror learns it
    let cache_key = CacheKey(key.fingerprint());
    let in_moka = cache.core.fresh.get(&cache_key).await.unwrap();
    let in_mirror = cache.core.front.get(&cache_key).unwrap();
    let in_stale = cache.core.stale.as_ref().unwrap().get(&cache_key).unwrap();
    assert!(Arc::ptr_eq(&in_moka, &in_mirror));
    assert!(Arc::ptr_eq(&in_moka, &in_stale));
    // And the answer handed out is the entry's own `TokenInfo`, not a copy.
    let answer = cache.validate(&key).await.unwrap();
    assert!(Arc::ptr_eq(answer.info_arc(), in_moka.auth.info_arc()));
}

/// The interleaving that left a removed entry in the mirror: a hit reads the entry from moka,
/// moka then lets go of it (an update's invalidation; its listener finds no row yet), and only
/// then does the hit mirror it. The row must not outlive moka's entry.
#[tokio::test]
async fn an_entry_moka_let_go_of_before_the_mirror_learned_it_is_not_mirrored() {
    let cache = cache();
    let key = key();
    cache.validate(&key).await.unwrap();
    let cache_key = CacheKey(key.fingerprint());
    cache.core.front.clear();
    let read = cache.core.fresh.get(&cache_key).await.unwrap(); // the hit's read
    cache.core.fresh.invalidate(&cache_key).await; // the removal, listener included
    assert!(
        cache.core.hit_now(cache_key, &read, true).is_some(),
        "served as read"
    );
    assert!(
        cache.core.front.get(&cache_key).is_none(),
        "the mirror kept an entry moka no longer holds"
    );
    // The ordinary case still mirrors.
    cache.validate(&key).await.unwrap();
    cache.validate(&key).await.unwrap();
    assert!(cache.core.front.get(&cache_key).is_some());
}

#[derive(Default)]
struct Heard(Mutex<Vec<KeyEvent>>);

impl KeyEventListener for Heard {
    fn on_event(&self, event: &KeyEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test]
async fn a_key_revoked_by_key_is_named_by_the_id_its_entry_carries() {
    let cache = cache();
    let heard = Arc::new(Heard::default());
    cache.local_revocations().subscribe(heard.clone());
    let key = key();
    cache.validate(&key).await.unwrap();
    // Read from moka when the mirror lacks it (moka evicts and the mirror is dropped
    // wholesale independently), and from the mirror otherwise.
    cache.core.front.clear();
    cache.revoke_key(&key);
    let other = ApiKey::new("o".repeat(40));
    cache.validate(&other).await.unwrap(); // mirrored by the miss's own check
    assert!(
        cache
            .core
            .front
            .get(&CacheKey(other.fingerprint()))
            .is_some()
    );
    cache.revoke_key(&other);
    let unseen = ApiKey::new("u".repeat(40));
    cache.revoke_key(&unseen); // never validated here: no id to name
    let heard = heard.0.lock().unwrap();
    let names: Vec<_> = heard
        .iter()
        .map(|event| match event {
            KeyEvent::Revoked { token_id, .. } => token_id.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [Some("key_1".to_owned()), Some("key_1".to_owned()), None]
    );
}

#[tokio::test]
async fn a_revocation_by_id_finds_the_fingerprint_through_the_index() {
    let cache = cache();
    let key = key();
    cache.validate(&key).await.unwrap();
    assert!(!cache.core.revocations.is_revoked(key.fingerprint()));
    cache.revoke_token_id("key_1");
    // The index led to the fingerprint: it is tombstoned too, and its entries are gone.
    assert!(cache.core.revocations.is_revoked(key.fingerprint()));
    let cache_key = CacheKey(key.fingerprint());
    assert!(cache.core.front.get(&cache_key).is_none());
    assert!(cache.core.stale.as_ref().unwrap().get(&cache_key).is_none());
    assert!(cache.validate(&key).await.is_err());
}
