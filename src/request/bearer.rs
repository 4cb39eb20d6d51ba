//! Strict parsing of `Authorization: Bearer <token>` (RFC 6750 §2.1, RFC 9110 §11).
//!
//! `headers`' `Authorization<Bearer>` reads only the first header value and lets `"Bearer  "`
//! through as an empty token, so the raw values are parsed here, as bytes: a header value is
//! never converted lossily.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Why a request carries no usable bearer token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header, or one with another scheme (`Basic ...`). RFC 6750 §3.1: the
    /// challenge then carries no error code.
    Missing,
    /// More than one `Authorization` header.
    Multiple,
    /// `Bearer` with no token after it.
    Empty,
    /// The token is not a `b64token`, is too long, or the separator is not a space.
    Malformed,
}

/// Returns the bearer token of `headers`, checked against RFC 6750's `b64token` grammar and at
/// most `max_len` bytes long.
///
/// ```
/// use axum_api_key::request::{bearer_token, BearerError};
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("bEaReR   abc123"));
/// assert_eq!(bearer_token(&headers, 512), Ok("abc123"));
///
/// headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
/// assert_eq!(bearer_token(&headers, 512), Err(BearerError::Multiple));
/// ```
pub fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Multiple);
    }
    parse_credentials(value.as_bytes(), max_len)
}

/// Parses one `Authorization` field value.
pub fn parse_credentials(value: &[u8], max_len: usize) -> Result<&str, BearerError> {
    let token = scheme_rest(value)?;
    if token.is_empty() {
        return Err(BearerError::Empty);
    }
    if token.len() > max_len || !is_b64token(token) {
        return Err(BearerError::Malformed);
    }
    // `is_b64token` admits ASCII only, so this cannot fail; the error arm keeps it panic-free.
    std::str::from_utf8(token).map_err(|_| BearerError::Malformed)
}

/// The bytes after `Bearer` and its spaces (possibly empty), with no check of the token
/// itself: the layer's one-pass fast path checks them against the key format, whose
/// alphabets are subsets of `b64token`.
pub(crate) fn scheme_rest(value: &[u8]) -> Result<&[u8], BearerError> {
    let value = trim_ows(value);
    const SCHEME: &[u8] = b"bearer";
    let scheme_matches =
        value.len() >= SCHEME.len() && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME);
    if !scheme_matches {
        return Err(BearerError::Missing);
    }
    let rest = &value[SCHEME.len()..];
    match rest.first() {
        None => return Err(BearerError::Empty),
        Some(b' ') => {}
        // `Bearer\tabc`: RFC 9110 allows only spaces between scheme and credentials.
        Some(b'\t') => return Err(BearerError::Malformed),
        // `Bearerx ...` is another scheme whose name starts with "bearer".
        Some(_) => return Err(BearerError::Missing),
    }
    Ok(trim_leading_spaces(rest))
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0 && super::charset::all_in(&token[..body_len], super::charset::B64TOKEN)
}

fn trim_leading_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().take_while(|&&b| b == b' ').count();
    &bytes[start..]
}

/// Field values carry no leading or trailing whitespace (RFC 9110 §5.5); servers strip it, and
/// so do we for values built by hand.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().take_while(|b| is_ows(b)).count();
    let end = bytes.len()
        - bytes[start..]
            .iter()
            .rev()
            .take_while(|b| is_ows(b))
            .count();
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_separators() {
        assert_eq!(parse_credentials(b"Bearer abc", 512), Ok("abc"));
        assert_eq!(parse_credentials(b"BEARER abc==", 512), Ok("abc=="));
        assert_eq!(
            parse_credentials(b"Basic abc", 512),
            Err(BearerError::Missing)
        );
        assert_eq!(
            parse_credentials(b"Bearerabc", 512),
            Err(BearerError::Missing)
        );
        assert_eq!(parse_credentials(b"Bearer", 512), Err(BearerError::Empty));
        assert_eq!(
            parse_credentials(b"Bearer    ", 512),
            Err(BearerError::Empty)
        );
        assert_eq!(
            parse_credentials(b"Bearer\tabc", 512),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            parse_credentials(b"Bearer a b", 512),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            parse_credentials(b"Bearer ===", 512),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            parse_credentials(b"Bearer a=b", 512),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            parse_credentials("Bearer \u{e9}t\u{e9}".as_bytes(), 512),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            parse_credentials(b"Bearer abcd", 3),
            Err(BearerError::Malformed)
        );
    }
}
