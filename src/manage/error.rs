//! Failures of the key-management API, rendered in the crate's JSON error shape.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::keys::{KeyStoreError, LimitError};

/// Longest `error_description` sent (descriptions may quote client input).
const MAX_DESCRIPTION: usize = 200;

/// Why a key-management request failed: `{"error": ..., "error_description": ...}` with the
/// matching status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManageError {
    /// 400 `invalid_request`: unreadable input (bad JSON, a bad page token).
    BadRequest(Cow<'static, str>),
    /// 422 `invalid_request`: readable input that breaks a rule or a limit; nothing changed.
    Invalid(Cow<'static, str>),
    /// 401: no manager credentials.
    Unauthenticated,
    /// 403 `insufficient_scope`: the manager may not do this.
    Forbidden(Cow<'static, str>),
    /// 403 `csrf_check_failed`: a cookie-authenticated unsafe request failed the CSRF checks.
    Csrf(&'static str),
    /// 404 `not_found`: no such key that this manager may see.
    NotFound,
    /// 503 `temporarily_unavailable`: the key store cannot answer now.
    Unavailable(Option<Duration>),
}

impl ManageError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Csrf(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::Invalid(_) => "invalid_request",
            Self::Unauthenticated => "missing_credentials",
            Self::Forbidden(_) => "insufficient_scope",
            Self::Csrf(_) => "csrf_check_failed",
            Self::NotFound => "not_found",
            Self::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// The human description (bounded).
    pub fn description(&self) -> String {
        let text: Cow<'_, str> = match self {
            Self::BadRequest(why) | Self::Invalid(why) | Self::Forbidden(why) => why.clone(),
            Self::Unauthenticated => "sign in, or send `Authorization: Bearer <key>`".into(),
            Self::Csrf(why) => (*why).into(),
            Self::NotFound => "no such key".into(),
            Self::Unavailable(_) => "the key store cannot answer now; retry later".into(),
        };
        match text.char_indices().nth(MAX_DESCRIPTION) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.into_owned(),
        }
    }

    pub(super) fn forbidden(why: &'static str) -> Self {
        Self::Forbidden(why.into())
    }

    pub(super) fn invalid(why: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid(why.into())
    }
}

impl From<KeyStoreError> for ManageError {
    fn from(error: KeyStoreError) -> Self {
        match error {
            KeyStoreError::Limit(limit) => limit.into(),
            KeyStoreError::NotFound => Self::NotFound,
            KeyStoreError::BadPageToken => Self::BadRequest("invalid page_token".into()),
            KeyStoreError::Rejected(why) => Self::Invalid(why),
            KeyStoreError::Unavailable {
                message,
                retry_after,
            } => {
                tracing::warn!(target: "axum_api_key::manage", %message, "key store unavailable");
                Self::Unavailable(retry_after)
            }
        }
    }
}

impl From<LimitError> for ManageError {
    fn from(limit: LimitError) -> Self {
        Self::Invalid(limit.to_string().into())
    }
}

impl IntoResponse for ManageError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code(), "error_description": self.description() });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::Unauthenticated => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"keys\""),
                );
            }
            Self::Unavailable(retry) => {
                let secs = retry.map_or(1, |d| d.as_secs().clamp(1, 3600));
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}
