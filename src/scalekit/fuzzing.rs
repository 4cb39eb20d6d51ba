//! The fuzzing entry of the wire decoding (`fuzz/fuzz_targets/wire.rs`, replayed by
//! `tests/fuzz_corpus.rs`). Not part of the API: hidden from the docs, may change at any time.

use http::{HeaderMap, HeaderValue, StatusCode};

use super::ScalekitError;
use super::ops::{decode_create, decode_list, decode_update, decode_validate};
use super::transport::decode_access_token;
use crate::keys::{CreateToken, CreatedToken, TokenPage};
use crate::token_info::TokenInfo;

/// The statuses every body is classified under, as an error answer.
pub const ERROR_STATUSES: &[u16] = &[
    200, 204, 302, 400, 401, 403, 404, 409, 418, 429, 499, 500, 501, 502, 503, 504, 599,
];

/// What every decoder of Scalekit's answers made of one body.
#[derive(Debug)]
pub struct WireOutcomes {
    /// `POST /api/v1/tokens:validate` (a 200).
    pub validate: Result<TokenInfo, ScalekitError>,
    /// `POST /api/v1/tokens:update` (a 200).
    pub update: Result<TokenInfo, ScalekitError>,
    /// `POST /api/v1/tokens` (a 2xx), for a request of organization `org_fuzz`.
    pub create: Result<CreatedToken, ScalekitError>,
    /// `GET /api/v1/tokens` (a 200).
    pub list: Result<TokenPage, ScalekitError>,
    /// `POST /oauth/token`, as a 200 and as a 401 answer.
    pub access_token: [Result<(), ScalekitError>; 2],
    /// The body as the error answer of an API route, for each of [`ERROR_STATUSES`], with
    /// `Retry-After` set to the body's first line when that is a valid header value.
    pub errors: Vec<(u16, ScalekitError)>,
}

/// Runs `body` through every decoder of Scalekit's answers. `secret` plays the key sent with
/// the request (scrubbed from error messages). Never panics, whatever the input.
pub fn fuzz_decode(body: &[u8], secret: &str) -> WireOutcomes {
    let mut headers = HeaderMap::new();
    let first_line = body.split(|b| *b == b'\n').next().unwrap_or_default();
    if let Ok(value) = HeaderValue::from_bytes(first_line) {
        headers.insert(http::header::RETRY_AFTER, value);
    }
    let errors = ERROR_STATUSES
        .iter()
        .filter_map(|code| StatusCode::from_u16(*code).ok())
        .filter(|status| !status.is_success())
        .map(|status| {
            let secret = (!secret.is_empty()).then_some(secret);
            (
                status.as_u16(),
                ScalekitError::from_status(status, &headers, body, secret),
            )
        })
        .collect();
    WireOutcomes {
        validate: decode_validate(body),
        update: decode_update(body),
        create: decode_create(body, &CreateToken::new("org_fuzz")),
        list: decode_list(body),
        access_token: [StatusCode::OK, StatusCode::UNAUTHORIZED].map(|status| {
            decode_access_token(status, body, false, 1, Some(secret)).map(|token| {
                debug_assert!(!token.value().is_empty());
            })
        }),
        errors,
    }
}
