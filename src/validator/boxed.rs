//! Type-erased validators.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::contract::{FingerprintLookup, ValidateError, Validator};
use crate::request::key::Fingerprint;
use crate::request::{ApiKey, KeyFormat};
use crate::token_info::Authenticated;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe twin of [`Validator`], implemented for every validator.
pub trait DynValidator: Send + Sync + 'static {
    /// Validates `key`, boxing the future.
    fn validate_boxed<'a>(
        &'a self,
        key: &'a ApiKey,
    ) -> BoxFuture<'a, Result<Authenticated, ValidateError>>;

    /// [`Validator::validate_now`], object-safe.
    fn validate_now_dyn(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>>;

    /// [`Validator::key_format`], object-safe.
    fn key_format_dyn(&self) -> KeyFormat;

    /// [`Validator::validate_fingerprint_now`], object-safe.
    fn validate_fingerprint_now_dyn(&self, fingerprint: Fingerprint) -> FingerprintLookup;
}

impl<V: Validator> DynValidator for V {
    fn validate_boxed<'a>(
        &'a self,
        key: &'a ApiKey,
    ) -> BoxFuture<'a, Result<Authenticated, ValidateError>> {
        Box::pin(self.validate(key))
    }

    fn validate_now_dyn(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        self.validate_now(key)
    }

    fn key_format_dyn(&self) -> KeyFormat {
        self.key_format()
    }

    fn validate_fingerprint_now_dyn(&self, fingerprint: Fingerprint) -> FingerprintLookup {
        self.validate_fingerprint_now(fingerprint)
    }
}

/// A type-erased [`Validator`], for choosing one at run time.
///
/// ```
/// use axum_api_key::InMemoryTokens;
/// use axum_api_key::validator::BoxValidator;
///
/// let validator = BoxValidator::new(InMemoryTokens::new());
/// ```
#[derive(Clone)]
pub struct BoxValidator(Arc<dyn DynValidator>);

impl BoxValidator {
    /// Erases `validator`'s type.
    pub fn new(validator: impl Validator) -> Self {
        Self(Arc::new(validator))
    }
}

impl fmt::Debug for BoxValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxValidator")
    }
}

impl Validator for BoxValidator {
    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        self.0.validate_boxed(key).await
    }

    fn validate_now(&self, key: &ApiKey) -> Option<Result<Authenticated, ValidateError>> {
        self.0.validate_now_dyn(key)
    }

    fn validate_fingerprint_now(&self, fingerprint: Fingerprint) -> FingerprintLookup {
        self.0.validate_fingerprint_now_dyn(fingerprint)
    }

    fn key_format(&self) -> KeyFormat {
        self.0.key_format_dyn()
    }
}
