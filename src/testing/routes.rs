//! The handlers of Scalekit's REST routes, with the counters and faults of the fake.

use super::server::{Kill, Shared};
use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Extension, Form, Query, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Fault, Op, State, lock};
use crate::keys::KeyStoreError;
use crate::keys::{CreateToken, ListTokens, UpdateToken};
use crate::token_info::TokenInfo;

pub(super) fn rest_router(state: Shared) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth_token))
        .route("/api/v1/tokens", post(create).get(list))
        .route("/api/v1/tokens:validate", post(validate))
        .route("/api/v1/tokens:update", post(update))
        .route("/api/v1/tokens:invalidate", post(invalidate))
        .fallback(|| async { rpc_error(StatusCode::NOT_FOUND, 5, "Not Found") })
        .with_state(state)
}

/// A `google.rpc.Status` error body.
fn rpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "message": message, "details": []}).to_string(),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    rpc_error(StatusCode::BAD_REQUEST, 3, message)
}

/// Counts the request, applies a fault if one is set, and (for API routes) checks the access
/// token. `None`: go on and answer normally.
async fn gate(state: &State, op: Op, kill: &Kill, headers: &HeaderMap) -> Option<Response> {
    if let Some(fault) = state.hit(op)
        && let Some(response) = apply(fault, kill).await
    {
        return Some(response);
    }
    if op == Op::Token {
        return None;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|v| !v.is_empty());
    let Some(bearer) = bearer else {
        return Some(rpc_error(StatusCode::UNAUTHORIZED, 16, "Token empty"));
    };
    let valid = lock(&state.access_tokens)
        .get(bearer)
        .is_some_and(|expires| *expires > std::time::Instant::now());
    (!valid).then(|| rpc_error(StatusCode::UNAUTHORIZED, 16, "Token invalid or expired"))
}

async fn apply(fault: Fault, kill: &Kill) -> Option<Response> {
    let ok_json = |body: String| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    Some(match fault {
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Reset => {
            kill.0.notify_one();
            // The connection task drops this request with the socket.
            std::future::pending::<()>().await;
            return None;
        }
        Fault::Status {
            status,
            content_type,
            body,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, body).into_response();
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Fault::Truncated => ok_json(r#"{"token_info":{"token_id":"apit_1","organiz"#.into()),
        Fault::WrongTypes => ok_json(
            json!({
                "token": 42,
                "token_id": 7,
                "token_info": {"token_id": 12345, "organization_id": ["org_1"], "custom_claims": "x"},
                "tokens": {"not": "a list"},
                "access_token": 5,
            })
            .to_string(),
        ),
        Fault::Empty => ok_json("{}".into()),
        Fault::Huge(size) => {
            let filler = "a".repeat(size);
            ok_json(format!(
                r#"{{"token_info":{{"token_id":"apit_1","organization_id":"org_1","description":"{filler}"}}}}"#
            ))
        }
        Fault::Unauthorized => rpc_error(StatusCode::UNAUTHORIZED, 16, "Token empty"),
    })
}

/// A timestamp as protojson writes it: RFC 3339, UTC, `Z`.
fn timestamp(at: OffsetDateTime) -> Value {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

/// A `Token` message as protojson with proto names: plain fields always present (`""`, `{}`,
/// `[]`), proto3 `optional` fields omitted when unset.
fn token_json(info: &TokenInfo) -> Value {
    let mut object = json!({
        "token_id": info.token_id(),
        "organization_id": info.organization_id(),
        "organization_external_id": info.organization_external_id().unwrap_or_default(),
        "custom_claims": info.claims_map(),
        "created_at": info.created_at().map_or(Value::Null, timestamp),
        "token_suffix": info.token_suffix().unwrap_or_default(),
        "roles": info.roles().collect::<Vec<_>>(),
    });
    let optional = [
        (
            "user_id",
            info.user_id().map(|v| Value::String(v.to_owned())),
        ),
        (
            "user_external_id",
            info.user_external_id().map(|v| Value::String(v.to_owned())),
        ),
        ("email", info.email().map(|v| Value::String(v.to_owned()))),
        ("expiry", info.expiry().map(timestamp)),
        (
            "description",
            info.description().map(|v| Value::String(v.to_owned())),
        ),
    ];
    if let Value::Object(map) = &mut object {
        for (name, value) in optional {
            if let Some(value) = value {
                map.insert(name.to_owned(), value);
            }
        }
    }
    object
}

async fn oauth_token(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if let Some(response) = gate(&state, Op::Token, &kill, &headers).await {
        return response;
    }
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        json_response(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected a form body",
        );
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials",
        );
    }
    if form.get("client_id") != Some(&state.client_id)
        || form.get("client_secret") != Some(&state.client_secret)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "bad client credentials",
        );
    }
    let lifetime = *lock(&state.lifetime);
    let token = format!("fake_at_{:032x}", rand::random::<u128>());
    {
        let now = std::time::Instant::now();
        let mut issued = lock(&state.access_tokens);
        issued.retain(|_, expires| *expires > now);
        issued.insert(token.clone(), now + lifetime);
    }
    let expires_in = lock(&state.announced_expires_in)
        .clone()
        .unwrap_or_else(|| json!(lifetime.as_secs()));
    json_response(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "openid",
        }),
    )
}

/// Reads `{"token": "..."}`; `Err` is the message of the 400 to send.
fn token_field(body: &[u8]) -> Result<String, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "invalid JSON")?;
    match value.get("token").and_then(Value::as_str) {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err("token is required"),
    }
}

fn store_error(error: KeyStoreError) -> Response {
    match error {
        KeyStoreError::NotFound => rpc_error(StatusCode::NOT_FOUND, 5, "token not found"),
        other => bad_request(&other.to_string()),
    }
}

async fn validate(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = gate(&state, Op::Validate, &kill, &headers).await {
        return response;
    }
    let token = match token_field(&body) {
        Ok(token) => token,
        Err(message) => return bad_request(message),
    };
    // Key or token id, like Scalekit.
    match state.tokens.validate_token(&token) {
        Ok(info) => json_response(StatusCode::OK, &json!({"token_info": token_json(&info)})),
        Err(error) => store_error(error),
    }
}

#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
struct CreateRequest {
    #[serde(alias = "organizationId")]
    organization_id: String,
    #[serde(alias = "userId")]
    user_id: Option<String>,
    #[serde(alias = "customClaims")]
    custom_claims: BTreeMap<String, String>,
    expiry: Option<String>,
    description: Option<String>,
}

async fn create(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = gate(&state, Op::Create, &kill, &headers).await {
        return response;
    }
    let Ok(request) = serde_json::from_slice::<CreateRequest>(&body) else {
        return bad_request("invalid CreateToken JSON");
    };
    let mut create = CreateToken::new(request.organization_id);
    create.user_id = request.user_id.filter(|u| !u.is_empty());
    create.custom_claims = request.custom_claims;
    create.description = request.description;
    if let Some(expiry) = request.expiry {
        match OffsetDateTime::parse(&expiry, &Rfc3339) {
            Ok(at) => create.expiry = Some(at),
            Err(_) => return bad_request("invalid expiry timestamp"),
        }
    }
    match state.tokens.create(create) {
        // 201, as the OpenAPI annotation documents (the client accepts any 2xx).
        Ok(created) => json_response(
            StatusCode::CREATED,
            &json!({
                "token": created.key.expose_secret(),
                "token_id": created.token_id,
                "token_info": token_json(&created.info),
            }),
        ),
        Err(error) => store_error(error),
    }
}

async fn list(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    if let Some(response) = gate(&state, Op::List, &kill, &headers).await {
        return response;
    }
    let Ok(Query(query)) = query else {
        return bad_request("invalid query string");
    };
    let field = |snake: &str, camel: &str| query.get(snake).or_else(|| query.get(camel)).cloned();
    let mut request =
        ListTokens::new(field("organization_id", "organizationId").unwrap_or_default());
    request.user_id = field("user_id", "userId").filter(|u| !u.is_empty());
    request.page_token = field("page_token", "pageToken").filter(|t| !t.is_empty());
    if let Some(size) = field("page_size", "pageSize") {
        match size.parse() {
            Ok(size) => request.page_size = Some(size),
            Err(_) => return bad_request("invalid page_size"),
        }
    }
    match state.tokens.list(&request) {
        Ok(page) => json_response(
            StatusCode::OK,
            &json!({
                "tokens": page.tokens.iter().map(token_json).collect::<Vec<_>>(),
                "total_count": page.total_count,
                "next_page_token": page.next_page_token.unwrap_or_default(),
                "prev_page_token": page.prev_page_token.unwrap_or_default(),
            }),
        ),
        Err(error) => store_error(error),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateRequest {
    token: String,
    description: Option<String>,
    #[serde(alias = "customClaims")]
    custom_claims: Option<BTreeMap<String, String>>,
}

async fn update(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = gate(&state, Op::Update, &kill, &headers).await {
        return response;
    }
    let Ok(request) = serde_json::from_slice::<UpdateRequest>(&body) else {
        return bad_request("invalid UpdateTokenRequest JSON");
    };
    if request.token.is_empty() {
        return bad_request("token is required");
    }
    let mut update = UpdateToken::new(request.token);
    update.description = request.description;
    // protojson cannot tell an empty map from an absent one.
    update.custom_claims = request.custom_claims.filter(|c| !c.is_empty());
    match state.tokens.update(update) {
        Ok(info) => json_response(StatusCode::OK, &json!({"token_info": token_json(&info)})),
        Err(error) => store_error(error),
    }
}

async fn invalidate(
    AxumState(state): AxumState<Shared>,
    Extension(kill): Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = gate(&state, Op::Invalidate, &kill, &headers).await {
        return response;
    }
    let token = match token_field(&body) {
        Ok(token) => token,
        Err(message) => return bad_request(message),
    };
    if !state.known.contains(&token) {
        return rpc_error(StatusCode::NOT_FOUND, 5, "token not found");
    }
    state.tokens.invalidate(&token);
    json_response(StatusCode::OK, &json!({}))
}
