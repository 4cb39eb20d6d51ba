//! Every error class of `ScalekitClient`, at the client level (`ScalekitError`) and as a
//! validator (`ValidateError`), against `FakeScalekit` faults over real HTTP.

mod common;

use std::time::Duration;

use axum_api_key::scalekit::{ScalekitClient, ScalekitError};
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::InvalidReason;
use axum_api_key::{ApiKey, ValidateError, Validator};
use common::{assert_hides, unknown_key};
use serde_json::json;

/// Validates an unknown key through both faces of the client with `fault` applied to every
/// validate request; returns the two errors and how many validate requests were made.
async fn both(
    fake: &FakeScalekit,
    client: &ScalekitClient,
    fault: Fault,
) -> (ScalekitError, ValidateError, usize) {
    fake.set_fault(Op::Validate, Some(fault));
    fake.reset_counts();
    let key = unknown_key();
    let client_error = client.validate_token(&key).await.unwrap_err();
    assert_hides(&client_error, &key);
    let validate_calls = fake.count(Op::Validate);
    let validator_error = client
        .validate(&ApiKey::new(key.clone()))
        .await
        .unwrap_err();
    assert_hides(&validator_error, &key);
    fake.set_fault(Op::Validate, None);
    (client_error, validator_error, validate_calls)
}

fn is_unavailable(error: &ValidateError) -> bool {
    matches!(error, ValidateError::Unavailable { .. })
}

#[tokio::test]
async fn not_found_is_an_invalid_key() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, calls) = both(&fake, &client, Fault::rpc(404, 5, "token not found")).await;
    assert_eq!(error, ScalekitError::NotFound);
    assert_eq!(verdict, ValidateError::Invalid(InvalidReason::Unknown));
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn bad_request_and_forbidden_are_invalid_keys() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, calls) = both(&fake, &client, Fault::rpc(400, 3, "invalid token")).await;
    assert_eq!(
        error,
        ScalekitError::Rejected {
            status: 400,
            code: Some(3),
            message: "invalid token".into()
        }
    );
    assert_eq!(verdict, ValidateError::Invalid(InvalidReason::Rejected));
    assert_eq!(calls, 1);

    let (error, verdict, _) = both(&fake, &client, Fault::rpc(403, 7, "permission denied")).await;
    assert_eq!(
        error,
        ScalekitError::Rejected {
            status: 403,
            code: Some(7),
            message: "permission denied".into()
        }
    );
    assert!(verdict.is_invalid());
}

#[tokio::test]
async fn a_server_that_echoes_the_key_is_scrubbed() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let key = unknown_key();
    fake.fail_next(
        Op::Validate,
        Fault::rpc(400, 3, &format!("bad token {key}")),
    );
    let error = client.validate_token(&key).await.unwrap_err();
    assert_hides(&error, &key);
    assert!(
        matches!(error, ScalekitError::Rejected { ref message, .. } if message.contains("[redacted]"))
    );
}

#[tokio::test]
async fn rate_limited_is_upstream_rate_limited_with_retry_after_and_not_retried() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, calls) = both(&fake, &client, Fault::rate_limited(7)).await;
    assert_eq!(
        error,
        ScalekitError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // 503 at the layer, with the delay; never covered by stale-if-error.
    assert_eq!(
        verdict,
        ValidateError::UpstreamRateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn internal_error_is_unavailable_and_not_retried() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, calls) = both(&fake, &client, Fault::rpc(500, 13, "internal")).await;
    assert_eq!(error, ScalekitError::Upstream { status: 500 });
    assert!(is_unavailable(&verdict));
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn gateway_errors_with_html_are_retried_once() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    for status in [502, 503, 504] {
        let (error, verdict, calls) = both(&fake, &client, Fault::html(status)).await;
        assert_eq!(error, ScalekitError::Upstream { status });
        assert!(is_unavailable(&verdict));
        assert_eq!(calls, 2, "one quick retry on {status}");
    }
    // A single 503 is absorbed by the retry.
    let created = fake
        .tokens()
        .create(axum_api_key::keys::CreateToken::new("org_1"))
        .unwrap();
    fake.reset_counts();
    fake.fail_next(Op::Validate, Fault::html(503));
    let info = client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.token_id(), created.token_id);
    assert_eq!(fake.count(Op::Validate), 2);
}

/// Regression: a 400/401/403/404 was Scalekit's verdict whatever its body, so a load
/// balancer's, a CDN's, a WAF's or a wrong URL's error page made every key "invalid" (401 at
/// the layer instead of 503). Only a `google.rpc.Status` body with the matching code is.
#[tokio::test]
async fn a_proxys_4xx_page_is_an_outage_never_a_verdict() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    for status in [400, 403, 404] {
        for fault in [
            Fault::html(status),
            Fault::empty(status),
            Fault::json(status, json!({"error": "blocked"})),
        ] {
            let (error, verdict, calls) = both(&fake, &client, fault.clone()).await;
            assert_eq!(error, ScalekitError::Upstream { status }, "{fault:?}");
            assert!(is_unavailable(&verdict), "{fault:?}: {verdict:?}");
            assert_eq!(calls, 1, "{fault:?}: not a transient failure");
        }
    }
    // A code that does not go with the status is no verdict either.
    let (error, verdict, _) = both(&fake, &client, Fault::rpc(404, 13, "x")).await;
    assert_eq!(error, ScalekitError::Upstream { status: 404 });
    assert!(is_unavailable(&verdict));

    // A bare 401: the access token is refreshed and the call retried once, as for
    // UNAUTHENTICATED, but a persisting one is an outage, not "invalid key".
    for fault in [Fault::html(401), Fault::empty(401)] {
        fake.reset_counts();
        let (error, verdict, calls) = both(&fake, &client, fault.clone()).await;
        assert_eq!(error, ScalekitError::Upstream { status: 401 }, "{fault:?}");
        assert!(is_unavailable(&verdict), "{fault:?}: {verdict:?}");
        assert!(calls <= 2, "{fault:?}: one retry at most");
    }
    // Scalekit's own verdicts are unchanged.
    let (error, _, _) = both(&fake, &client, Fault::Unauthorized).await;
    assert_eq!(error, ScalekitError::Unauthorized);
}

#[tokio::test]
async fn connection_refused_is_connect() {
    // A port that was just free: bind, note, drop.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = ScalekitClient::builder(url, "skc_1", "secret")
        .build()
        .unwrap();
    let key = unknown_key();
    let error = client.validate_token(&key).await.unwrap_err();
    assert!(matches!(error, ScalekitError::Connect(_)), "{error:?}");
    let verdict = client.validate(&ApiKey::new(key)).await.unwrap_err();
    assert!(is_unavailable(&verdict));
    assert!(matches!(
        client
            .create_token(axum_api_key::keys::CreateToken::new("org_1"))
            .await,
        Err(ScalekitError::Connect(_))
    ));
}

#[tokio::test]
async fn connection_reset_is_connect_and_retried_once() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, calls) = both(&fake, &client, Fault::Reset).await;
    assert!(matches!(error, ScalekitError::Connect(_)), "{error:?}");
    assert!(is_unavailable(&verdict));
    assert_eq!(calls, 2);

    let created = fake
        .tokens()
        .create(axum_api_key::keys::CreateToken::new("org_1"))
        .unwrap();
    fake.fail_next(Op::Validate, Fault::Reset);
    assert!(
        client
            .validate_token(created.key.expose_secret())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn slow_answers_time_out() {
    let fake = FakeScalekit::start().await;
    let client = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (error, verdict, _) = both(&fake, &client, Fault::Delay(Duration::from_secs(3))).await;
    assert_eq!(error, ScalekitError::Timeout);
    assert!(is_unavailable(&verdict));

    fake.fail_next(Op::Create, Fault::Delay(Duration::from_secs(3)));
    assert_eq!(
        client
            .create_token(axum_api_key::keys::CreateToken::new("org_1"))
            .await
            .unwrap_err(),
        ScalekitError::Timeout
    );
    // A slow token endpoint is bounded by the validate deadline too.
    let fresh = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    fake.fail_next(Op::Token, Fault::Delay(Duration::from_secs(3)));
    assert_eq!(
        fresh.validate_token(&unknown_key()).await.unwrap_err(),
        ScalekitError::Timeout
    );
}

#[tokio::test]
async fn broken_bodies_are_decode_errors() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    for fault in [
        Fault::Truncated,
        Fault::WrongTypes,
        Fault::Empty,
        Fault::Huge(2 * 1024 * 1024),
        Fault::json(200, json!({"token_info": {"organization_id": "org_1"}})),
        Fault::Status {
            status: 200,
            content_type: "text/html".into(),
            body: "<html>ok</html>".into(),
            retry_after: None,
        },
    ] {
        let (error, verdict, calls) = both(&fake, &client, fault.clone()).await;
        assert!(
            matches!(error, ScalekitError::Decode(_)),
            "{fault:?} gave {error:?}"
        );
        assert!(is_unavailable(&verdict), "{fault:?}");
        assert_eq!(calls, 1, "{fault:?} is not retried");
    }
    // The admin calls too.
    fake.fail_next(Op::Create, Fault::WrongTypes);
    assert!(matches!(
        client
            .create_token(axum_api_key::keys::CreateToken::new("org_1"))
            .await,
        Err(ScalekitError::Decode(_))
    ));
    fake.fail_next(Op::List, Fault::WrongTypes);
    assert!(matches!(
        client
            .list_tokens(&axum_api_key::keys::ListTokens::new("org_1"))
            .await,
        Err(ScalekitError::Decode(_))
    ));
    fake.fail_next(Op::Update, Fault::Empty);
    assert!(matches!(
        client
            .update_token(axum_api_key::keys::UpdateToken::new("apit_1").description("d"))
            .await,
        Err(ScalekitError::Decode(_))
    ));
    fake.fail_next(Op::Create, Fault::Empty);
    assert!(matches!(
        client
            .create_token(axum_api_key::keys::CreateToken::new("org_1"))
            .await,
        Err(ScalekitError::Decode(_))
    ));
}

#[tokio::test]
async fn a_huge_error_body_keeps_its_status() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, _, _) = both(
        &fake,
        &client,
        Fault::Status {
            status: 500,
            content_type: "text/html".into(),
            body: "x".repeat(3 * 1024 * 1024),
            retry_after: None,
        },
    )
    .await;
    assert_eq!(error, ScalekitError::Upstream { status: 500 });
}

#[tokio::test]
async fn token_endpoint_failures_are_upstream_auth_never_invalid() {
    let fake = FakeScalekit::start().await;
    for fault in [
        Fault::html(500),
        Fault::Empty,
        Fault::WrongTypes,
        Fault::rpc(503, 14, "down"),
    ] {
        let client = fake.client();
        fake.set_fault(Op::Token, Some(fault.clone()));
        let error = client.validate_token(&unknown_key()).await.unwrap_err();
        assert!(
            matches!(error, ScalekitError::UpstreamAuth { .. }),
            "{fault:?}: {error:?}"
        );
        let verdict = client
            .validate(&ApiKey::new(unknown_key()))
            .await
            .unwrap_err();
        assert!(is_unavailable(&verdict), "{fault:?}");
    }
    fake.set_fault(Op::Token, None);
    assert_eq!(fake.count(Op::Validate), 0);

    // Wrong credentials: also an upstream problem, with the OAuth error.
    let wrong = ScalekitClient::builder(fake.url(), fake.client_id(), "not-the-secret")
        .build()
        .unwrap();
    let error = wrong.validate_token(&unknown_key()).await.unwrap_err();
    assert!(
        matches!(&error, ScalekitError::UpstreamAuth { status: Some(401), message } if message.contains("invalid_client")),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn other_4xx_are_rejections_and_unavailable_for_validation() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let (error, verdict, _) = both(&fake, &client, Fault::rpc(409, 6, "conflict")).await;
    assert!(matches!(
        error,
        ScalekitError::Rejected {
            status: 409,
            code: Some(6),
            ..
        }
    ));
    assert!(is_unavailable(&verdict));
}
