//! The cache in front of the Scalekit client, against the fake Scalekit over loopback HTTP,
//! behind an Axum app on 127.0.0.1: single flight, revoke-wins, and the upstream budget under a
//! flood of garbage keys, counted at the fake.

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::{ApiKeyLayer, OrgScope};
use reqwest::StatusCode;
use support::{serve, unknown_key};

async fn app(cache: CachedValidator<ScalekitClient>) -> String {
    let router = Router::new()
        .route(
            "/org",
            get(|scope: OrgScope| async move { scope.organization_id }),
        )
        .layer(ApiKeyLayer::new(cache));
    serve(router).await
}

async fn status(http: &reqwest::Client, base: &str, key: &str) -> StatusCode {
    http.get(format!("{base}/org"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_with_one_fresh_key_make_one_validate_call() {
    let fake = FakeScalekit::start().await;
    let created = fake.tokens().create(CreateToken::new("org_sf")).unwrap();
    let base = app(CachedValidator::new(fake.client())).await;
    // Slow the upstream down so that every request arrives while the first is in flight.
    fake.set_fault(Op::Validate, Some(Fault::Delay(Duration::from_millis(300))));
    let http = reqwest::Client::new();
    let key = created.key.expose_secret().to_owned();
    let requests = (0..200).map(|_| status(&http, &base, &key));
    let statuses = futures_util::future::join_all(requests).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(fake.count(Op::Validate), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_a_validation_in_flight_wins() {
    let fake = FakeScalekit::start().await;
    let created = fake.tokens().create(CreateToken::new("org_race")).unwrap();
    let cache = CachedValidator::new(fake.client());
    let base = app(cache.clone()).await;
    fake.set_fault(Op::Validate, Some(Fault::Delay(Duration::from_millis(500))));
    let http = reqwest::Client::new();
    let key = created.key.expose_secret().to_owned();
    let in_flight = tokio::spawn({
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move { status(&http, &base, &key).await }
    });
    // Wait until the validation has reached the fake, then revoke through this instance only:
    // the fake still says "valid", so only the cache's revoke-wins rule can refuse the key.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.count(Op::Validate) == 0 {
        assert!(
            Instant::now() < deadline,
            "the validation never reached the fake"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cache.revoke_token_id(&created.token_id);
    assert_eq!(in_flight.await.unwrap(), StatusCode::UNAUTHORIZED);
    fake.set_fault(Op::Validate, None);
    assert_eq!(status(&http, &base, &key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fake.count(Op::Validate),
        1,
        "the revoked key must not go upstream again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_through_the_client_stops_a_cached_key_at_once() {
    let fake = FakeScalekit::start().await;
    let created = fake.tokens().create(CreateToken::new("org_rev")).unwrap();
    let client = fake.client();
    let base = app(CachedValidator::new(client.clone())).await;
    let http = reqwest::Client::new();
    let key = created.key.expose_secret();
    assert_eq!(status(&http, &base, key).await, StatusCode::OK);
    assert_eq!(status(&http, &base, key).await, StatusCode::OK);
    assert_eq!(
        fake.count(Op::Validate),
        1,
        "the second request is a cache hit"
    );
    client.invalidate_token(&created.token_id).await.unwrap();
    assert_eq!(status(&http, &base, key).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_keys_is_bounded_by_the_budget_and_cached_keys_keep_flowing() {
    const GARBAGE: u64 = 2_000;
    const RATE: u32 = 100;
    let fake = FakeScalekit::start().await;
    let created = fake.tokens().create(CreateToken::new("org_flood")).unwrap();
    let cache = CachedValidator::builder(fake.client())
        .max_in_flight(4)
        .max_upstream_rate(RATE)
        .build();
    let base = app(cache.clone()).await;
    let http = reqwest::Client::new();
    let valid = created.key.expose_secret().to_owned();
    assert_eq!(status(&http, &base, &valid).await, StatusCode::OK);
    fake.reset_counts();
    fake.set_fault(Op::Validate, Some(Fault::Delay(Duration::from_millis(20))));

    let started = Instant::now();
    let flood = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for chunk in (0..GARBAGE).collect::<Vec<_>>().chunks(100) {
                let requests = chunk.iter().map(|&n| {
                    let key = unknown_key(1_000_000 + n);
                    let (http, base) = (http.clone(), base.clone());
                    async move { status(&http, &base, &key).await }
                });
                statuses.extend(futures_util::future::join_all(requests).await);
            }
            statuses
        })
    };
    let mut valid_answers = Vec::new();
    while !flood.is_finished() {
        valid_answers.push(status(&http, &base, &valid).await);
    }
    let statuses = flood.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    assert!(!valid_answers.is_empty());
    assert!(
        valid_answers.iter().all(|s| *s == StatusCode::OK),
        "cached key refused during the flood"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "the budget never pushed back"
    );
    let calls = fake.count(Op::Validate) as f64;
    let bound = f64::from(RATE) * (elapsed + 1.0);
    assert!(
        calls <= bound,
        "{calls} upstream calls in {elapsed:.1}s exceed the budget ({bound:.0})"
    );
    assert!(cache.stats().budget_rejections > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_the_client_reaches_its_cache_before_the_ttl() {
    use axum_api_key::ApiKey;
    use axum_api_key::Validator;
    use axum_api_key::keys::UpdateToken;

    let fake = FakeScalekit::start().await;
    let created = fake
        .tokens()
        .create(CreateToken::new("org_upd").claim("plan", "free"))
        .unwrap();
    let client = fake.client();
    let cache = CachedValidator::builder(client.clone())
        .ttl(Duration::from_secs(3600))
        .build();
    let key = ApiKey::new(created.key.expose_secret());
    let plan = |auth: axum_api_key::Authenticated| auth.info().claim("plan").map(str::to_owned);
    assert_eq!(
        plan(cache.validate(&key).await.unwrap()).as_deref(),
        Some("free")
    );
    assert_eq!(
        plan(cache.validate(&key).await.unwrap()).as_deref(),
        Some("free")
    );
    assert_eq!(fake.count(Op::Validate), 1, "the second lookup is a hit");

    let claims = [("plan".to_owned(), "pro".to_owned())].into();
    client
        .update_token(UpdateToken::new(&created.token_id).custom_claims(claims))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if plan(cache.validate(&key).await.unwrap()).as_deref() == Some("pro") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache kept serving the old claims"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        fake.count(Op::Validate),
        2,
        "one validate call for the new facts"
    );
}
