//! End to end: an Axum app behind `ApiKeyLayer::new(ScalekitClient)` pointed at the fake,
//! called over real HTTP.

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use axum_api_key::keys::CreateToken;
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::validator::InvalidReason;
use axum_api_key::{ApiKey, ApiKeyLayer, Claims, UserScope, ValidateError, Validator};
use common::unknown_key;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn me(scope: UserScope, claims: Claims) -> Json<Value> {
    Json(json!({
        "organization_id": scope.organization_id,
        "user_id": scope.user_id,
        "environment": claims.get("environment"),
    }))
}

/// Serves the app on 127.0.0.1 and returns its base URL.
async fn serve(client: ScalekitClient) -> String {
    let app = Router::new()
        .route("/me", get(me))
        .layer(ApiKeyLayer::new(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn get_me(url: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{url}/me"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn valid_revoked_and_unknown_keys() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let url = serve(client.clone()).await;
    let created = client
        .create_token(
            CreateToken::new("org_42")
                .user("usr_7")
                .claim("environment", "production"),
        )
        .await
        .unwrap();
    let key = created.key.expose_secret();

    let response = get_me(&url, key).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"organization_id": "org_42", "user_id": "usr_7", "environment": "production"})
    );

    let response = get_me(&url, &unknown_key()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = response.text().await.unwrap();
    assert!(!body.contains(key));

    client.invalidate_token(&created.token_id).await.unwrap();
    assert_eq!(get_me(&url, key).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_ids_are_refused_locally() {
    let fake = FakeScalekit::start().await;
    let client = fake.client();
    let url = serve(client.clone()).await;
    let created = fake.tokens().create(CreateToken::new("org_1")).unwrap();
    // The client itself validates ids (Scalekit semantics)...
    assert!(client.validate_token(&created.token_id).await.is_ok());
    fake.reset_counts();
    // ...but the layer and the Validator impl never ask.
    assert_eq!(
        get_me(&url, &created.token_id).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client
            .validate(&ApiKey::new(created.token_id.clone()))
            .await
            .unwrap_err(),
        ValidateError::Invalid(InvalidReason::Rejected)
    );
    assert_eq!(fake.count(Op::Validate), 0);
    assert_eq!(fake.count(Op::Token), 0);
}

#[tokio::test]
async fn outages_are_503_with_retry_after_never_200() {
    let fake = FakeScalekit::start().await;
    let client = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let url = serve(client.clone()).await;
    let created = fake
        .tokens()
        .create(CreateToken::new("org_1").user("usr_1"))
        .unwrap();
    let valid = created.key.expose_secret().to_owned();
    assert_eq!(get_me(&url, &valid).await.status(), StatusCode::OK);

    for fault in [
        Fault::rpc(500, 13, "internal"),
        Fault::html(503),
        Fault::Delay(Duration::from_secs(2)),
        Fault::Reset,
        Fault::Truncated,
    ] {
        fake.set_fault(Op::Validate, Some(fault.clone()));
        for key in [valid.clone(), unknown_key()] {
            let response = get_me(&url, &key).await;
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{fault:?}"
            );
            assert!(response.headers().get("retry-after").is_some(), "{fault:?}");
        }
    }

    fake.set_fault(Op::Validate, Some(Fault::rate_limited(7)));
    let response = get_me(&url, &unknown_key()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").unwrap(), "7");

    fake.set_fault(Op::Validate, None);
    assert_eq!(get_me(&url, &valid).await.status(), StatusCode::OK);
    assert_eq!(
        get_me(&url, &unknown_key()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_failing_token_endpoint_is_503_not_401() {
    let fake = FakeScalekit::start().await;
    fake.set_fault(Op::Token, Some(Fault::html(502)));
    let url = serve(fake.client()).await;
    let created = fake
        .tokens()
        .create(CreateToken::new("org_1").user("usr_1"))
        .unwrap();
    for key in [created.key.expose_secret().to_owned(), unknown_key()] {
        assert_eq!(
            get_me(&url, &key).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(fake.count(Op::Validate), 0);
}

#[tokio::test]
async fn scalekit_unreachable_is_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = ScalekitClient::builder(dead, "skc_1", "secret")
        .build()
        .unwrap();
    let url = serve(client).await;
    assert_eq!(
        get_me(&url, &unknown_key()).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
