//! The fake's gRPC side: `scalekit.v1.tokens.ApiTokenService` on the same port as the REST
//! routes.
//!
//! Each RPC is answered the way a gateway would: the protobuf request becomes the matching
//! REST request, which goes through the fake's own REST router (so the store, the counters, the
//! faults and the access-token check are the same objects on both transports), and the REST
//! answer goes back as protobuf, or as a gRPC status (code from the `google.rpc.Status` body,
//! `Retry-After` and `ErrorInfo` kept). An error answer without such a body (the `html` and
//! `empty` faults: a proxy's page) goes out as is, with no `grpc-status`, as a proxy that
//! does not speak gRPC would send it.
//! A 2xx answer that is not the JSON of the RPC (the `Truncated`/`WrongTypes` faults) goes out
//! as a corrupt protobuf message, which is what such a fault looks like on this wire.

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Frame;
use prost::Message;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::server::Kill;
use crate::scalekit::grpc::proto::errdetails::ErrorInfo;
use crate::scalekit::grpc::proto::tokens as pb;
use crate::scalekit::grpc::{ERROR_INFO_TYPE, RpcStatus};

mod convert;

use crate::scalekit::grpc::convert::format_timestamp;
use convert::encode_answer;

/// The most the fake reads of a gRPC request.
const MAX_REQUEST: usize = 1024 * 1024;

/// Adds the gRPC route to the REST router `rest` (which it calls for every RPC).
pub(crate) fn with_grpc(rest: Router) -> Router {
    let grpc = Router::new()
        .route(
            "/scalekit.v1.tokens.ApiTokenService/{method}",
            axum::routing::post(rpc),
        )
        .with_state(rest.clone());
    rest.merge(grpc)
}

async fn rpc(
    State(rest): State<Router>,
    Path(method): Path<String>,
    axum::extract::Extension(kill): axum::extract::Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/grpc",
        )
            .into_response();
    }
    let Some(message) = unframe(&body) else {
        return status_only(13, "malformed gRPC frame", None, None);
    };
    let Some((http_method, path, json_body)) = to_rest(&method, message) else {
        return status_only(12, &format!("unknown method {method}"), None, None);
    };
    let Ok(json_body) = json_body else {
        return status_only(13, "could not decode the request message", None, None);
    };
    let mut request = Request::builder().method(http_method).uri(path);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    let request = match json_body {
        Some(json) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_string())),
        None => request.body(Body::empty()),
    };
    let Ok(mut request) = request else {
        return status_only(13, "could not build the request", None, None);
    };
    request.extensions_mut().insert(kill);
    let Ok(answer) = rest.oneshot(request).await;
    let (parts, body) = answer.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, MAX_REQUEST * 64)
        .collect()
        .await
    else {
        return status_only(13, "answer too large", None, None);
    };
    let bytes = collected.to_bytes();
    if parts.status.is_success() {
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            return corrupt_message();
        };
        match encode_answer(&method, &json) {
            Some(message) => message_response(message),
            None => corrupt_message(),
        }
    } else {
        error_response(parts.status, &parts.headers, &bytes)
    }
}

/// The message of a single uncompressed gRPC frame.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&[flag, a, b, c, d], rest) = body.split_first_chunk::<5>()?;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    (flag == 0 && len == rest.len() && len <= MAX_REQUEST).then_some(rest)
}

type RestCall = (Method, String, Result<Option<Value>, prost::DecodeError>);

/// The REST request for an RPC; `None` for an unknown method.
fn to_rest(method: &str, message: &[u8]) -> Option<RestCall> {
    fn claims(map: HashMap<String, String>) -> Value {
        Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    }
    Some(match method {
        "CreateToken" => (
            Method::POST,
            "/api/v1/tokens".into(),
            pb::CreateTokenRequest::decode(message).map(|r| {
                let t = r.token.unwrap_or_default();
                let mut body = Map::new();
                body.insert("organization_id".into(), t.organization_id.into());
                if !t.user_id.is_empty() {
                    body.insert("user_id".into(), t.user_id.into());
                }
                if !t.custom_claims.is_empty() {
                    body.insert("custom_claims".into(), claims(t.custom_claims));
                }
                if let Some(at) = t.expiry.and_then(|at| format_timestamp(&at)) {
                    body.insert("expiry".into(), at.into());
                }
                if !t.description.is_empty() {
                    body.insert("description".into(), t.description.into());
                }
                Some(Value::Object(body))
            }),
        ),
        "ValidateToken" => (
            Method::POST,
            "/api/v1/tokens:validate".into(),
            pb::ValidateTokenRequest::decode(message).map(|r| Some(json!({"token": r.token}))),
        ),
        "InvalidateToken" => (
            Method::POST,
            "/api/v1/tokens:invalidate".into(),
            pb::InvalidateTokenRequest::decode(message).map(|r| Some(json!({"token": r.token}))),
        ),
        "UpdateToken" => (
            Method::POST,
            "/api/v1/tokens:update".into(),
            pb::UpdateTokenRequest::decode(message).map(|r| {
                let mut body = Map::new();
                body.insert("token".into(), r.token.into());
                if let Some(description) = r.description {
                    body.insert("description".into(), description.into());
                }
                if !r.custom_claims.is_empty() {
                    body.insert("custom_claims".into(), claims(r.custom_claims));
                }
                Some(Value::Object(body))
            }),
        ),
        "ListTokens" => {
            let decoded = pb::ListTokensRequest::decode(message);
            let path = match &decoded {
                Ok(r) => {
                    let mut pairs = vec![("organization_id", r.organization_id.clone())];
                    if let Some(user) = &r.user_id {
                        pairs.push(("user_id", user.clone()));
                    }
                    if r.page_size != 0 {
                        pairs.push(("page_size", r.page_size.to_string()));
                    }
                    if !r.page_token.is_empty() {
                        pairs.push(("page_token", r.page_token.clone()));
                    }
                    let mut url = reqwest::Url::parse("http://fake/api/v1/tokens")
                        .expect("a constant, valid URL");
                    url.query_pairs_mut().extend_pairs(pairs);
                    format!("{}?{}", url.path(), url.query().unwrap_or_default())
                }
                Err(_) => "/api/v1/tokens".into(),
            };
            (Method::GET, path, decoded.map(|_| None))
        }
        _ => return None,
    })
}

fn grpc_headers(response: &mut Response) {
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
}

/// 200, one message, then `grpc-status: 0` in the trailers.
fn message_response(message: Vec<u8>) -> Response {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(framed))),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut response = Response::new(Body::new(http_body_util::StreamBody::new(frames)));
    grpc_headers(&mut response);
    response
}

/// A message that is not valid protobuf (a length-delimited field 1 longer than the message).
fn corrupt_message() -> Response {
    message_response(vec![0x0a, 0x7f, b'{'])
}

/// A "trailers-only" gRPC error: the status in the response headers, no body.
fn status_only(
    code: i32,
    message: &str,
    retry_after: Option<&HeaderValue>,
    error_code: Option<&str>,
) -> Response {
    let mut response = Response::new(Body::empty());
    grpc_headers(&mut response);
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    if let Some(value) = retry_after {
        headers.insert(header::RETRY_AFTER, value.clone());
    }
    let details = RpcStatus {
        code,
        message: message.to_owned(),
        details: error_code
            .map(|error_code| prost_types::Any {
                type_url: ERROR_INFO_TYPE.to_owned(),
                value: ErrorInfo {
                    error_code: error_code.to_owned(),
                    ..ErrorInfo::default()
                }
                .encode_to_vec(),
            })
            .into_iter()
            .collect(),
    };
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(details.encode_to_vec());
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-status-details-bin", value);
    }
    response
}

/// The gRPC error for a REST error answer with a `google.rpc.Status` body; any other error
/// answer (a proxy's page) as is.
fn error_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Response {
    let parsed = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.get("code").is_some_and(Value::is_i64));
    let Some(code) = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_i64)
        .map(|c| {
            i32::try_from(c)
                .ok()
                .filter(|c| (1..=16).contains(c))
                .unwrap_or_else(|| code_of(status))
        })
    else {
        let mut response = (status, Bytes::copy_from_slice(body)).into_response();
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
        }
        return response;
    };
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| status.to_string(), str::to_owned);
    let error_code = parsed
        .as_ref()
        .and_then(|v| v.get("details"))
        .and_then(Value::as_array)
        .and_then(|details| {
            details
                .iter()
                .find_map(|d| d.get("error_code").and_then(Value::as_str))
        })
        .map(str::to_owned)
        .or_else(|| (code == 16).then(|| "UNAUTHENTICATED".to_owned()));
    status_only(
        code,
        &message,
        headers.get(header::RETRY_AFTER),
        error_code.as_deref(),
    )
}

/// The gRPC code for an HTTP status (the inverse of scalekit-wire.md §6.2).
fn code_of(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        429 => 8,
        499 => 1,
        501 => 12,
        502 | 503 => 14,
        504 => 4,
        500..=599 => 13,
        _ => 2,
    }
}

/// `grpc-message` encoding: printable ASCII but `%` as is, everything else `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
