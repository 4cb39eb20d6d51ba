//! The hit path answers from the key's fingerprint (no copy of the secret): a cache says what
//! it has by fingerprint, through every wrapper, and agrees with `validate_now`; a revoked
//! key's entry is never answered from the fingerprint.

use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::validator::{BoxValidator, FingerprintLookup};
use axum_api_key::{InMemoryTokens, ValidateError, Validator};

#[tokio::test]
async fn a_cache_answers_by_fingerprint_only_what_it_holds() {
    let tokens = InMemoryTokens::new();
    let cache = CachedValidator::new(tokens.clone());
    let boxed = BoxValidator::new(cache.clone());
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    let fingerprint = created.key.fingerprint();

    // Not cached yet: a miss, straight to `validate` (no second look through validate_now).
    assert!(matches!(
        boxed.validate_fingerprint_now(fingerprint),
        FingerprintLookup::Missed
    ));
    assert!(boxed.validate_now(&created.key).is_none());
    assert_eq!(
        cache.stats().upstream_calls,
        0,
        "lookups never call upstream"
    );

    let info = boxed.validate(&created.key).await.unwrap();
    match boxed.validate_fingerprint_now(fingerprint) {
        FingerprintLookup::Answered(Ok(auth)) => {
            assert_eq!(auth.info().token_id(), info.info().token_id())
        }
        other => panic!("expected a hit, got {other:?}"),
    }
    assert_eq!(cache.stats().upstream_calls, 1);

    // Revoked: the fingerprint alone must not bring it back.
    tokens.invalidate(&created.token_id);
    assert!(!matches!(
        boxed.validate_fingerprint_now(fingerprint),
        FingerprintLookup::Answered(Ok(_))
    ));
    assert!(matches!(
        boxed.validate(&created.key).await,
        Err(ValidateError::Invalid(_))
    ));

    // A store that keeps keys by its own hash needs the key itself.
    assert!(matches!(
        tokens.validate_fingerprint_now(fingerprint),
        FingerprintLookup::NeedsKey
    ));
}
