//! The validation cache on its own: hits, negative hits, a miss over the fake Scalekit on
//! loopback, single-flight under 1,000 concurrent waiters, and the fingerprint.
//!
//! `cargo bench --bench cache --features test-util`

use std::hint::black_box;
use std::time::Duration;

use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::request::Fingerprint;
use axum_api_key::testing::{FakeScalekit, Op};
use axum_api_key::{ApiKey, InMemoryTokens, Validator};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn garbage_key() -> ApiKey {
    ApiKey::new("Zz9".repeat(25) + "q0")
}

fn bench_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("cache");

    // Hits, on a store with a key carrying three claims.
    let tokens = InMemoryTokens::new();
    let created = tokens
        .create(
            CreateToken::new("org_1")
                .claim("environment", "production")
                .claim("team", "payments")
                .claim("tier", "gold"),
        )
        .unwrap();
    // Lifetimes longer than the whole run, so every iteration measures a hit.
    let cache = CachedValidator::builder(tokens.clone())
        .ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_secs(3600))
        .build();
    runtime.block_on(cache.validate(&created.key)).unwrap();
    group.bench_function("hit", |b| {
        b.iter(|| {
            black_box(cache.validate_now(&created.key))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("hit_async", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cache.validate(&created.key).await.unwrap()) })
    });
    let garbage = garbage_key();
    let _ = runtime.block_on(cache.validate(&garbage));
    group.bench_function("negative_hit", |b| {
        b.iter(|| {
            black_box(cache.validate_now(&garbage))
                .unwrap()
                .unwrap_err()
        })
    });

    // A miss: a fresh cache each time, the upstream a fake Scalekit over loopback HTTP.
    let fake = runtime.block_on(FakeScalekit::start());
    let client = fake.client();
    let remote = fake.tokens().create(CreateToken::new("org_1")).unwrap();
    runtime.block_on(client.validate(&remote.key)).unwrap(); // access token fetched once
    group.bench_function("miss_fake_scalekit", |b| {
        b.to_async(&runtime).iter_batched(
            || CachedValidator::new(client.clone()),
            |cache| {
                let key = &remote.key;
                async move { black_box(cache.validate(key).await.unwrap()) }
            },
            BatchSize::PerIteration,
        )
    });

    // 1,000 requests for one uncached key at once: one upstream call, 999 waiters.
    group.sample_size(20);
    group.bench_function("single_flight_1000_waiters", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                (
                    CachedValidator::new(client.clone()),
                    fake.count(Op::Validate),
                )
            },
            |(cache, before)| {
                let remote = &remote;
                let fake = &fake;
                async move {
                    let waiters = (0..1000).map(|_| cache.validate(&remote.key));
                    let answers = futures_util::future::join_all(waiters).await;
                    assert!(answers.iter().all(Result::is_ok));
                    assert_eq!(fake.count(Op::Validate) - before, 1, "single flight");
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // What the fingerprint costs, against the keyed BLAKE3 it replaced.
    let mut group = c.benchmark_group("fingerprint");
    let secret = created.key.expose_secret().to_owned();
    group.bench_function("siphash24_128", |b| {
        b.iter(|| black_box(Fingerprint::of(black_box(&secret))))
    });
    let blake3_key = [7u8; 32];
    group.bench_function("blake3_keyed", |b| {
        b.iter(|| {
            black_box(blake3::keyed_hash(
                &blake3_key,
                black_box(secret.as_bytes()),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_cache);
criterion_main!(benches);
