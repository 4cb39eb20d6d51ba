//! The gRPC transport (feature `grpc`): Scalekit's `ApiTokenService` over HTTP/2, as every
//! official SDK calls it.
//!
//! It is a second wire under the same client: the operations in `ops.rs` describe a call in
//! the REST shape (route, JSON body, query), [`GrpcTransport::send`] turns it into the matching
//! RPC and turns the protobuf answer back into the JSON the REST decoders read. Access tokens,
//! deadlines, retries, limits, decoding and error classes are therefore shared by both
//! transports; only the framing differs. One HTTP/2 connection (a tonic `Channel`, opened on
//! first use) carries every call; TLS is rustls with the webpki roots plus any extra root the
//! builder was given, ALPN `h2`. Plaintext h2c is allowed for loopback URLs only.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use prost::Message;
use serde_json::{Value, json};
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::ScalekitError;
use super::auth::AccessToken;
use super::builder::is_loopback;
use super::error::{retry_after, scrub, truncate, with_causes};
use super::ops::{INVALIDATE, TOKENS, UPDATE, VALIDATE};
use super::transport::{Call, MAX_BODY};

pub(crate) mod convert;

use convert::{
    create_json, create_request, info_json, list_json, list_request, str_field, update_request,
};

/// The generated messages and client (see `scripts/grpc-codegen.sh`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rustdoc::all,
    dead_code
)]
pub(crate) mod proto {
    /// `scalekit.v1.tokens`.
    pub(crate) mod tokens {
        include!("generated/scalekit.v1.tokens.rs");
    }
    /// `scalekit.v1.errdetails`.
    pub(crate) mod errdetails {
        include!("generated/scalekit.v1.errdetails.rs");
    }
}

use proto::tokens as pb;
use proto::tokens::api_token_service_client::ApiTokenServiceClient;

/// `google.rpc.Status`, the message in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// The gRPC code.
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    /// The message.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    /// Typed details; Scalekit puts `scalekit.v1.errdetails.ErrorInfo` here.
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<prost_types::Any>,
}

/// The `type_url` of Scalekit's `ErrorInfo`.
pub(crate) const ERROR_INFO_TYPE: &str = "type.googleapis.com/scalekit.v1.errdetails.ErrorInfo";

/// The gRPC side of a [`ScalekitClient`](super::ScalekitClient).
pub(crate) struct GrpcTransport {
    endpoint: Endpoint,
    /// `x-api-version`, the client's, converted once.
    api_version: MetadataValue<tonic::metadata::Ascii>,
    /// Opened on first use (a `Channel` needs a running runtime), then shared by every call.
    client: OnceLock<ApiTokenServiceClient<Channel>>,
}

impl GrpcTransport {
    /// Checks the URL and the TLS settings; connects nothing yet.
    pub(crate) fn new(
        base_url: &str,
        url: &reqwest::Url,
        extra_roots: &[Vec<u8>],
        connect_timeout: Duration,
        user_agent: &'static str,
        api_version: &http::HeaderValue,
    ) -> Result<Self, ScalekitError> {
        let config = |e: &dyn std::fmt::Display| ScalekitError::Config(format!("gRPC: {e}"));
        let api_version = MetadataValue::try_from(api_version.as_bytes())
            .map_err(|_| ScalekitError::Config("bad api version".into()))?;
        if url.path() != "/" && !url.path().is_empty() {
            // gRPC paths are absolute from the host: a path prefix cannot be honoured.
            return Err(config(&"the environment URL must not have a path for gRPC"));
        }
        let mut endpoint = Endpoint::from_shared(base_url.to_owned())
            .map_err(|e| config(&e))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .user_agent(user_agent)
            .map_err(|e| config(&e))?;
        match url.scheme() {
            "https" => {
                let mut tls = ClientTlsConfig::new().with_webpki_roots();
                for pem in extra_roots {
                    tls = tls.ca_certificate(Certificate::from_pem(pem));
                }
                endpoint = endpoint.tls_config(tls).map_err(|e| config(&e))?;
            }
            "http" if is_loopback(url) => {}
            _ => {
                return Err(config(
                    &"plaintext (http://) gRPC is only allowed to a loopback address",
                ));
            }
        }
        Ok(Self {
            endpoint,
            api_version,
            client: OnceLock::new(),
        })
    }

    fn client(&self) -> ApiTokenServiceClient<Channel> {
        self.client
            .get_or_init(|| {
                ApiTokenServiceClient::new(self.endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_BODY)
            })
            .clone()
    }

    /// Sends `call` as the matching RPC; the answer comes back as the REST route's JSON.
    /// `remaining`: the time left before the call's deadline (not zero; the caller checked).
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        token: &AccessToken,
        remaining: Duration,
    ) -> Result<Bytes, ScalekitError> {
        let body: Value = match &call.body {
            Some(bytes) => serde_json::from_slice(bytes)
                .map_err(|_| ScalekitError::Decode("encoding: request body is not JSON".into()))?,
            None => Value::Null,
        };
        let headers = Headers::new(token, &self.api_version, remaining)?;
        let mut client = self.client();
        let rpc = async {
            let answer = match (&call.method, call.path) {
                (&Method::POST, TOKENS) => {
                    let answer = client
                        .create_token(headers.wrap(create_request(&body)?))
                        .await;
                    answer.map(|r| create_json(r.into_inner()))
                }
                (&Method::POST, VALIDATE) => {
                    let request = pb::ValidateTokenRequest {
                        token: str_field(&body, "token"),
                    };
                    let answer = client.validate_token(headers.wrap(request)).await;
                    answer.map(|r| info_json(r.into_inner().token_info))
                }
                (&Method::GET, TOKENS) => {
                    let answer = client.list_tokens(headers.wrap(list_request(call))).await;
                    answer.map(|r| list_json(r.into_inner()))
                }
                (&Method::POST, UPDATE) => {
                    let answer = client
                        .update_token(headers.wrap(update_request(&body)))
                        .await;
                    answer.map(|r| info_json(r.into_inner().token_info))
                }
                (&Method::POST, INVALIDATE) => {
                    let request = pb::InvalidateTokenRequest {
                        token: str_field(&body, "token"),
                    };
                    let answer = client.invalidate_token(headers.wrap(request)).await;
                    answer.map(|_| Ok(json!({})))
                }
                _ => {
                    return Err(ScalekitError::Config(format!(
                        "no RPC for {} {}",
                        call.method, call.path
                    )));
                }
            };
            match answer {
                Ok(json) => Ok(Bytes::from(json?.to_string())),
                // tonic enforces the `grpc-timeout` it sends: its CANCELLED "Timeout expired"
                // is our own deadline, not a word from Scalekit.
                Err(status)
                    if status.code() == tonic::Code::Cancelled
                        && call.deadline.saturating_duration_since(Instant::now())
                            < Duration::from_millis(50) =>
                {
                    Err(ScalekitError::Timeout)
                }
                Err(status) => {
                    let error = classify(&status, call.secret);
                    tracing::debug!(code = ?status.code(), path = call.path, %error, "Scalekit RPC failed");
                    Err(error)
                }
            }
        };
        tokio::time::timeout(remaining, rpc)
            .await
            .unwrap_or(Err(ScalekitError::Timeout))
    }
}

/// The metadata of every RPC.
struct Headers {
    authorization: MetadataValue<tonic::metadata::Ascii>,
    api_version: MetadataValue<tonic::metadata::Ascii>,
    timeout: Duration,
}

impl Headers {
    fn new(
        token: &AccessToken,
        api_version: &MetadataValue<tonic::metadata::Ascii>,
        timeout: Duration,
    ) -> Result<Self, ScalekitError> {
        let authorization =
            MetadataValue::try_from(format!("Bearer {}", token.value())).map_err(|_| {
                ScalekitError::UpstreamAuth {
                    status: None,
                    message: "the access token is not a valid header value".into(),
                }
            })?;
        Ok(Self {
            authorization,
            api_version: api_version.clone(),
            timeout,
        })
    }

    fn wrap<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        // `grpc-timeout`: the server may stop working on it once we stopped waiting.
        request.set_timeout(self.timeout);
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        metadata.insert("x-api-version", self.api_version.clone());
        request
    }
}

/// A gRPC status as the same [`ScalekitError`] the REST status it maps to would give
/// (scalekit-wire.md §6.2), with `ErrorInfo.error_code` from `grpc-status-details-bin` in the
/// message.
pub(crate) fn classify(status: &tonic::Status, secret: Option<&str>) -> ScalekitError {
    use tonic::Code;
    let code = status.code();
    let message = || {
        let mut text = scrub(status.message(), secret);
        if let Some(error_code) = error_code(status.details()) {
            text.push_str(&format!(" [{}]", truncate(&scrub(&error_code, secret))));
        }
        truncate(&text)
    };
    let from_source = || std::error::Error::source(status).is_some();
    let http = match code {
        Code::Ok => return ScalekitError::Decode("gRPC status OK without a message".into()),
        // tonic's own verdict on an answer over our size cap, not the server's.
        Code::OutOfRange if status.message().contains("too large") => {
            return ScalekitError::Decode(format!("answer larger than {MAX_BODY} bytes"));
        }
        // No answer at all: refused, reset, TLS, DNS.
        Code::Unavailable | Code::Unknown | Code::Internal | Code::DataLoss if from_source() => {
            return ScalekitError::Connect(truncate(&with_causes(
                status.message().to_owned(),
                status,
            )));
        }
        Code::NotFound => 404,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::PermissionDenied => 403,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::Cancelled => 499,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unimplemented => 501,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    };
    if status.message().starts_with(NO_GRPC_STATUS) {
        // No gRPC status at all: tonic made this one up from the HTTP status of an answer that
        // is not gRPC (a proxy's, a WAF's or a wrong URL's). Its UNAUTHENTICATED (401) or
        // PERMISSION_DENIED (403) is no verdict on the key.
        return ScalekitError::Upstream { status: http };
    }
    ScalekitError::from_answer(
        http,
        Some(code as i32),
        || retry_after(&status.metadata().clone().into_headers()),
        message,
    )
}

/// How tonic's message starts when the answer had no `grpc-status` and it inferred the code
/// from the HTTP status (`tonic::status::infer_grpc_status`).
const NO_GRPC_STATUS: &str = "grpc-status header missing";

/// The first `ErrorInfo.error_code` in a `google.rpc.Status` (empty codes skipped).
pub(crate) fn error_code(details: &[u8]) -> Option<String> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|any| any.type_url == ERROR_INFO_TYPE)
        .filter_map(|any| proto::errdetails::ErrorInfo::decode(any.value.as_slice()).ok())
        .map(|info| info.error_code)
        .find(|code| !code.is_empty())
}
