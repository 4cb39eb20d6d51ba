//! The [`Validator`] contract and its verdicts.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::request::key::Fingerprint;
use crate::request::{ApiKey, KeyFormat};
use crate::token_info::Authenticated;

/// Decides whether an API key is valid.
///
/// Implemented by [`InMemoryTokens`](crate::InMemoryTokens), the Scalekit client and
/// `CachedValidator`; by `Arc<V>`; by closures through [`validator_fn`](crate::validator_fn);
/// and by [`BoxValidator`](super::BoxValidator) when the concrete type must be erased.
///
/// The validator only ever sees keys that passed the layer's local checks
/// ([`key_format`](Self::key_format)). It must fail closed: return `Ok` only on a positive answer,
/// [`ValidateError::Invalid`] when the key is known to be bad, and
/// [`ValidateError::Unavailable`] when it cannot tell (the layer then answers 503, never 200).
///
/// ```
/// use axum_api_key::validator::InvalidReason;
/// use axum_api_key::{ApiKey, Authenticated, TokenInfo, ValidateError, Validator};
///
/// struct OneKey(String);
///
/// impl Validator for OneKey {
///     async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
///         use subtle::ConstantTimeEq;
///         if key.expose_secret().as_bytes().ct_eq(self.0.as_bytes()).into() {
///             Ok(TokenInfo::builder("key_1", "org_1").build().into())
///         } else {
///             Err(ValidateError::Invalid(InvalidReason::Unknown))
///         }
///     }
/// }
/// ```
pub trait Validator: Send + Sync + 'static {
    /// Validates `key`.
    fn validate(
        &self,
        key: &ApiKey,
    ) -> impl Future<Output = Result<Authenticated, ValidateError>> + Send;

    /// Answers without waiting when the answer is already at hand (a cache hit, an in-memory
    /// store); `None` means "ask [`validate`](Self::validate)". The layer tries this first, so
    /// the common case needs no boxed future. It must agree with `validate`; the default never
    /// answers.
    fn validate_now(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        let _ = key;
        None
    }

    /// Which values can be keys of this validator, checked by the layer before it asks
    /// (values outside it are refused locally, with no call). The default,
    /// [`KeyFormat::neutral`], suits most home-grown keys (`sk_live_...`); a validator of a
    /// particular provider narrows it (Scalekit's refuses its public token ids). A layer can
    /// still override it with [`ApiKeyLayer::key_format`](crate::ApiKeyLayer::key_format).
    fn key_format(&self) -> KeyFormat {
        KeyFormat::neutral()
    }

    /// Answers from the key's [`Fingerprint`] alone, before the layer copies the key out of
    /// the request: what a validator that keeps its answers by fingerprint (a cache) does on
    /// a hit, so a hit makes no copy of the secret. The default, [`FingerprintLookup::NeedsKey`],
    /// sends the layer on to [`validate_now`](Self::validate_now) with the key. It must agree
    /// with `validate_now` and `validate`.
    ///
    /// ```
    /// use axum_api_key::request::Fingerprint;
    /// use axum_api_key::validator::FingerprintLookup;
    /// use axum_api_key::{InMemoryTokens, Validator};
    ///
    /// let store = InMemoryTokens::new(); // keeps keys by its own hash: needs the key
    /// let lookup = store.validate_fingerprint_now(Fingerprint::of("k".repeat(70).as_str()));
    /// assert!(matches!(lookup, FingerprintLookup::NeedsKey));
    /// ```
    fn validate_fingerprint_now(&self, fingerprint: Fingerprint) -> FingerprintLookup {
        let _ = fingerprint;
        FingerprintLookup::NeedsKey
    }
}

/// What [`Validator::validate_fingerprint_now`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum FingerprintLookup {
    /// The answer, on the spot (as [`Validator::validate_now`] would give it).
    Answered(Result<Authenticated, ValidateError>),
    /// Nothing at hand: go straight to [`Validator::validate`] (`validate_now` would only look
    /// again).
    Missed,
    /// This validator needs the key itself: ask [`Validator::validate_now`], then `validate`.
    NeedsKey,
}

impl<V: Validator + ?Sized> Validator for Arc<V> {
    fn validate(
        &self,
        key: &ApiKey,
    ) -> impl Future<Output = Result<Authenticated, ValidateError>> + Send {
        (**self).validate(key)
    }

    fn validate_now(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        (**self).validate_now(key)
    }

    fn key_format(&self) -> KeyFormat {
        (**self).key_format()
    }

    fn validate_fingerprint_now(&self, fingerprint: Fingerprint) -> FingerprintLookup {
        (**self).validate_fingerprint_now(fingerprint)
    }
}

/// Why a validation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The key is not valid (unknown, revoked, expired...). The layer answers 401
    /// `invalid_token`, with the same body whatever the reason.
    #[error("the API key is not valid ({0})")]
    Invalid(InvalidReason),
    /// The validator cannot tell now (upstream down, timeout, budget exhausted). The layer
    /// answers 503 with `Retry-After`. An upstream that refuses to answer because of load is
    /// [`UpstreamRateLimited`](Self::UpstreamRateLimited) instead.
    #[error("the API key cannot be validated now: {message}")]
    Unavailable {
        /// What went wrong, for logs. Never contains the key.
        message: Cow<'static, str>,
        /// How long the client should wait before retrying, if known.
        retry_after: Option<Duration>,
    },
    /// The upstream refused to answer because it is rate-limiting this client (HTTP 429, gRPC
    /// `RESOURCE_EXHAUSTED`). The layer answers 503 with `Retry-After`, as for
    /// [`Unavailable`](Self::Unavailable). What differs is that
    /// [`CachedValidator`](crate::cache::CachedValidator)'s stale-if-error never covers it:
    /// that covers outages (connection failures, timeouts, 5xx), while a 429 is the upstream's
    /// answer to load, which anyone flooding random keys can cause.
    #[error("the API key cannot be validated now: the upstream is rate-limiting validations")]
    UpstreamRateLimited {
        /// The upstream's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl ValidateError {
    /// A [`ValidateError::Unavailable`] with no retry hint.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// `true` for [`ValidateError::Invalid`].
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }

    /// The client's `Retry-After` hint, when the error is one that asks to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::UpstreamRateLimited { retry_after } => {
                *retry_after
            }
            Self::Invalid(_) => None,
        }
    }
}

/// Why a key is not valid: for logs and metrics only, never for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The validator does not know the key.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key has expired.
    Expired,
    /// The upstream refused the request as malformed or forbidden.
    Rejected,
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        })
    }
}
