//! The authentication pipeline, in one place: `Authorization` header -> bearer token -> local
//! key checks -> validator (on the spot when it can answer at once) -> verdict. The service's
//! `call`, [`ApiKeyLayer::authenticate`](crate::ApiKeyLayer::authenticate) and
//! [`ApiKeyLayer::validate_key`](crate::ApiKeyLayer::validate_key) all go through it.

use std::sync::Arc;

use http::HeaderMap;

use super::bearer::{BearerError, bearer_token};
use super::key::{ApiKey, KeyFormat};
use super::reject::{AuthRejection, DEFAULT_RETRY_AFTER, RejectionKind, Renderer};
use super::state::AuthState;
use crate::token_info::Authenticated;
use crate::validator::contract::{ValidateError, Validator};

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
}

/// Where a request stands after the synchronous part of the pipeline.
pub(crate) enum Step {
    /// No credentials, and the layer is optional.
    Anonymous,
    /// Decided on the spot.
    Decided(Result<Authenticated, AuthRejection>),
    /// The validator must be awaited.
    Validate(ApiKey),
}

impl Authenticator {
    /// The synchronous part: parse, check, and ask the validator for an immediate answer.
    pub(crate) fn begin<V: Validator + ?Sized>(&self, validator: &V, headers: &HeaderMap) -> Step {
        match self.parse(headers) {
            Ok(Some(key)) => self.ask_now(validator, key),
            Ok(None) => Step::Anonymous,
            Err(rejection) => Step::Decided(Err(rejection)),
        }
    }

    /// Like [`begin`](Self::begin), for a bare key (no `Bearer` prefix).
    pub(crate) fn begin_key<V: Validator + ?Sized>(&self, validator: &V, key: &str) -> Step {
        match self.check_key(key) {
            Ok(key) => self.ask_now(validator, key),
            Err(rejection) => Step::Decided(Err(rejection)),
        }
    }

    /// The asynchronous part, for [`Step::Validate`].
    pub(crate) async fn finish<V: Validator + ?Sized>(
        &self,
        validator: &V,
        key: ApiKey,
    ) -> Result<Authenticated, AuthRejection> {
        let answer = validator.validate(&key).await;
        self.verdict(answer, &key)
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
            Step::Validate(key) => self.finish(validator, key).await.map(Some),
        }
    }

    /// What the extractors will find in the request.
    pub(crate) fn state(&self, auth: Option<Authenticated>) -> AuthState {
        AuthState {
            auth,
            renderer: self.renderer.clone(),
        }
    }

    fn reject(&self, kind: RejectionKind) -> AuthRejection {
        AuthRejection::new(kind, self.renderer.clone())
    }

    fn ask_now<V: Validator + ?Sized>(&self, validator: &V, key: ApiKey) -> Step {
        // The common case (a cache hit, an in-memory store) is answered on the spot: no boxed
        // future for the caller to poll.
        match validator.validate_now(&key) {
            Some(answer) => Step::Decided(self.verdict(answer, &key)),
            None => Step::Validate(key),
        }
    }

    /// Reads and checks the key. `Ok(None)`: no credentials, and the layer is optional.
    fn parse(&self, headers: &HeaderMap) -> Result<Option<ApiKey>, AuthRejection> {
        match bearer_token(headers, self.format.max_len()) {
            Ok(token) => self.check_key(token).map(Some),
            Err(BearerError::Missing) if self.mode == Mode::Optional => Ok(None),
            Err(BearerError::Missing) => Err(self.reject(RejectionKind::MissingCredentials)),
            Err(BearerError::Multiple) => Err(self.reject(RejectionKind::InvalidRequest(
                "exactly one Authorization header is allowed",
            ))),
            Err(BearerError::Empty) => Err(self.reject(RejectionKind::InvalidRequest(
                "the Bearer scheme needs a token after it",
            ))),
            Err(BearerError::Malformed) => {
                tracing::debug!(reason = "malformed_bearer", "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    fn check_key(&self, token: &str) -> Result<ApiKey, AuthRejection> {
        match self.format.check(token) {
            Ok(()) => Ok(ApiKey::new(token)),
            Err(reason) => {
                tracing::debug!(reason = reason.as_str(), "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    /// Turns the validator's answer into the layer's, logging refusals by fingerprint.
    fn verdict(
        &self,
        answer: Result<Authenticated, ValidateError>,
        key: &ApiKey,
    ) -> Result<Authenticated, AuthRejection> {
        match answer {
            Ok(auth) => Ok(auth),
            Err(ValidateError::Invalid(reason)) => {
                tracing::debug!(fingerprint = %key.fingerprint(), %reason, "API key refused");
                Err(self.reject(RejectionKind::InvalidToken))
            }
            Err(ValidateError::Unavailable {
                message,
                retry_after,
            }) => {
                tracing::warn!(fingerprint = %key.fingerprint(), %message, "API key could not be validated");
                Err(self.reject(RejectionKind::Unavailable {
                    retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                }))
            }
        }
    }
}
