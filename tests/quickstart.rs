//! Runs the quickstart example as a process, as a user would, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

mod support;

struct Quickstart {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Quickstart {
    fn start() -> Self {
        Self::start_with(&[], &["SCALEKIT_ENVIRONMENT_URL", "REDIS_URL"])
    }

    /// Runs the quickstart at TRACE with `env`, capturing stdout and stderr line by line.
    fn start_with(env: &[(&str, &str)], remove: &[&str]) -> Self {
        let mut command = Command::new(
            support::example_binary("quickstart")
                .expect("the quickstart example, built by cargo test"),
        );
        command.env("PORT", "0").env("RUST_LOG", "trace");
        for (name, value) in env {
            command.env(name, value);
        }
        for name in remove {
            command.env_remove(name);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the quickstart example (built by cargo test)");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            output: Vec::new(),
        }
    }

    fn wait_for_line(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("quickstart output");
            self.output.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Whether a line holding `needle` has been printed by now (reads what is there, no wait).
    #[cfg(all(feature = "redis", feature = "test-util"))]
    fn has_printed(&mut self, needle: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.output.push(line);
        }
        self.output.iter().any(|line| line.contains(needle))
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.output.push(line);
        }
    }

    /// The output lines that show any 20-character piece of one of `keys`.
    fn lines_showing(&self, keys: &[&str]) -> Vec<&String> {
        self.output
            .iter()
            .filter(|line| keys.iter().any(|key| shows_part_of(line, key)))
            .collect()
    }
}

/// Whether `text` holds `key` or a 20-character piece of it.
fn shows_part_of(text: &str, key: &str) -> bool {
    const PIECE: usize = 20;
    if key.len() <= PIECE {
        return text.contains(key);
    }
    (0..=key.len() - PIECE).any(|at| text.contains(&key[at..at + PIECE]))
}

#[tokio::test]
async fn quickstart_serves_the_documented_routes() {
    let mut app = Quickstart::start();
    let org_key = app.wait_for_line("org key: ");
    let user_key = app.wait_for_line("user key: ");
    // "apit_... (org), apit_... (user)"
    let key_ids = app.wait_for_line("key ids: ");
    let user_key_id = key_ids
        .split_once(", ")
        .and_then(|(_, user)| user.strip_suffix(" (user)"))
        .expect("the user key's id")
        .to_owned();
    let base = app.wait_for_line("listening on ");
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };

    assert_eq!(
        get("/healthz", None).await.unwrap().status(),
        StatusCode::OK
    );

    let response = get("/api/resources", Some(&org_key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["organization_id"], "org_demo");
    let resources = body["resources"].as_array().unwrap();
    assert!(resources.iter().all(|r| r["organization_id"] == "org_demo"));

    let body: Value = get("/api/resources", Some(&user_key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users: Vec<&Value> = body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["user_id"])
        .collect();
    assert!(
        users.iter().all(|u| u.is_null() || *u == "usr_demo"),
        "{users:?}"
    );

    assert_eq!(
        get("/api/my/tasks", Some(&org_key)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/api/my/tasks", Some(&user_key))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let me: Value = get("/api/me", Some(&user_key))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["organization_id"], "org_demo");
    assert_eq!(me["user_id"], "usr_demo");
    // Neither the key nor its id (Scalekit accepts a token id in place of a key).
    let text = me.to_string();
    assert!(!shows_part_of(&text, &user_key), "{text}");
    assert!(
        me.get("token_id").is_none() && !text.contains(&user_key_id),
        "{text}"
    );

    let anonymous = get("/api/resources", None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"quickstart\""
    );

    let two = http
        .get(format!("{base}/api/resources"))
        .header("authorization", format!("Bearer {org_key}"))
        .header("authorization", format!("Bearer {user_key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        get("/api/resources", Some("apit_12345678901234567"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/api/resources", Some("eyJhbGciOi.eyJzdWIi.c2ln"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // Values that hold a key but are refused locally: a JWT shape, a token-id prefix, junk, an
    // overlong value, another scheme, two credentials. Their bodies never echo the key.
    for value in [
        format!("Bearer {org_key}.{user_key}.sig"),
        format!("Bearer apit_{org_key}"),
        format!("Bearer {org_key}!"),
        format!("Bearer {}", org_key.repeat(8)),
        format!("Basic {org_key}"),
        format!("Bearer {org_key} {user_key}"),
        format!("bearer {user_key}"),
    ] {
        let response = http
            .get(format!("{base}/api/me"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        let headers = format!("{:?}", response.headers());
        let text = headers + &response.text().await.unwrap();
        assert!(!shows_part_of(&text, &org_key) && !shows_part_of(&text, &user_key));
    }

    // After start-up, the keys appear nowhere in what the server wrote, even at TRACE.
    app.drain();
    assert!(
        app.output.iter().any(|line| line.contains("TRACE")),
        "RUST_LOG=trace took effect"
    );
    let key_lines = app.lines_showing(&[&org_key, &user_key]);
    assert_eq!(
        key_lines.len(),
        2,
        "only the two start-up lines may show keys: {key_lines:?}"
    );
    assert!(key_lines[0].starts_with("org key: ") && key_lines[1].starts_with("user key: "));
}

/// The quickstart in Scalekit mode, validating against the fake Scalekit on loopback.
#[cfg(feature = "test-util")]
#[tokio::test]
async fn quickstart_validates_with_scalekit_when_configured() {
    use axum_api_key::keys::CreateToken;
    use axum_api_key::testing::FakeScalekit;

    let fake = FakeScalekit::start().await;
    let user_key = fake
        .tokens()
        .create(
            CreateToken::new("org_sk")
                .user("usr_sk")
                .claim("environment", "staging"),
        )
        .unwrap();
    let revoked = fake.tokens().create(CreateToken::new("org_sk")).unwrap();
    fake.tokens().invalidate(&revoked.token_id);

    let url = fake.url();
    let mut app = Quickstart::start_with(
        &[
            ("SCALEKIT_ENVIRONMENT_URL", &url),
            ("SCALEKIT_CLIENT_ID", fake.client_id()),
            ("SCALEKIT_CLIENT_SECRET", fake.client_secret()),
        ],
        &["REDIS_URL"],
    );
    let base = app.wait_for_line("listening on ");
    assert!(
        !app.output.iter().any(|l| l.starts_with("org key: ")),
        "no demo keys in Scalekit mode"
    );

    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{base}/api/me"))
        .bearer_auth(user_key.key.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["organization_id"], "org_sk");
    assert_eq!(me["user_id"], "usr_sk");
    assert_eq!(me["custom_claims"]["environment"], "staging");
    assert!(
        me.get("token_id").is_none() && !me.to_string().contains(&user_key.token_id),
        "the token id is not for clients: {me}"
    );

    let refused = http
        .get(format!("{base}/api/me"))
        .bearer_auth(revoked.key.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(fake.count(axum_api_key::testing::Op::Validate) >= 2);

    // Scalekit misbehaving, echoing the key (whole or in part), or down: still no key in the
    // process's TRACE output.
    use axum_api_key::testing::{Fault, Op};
    let unknown: Vec<String> = (0..4)
        .map(|i| format!("{}{i:02}", "Zz9".repeat(25)))
        .collect();
    let faults = [
        Fault::rpc(400, 3, &format!("bad token {}", unknown[0])),
        Fault::rpc(403, 7, &format!("{}...", &unknown[1][..40])),
        Fault::html(503),
        Fault::Truncated,
    ];
    for (fault, key) in faults.into_iter().zip(&unknown) {
        // Twice: the client retries a 503 once.
        fake.fail_next(Op::Validate, fault.clone());
        fake.fail_next(Op::Validate, fault);
        let status = http
            .get(format!("{base}/api/me"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status();
        assert!(matches!(status.as_u16(), 401 | 503), "{status}");
    }
    app.drain();
    assert!(app.output.iter().any(|line| line.contains("TRACE")));
    let mut keys = vec![user_key.key.expose_secret(), revoked.key.expose_secret()];
    keys.extend(unknown.iter().map(String::as_str));
    let leaks = app.lines_showing(&keys);
    assert!(leaks.is_empty(), "keys in the output: {leaks:?}");
}

/// The flood check, against the process: in Scalekit mode with a slow upstream, 2,000
/// random well-formed keys from one client cost at most 100 validate calls, while that
/// client's cached key and another address's new key are answered 200.
#[cfg(feature = "test-util")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_bounds_a_flood_of_random_keys_from_one_client() {
    use axum_api_key::keys::CreateToken;
    use axum_api_key::testing::{FakeScalekit, Fault, Op};

    let fake = FakeScalekit::start().await;
    let cached = fake.tokens().create(CreateToken::new("org_flood")).unwrap();
    let fresh = fake.tokens().create(CreateToken::new("org_flood")).unwrap();
    let url = fake.url();
    let mut app = Quickstart::start_with(
        &[
            ("SCALEKIT_ENVIRONMENT_URL", &url),
            ("SCALEKIT_CLIENT_ID", fake.client_id()),
            ("SCALEKIT_CLIENT_SECRET", fake.client_secret()),
            ("RUST_LOG", "warn"),
        ],
        &["REDIS_URL", "RATE_LIMIT"],
    );
    let base = app.wait_for_line("listening on ");
    let status = |client: reqwest::Client, key: String| {
        let url = format!("{base}/api/me");
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let attacker = support::client_from([127, 0, 0, 1]);
    let cached_key = cached.key.expose_secret().to_owned();
    assert_eq!(
        status(attacker.clone(), cached_key.clone()).await,
        StatusCode::OK
    );
    fake.reset_counts();
    fake.set_fault(Op::Validate, Some(Fault::Delay(Duration::from_millis(300))));

    // 2,000 distinct keys, 20 at a time.
    let mut answers = Vec::new();
    for wave in 0..100u64 {
        let requests =
            (0..20u64).map(|i| status(attacker.clone(), support::unknown_key(wave * 20 + i)));
        answers.extend(futures_util::future::join_all(requests).await);
    }
    assert!(
        answers
            .iter()
            .all(|s| [401, 429, 503].contains(&s.as_u16())),
        "{answers:?}"
    );
    let throttled = answers.iter().filter(|s| s.as_u16() == 429).count();
    assert!(throttled >= 1_800, "{throttled} of 2,000 throttled");

    // The attacker's cached key still works, and so does another address's new key.
    assert_eq!(status(attacker, cached_key).await, StatusCode::OK);
    let other = support::client_from([127, 0, 0, 2]);
    let fresh_key = fresh.key.expose_secret().to_owned();
    assert_eq!(status(other, fresh_key).await, StatusCode::OK);
    let calls = fake.count(Op::Validate);
    eprintln!("flood: {throttled} of 2,000 throttled, {calls} validate calls");
    assert!(calls <= 100, "{calls} upstream validate calls");
}

#[tokio::test]
async fn quickstart_limits_each_key_when_rate_limit_is_set() {
    let mut app = Quickstart::start_with(
        &[("RATE_LIMIT", "3/min")],
        &["SCALEKIT_ENVIRONMENT_URL", "REDIS_URL"],
    );
    let org_key = app.wait_for_line("org key: ");
    let user_key = app.wait_for_line("user key: ");
    let base = app.wait_for_line("listening on ");
    let http = reqwest::Client::new();
    let ping = |key: &str| http.get(format!("{base}/api/ping")).bearer_auth(key).send();

    for remaining in [2, 1, 0] {
        let response = ping(&org_key).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let field = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(field.contains(&format!(";r={remaining};")), "{field}");
    }
    let limited = ping(&org_key).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after));
    assert!(limited.headers().contains_key("ratelimit-policy"));
    // Another key has its own quota.
    assert_eq!(ping(&user_key).await.unwrap().status(), StatusCode::OK);
}

/// The Redis checks, against two processes: Scalekit mode, `RATE_LIMIT=20/min` and one
/// `REDIS_URL`. One key's quota is held between both instances within 10%, a key whose claim is
/// `rate_limit=5/min` gets its own limit, and with Redis stopped both keep answering.
#[cfg(all(feature = "redis", feature = "test-util", feature = "metrics"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_instances_share_the_limit_over_redis_and_answer_without_it() {
    use axum_api_key::keys::CreateToken;
    use axum_api_key::testing::FakeScalekit;

    let Some(mut redis) = support::redis_server::RedisServer::start() else {
        return;
    };
    let fake = FakeScalekit::start().await;
    let mint = |create: CreateToken| {
        let created = fake.tokens().create(create).unwrap();
        created.key.expose_secret().to_owned()
    };
    let shared = mint(CreateToken::new("org_rl"));
    let claimed = mint(CreateToken::new("org_rl").claim("rate_limit", "5/min"));
    let warm = [
        mint(CreateToken::new("org_warm")),
        mint(CreateToken::new("org_warm")),
    ];
    let (url, redis_url) = (fake.url(), redis.url());
    let env = [
        ("SCALEKIT_ENVIRONMENT_URL", url.as_str()),
        ("SCALEKIT_CLIENT_ID", fake.client_id()),
        ("SCALEKIT_CLIENT_SECRET", fake.client_secret()),
        ("RATE_LIMIT", "20/min"),
        ("REDIS_URL", redis_url.as_str()),
        ("RUST_LOG", "info"),
    ];
    // The first instance also serves its metrics, which must show the limits shared, then not.
    let with_metrics = [&env[..], &[("METRICS_PORT", "0")]].concat();
    let mut instances = [
        Quickstart::start_with(&with_metrics, &[]),
        Quickstart::start_with(&env, &[]),
    ];
    let metrics_url = instances[0].wait_for_line("metrics on ");
    let bases = instances
        .each_mut()
        .map(|instance| instance.wait_for_line("listening on "));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ping = |base: &str, key: &str| {
        http.get(format!("{base}/api/ping"))
            .bearer_auth(key.to_owned())
            .send()
    };
    // Each instance connects to Redis on its first decision; until then its buckets decide.
    for ((instance, base), warm) in instances.iter_mut().zip(&bases).zip(&warm) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !instance.has_printed("Redis rate limits: connected") {
            assert!(
                std::time::Instant::now() < deadline,
                "never connected: {:#?}",
                instance.output
            );
            ping(base, warm).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let mut admitted = [0usize; 2];
    for i in 0..100 {
        let status = ping(&bases[i % 2], &shared).await.unwrap().status();
        match status {
            StatusCode::OK => admitted[i % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    let total = admitted[0] + admitted[1];
    assert!(
        (20..=22).contains(&total),
        "admitted {total} ({admitted:?})"
    );
    assert!(admitted.iter().all(|n| *n > 0), "{admitted:?}");

    // The claim's own limit, shared too.
    let mut claimed_ok = 0;
    for i in 0..12 {
        if ping(&bases[i % 2], &claimed).await.unwrap().status() == StatusCode::OK {
            claimed_ok += 1;
        }
    }
    assert_eq!(claimed_ok, 5);
    let scrape = || async {
        let text = metrics_text(&http, &metrics_url).await;
        let series = |name: &str| sample(&text, name).unwrap_or(0.0);
        (
            series("api_key_redis_limiter_connected"),
            series("api_key_redis_limiter_decisions_total{result=\"redis\"}"),
            series("api_key_redis_limiter_decisions_total{result=\"fallback\"}"),
        )
    };
    let (connected, decided, _) = scrape().await;
    assert_eq!(connected, 1.0);
    assert!(
        decided >= 50.0,
        "{decided} decisions by Redis on the first instance"
    );

    // Redis stopped: every request is still answered, on each instance's own buckets.
    redis.kill();
    for base in &bases {
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(ping(base, &warm[1]).await.unwrap().status().as_u16());
        }
        assert!(
            answers.iter().all(|s| *s == 200 || *s == 429),
            "{answers:?}"
        );
        assert!(answers.contains(&200), "{answers:?}");
    }
    for instance in &mut instances {
        assert!(instance.has_printed("Redis rate limits: degraded"));
    }
    let (connected, _, fallbacks) = scrape().await;
    assert_eq!(
        connected, 0.0,
        "the gauge shows the limits are no longer shared"
    );
    assert!(fallbacks >= 10.0, "{fallbacks} fallback decisions");
}

/// The Prometheus text the quickstart serves at `url`.
#[cfg(feature = "metrics")]
async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    let answer = http.get(url).send().await.unwrap();
    answer.text().await.unwrap()
}

/// The value of the series `name{labels}` in Prometheus text, if present.
#[cfg(feature = "metrics")]
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn quickstart_serves_prometheus_metrics_on_its_own_port() {
    let mut app = Quickstart::start_with(
        &[("METRICS_PORT", "0"), ("RUST_LOG", "info")],
        &["SCALEKIT_ENVIRONMENT_URL", "REDIS_URL", "RATE_LIMIT"],
    );
    let metrics_url = app.wait_for_line("metrics on ");
    let org_key = app.wait_for_line("org key: ");
    let base = app.wait_for_line("listening on ");
    assert!(
        metrics_url.starts_with("http://127.0.0.1:"),
        "{metrics_url}"
    );
    assert_ne!(
        metrics_url.trim_end_matches("/metrics"),
        base,
        "metrics never share the public port"
    );
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    // Same shape as a real key, one character changed: unknown to the store.
    let mut unknown = org_key.clone().into_bytes();
    let last = unknown.len() - 1;
    unknown[last] = if unknown[last] == b'A' { b'B' } else { b'A' };
    let unknown = String::from_utf8(unknown).unwrap();

    for _ in 0..3 {
        let status = get("/api/ping", Some(&org_key)).await.unwrap().status();
        assert_eq!(status, StatusCode::OK);
    }
    let forbidden = get("/api/my/tasks", Some(&org_key)).await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let status = get("/api/ping", None).await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let jwt = get("/api/ping", Some("eyJhbGciOi.eyJzdWIi.c2ln"))
        .await
        .unwrap();
    assert_eq!(jwt.status(), StatusCode::UNAUTHORIZED);
    let invalid = get("/api/ping", Some(&unknown)).await.unwrap();
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);

    let text = metrics_text(&http, &metrics_url).await;
    // A counter with one label, 0 when it was never incremented.
    let count = |name: &str, label: &str, value: &str| {
        sample(&text, &format!("{name}{{{label}=\"{value}\"}}")).unwrap_or(0.0)
    };
    let requests = |outcome: &str| count("api_key_requests_total", "outcome", outcome);
    // Accepted: the three pings and the key that was then refused its scope.
    assert_eq!(requests("accepted"), 4.0, "{text}");
    assert_eq!(requests("forbidden"), 1.0, "{text}");
    assert_eq!(requests("missing"), 2.0, "{text}");
    assert_eq!(requests("malformed"), 1.0, "{text}");
    assert_eq!(requests("invalid"), 1.0, "{text}");
    assert_eq!(requests("unavailable"), 0.0, "{text}");
    let lookups = |result: &str| count("api_key_cache_lookups_total", "result", result);
    // Two keys went through the cache: each missed once; the known one then hit.
    assert_eq!(lookups("miss"), 2.0, "{text}");
    assert_eq!(lookups("hit"), 3.0, "{text}");
    assert!(
        text.contains("# TYPE api_key_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(
            "api_key_rate_limit_decisions_total{limiter=\"failed_key\",decision=\"allowed\"}"
        ),
        "{text}"
    );
    // The keys never reach the metrics.
    assert!(!shows_part_of(&text, &org_key) && !shows_part_of(&text, &unknown));
}
