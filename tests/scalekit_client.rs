//! Every token operation of `ScalekitClient`, over real HTTP against `FakeScalekit`.

mod common;

use std::collections::BTreeMap;

use axum_api_key::keys::LimitError;
use axum_api_key::keys::{CreateToken, KeyEvent, KeyEventSource, ListTokens, UpdateToken};
use axum_api_key::request::Fingerprint;
use axum_api_key::scalekit::ScalekitError;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use common::{Recorder, assert_hides, unknown_key};
use serde_json::json;
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn create_then_validate_by_key_and_by_id() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let recorder = Recorder::new();
    client.key_events().subscribe(recorder.clone());

    let expiry = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + Duration::days(30);
    let created = client
        .create_token(
            CreateToken::new("org_59615193906282635")
                .user("usr_63261492986167383")
                .claim("env", "prod")
                .claim("team", "infra")
                .expiry(expiry)
                .description("deploy bot"),
        )
        .await
        .unwrap();
    assert!(created.token_id.starts_with("apit_"));
    assert_eq!(created.info.token_id(), created.token_id);
    assert_eq!(created.info.user_id(), Some("usr_63261492986167383"));
    assert_eq!(created.info.expiry(), Some(expiry));
    assert_eq!(created.info.token_suffix(), Some(created.key.suffix()));
    assert_hides(&format!("{created:?}"), created.key.expose_secret());
    // Published before create_token returned.
    assert_eq!(
        recorder.events(),
        vec![KeyEvent::Created {
            fingerprint: created.key.fingerprint(),
            token_id: created.token_id.clone()
        }]
    );

    let info = client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.organization_id(), "org_59615193906282635");
    assert_eq!(info.claim("team"), Some("infra"));
    assert_eq!(info.description(), Some("deploy bot"));
    assert_eq!(info.organization_external_id(), None); // "" on the wire
    assert!(info.created_at().is_some());

    // Scalekit semantics at the client level: a token id validates too.
    let by_id = client.validate_token(&created.token_id).await.unwrap();
    assert_eq!(by_id, info);
    assert_eq!(fake.count(Op::Validate), 2);
    assert_eq!(fake.count(Op::Token), 1);
}

#[tokio::test]
async fn org_scoped_key_has_no_user() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let created = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();
    let info = client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.user_id(), None);
    assert_eq!(info.expiry(), None);
    assert_eq!(info.claims().len(), 0);
}

#[tokio::test]
async fn unknown_and_empty_tokens() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let key = unknown_key();
    let error = client.validate_token(&key).await.unwrap_err();
    assert_eq!(error, ScalekitError::NotFound);
    assert_hides(&error, &key);
    assert_eq!(
        client.validate_token("").await.unwrap_err(),
        ScalekitError::Limit(LimitError::MissingToken)
    );
    assert_eq!(fake.count(Op::Validate), 1);
}

#[tokio::test]
async fn limits_are_checked_before_any_request() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let mut many = CreateToken::new("org_1");
    for i in 0..21 {
        many = many.claim(format!("c{i}"), "v");
    }
    assert_eq!(
        client.create_token(many).await.unwrap_err(),
        ScalekitError::Limit(LimitError::TooManyClaims(21))
    );
    assert!(matches!(
        client.create_token(CreateToken::new("")).await,
        Err(ScalekitError::Limit(LimitError::MissingOrganization))
    ));
    assert!(matches!(
        client
            .create_token(
                CreateToken::new("org_1").expiry(OffsetDateTime::now_utc() - Duration::hours(1))
            )
            .await,
        Err(ScalekitError::Limit(LimitError::ExpiryInPast))
    ));
    assert!(matches!(
        client.list_tokens(&ListTokens::new("acme")).await,
        Err(ScalekitError::Limit(LimitError::BadOrganization))
    ));
    assert!(matches!(
        client
            .list_tokens(&ListTokens::new("org_1").page_size(31))
            .await,
        Err(ScalekitError::Limit(LimitError::PageSizeTooLarge(31)))
    ));
    let empty_value = BTreeMap::from([("a".to_owned(), String::new())]);
    assert!(matches!(
        client
            .update_token(UpdateToken::new("apit_1").custom_claims(empty_value))
            .await,
        Err(ScalekitError::Limit(LimitError::BadClaimValue(_)))
    ));
    assert!(matches!(
        client.invalidate_token("").await,
        Err(ScalekitError::Limit(LimitError::MissingToken))
    ));
    // Nothing reached the server, not even the token endpoint.
    for op in [Op::Token, Op::Create, Op::List, Op::Update, Op::Invalidate] {
        assert_eq!(fake.count(op), 0, "{op:?}");
    }
}

#[tokio::test]
async fn list_pages_filters_and_empty_cursors() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    for i in 0..5 {
        let mut request = CreateToken::new("org_1").claim("n", i.to_string());
        if i < 2 {
            request = request.user("usr_1");
        }
        client.create_token(request).await.unwrap();
    }
    client
        .create_token(CreateToken::new("org_2"))
        .await
        .unwrap();

    let first = client
        .list_tokens(&ListTokens::new("org_1").page_size(2))
        .await
        .unwrap();
    assert_eq!(first.tokens.len(), 2);
    assert_eq!(first.total_count, 5);
    assert_eq!(first.prev_page_token, None); // "" on the wire
    let next = first.next_page_token.clone().expect("a second page");
    let second = client
        .list_tokens(&ListTokens::new("org_1").page_size(2).page_token(next))
        .await
        .unwrap();
    assert_ne!(first.tokens[0].token_id(), second.tokens[0].token_id());
    assert!(second.prev_page_token.is_some());

    let all = client.list_tokens(&ListTokens::new("org_1")).await.unwrap();
    assert_eq!(all.tokens.len(), 5);
    assert_eq!(all.next_page_token, None);
    let users = client
        .list_tokens(&ListTokens::new("org_1").user("usr_1"))
        .await
        .unwrap();
    assert_eq!(users.total_count, 2);
    assert!(users.tokens.iter().all(|t| t.user_id() == Some("usr_1")));
}

#[tokio::test]
async fn list_all_walks_every_page() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let mut ids = Vec::new();
    for _ in 0..65 {
        ids.push(
            fake.tokens()
                .create(CreateToken::new("org_1"))
                .unwrap()
                .token_id,
        );
    }
    let listed = client.list_all_tokens("org_1", None).await.unwrap();
    let mut listed_ids: Vec<_> = listed
        .into_iter()
        .map(|t| t.token_id().to_owned())
        .collect();
    listed_ids.sort();
    ids.sort();
    assert_eq!(listed_ids, ids);
    assert_eq!(fake.count(Op::List), 3); // 30 + 30 + 5
    assert!(
        client
            .list_all_tokens("org_1", Some("usr_x"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn list_all_refuses_a_looping_server() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    fake.set_fault(
        Op::List,
        Some(Fault::json(
            200,
            json!({"tokens": [], "total_count": 1, "next_page_token": "again", "prev_page_token": ""}),
        )),
    );
    let error = client.list_all_tokens("org_1", None).await.unwrap_err();
    assert!(matches!(error, ScalekitError::Decode(_)), "{error:?}");
    assert_eq!(fake.count(Op::List), 2);
}

#[tokio::test]
async fn update_replaces_claims_and_clears_description() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let created = client
        .create_token(CreateToken::new("org_1").claim("a", "1").description("old"))
        .await
        .unwrap();
    let recorder = Recorder::new();
    client.key_events().subscribe(recorder.clone());
    let claims = BTreeMap::from([("b".to_owned(), "2".to_owned())]);
    let info = client
        .update_token(UpdateToken::new(&created.token_id).custom_claims(claims))
        .await
        .unwrap();
    assert_eq!(info.claim("a"), None);
    assert_eq!(info.claim("b"), Some("2"));
    assert_eq!(info.description(), Some("old"));
    // By key this time; "" clears the description.
    let info = client
        .update_token(UpdateToken::new(created.key.expose_secret()).description(""))
        .await
        .unwrap();
    assert_eq!(info.description(), None);
    assert_eq!(info.claim("b"), Some("2"));
    let error = client
        .update_token(UpdateToken::new(unknown_key()).description("x"))
        .await
        .unwrap_err();
    assert_eq!(error, ScalekitError::NotFound);
    // Each successful update, by id or by key, is published by id (caches forget the old
    // facts); the failed one is not.
    let updated = KeyEvent::Updated {
        token_id: created.token_id.clone(),
    };
    assert_eq!(recorder.events(), vec![updated.clone(), updated]);
}

#[tokio::test]
async fn invalidate_by_key_and_id_is_idempotent_and_published() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let recorder = Recorder::new();
    let by_key = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();
    let by_id = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();
    client.key_events().subscribe(recorder.clone());

    client
        .invalidate_token(by_key.key.expose_secret())
        .await
        .unwrap();
    client.invalidate_token(&by_id.token_id).await.unwrap();
    assert_eq!(
        recorder.events(),
        vec![
            // Resolved by a validate call before the invalidate: other instances know the
            // key by id only.
            KeyEvent::Revoked {
                token_id: Some(by_key.token_id.clone()),
                fingerprint: Some(Fingerprint::of(by_key.key.expose_secret()))
            },
            KeyEvent::Revoked {
                token_id: Some(by_id.token_id.clone()),
                fingerprint: None
            },
        ]
    );
    for token in [by_key.key.expose_secret(), by_id.token_id.as_str()] {
        assert_eq!(
            client.validate_token(token).await.unwrap_err(),
            ScalekitError::NotFound
        );
        // Again: still success.
        client.invalidate_token(token).await.unwrap();
    }
    // Unknown: the fake answers 404, which is success too.
    client
        .invalidate_token("apit_99999999999999999")
        .await
        .unwrap();
    client.invalidate_token(&unknown_key()).await.unwrap();
    assert_eq!(fake.count(Op::Invalidate), 6);
    assert_eq!(recorder.events().len(), 6);
}

#[tokio::test]
async fn failed_invalidate_publishes_nothing() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let recorder = Recorder::new();
    client.key_events().subscribe(recorder.clone());
    fake.fail_next(Op::Invalidate, Fault::rpc(500, 13, "internal"));
    assert_eq!(
        client.invalidate_token("apit_1").await.unwrap_err(),
        ScalekitError::Upstream { status: 500 }
    );
    assert!(recorder.events().is_empty());
}

/// Regression: a proxy's HTML 404 (or a wrong URL's) was read as Scalekit's "not found", so
/// an invalidate "succeeded" (the CLI printed "revoked", events went out) while the key lived.
#[tokio::test]
async fn invalidate_over_a_proxys_404_page_is_an_error() {
    use axum_api_key::keys::{KeyStore, KeyStoreError};
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let created = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();
    let recorder = Recorder::new();
    client.key_events().subscribe(recorder.clone());
    for fault in [Fault::html(404), Fault::empty(404)] {
        fake.set_fault(Op::Invalidate, Some(fault.clone()));
        for token in [created.token_id.as_str(), created.key.expose_secret()] {
            let error = KeyStore::invalidate(&client, token).await.unwrap_err();
            assert!(
                matches!(error, KeyStoreError::Unavailable { .. }),
                "{fault:?}: {error:?}"
            );
            assert_hides(&error, created.key.expose_secret());
            assert_eq!(
                client.invalidate_token(token).await.unwrap_err(),
                ScalekitError::Upstream { status: 404 }
            );
        }
    }
    assert!(recorder.events().is_empty(), "no revocation was announced");
    fake.set_fault(Op::Invalidate, None);
    // The key lives on; Scalekit's own 404 is still "already gone", i.e. success.
    client.validate_token(&created.token_id).await.unwrap();
    fake.fail_next(Op::Invalidate, Fault::rpc(404, 5, "token not found"));
    KeyStore::invalidate(&client, &created.token_id)
        .await
        .unwrap();
}

/// Regression: `http://` was accepted for any host, so a mistyped URL sent the client
/// secret, the access tokens and every API key in the clear.
#[test]
fn plaintext_http_is_for_loopback_only() {
    use axum_api_key::scalekit::ScalekitClient;
    let build = |url: &str| ScalekitClient::builder(url, "skc_1", "secret").build();
    for url in [
        "http://api.example.com",
        "http://acme.scalekit.dev/",
        "http://10.0.0.1:8080",
        "http://[2001:db8::1]",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ] {
        let error = build(url).unwrap_err();
        assert!(
            matches!(&error, ScalekitError::Config(message) if message.contains("loopback")),
            "{url}: {error:?}"
        );
    }
    for url in [
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://[::1]:8080",
        "http://localhost:1",
        "http://LOCALHOST",
        "https://api.example.com",
        "https://10.0.0.1:8443",
    ] {
        assert!(build(url).is_ok(), "{url}");
    }
}

#[tokio::test]
async fn tolerant_decoding_of_camel_case_and_200_create() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    fake.fail_next(
        Op::Validate,
        Fault::json(
            200,
            json!({"tokenInfo": {"tokenId": "apit_5", "organizationId": "org_5", "userId": "usr_5",
                "customClaims": {"k": "v"}, "roles": null, "createdAt": "2026-03-21T05:55:03.416772Z",
                "expiry": "2099-01-01T00:00:00Z", "somethingNew": [1, 2]}}),
        ),
    );
    let info = client.validate_token(&unknown_key()).await.unwrap();
    assert_eq!(info.token_id(), "apit_5");
    assert_eq!(info.user_id(), Some("usr_5"));
    assert_eq!(info.claim("k"), Some("v"));
    assert_eq!(info.created_at().unwrap().microsecond(), 416_772);

    // Create answered with 200 rather than the fake's usual 201, without token_info.
    let key = unknown_key();
    fake.fail_next(
        Op::Create,
        Fault::json(200, json!({"token": key, "token_id": "apit_77"})),
    );
    let created = client
        .create_token(CreateToken::new("org_7").claim("x", "y"))
        .await
        .unwrap();
    assert_eq!(created.key.expose_secret(), key);
    assert_eq!(created.token_id, "apit_77");
    assert_eq!(created.info.organization_id(), "org_7");
    assert_eq!(created.info.claim("x"), Some("y"));
}

#[tokio::test]
async fn clones_share_the_access_token() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let clone = client.clone();
    client.validate_token(&unknown_key()).await.unwrap_err();
    clone.validate_token(&unknown_key()).await.unwrap_err();
    assert_eq!(fake.count(Op::Token), 1);
}
