//! Revocations across instances over a real Redis: every test starts its own `redis-server` on
//! a free loopback port (killed on drop; without the binary the tests fail, unless
//! `AXUM_API_KEY_SKIP_REDIS_TESTS=1`), its own fake Scalekit, and two "instances" (routers
//! with their own cache and feed) served over HTTP on 127.0.0.1.
//!
//! Caches use a 300 s TTL, so an instance that refuses a cached key within a second can only
//! have heard of the revocation through Redis.

mod support;

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{CreateToken, KeyEventSource, KeyEvents, UpdateToken};
use axum_api_key::redis::RedisRevocations;
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::testing::FakeScalekit;
use axum_api_key::{ApiKey, ApiKeyLayer, Authenticated, TokenInfo, ValidateError, Validator};
use support::redis_server::{RedisServer, SKIP_VAR};
use tokio::sync::{Notify, Semaphore};

/// How soon another instance must refuse a revoked key.
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long connecting (or reconnecting) may take on a loaded machine.
const CONNECT: Duration = Duration::from_secs(15);
const TTL: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// An instance: a router over its own cache over its own Scalekit client, with a gate that can
// hold validations after the upstream has answered (to race them against revocations).

struct Gate {
    closed: AtomicBool,
    held: Notify,
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            closed: AtomicBool::new(false),
            held: Notify::new(),
            open: Semaphore::new(0),
        }
    }
}

#[derive(Clone)]
struct Gated {
    client: ScalekitClient,
    gate: Arc<Gate>,
}

impl Validator for Gated {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let answer = self.client.validate(key).await;
        if self.gate.closed.load(Ordering::SeqCst) {
            self.gate.held.notify_one();
            let _permit = self.gate.open.acquire().await;
        }
        answer
    }
}

impl KeyEventSource for Gated {
    fn key_events(&self) -> &KeyEvents {
        self.client.key_events()
    }
}

struct Instance {
    base: String,
    client: ScalekitClient,
    cache: CachedValidator<Gated>,
    feed: RedisRevocations,
    gate: Arc<Gate>,
}

impl Instance {
    async fn start(fake: &FakeScalekit, redis_url: &str, channel: &str, name: &str) -> Self {
        let client = fake.client();
        let gate = Arc::new(Gate::default());
        let cache = CachedValidator::builder(Gated {
            client: client.clone(),
            gate: gate.clone(),
        })
        .ttl(TTL)
        .build();
        let feed = RedisRevocations::builder(redis_url)
            .channel(channel)
            .origin(name)
            .backoff(Duration::from_millis(20), Duration::from_millis(300))
            .ping_interval(Duration::from_millis(500))
            .build()
            .expect("feed");
        feed.attach(&cache);
        let app = Router::new()
            .route(
                "/me",
                get(|info: TokenInfo| async move { info.token_id().to_owned() }),
            )
            .route(
                "/env",
                get(|info: TokenInfo| async move { info.claim("env").unwrap_or("-").to_owned() }),
            )
            .layer(ApiKeyLayer::new(cache.clone()));
        let base = support::serve(app).await;
        Self {
            base,
            client,
            cache,
            feed,
            gate,
        }
    }

    async fn status(&self, key: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}/me", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// The `env` claim this instance sees for `key` ("-" without one).
    async fn env_claim(&self, key: &str) -> String {
        let answer = reqwest::Client::new()
            .get(format!("{}/env", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
        answer.text().await.expect("body")
    }

    async fn wait_connected(&self, connected: bool) {
        eventually(CONNECT, "feed state", || async {
            self.feed.is_connected() == connected
        })
        .await;
    }
}

/// Polls `check` until it holds, failing after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Setup {
    redis: RedisServer,
    fake: FakeScalekit,
    a: Instance,
    b: Instance,
    channel: String,
}

async fn setup() -> Option<Setup> {
    let redis = RedisServer::start()?;
    let fake = FakeScalekit::start().await;
    let channel = format!("test:{}", rand_suffix());
    let a = Instance::start(&fake, &redis.url(), &channel, "instance-a").await;
    let b = Instance::start(&fake, &redis.url(), &channel, "instance-b").await;
    a.wait_connected(true).await;
    b.wait_connected(true).await;
    Some(Setup {
        redis,
        fake,
        a,
        b,
        channel,
    })
}

fn rand_suffix() -> String {
    format!("{}-{:?}", std::process::id(), Instant::now())
}

/// A key minted at the fake (so every instance's upstream accepts it).
fn mint(fake: &FakeScalekit) -> (String, String) {
    let created = fake.tokens().create(CreateToken::new("org_1")).unwrap();
    (created.key.expose_secret().to_owned(), created.token_id)
}

/// Makes both instances cache `key` (the second request on each is a hit).
async fn cache_everywhere(setup: &Setup, key: &str) {
    for instance in [&setup.a, &setup.b] {
        assert_eq!(instance.status(key).await, 200);
        let hits = instance.cache.stats().hits;
        assert_eq!(instance.status(key).await, 200);
        assert_eq!(instance.cache.stats().hits, hits + 1, "cached");
    }
}

async fn refused_within(instance: &Instance, key: &str, within: Duration) -> Duration {
    eventually(within, "the other instance refuses the key", || async {
        instance.status(key).await == 401
    })
    .await
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_by_token_id_reaches_the_other_instance() {
    let Some(setup) = setup().await else { return };

    // Through the cache alone (the key stays valid at the fake): only the feed can tell B.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    setup.a.cache.revoke_token_id(&token_id);
    assert_eq!(
        setup.a.status(&key).await,
        401,
        "local revocation is synchronous"
    );
    let took = refused_within(&setup.b, &key, PROPAGATION).await;
    eprintln!("propagated in {took:?}");

    // Through the Scalekit client of instance A.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    setup.a.client.invalidate_token(&token_id).await.unwrap();
    refused_within(&setup.b, &key, PROPAGATION).await;

    let (a, b) = (setup.a.feed.stats(), setup.b.feed.stats());
    assert_eq!(a.events_published, 2);
    assert_eq!(a.events_received, 0, "A skips its own messages");
    assert_eq!(b.events_received, 2);
    assert_eq!((a.malformed, b.malformed), (0, 0));
}

/// An update (new claims) made through instance A reaches B's cache at once: without the feed
/// B would serve the old claims for its whole 300 s TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_reaches_the_other_instance() {
    let Some(setup) = setup().await else { return };
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    assert_eq!(setup.b.env_claim(&key).await, "-");

    // Through A's Scalekit client: its event reaches A's cache, which relays it.
    let claims = [("env".to_owned(), "staging".to_owned())].into();
    setup
        .a
        .client
        .update_token(UpdateToken::new(&token_id).custom_claims(claims))
        .await
        .unwrap();
    let took = eventually(PROPAGATION, "B serves the new claims", || async {
        setup.b.env_claim(&key).await == "staging"
    })
    .await;
    eprintln!("update propagated in {took:?}");
    assert_eq!(setup.a.env_claim(&key).await, "staging");

    // Updated outside every instance (the Scalekit dashboard, say), then announced by hand.
    let claims = [("env".to_owned(), "production".to_owned())].into();
    setup
        .fake
        .tokens()
        .update(UpdateToken::new(&token_id).custom_claims(claims))
        .unwrap();
    assert_eq!(setup.b.env_claim(&key).await, "staging", "B's cache holds");
    assert!(setup.a.feed.publish_updated(&token_id));
    eventually(PROPAGATION, "B serves the newer claims", || async {
        setup.b.env_claim(&key).await == "production"
    })
    .await;

    // Still valid everywhere: an update is no revocation.
    assert_eq!(setup.b.status(&key).await, 200);
    let (a, b) = (setup.a.feed.stats(), setup.b.feed.stats());
    assert_eq!(a.events_published, 2, "each update announced once");
    assert_eq!(a.updates_received, 0, "A skips its own messages");
    assert_eq!(b.updates_received, 2);
    assert_eq!((a.events_received, b.events_received), (0, 0));
    assert_eq!((a.unknown, b.unknown), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_by_key_is_announced_by_token_id_only() {
    let Some(setup) = setup().await else { return };
    // A raw subscriber sees what goes on the wire.
    let raw = ::redis::Client::open(setup.redis.url()).unwrap();
    let mut pubsub = raw.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&setup.channel).await.unwrap();
    let mut wire = pubsub.into_on_message();

    // By key through the Scalekit client: it looks the id up before revoking.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    setup.a.client.invalidate_token(&key).await.unwrap();
    refused_within(&setup.b, &key, PROPAGATION).await;
    let payload = next_payload(&mut wire).await;
    assert!(payload.contains(&token_id), "{payload}");
    assert!(!payload.contains(&key), "never the key");
    let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["type"], "revoked");
    assert_eq!(json["origin"], "instance-a");
    assert!(json["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json.as_object().unwrap().len(), 5, "{json}");

    // By key through the cache, the key still valid upstream: the cache's own index names it.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    setup.a.cache.revoke_key(&ApiKey::new(key.clone()));
    refused_within(&setup.b, &key, PROPAGATION).await;
    let payload = next_payload(&mut wire).await;
    assert!(payload.contains(&token_id) && !payload.contains(&key));

    // By a key this instance never saw: its id is unknown, so nothing is announced.
    let (unseen, _) = mint(&setup.fake);
    setup.a.cache.revoke_key(&ApiKey::new(unseen));
    assert_eq!(setup.a.feed.stats().unresolved, 1);
    assert_eq!(setup.a.feed.stats().events_published, 2);
}

async fn next_payload(
    wire: &mut (impl futures_util::Stream<Item = ::redis::Msg> + Unpin),
) -> String {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(CONNECT, wire.next())
        .await
        .expect("a message on the channel")
        .expect("subscription open");
    String::from_utf8(message.get_payload_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_wins_over_a_validation_in_flight_on_the_other_instance() {
    let Some(setup) = setup().await else { return };
    let (key, token_id) = mint(&setup.fake);

    // B's upstream has said "valid", but the answer is held before it reaches the cache.
    setup.b.gate.closed.store(true, Ordering::SeqCst);
    let held = setup.b.gate.held.notified();
    let in_flight = tokio::spawn({
        let base = setup.b.base.clone();
        let key = key.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/me"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    tokio::time::timeout(CONNECT, held)
        .await
        .expect("validation held at the gate");

    // A revokes (through its cache only: the fake still says valid) and B hears of it.
    setup.a.cache.revoke_token_id(&token_id);
    eventually(PROPAGATION, "B receives the announcement", || async {
        setup.b.feed.stats().events_received == 1
    })
    .await;

    setup.b.gate.closed.store(false, Ordering::SeqCst);
    setup.b.gate.open.add_permits(1);
    assert_eq!(
        in_flight.await.unwrap(),
        401,
        "the held validation is refused"
    );
    // Not cached: the next request is no hit, and is refused (the fake still says valid).
    assert_eq!(setup.b.status(&key).await, 401);
    assert_eq!(setup.b.cache.stats().hits, 0);
    assert_eq!(setup.fake.tokens().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_requests_flowing_and_the_gap_is_flushed() {
    let Some(mut setup) = setup().await else {
        return;
    };
    let (cached, cached_id) = mint(&setup.fake);
    cache_everywhere(&setup, &cached).await;
    let flushes_before = setup.b.feed.stats().flushes;
    let cache_flushes_before = setup.b.cache.stats().flushes;

    setup.redis.kill();
    setup.a.wait_connected(false).await;
    setup.b.wait_connected(false).await;
    assert!(setup.b.feed.stats().gaps >= 1);

    // Requests keep flowing: cached keys from the cache, new keys through the upstream.
    assert_eq!(setup.b.status(&cached).await, 200);
    let (fresh, _) = mint(&setup.fake);
    assert_eq!(setup.b.status(&fresh).await, 200);
    assert_eq!(setup.a.status(&fresh).await, 200);

    // A revocation during the outage: A refuses at once; B only within its TTL (the bound
    // falls back to it), or when the gap is flushed.
    setup.a.client.invalidate_token(&cached_id).await.unwrap();
    assert_eq!(setup.a.status(&cached).await, 401);
    assert_eq!(
        setup.b.status(&cached).await,
        200,
        "stale on B while Redis is down"
    );

    setup.redis.restart();
    setup.a.wait_connected(true).await;
    setup.b.wait_connected(true).await;
    let stats = setup.b.feed.stats();
    assert!(stats.flushes > flushes_before, "{stats:?}");
    assert!(setup.b.cache.stats().flushes > cache_flushes_before);
    // The flush (and the announcement A retried, if B was back in time) makes B ask again.
    refused_within(&setup.b, &cached, PROPAGATION).await;
    eventually(CONNECT, "A's queued announcement goes out", || async {
        setup.a.feed.stats().events_published >= 1
    })
    .await;

    // And the feed works again both ways.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    setup.b.cache.revoke_token_id(&token_id);
    refused_within(&setup.a, &key, PROPAGATION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_ignored_and_counted() {
    let Some(setup) = setup().await else { return };
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;

    let raw = ::redis::Client::open(setup.redis.url()).unwrap();
    let mut conn = raw.get_multiplexed_async_connection().await.unwrap();
    let garbage: [&[u8]; 6] = [
        b"not json",
        b"\xff\x00\xfe",
        b"{}",
        br#"{"v":1,"type":"revoked"}"#,
        br#"{"v":1,"type":"revoked","token_id":"sk_the_key_itself_0123456789abcdefghijklmnop","at":"2026-01-01T00:00:00Z"}"#,
        br#"{"v":1,"type":"revoked","token_id":["apit_1"],"at":"2026-01-01T00:00:00Z"}"#,
    ];
    for payload in garbage {
        ::redis::cmd("PUBLISH")
            .arg(&setup.channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    }
    let unknown = format!(
        r#"{{"v":2,"type":"revoked","token_id":"{token_id}","at":"2026-01-01T00:00:00Z"}}"#
    );
    ::redis::cmd("PUBLISH")
        .arg(&setup.channel)
        .arg(unknown)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();

    eventually(CONNECT, "garbage counted", || async {
        let stats = setup.b.feed.stats();
        stats.malformed == 6 && stats.unknown == 1
    })
    .await;
    let stats = setup.b.feed.stats();
    assert!(stats.connected);
    assert_eq!(stats.events_received, 0);
    assert_eq!(stats.gaps, 0, "garbage does not break the subscription");
    assert_eq!(
        setup.b.status(&key).await,
        200,
        "an unknown version revokes nothing"
    );

    // A well-formed message still works afterwards.
    setup.a.cache.revoke_token_id(&token_id);
    refused_within(&setup.b, &key, PROPAGATION).await;
}

// ---------------------------------------------------------------------------------------------
// The keys CLI publishes its revocations.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_cli_announces_its_revocations() {
    let Some(binary) = support::example_binary("keys") else {
        eprintln!("SKIPPED: the keys example is not built (cargo test --all-features builds it)");
        return;
    };
    let Some(setup) = setup().await else { return };
    let run = |line: String| {
        let mut command = Command::new(&binary);
        command
            .args(line.split_whitespace())
            .env("SCALEKIT_ENVIRONMENT_URL", setup.fake.url())
            .env("SCALEKIT_CLIENT_ID", setup.fake.client_id())
            .env("SCALEKIT_CLIENT_SECRET", setup.fake.client_secret())
            .env("REDIS_URL", setup.redis.url())
            .env("REDIS_CHANNEL", &setup.channel)
            .env_remove("RUST_LOG");
        // Blocking wait off the runtime's workers, so the fake keeps serving.
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    // revoke by token id, then by key (the CLI looks the id up first).
    for by_key in [false, true] {
        let (key, token_id) = mint(&setup.fake);
        cache_everywhere(&setup, &key).await;
        let target = if by_key {
            key.clone()
        } else {
            token_id.clone()
        };
        let output = run(format!("revoke {target}")).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.contains("announced"), "{stdout}");
        // Both instances had it cached for 300 s: only the announcement can evict it.
        refused_within(&setup.b, &key, PROPAGATION).await;
        refused_within(&setup.a, &key, PROPAGATION).await;
    }

    // rotate: the old key goes everywhere.
    let (key, token_id) = mint(&setup.fake);
    cache_everywhere(&setup, &key).await;
    let output = run(format!("rotate {token_id}")).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    refused_within(&setup.b, &key, PROPAGATION).await;
    assert_eq!(setup.b.feed.stats().events_received, 3);
}

// ---------------------------------------------------------------------------------------------
// A flapping connection: the backoff grows, the flushes stay few.

/// A TCP proxy on 127.0.0.1 in front of `upstream` that closes each connection `hold` after
/// the server confirmed a `SUBSCRIBE` through it. Returns its port.
async fn flapping_proxy(upstream: u16, hold: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let n = server_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok(());
                        }
                        client_write.write_all(&buf[..n]).await?;
                        // The confirmation: `*3 $9 subscribe <channel> :1`.
                        if buf[..n].windows(9).any(|w| w == b"subscribe") {
                            break;
                        }
                    }
                    tokio::time::sleep(hold).await;
                    Ok::<_, std::io::Error>(())
                };
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
                // Dropping the halves closes both connections.
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_connection_backs_off_instead_of_flushing_the_cache_every_100_ms() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = flapping_proxy(redis.port, Duration::from_millis(50)).await;
    let fake = FakeScalekit::start().await;
    let cache = CachedValidator::new(fake.client());
    let attach_flushes = 1;
    // The default backoff (100 ms doubling to 5 s): what a user gets.
    let feed = RedisRevocations::builder(format!("redis://127.0.0.1:{proxy}"))
        .channel(format!("flap:{}", rand_suffix()))
        .build()
        .expect("feed");
    feed.attach(&cache);
    eventually(CONNECT, "the first subscription", || async {
        feed.stats().connects >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let stats = feed.stats();
    eprintln!("over ~4 s of flapping: {stats:?}");
    assert!(
        stats.gaps >= 2,
        "the proxy did drop the subscriptions: {stats:?}"
    );
    assert_eq!(stats.flushes, stats.connects, "one flush per subscription");
    // Backing off from 100 ms (jitter: half to full of each step), with a 50 ms session each
    // time, allows at most 7 subscriptions in 4 s; resetting the backoff on every subscription
    // (the old behaviour) made ~25.
    assert!(
        stats.flushes <= 8,
        "the cache was flushed {} times in ~4 s: the backoff does not grow",
        stats.flushes
    );
    // The cache counts the same flushes, and the one `attach` made (the first subscription
    // may come before `attach`, and then flushes no cache).
    let cache_flushes = cache.stats().flushes;
    assert!(
        cache_flushes >= stats.flushes && cache_flushes <= stats.flushes + attach_flushes + 1,
        "cache flushes {cache_flushes}, feed flushes {}",
        stats.flushes
    );
}

// ---------------------------------------------------------------------------------------------
// Without redis-server these tests fail, unless skipped on purpose.

/// Runs one test of this binary again, with a PATH on which no `redis-server` can be found.
fn rerun_without_redis_server(skip: Option<&str>) -> std::process::Output {
    let empty = std::env::temp_dir().join(format!("no-redis-{}", rand_suffix().replace(':', "_")));
    std::fs::create_dir_all(&empty).expect("an empty directory");
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command
        .args([
            "--exact",
            "a_revocation_by_token_id_reaches_the_other_instance",
        ])
        .args(["--test-threads", "1", "--nocapture"])
        .env("PATH", &empty)
        .env_remove(SKIP_VAR);
    if let Some(value) = skip {
        command.env(SKIP_VAR, value);
    }
    let output = command.output().expect("run this test binary again");
    let _ = std::fs::remove_dir(&empty);
    output
}

fn both(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn without_redis_server_the_tests_fail_unless_skipped_on_purpose() {
    let failed = rerun_without_redis_server(None);
    let output = both(&failed);
    assert!(
        !failed.status.success(),
        "a Redis test passed without redis-server:\n{output}"
    );
    assert!(
        output.contains("redis-server not found") && output.contains(SKIP_VAR),
        "the failure says what is missing and how to skip:\n{output}"
    );

    let skipped = rerun_without_redis_server(Some("1"));
    let output = both(&skipped);
    assert!(skipped.status.success(), "{output}");
    assert!(
        output.contains("SKIPPED") && output.contains("1 passed"),
        "{output}"
    );
}
