//! One request through an Axum `Router` with a trivial handler, per auth strategy.
//!
//! `cargo bench --bench layer`. Every case pays the same router and request-building cost, so
//! the differences are the auth check's.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::ratelimit::{RateLimitLayer, RatePolicy};
use axum_api_key::{ApiKeyLayer, InMemoryTokens};
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

    let mut case =
        |name: &str, router: Router, authorization: Option<String>, expect: StatusCode| {
            group.bench_function(name, |b| {
                b.to_async(&runtime).iter(|| async {
                    let response = router
                        .clone()
                        .oneshot(request(authorization.as_deref()))
                        .await
                        .unwrap();
                    assert_eq!(response.status(), expect);
                    black_box(response)
                })
            });
        };

    case("bare", finalized(handler_router()), None, StatusCode::OK);

    #[allow(deprecated)] // deprecated upstream; kept as the floor to beat
    let tower_http = handler_router()
        .layer(tower_http::validate_request::ValidateRequestHeaderLayer::bearer(STATIC_TOKEN));
    let static_header = format!("Bearer {STATIC_TOKEN}");
    case(
        "tower_http_bearer",
        finalized(tower_http),
        Some(static_header),
        StatusCode::OK,
    );

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
    let jwt_router = handler_router().layer(middleware::from_fn(jwt_layer));
    case(
        "jwt_hs256",
        finalized(jwt_router),
        Some(format!("Bearer {jwt}")),
        StatusCode::OK,
    );

    let tokens = InMemoryTokens::new();
    let created = tokens
        .create(CreateToken::new("org_1").claim("environment", "production"))
        .unwrap();
    let key_header = format!("Bearer {}", created.key.expose_secret());

    // A TTL longer than the run, so every iteration is a hit.
    let cache = CachedValidator::builder(tokens.clone())
        .ttl(Duration::from_secs(3600))
        .build();
    let cached = handler_router().layer(ApiKeyLayer::new(cache.clone()));
    case(
        "api_key_cached",
        finalized(cached),
        Some(key_header.clone()),
        StatusCode::OK,
    );

    // The same, plus a local per-key limiter whose refill (1 000 000/s) outpaces the loop, so
    // every iteration is admitted: with the RateLimit fields on the answer, and without.
    let unlimited: RatePolicy = "1000000/s".parse().unwrap();
    let limited = handler_router()
        .layer(RateLimitLayer::new(unlimited))
        .layer(ApiKeyLayer::new(cache.clone()));
    case(
        "api_key_cached_limited",
        finalized(limited),
        Some(key_header.clone()),
        StatusCode::OK,
    );
    // The cost of any extra layer on a Router (axum boxes each layered route), for comparison.
    let noop = handler_router()
        .layer(tower::util::MapRequestLayer::new(|request: Request| {
            request
        }))
        .layer(ApiKeyLayer::new(cache.clone()));
    case(
        "api_key_cached_noop_layer",
        finalized(noop),
        Some(key_header.clone()),
        StatusCode::OK,
    );
    let limited_quiet = handler_router()
        .layer(RateLimitLayer::new(unlimited).headers_on_success(false))
        .layer(ApiKeyLayer::new(cache));
    case(
        "api_key_cached_limited_no_headers",
        finalized(limited_quiet),
        Some(key_header.clone()),
        StatusCode::OK,
    );

    let memory = finalized(handler_router().layer(ApiKeyLayer::new(tokens.clone())));
    case(
        "api_key_memory",
        memory.clone(),
        Some(key_header),
        StatusCode::OK,
    );

    let token_id = Some(format!("Bearer {}", created.token_id));
    case(
        "api_key_rejected",
        memory,
        token_id,
        StatusCode::UNAUTHORIZED,
    );

    group.finish();
}

criterion_group!(benches, bench_layer);
criterion_main!(benches);
