//! The client-credentials access token: single flight, proactive refresh, refresh-and-retry
//! on 401, the forced-refresh rate limit, and the headers sent.

mod common;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use axum_api_key::scalekit::{ScalekitClient, ScalekitError};
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::InvalidReason;
use axum_api_key::{ApiKey, TokenInfo, ValidateError, Validator};
use common::unknown_key;
use serde_json::{Value, json};

/// A key minted for `org_1` in the fake's store.
fn org_key(fake: &FakeScalekit) -> axum_api_key::keys::CreatedToken {
    fake.tokens()
        .create(axum_api_key::keys::CreateToken::new("org_1"))
        .unwrap()
}

/// Validates `key` from `n` tasks at once; every one must succeed.
async fn validate_concurrently(client: &ScalekitClient, key: &str, n: usize) -> Vec<TokenInfo> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            let key = key.to_owned();
            tokio::spawn(async move { client.validate_token(&key).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_calls_fetch_one_access_token() {
    let fake = FakeScalekit::start().await;
    let created = org_key(&fake);
    let client = fake.client();
    let key = created.key.expose_secret().to_owned();
    for info in validate_concurrently(&client, &key, 50).await {
        assert_eq!(info.token_id(), created.token_id);
    }
    assert_eq!(fake.count(Op::Token), 1);
    assert_eq!(fake.count(Op::Validate), 50);
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_without_failing_the_call() {
    let fake = FakeScalekit::start().await;
    let created = org_key(&fake);
    let client = fake.client();
    client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    fake.expire_access_tokens();
    let info = client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.token_id(), created.token_id);
    assert_eq!(fake.count(Op::Token), 2);
    assert_eq!(fake.count(Op::Validate), 3); // ok, 401, retried ok
    // The admin calls recover the same way (a fresh client: forced refreshes of one client
    // are rate-limited, see below).
    let admin = fake.client();
    admin
        .list_tokens(&axum_api_key::keys::ListTokens::new("org_1"))
        .await
        .unwrap();
    fake.expire_access_tokens();
    admin
        .list_tokens(&axum_api_key::keys::ListTokens::new("org_1"))
        .await
        .unwrap();
    assert_eq!(fake.count(Op::Token), 4);
}

#[tokio::test]
async fn a_second_forced_refresh_waits_for_the_rate_limit_window() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    client.validate_token(&unknown_key()).await.unwrap_err();
    fake.expire_access_tokens();
    client.validate_token(&unknown_key()).await.unwrap_err(); // refreshed: NotFound
    fake.expire_access_tokens();
    // Within 5 s of the last forced refresh: no new fetch, the 401 stands.
    assert_eq!(
        client.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::Unauthorized
    );
    assert_eq!(fake.count(Op::Token), 2);
    // clear_access_token() is the manual way out (after rotating the secret, say).
    client.clear_access_token();
    assert_eq!(
        client.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::NotFound
    );
    assert_eq!(fake.count(Op::Token), 3);
}

#[tokio::test]
async fn access_tokens_are_refreshed_before_they_expire() {
    // Lifetime 2 s: renewed after 1 s (half the lifetime, as it is under two minutes).
    let fake = FakeScalekit::builder()
        .access_token_lifetime(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    client.validate_token(&unknown_key()).await.unwrap_err();
    client.validate_token(&unknown_key()).await.unwrap_err();
    assert_eq!(fake.count(Op::Token), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    client.validate_token(&unknown_key()).await.unwrap_err();
    // A new token was fetched proactively (in the background): no validate request was wasted
    // on a 401.
    eventually("the renewal", || fake.count(Op::Token) == 2).await;
    assert_eq!(fake.count(Op::Validate), 3);
}

#[tokio::test]
async fn a_failed_renewal_keeps_using_the_still_valid_token() {
    let fake = FakeScalekit::builder()
        .access_token_lifetime(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    client.validate_token(&unknown_key()).await.unwrap_err();
    // Due for renewal after 1.5 s, valid on the server for 3 s.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    fake.set_fault(Op::Token, Some(Fault::html(503)));
    assert_eq!(
        client.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::NotFound
    );
    eventually("the renewal attempt", || fake.count(Op::Token) == 2).await;
    assert_eq!(fake.count(Op::Validate), 2);
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Regression: while the access token was due for renewal but still valid, a token endpoint
/// that hangs made every validation wait for it and fail at the validate deadline (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_token_endpoint_does_not_fail_validations_while_the_token_is_valid() {
    let fake = FakeScalekit::builder()
        .access_token_lifetime(Duration::from_secs(6))
        .start()
        .await
        .unwrap();
    let created = org_key(&fake);
    let key = created.key.expose_secret().to_owned();
    let client = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    client.validate_token(&key).await.unwrap();
    // Due for renewal after 3 s, accepted by the server for 6 s; the endpoint now hangs.
    fake.set_fault(Op::Token, Some(Fault::Delay(Duration::from_secs(30))));
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let validations: Vec<_> = (0..10)
        .map(|_| {
            let (client, key) = (client.clone(), key.clone());
            tokio::spawn(async move { client.validate_token(&key).await })
        })
        .collect();
    for validation in validations {
        let info = validation
            .await
            .unwrap()
            .expect("the still-valid token was not used");
        assert_eq!(info.token_id(), created.token_id);
    }
    // One renewal went out, in the background; it is still hanging, and nobody waited for it.
    eventually("the renewal attempt", || fake.count(Op::Token) == 2).await;
    client.validate_token(&key).await.unwrap();
    assert_eq!(fake.count(Op::Token), 2, "one renewal at a time");
}

/// Regression: a forced refresh (after a 401) whose caller hit its deadline was cancelled with
/// it and recorded nothing, so later 401s within the 5 s rate-limit window read as a failed
/// refresh (503) although the token endpoint was merely slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_forced_refresh_completes_for_the_next_callers() {
    let fake = FakeScalekit::start().await;
    let created = org_key(&fake);
    let key = created.key.expose_secret().to_owned();
    let client = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    client.validate_token(&key).await.unwrap();

    fake.expire_access_tokens(); // the next call earns a 401 and forces a refresh...
    fake.set_fault(Op::Token, Some(Fault::Delay(Duration::from_millis(900)))); // ...a slow one
    assert_eq!(
        client.validate_token(&key).await.unwrap_err(),
        ScalekitError::Timeout
    );
    fake.set_fault(Op::Token, None);
    // The refresh finished on its own after the caller gave up; the next callers use its token.
    eventually("the forced refresh", || fake.count(Op::Token) == 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let info = client
        .validate_token(&key)
        .await
        .expect("a 401 read as a failed refresh");
    assert_eq!(info.token_id(), created.token_id);
    assert_eq!(fake.count(Op::Token), 2);
}

#[tokio::test]
async fn one_401_is_cured_by_a_refresh() {
    let fake = FakeScalekit::start().await;
    let created = org_key(&fake);
    let client = fake.client();
    fake.fail_next(Op::Validate, Fault::Unauthorized);
    assert!(
        client
            .validate_token(created.key.expose_secret())
            .await
            .is_ok()
    );
    assert_eq!(fake.count(Op::Token), 2);
    assert_eq!(fake.count(Op::Validate), 2);
}

#[tokio::test]
async fn a_persisting_401_is_unauthorized_then_an_invalid_key() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    fake.set_fault(Op::Validate, Some(Fault::Unauthorized));
    assert_eq!(
        client.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::Unauthorized
    );
    assert_eq!(fake.count(Op::Token), 2);
    assert_eq!(fake.count(Op::Validate), 2); // one retry, no more
    assert_eq!(
        client
            .validate(&ApiKey::new(unknown_key()))
            .await
            .unwrap_err(),
        ValidateError::Invalid(InvalidReason::Rejected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_401s_cannot_cause_a_refresh_storm() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    fake.set_fault(Op::Validate, Some(Fault::Unauthorized));
    for _ in 0..20 {
        client.validate_token(&unknown_key()).await.unwrap_err();
    }
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.validate_token(&unknown_key()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap_err(),
            ScalekitError::Unauthorized
        );
    }
    // The first fetch, then one forced refresh: the rest were rate-limited.
    assert_eq!(fake.count(Op::Token), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_not_hammered() {
    let fake = FakeScalekit::start().await;
    fake.set_fault(Op::Token, Some(Fault::html(503)));
    let client = fake.client();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.validate_token(&unknown_key()).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(ScalekitError::UpstreamAuth {
                status: Some(503),
                ..
            })
        ));
    }
    // Waiters share the failure of the fetch they waited for.
    assert!(fake.count(Op::Token) <= 2, "{}", fake.count(Op::Token));
    // Once the endpoint is back (and the failure forgotten), calls succeed again.
    fake.set_fault(Op::Token, None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        client.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::NotFound
    );
}

/// Regression: an `expires_in` of 0 (or `"0"`, or negative) made every token stale on
/// arrival, so each waiting caller ran its own `/oauth/token` fetch, one after another, and
/// every later call fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonsense_expires_in_does_not_cost_a_fetch_per_call() {
    for announced in [json!(0), json!("0"), json!(-5), json!("-5"), json!(0.4)] {
        let fake = FakeScalekit::start().await;
        fake.announce_expires_in(Some(announced.clone()));
        let created = org_key(&fake);
        let client = fake.client();
        let key = created.key.expose_secret().to_owned();
        validate_concurrently(&client, &key, 20).await;
        for _ in 0..5 {
            client.validate_token(&key).await.unwrap();
        }
        assert_eq!(fake.count(Op::Token), 1, "expires_in {announced}");
        assert_eq!(fake.count(Op::Validate), 25);
    }
}

/// Regression: the token endpoint's `error` and `error_description` went into errors and logs
/// unscrubbed, so an endpoint (or a proxy) echoing the form put the client secret there.
#[tokio::test]
async fn an_echoed_client_secret_never_reaches_errors_or_logs() {
    support::log_capture::capture_everything();
    let secret = "sk-echo-Vq3ZmR8x";
    let fake = FakeScalekit::builder()
        .credentials("skc_echo", secret)
        .start()
        .await
        .unwrap();
    // Another credential-like value, quoted by the proxy: redacted as key-like.
    let other = "Zb7Kp2Qw9Rt4Yx6Mn8Lc3Vd5Fg1Hj0Sa2Ee4Uu6Ii8";
    for status in [400, 401, 502] {
        fake.set_fault(
            Op::Token,
            Some(Fault::json(
                status,
                json!({
                    "error": format!("invalid_client ({secret})"),
                    "error_description": format!(
                        "bad form: grant_type=client_credentials&client_id=skc_echo&client_secret={secret} ({other})"
                    ),
                }),
            )),
        );
        let client = fake.client();
        let error = client.validate_token(&unknown_key()).await.unwrap_err();
        match &error {
            ScalekitError::UpstreamAuth { message, .. } => {
                assert!(message.contains("client_secret=[redacted]"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        common::assert_hides(&error, secret);
        common::assert_hides(&error, other);
        let verdict = client
            .validate(&ApiKey::new(unknown_key()))
            .await
            .unwrap_err();
        common::assert_hides(&verdict, secret);
        common::assert_hides(&verdict, other);
    }
    let logs = support::log_capture::captured();
    assert!(logs.contains("invalid_client"), "the failure was logged");
    assert!(!logs.contains(secret), "the client secret was logged");
    assert!(!logs.contains(other), "a key-like value was logged");
}

/// What the recording server saw.
#[derive(Default)]
struct Seen {
    token_headers: Option<HeaderMap>,
    token_form: Vec<(String, String)>,
    api_headers: Option<HeaderMap>,
    api_body: Option<Value>,
}

#[tokio::test]
async fn headers_bodies_and_a_string_expires_in() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route(
            "/oauth/token",
            post(
                |State(seen): State<Arc<Mutex<Seen>>>,
                 headers: HeaderMap,
                 Form(form): Form<Vec<(String, String)>>| async move {
                    let mut seen = seen.lock().unwrap();
                    seen.token_headers = Some(headers);
                    seen.token_form = form;
                    // Java models expires_in as a string.
                    Json(json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": "86399"}))
                },
            ),
        )
        .route(
            "/api/v1/tokens:validate",
            post(
                |State(seen): State<Arc<Mutex<Seen>>>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    let mut seen = seen.lock().unwrap();
                    seen.api_headers = Some(headers);
                    seen.api_body = Some(body);
                    (
                        StatusCode::OK,
                        Json(json!({"token_info": {"token_id": "apit_1", "organization_id": "org_1"}})),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap()); // trailing slash on purpose
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = ScalekitClient::builder(url, "skc_42", "s3cret")
        .build()
        .unwrap();
    let key = unknown_key();
    client.validate_token(&key).await.unwrap();
    client.validate_token(&key).await.unwrap();

    let seen = seen.lock().unwrap();
    let form = &seen.token_form;
    assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
    assert!(form.contains(&("client_id".into(), "skc_42".into())));
    assert!(form.contains(&("client_secret".into(), "s3cret".into())));
    let token_headers = seen.token_headers.as_ref().unwrap();
    assert!(token_headers.get("authorization").is_none());
    assert_eq!(
        token_headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );

    let api = seen.api_headers.as_ref().unwrap();
    assert_eq!(api.get("authorization").unwrap(), "Bearer at-1");
    assert_eq!(api.get("accept").unwrap(), "application/json");
    assert_eq!(api.get("content-type").unwrap(), "application/json");
    assert_eq!(api.get("x-api-version").unwrap(), "20260716");
    assert_eq!(
        api.get("user-agent").unwrap(),
        concat!("axum-api-key/", env!("CARGO_PKG_VERSION"), " (rust)")
    );
    assert_eq!(seen.api_body, Some(json!({"token": key})));
}

#[tokio::test]
async fn api_version_is_configurable_and_the_secret_never_printed() {
    let fake = FakeScalekit::start().await;
    let client = fake
        .client_builder()
        .api_version("20260513")
        .build()
        .unwrap();
    let printed = format!("{client:?}");
    assert!(printed.contains("20260513"));
    assert!(!printed.contains(fake.client_secret()));
    client.validate_token(&unknown_key()).await.unwrap_err();
    // The access token is not printed either.
    assert!(!format!("{client:?}").contains("fake_at_"));
}
