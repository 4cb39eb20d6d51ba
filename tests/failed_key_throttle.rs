//! The failed-key throttle in the layer's pipeline, over HTTP with real client addresses: a
//! client flooding random keys at a slow upstream costs a bounded number of upstream calls,
//! while its cached keys keep working and other clients are unaffected.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::validator::InvalidReason;
use axum_api_key::{ApiKeyLayer, TokenInfo, ValidateError, validator_fn};

mod support;

const VALID: [&str; 2] = [
    "sk_live_valid_key_number_one",
    "sk_live_valid_key_number_two",
];

async fn serve(calls: Arc<AtomicUsize>) -> SocketAddr {
    let known: Arc<HashSet<&'static str>> = Arc::new(VALID.into_iter().collect());
    // A slow upstream that knows two keys.
    let upstream = validator_fn(move |key| {
        let (known, calls) = (known.clone(), calls.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if known.contains(key.expose_secret()) {
                Ok(TokenInfo::builder("key_1", "org_1").build())
            } else {
                Err(ValidateError::Invalid(InvalidReason::Unknown))
            }
        }
    });
    let validator = CachedValidator::builder(upstream).build_standalone();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(ApiKeyLayer::new(validator)); // the throttle is on by default
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn status(client: &reqwest::Client, addr: SocketAddr, key: &str) -> u16 {
    client
        .get(format!("http://{addr}/"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_keys_costs_a_bounded_number_of_upstream_calls() {
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve(calls.clone()).await;
    let attacker = support::client_from([127, 0, 0, 1]);
    assert_eq!(status(&attacker, addr, VALID[0]).await, 200); // cached from now on
    let before = calls.load(Ordering::SeqCst);

    // 500 distinct well-formed random keys, 25 at a time.
    let mut statuses = Vec::new();
    for wave in 0..20 {
        let requests: Vec<_> = (0..25)
            .map(|i| {
                let attacker = attacker.clone();
                tokio::spawn(async move {
                    status(
                        &attacker,
                        addr,
                        &format!("sk_live_random_{wave:03}_{i:03}_garbage"),
                    )
                    .await
                })
            })
            .collect();
        for request in requests {
            statuses.push(request.await.unwrap());
        }
        // Meanwhile the attacker's cached key still works...
        assert_eq!(status(&attacker, addr, VALID[0]).await, 200);
    }
    let upstream = calls.load(Ordering::SeqCst) - before;
    // The first wave of 25 goes out before any refusal is back; then 10 refusals a minute and
    // at most 4 in flight: far below 500.
    assert!(
        upstream <= 45,
        "{upstream} upstream calls for 500 random keys"
    );
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429));
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 450);

    // ...and another client's new key is validated as usual.
    let other = support::client_from([127, 0, 0, 2]);
    assert_eq!(status(&other, addr, VALID[1]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_answer_is_a_429_with_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve(calls.clone()).await;
    let client = support::client_from([127, 0, 0, 1]);
    for i in 0..10 {
        assert_eq!(
            status(&client, addr, &format!("sk_live_unknown_key_{i:04}")).await,
            401
        );
    }
    let response = client
        .get(format!("http://{addr}/"))
        .bearer_auth("sk_live_unknown_key_9999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "no upstream call for the 11th key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_client_s_concurrent_misses_are_not_throttled() {
    // A valid key not cached yet, asked 32 times at once by one client (what a busy client
    // does each time its key's cache entry expires): every request gets 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = serve(calls.clone()).await;
    let client = support::client_from([127, 0, 0, 1]);
    let requests: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { status(&client, addr, VALID[0]).await })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one flight for all of them"
    );
}

/// Outside a router (the key-management API, an upgrade handler): `authenticate_parts` sees the
/// client in the request's extensions and throttles as the layer does; `authenticate`, given
/// headers only, knows no client.
#[tokio::test]
async fn authenticate_parts_throttles_like_the_layer() {
    use axum::response::IntoResponse;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let layer = ApiKeyLayer::new(validator_fn(move |_key| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<TokenInfo, _>(ValidateError::Invalid(InvalidReason::Unknown)) }
    }));
    let parts = |i: usize, peer: [u8; 4]| {
        let mut request = http::Request::builder()
            .header(
                "authorization",
                format!("Bearer sk_live_unknown_key_{i:04}"),
            )
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((peer, 4000))));
        request.into_parts().0
    };
    let mut statuses = Vec::new();
    for i in 0..15 {
        let rejection = layer
            .authenticate_parts(&parts(i, [127, 0, 0, 1]))
            .await
            .unwrap_err();
        statuses.push(rejection.into_response().status().as_u16());
    }
    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10..], [429; 5]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "no upstream call once throttled"
    );

    // Another client is unaffected; headers alone carry no client, so no throttle applies.
    let other = layer.authenticate_parts(&parts(99, [127, 0, 0, 2])).await;
    assert_eq!(other.unwrap_err().into_response().status().as_u16(), 401);
    let headers_only = layer
        .authenticate(&parts(100, [127, 0, 0, 1]).headers)
        .await;
    assert_eq!(
        headers_only.unwrap_err().into_response().status().as_u16(),
        401
    );
}
