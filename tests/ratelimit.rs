//! Rate limits over HTTP: a real Axum server on 127.0.0.1, keys from `InMemoryTokens`, the
//! `RateLimitLayer` inside the `ApiKeyLayer`.

mod support;

use std::time::Duration;

use axum::response::IntoResponse;
use axum::{Router, routing::get};
use axum_api_key::keys::CreateToken;
use axum_api_key::ratelimit::{LimitBy, RateLimitInfo, RateLimitLayer};
use axum_api_key::{ApiKeyLayer, InMemoryTokens};
use reqwest::StatusCode;

fn key(tokens: &InMemoryTokens, create: CreateToken) -> String {
    tokens
        .create(create)
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

async fn remaining(info: RateLimitInfo) -> String {
    info.remaining.to_string()
}

async fn app(tokens: &InMemoryTokens, limit: RateLimitLayer) -> String {
    let app = Router::new()
        .route("/", get(remaining))
        .layer(limit)
        .layer(ApiKeyLayer::new(tokens.clone()));
    support::serve(app).await
}

async fn get_with(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client
        .get(format!("{base}/"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Sends `n` requests; returns how many got 200 and how many 429 (nothing else is allowed).
async fn burst(client: &reqwest::Client, base: &str, key: &str, n: usize) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        match get_with(client, base, key).await.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    (ok, limited)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_key_gets_its_quota_then_429_while_another_key_is_unaffected() {
    let tokens = InMemoryTokens::new();
    let first = key(&tokens, CreateToken::new("org_a"));
    let second = key(&tokens, CreateToken::new("org_a"));
    let base = app(&tokens, RateLimitLayer::new("5/h".parse().unwrap())).await;
    let client = reqwest::Client::new();

    assert_eq!(burst(&client, &base, &first, 8).await, (5, 3));
    assert_eq!(burst(&client, &base, &second, 5).await, (5, 0));
}

#[tokio::test]
async fn headers_on_200_and_429_follow_the_draft() {
    let tokens = InMemoryTokens::new();
    let key = key(&tokens, CreateToken::new("org_a"));
    let base = app(
        &tokens,
        RateLimitLayer::new("3/min".parse().unwrap()).name("api"),
    )
    .await;
    let client = reqwest::Client::new();

    let first = get_with(&client, &base, &key).await;
    assert_eq!(first.status(), StatusCode::OK);
    // On a success, the quota state only (the policy comes with a 429, or on request).
    assert!(first.headers().get("ratelimit-policy").is_none());
    // One token used: it comes back in 20 s.
    assert_eq!(header(&first, "ratelimit"), "\"api\";r=2;t=20");
    assert!(first.headers().get("retry-after").is_none());
    assert_eq!(first.text().await.unwrap(), "2");

    let second = get_with(&client, &base, &key).await;
    assert_eq!(header(&second, "ratelimit"), "\"api\";r=1;t=40");
    get_with(&client, &base, &key).await;

    let refused = get_with(&client, &base, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((19..=20).contains(&retry), "{retry}");
    assert_eq!(header(&refused, "ratelimit-policy"), "\"api\";q=3;w=60");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"api\";r=0;t={retry}")
    );
    assert_eq!(header(&refused, "content-type"), "application/json");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
}

#[tokio::test]
async fn headers_on_success_can_be_turned_off() {
    let tokens = InMemoryTokens::new();
    let key = key(&tokens, CreateToken::new("org_a"));
    let limit = RateLimitLayer::new("1/h".parse().unwrap()).headers_on_success(false);
    let base = app(&tokens, limit).await;
    let client = reqwest::Client::new();
    let ok = get_with(&client, &base, &key).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("ratelimit").is_none());
    let refused = get_with(&client, &base, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("ratelimit").is_some());
}

#[tokio::test]
async fn a_claim_overrides_the_route_policy_and_a_malformed_one_does_not() {
    let tokens = InMemoryTokens::new();
    let generous = key(
        &tokens,
        CreateToken::new("org_a").claim("rate_limit", "6/h"),
    );
    let malformed = key(
        &tokens,
        CreateToken::new("org_a").claim("rate_limit", "lots"),
    );
    let renamed = key(&tokens, CreateToken::new("org_a").claim("quota", "1/h"));
    let base = app(&tokens, RateLimitLayer::new("2/h".parse().unwrap())).await;
    let client = reqwest::Client::new();

    assert_eq!(burst(&client, &base, &generous, 8).await, (6, 2));
    let response = get_with(&client, &base, &generous).await;
    assert_eq!(
        header(&response, "ratelimit-policy"),
        "\"default\";q=6;w=3600"
    );
    assert_eq!(burst(&client, &base, &malformed, 4).await, (2, 2));

    let named = app(
        &tokens,
        RateLimitLayer::new("2/h".parse().unwrap()).claim("quota"),
    )
    .await;
    assert_eq!(burst(&client, &named, &renamed, 3).await, (1, 2));
    let ignoring = app(
        &tokens,
        RateLimitLayer::new("2/h".parse().unwrap()).no_claim(),
    )
    .await;
    assert_eq!(burst(&client, &ignoring, &generous, 4).await, (2, 2));
}

#[tokio::test]
async fn a_policy_fn_wins_over_the_claim() {
    let tokens = InMemoryTokens::new();
    let key = key(
        &tokens,
        CreateToken::new("org_vip").claim("rate_limit", "1/h"),
    );
    let limit = RateLimitLayer::new("1/h".parse().unwrap())
        .policy_fn(|info| (info.organization_id() == "org_vip").then(|| "4/h".parse().unwrap()));
    let base = app(&tokens, limit).await;
    assert_eq!(burst(&reqwest::Client::new(), &base, &key, 6).await, (4, 2));
}

#[tokio::test]
async fn limits_by_user_and_by_organization_share_one_bucket() {
    let tokens = InMemoryTokens::new();
    let user_a1 = key(&tokens, CreateToken::new("org_1").user("usr_a"));
    let user_a2 = key(&tokens, CreateToken::new("org_1").user("usr_a"));
    let user_b = key(&tokens, CreateToken::new("org_1").user("usr_b"));
    let other_org = key(&tokens, CreateToken::new("org_2").user("usr_c"));
    let client = reqwest::Client::new();

    let by_user = app(
        &tokens,
        RateLimitLayer::new("3/h".parse().unwrap()).by(LimitBy::User),
    )
    .await;
    assert_eq!(burst(&client, &by_user, &user_a1, 2).await, (2, 0));
    assert_eq!(burst(&client, &by_user, &user_a2, 3).await, (1, 2));
    assert_eq!(burst(&client, &by_user, &user_b, 3).await, (3, 0));

    let by_org = app(
        &tokens,
        RateLimitLayer::new("4/h".parse().unwrap()).by(LimitBy::Organization),
    )
    .await;
    assert_eq!(burst(&client, &by_org, &user_a1, 2).await, (2, 0));
    assert_eq!(burst(&client, &by_org, &user_b, 4).await, (2, 2));
    assert_eq!(burst(&client, &by_org, &other_org, 4).await, (4, 0));
}

/// Keys sharing a user's or an organization's bucket but carrying different policies (their
/// own `rate_limit` claims) used to swap the shared cell for a fresh one at every change of
/// policy: alternating two such keys was never limited. Each policy now has its own bucket, so
/// the pair gets at most the sum of the two quotas.
#[tokio::test]
async fn alternating_keys_with_different_policies_never_refill_a_shared_bucket() {
    let tokens = InMemoryTokens::new();
    let plain = key(&tokens, CreateToken::new("org_1").user("usr_a"));
    let claimed = key(
        &tokens,
        CreateToken::new("org_1")
            .user("usr_a")
            .claim("rate_limit", "2/h"),
    );
    let client = reqwest::Client::new();
    for by in [LimitBy::User, LimitBy::Organization] {
        let base = app(&tokens, RateLimitLayer::new("3/h".parse().unwrap()).by(by)).await;
        let mut admitted = 0;
        for _ in 0..10 {
            for key in [&plain, &claimed] {
                admitted += burst(&client, &base, key, 1).await.0;
            }
        }
        assert_eq!(admitted, 3 + 2, "{by:?}");
    }
}

/// A user's bucket is per organization: keys minted in one organization for a user id never
/// spend that user's quota in another, and no user id names a key's bucket.
#[tokio::test]
async fn user_buckets_are_per_organization_and_apart_from_key_buckets() {
    let tokens = InMemoryTokens::new();
    let home = key(&tokens, CreateToken::new("org_1").user("usr_a"));
    let elsewhere = key(&tokens, CreateToken::new("org_2").user("usr_a"));
    let org_key = tokens.create(CreateToken::new("org_3")).unwrap();
    // A user-scoped key whose user id is another key's token id.
    let impostor = key(
        &tokens,
        CreateToken::new("org_3").user(org_key.info.token_id()),
    );
    let base = app(
        &tokens,
        RateLimitLayer::new("2/h".parse().unwrap()).by(LimitBy::User),
    )
    .await;
    let client = reqwest::Client::new();

    assert_eq!(burst(&client, &base, &elsewhere, 3).await, (2, 1));
    assert_eq!(burst(&client, &base, &home, 2).await, (2, 0));
    assert_eq!(burst(&client, &base, &impostor, 3).await, (2, 1));
    let org_key = org_key.key.expose_secret().to_owned();
    assert_eq!(burst(&client, &base, &org_key, 2).await, (2, 0));
}

#[tokio::test]
async fn the_429_goes_through_the_auth_layers_renderer() {
    let tokens = InMemoryTokens::new();
    let key = key(&tokens, CreateToken::new("org_a"));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new("1/h".parse().unwrap()))
        .layer(ApiKeyLayer::new(tokens.clone()).on_rejection(|rejection| {
            (
                rejection.kind().status(),
                format!("custom: {}", rejection.kind().error_code()),
            )
                .into_response()
        }));
    let base = support::serve(app).await;
    let client = reqwest::Client::new();
    assert_eq!(
        get_with(&client, &base, &key).await.status(),
        StatusCode::OK
    );
    let refused = get_with(&client, &base, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The hook did not set Retry-After; the layer adds it (and the RateLimit fields).
    assert!(refused.headers().get("retry-after").is_some());
    assert!(refused.headers().get("ratelimit").is_some());
    assert_eq!(refused.text().await.unwrap(), "custom: rate_limited");
}

#[tokio::test]
async fn anonymous_requests_pass_and_a_missing_auth_layer_is_a_500() {
    let tokens = InMemoryTokens::new();
    let optional = Router::new()
        .route(
            "/",
            get(|info: Option<RateLimitInfo>| async move { format!("{info:?}") }),
        )
        .layer(RateLimitLayer::new("1/h".parse().unwrap()))
        .layer(ApiKeyLayer::new(tokens.clone()).optional());
    let base = support::serve(optional).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "None");
    }

    let misplaced = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new("1/h".parse().unwrap()));
    let base = support::serve(misplaced).await;
    let response = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn quota_comes_back_with_time() {
    let tokens = InMemoryTokens::new();
    let key = key(&tokens, CreateToken::new("org_a"));
    let base = app(&tokens, RateLimitLayer::new("4/s".parse().unwrap())).await;
    let client = reqwest::Client::new();
    let (ok, _) = burst(&client, &base, &key, 6).await;
    assert!((4..=5).contains(&ok), "{ok}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        get_with(&client, &base, &key).await.status(),
        StatusCode::OK
    );
}

// The same limits as an option of the auth layer (`ApiKeyLayer::rate_limit`): decided in the
// layer itself, on the spot for a key answered at once and after the await for one that is not.

#[tokio::test]
async fn the_auth_layers_own_limit_counts_each_key_and_writes_the_fields() {
    let tokens = InMemoryTokens::new();
    let first = key(&tokens, CreateToken::new("org_a"));
    let second = key(&tokens, CreateToken::new("org_a"));
    let limit = RateLimitLayer::new("3/min".parse().unwrap())
        .name("api")
        .policy_on_success(true);
    let app = Router::new()
        .route("/", get(remaining))
        .layer(ApiKeyLayer::new(tokens.clone()).rate_limit(limit));
    let base = support::serve(app).await;
    let client = reqwest::Client::new();

    let ok = get_with(&client, &base, &first).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "ratelimit-policy"), "\"api\";q=3;w=60");
    assert_eq!(header(&ok, "ratelimit"), "\"api\";r=2;t=20");
    // The extractor reads the same decision.
    assert_eq!(ok.text().await.unwrap(), "2");
    assert_eq!(burst(&client, &base, &first, 4).await, (2, 2));

    let refused = get_with(&client, &base, &first).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"api\";r=0;t={retry}")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");

    // Another key has its own bucket.
    assert_eq!(burst(&client, &base, &second, 3).await, (3, 0));
}

#[tokio::test]
async fn the_auth_layers_own_limit_applies_after_an_awaited_validation_too() {
    use axum_api_key::validator::InvalidReason;
    use axum_api_key::{Authenticated, TokenInfo, ValidateError, validator_fn};

    // A validator that always needs awaiting: every request takes the asynchronous path.
    let validator = validator_fn(|key: axum_api_key::ApiKey| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if key.expose_secret().starts_with("good") {
            Ok(Authenticated::new(
                TokenInfo::builder(&key.expose_secret()[..20], "org_a").build(),
            ))
        } else {
            Err(ValidateError::Invalid(InvalidReason::Unknown))
        }
    });
    let app = Router::new().route("/", get(remaining)).layer(
        ApiKeyLayer::new(validator)
            .without_failed_key_throttle()
            .rate_limit(RateLimitLayer::new("2/h".parse().unwrap())),
    );
    let base = support::serve(app).await;
    let client = reqwest::Client::new();
    let key = "good-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let ok = get_with(&client, &base, key).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "ratelimit"), "\"default\";r=1;t=1800");
    assert_eq!(ok.text().await.unwrap(), "1");
    assert_eq!(burst(&client, &base, key, 3).await, (1, 2));
    // A refused key is a 401, never a 429: the limit counts authenticated requests only.
    let bad = get_with(&client, &base, "bad-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_auth_layers_own_limit_renders_with_its_hook_and_skips_anonymous_requests() {
    let tokens = InMemoryTokens::new();
    let key = key(&tokens, CreateToken::new("org_a"));
    let layer = ApiKeyLayer::new(tokens.clone())
        .optional()
        .rate_limit(RateLimitLayer::new("1/h".parse().unwrap()))
        .on_rejection(|rejection| {
            (
                rejection.kind().status(),
                format!("custom: {}", rejection.kind().error_code()),
            )
                .into_response()
        });
    let app =
        Router::new()
            .route(
                "/",
                get(|info: Option<RateLimitInfo>| async move {
                    format!("{:?}", info.map(|i| i.remaining))
                }),
            )
            .layer(layer);
    let base = support::serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let anonymous = client.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::OK);
        assert!(anonymous.headers().get("ratelimit").is_none());
        assert_eq!(anonymous.text().await.unwrap(), "None");
    }
    let ok = get_with(&client, &base, &key).await;
    assert_eq!(ok.text().await.unwrap(), "Some(0)");
    let refused = get_with(&client, &base, &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(refused.text().await.unwrap(), "custom: rate_limited");
}
