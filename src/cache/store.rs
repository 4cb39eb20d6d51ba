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
    /// flush everyone's cache, and tells [`local_revocations`](CachedValidator::local_revocations)
    /// (a Redis feed relays it: other instances forget theirs too; without one they see the
    /// change within their TTL). A validation in flight during the update may still cache the
    /// old facts, for one TTL at most.
    async fn update(&self, request: UpdateToken) -> Result<TokenInfo, KeyStoreError> {
        let heard_before = self.core.updates_heard();
        let answer = self.inner.update(request).await;
        if let Ok(info) = &answer {
            self.core.forget_facts_of(info.token_id()).await;
            self.core.announce_update(info.token_id(), heard_before);
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
