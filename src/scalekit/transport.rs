//! One authenticated request: headers, deadline, capped body, 401 → refresh → one retry.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method};
use tokio::time::Instant;

use super::auth::AccessToken;
use super::wire::{AccessTokenResponse, OAuthError};
use super::{ScalekitClient, ScalekitError, error::scrub};

/// The most we read of any answer. Scalekit's answers are a few KiB; a larger one is broken or
/// hostile, and must not exhaust memory.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A request to an API route.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    /// The key or token id in the body, scrubbed from error messages.
    pub(crate) secret: Option<&'a str>,
    pub(crate) deadline: Instant,
}

/// The metrics label of a call: the API operation, from a fixed list.
fn operation(call: &Call<'_>) -> &'static str {
    match (&call.method, call.path) {
        (&Method::GET, _) => "list",
        (_, path) if path.ends_with(":validate") => "validate",
        (_, path) if path.ends_with(":invalidate") => "invalidate",
        (_, path) if path.ends_with(":update") => "update",
        (&Method::POST, _) => "create",
        _ => "other",
    }
}

/// A body read up to [`MAX_BODY`].
struct Capped {
    bytes: Bytes,
    truncated: bool,
}

impl ScalekitClient {
    /// Sends `call` with a valid access token; on a 401, refreshes the token (rate-limited,
    /// single-flight) and retries once. Returns the body of a 2xx answer.
    pub(crate) async fn call(&self, call: &Call<'_>) -> Result<Bytes, ScalekitError> {
        let timer = crate::telemetry::UpstreamTimer::start(operation(call));
        let result = self.call_untimed(call).await;
        timer.finish(match &result {
            Ok(_) => "ok",
            Err(error) => error.class(),
        });
        result
    }

    async fn call_untimed(&self, call: &Call<'_>) -> Result<Bytes, ScalekitError> {
        let token = self.access_token().await?;
        match self.send(call, &token).await {
            // Scalekit's UNAUTHENTICATED, or a bare 401 (which a fresh token may cure too; it
            // stays an outage, never a verdict, if it persists).
            Err(
                refused @ (ScalekitError::Unauthorized | ScalekitError::Upstream { status: 401 }),
            ) => {
                let fresh = self
                    .inner
                    .tokens
                    .refresh_after_401(&token, self.token_fetcher())
                    .await?;
                match fresh {
                    Some(fresh) => self.send(call, &fresh).await,
                    // A refresh just happened and did not help: retrying with the same token
                    // would only double the traffic.
                    None => Err(refused),
                }
            }
            other => other,
        }
    }

    async fn access_token(&self) -> Result<Arc<AccessToken>, ScalekitError> {
        self.inner.tokens.get(self.token_fetcher()).await
    }

    /// An owned access-token fetch: it may outlive the call that started it (see `auth`).
    fn token_fetcher(
        &self,
    ) -> impl FnOnce(u64) -> BoxFuture<'static, Result<AccessToken, ScalekitError>> + Send + 'static
    {
        let client = self.clone();
        move |generation| Box::pin(async move { client.fetch_access_token(generation).await })
    }

    async fn send(&self, call: &Call<'_>, token: &AccessToken) -> Result<Bytes, ScalekitError> {
        let remaining = call.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ScalekitError::Timeout);
        }
        let inner = &self.inner;
        #[cfg(feature = "grpc")]
        if let Some(grpc) = &inner.grpc {
            return grpc.send(call, token, remaining).await;
        }
        let url = format!("{}{}", inner.base_url, call.path);
        let mut request = inner
            .http
            .request(call.method.clone(), url)
            .timeout(remaining)
            .bearer_auth(token.value())
            .header(ACCEPT, JSON)
            .header(USER_AGENT, inner.user_agent.clone())
            .header("x-api-version", inner.api_version.clone());
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, JSON).body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ScalekitError::from_transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let body = read_capped(response).await?;
            if body.truncated {
                return Err(ScalekitError::Decode(format!(
                    "answer larger than {MAX_BODY} bytes"
                )));
            }
            Ok(body.bytes)
        } else {
            // The status decides the class; the body only adds detail, so a broken or huge
            // error body does not turn a 503 into something else.
            let body = read_capped(response)
                .await
                .map_or(Bytes::new(), |b| b.bytes);
            let error = ScalekitError::from_status(status, &headers, &body, call.secret);
            tracing::debug!(status = status.as_u16(), path = call.path, %error, "Scalekit call failed");
            Err(error)
        }
    }

    /// The client-credentials exchange. Any failure of the endpoint itself is
    /// [`ScalekitError::UpstreamAuth`]; transport failures keep their own class.
    pub(crate) async fn fetch_access_token(
        &self,
        generation: u64,
    ) -> Result<AccessToken, ScalekitError> {
        let inner = &self.inner;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", inner.client_id.as_str()),
            ("client_secret", inner.client_secret.as_str()),
        ];
        // No Authorization header here: the credentials are the form fields.
        let response = inner
            .http
            .post(format!("{}/oauth/token", inner.base_url))
            .timeout(inner.token_timeout)
            .header(ACCEPT, JSON)
            .header(USER_AGENT, inner.user_agent.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| ScalekitError::from_transport(&e))?;
        let status = response.status();
        let body = read_capped(response).await?;
        let token = decode_access_token(
            status,
            &body.bytes,
            body.truncated,
            generation,
            Some(inner.client_secret.as_str()),
        )?;
        tracing::debug!(generation, "fetched a Scalekit access token");
        Ok(token)
    }
}

/// The answer of `/oauth/token`: an access token, or [`ScalekitError::UpstreamAuth`] for an
/// error status or a body that does not hold one. `client_secret` is scrubbed from the
/// server's error text (a server or proxy may echo the form), and so is anything key-like.
pub(crate) fn decode_access_token(
    status: http::StatusCode,
    body: &[u8],
    truncated: bool,
    generation: u64,
    client_secret: Option<&str>,
) -> Result<AccessToken, ScalekitError> {
    if !status.is_success() {
        let detail = serde_json::from_slice::<OAuthError>(body)
            .ok()
            .and_then(|e| match (e.error, e.error_description) {
                (Some(code), Some(text)) => Some(format!("{code}: {text}")),
                (code, text) => code.or(text),
            })
            .unwrap_or_else(|| "no OAuth error in the answer".to_owned());
        return Err(ScalekitError::UpstreamAuth {
            status: Some(status.as_u16()),
            message: scrub(&detail, client_secret),
        });
    }
    let malformed = |what: &str| ScalekitError::UpstreamAuth {
        status: Some(status.as_u16()),
        message: what.to_owned(),
    };
    if truncated {
        return Err(malformed("token answer too large"));
    }
    let parsed: AccessTokenResponse =
        serde_json::from_slice(body).map_err(|_| malformed("token answer not JSON"))?;
    let access_token = parsed
        .access_token
        .ok_or_else(|| malformed("token answer without access_token"))?;
    Ok(AccessToken::new(
        access_token,
        parsed.expires_in,
        generation,
    ))
}

/// Reads at most [`MAX_BODY`] bytes, trusting neither `Content-Length` nor the sender's pace
/// (the request's deadline bounds the time).
async fn read_capped(mut response: reqwest::Response) -> Result<Capped, ScalekitError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Ok(Capped {
            bytes: Bytes::new(),
            truncated: true,
        });
    }
    let mut buffer = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ScalekitError::from_transport(&e))?
    {
        if buffer.len() + chunk.len() > MAX_BODY {
            let room = MAX_BODY - buffer.len();
            buffer.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                bytes: buffer.freeze(),
                truncated: true,
            });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Capped {
        bytes: buffer.freeze(),
        truncated: false,
    })
}
