//! The token operations (scalekit-wire.md §5) and `impl Validator`.

use std::time::Duration;

use http::Method;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::shape;
use super::transport::Call;
use super::wire::{
    CreateBody, CreateResponse, ListResponse, TokenBody, TokenInfoResponse, UpdateBody,
};
use super::{ScalekitClient, ScalekitError};
use crate::keys::{
    CreateToken, CreatedToken, KeyEvent, LimitError, ListTokens, MAX_PAGE_SIZE, TokenPage,
    UpdateToken, walk_pages,
};
use crate::request::key::{ApiKey, Fingerprint, KeyFormat};
use crate::token_info::{Authenticated, TokenInfo};
use crate::validator::contract::{InvalidReason, ValidateError, Validator};

// The REST routes; the gRPC transport dispatches on them too.
pub(super) const TOKENS: &str = "/api/v1/tokens";
pub(super) const VALIDATE: &str = "/api/v1/tokens:validate";
pub(super) const UPDATE: &str = "/api/v1/tokens:update";
pub(super) const INVALIDATE: &str = "/api/v1/tokens:invalidate";

/// `list_all_tokens` gives up after this many pages: a server that never ends its cursor chain
/// must not keep us looping. The walk's other bounds ([`MAX_LISTED_KEYS`](crate::keys::MAX_LISTED_KEYS)
/// keys, [`LIST_ALL_DEADLINE`](crate::keys::LIST_ALL_DEADLINE)) usually end it first.
const MAX_PAGES: usize = 10_000;

impl ScalekitClient {
    /// Mints a key (`POST /api/v1/tokens`). The plain key is in the answer and nowhere else:
    /// show it to its owner once. Listeners hear [`KeyEvent::Created`] before this returns.
    ///
    /// ```no_run
    /// # async fn run(client: axum_api_key::scalekit::ScalekitClient) -> Result<(), axum_api_key::scalekit::ScalekitError> {
    /// use axum_api_key::keys::CreateToken;
    ///
    /// let created = client
    ///     .create_token(CreateToken::new("org_59615193906282635").claim("env", "prod"))
    ///     .await?;
    /// println!("{} (id {})", created.key.expose_secret(), created.token_id);
    /// # Ok(()) }
    /// ```
    pub async fn create_token(&self, request: CreateToken) -> Result<CreatedToken, ScalekitError> {
        request.check()?;
        let body = json_body(&CreateBody::new(&request))?;
        let answer = self
            .admin_call_raw(Method::POST, TOKENS, Vec::new(), Some(body), None)
            .await?;
        let created = decode_create(&answer, &request)?;
        let (key, token_id, info) = (created.key, created.token_id, created.info);
        tracing::info!(
            token_id,
            organization_id = info.organization_id(),
            "created an API key"
        );
        self.inner.events.publish(&KeyEvent::Created {
            fingerprint: key.fingerprint(),
            token_id: token_id.clone(),
        });
        Ok(CreatedToken::new(key, token_id, info))
    }

    /// Validates a key **or a token id** (`POST /api/v1/tokens:validate`), as Scalekit does.
    ///
    /// Runs under the validate deadline, with one quick retry on 502/503/504 or a broken
    /// connection. [`ScalekitError::NotFound`] means the key is unknown, revoked or expired.
    /// The layer never calls this with a token id (see [`Validator`] below).
    ///
    /// ```no_run
    /// # async fn run(client: axum_api_key::scalekit::ScalekitClient) -> Result<(), axum_api_key::scalekit::ScalekitError> {
    /// let info = client.validate_token("apit_71234567890123456").await?;
    /// println!("{} belongs to {}", info.token_id(), info.organization_id());
    /// # Ok(()) }
    /// ```
    pub async fn validate_token(&self, token: &str) -> Result<TokenInfo, ScalekitError> {
        if token.is_empty() {
            return Err(LimitError::MissingToken.into());
        }
        let deadline = Instant::now() + self.inner.validate_timeout;
        let attempt = async {
            match self.validate_once(token, deadline).await {
                Err(error) if error.is_transient() => {
                    // One quick retry, with jitter, only if the deadline leaves room for it.
                    let pause = Duration::from_millis(rand::random_range(20..80));
                    if deadline.saturating_duration_since(Instant::now()) <= pause * 3 {
                        return Err(error);
                    }
                    tracing::debug!(%error, "retrying a Scalekit validation once");
                    tokio::time::sleep(pause).await;
                    self.validate_once(token, deadline).await
                }
                other => other,
            }
        };
        let result = tokio::time::timeout_at(deadline, attempt)
            .await
            .unwrap_or(Err(ScalekitError::Timeout));
        if let Err(error) = &result {
            tracing::debug!(token = %shape::redacted_ref(token), %error, "validation failed");
        }
        result
    }

    async fn validate_once(
        &self,
        token: &str,
        deadline: Instant,
    ) -> Result<TokenInfo, ScalekitError> {
        let call = Call {
            method: Method::POST,
            path: VALIDATE,
            query: Vec::new(),
            body: Some(json_body(&TokenBody { token })?),
            secret: Some(token),
            deadline,
        };
        decode_validate(&self.call(&call).await?)
    }

    /// One page of an organization's active keys (`GET /api/v1/tokens`). Empty cursors in the
    /// answer become `None`.
    pub async fn list_tokens(&self, request: &ListTokens) -> Result<TokenPage, ScalekitError> {
        request.check()?;
        let mut query = vec![("organization_id", request.organization_id.clone())];
        if let Some(user) = &request.user_id {
            query.push(("user_id", user.clone()));
        }
        if request.page_size.is_some() {
            query.push(("page_size", request.effective_page_size().to_string()));
        }
        if let Some(cursor) = request.page_token.as_ref().filter(|c| !c.is_empty()) {
            query.push(("page_token", cursor.clone()));
        }
        let answer = self
            .admin_call_raw(Method::GET, TOKENS, query, None, None)
            .await?;
        decode_list(&answer)
    }

    /// Every active key of an organization (or of one of its users), walking all pages.
    ///
    /// A server that repeats a cursor, or never stops, is a [`ScalekitError::Decode`] rather
    /// than an endless loop.
    pub async fn list_all_tokens(
        &self,
        organization_id: &str,
        user_id: Option<&str>,
    ) -> Result<Vec<TokenInfo>, ScalekitError> {
        let mut request = ListTokens::new(organization_id).page_size(MAX_PAGE_SIZE);
        request.user_id = user_id.map(str::to_owned);
        walk_pages(
            request,
            MAX_PAGES,
            |page| async move { self.list_tokens(&page).await },
            ScalekitError::Decode,
        )
        .await
    }

    /// Changes an active key's description and/or claims (`POST /api/v1/tokens:update`), by
    /// key or token id. Claims sent replace the whole claim map. Listeners hear
    /// [`KeyEvent::Updated`] before this returns.
    pub async fn update_token(&self, request: UpdateToken) -> Result<TokenInfo, ScalekitError> {
        request.check()?;
        let body = json_body(&UpdateBody::new(&request))?;
        let answer = self
            .admin_call_raw(
                Method::POST,
                UPDATE,
                Vec::new(),
                Some(body),
                Some(&request.token),
            )
            .await?;
        let updated = decode_update(&answer)?;
        self.inner.events.publish(&KeyEvent::Updated {
            token_id: updated.token_id().to_owned(),
        });
        Ok(updated)
    }

    /// Revokes a key, by key or token id (`POST /api/v1/tokens:invalidate`). Idempotent: an
    /// unknown or already revoked key (404) is success. Listeners hear
    /// [`KeyEvent::Revoked`] before this returns.
    ///
    /// Given a key, it first asks Scalekit for the key's token id (one validate call; best
    /// effort), so the event names the key by id too: other instances know keys by id only
    /// (see `RedisRevocations`, feature `redis`).
    pub async fn invalidate_token(&self, token: &str) -> Result<(), ScalekitError> {
        if token.is_empty() {
            return Err(LimitError::MissingToken.into());
        }
        let by_id = shape::is_token_id(token);
        let resolved_id = if by_id {
            Some(token.to_owned())
        } else {
            match self.validate_token(token).await {
                Ok(info) => Some(info.token_id().to_owned()),
                // Unknown or already revoked: nobody can have it cached as valid from now on
                // but for revocations made elsewhere, which no event can cover anyway.
                Err(error) => {
                    tracing::debug!(token = %shape::redacted_ref(token), %error, "no token id for a revocation by key");
                    None
                }
            }
        };
        let body = json_body(&TokenBody { token })?;
        let call = Call {
            method: Method::POST,
            path: INVALIDATE,
            query: Vec::new(),
            body: Some(body),
            secret: Some(token),
            deadline: Instant::now() + self.inner.request_timeout,
        };
        match self.call(&call).await {
            Ok(_) | Err(ScalekitError::NotFound) => {}
            Err(error) => return Err(error),
        }
        tracing::info!(token = %shape::redacted_ref(token), token_id = resolved_id.as_deref(), "revoked an API key");
        self.inner.events.publish(&KeyEvent::Revoked {
            token_id: resolved_id,
            fingerprint: (!by_id).then(|| Fingerprint::of(token)),
        });
        Ok(())
    }

    async fn admin_call_raw(
        &self,
        method: Method,
        path: &'static str,
        query: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        secret: Option<&str>,
    ) -> Result<bytes::Bytes, ScalekitError> {
        let call = Call {
            method,
            path,
            query,
            body,
            secret,
            deadline: Instant::now() + self.inner.request_timeout,
        };
        self.call(&call).await
    }
}

impl Validator for ScalekitClient {
    /// Scalekit's shape: Base62 keys, token ids refused by name.
    fn key_format(&self) -> KeyFormat {
        shape::key_format()
    }

    async fn validate(&self, key: &ApiKey) -> Result<Authenticated, ValidateError> {
        let secret = key.expose_secret();
        // The layer already refuses token ids; refuse them here too, since Scalekit would
        // happily "validate" one.
        if secret.starts_with(shape::TOKEN_ID_PREFIX) {
            return Err(ValidateError::Invalid(InvalidReason::Rejected));
        }
        match self.validate_token(secret).await {
            Ok(info) => Ok(Authenticated::new(info)),
            Err(error) => {
                match &error {
                    ScalekitError::Rejected { status: 403, .. } => {
                        tracing::warn!(key = %key.fingerprint(), %error, "Scalekit refused a validation with 403: check the client's permissions");
                    }
                    ScalekitError::NotFound | ScalekitError::Rejected { .. } => {
                        tracing::debug!(key = %key.fingerprint(), %error, "invalid API key");
                    }
                    _ => {
                        tracing::warn!(key = %key.fingerprint(), %error, "could not validate an API key");
                    }
                }
                Err(error.to_validate_error())
            }
        }
    }
}

/// The answer of validate: a `token_info` with its two ids, for a key that has not expired
/// (an answer that contradicts itself fails closed, as "not found").
pub(crate) fn decode_validate(body: &[u8]) -> Result<TokenInfo, ScalekitError> {
    let answer: TokenInfoResponse = decode_json(body)?;
    let info = answer
        .token_info
        .ok_or_else(|| ScalekitError::Decode("validate answer without token_info".into()))?
        .into_info()
        .map_err(decode)?;
    if info.is_expired_at(OffsetDateTime::now_utc()) {
        return Err(ScalekitError::NotFound);
    }
    Ok(info)
}

/// The answer of update: a `token_info` with its two ids.
pub(crate) fn decode_update(body: &[u8]) -> Result<TokenInfo, ScalekitError> {
    let answer: TokenInfoResponse = decode_json(body)?;
    answer
        .token_info
        .ok_or_else(|| ScalekitError::Decode("update answer without token_info".into()))?
        .into_info()
        .map_err(decode)
}

/// The answer of create: the plain key, and its facts (rebuilt from `request` when the answer
/// carries a `token_id` but no `token_info`).
pub(crate) fn decode_create(
    body: &[u8],
    request: &CreateToken,
) -> Result<CreatedToken, ScalekitError> {
    let answer: CreateResponse = decode_json(body)?;
    let key = answer
        .token
        .map(ApiKey::new)
        .ok_or_else(|| ScalekitError::Decode("create answer without token".into()))?;
    let info = match answer.token_info {
        Some(wire) => wire.into_info().map_err(decode)?,
        None => {
            // The key exists now; rebuild its facts from what we asked for rather than
            // losing the only copy of the key over a missing echo.
            let token_id = answer
                .token_id
                .clone()
                .ok_or_else(|| ScalekitError::Decode("create answer without token_id".into()))?;
            request.info(token_id, &key)
        }
    };
    let token_id = answer
        .token_id
        .unwrap_or_else(|| info.token_id().to_owned());
    Ok(CreatedToken::new(key, token_id, info))
}

/// The answer of list: every token with its two ids; empty cursors become `None`.
pub(crate) fn decode_list(body: &[u8]) -> Result<TokenPage, ScalekitError> {
    let answer: ListResponse = decode_json(body)?;
    let tokens = answer
        .tokens
        .into_iter()
        .map(|t| t.into_info().map_err(decode))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TokenPage::new(
        tokens,
        answer.total_count,
        answer.next_page_token,
        answer.prev_page_token,
    ))
}

fn json_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ScalekitError> {
    serde_json::to_vec(value).map_err(|e| ScalekitError::Decode(format!("encoding: {e}")))
}

fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ScalekitError> {
    // Not serde_json's Display: it quotes the offending value, which could be a key (the
    // `token` of a create answer). The category and position are enough to debug.
    serde_json::from_slice(body).map_err(|e| {
        ScalekitError::Decode(format!(
            "{:?} error in JSON answer at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn decode(what: &'static str) -> ScalekitError {
    ScalekitError::Decode(what.to_owned())
}
