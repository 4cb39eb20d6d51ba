//! The HTML page: `GET /`, and the forms `POST /create`, `POST /rotate/{token_id}`,
//! `POST /revoke/{token_id}`. Server-rendered with maud (every interpolation escaped), plain
//! forms (POST-redirect-GET for revocation; the new key is the answer of its own POST, so it
//! never sits in server memory or a URL), one nonce-allowed inline script for the copy button.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::NestedPathRejection;
use axum::extract::{FromRequest, NestedPath, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::StatusCode;
use http::request::Parts;
use serde::Deserialize;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::ops::NewKey;
use super::{ManageError, Manager, ManagerSource, Shared};
use crate::keys::{CreatedToken, KeyStore};

use super::markup::{confirm_page, error_page, html_response, layout, nonce, page_body, refused};

type App<S, M> = State<Arc<Shared<S, M>>>;

/// Most fields a form may carry.
const MAX_FIELDS: usize = 64;
/// The grace choices the page offers (seconds, label).
pub(super) const GRACES: &[(u64, &str)] = &[
    (0, "none: revoke the old key now"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
];

pub(super) fn routes<S: KeyStore, M: ManagerSource>() -> Router<Arc<Shared<S, M>>> {
    Router::new()
        .route("/", get(show::<S, M>))
        .route("/create", post(create::<S, M>))
        .route("/rotate/{token_id}", post(rotate::<S, M>))
        .route("/revoke/{token_id}", post(revoke::<S, M>))
}

/// Where the router is mounted ("" at the root), for absolute links and form actions.
fn base(nested: Option<&NestedPath>) -> String {
    nested
        .map(|n| n.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// The page's own address: the mount path itself (`/keys`), or `/` at the root.
pub(super) fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

#[derive(Deserialize)]
struct PageParams {
    page_token: Option<String>,
}

async fn show<S: KeyStore, M: ManagerSource>(
    State(app): App<S, M>,
    nested: Result<NestedPath, NestedPathRejection>,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Response {
    let base = base(nested.as_ref().ok());
    let manager = match app.manager(&parts, None).await {
        Ok(manager) => manager,
        Err(refusal) => return refused(&app.title, refusal),
    };
    render(
        &app,
        &manager,
        &base,
        params.page_token.as_deref(),
        None,
        None,
    )
    .await
}

/// What the page shows above the list after a create or a rotation.
pub(super) enum Flash<'a> {
    NewKey(&'a CreatedToken, Option<(&'a str, Option<OffsetDateTime>)>),
    Error(&'a ManageError),
}

async fn render<S: KeyStore, M: ManagerSource>(
    app: &Shared<S, M>,
    manager: &Manager,
    base: &str,
    page_token: Option<&str>,
    flash: Option<Flash<'_>>,
    status: Option<StatusCode>,
) -> Response {
    let page = match app.core.list(manager, None, None, page_token).await {
        Ok(page) => page,
        Err(error) => return error_page(&app.title, &error),
    };
    let nonce = nonce();
    let body = page_body(app, manager, base, &page, flash.as_ref(), &nonce);
    let status = status.unwrap_or(StatusCode::OK);
    html_response(status, &nonce, layout(&app.title, &nonce, body))
}

/// The form fields, bounded.
fn fields(form: Vec<(String, String)>) -> Result<BTreeMap<String, String>, ManageError> {
    if form.len() > MAX_FIELDS {
        return Err(ManageError::BadRequest("too many form fields".into()));
    }
    Ok(form.into_iter().collect())
}

/// A posted form and who posted it: the fields (bounded), and the manager, once its CSRF token
/// (a form field) and origin checks hold. The rejection is the page to answer with.
struct SignedForm {
    manager: Manager,
    fields: BTreeMap<String, String>,
}

impl<S: KeyStore, M: ManagerSource> FromRequest<Arc<Shared<S, M>>> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, app: &Arc<Shared<S, M>>) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let form_request = Request::from_parts(parts.clone(), body);
        let Form(form) = Form::<Vec<(String, String)>>::from_request(form_request, app)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut fields = fields(form).map_err(|error| error_page(&app.title, &error))?;
        let token = fields.remove("csrf_token");
        let manager = app
            .manager(&parts, token.as_deref())
            .await
            .map_err(|refusal| refused(&app.title, refusal))?;
        Ok(Self { manager, fields })
    }
}

async fn create<S: KeyStore, M: ManagerSource>(
    State(app): App<S, M>,
    nested: Result<NestedPath, NestedPathRejection>,
    SignedForm { manager, fields }: SignedForm,
) -> Response {
    let base = base(nested.as_ref().ok());
    let new = match new_key(&app, fields) {
        Ok(new) => new,
        Err(error) => return render_error(&app, &manager, &base, &error).await,
    };
    match app.core.create(&manager, new).await {
        Ok(created) => {
            render(
                &app,
                &manager,
                &base,
                None,
                Some(Flash::NewKey(&created, None)),
                Some(StatusCode::CREATED),
            )
            .await
        }
        Err(error) => render_error(&app, &manager, &base, &error).await,
    }
}

fn new_key<S: KeyStore, M: ManagerSource>(
    app: &Shared<S, M>,
    fields: BTreeMap<String, String>,
) -> Result<NewKey, ManageError> {
    let mut new = NewKey::default();
    for (name, value) in fields {
        let value = value.trim().to_owned();
        match name.as_str() {
            "description" => new.description = Some(value),
            "user_id" => new.user_id = (!value.is_empty()).then_some(value),
            "expiry" if value.is_empty() => {}
            "expiry" => {
                let date = Date::parse(&value, format_description!("[year]-[month]-[day]"))
                    .map_err(|_| ManageError::invalid("expiry must be a date (YYYY-MM-DD)"))?;
                new.expiry = Some(date.midnight().assume_utc());
            }
            "admin" if value == "yes" => {
                let (claim, grant) = &app.core.policy.admin_claim;
                new.custom_claims.insert(claim.clone(), grant.clone());
            }
            "admin" => {}
            other => match other.strip_prefix("claim:") {
                Some(_) if value.is_empty() => {}
                Some(claim) => {
                    new.custom_claims.insert(claim.to_owned(), value);
                }
                None => {
                    return Err(ManageError::invalid(format!(
                        "unknown form field {other:?}"
                    )));
                }
            },
        }
    }
    Ok(new)
}

async fn rotate<S: KeyStore, M: ManagerSource>(
    State(app): App<S, M>,
    nested: Result<NestedPath, NestedPathRejection>,
    Path(token_id): Path<String>,
    SignedForm { manager, fields }: SignedForm,
) -> Response {
    let base = base(nested.as_ref().ok());
    let grace = match fields.get("grace_seconds").map(|g| g.trim().parse::<u64>()) {
        None => Duration::ZERO,
        Some(Ok(secs)) => Duration::from_secs(secs),
        Some(Err(_)) => {
            let error = ManageError::invalid("grace_seconds must be a whole number");
            return render_error(&app, &manager, &base, &error).await;
        }
    };
    match app.core.rotate(&manager, &token_id, grace, None).await {
        Ok(rotated) => {
            let flash = Flash::NewKey(
                &rotated.successor,
                Some((&rotated.old_token_id, rotated.grace_until)),
            );
            render(
                &app,
                &manager,
                &base,
                None,
                Some(flash),
                Some(StatusCode::CREATED),
            )
            .await
        }
        Err(error) => render_error(&app, &manager, &base, &error).await,
    }
}

async fn revoke<S: KeyStore, M: ManagerSource>(
    State(app): App<S, M>,
    nested: Result<NestedPath, NestedPathRejection>,
    Path(token_id): Path<String>,
    SignedForm { manager, fields }: SignedForm,
) -> Response {
    let base = base(nested.as_ref().ok());
    if fields.get("confirm").map(String::as_str) != Some("yes") {
        // No confirmation: ask for it (a page of its own, so it works without <details>).
        return match app.core.get(&manager, &token_id).await {
            Ok(info) => confirm_page(&app.title, &base, &manager, &info),
            Err(error) => render_error(&app, &manager, &base, &error).await,
        };
    }
    match app.core.revoke(&manager, &token_id).await {
        Ok(()) => Redirect::to(&home(&base)).into_response(),
        Err(error) => render_error(&app, &manager, &base, &error).await,
    }
}

async fn render_error<S: KeyStore, M: ManagerSource>(
    app: &Shared<S, M>,
    manager: &Manager,
    base: &str,
    error: &ManageError,
) -> Response {
    render(
        app,
        manager,
        base,
        None,
        Some(Flash::Error(error)),
        Some(error.status()),
    )
    .await
}
