//! [`ScalekitClientBuilder`]: a client's settings, from code or from the environment, checked
//! once at [`build`](ScalekitClientBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use zeroize::Zeroizing;

use super::{
    DEFAULT_TOKEN_TIMEOUT, ENV_CA_FILE, Inner, MAX_TIMEOUT, ScalekitClient, ScalekitError,
    Transport, auth,
};
use crate::keys::KeyEvents;

/// What both transports send as `User-Agent`.
const USER_AGENT: &str = concat!("axum-api-key/", env!("CARGO_PKG_VERSION"), " (rust)");

/// Configures a [`ScalekitClient`]; see [`ScalekitClient::builder`]. A clone keeps its own
/// copy of the secret, zeroized on drop like the original.
#[derive(Clone)]
#[must_use]
pub struct ScalekitClientBuilder {
    pub(super) environment_url: String,
    pub(super) client_id: String,
    pub(super) client_secret: Zeroizing<String>,
    pub(super) validate_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) token_timeout: Duration,
    pub(super) http: Option<reqwest::Client>,
    pub(super) api_version: String,
    pub(super) transport: Transport,
    pub(super) roots: Vec<Vec<u8>>,
}

impl fmt::Debug for ScalekitClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScalekitClientBuilder")
            .field("environment_url", &self.environment_url)
            .field("client_id", &self.client_id)
            .field("validate_timeout", &self.validate_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("token_timeout", &self.token_timeout)
            .field("custom_http_client", &self.http.is_some())
            .field("api_version", &self.api_version)
            .field("transport", &self.transport)
            .field("extra_roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl ScalekitClientBuilder {
    /// The overall deadline of one validation, retry and access-token fetch included
    /// (default 3 s). Keep it short: it bounds the latency a Scalekit outage adds to every
    /// request.
    pub fn validate_timeout(mut self, timeout: Duration) -> Self {
        self.validate_timeout = timeout;
        self
    }

    /// The deadline of one admin call (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The deadline of one `/oauth/token` exchange (default 5 s; on the validate path the
    /// validate deadline still applies).
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.token_timeout = timeout;
        self
    }

    /// Uses `client` for every request (proxies, custom TLS roots, ...). The user-agent and
    /// the per-call timeouts are still set per request. Prefer a client that does not follow
    /// redirects: the default one does not.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The `x-api-version` header (default [`DEFAULT_API_VERSION`](super::DEFAULT_API_VERSION)).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// The wire to speak (default [`Transport::Rest`]; `SCALEKIT_TRANSPORT` in
    /// [`ScalekitClient::from_env`]). The access token is fetched over HTTPS either way.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Trusts the root certificate(s) in `pem` as well as the webpki roots, on both
    /// transports (`SCALEKIT_CA_FILE` in [`ScalekitClient::from_env`]). Not applied to a
    /// client given to [`http_client`](Self::http_client): configure that one yourself.
    ///
    /// ```
    /// # let pem = b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec();
    /// let builder = axum_api_key::scalekit::ScalekitClient::builder("https://sk.internal", "skc_1", "s")
    ///     .add_root_certificate(pem);
    /// // A PEM without a certificate makes `build()` fail with a configuration error.
    /// assert!(builder.build().is_err());
    /// ```
    pub fn add_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// Builds the client. Fails on an empty id or secret, a URL that is not `https://host` (or
    /// `http://` to a loopback host: `127.0.0.0/8`, `[::1]`, `localhost`), an API version that
    /// is not a valid header value, or a timeout that is zero or over [`MAX_TIMEOUT`].
    pub fn build(self) -> Result<ScalekitClient, ScalekitError> {
        for (name, timeout) in [
            ("validate_timeout", self.validate_timeout),
            ("request_timeout", self.request_timeout),
            ("token_timeout", self.token_timeout),
        ] {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(ScalekitError::Config(format!(
                    "{name} must be between 1 ns and {} s",
                    MAX_TIMEOUT.as_secs()
                )));
            }
        }
        let base_url = self.environment_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| ScalekitError::Config(format!("bad environment URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ScalekitError::Config(
                "the environment URL must be http(s)://host".into(),
            ));
        }
        if parsed.scheme() == "http" && !is_loopback(&parsed) {
            // The client secret, the access tokens and every API key validated would cross
            // the network in the clear.
            return Err(ScalekitError::Config(
                "plaintext (http://) is only allowed to a loopback address (127.0.0.0/8, ::1, \
                 localhost); use https://"
                    .into(),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ScalekitError::Config(
                "the environment URL must not carry a query or fragment".into(),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(ScalekitError::Config("the client id is empty".into()));
        }
        if self.client_secret.is_empty() {
            return Err(ScalekitError::Config("the client secret is empty".into()));
        }
        let api_version = HeaderValue::from_str(&self.api_version)
            .map_err(|_| ScalekitError::Config("bad api version".into()))?;
        let user_agent = HeaderValue::from_static(USER_AGENT);
        let connect_timeout = self.validate_timeout.min(DEFAULT_TOKEN_TIMEOUT);
        let mut roots = Vec::new();
        for pem in &self.roots {
            let bundle = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ScalekitError::Config(format!("root certificate: {e}")))?;
            if bundle.is_empty() {
                return Err(ScalekitError::Config(
                    "root certificate: no certificate in the PEM".into(),
                ));
            }
            roots.extend(bundle);
        }
        let http = match self.http {
            Some(client) => client,
            None => {
                let mut builder = reqwest::Client::builder()
                    // A redirect would re-send the bearer token somewhere else, and turn POSTs
                    // into GETs: an answer we do not expect is an error, not a hop.
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(connect_timeout);
                for root in roots {
                    builder = builder.add_root_certificate(root);
                }
                builder
                    .build()
                    .map_err(|e| ScalekitError::Config(format!("HTTP client: {e}")))?
            }
        };
        #[cfg(feature = "grpc")]
        let grpc = match self.transport {
            Transport::Grpc => Some(super::grpc::GrpcTransport::new(
                &base_url,
                &parsed,
                &self.roots,
                connect_timeout,
                USER_AGENT,
                &api_version,
            )?),
            Transport::Rest => None,
        };
        #[cfg(not(feature = "grpc"))]
        if self.transport == Transport::Grpc {
            return Err(ScalekitError::Config(
                "the gRPC transport needs the crate feature `grpc`".into(),
            ));
        }
        Ok(ScalekitClient {
            inner: Arc::new(Inner {
                base_url,
                client_id: self.client_id.trim().to_owned(),
                client_secret: self.client_secret,
                http,
                validate_timeout: self.validate_timeout,
                request_timeout: self.request_timeout,
                token_timeout: self.token_timeout,
                api_version,
                user_agent,
                tokens: auth::TokenCache::default(),
                events: KeyEvents::new(),
                transport: self.transport,
                #[cfg(feature = "grpc")]
                grpc,
            }),
        })
    }
}

/// `true` for a URL whose host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`:
/// the only hosts plaintext `http://` may go to, on either transport.
pub(super) fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed; the parser has already normalized IPv4 forms (`127.1`).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

pub(super) fn optional_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The most read from `SCALEKIT_CA_FILE`: a bundle of a few hundred roots is under 1 MiB.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

pub(super) fn read_ca_file(path: &str) -> Result<Vec<u8>, ScalekitError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| ScalekitError::Config(format!("{ENV_CA_FILE} {path:?}: {e}")))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|e| ScalekitError::Config(format!("{ENV_CA_FILE} {path:?}: {e}")))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(ScalekitError::Config(format!(
            "{ENV_CA_FILE} {path:?} is larger than {MAX_CA_FILE} bytes"
        )));
    }
    Ok(pem)
}

pub(super) fn required_env(name: &str) -> Result<String, ScalekitError> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(ScalekitError::Config(format!("{name} is not set"))),
    }
}
