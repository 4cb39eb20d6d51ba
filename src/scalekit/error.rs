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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScalekitError {
    /// 404: the key (or token id) is unknown, revoked or expired.
    #[error("Scalekit does not know this key (unknown, revoked or expired)")]
    NotFound,
    /// The request breaks one of Scalekit's documented limits; nothing was sent.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// Scalekit refused the request (a 4xx other than 401, 404 and 429).
    #[error("Scalekit rejected the request: HTTP {status}, code {code:?}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The numeric gRPC code of the `google.rpc.Status` body, if there was one.
        code: Option<i32>,
        /// The server's message (truncated; any key in it is redacted).
        message: String,
    },
    /// 401 even with a freshly minted access token.
    #[error("Scalekit refused our access token (HTTP 401 after a refresh)")]
    Unauthorized,
    /// 429: too many requests.
    #[error("Scalekit is rate-limiting us (retry after {retry_after:?})")]
    RateLimited {
        /// The `Retry-After` delay, when the server sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// A 5xx (or an unexpected 1xx/3xx) answer.
    #[error("Scalekit answered HTTP {status}")]
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
    /// cure) mean "invalid key"; everything else means "cannot tell", so the layer answers 503.
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
        Self::from_answer(
            status.as_u16(),
            || retry_after(headers),
            || {
                let status_body = RpcStatus::parse(body);
                let code = status_body.as_ref().and_then(|s| s.code);
                let message = status_body.and_then(|s| s.message);
                (code, message.map(|m| scrub(&m, secret)).unwrap_or_default())
            },
        )
    }

    /// The error for an answer with HTTP `status` (a gRPC status maps to one first): the
    /// `Retry-After` delay and the server's (code, scrubbed message) are read only when the
    /// status needs them.
    pub(crate) fn from_answer(
        status: u16,
        retry_after: impl FnOnce() -> Option<Duration>,
        detail: impl FnOnce() -> (Option<i32>, String),
    ) -> Self {
        match status {
            404 => Self::NotFound,
            401 => Self::Unauthorized,
            429 => Self::RateLimited {
                retry_after: retry_after(),
            },
            400..=499 => {
                let (code, message) = detail();
                Self::Rejected {
                    status,
                    code,
                    message,
                }
            }
            status => Self::Upstream { status },
        }
    }
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
    fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice(body).ok()
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

    #[test]
    fn statuses_map_to_classes() {
        let headers = HeaderMap::new();
        let class = |status: u16, body: &str| {
            ScalekitError::from_status(
                StatusCode::from_u16(status).unwrap(),
                &headers,
                body.as_bytes(),
                Some("s3cret"),
            )
        };
        assert_eq!(class(404, ""), ScalekitError::NotFound);
        assert_eq!(class(401, "{}"), ScalekitError::Unauthorized);
        assert_eq!(
            class(400, r#"{"code":3,"message":"bad s3cret"}"#),
            ScalekitError::Rejected {
                status: 400,
                code: Some(3),
                message: "bad [redacted]".into()
            }
        );
        assert_eq!(
            class(403, "<html>"),
            ScalekitError::Rejected {
                status: 403,
                code: None,
                message: String::new()
            }
        );
        assert_eq!(
            class(502, "<html>"),
            ScalekitError::Upstream { status: 502 }
        );
        assert_eq!(
            class(400, r#"{"code":"x","message":7}"#),
            ScalekitError::Rejected {
                status: 400,
                code: None,
                message: String::new()
            }
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
