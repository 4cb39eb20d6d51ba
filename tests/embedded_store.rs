//! The embedded store as a validator outside the layer: it must hold Scalekit's promises by
//! itself (defence in depth), and no client input may make it panic.

use axum_api_key::keys::{CreateToken, ListTokens};
use axum_api_key::{ApiKey, InMemoryTokens, ValidateError, Validator};

#[tokio::test]
async fn a_token_id_is_never_accepted_as_a_key() {
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    let id = ApiKey::new(created.token_id.clone());

    // Outside the layer, with no local checks in front: still refused.
    assert!(matches!(
        tokens.validate(&id).await,
        Err(ValidateError::Invalid(_))
    ));
    assert!(matches!(
        tokens.validate_now(&id),
        Some(Err(ValidateError::Invalid(_)))
    ));
    // The key itself works, through both paths.
    let key = ApiKey::new(created.key.expose_secret());
    assert_eq!(
        tokens.validate(&key).await.unwrap().info().token_id(),
        created.token_id
    );
    assert!(matches!(tokens.validate_now(&key), Some(Ok(_))));
}

#[test]
fn a_page_token_near_the_end_of_the_integers_does_not_panic() {
    let tokens = InMemoryTokens::new();
    for _ in 0..3 {
        tokens.create(CreateToken::new("org_1")).unwrap();
    }
    for page_token in [
        format!("o{}", u64::MAX),
        format!("o{}", usize::MAX),
        format!("o{}", usize::MAX - 1),
        "o99999999999999999999999".to_owned(),
    ] {
        let page = tokens.list(&ListTokens::new("org_1").page_token(page_token.clone()));
        // Past the end (empty page, no next) or refused as malformed: never a panic.
        if let Ok(page) = page {
            assert!(page.tokens.is_empty(), "{page_token}");
            assert_eq!(page.next_page_token, None, "{page_token}");
        }
    }
}
