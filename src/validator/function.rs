//! Validators made from closures.

use std::fmt;
use std::future::Future;

use super::contract::{ValidateError, Validator};
use crate::request::ApiKey;
use crate::token_info::Authenticated;

/// A [`Validator`] made from an async closure; see [`validator_fn`].
#[derive(Clone)]
pub struct FnValidator<F>(F);

/// Makes a [`Validator`] from a closure that takes the key (owned) and returns a future.
///
/// ```
/// use axum_api_key::validator::InvalidReason;
/// use axum_api_key::{ApiKeyLayer, TokenInfo, ValidateError, validator_fn};
///
/// let layer = ApiKeyLayer::new(validator_fn(|key| async move {
///     if key.suffix() == "Wxyz" {
///         Ok(TokenInfo::builder("key_1", "org_1").build())
///     } else {
///         Err(ValidateError::Invalid(InvalidReason::Unknown))
///     }
/// }));
/// ```
pub fn validator_fn<F, Fut, T>(f: F) -> FnValidator<F>
where
    F: Fn(ApiKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ValidateError>> + Send,
    T: Into<Authenticated>,
{
    FnValidator(f)
}

impl<F, Fut, T> Validator for FnValidator<F>
where
    F: Fn(ApiKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ValidateError>> + Send,
    T: Into<Authenticated>,
{
    fn validate(
        &self,
        key: &ApiKey,
    ) -> impl Future<Output = Result<Authenticated, ValidateError>> + Send {
        let fut = (self.0)(key.clone());
        async move { fut.await.map(Into::into) }
    }
}

impl<F> fmt::Debug for FnValidator<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnValidator")
    }
}
