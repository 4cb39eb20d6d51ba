//! The Scalekit client behind the common [`KeyStore`] contract.

use super::{ScalekitClient, ScalekitError, shape};
use crate::keys::{
    CreateToken, CreatedToken, KeyStore, KeyStoreError, ListTokens, TokenPage, UpdateToken,
};
use crate::token_info::TokenInfo;

impl KeyStore for ScalekitClient {
    async fn create(&self, request: CreateToken) -> Result<CreatedToken, KeyStoreError> {
        self.create_token(request).await.map_err(Into::into)
    }

    /// Scalekit has no "get": a validation by id is the documented way to read one key.
    async fn get(&self, token_id: &str) -> Result<TokenInfo, KeyStoreError> {
        if !shape::is_token_id(token_id) {
            // Validating anything else could answer for a plain key.
            return Err(KeyStoreError::NotFound);
        }
        self.validate_token(token_id).await.map_err(Into::into)
    }

    async fn list(&self, request: &ListTokens) -> Result<TokenPage, KeyStoreError> {
        self.list_tokens(request).await.map_err(Into::into)
    }

    async fn update(&self, request: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        self.update_token(request).await.map_err(Into::into)
    }

    async fn invalidate(&self, key_or_id: &str) -> Result<(), KeyStoreError> {
        self.invalidate_token(key_or_id).await.map_err(Into::into)
    }
}

impl From<ScalekitError> for KeyStoreError {
    fn from(error: ScalekitError) -> Self {
        match error {
            ScalekitError::NotFound => Self::NotFound,
            ScalekitError::Limit(limit) => Self::Limit(limit),
            ScalekitError::Rejected { .. } | ScalekitError::Unauthorized => {
                Self::Rejected(error.to_string().into())
            }
            ScalekitError::RateLimited { retry_after } => Self::Unavailable {
                message: error.to_string().into(),
                retry_after,
            },
            other => Self::unavailable(other.to_string()),
        }
    }
}
