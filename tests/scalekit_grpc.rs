//! `ScalekitClient` over the gRPC transport (feature `grpc`) against `FakeScalekit`'s
//! `ApiTokenService`, over TLS with the fake's CA and over loopback h2c: the same answers and
//! error classes as over REST.

mod common;

use std::time::{Duration, Instant};

use axum_api_key::keys::{CreateToken, ListTokens, UpdateToken};
use axum_api_key::scalekit::Transport;
use axum_api_key::scalekit::{ScalekitClient, ScalekitError};
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::InvalidReason;
use axum_api_key::{ApiKey, ValidateError, Validator};
use common::{assert_hides, unknown_key};
use serde_json::json;

async fn tls_fake() -> FakeScalekit {
    FakeScalekit::builder().tls(true).start().await.unwrap()
}

#[tokio::test]
async fn every_operation_works_over_grpc_with_tls() {
    let fake = tls_fake().await;
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    let client = fake.grpc_client();
    assert_eq!(client.transport(), Transport::Grpc);

    let created = client
        .create_token(
            CreateToken::new("org_1")
                .user("usr_1")
                .claim("team", "a")
                .description("ci")
                .expiry(time::OffsetDateTime::now_utc() + Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(created.token_id.starts_with("apit_"));
    assert_eq!(created.info.user_id(), Some("usr_1"));
    assert!(created.info.expiry().is_some());
    let other = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();

    let info = client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(info.token_id(), created.token_id);
    assert_eq!(info.claim("team"), Some("a"));
    assert_eq!(info.description(), Some("ci"));
    assert_eq!(info.token_suffix(), created.info.token_suffix());

    let page = client
        .list_tokens(&ListTokens::new("org_1").page_size(1))
        .await
        .unwrap();
    assert_eq!(page.tokens.len(), 1);
    assert_eq!(page.total_count, 2);
    assert!(page.next_page_token.is_some());
    let all = client.list_all_tokens("org_1", None).await.unwrap();
    assert_eq!(all.len(), 2);
    let mine = client
        .list_all_tokens("org_1", Some("usr_1"))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);

    let updated = client
        .update_token(
            UpdateToken::new(created.token_id.clone())
                .custom_claims([("team".to_owned(), "b".to_owned())].into()),
        )
        .await
        .unwrap();
    assert_eq!(updated.claim("team"), Some("b"));

    client
        .invalidate_token(other.key.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        client.validate_token(other.key.expose_secret()).await,
        Err(ScalekitError::NotFound)
    );
    // Idempotent, as over REST.
    client.invalidate_token(&other.token_id).await.unwrap();
    let error = client
        .validate(&ApiKey::new(other.key.expose_secret()))
        .await
        .unwrap_err();
    assert_eq!(error, ValidateError::Invalid(InvalidReason::Unknown));
    // Every RPC went over one connection (the access token over another, HTTP/1.1).
    assert!(
        fake.connections() <= 2,
        "{} connections",
        fake.connections()
    );
}

#[tokio::test]
async fn without_the_fake_ca_tls_fails_and_nothing_is_accepted() {
    let fake = tls_fake().await;
    let key = fake.tokens().create(CreateToken::new("org_1")).unwrap().key;
    for transport in [Transport::Grpc, Transport::Rest] {
        let client = ScalekitClient::builder(fake.url(), fake.client_id(), fake.client_secret())
            .transport(transport)
            .build()
            .unwrap();
        let error = client.validate(&key).await.unwrap_err();
        assert!(
            matches!(error, ValidateError::Unavailable { .. }),
            "{transport}: {error:?}"
        );
    }
    assert_eq!(fake.count(Op::Validate), 0);
}

#[tokio::test]
async fn plaintext_h2c_works_to_loopback_only() {
    let fake = FakeScalekit::start().await;
    let client = fake.grpc_client();
    let created = client
        .create_token(CreateToken::new("org_1"))
        .await
        .unwrap();
    client
        .validate_token(created.key.expose_secret())
        .await
        .unwrap();
    let error = ScalekitClient::builder("http://scalekit.example.com", "skc_1", "s")
        .transport(Transport::Grpc)
        .build()
        .unwrap_err();
    assert!(matches!(error, ScalekitError::Config(_)), "{error:?}");
    assert!(
        ScalekitClient::builder("http://localhost:1", "skc_1", "s")
            .transport(Transport::Grpc)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn unauthenticated_refreshes_the_access_token_and_retries_once() {
    let fake = tls_fake().await;
    let client = fake.grpc_client();
    let key = fake.tokens().create(CreateToken::new("org_1")).unwrap().key;
    client.validate(&key).await.unwrap();
    assert_eq!(fake.count(Op::Token), 1);
    fake.expire_access_tokens();
    fake.reset_counts();
    client.validate(&key).await.unwrap();
    assert_eq!(fake.count(Op::Token), 1, "one refresh");
    assert_eq!(
        fake.count(Op::Validate),
        2,
        "the refused call and its retry"
    );

    // UNAUTHENTICATED even with a fresh token: the key is refused, after one retry only.
    fake.set_fault(Op::Validate, Some(Fault::Unauthorized));
    fake.reset_counts();
    let error = client.validate(&key).await.unwrap_err();
    assert!(error.is_invalid(), "{error:?}");
    assert!(fake.count(Op::Validate) <= 2);
}

#[tokio::test]
async fn status_codes_map_like_rest() {
    let fake = tls_fake().await;
    let client = fake.grpc_client();
    let key = unknown_key();
    let check = async |fault: Fault| {
        fake.set_fault(Op::Validate, Some(fault));
        let client_error = client.validate_token(&key).await.unwrap_err();
        let validate_error = client
            .validate(&ApiKey::new(key.clone()))
            .await
            .unwrap_err();
        assert_hides(&client_error, &key);
        assert_hides(&validate_error, &key);
        (client_error, validate_error)
    };
    let (error, verdict) = check(Fault::rpc(404, 5, "not found")).await;
    assert_eq!(error, ScalekitError::NotFound);
    assert!(verdict.is_invalid());
    for (status, code) in [(400, 3), (403, 7)] {
        let (error, verdict) = check(Fault::rpc(status, code, "no")).await;
        assert!(
            matches!(error, ScalekitError::Rejected { status: s, code: Some(c), .. } if s == status && c == code),
            "{error:?}"
        );
        assert!(verdict.is_invalid(), "{verdict:?}");
    }
    // ErrorInfo.error_code comes from grpc-status-details-bin.
    let (error, _) = check(Fault::json(
        400,
        json!({"code": 3, "message": "bad token", "details": [
            {"@type": "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo", "error_code": "TOKEN_MALFORMED"}
        ]}),
    ))
    .await;
    match error {
        ScalekitError::Rejected { message, .. } => {
            assert!(message.contains("bad token [TOKEN_MALFORMED]"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // RESOURCE_EXHAUSTED with Retry-After: the upstream's rate limit, with the server's delay.
    let (error, verdict) = check(Fault::rate_limited(7)).await;
    assert_eq!(
        error,
        ScalekitError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(
        verdict,
        ValidateError::UpstreamRateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED: unavailable (503 at the layer).
    for (status, code) in [(503, 14), (500, 13), (504, 4)] {
        let (error, verdict) = check(Fault::rpc(status, code, "down")).await;
        assert!(matches!(error, ScalekitError::Upstream { .. }), "{error:?}");
        assert!(
            matches!(verdict, ValidateError::Unavailable { .. }),
            "{verdict:?}"
        );
    }
}

/// Regression: an answer without `grpc-status` (a proxy's, a WAF's or a wrong URL's) came back
/// from tonic as UNAUTHENTICATED for a 401 and PERMISSION_DENIED for a 403, which read as
/// Scalekit's verdict on the key. Such answers are outages, over TLS and h2c alike.
#[tokio::test]
async fn a_proxys_answer_without_grpc_status_is_never_a_verdict() {
    for fake in [tls_fake().await, FakeScalekit::start().await] {
        let client = fake.grpc_client();
        let key = unknown_key();
        for fault in [
            Fault::empty(401),
            Fault::empty(403),
            Fault::empty(404),
            Fault::empty(400),
            Fault::html(401),
            Fault::html(403),
            Fault::html(404),
        ] {
            fake.set_fault(Op::Validate, Some(fault.clone()));
            let error = client.validate_token(&key).await.unwrap_err();
            assert!(
                matches!(error, ScalekitError::Upstream { .. }),
                "{fault:?}: {error:?}"
            );
            let verdict = client
                .validate(&ApiKey::new(key.clone()))
                .await
                .unwrap_err();
            assert!(
                matches!(verdict, ValidateError::Unavailable { .. }),
                "{fault:?}: {verdict:?}"
            );
        }
        // An invalidate over such an answer is an error, not "already revoked".
        fake.set_fault(Op::Validate, None);
        let created = client
            .create_token(CreateToken::new("org_1"))
            .await
            .unwrap();
        fake.set_fault(Op::Invalidate, Some(Fault::empty(403)));
        assert!(matches!(
            client.invalidate_token(&created.token_id).await,
            Err(ScalekitError::Upstream { .. })
        ));
        fake.set_fault(Op::Invalidate, None);
        client.validate_token(&created.token_id).await.unwrap();
    }
}

#[tokio::test]
async fn every_call_has_a_deadline() {
    let fake = tls_fake().await;
    let client = fake
        .client_builder()
        .transport(Transport::Grpc)
        .validate_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    client.list_all_tokens("org_1", None).await.unwrap(); // connect and fetch the access token
    fake.set_fault(Op::Validate, Some(Fault::Delay(Duration::from_secs(30))));
    fake.set_fault(Op::List, Some(Fault::Delay(Duration::from_secs(30))));
    let started = Instant::now();
    assert_eq!(
        client.validate_token(&unknown_key()).await,
        Err(ScalekitError::Timeout)
    );
    assert_eq!(
        client.list_tokens(&ListTokens::new("org_1")).await,
        Err(ScalekitError::Timeout)
    );
    // Both gave up on their own deadlines, not the fake's 30 s.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn transport_names_and_bad_roots_are_config_errors() {
    assert_eq!("GRPC".parse::<Transport>(), Ok(Transport::Grpc));
    assert_eq!(" rest ".parse::<Transport>(), Ok(Transport::Rest));
    assert!(matches!(
        "soap".parse::<Transport>(),
        Err(ScalekitError::Config(_))
    ));
    let error = ScalekitClient::builder("https://x.example", "skc_1", "s")
        .add_root_certificate(b"not a pem".to_vec())
        .build()
        .unwrap_err();
    assert!(matches!(error, ScalekitError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn doctor_reports_each_step_per_transport() {
    let fake = tls_fake().await;
    let report = fake.client_builder().doctor("org_doc").await;
    assert_eq!(report.working(), vec![Transport::Rest, Transport::Grpc]);
    // The doctor's keys are gone afterwards.
    let left = fake.tokens().list(&ListTokens::new("org_doc")).unwrap();
    assert!(left.tokens.is_empty(), "{left:?}");

    // A permission problem on create: both transports fail at that step, and say so.
    fake.set_fault(Op::Create, Some(Fault::rpc(403, 7, "no permission")));
    let report = fake.client_builder().doctor("org_doc").await;
    assert!(report.working().is_empty());
    for transport in &report.transports {
        let names: Vec<_> = transport.steps.iter().map(|s| s.name).collect();
        assert_eq!(names, ["access token", "create"], "{report}");
        assert!(transport.steps[0].error.is_none());
        assert!(
            transport.steps[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no permission")),
            "{report}"
        );
    }
    let text = report.to_string();
    assert!(
        text.contains("rest: FAILS") && text.contains("grpc: FAILS"),
        "{text}"
    );
}
