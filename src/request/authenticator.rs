//! The authentication pipeline, in one place: `Authorization` header -> bearer token -> local
//! key checks -> validator (on the spot when it can answer at once) -> verdict. The service's
//! `call`, [`ApiKeyLayer::authenticate`](crate::ApiKeyLayer::authenticate) and
//! [`ApiKeyLayer::validate_key`](crate::ApiKeyLayer::validate_key) all go through it.

use std::sync::Arc;

use http::{Extensions, HeaderMap};

use super::bearer::{BearerError, bearer_token};
use super::key::{ApiKey, Fingerprint, KeyFormat};
use super::reject::{AuthRejection, DEFAULT_RETRY_AFTER, RejectionKind, Renderer};
use super::state::AuthState;
#[cfg(feature = "ratelimit")]
use crate::ratelimit::{ClientKey, FailedKeyThrottle, InFlight};
use crate::telemetry::{self, Outcome};
use crate::token_info::Authenticated;
use crate::validator::contract::{FingerprintLookup, ValidateError, Validator};

/// Who presented a key, as the failed-key throttle knows clients (nothing without it).
#[cfg(feature = "ratelimit")]
pub(crate) type Client = Option<ClientKey>;
#[cfg(not(feature = "ratelimit"))]
pub(crate) type Client = Option<std::convert::Infallible>;

/// An upstream validation counted against its client while in flight.
#[cfg(feature = "ratelimit")]
pub(crate) type Ticket = Option<InFlight>;
#[cfg(not(feature = "ratelimit"))]
pub(crate) type Ticket = Option<std::convert::Infallible>;

/// Whether requests without credentials may reach the inner service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Required,
    Optional,
}

/// The settings of one layer, shared by all its services.
#[derive(Clone)]
pub(crate) struct Authenticator {
    pub(crate) renderer: Arc<Renderer>,
    pub(crate) mode: Mode,
    pub(crate) strip_authorization: bool,
    pub(crate) format: KeyFormat,
    /// Throttles clients that present refused keys (feature `ratelimit`; on by default).
    #[cfg(feature = "ratelimit")]
    pub(crate) throttle: Option<Arc<FailedKeyThrottle>>,
    /// Limits every authenticated request, in the layer itself (feature `ratelimit`).
    #[cfg(feature = "ratelimit")]
    pub(crate) limits: Option<crate::ratelimit::RateLimitLayer>,
}

/// Where a request stands after the synchronous part of the pipeline.
pub(crate) enum Step {
    /// No credentials, and the layer is optional.
    Anonymous,
    /// Decided on the spot.
    Decided(Result<Authenticated, AuthRejection>),
    /// The validator must be awaited (an upstream call, typically), for this client.
    Validate(ApiKey, Ticket),
}

impl Authenticator {
    /// The synchronous part: parse, check, and ask the validator for an immediate answer.
    /// `extensions` name the client for the failed-key throttle (`ConnectInfo`).
    pub(crate) fn begin<V: Validator + ?Sized>(
        &self,
        validator: &V,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Step {
        match self.parse(headers) {
            Ok(Some(token)) => {
                self.ask_now(validator, token, || self.client_of(headers, extensions))
            }
            Ok(None) => Step::Anonymous,
            Err(rejection) => Step::Decided(Err(rejection)),
        }
    }

    /// Like [`begin`](Self::begin), for a bare key (no `Bearer` prefix) and no known client.
    pub(crate) fn begin_key<V: Validator + ?Sized>(&self, validator: &V, key: &str) -> Step {
        match self.check_key(key) {
            Ok(token) => self.ask_now(validator, token, || None),
            Err(rejection) => Step::Decided(Err(rejection)),
        }
    }

    /// The asynchronous part, for [`Step::Validate`].
    pub(crate) async fn finish<V: Validator + ?Sized>(
        &self,
        validator: &V,
        key: ApiKey,
        ticket: Ticket,
    ) -> Result<Authenticated, AuthRejection> {
        let answer = validator.validate(&key).await;
        if matches!(answer, Err(ValidateError::Invalid(_))) {
            record_refusal(&ticket);
        }
        // The ticket (the client's in-flight count) ends with this function.
        self.verdict(answer, key.fingerprint())
    }

    /// The whole pipeline, awaited.
    pub(crate) async fn run<V: Validator + ?Sized>(
        &self,
        validator: &V,
        step: Step,
    ) -> Result<Option<Authenticated>, AuthRejection> {
        match step {
            Step::Anonymous => Ok(None),
            Step::Decided(decided) => decided.map(Some),
            Step::Validate(key, client) => self.finish(validator, key, client).await.map(Some),
        }
    }

    /// What the extractors will find in the request.
    pub(crate) fn state(&self, auth: Option<Authenticated>) -> AuthState {
        AuthState {
            auth,
            renderer: (!Renderer::is_default(&self.renderer)).then(|| self.renderer.clone()),
            #[cfg(feature = "ratelimit")]
            rate_limit: None,
        }
    }

    pub(crate) fn reject(&self, kind: RejectionKind) -> AuthRejection {
        AuthRejection::new(kind, self.renderer.clone())
    }

    fn ask_now<V: Validator + ?Sized>(
        &self,
        validator: &V,
        token: &str,
        client: impl FnOnce() -> Client,
    ) -> Step {
        // The common case (a cache hit, an in-memory store) is answered on the spot: no boxed
        // future for the caller to poll, and no throttle: it costs nobody anything. A cache
        // answers from the fingerprint of the header's bytes, so a hit copies no secret; the
        // zeroizing copy is made only for a validator that needs the key.
        let fingerprint = Fingerprint::of(token);
        let key = match validator.validate_fingerprint_now(fingerprint) {
            FingerprintLookup::Answered(answer) => {
                return Step::Decided(self.verdict(answer, fingerprint));
            }
            FingerprintLookup::Missed => ApiKey::with_fingerprint(token, fingerprint),
            FingerprintLookup::NeedsKey => {
                let key = ApiKey::with_fingerprint(token, fingerprint);
                if let Some(answer) = validator.validate_now(&key) {
                    return Step::Decided(self.verdict(answer, fingerprint));
                }
                key
            }
        };
        // An upstream call: a client that already presented too many refused keys waits.
        match self.ticket(client()) {
            Ok(ticket) => Step::Validate(key, ticket),
            Err(rejection) => {
                tracing::debug!(fingerprint = %key.fingerprint(), "unknown key from a throttled client");
                Step::Decided(Err(rejection))
            }
        }
    }

    #[cfg(feature = "ratelimit")]
    fn client_of(&self, headers: &HeaderMap, extensions: &Extensions) -> Client {
        self.throttle
            .as_ref()
            .and_then(|throttle| throttle.client_of(headers, extensions))
    }

    #[cfg(not(feature = "ratelimit"))]
    fn client_of(&self, _headers: &HeaderMap, _extensions: &Extensions) -> Client {
        None
    }

    #[cfg(feature = "ratelimit")]
    fn ticket(&self, client: Client) -> Result<Ticket, AuthRejection> {
        let (Some(throttle), Some(client)) = (&self.throttle, client) else {
            return Ok(None);
        };
        throttle.begin(client).map(Some).map_err(|wait| {
            telemetry::request(Outcome::RateLimited);
            self.reject(RejectionKind::RateLimited {
                retry_after: wait.0,
            })
        })
    }

    #[cfg(not(feature = "ratelimit"))]
    fn ticket(&self, _client: Client) -> Result<Ticket, AuthRejection> {
        Ok(None)
    }

    /// Reads and checks the key, in place. `Ok(None)`: no credentials, and the layer is
    /// optional.
    fn parse<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, AuthRejection> {
        if let Some(token) = self.well_formed_token(headers) {
            return Ok(Some(token));
        }
        let error = match bearer_token(headers, self.format.max_len()) {
            Ok(token) => return self.check_key(token).map(Some),
            Err(error) => error,
        };
        telemetry::request(match error {
            BearerError::Missing => Outcome::Missing,
            _ => Outcome::Malformed,
        });
        match error {
            BearerError::Missing if self.mode == Mode::Optional => Ok(None),
            BearerError::Missing => Err(self.reject(RejectionKind::MissingCredentials)),
            BearerError::Multiple => Err(self.reject(RejectionKind::InvalidRequest(
                "exactly one Authorization header is allowed",
            ))),
            BearerError::Empty => Err(self.reject(RejectionKind::InvalidRequest(
                "the Bearer scheme needs a token after it",
            ))),
            BearerError::Malformed => {
                tracing::debug!(reason = "malformed_bearer", "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    /// The common case in one pass over the key: one `Authorization` value, `Bearer`, and a
    /// token the key format accepts. Every format alphabet is a subset of RFC 6750's
    /// `b64token` (without its trailing `=`) and its length bound is the parser's, so whatever
    /// this accepts, the full parse and check accept too; anything else (`None`) takes the
    /// full path, which names the reason.
    #[inline]
    fn well_formed_token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let token = super::bearer::scheme_rest(value.as_bytes()).ok()?;
        self.format.check_bytes(token).ok()?;
        std::str::from_utf8(token).ok()
    }

    fn check_key<'t>(&self, token: &'t str) -> Result<&'t str, AuthRejection> {
        match self.format.check(token) {
            Ok(()) => Ok(token),
            Err(reason) => {
                telemetry::request(Outcome::Malformed);
                tracing::debug!(reason = reason.as_str(), "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    /// Turns the validator's answer into the layer's, logging refusals by fingerprint.
    fn verdict(
        &self,
        answer: Result<Authenticated, ValidateError>,
        fingerprint: Fingerprint,
    ) -> Result<Authenticated, AuthRejection> {
        match answer {
            Ok(auth) => {
                telemetry::request(Outcome::Accepted);
                Ok(auth)
            }
            Err(ValidateError::Invalid(reason)) => {
                telemetry::request(Outcome::Invalid);
                tracing::debug!(%fingerprint, %reason, "API key refused");
                Err(self.reject(RejectionKind::InvalidToken))
            }
            Err(error) => {
                telemetry::request(Outcome::Unavailable);
                tracing::warn!(%fingerprint, %error, "API key could not be validated");
                Err(self.reject(RejectionKind::Unavailable {
                    retry_after: error.retry_after().unwrap_or(DEFAULT_RETRY_AFTER),
                }))
            }
        }
    }
}

#[cfg(feature = "ratelimit")]
fn record_refusal(ticket: &Ticket) {
    if let Some(ticket) = ticket {
        ticket.refused();
    }
}

#[cfg(not(feature = "ratelimit"))]
fn record_refusal(_ticket: &Ticket) {}
