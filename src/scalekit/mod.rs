//! [`ScalekitClient`]: Scalekit's API-key ("tokens") service over REST, and a [`Validator`].
//!
//! The client speaks the REST/JSON routes described in `scalekit-wire.md` (create, validate,
//! list, update, invalidate under `/api/v1/tokens`), authenticates with OAuth2 client
//! credentials at `/oauth/token`, and maps every failure to a [`ScalekitError`] that tells
//! "the key is not valid" from "Scalekit could not be asked". As a [`Validator`] it fails
//! closed: only a positive answer lets a request through, and an outage is a 503.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use axum_api_key::{ApiKeyLayer, OrgScope};
//! use axum_api_key::scalekit::ScalekitClient;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! async fn whoami(OrgScope { organization_id, .. }: OrgScope) -> String {
//!     organization_id
//! }
//!
//! // SCALEKIT_ENVIRONMENT_URL, SCALEKIT_CLIENT_ID, SCALEKIT_CLIENT_SECRET
//! let client = ScalekitClient::from_env()?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(ApiKeyLayer::new(client));
//! # Ok(()) }
//! ```
//!
//! [`Validator`]: crate::Validator

mod auth;
mod builder;
mod doctor;
mod error;
#[cfg(feature = "fuzzing")]
mod fuzzing;
#[cfg(feature = "grpc")]
pub(crate) mod grpc;
mod ops;
pub mod shape;
mod store;
mod transport;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use zeroize::Zeroizing;

use crate::keys::{KeyEventSource, KeyEvents};

pub use builder::ScalekitClientBuilder;
use builder::{optional_env, read_ca_file, required_env};
pub use doctor::{DoctorReport, DoctorStep, TransportReport};
pub use error::ScalekitError;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use fuzzing::{ERROR_STATUSES, WireOutcomes, fuzz_decode};

/// The `x-api-version` sent unless [`ScalekitClientBuilder::api_version`] sets another: the
/// newest value any official SDK sends.
pub const DEFAULT_API_VERSION: &str = "20260716";
/// The default overall deadline of one validation (retry and access-token fetch included).
pub const DEFAULT_VALIDATE_TIMEOUT: Duration = Duration::from_secs(3);
/// The default deadline of one admin call (create, list, update, invalidate).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout the builder accepts (an hour is already far beyond any useful
/// deadline; `Duration::MAX` would overflow the deadline arithmetic).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The default deadline of one `/oauth/token` exchange.
pub const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Environment variable holding the environment URL (`https://<sub>.scalekit.com`; `http://`
/// only to a loopback host).
pub const ENV_URL: &str = "SCALEKIT_ENVIRONMENT_URL";
/// Environment variable holding the client id (`skc_...`).
pub const ENV_CLIENT_ID: &str = "SCALEKIT_CLIENT_ID";
/// Environment variable holding the client secret.
pub const ENV_CLIENT_SECRET: &str = "SCALEKIT_CLIENT_SECRET";
/// Environment variable choosing the [`Transport`]: `rest` (default) or `grpc`.
pub const ENV_TRANSPORT: &str = "SCALEKIT_TRANSPORT";
/// Environment variable naming a PEM file of extra root certificates to trust (private
/// deployments, tests against a local fake with its own CA).
pub const ENV_CA_FILE: &str = "SCALEKIT_CA_FILE";

/// The wire a [`ScalekitClient`] speaks; both give the same API and the same verdicts.
///
/// * [`Rest`](Self::Rest) (default): JSON on `/api/v1/tokens…`, the routes of the proto's
///   `google.api.http` annotations, over reqwest.
/// * [`Grpc`](Self::Grpc) (feature `grpc`): `scalekit.v1.tokens.ApiTokenService` over HTTP/2
///   with TLS (ALPN `h2`; plaintext only to loopback), the transport every official SDK uses.
///
/// ```
/// use axum_api_key::scalekit::Transport;
/// use axum_api_key::scalekit::ScalekitClient;
///
/// assert_eq!("grpc".parse::<Transport>(), Ok(Transport::Grpc));
/// let client = ScalekitClient::builder("https://acme.scalekit.dev", "skc_1", "secret")
///     .transport(Transport::Rest)
///     .build()
///     .unwrap();
/// assert_eq!(client.transport(), Transport::Rest);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// REST/JSON (reqwest).
    #[default]
    Rest,
    /// gRPC (tonic); building a client with it fails without the `grpc` feature.
    Grpc,
}

impl std::str::FromStr for Transport {
    type Err = ScalekitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "rest" | "http" | "json" => Ok(Self::Rest),
            "grpc" => Ok(Self::Grpc),
            _ => Err(ScalekitError::Config(format!(
                "{ENV_TRANSPORT} must be `rest` or `grpc`"
            ))),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rest => "rest",
            Self::Grpc => "grpc",
        })
    }
}

/// A client for Scalekit's API-key service; cheap to clone (clones share the connection pool,
/// the access token and the event listeners).
///
/// * Admin calls: [`create_token`](Self::create_token), [`validate_token`](Self::validate_token)
///   (key **or** token id, as Scalekit does), [`list_tokens`](Self::list_tokens),
///   [`list_all_tokens`](Self::list_all_tokens), [`update_token`](Self::update_token),
///   [`invalidate_token`](Self::invalidate_token).
/// * As a [`Validator`](crate::Validator) for [`ApiKeyLayer`](crate::ApiKeyLayer): keys only
///   (token ids are refused locally), an overall deadline of
///   [`validate_timeout`](ScalekitClientBuilder::validate_timeout), one quick retry on
///   502/503/504 or a broken connection, and 503 (never 200, never 401) when Scalekit cannot
///   answer.
/// * [`KeyEventSource`]: creations and revocations made through this client are published
///   before the call returns, so a cache can evict at once.
/// * The client-credentials access token is fetched once for all callers and cached for the
///   `expires_in` Scalekit announces (at most 30 days; absent: an hour; 0 or negative: 30 s),
///   and renewed before it expires.
/// * A 400, 401, 403 or 404 is a verdict on the key only with Scalekit's `google.rpc.Status`
///   body of the matching code; a proxy's or a wrong URL's page is an outage (503), see
///   [`ScalekitError`].
///
/// Neither the client secret, the access token nor any API key appears in its `Debug` output,
/// its logs or its errors.
#[derive(Clone)]
pub struct ScalekitClient {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    client_id: String,
    client_secret: Zeroizing<String>,
    http: reqwest::Client,
    validate_timeout: Duration,
    request_timeout: Duration,
    token_timeout: Duration,
    api_version: HeaderValue,
    user_agent: HeaderValue,
    tokens: auth::TokenCache,
    events: KeyEvents,
    transport: Transport,
    #[cfg(feature = "grpc")]
    grpc: Option<grpc::GrpcTransport>,
}

impl fmt::Debug for ScalekitClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("ScalekitClient")
            .field("base_url", &inner.base_url)
            .field("client_id", &inner.client_id)
            .field("transport", &inner.transport)
            .field("api_version", &inner.api_version)
            .field("validate_timeout", &inner.validate_timeout)
            .field("request_timeout", &inner.request_timeout)
            .field("token_timeout", &inner.token_timeout)
            .field("access_token", &inner.tokens)
            .finish_non_exhaustive()
    }
}

impl ScalekitClient {
    /// Starts a [`ScalekitClientBuilder`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum_api_key::scalekit::ScalekitClient;
    ///
    /// let client = ScalekitClient::builder("https://acme.scalekit.dev/", "skc_123", "secret")
    ///     .validate_timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(client.base_url(), "https://acme.scalekit.dev");
    /// assert!(!format!("{client:?}").contains("secret"));
    /// ```
    pub fn builder(
        environment_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> ScalekitClientBuilder {
        ScalekitClientBuilder {
            environment_url: environment_url.into(),
            client_id: client_id.into(),
            client_secret: Zeroizing::new(client_secret.into()),
            validate_timeout: DEFAULT_VALIDATE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            token_timeout: DEFAULT_TOKEN_TIMEOUT,
            http: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
            transport: Transport::Rest,
            roots: Vec::new(),
        }
    }

    /// A client configured from `SCALEKIT_ENVIRONMENT_URL`, `SCALEKIT_CLIENT_ID` and
    /// `SCALEKIT_CLIENT_SECRET`, with default timeouts. A missing or empty variable is a
    /// [`ScalekitError::Config`] naming it. Optional: `SCALEKIT_TRANSPORT` (`rest` or `grpc`,
    /// see [`Transport`]) and `SCALEKIT_CA_FILE` (a PEM file of extra roots to trust).
    ///
    /// ```no_run
    /// let client = axum_api_key::scalekit::ScalekitClient::from_env()?;
    /// # Ok::<(), axum_api_key::scalekit::ScalekitError>(())
    /// ```
    pub fn from_env() -> Result<Self, ScalekitError> {
        Self::builder_from_env()?.build()
    }

    /// The builder [`from_env`](Self::from_env) uses, to adjust it before building (or to run
    /// [`ScalekitClientBuilder::doctor`]).
    pub fn builder_from_env() -> Result<ScalekitClientBuilder, ScalekitError> {
        let mut builder = Self::builder(
            required_env(ENV_URL)?,
            required_env(ENV_CLIENT_ID)?,
            required_env(ENV_CLIENT_SECRET)?,
        );
        if let Some(transport) = optional_env(ENV_TRANSPORT) {
            builder = builder.transport(transport.parse()?);
        }
        if let Some(path) = optional_env(ENV_CA_FILE) {
            let pem = read_ca_file(&path)?;
            builder = builder.add_root_certificate(pem);
        }
        Ok(builder)
    }

    /// Like [`from_env`](Self::from_env), but `Ok(None)` when `SCALEKIT_ENVIRONMENT_URL` is
    /// unset or empty, so a program can fall back to another validator (the quickstart uses
    /// [`InMemoryTokens`](crate::InMemoryTokens)). When the URL is set, the two other variables
    /// are required.
    ///
    /// ```
    /// use axum_api_key::InMemoryTokens;
    /// use axum_api_key::scalekit::ScalekitClient;
    /// use axum_api_key::validator::BoxValidator;
    ///
    /// // Scalekit when configured, the in-memory store otherwise (tests, demos).
    /// let validator = match ScalekitClient::from_env_opt()? {
    ///     Some(client) => BoxValidator::new(client),
    ///     None => BoxValidator::new(InMemoryTokens::new()),
    /// };
    /// # Ok::<(), axum_api_key::scalekit::ScalekitError>(())
    /// ```
    pub fn from_env_opt() -> Result<Option<Self>, ScalekitError> {
        match std::env::var(ENV_URL) {
            Ok(url) if !url.trim().is_empty() => Self::from_env().map(Some),
            _ => Ok(None),
        }
    }

    /// The environment URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The wire this client speaks.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// Forgets the cached access token; the next call fetches a new one. Useful after rotating
    /// the client secret in Scalekit's dashboard.
    pub fn clear_access_token(&self) {
        self.inner.tokens.clear();
    }
}

impl KeyEventSource for ScalekitClient {
    fn key_events(&self) -> &KeyEvents {
        &self.inner.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_bad_configuration() {
        let bad = |url: &str, id: &str, secret: &str| {
            ScalekitClient::builder(url, id, secret)
                .build()
                .unwrap_err()
        };
        assert!(matches!(
            bad("ftp://x", "id", "s"),
            ScalekitError::Config(_)
        ));
        assert!(matches!(
            bad("not a url", "id", "s"),
            ScalekitError::Config(_)
        ));
        assert!(matches!(
            bad("https://x", "", "s"),
            ScalekitError::Config(_)
        ));
        assert!(matches!(
            bad("https://x", "id", ""),
            ScalekitError::Config(_)
        ));
        assert!(matches!(
            bad("https://x?a=b", "id", "s"),
            ScalekitError::Config(_)
        ));
        assert!(matches!(
            ScalekitClient::builder("https://x", "id", "s")
                .api_version("bad\nversion")
                .build(),
            Err(ScalekitError::Config(_))
        ));
    }

    #[test]
    fn debug_hides_the_secret_and_trims_the_url() {
        let builder = ScalekitClient::builder("https://acme.scalekit.dev//", "skc_1", "hunter2");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let client = builder.build().unwrap();
        assert!(!format!("{client:?}").contains("hunter2"));
        assert_eq!(client.base_url(), "https://acme.scalekit.dev");
    }
}
