//! The quickstart's environment: which key store, the cache, Redis, rate limits, the port.
//!
//! Without `SCALEKIT_ENVIRONMENT_URL` it runs on the embedded key store, mints demo keys and
//! prints them. With `SCALEKIT_ENVIRONMENT_URL`, `SCALEKIT_CLIENT_ID` and
//! `SCALEKIT_CLIENT_SECRET` it validates keys with Scalekit instead (`cargo run --example
//! fake_scalekit` prints a stand-in's variables).
//!
//! - `PORT`: default 3000; `0` picks a free port.
//! - `CACHE_TTL_SECS`: how long a validation is reused, default 30; `0` turns the cache off.
//! - `RATE_LIMIT`: a per-key limit such as `30/min` (default off); a key's custom claim
//!   `rate_limit` overrides it.
//! - `REDIS_URL` (feature `redis`): revocations and key updates shared with every other
//!   instance over Redis pub/sub (`REDIS_CHANNEL`, default `axum-api-key:revocations`), and
//!   `RATE_LIMIT` and the failed-key throttle's allowance per client shared too.
//! - `METRICS_PORT`: serve Prometheus metrics on `127.0.0.1:$METRICS_PORT/metrics` (see
//!   `metrics.rs`; the crate records them with feature `metrics`).
//! - `RUST_LOG`: default `info`.
//!
//! The failed-key throttle is on (the layer's default): a client presenting more than 10
//! refused keys a minute waits, with no upstream call, while its valid keys keep working.
//!
//! Key management is mounted at `/keys` (the page at `GET /keys`, the JSON API at
//! `/keys/api`). The printed `admin key:` (an organization key of `org_demo` with the claim
//! `role=key_admin`) manages `org_demo`'s keys through the API; `GET /demo/sign-in` signs the
//! browser in as `org_demo`'s key admin (a signed session cookie) and opens the page. In
//! Scalekit mode the admin key is minted at start-up (valid for a day).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum_api_key::cache::CachedValidator;
use axum_api_key::keys::{CreateToken, KeyEventSource, KeyStore};
use axum_api_key::manage::{ApiKeyManagers, KeyManagement, Session, SessionManagers};
use axum_api_key::ratelimit::{FailedKeyThrottle, RateLimitLayer, RatePolicy};
use axum_api_key::scalekit::ScalekitClient;
use axum_api_key::validator::BoxValidator;
use axum_api_key::{ApiKeyLayer, InMemoryTokens, Validator};
use tokio::net::TcpListener;

/// What `main` needs from the environment.
pub struct Setup {
    validator: BoxValidator,
    /// The key-management router, over the same store and cache as the validator.
    keys: Router,
    sessions: SessionManagers,
    rate_limit: Option<RateLimitLayer>,
    listener: TcpListener,
    /// Kept alive as long as the server: dropping it stops the feed.
    _feed: Feed,
}

impl Setup {
    /// The validator: Scalekit or the embedded store, behind the cache unless it is off.
    pub fn validator(&self) -> BoxValidator {
        self.validator.clone()
    }

    /// The key-management router (page and JSON API), to nest under `/keys`.
    pub fn key_management(&self) -> Router {
        self.keys.clone()
    }

    /// `GET /demo/sign-in`: demo only, anyone reaching it becomes `org_demo`'s key admin.
    pub fn demo_sign_in(&self) -> Router {
        let sessions = self.sessions.clone();
        let sign_in = move || async move {
            let cookie = sessions.sign_in(Session::admin("org_demo", "demo admin"));
            ([(http::header::SET_COOKIE, cookie)], Redirect::to("/keys")).into_response()
        };
        Router::new()
            .route("/demo/sign-in", get(sign_in))
            .route("/keys/", get(|| async { Redirect::permanent("/keys") }))
    }

    /// The per-key rate limit, when `RATE_LIMIT` is set.
    pub fn rate_limit(&self) -> Option<RateLimitLayer> {
        self.rate_limit.clone()
    }

    /// Serves `app`, with the peer address of each connection for the failed-key throttle.
    pub async fn serve(self, app: Router) -> Result<(), Box<dyn std::error::Error>> {
        println!("listening on http://{}", self.listener.local_addr()?);
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).await?;
        Ok(())
    }
}

/// Reads the environment, prints the demo keys (embedded store) and binds the port.
pub async fn from_env() -> Result<Setup, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        Err(_) => 3000,
    };
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cache_ttl = cache_ttl()?;
    let feed = revocation_feed()?;
    // A fresh secret per run: restarting signs everyone out. `secure(false)`: plain HTTP.
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let sessions = SessionManagers::new(&secret)?.secure(false);
    let (validator, keys) = if let Some(client) = ScalekitClient::from_env_opt()? {
        println!(
            "validating API keys with Scalekit at {} over {}",
            client.base_url(),
            client.transport()
        );
        println!("mint a key with: cargo run --example keys -- create --org <org_id>");
        // Minted in the background, once the server is up (a slow Scalekit delays nothing).
        let store = client.clone();
        tokio::spawn(async move {
            let day = time::OffsetDateTime::now_utc() + Duration::from_secs(86_400);
            match admin_key(&store, Some(day)).await {
                Ok(key) => println!("admin key: {key}"),
                Err(error) => tracing::warn!(%error, "could not mint the demo admin key"),
            }
        });
        with_cache(client, cache_ttl, &feed, &sessions)
    } else {
        let (tokens, [org_key, user_key], [org_id, user_id]) = demo_store().await?;
        println!("org key: {org_key}");
        println!("user key: {user_key}");
        println!("admin key: {}", admin_key(&tokens, None).await?);
        println!("key ids: {org_id} (org), {user_id} (user)");
        println!();
        println!("Try (with ORG_KEY and USER_KEY set to the keys above):");
        println!("  curl -s {base}/api/resources -H \"Authorization: Bearer $ORG_KEY\"");
        println!("  curl -s {base}/api/my/tasks -H \"Authorization: Bearer $USER_KEY\"");
        println!("  curl -si {base}/api/my/tasks -H \"Authorization: Bearer $ORG_KEY\"   # 403");
        println!("  curl -si {base}/api/me                                            # 401");
        with_cache(tokens, cache_ttl, &feed, &sessions)
    };
    println!("manage keys: {base}/demo/sign-in (browser), {base}/keys/api (admin key)");
    Ok(Setup {
        validator,
        keys,
        sessions,
        rate_limit: rate_limit()?,
        listener,
        _feed: feed,
    })
}

/// The failed-key throttle (on by default), its allowance shared over `REDIS_URL` with
/// feature `redis`.
pub fn failed_key_throttle() -> Result<FailedKeyThrottle, Box<dyn std::error::Error>> {
    let throttle = FailedKeyThrottle::default();
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let limiter = axum_api_key::ratelimit::RedisLimiter::builder(url).build()?;
        tracing::info!("refused-key allowance per client shared over Redis");
        return Ok(throttle.redis(limiter));
    }
    Ok(throttle)
}

/// `RATE_LIMIT` (e.g. `30/min`), per key; shared over `REDIS_URL` with feature `redis`.
fn rate_limit() -> Result<Option<RateLimitLayer>, Box<dyn std::error::Error>> {
    let Ok(text) = std::env::var("RATE_LIMIT") else {
        return Ok(None);
    };
    let policy: RatePolicy = text
        .parse()
        .map_err(|e| format!("RATE_LIMIT {text:?}: {e}"))?;
    let layer = RateLimitLayer::new(policy).name("quickstart");
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let limiter = axum_api_key::ratelimit::RedisLimiter::builder(url).build()?;
        tracing::info!(%policy, "per-key rate limit shared over Redis");
        return Ok(Some(layer.redis(limiter)));
    }
    tracing::info!(%policy, "per-key rate limit (local to this instance)");
    Ok(Some(layer))
}

/// The embedded store with one organization key and one user key (keys, then their ids).
type DemoStore = (InMemoryTokens, [String; 2], [String; 2]);

/// Minted through the [`KeyStore`] contract, as with any store.
async fn demo_store() -> Result<DemoStore, Box<dyn std::error::Error>> {
    let tokens = InMemoryTokens::new();
    let org = KeyStore::create(
        &tokens,
        CreateToken::new("org_demo")
            .claim("environment", "production")
            .description("quickstart organization key"),
    )
    .await?;
    let user = KeyStore::create(
        &tokens,
        CreateToken::new("org_demo")
            .user("usr_demo")
            .claim("environment", "production")
            .description("quickstart user key"),
    )
    .await?;
    Ok((
        tokens,
        [
            org.key.expose_secret().to_owned(),
            user.key.expose_secret().to_owned(),
        ],
        [org.token_id, user.token_id],
    ))
}

/// The revocation feed over Redis, when `REDIS_URL` is set (feature `redis`).
#[cfg(feature = "redis")]
type Feed = Option<axum_api_key::redis::RedisRevocations>;
#[cfg(not(feature = "redis"))]
type Feed = Option<std::convert::Infallible>;

#[cfg(feature = "redis")]
fn revocation_feed() -> Result<Feed, Box<dyn std::error::Error>> {
    let feed = axum_api_key::redis::RedisRevocations::from_env()?;
    if let Some(feed) = &feed {
        tracing::info!(
            channel = feed.channel(),
            origin = feed.origin(),
            "sharing revocations and key updates over Redis"
        );
    }
    Ok(feed)
}

#[cfg(not(feature = "redis"))]
fn revocation_feed() -> Result<Feed, Box<dyn std::error::Error>> {
    if std::env::var_os("REDIS_URL").is_some() {
        tracing::warn!(
            "REDIS_URL is set but this build lacks feature `redis` (cargo run --example quickstart --features redis): revocations are not shared"
        );
    }
    Ok(None)
}

/// `CACHE_TTL_SECS`: `None` when the cache is off.
fn cache_ttl() -> Result<Option<Duration>, String> {
    match std::env::var("CACHE_TTL_SECS") {
        Err(_) => Ok(Some(Duration::from_secs(30))),
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(secs) => Ok(Some(Duration::from_secs(secs))),
            Err(_) => Err(format!(
                "CACHE_TTL_SECS must be a whole number of seconds, got {value:?}"
            )),
        },
    }
}

/// The key-management router over `store`: a session cookie or an API key (`role=key_admin`
/// administers) says who manages.
fn key_management<S: KeyStore + Validator + Clone>(store: S, sessions: &SessionManagers) -> Router {
    let managers = ApiKeyManagers::new(ApiKeyLayer::new(store.clone()).realm("keys"));
    KeyManagement::new(store, (sessions.clone(), managers))
        .allowed_claims(["environment"])
        .router()
}

/// An organization key of `org_demo` that administers its keys.
async fn admin_key(
    store: &impl KeyStore,
    expiry: Option<time::OffsetDateTime>,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut request = CreateToken::new("org_demo")
        .claim("role", "key_admin")
        .description("quickstart key admin");
    request.expiry = expiry;
    Ok(store.create(request).await?.key.expose_secret().to_owned())
}

/// Wraps `validator` in the cache (subscribed to its revocations, and to the Redis feed if
/// any) unless the cache is off; the key-management router goes through the same cache.
fn with_cache<V: Validator + KeyEventSource + KeyStore + Clone>(
    validator: V,
    ttl: Option<Duration>,
    feed: &Feed,
    sessions: &SessionManagers,
) -> (BoxValidator, Router) {
    match ttl {
        Some(ttl) => {
            tracing::info!(ttl_secs = ttl.as_secs(), "validation cache on");
            let cache = CachedValidator::builder(validator).ttl(ttl).build();
            #[cfg(feature = "redis")]
            if let Some(feed) = feed {
                feed.attach(&cache);
            }
            let keys = key_management(cache.clone(), sessions);
            (BoxValidator::new(cache), keys)
        }
        None => {
            tracing::info!("validation cache off: every request asks the validator");
            #[cfg(feature = "redis")]
            if feed.is_some() {
                tracing::warn!("REDIS_URL ignored: with the cache off there is nothing to evict");
            }
            let _ = feed;
            (
                BoxValidator::new(validator.clone()),
                key_management(validator, sessions),
            )
        }
    }
}
