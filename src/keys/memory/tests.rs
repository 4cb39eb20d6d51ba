//! Unit tests of `memory`.

use std::collections::BTreeMap;

use super::*;

#[test]
fn minted_keys_pass_the_strict_format() {
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    assert_eq!(
        crate::scalekit::shape::key_format().check(created.key.expose_secret()),
        Ok(())
    );
    assert!(shape::is_token_id(&created.token_id));
    assert_eq!(created.token_id.len(), 22);
}

#[test]
fn validate_accepts_ids_like_scalekit() {
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    assert_eq!(
        tokens.validate_token(&created.token_id).unwrap().token_id(),
        created.token_id
    );
}

#[test]
fn list_pages_and_filters() {
    let tokens = InMemoryTokens::new();
    for i in 0..5 {
        let mut request = CreateToken::new("org_1");
        if i % 2 == 0 {
            request = request.user("usr_1");
        }
        tokens.create(request).unwrap();
    }
    tokens.create(CreateToken::new("org_2")).unwrap();
    let first = tokens.list(&ListTokens::new("org_1").page_size(2)).unwrap();
    assert_eq!((first.tokens.len(), first.total_count), (2, 5));
    let next = first.next_page_token.unwrap();
    let second = tokens
        .list(&ListTokens::new("org_1").page_size(2).page_token(next))
        .unwrap();
    assert_ne!(first.tokens[0].token_id(), second.tokens[0].token_id());
    assert_eq!(
        tokens
            .list(&ListTokens::new("org_1").user("usr_1"))
            .unwrap()
            .total_count,
        3
    );
}

#[test]
fn update_replaces_claims_and_clears_description() {
    let tokens = InMemoryTokens::new();
    let created = tokens
        .create(CreateToken::new("org_1").claim("a", "1").description("d"))
        .unwrap();
    let claims = BTreeMap::from([("b".to_owned(), "2".to_owned())]);
    let info = tokens
        .update(
            UpdateToken::new(&created.token_id)
                .custom_claims(claims)
                .description(""),
        )
        .unwrap();
    assert_eq!(info.claim("a"), None);
    assert_eq!(info.claim("b"), Some("2"));
    assert_eq!(info.description(), None);
}

#[test]
fn invalidate_is_idempotent_and_final() {
    let tokens = InMemoryTokens::new();
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    tokens.invalidate(created.key.expose_secret());
    tokens.invalidate(created.key.expose_secret());
    tokens.invalidate(&shape::new_token_id());
    assert_eq!(
        tokens.validate_token(&created.token_id),
        Err(KeyStoreError::NotFound)
    );
    assert!(
        tokens
            .update(UpdateToken::new(&created.token_id).description("x"))
            .is_err()
    );
}
