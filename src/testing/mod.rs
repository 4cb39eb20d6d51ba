//! A fake of Scalekit's token API on 127.0.0.1, REST and gRPC on one port, plain or TLS, for
//! tests and examples (feature `test-util`).
//!
//! The gRPC service (`scalekit.v1.tokens.ApiTokenService`, HTTP/2) answers through the same
//! store, counters, faults and access-token checks as the REST routes. With
//! [`FakeScalekitBuilder::tls`] it serves HTTPS from a CA it generates
//! ([`FakeScalekit::ca_pem`]): HTTP/1.1 and h2 by ALPN, certificate valid for `127.0.0.1` and
//! `localhost`, which is what the official SDKs need to talk to it.
//!
//! [`FakeScalekit`] speaks the JSON of `scalekit-wire.md` (snake_case, protojson-style empty
//! values, `google.rpc.Status` errors), checks client credentials and access tokens like
//! Scalekit, keeps its keys in an [`InMemoryTokens`], counts requests per [`Op`], and can
//! misbehave on demand ([`Fault`]): error statuses, HTML bodies, delays, connection resets,
//! broken JSON, huge bodies, rate limiting.
//!
//! ```
//! use axum_api_key::testing::{Fault, FakeScalekit, Op};
//! use axum_api_key::keys::CreateToken;
//! use axum_api_key::scalekit::ScalekitError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fake = FakeScalekit::start().await;
//! let client = fake.client();
//!
//! let created = client.create_token(CreateToken::new("org_1")).await.unwrap();
//! let info = client.validate_token(created.key.expose_secret()).await.unwrap();
//! assert_eq!(info.organization_id(), "org_1");
//!
//! fake.fail_next(Op::Validate, Fault::rpc(404, 5, "token not found"));
//! let error = client.validate_token(created.key.expose_secret()).await.unwrap_err();
//! assert_eq!(error, ScalekitError::NotFound);
//! assert_eq!(fake.count(Op::Validate), 2);
//! # }
//! ```

mod grpc;
mod routes;
mod server;
mod tls;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::keys::memory::InMemoryTokens;
use crate::keys::{KeyEvent, KeyEventListener, KeyEventSource};
use crate::request::key::Fingerprint;
use crate::scalekit::{ScalekitClient, ScalekitClientBuilder, Transport};

/// The client id [`FakeScalekit::start`] accepts.
pub const DEFAULT_CLIENT_ID: &str = "skc_fake_client";
/// The client secret [`FakeScalekit::start`] accepts.
pub const DEFAULT_CLIENT_SECRET: &str = "fake-client-secret";
/// The lifetime of issued access tokens unless configured (Scalekit's: about a day).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(86_399);

/// The routes of the fake, for counters and faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `POST /oauth/token`.
    Token,
    /// `POST /api/v1/tokens`.
    Create,
    /// `POST /api/v1/tokens:validate`.
    Validate,
    /// `GET /api/v1/tokens`.
    List,
    /// `POST /api/v1/tokens:update`.
    Update,
    /// `POST /api/v1/tokens:invalidate`.
    Invalidate,
}

/// A way for the fake to misbehave on one route.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status, content type and body (plus `Retry-After` if set).
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type`.
        content_type: String,
        /// The body, sent as is.
        body: String,
        /// A `Retry-After` value, in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection (with a TCP reset) without answering.
    Reset,
    /// 200 with JSON cut off in the middle.
    Truncated,
    /// 200 with well-formed JSON whose fields have the wrong types.
    WrongTypes,
    /// 200 with `{}`: no `token_info` (nor anything else).
    Empty,
    /// 200 with a valid JSON body of about this many bytes.
    Huge(usize),
    /// 401 `{"code":16}`, whatever the access token.
    Unauthorized,
}

impl Fault {
    /// A `google.rpc.Status` error: `{"code": code, "message": message, "details": []}`.
    pub fn rpc(status: u16, code: i32, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"code": code, "message": message, "details": []}),
        )
    }

    /// Any JSON body with `status`.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::Status {
            status,
            content_type: "application/json".into(),
            body: body.to_string(),
            retry_after: None,
        }
    }

    /// An HTML error page, as a load balancer sends on 502/503/504 (or a proxy, a CDN or a WAF
    /// on a 4xx). Over gRPC it is sent as is, with no `grpc-status`, as a proxy that does not
    /// speak gRPC would.
    pub fn html(status: u16) -> Self {
        Self::Status {
            status,
            content_type: "text/html".into(),
            body: format!(
                "<html><body><h1>{status} {}</h1></body></html>",
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error")
            ),
            retry_after: None,
        }
    }

    /// `status` with an empty body, as a load balancer or a WAF may send (sent as is over gRPC
    /// too, with no `grpc-status`).
    pub fn empty(status: u16) -> Self {
        Self::Status {
            status,
            content_type: "text/plain".into(),
            body: String::new(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: seconds` and a RESOURCE_EXHAUSTED body.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::Status {
            status: 429,
            content_type: "application/json".into(),
            body: r#"{"code":8,"message":"rate limit exceeded","details":[]}"#.into(),
            retry_after: Some(seconds),
        }
    }
}

/// What the fake knows and counts; shared with its handlers.
pub(crate) struct State {
    pub(crate) tokens: InMemoryTokens,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) lifetime: Mutex<Duration>,
    /// The `expires_in` announced instead of the lifetime, when set.
    pub(crate) announced_expires_in: Mutex<Option<serde_json::Value>>,
    /// Issued access tokens and when they expire.
    pub(crate) access_tokens: Mutex<HashMap<String, std::time::Instant>>,
    counts: Mutex<HashMap<Op, usize>>,
    faults: Mutex<HashMap<Op, Faults>>,
    /// Every key and id ever minted in the store: invalidating one is success even once it
    /// is revoked (Scalekit is idempotent), an unknown one is 404.
    pub(crate) known: Arc<Known>,
}

#[derive(Default)]
struct Faults {
    once: VecDeque<Fault>,
    always: Option<Fault>,
}

#[derive(Default)]
pub(crate) struct Known {
    ids: Mutex<HashSet<String>>,
    fingerprints: Mutex<HashSet<Fingerprint>>,
}

impl Known {
    pub(crate) fn contains(&self, token: &str) -> bool {
        if crate::scalekit::shape::is_token_id(token) {
            lock(&self.ids).contains(token)
        } else {
            lock(&self.fingerprints).contains(&Fingerprint::of(token))
        }
    }
}

impl KeyEventListener for Known {
    fn on_event(&self, event: &KeyEvent) {
        if let KeyEvent::Created {
            fingerprint,
            token_id,
        } = event
        {
            lock(&self.ids).insert(token_id.clone());
            lock(&self.fingerprints).insert(*fingerprint);
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Counts a request on `op` and takes the fault to apply, if any.
    pub(crate) fn hit(&self, op: Op) -> Option<Fault> {
        *lock(&self.counts).entry(op).or_default() += 1;
        let mut faults = lock(&self.faults);
        let slot = faults.get_mut(&op)?;
        slot.once.pop_front().or_else(|| slot.always.clone())
    }
}

/// A loopback fake of Scalekit; see the [module docs](self). Shuts down when dropped.
pub struct FakeScalekit {
    state: Arc<State>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    ca_pem: Option<String>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for FakeScalekit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeScalekit")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

/// Configures a [`FakeScalekit`]; see [`FakeScalekit::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FakeScalekitBuilder {
    client_id: String,
    client_secret: String,
    lifetime: Duration,
    tls: bool,
}

impl FakeScalekitBuilder {
    /// Serves HTTPS (HTTP/1.1 and h2 by ALPN) with a certificate from a CA generated for this
    /// fake; [`FakeScalekit::ca_pem`] is the CA to trust and [`FakeScalekit::url`] starts with
    /// `https://`.
    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The client credentials `/oauth/token` accepts.
    pub fn credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        self.client_id = client_id.to_owned();
        self.client_secret = client_secret.to_owned();
        self
    }

    /// The lifetime of the access tokens it issues (`expires_in`).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(self) -> io::Result<FakeScalekit> {
        let tokens = InMemoryTokens::new();
        let known = Arc::new(Known::default());
        tokens.key_events().subscribe(known.clone());
        let state = Arc::new(State {
            tokens,
            client_id: self.client_id,
            client_secret: self.client_secret,
            lifetime: Mutex::new(self.lifetime),
            announced_expires_in: Mutex::default(),
            access_tokens: Mutex::default(),
            counts: Mutex::default(),
            faults: Mutex::default(),
            known,
        });
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (acceptor, ca_pem) = if self.tls {
            let tls = tls::generate().map_err(io::Error::other)?;
            (Some(tls.acceptor), Some(tls.ca_pem))
        } else {
            (None, None)
        };
        let (shutdown, stopped) = watch::channel(false);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(server::serve(
            listener,
            server::router(state.clone()),
            acceptor,
            connections.clone(),
            stopped,
        ));
        Ok(FakeScalekit {
            state,
            addr,
            shutdown,
            ca_pem,
            connections,
        })
    }
}

impl FakeScalekit {
    /// A fake with the default credentials and access-token lifetime.
    ///
    /// # Panics
    ///
    /// If no port can be bound on 127.0.0.1 (use [`FakeScalekit::builder`] to get the error).
    pub async fn start() -> Self {
        Self::builder()
            .start()
            .await
            .expect("FakeScalekit: could not bind 127.0.0.1")
    }

    /// Starts configuring a fake.
    pub fn builder() -> FakeScalekitBuilder {
        FakeScalekitBuilder {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            tls: false,
        }
    }

    /// The environment URL (`http://127.0.0.1:<port>`, or `https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the fake's certificate (with TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The client id it accepts.
    pub fn client_id(&self) -> &str {
        &self.state.client_id
    }

    /// The client secret it accepts.
    pub fn client_secret(&self) -> &str {
        &self.state.client_secret
    }

    /// A client builder pointed at the fake with its credentials (and its CA, with TLS), to
    /// adjust timeouts or pick the transport.
    pub fn client_builder(&self) -> ScalekitClientBuilder {
        let builder = ScalekitClient::builder(self.url(), self.client_id(), self.client_secret());
        match &self.ca_pem {
            Some(pem) => builder.add_root_certificate(pem.as_bytes()),
            None => builder,
        }
    }

    /// A client pointed at the fake that speaks gRPC.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum_api_key::testing::{FakeScalekit, Op};
    /// use axum_api_key::keys::CreateToken;
    ///
    /// let fake = FakeScalekit::builder().tls(true).start().await.unwrap();
    /// let client = fake.grpc_client();
    /// let created = client.create_token(CreateToken::new("org_1")).await.unwrap();
    /// let info = client.validate_token(created.key.expose_secret()).await.unwrap();
    /// assert_eq!(info.organization_id(), "org_1");
    /// assert_eq!(fake.count(Op::Validate), 1);
    /// # }
    /// ```
    pub fn grpc_client(&self) -> ScalekitClient {
        self.client_builder()
            .transport(Transport::Grpc)
            .build()
            .expect("a gRPC client for the fake always builds")
    }

    /// A client pointed at the fake, with default settings.
    pub fn client(&self) -> ScalekitClient {
        self.client_builder()
            .build()
            .expect("a client for a loopback URL always builds")
    }

    /// The key store behind the fake: mint or revoke keys directly.
    pub fn tokens(&self) -> &InMemoryTokens {
        &self.state.tokens
    }

    /// How many requests reached `op` (faulted ones included).
    pub fn count(&self, op: Op) -> usize {
        lock(&self.state.counts).get(&op).copied().unwrap_or(0)
    }

    /// How many TCP connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets every counter back to 0.
    pub fn reset_counts(&self) {
        lock(&self.state.counts).clear();
    }

    /// Applies `fault` to the next request on `op` only (queued after earlier ones).
    pub fn fail_next(&self, op: Op, fault: Fault) {
        lock(&self.state.faults)
            .entry(op)
            .or_default()
            .once
            .push_back(fault);
    }

    /// Applies `fault` to every request on `op` (after any [`fail_next`](Self::fail_next)
    /// ones) until set to `None`.
    pub fn set_fault(&self, op: Op, fault: Option<Fault>) {
        lock(&self.state.faults).entry(op).or_default().always = fault;
    }

    /// Invalidates every access token issued so far: the next API call gets a 401.
    pub fn expire_access_tokens(&self) {
        lock(&self.state.access_tokens).clear();
    }

    /// The lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// The `expires_in` value of the access-token answers from now on, whatever the tokens'
    /// real lifetime (`None`: the lifetime in seconds, as usual), to play a token endpoint that
    /// announces nonsense (`0`, `"0"`, `-5`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum_api_key::testing::{FakeScalekit, Op};
    ///
    /// let fake = FakeScalekit::start().await;
    /// fake.announce_expires_in(Some(serde_json::json!(0)));
    /// let client = fake.client();
    /// for _ in 0..3 {
    ///     let _ = client.validate_token("apit_71234567890123456").await;
    /// }
    /// // The client still keeps its token a while (30 s at least).
    /// assert_eq!(fake.count(Op::Token), 1);
    /// # }
    /// ```
    pub fn announce_expires_in(&self, expires_in: Option<serde_json::Value>) {
        *lock(&self.state.announced_expires_in) = expires_in;
    }
}

impl Drop for FakeScalekit {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
