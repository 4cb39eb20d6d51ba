//! The JSON API: `GET/POST /api`, `GET/DELETE /api/{token_id}`, `POST /api/{token_id}/rotate`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::request::Parts;
use http::{StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::manager::Manager;
use super::ops::NewKey;
use super::{ManageError, ManagerSource, Refusal, Shared};
use crate::keys::{CreatedToken, KeyStore};
use crate::token_info::TokenInfo;

type App<S, M> = State<Arc<Shared<S, M>>>;

pub(super) fn routes<S: KeyStore, M: ManagerSource>() -> Router<Arc<Shared<S, M>>> {
    Router::new()
        .route("/api", get(list::<S, M>).post(create::<S, M>))
        .route("/api/{token_id}", get(show::<S, M>).delete(revoke::<S, M>))
        .route("/api/{token_id}/rotate", post(rotate::<S, M>))
}

/// A key as the API shows it: Scalekit's field names, never the plain key.
#[derive(Serialize)]
pub(super) struct KeyView<'a> {
    token_id: &'a str,
    organization_id: &'a str,
    user_id: Option<&'a str>,
    description: Option<&'a str>,
    custom_claims: BTreeMap<&'a str, &'a str>,
    #[serde(with = "time::serde::rfc3339::option")]
    expiry: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    token_suffix: Option<&'a str>,
}

impl<'a> From<&'a TokenInfo> for KeyView<'a> {
    fn from(info: &'a TokenInfo) -> Self {
        Self {
            token_id: info.token_id(),
            organization_id: info.organization_id(),
            user_id: info.user_id(),
            description: info.description(),
            custom_claims: info.claims().collect(),
            expiry: info.effective_expiry(),
            created_at: info.created_at(),
            token_suffix: info.token_suffix(),
        }
    }
}

/// The answer of create and rotate: the key's facts and, this once, the key.
#[derive(Serialize)]
struct Created<'a> {
    token: &'a str,
    #[serde(flatten)]
    key: KeyView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotated_token_id: Option<&'a str>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    rotated_token_revoke_after: Option<OffsetDateTime>,
}

fn created(created: &CreatedToken, rotated: Option<(&str, Option<OffsetDateTime>)>) -> Response {
    let body = Created {
        token: created.key.expose_secret(),
        key: KeyView::from(&created.info),
        rotated_token_id: rotated.map(|(id, _)| id),
        rotated_token_revoke_after: rotated.and_then(|(_, at)| at),
    };
    // `no-store` is added to every answer of the router.
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The manager a request acts for (CSRF-checked on unsafe methods), or the API's refusal:
/// the first extractor of every handler, so nothing is parsed for an unknown caller.
struct ApiManager(Manager);

impl<S: KeyStore, M: ManagerSource> FromRequestParts<Arc<Shared<S, M>>> for ApiManager {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<Shared<S, M>>,
    ) -> Result<Self, Self::Rejection> {
        match app.manager(parts, None).await {
            Ok(manager) => Ok(Self(manager)),
            Err(Refusal::Manage(error)) => Err(error.into_response()),
            Err(Refusal::Response(response)) => Err(response),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    page_size: Option<u32>,
    page_token: Option<String>,
    user_id: Option<String>,
}

async fn list<S: KeyStore, M: ManagerSource>(
    ApiManager(manager): ApiManager,
    State(app): App<S, M>,
    uri: Uri,
) -> Response {
    let params = match Query::<ListParams>::try_from_uri(&uri) {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return ManageError::BadRequest(rejection.body_text().into()).into_response();
        }
    };
    match app
        .core
        .list(
            &manager,
            params.user_id.as_deref(),
            params.page_size,
            params.page_token.as_deref(),
        )
        .await
    {
        Ok(page) => {
            let keys: Vec<KeyView<'_>> = page.keys.iter().map(KeyView::from).collect();
            Json(serde_json::json!({
                "keys": keys,
                "next_page_token": page.next_page_token,
                "truncated": page.truncated,
            }))
            .into_response()
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    description: Option<String>,
    user_id: Option<String>,
    #[serde(default)]
    custom_claims: BTreeMap<String, String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expiry: Option<OffsetDateTime>,
}

/// Reads a JSON body; an empty body is the default value. Syntax errors are 400, well-formed
/// JSON of the wrong shape (unknown fields, wrong types) 422.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ManageError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let why = format!("invalid JSON body: {error}");
        if error.is_data() {
            ManageError::invalid(why)
        } else {
            ManageError::BadRequest(why.into())
        }
    })
}

async fn create<S: KeyStore, M: ManagerSource>(
    ApiManager(manager): ApiManager,
    State(app): App<S, M>,
    bytes: Bytes,
) -> Response {
    let request: CreateBody = match body(&bytes) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let new = NewKey {
        description: request.description,
        user_id: request.user_id,
        custom_claims: request.custom_claims,
        expiry: request.expiry,
    };
    match app.core.create(&manager, new).await {
        Ok(key) => created(&key, None),
        Err(error) => error.into_response(),
    }
}

async fn show<S: KeyStore, M: ManagerSource>(
    ApiManager(manager): ApiManager,
    State(app): App<S, M>,
    Path(token_id): Path<String>,
) -> Response {
    match app.core.get(&manager, &token_id).await {
        Ok(info) => Json(KeyView::from(&info)).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace_seconds: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expiry: Option<OffsetDateTime>,
}

async fn rotate<S: KeyStore, M: ManagerSource>(
    ApiManager(manager): ApiManager,
    State(app): App<S, M>,
    Path(token_id): Path<String>,
    bytes: Bytes,
) -> Response {
    let request: RotateBody = match body(&bytes) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    let grace = Duration::from_secs(request.grace_seconds);
    match app
        .core
        .rotate(&manager, &token_id, grace, request.expiry)
        .await
    {
        Ok(rotated) => created(
            &rotated.successor,
            Some((&rotated.old_token_id, rotated.grace_until)),
        ),
        Err(error) => error.into_response(),
    }
}

async fn revoke<S: KeyStore, M: ManagerSource>(
    ApiManager(manager): ApiManager,
    State(app): App<S, M>,
    Path(token_id): Path<String>,
) -> Response {
    match app.core.revoke(&manager, &token_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}
