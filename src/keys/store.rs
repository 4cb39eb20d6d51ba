//! [`KeyStore`]: the one contract for managing keys, whoever stores them.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::requests::{CreateToken, CreatedToken, LimitError, ListTokens, TokenPage, UpdateToken};
use crate::token_info::TokenInfo;

/// Creates, reads, lists, updates and revokes API keys.
///
/// Implemented by [`InMemoryTokens`](crate::InMemoryTokens) (in-process), by the Scalekit
/// client (feature `scalekit`), by `CachedValidator<S>` when `S` is a store (feature `cache`;
/// it passes every call through), and by `Arc<S>`. Code that manages keys (the keys CLI, the
/// key-management router, your own admin tools) is written once against this trait.
///
/// Token ids are opaque here: the store decides what an id looks like. Every method that takes
/// `key_or_id` accepts either the plain key or its id, as Scalekit does; nothing else does,
/// in particular [`get`](Self::get) never answers for a plain key.
///
/// ```
/// use axum_api_key::InMemoryTokens;
/// use axum_api_key::keys::{CreateToken, KeyStore, KeyStoreError};
///
/// async fn rotate<S: KeyStore>(store: &S, token_id: &str) -> Result<String, KeyStoreError> {
///     let old = store.get(token_id).await?;
///     let mut successor = CreateToken::new(old.organization_id());
///     successor.user_id = old.user_id().map(str::to_owned);
///     successor.custom_claims = old.claims_map();
///     let created = store.create(successor).await?;
///     store.invalidate(token_id).await?;
///     Ok(created.key.expose_secret().to_owned()) // show it once
/// }
///
/// # tokio_test(async {
/// let store = InMemoryTokens::new();
/// let first = KeyStore::create(&store, CreateToken::new("org_1")).await.unwrap();
/// let second = rotate(&store, &first.token_id).await.unwrap();
/// assert!(store.get(&first.token_id).await.is_err());
/// # });
/// # fn tokio_test(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub trait KeyStore: Send + Sync + 'static {
    /// Mints a key. The plain key is in the answer only: show it to its owner once.
    fn create(
        &self,
        request: CreateToken,
    ) -> impl Future<Output = Result<CreatedToken, KeyStoreError>> + Send;

    /// The facts of an active key, by id. Revoked, expired and unknown ids are
    /// [`KeyStoreError::NotFound`], and so is anything that is not an id.
    fn get(&self, token_id: &str) -> impl Future<Output = Result<TokenInfo, KeyStoreError>> + Send;

    /// One page of an organization's active keys (optionally of one user).
    fn list(
        &self,
        request: &ListTokens,
    ) -> impl Future<Output = Result<TokenPage, KeyStoreError>> + Send;

    /// Changes an active key's description and/or claims.
    fn update(
        &self,
        request: UpdateToken,
    ) -> impl Future<Output = Result<TokenInfo, KeyStoreError>> + Send;

    /// Revokes a key, by key or id. Idempotent: an unknown or already revoked key is success.
    /// Caches listening to the store's events refuse the key before this returns.
    fn invalidate(&self, key_or_id: &str)
    -> impl Future<Output = Result<(), KeyStoreError>> + Send;
}

impl<S: KeyStore + ?Sized> KeyStore for Arc<S> {
    fn create(
        &self,
        request: CreateToken,
    ) -> impl Future<Output = Result<CreatedToken, KeyStoreError>> + Send {
        (**self).create(request)
    }
    fn get(&self, token_id: &str) -> impl Future<Output = Result<TokenInfo, KeyStoreError>> + Send {
        (**self).get(token_id)
    }
    fn list(
        &self,
        request: &ListTokens,
    ) -> impl Future<Output = Result<TokenPage, KeyStoreError>> + Send {
        (**self).list(request)
    }
    fn update(
        &self,
        request: UpdateToken,
    ) -> impl Future<Output = Result<TokenInfo, KeyStoreError>> + Send {
        (**self).update(request)
    }
    fn invalidate(
        &self,
        key_or_id: &str,
    ) -> impl Future<Output = Result<(), KeyStoreError>> + Send {
        (**self).invalidate(key_or_id)
    }
}

/// Why a [`KeyStore`] call failed. Messages never contain a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// The request breaks a documented limit; nothing was stored or sent.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// No active key matches (unknown, revoked or expired).
    #[error("no active key matches")]
    NotFound,
    /// The page token was not issued by this store.
    #[error("invalid page token")]
    BadPageToken,
    /// The store refused the request (a client error other than "not found").
    #[error("the key store refused the request: {0}")]
    Rejected(Cow<'static, str>),
    /// The store cannot answer now (down, timing out, rate-limited, misconfigured
    /// credentials): try again later.
    #[error("the key store is unavailable: {message}")]
    Unavailable {
        /// What went wrong, for logs.
        message: Cow<'static, str>,
        /// How long to wait before retrying, if known.
        retry_after: Option<Duration>,
    },
}

impl KeyStoreError {
    /// A [`KeyStoreError::Unavailable`] with no retry hint.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }
}
