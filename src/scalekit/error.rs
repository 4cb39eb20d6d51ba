//! [`ScalekitError`]: every way a call to Scalekit can fail, and how a validation maps it.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::keys::LimitError;
use crate::validator::contract::{InvalidReason, ValidateError};

/// Why a call to Scalekit failed.
///
/// The variants separate "Scalekit said no" ([`NotFound`](Self::NotFound),
/// [`Rejected`](Self::Rejected), [`Limit`](Self::Limit)) from "Scalekit could not be asked"
/// (everything else), which is what a validation needs to fail closed with the right status
/// (see [`ScalekitError::to_validate_error`]). No variant ever holds an API key.
///
/// A 400, 401, 403 or 404 is Scalekit's word only when its body is the `google.rpc.Status`
/// JSON of Scalekit's gateway with the matching gRPC code (404 and `NOT_FOUND` 5; 400 and
/// `INVALID_ARGUMENT` 3, `FAILED_PRECONDITION` 9 or `OUT_OF_RANGE` 11; 401 and
/// `UNAUTHENTICATED` 16; 403 and `PERMISSION_DENIED` 7). The same status with any other body
/// (an HTML page or nothing, from a load balancer, a CDN, a WAF or a wrong environment URL) is
/// [`Upstream`](Self::Upstream): an outage, never a verdict on the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScalekitError {
    /// 404 with `{"code": 5}` (`NOT_FOUND`): the key (or token id) is unknown, revoked or
    /// expired.
    #[error("Scalekit does not know this key (unknown, revoked or expired)")]
    NotFound,
    /// The request breaks one of Scalekit's documented limits; nothing was sent.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Scalekit refused the request: a 4xx other than 401, 404 and 429 (a 400 or 403 only
    /// with its matching `google.rpc.Status` code, see the type's docs).
    #[error("Scalekit rejected the request: HTTP {status}, code {code:?}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The numeric gRPC code of the `google.rpc.Status` body, if there was one.
        code: Option<i32>,
        /// The server's message (truncated; any key in it is redacted).
        message: String,
    },
    /// 401 with `{"code": 16}` (`UNAUTHENTICATED`) even with a freshly minted access token.
    #[error("Scalekit refused our access token (HTTP 401 after a refresh)")]
    Unauthorized,
    /// 429: too many requests.
    #[error("Scalekit is rate-limiting us (retry after {retry_after:?})")]
    RateLimited {
        /// The `Retry-After` delay, when the server sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// A 5xx (or an unexpected 1xx/3xx) answer, or a 400/401/403/404 that is not Scalekit's
    /// `google.rpc.Status` with the matching code (a proxy's or a wrong URL's answer).
    #[error("Scalekit (or a proxy in front of it) answered HTTP {status}")]
    Upstream {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within the deadline.
    #[error("Scalekit did not answer in time")]
    Timeout,
    /// The connection failed: refused, reset, closed before the answer, DNS, TLS.
    #[error("could not reach Scalekit: {0}")]
    Connect(String),
    /// The answer was not what the protocol promises: not JSON, wrong types, missing
    /// `token_info`, or larger than the body cap.
    #[error("unexpected answer from Scalekit: {0}")]
    Decode(String),
    /// The client-credentials exchange at `/oauth/token` failed (bad credentials or a broken
    /// token endpoint): an upstream problem, never a verdict on the API key.
    #[error("Scalekit's token endpoint failed (HTTP {status:?}): {message}")]
    UpstreamAuth {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What went wrong (the OAuth error code and description, when present).
        message: String,
    },
    /// The client is misconfigured (missing environment variable, bad URL).
    #[error("Scalekit client configuration: {0}")]
    Config(String),
}

impl ScalekitError {
    /// A short, stable class name for metrics and logs (the `result` label of
    /// `api_key_upstream_requests_total`): never a message, so the label set stays fixed.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Limit(_) => "limit",
            Self::Rejected { .. } => "rejected",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Upstream { .. } => "upstream_error",
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect_error",
            Self::Decode(_) => "decode_error",
            Self::UpstreamAuth { .. } => "auth_error",
            Self::Config(_) => "config_error",
        }
    }

    /// The answer a [`Validator`](crate::Validator) gives for this failure.
    ///
    /// Only Scalekit's own verdicts (404, 400, 403, a 401 that a fresh access token does not
    /// cure, each with its `google.rpc.Status` code) mean "invalid key"; everything else means
    /// "cannot tell", so the layer answers 503.
    /// A 429 is [`ValidateError::UpstreamRateLimited`], with Scalekit's `Retry-After`: a
    /// cache's stale-if-error does not cover it, since a flood of random keys can cause it.
    pub fn to_validate_error(&self) -> ValidateError {
        match self {
            Self::NotFound => ValidateError::Invalid(InvalidReason::Unknown),
            Self::Limit(_) | Self::Unauthorized => ValidateError::Invalid(InvalidReason::Rejected),
            Self::Rejected {
                status: 400 | 403, ..
            } => ValidateError::Invalid(InvalidReason::Rejected),
            Self::RateLimited { retry_after } => ValidateError::UpstreamRateLimited {
                retry_after: *retry_after,
            },
            other => ValidateError::Unavailable {
                message: Cow::Owned(other.to_string()),
                retry_after: None,
            },
        }
    }

    /// `true` for failures worth one quick retry of an idempotent call: a 502/503/504 or a
    /// broken connection.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Connect(_))
            || matches!(self, Self::Upstream { status } if matches!(status, 502..=504))
    }

    /// Classifies a transport error from reqwest.
    pub(crate) fn from_transport(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            return Self::Timeout;
        }
        // reqwest's Display names the URL (no key: keys travel in bodies only) and the cause.
        let message = with_causes(error.to_string(), error);
        if error.is_decode() {
            Self::Decode(truncate(&message))
        } else {
            Self::Connect(truncate(&message))
        }
    }

    /// Classifies a non-2xx answer of an API route. `secret` is the key sent, if any, so it is
    /// scrubbed from the server's message should the server echo it.
    pub(crate) fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        secret: Option<&str>,
    ) -> Self {
        // Only a 4xx needs the body (its code decides whether Scalekit said it).
        let status_body = status
            .is_client_error()
            .then(|| RpcStatus::parse(body))
            .flatten()
            .unwrap_or_default();
        Self::from_answer(
            status.as_u16(),
            status_body.code,
            || retry_after(headers),
            || {
                status_body
                    .message
                    .map(|m| scrub(&m, secret))
                    .unwrap_or_default()
            },
        )
    }

    /// The error for an answer with HTTP `status` and the gRPC `code` of its
    /// `google.rpc.Status` (a gRPC status maps to an HTTP one first; `None`: no such body). The
    /// `Retry-After` delay and the server's scrubbed message are read only when needed.
    pub(crate) fn from_answer(
        status: u16,
        code: Option<i32>,
        retry_after: impl FnOnce() -> Option<Duration>,
        message: impl FnOnce() -> String,
    ) -> Self {
        match status {
            // A proxy's, a CDN's or a wrong URL's answer: no word on the key.
            400 | 401 | 403 | 404 if !is_scalekit_verdict(status, code) => {
                Self::Upstream { status }
            }
            404 => Self::NotFound,
            401 => Self::Unauthorized,
            429 => Self::RateLimited {
                retry_after: retry_after(),
            },
            400..=499 => Self::Rejected {
                status,
                code,
                message: message(),
            },
            status => Self::Upstream { status },
        }
    }
}

/// `true` when `code` is the gRPC code Scalekit's gateway sends with HTTP `status` for a
/// verdict (scalekit-wire.md §6.2 and §6.3): `NOT_FOUND` with 404; `INVALID_ARGUMENT`,
/// `FAILED_PRECONDITION` or `OUT_OF_RANGE` with 400; `UNAUTHENTICATED` with 401;
/// `PERMISSION_DENIED` with 403.
fn is_scalekit_verdict(status: u16, code: Option<i32>) -> bool {
    matches!(
        (status, code),
        (404, Some(5)) | (400, Some(3 | 9 | 11)) | (401, Some(16)) | (403, Some(7))
    )
}

/// `head`, then each cause of `error` in turn, `: `-separated.
pub(crate) fn with_causes(mut head: String, error: &dyn std::error::Error) -> String {
    let mut source = error.source();
    while let Some(cause) = source {
        head.push_str(": ");
        head.push_str(&cause.to_string());
        source = cause.source();
    }
    head
}

/// A `google.rpc.Status` body, read defensively: any field may be missing or mistyped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RpcStatus {
    #[serde(deserialize_with = "lenient_i32")]
    code: Option<i32>,
    #[serde(deserialize_with = "lenient_string")]
    message: Option<String>,
}

impl RpcStatus {
    /// The body as a `google.rpc.Status`: a JSON object (not an array, which serde would also
    /// map onto the fields), or `None`.
    fn parse(body: &[u8]) -> Option<Self> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).ok()?;
        serde_json::from_value(serde_json::Value::Object(object)).ok()
    }
}

fn lenient_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_i64().and_then(|v| i32::try_from(v).ok()))
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(value.as_str().map(str::to_owned))
}

/// The `Retry-After` header in seconds (HTTP dates are not worth a parser here), capped at an
/// hour so a hostile header cannot park clients forever.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

/// At most 300 characters of a server message, so errors stay loggable.
pub(crate) fn truncate(message: &str) -> String {
    const MAX: usize = 300;
    match message.char_indices().nth(MAX) {
        Some((index, _)) => format!("{}…", &message[..index]),
        None => message.to_owned(),
    }
}

pub(crate) fn scrub(message: &str, secret: Option<&str>) -> String {
    let message = match secret {
        Some(secret) if !secret.is_empty() && message.contains(secret) => {
            message.replace(secret, "[redacted]")
        }
        _ => message.to_owned(),
    };
    truncate(&redact_key_like(&message))
}

/// Runs of at least this many ASCII letters and digits are taken for keys (Scalekit's are 61 or
/// more Base62 characters) or large pieces of them.
const KEY_LIKE_RUN: usize = 32;

/// Replaces every key-like run (see [`KEY_LIKE_RUN`]) with `[redacted]`: a server that quotes
/// a key in part, or another key than the one sent, must not get it into our errors and logs.
/// Ids (`apit_…`, `org_…`), words and UUIDs are far shorter.
fn redact_key_like(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len());
    let mut at = 0;
    while at < bytes.len() {
        let alphanumeric = bytes[at].is_ascii_alphanumeric();
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphanumeric() == alphanumeric {
            at += 1;
        }
        // Both ends are ASCII bytes or the ends of the string: char boundaries.
        let run = &message[start..at];
        if alphanumeric && run.len() >= KEY_LIKE_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class of an answer with `status` and `body`, the client secret being `s3cret`.
    fn class(status: u16, body: &str) -> ScalekitError {
        ScalekitError::from_status(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            Some("s3cret"),
        )
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(
            class(
                404,
                r#"{"code":5,"message":"token not found","details":[]}"#
            ),
            ScalekitError::NotFound
        );
        assert_eq!(
            class(401, r#"{"code":16,"message":"Token empty"}"#),
            ScalekitError::Unauthorized
        );
        assert_eq!(
            class(400, r#"{"code":3,"message":"bad s3cret"}"#),
            ScalekitError::Rejected {
                status: 400,
                code: Some(3),
                message: "bad [redacted]".into()
            }
        );
        for code in [9, 11] {
            assert!(matches!(
                class(400, &format!(r#"{{"code":{code}}}"#)),
                ScalekitError::Rejected { status: 400, code: Some(c), .. } if c == code
            ));
        }
        assert_eq!(
            class(403, r#"{"code":7,"message":"denied"}"#),
            ScalekitError::Rejected {
                status: 403,
                code: Some(7),
                message: "denied".into()
            }
        );
        assert_eq!(
            class(409, "<html>"),
            ScalekitError::Rejected {
                status: 409,
                code: None,
                message: String::new()
            }
        );
        assert_eq!(
            class(502, "<html>"),
            ScalekitError::Upstream { status: 502 }
        );
    }

    /// Regression: a 400/401/403/404 was read as Scalekit's verdict whatever its body, so a
    /// load balancer's, a WAF's or a wrong URL's error page made every key "invalid" (401
    /// instead of 503, the cache's records of those keys ended, a revocation "succeeded").
    #[test]
    fn only_scalekit_status_bodies_are_verdicts() {
        for status in [400, 401, 403, 404] {
            for body in [
                "",
                "<html><body><h1>Not Found</h1></body></html>",
                "{}",
                r#"{"error":"not found"}"#,
                r#"{"code":"5","message":"x"}"#,
                // A code that does not go with the status.
                r#"{"code":13,"message":"x"}"#,
                r#"[5,"x"]"#,
                "null",
            ] {
                assert_eq!(
                    class(status, body),
                    ScalekitError::Upstream { status },
                    "{status} {body}"
                );
                assert!(!class(status, body).to_validate_error().is_invalid());
            }
        }
        // Each code goes with its own status only.
        assert_eq!(
            class(404, r#"{"code":3}"#),
            ScalekitError::Upstream { status: 404 }
        );
        assert_eq!(
            class(403, r#"{"code":16}"#),
            ScalekitError::Upstream { status: 403 }
        );
    }

    /// Regression: only the exact key sent was scrubbed, so a server quoting part of it (or
    /// another key) got it into errors and logs.
    #[test]
    fn key_like_runs_are_redacted() {
        let key =
            "4cXk0nQ7rS1b9WmT2yVfA8hLdE3jPuGz6oRiKq5NwYtH0aBcD1eF2gH3iJ4kL5mN6oP7qR8sT9uV0wXyZ";
        let message = format!(
            "bad token {}... (request 1b4e28ba-2fa1-11d2-883f-0016d3cca427, apit_71234567890123456, é)",
            &key[..40]
        );
        assert_eq!(
            scrub(&message, Some("other")),
            "bad token [redacted]... (request 1b4e28ba-2fa1-11d2-883f-0016d3cca427, apit_71234567890123456, é)"
        );
        assert_eq!(
            scrub(&format!("{key}{key}"), Some(key)),
            "[redacted][redacted]"
        );
        assert_eq!(redact_key_like(""), "");
        assert_eq!(redact_key_like(&"a".repeat(31)), "a".repeat(31));
        assert_eq!(redact_key_like(&"a".repeat(32)), "[redacted]");
    }

    #[test]
    fn retry_after_is_parsed_and_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(http::header::RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3600)));
        headers.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn only_verdicts_are_invalid() {
        assert!(ScalekitError::NotFound.to_validate_error().is_invalid());
        assert!(ScalekitError::Unauthorized.to_validate_error().is_invalid());
        for error in [
            ScalekitError::Timeout,
            ScalekitError::Upstream { status: 500 },
            ScalekitError::Decode("x".into()),
            ScalekitError::UpstreamAuth {
                status: Some(500),
                message: "x".into(),
            },
            ScalekitError::Rejected {
                status: 409,
                code: None,
                message: String::new(),
            },
            ScalekitError::Connect("refused".into()),
        ] {
            let verdict = error.to_validate_error();
            assert!(!verdict.is_invalid(), "{error:?}");
            // An outage: stale-if-error may cover it.
            assert!(
                matches!(verdict, ValidateError::Unavailable { .. }),
                "{error:?}"
            );
        }
        let verdict = ScalekitError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        }
        .to_validate_error();
        // Not an outage: stale-if-error must not cover it.
        assert_eq!(
            verdict,
            ValidateError::UpstreamRateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(verdict.retry_after(), Some(Duration::from_secs(3)));
    }
}
