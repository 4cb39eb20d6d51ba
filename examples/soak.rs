//! A bounded loopback soak: an app with the cache over the Scalekit client over the fake
//! Scalekit, random upstream faults toggled periodically, and many concurrent clients sending
//! valid, revoked, expired and garbage keys. Run it with `bash scripts/soak.sh`.
//!
//! Fails (exit 1) on any false accept, meaning a 200 for a key revoked through the crate before
//! the request started, for an expired key, or for garbage. It also fails on a status other
//! than 200/401/503, on memory that grows after warm-up, or on a cache holding more entries than
//! its capacity.
//!
//! Environment: `SOAK_SECONDS` (default 180), `SOAK_CLIENTS` (default 64).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::CreateToken;
use axum_api_key::testing::{FakeScalekit, Fault, Op};
use axum_api_key::{ApiKeyLayer, OrgScope};
use time::OffsetDateTime;

const CAPACITY: u64 = 1_000;
const VALID_KEYS: usize = 3_000;
const EXPIRING_KEYS: usize = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    Revoked,
    Expired,
    Garbage,
}

/// A minted key and what happened to it. Times are Unix nanoseconds; 0 means "not yet".
struct Key {
    secret: String,
    token_id: String,
    /// Set once `invalidate_token` has returned.
    revoked_at: AtomicU64,
    /// The key's expiry (`u64::MAX` when it does not expire).
    expires_at: u64,
}

fn now_nanos() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(u64::MAX)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn whoami(scope: OrgScope) -> String {
    scope.organization_id
}

#[derive(Default)]
struct Tally {
    /// (kind, status) -> count.
    statuses: std::sync::Mutex<BTreeMap<(Kind, u16), u64>>,
    requests: AtomicU64,
    false_accepts: AtomicU64,
    unexpected: AtomicU64,
    transport_errors: AtomicU64,
}

fn garbage(rng: u64) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    match rng % 5 {
        // Well-formed but never minted.
        0 | 1 => (0..77)
            .map(|_| char::from(BASE62[rand::random_range(0..BASE62.len())]))
            .collect(),
        2 => format!("apit_{}", rng % 100_000_000_000_000_000),
        3 => "eyJhbGciOi.eyJzdWIi.c2ln".to_owned(),
        _ => "short".to_owned(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let clients: usize = std::env::var("SOAK_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let run_for = Duration::from_secs(seconds.max(10));

    let fake = Arc::new(FakeScalekit::start().await);
    let client = fake
        .client_builder()
        .validate_timeout(Duration::from_millis(800))
        .build()
        .expect("client");
    let cache = CachedValidator::builder(client.clone())
        .capacity(CAPACITY)
        .ttl(Duration::from_secs(20))
        .negative_ttl(Duration::from_secs(1))
        .stale_if_error(Duration::from_secs(10))
        .build();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(ApiKeyLayer::new(cache.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/whoami", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Keys: minted straight in the fake's store (fast); revocations go through the crate.
    let started = OffsetDateTime::now_utc();
    let mut keys = Vec::with_capacity(VALID_KEYS + EXPIRING_KEYS);
    for i in 0..VALID_KEYS + EXPIRING_KEYS {
        let mut request = CreateToken::new(format!("org_{}", i % 50));
        let mut expires_at = u64::MAX;
        if i >= VALID_KEYS {
            // Spread over the run, so keys expire while cached and while being validated.
            let spread = run_for.as_millis() as u64 * 9 / 10;
            let offset = Duration::from_millis(2_000 + rand::random_range(0..spread.max(1)));
            let at = started + offset;
            expires_at = u64::try_from(at.unix_timestamp_nanos()).unwrap_or(u64::MAX);
            request = request.expiry(at);
        }
        let created = fake.tokens().create(request).expect("mint");
        keys.push(Key {
            secret: created.key.expose_secret().to_owned(),
            token_id: created.token_id.clone(),
            revoked_at: AtomicU64::new(0),
            expires_at,
        });
    }
    let keys = Arc::new(keys);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let begin = Instant::now();
    println!(
        "soak: {}s, {clients} clients, {VALID_KEYS} keys + {EXPIRING_KEYS} expiring, cache capacity {CAPACITY}",
        run_for.as_secs()
    );

    // Faults: every 2 s, a random upstream behaviour on validate (half of the time none).
    let faults = {
        let fake = fake.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut applied: BTreeMap<&'static str, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let (name, fault) = match rand::random_range(0..16u32) {
                    0..=7 => ("none", None),
                    8 => ("500", Some(Fault::rpc(500, 13, "internal"))),
                    9 => ("503 html", Some(Fault::html(503))),
                    10 => ("reset", Some(Fault::Reset)),
                    11 => ("slow 2s", Some(Fault::Delay(Duration::from_secs(2)))),
                    12 => ("429", Some(Fault::rate_limited(1))),
                    13 => ("truncated", Some(Fault::Truncated)),
                    14 => ("empty 200", Some(Fault::Empty)),
                    _ => ("404 for all", Some(Fault::rpc(404, 5, "not found"))),
                };
                *applied.entry(name).or_default() += 1;
                fake.set_fault(Op::Validate, fault);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            fake.set_fault(Op::Validate, None);
            applied
        })
    };

    // Revocations through the crate: a few per second, of valid keys.
    let revoker = {
        let keys = keys.clone();
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut revoked = 0u64;
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let index = rand::random_range(0..VALID_KEYS);
                let key = &keys[index];
                if key.revoked_at.load(Ordering::Acquire) == 0 {
                    match client.invalidate_token(&key.token_id).await {
                        Ok(()) => {
                            key.revoked_at.store(now_nanos(), Ordering::Release);
                            revoked += 1;
                        }
                        Err(_) => failed += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (revoked, failed)
        })
    };

    // Memory and cache size, every 3 s.
    let sampler = {
        let stop = stop.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(u64, u64, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let stats = cache.stats();
                samples.push((begin.elapsed().as_secs(), rss_kib(), stats.entries));
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            samples
        })
    };

    // The clients.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(clients)
        .build()
        .expect("http client");
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, url, keys, tally, stop) = (
            http.clone(),
            url.clone(),
            keys.clone(),
            tally.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let roll = rand::random_range(0..100u32);
                let (secret, index) = if roll < 20 {
                    (garbage(rand::random()), None)
                } else if roll < 35 {
                    let i = VALID_KEYS + rand::random_range(0..EXPIRING_KEYS);
                    (keys[i].secret.clone(), Some(i))
                } else {
                    // A hot set (cache hits), and anything (misses, evictions: there are more
                    // valid keys than the cache holds).
                    let i = if roll < 55 {
                        rand::random_range(0..200)
                    } else {
                        rand::random_range(0..VALID_KEYS)
                    };
                    (keys[i].secret.clone(), Some(i))
                };
                let sent_at = now_nanos();
                // What the key was when the request started.
                let kind = match index {
                    None => Kind::Garbage,
                    Some(i) => {
                        let key = &keys[i];
                        let revoked = key.revoked_at.load(Ordering::Acquire);
                        if revoked != 0 && revoked < sent_at {
                            Kind::Revoked
                        } else if key.expires_at <= sent_at {
                            Kind::Expired
                        } else {
                            Kind::Valid
                        }
                    }
                };
                let response = http.get(&url).bearer_auth(&secret).send().await;
                tally.requests.fetch_add(1, Ordering::Relaxed);
                let status = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => {
                        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                *tally
                    .statuses
                    .lock()
                    .unwrap()
                    .entry((kind, status))
                    .or_default() += 1;
                if status == 200 && kind != Kind::Valid {
                    tally.false_accepts.fetch_add(1, Ordering::Relaxed);
                    eprintln!("FALSE ACCEPT: {kind:?} key got 200");
                }
                if !matches!(status, 200 | 401 | 503) {
                    tally.unexpected.fetch_add(1, Ordering::Relaxed);
                    eprintln!("unexpected status {status} for a {kind:?} key");
                }
            }
        }));
    }

    let mut last_report = Instant::now();
    while begin.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let stats = cache.stats();
            println!(
                "  t={:>4}s requests={} rss={} KiB cache entries={} negative={} hits={} misses={}",
                begin.elapsed().as_secs(),
                tally.requests.load(Ordering::Relaxed),
                rss_kib(),
                stats.entries,
                stats.negative_entries,
                stats.hits,
                stats.misses
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let applied = faults.await.unwrap_or_default();
    let (revoked, revoke_failures) = revoker.await.unwrap_or_default();
    let samples = sampler.await.unwrap_or_default();
    let stats = cache.stats();

    // Summary.
    let elapsed = begin.elapsed().as_secs_f64();
    let requests = tally.requests.load(Ordering::Relaxed);
    println!("\n== soak summary");
    println!(
        "requests: {requests} in {elapsed:.0}s ({:.0}/s), transport errors {}",
        requests as f64 / elapsed,
        tally.transport_errors.load(Ordering::Relaxed)
    );
    println!("revoked through the crate: {revoked} (invalidate failures {revoke_failures})");
    println!("faults applied (2 s each): {applied:?}");
    println!("statuses by key kind at request start:");
    for ((kind, status), count) in tally.statuses.lock().unwrap().iter() {
        println!("  {kind:<8?} {status}: {count}");
    }
    println!("cache: {stats:?}");
    println!("samples (t s, RSS KiB, cache entries):");
    for chunk in samples.chunks(6) {
        let line: Vec<String> = chunk
            .iter()
            .map(|(t, rss, entries)| format!("{t:>4}s {rss:>7} {entries:>5}"))
            .collect();
        println!("  {}", line.join(" | "));
    }

    let mut failures = Vec::new();
    let false_accepts = tally.false_accepts.load(Ordering::Relaxed);
    if false_accepts > 0 {
        failures.push(format!("{false_accepts} false accepts"));
    }
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    if unexpected > 0 {
        failures.push(format!("{unexpected} unexpected statuses"));
    }
    if requests == 0 {
        failures.push("no requests".into());
    }
    // Flat memory: after a warm-up of a quarter of the run, the mean of the last three samples
    // stays within 25% + 32 MiB of the mean of the first three.
    let warm: Vec<u64> = samples
        .iter()
        .filter(|(t, _, _)| *t as f64 >= run_for.as_secs_f64() / 4.0)
        .map(|(_, rss, _)| *rss)
        .collect();
    if warm.len() >= 6 {
        let mean = |s: &[u64]| s.iter().sum::<u64>() / s.len() as u64;
        let early = mean(&warm[..3]);
        let late = mean(&warm[warm.len() - 3..]);
        let bound = early + early / 4 + 32 * 1024;
        println!("RSS after warm-up: early {early} KiB, late {late} KiB, bound {bound} KiB");
        if late > bound {
            failures.push(format!("RSS grew from {early} KiB to {late} KiB"));
        }
    } else {
        println!(
            "run too short to judge memory ({} samples after warm-up)",
            warm.len()
        );
    }
    // moka applies its bound in batches: allow a brief overshoot while running, none at rest.
    let max_entries = samples.iter().map(|(_, _, e)| *e).max().unwrap_or(0);
    if max_entries > CAPACITY + CAPACITY / 10 {
        failures.push(format!(
            "{max_entries} cache entries for a capacity of {CAPACITY}"
        ));
    }
    if stats.entries > CAPACITY + CAPACITY / 10 {
        failures.push(format!("{} cache entries at the end", stats.entries));
    }
    println!("max cache entries sampled: {max_entries} (capacity {CAPACITY})");

    if failures.is_empty() {
        println!("soak: OK (zero false accepts)");
        std::process::ExitCode::SUCCESS
    } else {
        println!("soak: FAILED: {}", failures.join("; "));
        std::process::ExitCode::FAILURE
    }
}
