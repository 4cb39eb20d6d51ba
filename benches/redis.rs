//! A cached hit costs the same with the Redis revocation feed attached: the feed works on the
//! revocation path and in background tasks, never on the hit path.
//!
//! `cargo bench --bench redis --features redis`. Starts its own `redis-server` on a free
//! loopback port (the feed is then connected, its subscriber live). Without `redis-server` it
//! fails, unless `AXUM_API_KEY_SKIP_REDIS_TESTS=1`: it then attaches to a port nobody listens
//! on (the feed stays disconnected).

use std::hint::black_box;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::redis::RedisRevocations;
use axum_api_key::{ApiKey, InMemoryTokens, Validator};
use criterion::{Criterion, criterion_group, criterion_main};

/// A redis-server of the bench's own, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Option<Server>, String) {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let url = format!("redis://127.0.0.1:{port}");
    match child {
        Ok(child) => {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            (Some(Server(child)), url)
        }
        // A "with Redis" number measured without Redis would mislead: refuse, unless told.
        Err(_) if std::env::var("AXUM_API_KEY_SKIP_REDIS_TESTS").is_ok_and(|v| v.trim() == "1") => {
            eprintln!("redis-server not found: the feed stays disconnected ({url})");
            (None, url)
        }
        Err(_) => panic!(
            "redis-server not found on PATH: install it (scripts/test.sh does), or set \
             AXUM_API_KEY_SKIP_REDIS_TESTS=1 to measure with a disconnected feed"
        ),
    }
}

fn cached_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_server, url) = start_redis();

    let setup = |with_redis: bool| {
        runtime.block_on(async {
            let tokens = InMemoryTokens::new();
            let key = ApiKey::new(
                tokens
                    .create(CreateToken::new("org_1"))
                    .unwrap()
                    .key
                    .expose_secret(),
            );
            let cache = CachedValidator::builder(tokens)
                .ttl(Duration::from_secs(300))
                .build();
            let feed = with_redis.then(|| {
                let feed = RedisRevocations::builder(url.as_str()).build().unwrap();
                feed.attach(&cache);
                feed
            });
            if let Some(feed) = &feed {
                // Let the first connect (and its flush) happen before the key is cached.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !feed.is_connected() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                eprintln!("feed connected: {}", feed.is_connected());
            }
            cache.validate(&key).await.unwrap();
            (cache, key, feed)
        })
    };

    let mut group = c.benchmark_group("redis");
    let (plain, plain_key, _) = setup(false);
    group.bench_function("cached_hit_plain", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(plain.validate(black_box(&plain_key)).await.unwrap()) })
    });
    let (with_redis, redis_key, feed) = setup(true);
    group.bench_function("cached_hit_with_redis", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(with_redis.validate(black_box(&redis_key)).await.unwrap()) })
    });
    group.finish();
    assert_eq!(plain.stats().misses, 1);
    assert_eq!(
        with_redis.stats().misses,
        1,
        "every measured call was a hit"
    );
    drop(feed);
}

/// One request through `ApiKeyLayer` (an in-memory key) and `RateLimitLayer`, with the limit
/// decided by the local buckets, then by Redis over loopback (one `EVALSHA` per request).
fn limited_request(c: &mut Criterion) {
    use axum::{Router, body::Body, routing::get};
    use axum_api_key::ApiKeyLayer;
    use axum_api_key::ratelimit::{RateLimitLayer, RatePolicy, RedisLimiter};
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (server, url) = start_redis();
    if server.is_none() {
        return;
    }
    let tokens = InMemoryTokens::new();
    let header = format!(
        "Bearer {}",
        tokens
            .create(CreateToken::new("org_1"))
            .unwrap()
            .key
            .expose_secret()
    );
    // Refills faster than the loop runs: every request is admitted.
    let policy: RatePolicy = "1000000/s".parse().unwrap();
    let router = |limit: RateLimitLayer| {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(limit)
            .layer(ApiKeyLayer::new(tokens.clone()))
            .with_state(())
    };
    let redis = RedisLimiter::builder(url.as_str()).build().unwrap();
    let leasing = RedisLimiter::builder(url.as_str())
        .prefix("bench:leases")
        .local_first(true)
        .build()
        .unwrap();
    let local = router(RateLimitLayer::new(policy));
    let shared = router(RateLimitLayer::new(policy).redis(redis.clone()));
    let local_first = router(RateLimitLayer::new(policy).redis(leasing.clone()));
    let send = |router: Router| {
        let header = header.clone();
        async move {
            let request = http::Request::get("/")
                .header("authorization", header)
                .body(Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response
        }
    };
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while (redis.stats().decisions == 0 || leasing.stats().decisions == 0)
            && Instant::now() < deadline
        {
            send(shared.clone()).await;
            send(local_first.clone()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let fallbacks = redis.stats().fallbacks + leasing.stats().fallbacks;

    let mut group = c.benchmark_group("ratelimit");
    group.bench_function("request_local_limit", |b| {
        b.to_async(&runtime).iter(|| send(local.clone()))
    });
    group.bench_function("request_redis_limit", |b| {
        b.to_async(&runtime).iter(|| send(shared.clone()))
    });
    // Leases of 64 tokens, the next fetched in the background: one round trip per 64 requests,
    // off the request's path.
    group.bench_function("request_redis_local_first", |b| {
        b.to_async(&runtime).iter(|| send(local_first.clone()))
    });
    group.finish();
    assert_eq!(
        redis.stats().fallbacks + leasing.stats().fallbacks,
        fallbacks,
        "Redis decided every measured request (or leased its token)"
    );
    let leasing = leasing.stats();
    eprintln!(
        "local-first: {} decisions from leases, {} round trips",
        leasing.leased, leasing.decisions
    );
}

criterion_group!(benches, cached_hit, limited_request);
criterion_main!(benches);
