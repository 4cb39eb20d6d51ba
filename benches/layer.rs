//! One request through an Axum `Router` with a trivial handler, per auth strategy.
//!
//! `cargo bench --bench layer`. Every case pays the same router and request-building cost, so
//! the differences are the auth check's.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_api_key::{ApiKeyLayer, CachedValidator, CreateToken, InMemoryTokens};
use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

const STATIC_TOKEN: &str =
    "4cXk0nQ7rS1b9WmT2yVfA8hLdE3jPuGz6oRiKq5NwYtH0aBcD1eF2gH3iJ4kL5mN6oP7qR8sT9uV0wXyZ";
const JWT_SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret";

#[derive(Clone, Serialize, Deserialize)]
struct JwtClaims {
    sub: String,
    org: String,
    exp: u64,
}

fn handler_router() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Turns handlers into services once, as `axum::serve` does (`into_make_service` calls
/// `with_state`): otherwise axum rebuilds each route, layers included, on every request.
fn finalized(router: Router) -> Router {
    router.with_state(())
}

fn request(authorization: Option<&str>) -> Request {
    let mut builder = Request::builder().uri("/");
    if let Some(value) = authorization {
        builder = builder.header(AUTHORIZATION, value);
    }
    builder.body(Body::empty()).unwrap()
}

/// A local HS256 check in a middleware, as jwt-authorizer-style layers do.
async fn jwt_layer(mut request: Request, next: Next) -> Response {
    static KEY: std::sync::LazyLock<DecodingKey> =
        std::sync::LazyLock::new(|| DecodingKey::from_secret(JWT_SECRET));
    static VALIDATION: std::sync::LazyLock<Validation> =
        std::sync::LazyLock::new(|| Validation::new(Algorithm::HS256));
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.map(|t| decode::<JwtClaims>(t, &KEY, &VALIDATION)) {
        Some(Ok(data)) => {
            request.extensions_mut().insert(data.claims);
            next.run(request).await
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn bench_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("layer");

    let bare = finalized(handler_router());
    group.bench_function("bare", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(bare.clone().oneshot(request(None)).await.unwrap()) })
    });

    #[allow(deprecated)] // deprecated upstream; kept as the floor to beat
    let tower_http = finalized(
        handler_router()
            .layer(tower_http::validate_request::ValidateRequestHeaderLayer::bearer(STATIC_TOKEN)),
    );
    let static_header = format!("Bearer {STATIC_TOKEN}");
    group.bench_function("tower_http_bearer", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = tower_http
                .clone()
                .oneshot(request(Some(&static_header)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response)
        })
    });

    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = JwtClaims {
        sub: "usr_1".into(),
        org: "org_1".into(),
        exp,
    };
    let jwt = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET),
    )
    .unwrap();
    let jwt_header = format!("Bearer {jwt}");
    let jwt_router = finalized(handler_router().layer(middleware::from_fn(jwt_layer)));
    group.bench_function("jwt_hs256", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = jwt_router
                .clone()
                .oneshot(request(Some(&jwt_header)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response)
        })
    });

    let tokens = InMemoryTokens::new();
    let created = tokens
        .create(CreateToken::new("org_1").claim("environment", "production"))
        .unwrap();
    let key_header = format!("Bearer {}", created.key.expose_secret());

    let cached =
        finalized(handler_router().layer(ApiKeyLayer::new(CachedValidator::new(tokens.clone()))));
    group.bench_function("api_key_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = cached
                .clone()
                .oneshot(request(Some(&key_header)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response)
        })
    });

    let memory = finalized(handler_router().layer(ApiKeyLayer::new(tokens.clone())));
    group.bench_function("api_key_memory", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = memory
                .clone()
                .oneshot(request(Some(&key_header)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response)
        })
    });

    let rejected_header = format!("Bearer {}", created.token_id);
    group.bench_function("api_key_rejected", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = memory
                .clone()
                .oneshot(request(Some(&rejected_header)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            black_box(response)
        })
    });

    group.finish();
}

criterion_group!(benches, bench_layer);
criterion_main!(benches);
