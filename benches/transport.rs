//! One validation by `ScalekitClient` against the fake Scalekit on loopback, per transport:
//! REST (HTTP/1.1, reqwest) and gRPC (HTTP/2, tonic), plaintext and TLS. The connection and the
//! access token are warm; each iteration is one round trip through the fake's store.
//!
//! `cargo bench --bench transport --features test-util`

use std::hint::black_box;

use axum_api_key::Validator;
use axum_api_key::keys::CreateToken;
use axum_api_key::scalekit::Transport;
use axum_api_key::testing::FakeScalekit;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench_transports(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("validate_loopback");
    for tls in [false, true] {
        let fake = runtime
            .block_on(FakeScalekit::builder().tls(tls).start())
            .unwrap();
        let key = fake
            .tokens()
            .create(CreateToken::new("org_1").claim("team", "payments"))
            .unwrap()
            .key;
        for transport in [Transport::Rest, Transport::Grpc] {
            let client = fake.client_builder().transport(transport).build().unwrap();
            runtime.block_on(client.validate(&key)).unwrap();
            let name = format!("{transport}_{}", if tls { "tls" } else { "plain" });
            group.bench_function(name, |b| {
                b.to_async(&runtime)
                    .iter(|| async { black_box(client.validate(&key).await.unwrap()) })
            });
        }
        drop(fake);
    }
    group.finish();
}

criterion_group!(benches, bench_transports);
criterion_main!(benches);
