//! One request through an Axum `Router` with a trivial handler, per auth strategy.
//!
//! `cargo bench --bench layer` (add `--features metrics` for `api_key_cached_metrics`). Every
//! case pays the same router and request-building cost, so the differences are the auth
//! check's. `floor` is a hand-written service doing only what a cached check must do, the
//! bound to measure `api_key_cached` against.

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
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
use futures_util::future::{Either, Ready, ready};
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

/// The floor: what any cached bearer check must do, and nothing more. One header lookup, a
/// case-insensitive `Bearer ` strip, one pass over the key's bytes, one keyed SipHash-128, one
/// papaya probe, one `Arc` clone, one extension insert, one header removal.
#[derive(Clone)]
struct Floor<S> {
    inner: S,
    keys: Arc<papaya::HashMap<u128, Arc<FloorInfo>>>,
    hasher: siphasher::sip128::SipHasher24,
}

#[allow(dead_code)] // read by nobody: the handler ignores it
struct FloorInfo {
    organization_id: String,
}

impl<S> tower::Service<Request> for Floor<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let found = request.headers().get(AUTHORIZATION).and_then(|value| {
            let bytes = value.as_bytes();
            let token = (bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"bearer "))
                .then(|| &bytes[7..])?;
            token.iter().all(u8::is_ascii_alphanumeric).then_some(())?;
            let fingerprint = self.hasher.hash(token).as_u128();
            self.keys.pin().get(&fingerprint).cloned()
        });
        match found {
            Some(info) => {
                request.extensions_mut().insert(info);
                request.headers_mut().remove(AUTHORIZATION);
                Either::Left(self.inner.call(request))
            }
            None => Either::Right(ready(Ok(StatusCode::UNAUTHORIZED.into_response()))),
        }
    }
}

fn floor_router(key: &str) -> Router {
    let hasher = siphasher::sip128::SipHasher24::new_with_keys(rand_u64(), rand_u64());
    let keys = papaya::HashMap::new();
    keys.pin().insert(
        hasher.hash(key.as_bytes()).as_u128(),
        Arc::new(FloorInfo {
            organization_id: "org_1".into(),
        }),
    );
    let keys = Arc::new(keys);
    handler_router().layer(tower::layer::layer_fn(move |inner| Floor {
        inner,
        keys: keys.clone(),
        hasher,
    }))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
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
    case(
        "floor",
        finalized(floor_router(created.key.expose_secret())),
        Some(key_header.clone()),
        StatusCode::OK,
    );
    let cached = handler_router().layer(ApiKeyLayer::new(cache.clone()));
    case(
        "api_key_cached",
        finalized(cached),
        Some(key_header.clone()),
        StatusCode::OK,
    );

    // The same, plus a local per-key limiter whose refill (1 000 000/s) outpaces the loop, so
    // every iteration is admitted: the auth layer's own limit (`ApiKeyLayer::rate_limit`), with
    // the `RateLimit` field on the answer and without; then the limit as a layer of its own.
    let unlimited: RatePolicy = "1000000/s".parse().unwrap();
    let limited = handler_router()
        .layer(ApiKeyLayer::new(cache.clone()).rate_limit(RateLimitLayer::new(unlimited)));
    case(
        "api_key_cached_limited",
        finalized(limited),
        Some(key_header.clone()),
        StatusCode::OK,
    );
    let limited_quiet = handler_router().layer(
        ApiKeyLayer::new(cache.clone())
            .rate_limit(RateLimitLayer::new(unlimited).headers_on_success(false)),
    );
    case(
        "api_key_cached_limited_no_headers",
        finalized(limited_quiet),
        Some(key_header.clone()),
        StatusCode::OK,
    );
    let limit_layer = handler_router()
        .layer(RateLimitLayer::new(unlimited))
        .layer(ApiKeyLayer::new(cache.clone()));
    case(
        "api_key_cached_limit_layer",
        finalized(limit_layer),
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

    let memory = finalized(handler_router().layer(ApiKeyLayer::new(tokens.clone())));
    case(
        "api_key_memory",
        memory.clone(),
        Some(key_header.clone()),
        StatusCode::OK,
    );

    let token_id = Some(format!("Bearer {}", created.token_id));
    case(
        "api_key_rejected",
        memory,
        token_id,
        StatusCode::UNAUTHORIZED,
    );

    // Last: the global recorder stays installed for the rest of the process.
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap();
        let metered = handler_router().layer(ApiKeyLayer::new(cache.clone()));
        case(
            "api_key_cached_metrics",
            finalized(metered),
            Some(key_header.clone()),
            StatusCode::OK,
        );
        assert!(recorder.render().contains("api_key_requests_total"));
    }

    group.finish();
}

criterion_group!(benches, bench_layer);
criterion_main!(benches);
