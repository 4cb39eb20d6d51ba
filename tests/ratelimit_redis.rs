//! Rate limits shared over a real Redis: every test starts its own `redis-server` on a free
//! loopback port (`support::redis_server`: killed on drop; without the binary the tests fail
//! unless `AXUM_API_KEY_SKIP_REDIS_TESTS=1`) and two "instances" (routers on their own ports,
//! each with its own `RedisLimiter`).

mod support;

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use axum_api_key::keys::CreateToken;
use axum_api_key::ratelimit::{RateLimitLayer, RedisLimiter};
use axum_api_key::{ApiKeyLayer, InMemoryTokens};
use reqwest::StatusCode;
use support::redis_server::RedisServer;

struct Instance {
    base: String,
    redis: RedisLimiter,
}

/// The limit as a layer of its own inside the auth layer, or as the auth layer's own
/// (`ApiKeyLayer::rate_limit`): both forms share buckets through Redis.
#[derive(Clone, Copy)]
enum Form {
    Layer,
    AuthLayerOption,
}

async fn instance(
    tokens: &InMemoryTokens,
    url: &str,
    policy: &str,
    form: Form,
    local_first: bool,
) -> Instance {
    let redis = RedisLimiter::builder(url)
        .prefix("test:rl")
        .timeout(Duration::from_millis(50))
        .local_first(local_first)
        .build()
        .unwrap();
    let limit = RateLimitLayer::new(policy.parse().unwrap()).redis(redis.clone());
    let routes = Router::new().route("/", get(|| async { "ok" }));
    let app = match form {
        Form::Layer => routes.layer(limit).layer(ApiKeyLayer::new(tokens.clone())),
        Form::AuthLayerOption => routes.layer(ApiKeyLayer::new(tokens.clone()).rate_limit(limit)),
    };
    Instance {
        base: support::serve(app).await,
        redis,
    }
}

async fn status(client: &reqwest::Client, base: &str, key: &str) -> StatusCode {
    client
        .get(format!("{base}/"))
        .bearer_auth(key)
        .send()
        .await
        .expect("an answer")
        .status()
}

/// Sends requests with a throwaway key until the instance's limiter has decided through Redis.
async fn until_connected(client: &reqwest::Client, instance: &Instance, warm_key: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while instance.redis.stats().decisions == 0 {
        assert!(Instant::now() < deadline, "never connected to Redis");
        status(client, &instance.base, warm_key).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances under `policy` on one Redis, one of each [`Form`], both connected, and a key
/// of their store to limit.
struct Pair {
    server: RedisServer,
    key: String,
    a: Instance,
    b: Instance,
    client: reqwest::Client,
}

/// `None` when the tests are told to skip without `redis-server`.
async fn connected_pair(policy: &str, local_first: bool) -> Option<Pair> {
    let server = RedisServer::start()?;
    let tokens = InMemoryTokens::new();
    let key = tokens.create(CreateToken::new("org_a")).unwrap().key;
    let warm = tokens.create(CreateToken::new("org_w")).unwrap().key;
    let url = server.url();
    let a = instance(&tokens, &url, policy, Form::Layer, local_first).await;
    let b = instance(&tokens, &url, policy, Form::AuthLayerOption, local_first).await;
    let client = reqwest::Client::new();
    until_connected(&client, &a, warm.expose_secret()).await;
    until_connected(&client, &b, warm.expose_secret()).await;
    Some(Pair {
        server,
        key: key.expose_secret().to_owned(),
        a,
        b,
        client,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_quota_within_ten_percent() {
    let Some(Pair {
        server,
        key,
        a,
        b,
        client,
    }) = connected_pair("40/min", false).await
    else {
        return;
    };
    let key = key.as_str();
    let fallbacks = a.redis.stats().fallbacks + b.redis.stats().fallbacks;

    let mut ok = [0usize; 2];
    for i in 0..200 {
        let (base, slot) = if i % 2 == 0 {
            (&a.base, 0)
        } else {
            (&b.base, 1)
        };
        match status(&client, base, key).await {
            StatusCode::OK => ok[slot] += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    let total = ok[0] + ok[1];
    // 40 per minute between both (plus at most the refills while the loop runs): within 10%.
    assert!((40..=44).contains(&total), "admitted {total} ({ok:?})");
    assert!(ok[0] > 0 && ok[1] > 0, "{ok:?}");
    // Redis decided every one of them.
    assert_eq!(
        a.redis.stats().fallbacks + b.redis.stats().fallbacks,
        fallbacks
    );

    // Every bucket in Redis expires by itself (no unbounded key growth): within its window.
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:rl:*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}"); // the key's bucket and the warm-up key's
    for bucket in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&bucket)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_001, "{bucket}: {ttl}");
    }
}

/// Local-first: tokens leased from Redis in twentieths of the burst (20 here) and spent
/// locally. Under concurrent load on two instances the pair never admits more than the shared
/// quota, admits at least the quota less the leases left unspent (one and a half leases per
/// instance at most), and most admitted requests made no round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_first_instances_never_exceed_the_shared_quota() {
    // Per hour: the bucket refills by one token every 9 s, so the loop sees no refill.
    let Some(Pair {
        server: _server, // alive until the end
        key,
        a,
        b,
        client,
    }) = connected_pair("400/h", true).await
    else {
        return;
    };
    let fallbacks = a.redis.stats().fallbacks + b.redis.stats().fallbacks;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (client, key) = (client.clone(), key.clone());
        let base = if task % 2 == 0 { &a.base } else { &b.base }.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for _ in 0..150 {
                match status(&client, &base, &key).await {
                    StatusCode::OK => ok += 1,
                    StatusCode::TOO_MANY_REQUESTS => {}
                    other => panic!("unexpected {other}"),
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let refills = (started.elapsed().as_secs() / 9) as usize + 1;
    // Never more than the quota; at most 2 x 30 leased tokens left unspent.
    assert!(
        (340..=400 + refills).contains(&total),
        "admitted {total} of 600 (quota 400)"
    );
    let (sa, sb) = (a.redis.stats(), b.redis.stats());
    eprintln!("admitted {total} of 600 (quota 400); A {sa:?}; B {sb:?}");
    assert_eq!(sa.fallbacks + sb.fallbacks, fallbacks, "Redis reachable");
    assert!(
        (sa.leased + sb.leased) as usize * 2 > total,
        "most admitted requests spent a leased token: {sa:?} {sb:?}"
    );
    assert!(sa.leases >= 1 && sb.leases >= 1, "{sa:?} {sb:?}");
}

/// Local-first with sparse traffic: a lease taken for requests that do not come expires and
/// burns the shared quota with no request behind it. Requests slower than leases live must
/// cost their own tokens only: after four of them, a burst gets the rest of the quota (less
/// at most what one lease left unspent on the other instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_first_sparse_requests_cost_only_their_own_tokens() {
    // 60 per hour: one token a minute comes back, and leases would be of 3.
    let Some(Pair {
        server: _server, // alive until the end
        key,
        a,
        b,
        client,
    }) = connected_pair("60/h", true).await
    else {
        return;
    };
    let key = key.as_str();

    // Each instance sees one request every 2.4 s, longer than a lease lives.
    let started = Instant::now();
    for i in 0..4 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        assert_eq!(status(&client, base, key).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let mut burst = 0;
    for _ in 0..70 {
        if status(&client, &a.base, key).await == StatusCode::OK {
            burst += 1;
        }
    }
    let refills = (started.elapsed().as_secs() / 60) as usize;
    assert!(
        (54..=56 + refills).contains(&burst),
        "after 4 sparse requests a burst got {burst} of the 56 left"
    );
}

/// An instance whose failed-key throttle shares its allowance over Redis, in front of an
/// upstream that knows no key and counts its calls.
async fn throttled_instance(
    url: &str,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Instance {
    use axum_api_key::ratelimit::FailedKeyThrottle;
    use axum_api_key::validator::InvalidReason;
    use axum_api_key::{TokenInfo, ValidateError, validator_fn};

    let upstream = validator_fn(move |_key| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err::<TokenInfo, _>(ValidateError::Invalid(InvalidReason::Unknown))
        }
    });
    let redis = RedisLimiter::builder(url)
        .prefix("test:throttle")
        .build()
        .unwrap();
    redis.connect();
    let throttle = FailedKeyThrottle::new("10/min".parse().unwrap()).redis(redis.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(ApiKeyLayer::new(upstream).failed_key_throttle(throttle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Instance {
        base: format!("http://{addr}"),
        redis,
    }
}

/// The failed-key throttle shared over Redis: a client sending random keys to two instances
/// gets one allowance (10 refused keys a minute) across both, plus about one refusal per
/// instance (each learns of the block on its next refusal), not 10 on each; another client
/// is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_key_allowance_is_shared_across_instances() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let a = throttled_instance(&server.url(), calls.clone()).await;
    let b = throttled_instance(&server.url(), calls.clone()).await;
    // Until both limiters have counted a refusal in Redis (before that, refusals count locally
    // only), from a client of its own.
    let warm = support::client_from([127, 0, 0, 3]);
    for instance in [&a, &b] {
        until_connected(&warm, instance, "sk_live_warm_up_key_xxxxxxxxxxxxx").await;
    }
    let before = calls.load(Ordering::SeqCst);

    let attacker = support::client_from([127, 0, 0, 1]);
    let mut throttled = 0;
    for i in 0..40 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let key = format!("sk_live_random_{i:04}_{}", "x".repeat(20));
        match status(&attacker, base, &key).await {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected {other}"),
        }
        // Let the refusal's shared accounting land (it runs after the answer).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upstream = calls.load(Ordering::SeqCst) - before;
    eprintln!("{upstream} upstream calls, {throttled} throttled");
    // Unshared, each instance would allow 10: 20 calls. Shared: 10, plus one per instance
    // (11 in every run here; one more of slack for a refusal whose accounting lands late).
    assert!(
        (10..=13).contains(&upstream),
        "{upstream} upstream calls for 40 random keys"
    );
    assert_eq!(throttled, 40 - upstream);
    // Both instances now refuse this client's unknown keys without a call.
    for instance in [&a, &b] {
        let answer = status(&attacker, &instance.base, "sk_live_one_more_key_xxxxxxxxxx").await;
        assert_eq!(answer, StatusCode::TOO_MANY_REQUESTS);
    }
    // Another client is unaffected.
    let other = support::client_from([127, 0, 0, 2]);
    assert_eq!(
        status(&other, &a.base, "sk_live_other_client_key_xxxxxxx").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(calls.load(Ordering::SeqCst), before + upstream + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_requests_keep_answering_on_local_limits() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let tokens = InMemoryTokens::new();
    let key = tokens.create(CreateToken::new("org_a")).unwrap().key;
    let key = key.expose_secret();
    let warm = tokens.create(CreateToken::new("org_w")).unwrap().key;
    let a = instance(
        &tokens,
        &server.url(),
        "10/min",
        Form::AuthLayerOption,
        false,
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    until_connected(&client, &a, warm.expose_secret()).await;
    for _ in 0..12 {
        status(&client, &a.base, key).await;
    }
    assert_eq!(
        status(&client, &a.base, key).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(a.redis.is_connected());

    server.kill();
    // Every request is answered (no 5xx, no stall): the local buckets decide, and they start
    // full, so the key gets the policy's quota again on this instance.
    let mut ok = 0;
    for _ in 0..15 {
        match status(&client, &a.base, key).await {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other} with Redis down"),
        }
    }
    assert!((10..=11).contains(&ok), "{ok}");
    let stats = a.redis.stats();
    assert!(!stats.connected);
    assert!(stats.fallbacks >= 15, "{stats:?}");
    assert!(stats.state_changes >= 2, "{stats:?}");

    // Back: the limiter reconnects in the background and Redis decides again.
    server.restart();
    let decided = a.redis.stats().decisions;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.redis.stats().decisions == decided {
        assert!(Instant::now() < deadline, "never reconnected");
        status(&client, &a.base, warm.expose_secret()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.redis.is_connected());
}

/// A stand-in for a Redis in trouble, on loopback: it answers the connection handshake
/// (`+OK` to each command) and answers the `n`-th script call on a connection (from 0) after
/// `script_delay(n)`, or never (`None`), with "granted, plenty left".
async fn troubled_redis(script_delay: fn(u64) -> Option<Duration>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut scripts = 0u64;
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    let chunk = String::from_utf8_lossy(&buffer[..n]).to_ascii_uppercase();
                    let reply: Vec<u8> = if chunk.contains("EVAL") {
                        let Some(delay) = script_delay(scripts) else {
                            scripts += 1;
                            continue; // never answered
                        };
                        scripts += 1;
                        tokio::time::sleep(delay).await;
                        b"*4\r\n:1\r\n:999\r\n:0\r\n:0\r\n".to_vec()
                    } else {
                        // One `+OK` per command of the handshake (commands start with `*`).
                        let commands =
                            chunk.matches("\r\n*").count() + usize::from(chunk.starts_with('*'));
                        b"+OK\r\n".repeat(commands)
                    };
                    if socket.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A limited app whose limit is shared through the Redis at `url`, with a deadline of `timeout`.
async fn app_on(url: &str, tokens: &InMemoryTokens, timeout: Duration) -> (String, RedisLimiter) {
    let redis = RedisLimiter::builder(url)
        .prefix("test:troubled")
        .timeout(timeout)
        .build()
        .unwrap();
    let limit = RateLimitLayer::new("1000/s".parse().unwrap()).redis(redis.clone());
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(limit)
        .layer(ApiKeyLayer::new(tokens.clone()));
    (support::serve(app).await, redis)
}

fn a_key(tokens: &InMemoryTokens) -> String {
    tokens
        .create(CreateToken::new("org_1"))
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

/// A Redis that accepts connections and answers the handshake but never answers a script (a
/// server stuck on a slow command, say): every decision times out and the local buckets decide.
/// The limiter reconnects with a growing backoff, not once per timed-out request.
#[tokio::test]
async fn a_redis_that_connects_but_never_decides_is_not_reconnected_per_request() {
    let url = troubled_redis(|_| None).await;
    let tokens = InMemoryTokens::new();
    let key = a_key(&tokens);
    let (base, redis) = app_on(&url, &tokens, Duration::from_millis(5)).await;
    let client = reqwest::Client::new();

    let started = Instant::now();
    let mut requests = 0u64;
    while started.elapsed() < Duration::from_millis(1_200) {
        assert_eq!(status(&client, &base, &key).await, StatusCode::OK);
        requests += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = redis.stats();
    assert_eq!(stats.decisions, 0, "{stats:?}");
    assert_eq!(stats.fallbacks, requests, "{stats:?}");
    assert!(stats.connects >= 1, "the handshake works: {stats:?}");
    // Attempts at 0, then 100, 200, 400 and 800 ms of backoff after each: at most five in
    // 1.2 s (one per timed-out request before: dozens).
    assert!(
        stats.connects <= 5 && requests > 20,
        "{requests} requests: {stats:?}"
    );
}

/// A Redis that is sometimes slower than the deadline (every other script answered after
/// 200 ms, past a 50 ms deadline): the late answers still arrive in order on the multiplexed
/// connection, so the connection is kept. It was dropped and rebuilt at each timeout, and, the
/// backoff being reset by the decision before, once per slow answer.
#[tokio::test]
async fn a_redis_that_is_sometimes_slow_keeps_its_connection() {
    let url = troubled_redis(|n| {
        Some(if n % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(200)
        })
    })
    .await;
    let tokens = InMemoryTokens::new();
    let key = a_key(&tokens);
    let (base, redis) = app_on(&url, &tokens, Duration::from_millis(50)).await;
    let client = reqwest::Client::new();

    for _ in 0..12 {
        assert_eq!(status(&client, &base, &key).await, StatusCode::OK);
        // Longer than a slow answer: each request finds the connection idle.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = redis.stats();
    assert!(
        stats.decisions >= 3 && stats.fallbacks >= 3,
        "both kinds of answers: {stats:?}"
    );
    assert_eq!(stats.decisions + stats.fallbacks, 12, "{stats:?}");
    assert_eq!(stats.connects, 1, "{stats:?}");
}
