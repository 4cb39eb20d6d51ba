//! Turning an authentication failure into an HTTP response (RFC 6750 §3, RFC 9110 §15).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

/// The realm used in challenges unless [`ApiKeyLayer::realm`](crate::ApiKeyLayer::realm) sets
/// another.
pub const DEFAULT_REALM: &str = "api";

/// What went wrong, independent of how it is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials (no `Authorization` header or another scheme): 401, challenge without error.
    MissingCredentials,
    /// A malformed request (two `Authorization` headers, `Bearer` with no token): 400
    /// `invalid_request`.
    InvalidRequest(&'static str),
    /// The key is malformed, unknown, revoked or expired: 401 `invalid_token`. One body for every
    /// reason, so a client cannot tell a revoked key from one that never existed.
    InvalidToken,
    /// The key is valid but lacks what the route needs: 403 `insufficient_scope`.
    InsufficientScope(Cow<'static, str>),
    /// The validator cannot tell now: 503 with `Retry-After`.
    Unavailable {
        /// The hint sent in `Retry-After` (whole seconds, at least 1).
        retry_after: Duration,
    },
    /// An extractor ran on a route that the [`ApiKeyLayer`](crate::ApiKeyLayer) does not cover:
    /// a programming error, answered with 500.
    MissingLayer(&'static str),
    /// Over a rate limit (or throttled after refused keys): 429 with `Retry-After`.
    RateLimited {
        /// The hint sent in `Retry-After` (whole seconds, rounded up, at least 1).
        retry_after: Duration,
    },
}

impl RejectionKind {
    /// The HTTP status for this kind.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingLayer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `error` code of the JSON body (and of the challenge, where RFC 6750 defines one).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::MissingLayer(_) => "server_error",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// The human description of the JSON body.
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            Self::MissingCredentials => {
                "an API key is required: send `Authorization: Bearer <key>`".into()
            }
            Self::InvalidRequest(why) => (*why).into(),
            Self::InvalidToken => "the API key is invalid, revoked or expired".into(),
            Self::InsufficientScope(why) => why.clone(),
            Self::Unavailable { .. } => {
                "the API key cannot be validated right now; retry later".into()
            }
            Self::MissingLayer(extractor) => format!(
                "{extractor} was used on a route that ApiKeyLayer does not cover: add \
                 `.layer(ApiKeyLayer::new(..))` to the router (a server configuration error)"
            )
            .into(),
            Self::RateLimited { .. } => {
                "too many requests; retry after the time in Retry-After".into()
            }
        }
    }
}

/// A rejection, ready to be rendered: the response type of the layer's failures and the
/// rejection type of every extractor.
///
/// By default it renders as a JSON body `{"error": ..., "error_description": ...}` with the
/// RFC 6750 `WWW-Authenticate` challenge; [`ApiKeyLayer::on_rejection`](crate::ApiKeyLayer::on_rejection)
/// replaces that rendering everywhere, extractors included.
#[derive(Clone)]
pub struct AuthRejection {
    kind: RejectionKind,
    renderer: Arc<Renderer>,
}

impl AuthRejection {
    pub(crate) fn new(kind: RejectionKind, renderer: Arc<Renderer>) -> Self {
        Self { kind, renderer }
    }

    /// A rejection rendered with the default realm: for extractors that run without the layer.
    pub(crate) fn without_layer(kind: RejectionKind) -> Self {
        Self::new(kind, DEFAULT_RENDERER.clone())
    }

    /// What went wrong.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The realm of the challenge.
    pub fn realm(&self) -> &str {
        &self.renderer.realm
    }

    /// The crate's own rendering, whatever hook is installed: for hooks that only add to it.
    pub fn default_response(&self) -> Response {
        self.renderer.render_default(&self.kind)
    }
}

impl fmt::Debug for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRejection")
            .field("kind", &self.kind)
            .field("realm", &self.realm())
            .finish()
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.error_code(), self.kind.description())
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        // The layer counts its own verdicts; a 403 comes from an extractor or guard, after
        // the layer accepted the key, and is counted when it is answered.
        if matches!(self.kind, RejectionKind::InsufficientScope(_)) {
            crate::telemetry::request(crate::telemetry::Outcome::Forbidden);
        }
        match &self.renderer.hook {
            Some(hook) => hook(&self),
            None => self.renderer.render_default(&self.kind),
        }
    }
}

/// A user hook that renders rejections.
pub(crate) type RejectionHook = Arc<dyn Fn(&AuthRejection) -> Response + Send + Sync>;

/// Renders rejections for one realm; the hot answers are prepared once.
pub(crate) struct Renderer {
    realm: Box<str>,
    hook: Option<RejectionHook>,
    missing_challenge: HeaderValue,
    missing_body: Bytes,
    invalid_token_challenge: HeaderValue,
    invalid_token_body: Bytes,
}

static DEFAULT_RENDERER: LazyLock<Arc<Renderer>> =
    LazyLock::new(|| Arc::new(Renderer::new(DEFAULT_REALM, None)));

/// The fallback `Retry-After` when the validator gives no hint.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(2);

impl Renderer {
    /// The shared default (realm `api`, no hook).
    pub(crate) fn default_shared() -> Arc<Renderer> {
        DEFAULT_RENDERER.clone()
    }

    /// Whether `renderer` is the shared default (not merely equal to it).
    pub(crate) fn is_default(renderer: &Arc<Renderer>) -> bool {
        Arc::ptr_eq(renderer, &DEFAULT_RENDERER)
    }

    pub(crate) fn new(realm: &str, hook: Option<RejectionHook>) -> Self {
        let realm = sanitize_realm(realm);
        let missing = RejectionKind::MissingCredentials;
        let invalid = RejectionKind::InvalidToken;
        Self {
            missing_challenge: challenge(&realm, &missing),
            missing_body: json_body(&missing),
            invalid_token_challenge: challenge(&realm, &invalid),
            invalid_token_body: json_body(&invalid),
            realm: realm.into_boxed_str(),
            hook,
        }
    }

    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    pub(crate) fn hook(&self) -> Option<&RejectionHook> {
        self.hook.as_ref()
    }

    fn render_default(&self, kind: &RejectionKind) -> Response {
        let (challenge, body) = match kind {
            RejectionKind::MissingCredentials => (
                Some(self.missing_challenge.clone()),
                self.missing_body.clone(),
            ),
            RejectionKind::InvalidToken => (
                Some(self.invalid_token_challenge.clone()),
                self.invalid_token_body.clone(),
            ),
            RejectionKind::InvalidRequest(_) | RejectionKind::InsufficientScope(_) => {
                (Some(challenge(&self.realm, kind)), json_body(kind))
            }
            RejectionKind::Unavailable { .. }
            | RejectionKind::MissingLayer(_)
            | RejectionKind::RateLimited { .. } => (None, json_body(kind)),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = kind.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Auth answers depend on the credentials: never let a shared cache keep them.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        match kind {
            RejectionKind::Unavailable { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            RejectionKind::RateLimited { retry_after } => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds for `Retry-After` on a 429: rounded up (a client that waits exactly this long
/// is admitted), at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Builds the `WWW-Authenticate` value (RFC 6750 §3).
fn challenge(realm: &str, kind: &RejectionKind) -> HeaderValue {
    let mut value = format!("Bearer realm=\"{realm}\"");
    if !matches!(kind, RejectionKind::MissingCredentials) {
        let description = challenge_description(&kind.description());
        value.push_str(&format!(
            ", error=\"{}\", error_description=\"{description}\"",
            kind.error_code()
        ));
    }
    // Every piece is printable ASCII (the realm and the description are sanitized), so this
    // cannot fail; the fallback keeps it panic-free all the same.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// An `error_description` as RFC 6750 §3 allows it (`%x20-21 / %x23-5B / %x5D-7E`): quotes and
/// backslashes become `'`, anything else outside printable ASCII (a route's own description in
/// another script, a control character) becomes `?`. The JSON body keeps the text as it is.
fn challenge_description(description: &str) -> String {
    description
        .chars()
        .map(|c| match c {
            '"' | '\\' | '`' => '\'',
            ' ' => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect()
}

fn json_body(kind: &RejectionKind) -> Bytes {
    let body = serde_json::json!({
        "error": kind.error_code(),
        "error_description": kind.description(),
    });
    Bytes::from(body.to_string())
}

/// Keeps the realm a valid quoted-string: printable ASCII with no `"` or `\`.
fn sanitize_realm(realm: &str) -> String {
    let cleaned: String = realm
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    if cleaned.is_empty() {
        DEFAULT_REALM.to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_is_sanitized() {
        let renderer = Renderer::new("my \"realm\"\n\\x", None);
        assert_eq!(renderer.realm(), "my realmx");
        assert_eq!(Renderer::new("\u{e9}", None).realm(), DEFAULT_REALM);
    }

    #[test]
    fn a_description_outside_ascii_keeps_the_challenge_whole() {
        let renderer = Renderer::new("api", None);
        let kind = RejectionKind::InsufficientScope("réservé aux \"admins\"\n".into());
        let response = renderer.render_default(&kind);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            challenge,
            "Bearer realm=\"api\", error=\"insufficient_scope\", \
             error_description=\"r?serv? aux 'admins'?\""
        );
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let renderer = Renderer::new("api", None);
        let response = renderer.render_default(&RejectionKind::InvalidToken);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"api\", error=\"invalid_token\""));
    }
}
