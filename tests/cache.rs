//! `CachedValidator` over real HTTP: an Axum app on 127.0.0.1:0 (`ApiKeyLayer` over the cache
//! over a controllable upstream), spoken to with reqwest.
//!
//! The upstream wrapper [`Upstream`] is generic over the inner validator, so the same tests can
//! run against a fake Scalekit server's client as easily as against `InMemoryTokens`.
#![cfg(feature = "cache")]

use std::collections::HashSet;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::{Router, routing::get};
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{CreateToken, KeyEvent, KeyEventSource, KeyEvents, REVOKE_AFTER_CLAIM};
use axum_api_key::request::Fingerprint;
use axum_api_key::validator::InvalidReason;
use axum_api_key::{
    ApiKey, ApiKeyLayer, Authenticated, InMemoryTokens, TokenInfo, ValidateError, Validator,
    validator_fn,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};

// ---------------------------------------------------------------------------------------------
// The controllable upstream.

/// Switches and counters shared by a test and its [`Upstream`].
struct Control {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Answer `Unavailable` instead of asking the inner validator.
    failing: AtomicBool,
    /// Hold every answer (already fetched from the inner validator) at the gate.
    holding: AtomicBool,
    gate: Semaphore,
    /// Told when a validation reaches the gate.
    at_gate: Notify,
    delay_ms: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            holding: AtomicBool::new(false),
            gate: Semaphore::new(0),
            at_gate: Notify::new(),
            delay_ms: AtomicU64::new(0),
        }
    }
}

impl Control {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }
    /// Opens the gate for every held validation (each passes and hands its permit back).
    fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
        self.gate.add_permits(1);
    }
    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

/// Counts, delays, fails and holds the validations of any inner validator.
struct Upstream<V> {
    inner: V,
    control: Arc<Control>,
}

impl<V> Upstream<V> {
    fn new(inner: V) -> (Self, Arc<Control>) {
        let control = Arc::new(Control::default());
        (
            Self {
                inner,
                control: control.clone(),
            },
            control,
        )
    }
}

impl<V: Validator> Validator for Upstream<V> {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let control = &self.control;
        control.calls.fetch_add(1, Ordering::SeqCst);
        let now = control.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        control.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = control.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let answer = if control.failing.load(Ordering::SeqCst) {
            Err(ValidateError::unavailable("upstream switched off"))
        } else {
            self.inner.validate(key).await
        };
        if control.holding.load(Ordering::SeqCst) {
            control.at_gate.notify_one();
            drop(control.gate.acquire().await.unwrap());
        }
        control.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    }
}

impl<V: KeyEventSource> KeyEventSource for Upstream<V> {
    fn key_events(&self) -> &KeyEvents {
        self.inner.key_events()
    }
}

/// A validator that says yes to every key, as token `apit_1` (a remote upstream that has not
/// heard of a revocation yet).
fn always_yes() -> impl Validator {
    validator_fn(|_key| async { Ok(TokenInfo::builder("apit_1", "org_1").build()) })
}

/// Keys that become valid when the test says so, announcing it with `KeyEvent::Created`.
/// Clones share the keys and the events.
#[derive(Clone, Default)]
struct LateKeys {
    known: Arc<Mutex<HashSet<String>>>,
    events: KeyEvents,
}

impl LateKeys {
    fn add(&self, key: &str) {
        self.known.lock().unwrap().insert(key.to_owned());
        self.events.publish(&KeyEvent::Created {
            fingerprint: Fingerprint::of(key),
            token_id: "apit_late".to_owned(),
        });
    }
}

impl Validator for LateKeys {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        if self.known.lock().unwrap().contains(key.expose_secret()) {
            Ok(TokenInfo::builder("apit_late", "org_1").build().into())
        } else {
            Err(ValidateError::Invalid(InvalidReason::Unknown))
        }
    }
}

impl KeyEventSource for LateKeys {
    fn key_events(&self) -> &KeyEvents {
        &self.events
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing.

async fn whoami(auth: Authenticated) -> String {
    let freshness = if auth.is_degraded() {
        "degraded"
    } else {
        "fresh"
    };
    format!("{} {freshness}", auth.info().token_id())
}

/// Serves `/whoami` behind the layer on an ephemeral port; returns its URL.
async fn serve<V: Validator>(validator: V) -> String {
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(ApiKeyLayer::new(validator));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/whoami")
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

async fn call(client: &reqwest::Client, url: &str, key: &str) -> Answer {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned()),
        body: response.text().await.unwrap(),
    }
}

async fn status(client: &reqwest::Client, url: &str, key: &str) -> u16 {
    call(client, url, key).await.status
}

/// A key of the right shape (77 Base62 characters) that no validator knows.
fn garbage(n: usize) -> String {
    format!("garbage{n:070}")
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Polls `future` once, with a waker that does nothing: lets a test set by hand the order in
/// which two callers of one flight move on (the one awaited later is polled again then).
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut context)
}

fn new_key(tokens: &InMemoryTokens) -> (String, String) {
    let created = tokens.create(CreateToken::new("org_1")).unwrap();
    (created.key.expose_secret().to_owned(), created.token_id)
}

// ---------------------------------------------------------------------------------------------
// Single flight and the negative cache.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_make_one_upstream_call() {
    let tokens = InMemoryTokens::new();
    let (key, token_id) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    // A budget of one: waiters coalesced on the flight must not spend it.
    let cache = CachedValidator::builder(upstream).max_in_flight(1).build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    control.hold();
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            tokio::spawn(async move { call(&client, &url, &key).await })
        })
        .collect();
    // Every request is parked on the one flight before it may finish.
    eventually("200 misses", || cache.stats().misses == 200).await;
    control.release();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, format!("{token_id} fresh"));
    }
    assert_eq!(control.calls(), 1);
    let stats = cache.stats();
    assert_eq!((stats.upstream_calls, stats.budget_rejections), (1, 0));

    assert_eq!(status(&client, &url, &key).await, 200);
    assert_eq!(cache.stats().hits, 1);
    assert_eq!(control.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_negative_cache_absorbs_repeated_garbage() {
    let (upstream, control) = Upstream::new(InMemoryTokens::new());
    let cache = CachedValidator::builder(upstream).build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    for _ in 0..20 {
        assert_eq!(status(&client, &url, &garbage(1)).await, 401);
    }
    assert_eq!(control.calls(), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.negative_hits), (1, 19));
}

// ---------------------------------------------------------------------------------------------
// The upstream budget.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_is_bounded_by_the_budget_while_cached_keys_flow() {
    const MAX_IN_FLIGHT: usize = 4;
    const FLOOD: usize = 2000;
    let tokens = InMemoryTokens::new();
    let (key, _) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream)
        .max_in_flight(MAX_IN_FLIGHT)
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &url, &key).await, 200);
    control.delay(Duration::from_millis(20));

    let flood = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move {
            let concurrency = Arc::new(Semaphore::new(64));
            let mut requests = Vec::with_capacity(FLOOD);
            for n in 0..FLOOD {
                let permit = concurrency.clone().acquire_owned().await.unwrap();
                let (client, url) = (client.clone(), url.clone());
                requests.push(tokio::spawn(async move {
                    let answer = call(&client, &url, &garbage(n)).await;
                    drop(permit);
                    answer
                }));
            }
            let mut answers = Vec::with_capacity(FLOOD);
            for request in requests {
                answers.push(request.await.unwrap());
            }
            answers
        })
    };
    let mut valid_checks = 0;
    while !flood.is_finished() {
        assert_eq!(
            status(&client, &url, &key).await,
            200,
            "a cached key was refused"
        );
        valid_checks += 1;
    }
    let answers = flood.await.unwrap();

    assert!(valid_checks > 0);
    assert!(control.peak_in_flight.load(Ordering::SeqCst) <= MAX_IN_FLIGHT);
    let rejected: Vec<_> = answers.iter().filter(|a| a.status == 503).collect();
    let refused = answers.iter().filter(|a| a.status == 401).count();
    assert_eq!(rejected.len() + refused, FLOOD);
    assert!(!rejected.is_empty(), "the budget never ran out");
    assert!(
        rejected
            .iter()
            .all(|a| a.retry_after.as_deref() == Some("1"))
    );
    let stats = cache.stats();
    assert_eq!(stats.budget_rejections, rejected.len() as u64);
    assert_eq!(stats.upstream_calls as usize, control.calls());
    assert!(control.calls() < FLOOD + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_rate_cap_refuses_misses_beyond_the_bucket() {
    let (upstream, control) = Upstream::new(InMemoryTokens::new());
    let cache = CachedValidator::builder(upstream)
        .max_upstream_rate(5)
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for n in 0..40 {
        statuses.push(status(&client, &url, &garbage(n)).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One second of burst plus five a second: a bound, not a timing assertion.
    assert!((control.calls() as f64) <= 5.0 + 5.0 * elapsed + 1.0);
    let rejected = statuses.iter().filter(|s| **s == 503).count();
    assert!(rejected > 0);
    assert_eq!(cache.stats().budget_rejections, rejected as u64);
}

// ---------------------------------------------------------------------------------------------
// The expiry clamp.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_never_outlives_the_key_expiry() {
    // An upstream that keeps saying yes with the same (soon past) expiry: only the cache's
    // clamp and its refusal of expired answers stand between the key and a 60 s TTL.
    let expiry = OffsetDateTime::now_utc() + time::Duration::milliseconds(1000);
    let (upstream, control) = Upstream::new(validator_fn(move |_key| async move {
        Ok(TokenInfo::builder("apit_1", "org_1").expiry(expiry).build())
    }));
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_secs(60))
        .build_standalone();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    let key = garbage(7);

    assert_eq!(status(&client, &url, &key).await, 200);
    assert_eq!(status(&client, &url, &key).await, 200);
    assert_eq!(control.calls(), 1);

    let left = expiry - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(100))
        .await;
    assert_eq!(status(&client, &url, &key).await, 401);
    assert_eq!(status(&client, &url, &key).await, 401);
    // One more upstream call (the answer was expired, hence refused and kept as negative).
    assert_eq!(control.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_expired_answer_is_refused_and_not_cached() {
    let expired = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let upstream = validator_fn(move |_key| async move {
        Ok(TokenInfo::builder("apit_1", "org_1")
            .expiry(expired)
            .build())
    });
    let cache = CachedValidator::builder(upstream).build_standalone();
    let expired_key = ApiKey::new(garbage(8));
    assert_eq!(
        cache.validate(&expired_key).await.unwrap_err(),
        ValidateError::Invalid(InvalidReason::Expired)
    );
    assert_eq!(cache.stats().hits, 0);
}

/// An answer fetched across a flush is not cached, only handed to the flight's callers: an
/// expired one (past its `expiry`, or past a rotation's `revoke_after` deadline) is refused on
/// that path too.
#[tokio::test]
async fn an_expired_answer_fetched_across_a_flush_is_refused() {
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let answers = [
        TokenInfo::builder("apit_1", "org_1").expiry(past).build(),
        TokenInfo::builder("apit_1", "org_1")
            .claim(REVOKE_AFTER_CLAIM, past.unix_timestamp().to_string())
            .build(),
    ];
    for (n, answer) in answers.into_iter().enumerate() {
        let (upstream, control) = Upstream::new(validator_fn(move |_key| {
            let answer = answer.clone();
            async move { Ok(answer) }
        }));
        let cache = CachedValidator::builder(upstream).build_standalone();
        let key = ApiKey::new(garbage(30 + n));
        control.hold();
        let mut flight = pin!(cache.validate(&key));
        assert!(poll_once(&mut flight).is_pending());
        assert_eq!(control.calls(), 1, "the flight is at the gate");
        cache.flush_positive(); // e.g. a revocation feed reconnected
        control.release();
        assert_eq!(
            flight.await.unwrap_err(),
            ValidateError::Invalid(InvalidReason::Expired),
            "answer {n}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Revocation wins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_wins_over_a_validation_in_flight() {
    let tokens = InMemoryTokens::new();
    let (key, token_id) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream).build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    control.hold();
    let in_flight = {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tokio::spawn(async move { status(&client, &url, &key).await })
    };
    // The upstream has said yes; its answer is held before reaching the cache.
    control.at_gate.notified().await;
    tokens.invalidate(&token_id);
    control.release();

    assert_eq!(in_flight.await.unwrap(), 401);
    assert_eq!(status(&client, &url, &key).await, 401);
    assert_eq!(cache.stats().hits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_the_cache_wins_even_when_the_upstream_still_says_yes() {
    let (upstream, control) = Upstream::new(always_yes());
    let cache = CachedValidator::builder(upstream).build_standalone();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    let key = garbage(9);

    control.hold();
    let in_flight = {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tokio::spawn(async move { status(&client, &url, &key).await })
    };
    control.at_gate.notified().await;
    cache.revoke_token_id("apit_1");
    control.release();

    assert_eq!(in_flight.await.unwrap(), 401);
    assert_eq!(status(&client, &url, &key).await, 401);
    // Even with every cached answer gone, the tombstone refuses the upstream's yes.
    cache.invalidate_all();
    assert_eq!(status(&client, &url, &key).await, 401);
    assert_eq!(control.calls(), 2);
    assert_eq!(cache.stats().hits, 0);
}

/// Rule 4 for the answers a flight hands to its callers without caching them: a revocation
/// that returns after the flight vetted its answer, but before a caller waiting on that
/// flight has its answer, wins. `stale` picks the answer: one fetched across a flush, or a
/// stale record served because the upstream is down. The interleaving is set by hand.
async fn a_revocation_wins_over_an_answer_not_yet_handed_to_a_waiter(stale: bool) {
    let (upstream, control) = Upstream::new(always_yes());
    let cache = if stale {
        // TTL 0: every request asks the upstream, and the stale record backs it.
        CachedValidator::builder(upstream)
            .ttl(Duration::ZERO)
            .stale_if_error(Duration::from_secs(60))
            .build_standalone()
    } else {
        CachedValidator::builder(upstream).build_standalone()
    };
    let key = ApiKey::new(garbage(if stale { 41 } else { 40 }));
    if stale {
        assert!(!cache.validate(&key).await.unwrap().is_degraded());
        control.fail(true);
    }
    let calls = control.calls();

    control.hold();
    let mut first = pin!(cache.validate(&key)); // starts the flight
    let mut waiter = pin!(cache.validate(&key)); // waits on it
    assert!(poll_once(&mut first).is_pending());
    assert_eq!(control.calls(), calls + 1, "the flight is at the gate");
    assert!(poll_once(&mut waiter).is_pending());
    if !stale {
        cache.flush_positive(); // the answer cannot be cached, only handed out
    }
    control.release();
    // The flight ends: its answer is vetted and handed to the first caller...
    let answer = first.await.unwrap();
    assert_eq!(
        (answer.info().token_id(), answer.is_degraded()),
        ("apit_1", stale)
    );
    // ...then the key is revoked here, before the waiter has looked at its answer.
    cache.revoke_token_id("apit_1");
    assert_eq!(
        waiter.await.unwrap_err(),
        ValidateError::Invalid(InvalidReason::Revoked)
    );
    assert_eq!(control.calls(), calls + 1, "the waiter shared the flight");
}

#[tokio::test]
async fn a_revocation_wins_over_an_uncacheable_answer_not_yet_handed_to_a_waiter() {
    a_revocation_wins_over_an_answer_not_yet_handed_to_a_waiter(false).await;
}

#[tokio::test]
async fn a_revocation_wins_over_a_stale_answer_not_yet_handed_to_a_waiter() {
    a_revocation_wins_over_an_answer_not_yet_handed_to_a_waiter(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_through_the_store_by_id_or_key_evicts_at_once() {
    let tokens = InMemoryTokens::new();
    let (by_id, by_id_token) = new_key(&tokens);
    let (by_key, _) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_secs(60))
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    for key in [&by_id, &by_key, &by_id, &by_key] {
        assert_eq!(status(&client, &url, key).await, 200);
    }
    assert_eq!(control.calls(), 2);

    tokens.invalidate(&by_id_token);
    assert_eq!(status(&client, &url, &by_id).await, 401);
    assert_eq!(status(&client, &url, &by_key).await, 200);
    tokens.invalidate(&by_key);
    assert_eq!(status(&client, &url, &by_key).await, 401);
    assert_eq!(cache.stats().revocations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_on_the_cache_evicts_it_at_once() {
    let (upstream, _control) = Upstream::new(always_yes());
    let cache = CachedValidator::builder(upstream).build_standalone();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    let (key, other) = (garbage(10), garbage(11));

    assert_eq!(status(&client, &url, &key).await, 200);
    assert_eq!(status(&client, &url, &other).await, 200);
    cache.revoke_key(&ApiKey::new(key.clone()));
    assert_eq!(status(&client, &url, &key).await, 401);
    // A revocation by key does not touch other keys, even with the same token id here.
    assert_eq!(status(&client, &url, &other).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_key_clears_its_negative_entry() {
    let late = LateKeys::default();
    let (upstream, control) = Upstream::new(late.clone());
    let cache = CachedValidator::builder(upstream)
        .negative_ttl(Duration::from_secs(60))
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    let key = garbage(12);

    assert_eq!(status(&client, &url, &key).await, 401);
    assert_eq!(status(&client, &url, &key).await, 401);
    assert_eq!((control.calls(), cache.stats().negative_hits), (1, 1));
    late.add(&key);
    assert_eq!(status(&client, &url, &key).await, 200);
    assert_eq!(control.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// Stale-if-error.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_accepts_recent_keys_while_the_upstream_is_down() {
    let tokens = InMemoryTokens::new();
    let (key, token_id) = new_key(&tokens);
    let (revoked, revoked_id) = new_key(&tokens);
    let expiring = tokens
        .create(
            CreateToken::new("org_1")
                .expiry(OffsetDateTime::now_utc() + time::Duration::milliseconds(700)),
        )
        .unwrap();
    let expiring = expiring.key.expose_secret().to_owned();
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(30))
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    for k in [&key, &revoked, &expiring] {
        assert_eq!(status(&client, &url, k).await, 200);
    }

    control.fail(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = call(&client, &url, &key).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, format!("{token_id} degraded"));
    assert_eq!(cache.stats().stale_served, 1);

    // Unknown keys still cannot be told apart from good ones: 503.
    let unknown = call(&client, &url, &garbage(13)).await;
    assert_eq!(unknown.status, 503);
    assert!(unknown.retry_after.is_some());
    // Revoked keys never come back through the stale record.
    tokens.invalidate(&revoked_id);
    assert_eq!(status(&client, &url, &revoked).await, 401);
    // Nor do keys past their expiry: the stale record died with the key, so the cache cannot
    // tell any more (503, never 200).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&client, &url, &expiring).await, 503);
    assert_eq!(cache.stats().stale_served, 1);

    control.fail(false);
    let answer = call(&client, &url, &key).await;
    assert_eq!(answer.body, format!("{token_id} fresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_upstream_refused_never_comes_back_through_stale_if_error() {
    let tokens = InMemoryTokens::new();
    let (key, token_id) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    // Standalone: the revocation below happens "in Scalekit's dashboard", unheard by the cache.
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_millis(200))
        .negative_ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(60))
        .build_standalone();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &url, &key).await, 200);

    tokens.invalidate(&token_id);
    tokio::time::sleep(Duration::from_millis(300)).await; // past the TTL: the upstream is asked
    assert_eq!(status(&client, &url, &key).await, 401);
    tokio::time::sleep(Duration::from_millis(300)).await; // past the negative TTL too

    // An upstream fault now must not revive the refused key from its stale record.
    control.fail(true);
    let answer = call(&client, &url, &key).await;
    assert_eq!(
        answer.status, 503,
        "a refused key came back: {}",
        answer.body
    );
    assert_eq!(cache.stats().stale_served, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_does_not_trigger_stale_if_error() {
    let tokens = InMemoryTokens::new();
    let (key, _) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_millis(200))
        .stale_if_error(Duration::from_secs(60))
        .max_in_flight(1)
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &url, &key).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await; // only the stale record is left

    // A garbage key takes the only upstream slot and is held there.
    control.hold();
    let at_gate = control.at_gate.notified();
    let flood = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { status(&client, &url, &garbage(1)).await }
    });
    at_gate.await;
    // The budget is spent by someone else's flood: 503, not "degraded" 200 from the stale record.
    let answer = call(&client, &url, &key).await;
    assert_eq!(answer.status, 503, "served stale: {}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(cache.stats().stale_served, 0);

    control.release();
    assert_eq!(flood.await.unwrap(), 401);
    assert_eq!(status(&client, &url, &key).await, 200);
}

/// The upstream's own rate limit (a 429) is not an outage: a flood of random keys can cause
/// it, so it must not switch the cache into serving stale answers. The client still gets
/// 503 with the upstream's `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_rate_limit_does_not_trigger_stale_if_error() {
    // 0: answers, 1: rate-limited (429), 2: down.
    let mode = Arc::new(AtomicUsize::new(0));
    let upstream = validator_fn({
        let mode = mode.clone();
        move |_key| {
            let mode = mode.load(Ordering::SeqCst);
            async move {
                match mode {
                    0 => Ok(TokenInfo::builder("apit_1", "org_1").build()),
                    1 => Err(ValidateError::UpstreamRateLimited {
                        retry_after: Some(Duration::from_secs(7)),
                    }),
                    _ => Err(ValidateError::unavailable("connection refused")),
                }
            }
        }
    });
    // TTL 0: every request asks the upstream, and the stale record backs it.
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::ZERO)
        .stale_if_error(Duration::from_secs(60))
        .build_standalone();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    let key = garbage(42);
    assert_eq!(call(&client, &url, &key).await.body, "apit_1 fresh");

    mode.store(1, Ordering::SeqCst);
    let answer = call(&client, &url, &key).await;
    assert_eq!(answer.status, 503, "served stale: {}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("7"));
    assert_eq!(cache.stats().stale_served, 0);

    // An outage still does.
    mode.store(2, Ordering::SeqCst);
    assert_eq!(call(&client, &url, &key).await.body, "apit_1 degraded");
    assert_eq!(cache.stats().stale_served, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_if_error_a_down_upstream_means_503() {
    let tokens = InMemoryTokens::new();
    let (key, _) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream)
        .ttl(Duration::from_millis(200))
        .build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();
    assert_eq!(status(&client, &url, &key).await, 200);

    control.fail(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = call(&client, &url, &key).await;
    assert_eq!(answer.status, 503);
    assert!(answer.retry_after.is_some());
    // "Unavailable" is not cached: the next request asks again.
    let calls = control.calls();
    assert_eq!(status(&client, &url, &key).await, 503);
    assert_eq!(control.calls(), calls + 1);
    let stats = cache.stats();
    assert_eq!((stats.stale_served, stats.upstream_errors), (0, 2));
}

// ---------------------------------------------------------------------------------------------
// Stats and flushes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_what_happened() {
    let tokens = InMemoryTokens::new();
    let (key, token_id) = new_key(&tokens);
    let (upstream, control) = Upstream::new(tokens.clone());
    let cache = CachedValidator::builder(upstream).build();
    let url = serve(cache.clone()).await;
    let client = reqwest::Client::new();

    assert_eq!(status(&client, &url, &key).await, 200); // miss
    assert_eq!(status(&client, &url, &key).await, 200); // hit
    assert_eq!(status(&client, &url, &garbage(14)).await, 401); // miss
    assert_eq!(status(&client, &url, &garbage(14)).await, 401); // negative hit
    cache.flush_positive();
    assert_eq!(status(&client, &url, &key).await, 200); // miss again after the flush

    let stats = cache.stats();
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.misses, 3);
    assert_eq!(stats.negative_hits, 1);
    assert_eq!(stats.upstream_calls, 3);
    assert_eq!(control.calls(), 3);
    assert_eq!(stats.flushes, 1);
    assert_eq!((stats.upstream_errors, stats.budget_rejections), (0, 0));
    assert_eq!((stats.stale_served, stats.revocations), (0, 0));

    tokens.invalidate(&token_id);
    assert_eq!(status(&client, &url, &key).await, 401); // refused by the tombstone
    let stats = cache.stats();
    assert_eq!(stats.revocations, 1);
    // Refused without asking the upstream: the revocation mapped the id to the fingerprint.
    assert_eq!(stats.upstream_calls, 3);
    assert_eq!(stats.hits + stats.misses + stats.negative_hits, 6);
}

// ---------------------------------------------------------------------------------------------
// Key management through the cache.

/// A store with two keys, both validated through a cache built over it, whose TTL (an hour)
/// outlasts any test: only an update can make it ask again. The keys, then the first's id.
async fn two_cached_keys() -> (
    InMemoryTokens,
    CachedValidator<InMemoryTokens>,
    [String; 2],
    String,
) {
    let tokens = InMemoryTokens::new();
    let (a, a_id) = new_key(&tokens);
    let (b, _) = new_key(&tokens);
    let cache = CachedValidator::builder(tokens.clone())
        .ttl(Duration::from_secs(3600))
        .build();
    for key in [&a, &b] {
        cache.validate(&ApiKey::new(key.as_str())).await.unwrap();
    }
    (tokens, cache, [a, b], a_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_the_cache_forgets_that_key_only() {
    use axum_api_key::KeyStore;
    use axum_api_key::keys::UpdateToken;

    let (_tokens, cache, [a, b], a_id) = two_cached_keys().await;
    let before = cache.stats().upstream_calls;

    let claims = [("env".to_owned(), "staging".to_owned())].into();
    KeyStore::update(&cache, UpdateToken::new(a_id).custom_claims(claims))
        .await
        .unwrap();

    // Another tenant's key stays cached: one key's update never flushes everyone's answers.
    cache.validate(&ApiKey::new(b.as_str())).await.unwrap();
    assert_eq!(cache.stats().upstream_calls, before);
    // The updated key is asked again at once, and carries its new facts.
    let auth = cache.validate(&ApiKey::new(a.as_str())).await.unwrap();
    assert_eq!(auth.info().claim("env"), Some("staging"));
    assert_eq!(cache.stats().upstream_calls, before + 1);
}

/// Validates `key` through `cache` until its `env` claim reads `want`, for at most two seconds.
async fn claim_becomes(cache: &CachedValidator<InMemoryTokens>, key: &str, want: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let auth = cache.validate(&ApiKey::new(key)).await.unwrap();
        if auth.info().claim("env") == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_through_the_store_itself_reaches_a_cache_subscribed_to_it() {
    use axum_api_key::keys::UpdateToken;

    let (tokens, cache, [a, b], a_id) = two_cached_keys().await;
    let before = cache.stats().upstream_calls;

    // Through the store, not the cache (an admin client sharing the validator's events).
    let claims = [("env".to_owned(), "staging".to_owned())].into();
    tokens
        .update(UpdateToken::new(a_id).custom_claims(claims))
        .unwrap();

    assert!(
        claim_becomes(&cache, &a, "staging").await,
        "the cache kept serving the key's old facts"
    );
    // One new upstream call for the updated key; the other key is still a hit.
    assert_eq!(cache.stats().upstream_calls, before + 1);
    cache.validate(&ApiKey::new(b.as_str())).await.unwrap();
    assert_eq!(cache.stats().upstream_calls, before + 1);
}

/// Records the events a cache tells its `local_revocations` listeners.
#[derive(Default)]
struct Told(Mutex<Vec<KeyEvent>>);

impl axum_api_key::keys::KeyEventListener for Told {
    fn on_event(&self, event: &KeyEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Told {
    fn updates_of(&self, token_id: &str) -> usize {
        let told = self.0.lock().unwrap();
        told.iter()
            .filter(|event| matches!(event, KeyEvent::Updated { token_id: id } if id == token_id))
            .count()
    }
}

/// What a Redis feed relays: every update applied here from a local source is told exactly
/// once, whether the store announced it too (a subscribed cache hears both the store's event
/// and its own `update`), announced nothing (a cache that does not listen to its store), or the
/// update was made through the store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_update_is_told_to_listeners_once() {
    use axum_api_key::KeyStore;
    use axum_api_key::keys::UpdateToken;

    let claims = || [("env".to_owned(), "staging".to_owned())].into();

    // Subscribed: the store's event and the cache's own update are the same update.
    let (tokens, cache, [a, _], a_id) = two_cached_keys().await;
    let told = Arc::new(Told::default());
    cache.local_revocations().subscribe(told.clone());
    KeyStore::update(&cache, UpdateToken::new(&a_id).custom_claims(claims()))
        .await
        .unwrap();
    assert_eq!(told.updates_of(&a_id), 1, "through the cache");
    tokens
        .update(UpdateToken::new(&a_id).description("again"))
        .unwrap();
    assert_eq!(told.updates_of(&a_id), 2, "through the store");
    // A failed update tells nothing.
    assert!(
        KeyStore::update(&cache, UpdateToken::new("apit_unknown").description("x"))
            .await
            .is_err()
    );
    assert_eq!(told.0.lock().unwrap().len(), 2);

    // Not listening to its store: the cache's own update is still told, once.
    let standalone = CachedValidator::builder(tokens.clone())
        .ttl(Duration::from_secs(3600))
        .build_standalone();
    standalone.validate(&ApiKey::new(a.as_str())).await.unwrap();
    let told = Arc::new(Told::default());
    standalone.local_revocations().subscribe(told.clone());
    KeyStore::update(
        &standalone,
        UpdateToken::new(&a_id).description("standalone"),
    )
    .await
    .unwrap();
    assert_eq!(told.updates_of(&a_id), 1);
}
