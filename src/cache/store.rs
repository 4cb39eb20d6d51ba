//! The cache as a [`KeyStore`]: management passes through to the inner store.

use std::future::Future;

use super::CachedValidator;
use crate::keys::{
    CreateToken, CreatedToken, KeyStore, KeyStoreError, ListTokens, TokenPage, UpdateToken,
};
use crate::token_info::TokenInfo;
use crate::validator::contract::Validator;

/// Key management passes through to the inner store; revocations made through it reach the
/// cache through the store's events (see [`CachedValidator::new`]), before the call returns.
impl<V: Validator + KeyStore> KeyStore for CachedValidator<V> {
    fn create(
        &self,
        request: CreateToken,
    ) -> impl Future<Output = Result<CreatedToken, KeyStoreError>> + Send {
        self.inner.create(request)
    }
    fn get(&self, token_id: &str) -> impl Future<Output = Result<TokenInfo, KeyStoreError>> + Send {
        self.inner.get(token_id)
    }
    fn list(
        &self,
        request: &ListTokens,
    ) -> impl Future<Output = Result<TokenPage, KeyStoreError>> + Send {
        self.inner.list(request)
    }
    /// Updates the key, then forgets this cache's answers for that key only (its cached facts
    /// are stale: new claims, or a rotation's grace deadline), so one tenant's updates never
    /// flush everyone's cache. Other instances see the change within their TTL, as with
    /// revocations; so does this one for a validation that was in flight during the update.
    async fn update(&self, request: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        let answer = self.inner.update(request).await;
        if let Ok(info) = &answer {
            self.core.forget_facts_of(info.token_id()).await;
        }
        answer
    }
    fn invalidate(
        &self,
        key_or_id: &str,
    ) -> impl Future<Output = Result<(), KeyStoreError>> + Send {
        self.inner.invalidate(key_or_id)
    }
}
