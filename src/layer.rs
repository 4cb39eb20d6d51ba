//! [`ApiKeyLayer`] and [`ApiKeyService`]: parse, pre-check, validate, then call the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, Request};
use tower::Layer;
use tower::Service;

use crate::bearer::{BearerError, bearer_token};
use crate::reject::{DEFAULT_RETRY_AFTER, RejectionHook, Renderer};
use crate::{
    ApiKey, AuthRejection, Authenticated, KeyFormat, RejectionKind, ValidateError, Validator,
};

/// The realm used in challenges unless [`ApiKeyLayer::realm`] sets another.
pub const DEFAULT_REALM: &str = "api";

/// Whether requests without credentials may reach the inner service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Required,
    Optional,
}

/// A tower [`Layer`] that authenticates every request by its bearer API key.
///
/// For each request it reads `Authorization: Bearer <key>` (strictly, RFC 6750), rejects locally
/// what cannot be a key ([`KeyFormat`]), asks the [`Validator`], and on success inserts an
/// [`Authenticated`] extension that the extractors ([`TokenInfo`](crate::TokenInfo),
/// [`OrgScope`](crate::OrgScope), [`UserScope`](crate::UserScope), [`Claims`](crate::Claims))
/// read. Failures never reach the inner service; see [`RejectionKind`] for the statuses.
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_api_key::{ApiKeyLayer, InMemoryTokens, OrgScope};
///
/// async fn whoami(OrgScope { organization_id, .. }: OrgScope) -> String {
///     organization_id
/// }
///
/// let tokens = InMemoryTokens::new();
/// let app: Router = Router::new()
///     .route("/whoami", get(whoami))
///     .layer(ApiKeyLayer::new(tokens).realm("my-api"));
/// ```
pub struct ApiKeyLayer<V> {
    validator: Arc<V>,
    shared: Arc<Shared>,
}

/// The configuration every service of one layer shares.
struct Shared {
    renderer: Arc<Renderer>,
    mode: Mode,
    strip_authorization: bool,
    format: KeyFormat,
}

impl<V> Clone for ApiKeyLayer<V> {
    fn clone(&self) -> Self {
        Self {
            validator: self.validator.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<V> fmt::Debug for ApiKeyLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("realm", &self.shared.renderer.realm())
            .field("mode", &self.shared.mode)
            .field("strip_authorization", &self.shared.strip_authorization)
            .field("format", &self.shared.format)
            .finish_non_exhaustive()
    }
}

impl<V: Validator> ApiKeyLayer<V> {
    /// A layer that requires a valid key on every request, with Scalekit's key format
    /// ([`KeyFormat::strict`]), realm [`DEFAULT_REALM`], and the `Authorization` header removed
    /// before the inner service sees it.
    pub fn new(validator: V) -> Self {
        Self::from_arc(Arc::new(validator))
    }

    /// Like [`ApiKeyLayer::new`], for a validator that is shared elsewhere (to revoke keys, say).
    pub fn from_arc(validator: Arc<V>) -> Self {
        Self {
            validator,
            shared: Arc::new(Shared {
                renderer: Arc::new(Renderer::new(DEFAULT_REALM, None)),
                mode: Mode::Required,
                strip_authorization: true,
                format: KeyFormat::strict(),
            }),
        }
    }

    /// The validator.
    pub fn validator(&self) -> &Arc<V> {
        &self.validator
    }

    /// Sets the realm of the `WWW-Authenticate` challenge. Characters that cannot appear in a
    /// quoted-string (`"`, `\`, controls, non-ASCII) are dropped.
    pub fn realm(self, realm: &str) -> Self {
        let hook = self.shared.renderer_hook();
        self.with(|shared| shared.renderer = Arc::new(Renderer::new(realm, hook)))
    }

    /// Optional authentication: requests without credentials reach the inner service with no
    /// [`Authenticated`] extension (the `Option<_>` extractors then give `None`). A request that
    /// presents a bad key is still rejected.
    pub fn optional(self) -> Self {
        self.with(|shared| shared.mode = Mode::Optional)
    }

    /// Whether to remove the `Authorization` header before calling the inner service (default
    /// `true`, so handlers and their logs never see the key).
    pub fn strip_authorization(self, strip: bool) -> Self {
        self.with(|shared| shared.strip_authorization = strip)
    }

    /// Sets the local key rules (default [`KeyFormat::strict`], Scalekit's shape).
    pub fn key_format(self, format: KeyFormat) -> Self {
        self.with(|shared| shared.format = format)
    }

    /// Renders every rejection (the layer's and the extractors') with `hook` instead of the
    /// default JSON body; [`AuthRejection::default_response`] gives the default to build on.
    ///
    /// ```
    /// use axum::response::IntoResponse;
    /// use axum_api_key::{ApiKeyLayer, InMemoryTokens};
    ///
    /// let layer = ApiKeyLayer::new(InMemoryTokens::new()).on_rejection(|rejection| {
    ///     let mut response = rejection.default_response();
    ///     response.headers_mut().insert("x-auth-error", rejection.kind().error_code().parse().unwrap());
    ///     response
    /// });
    /// ```
    pub fn on_rejection<F>(self, hook: F) -> Self
    where
        F: Fn(&AuthRejection) -> Response + Send + Sync + 'static,
    {
        let hook: RejectionHook = Arc::new(hook);
        let realm = self.shared.renderer.realm().to_owned();
        self.with(|shared| shared.renderer = Arc::new(Renderer::new(&realm, Some(hook))))
    }

    fn with(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            renderer: self.shared.renderer.clone(),
            mode: self.shared.mode,
            strip_authorization: self.shared.strip_authorization,
            format: self.shared.format,
        };
        change(&mut shared);
        self.shared = Arc::new(shared);
        self
    }

    /// Authenticates a request's headers exactly as the layer does, for use outside a router
    /// (a WebSocket upgrade, a gRPC interceptor, a job queue). `Ok(None)` means no credentials
    /// in optional mode.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, AuthRejection> {
        match self.shared.parse(headers) {
            Ok(Some(key)) => self.shared.validate(&*self.validator, &key).await.map(Some),
            Ok(None) => Ok(None),
            Err(rejection) => Err(rejection),
        }
    }

    /// Validates a bare key (no `Bearer` prefix) with the layer's local checks and validator.
    pub async fn validate_key(&self, key: &str) -> Result<Authenticated, AuthRejection> {
        let key = self.shared.check_key(key)?;
        self.shared.validate(&*self.validator, &key).await
    }
}

impl Shared {
    fn renderer_hook(&self) -> Option<RejectionHook> {
        self.renderer.hook().cloned()
    }

    fn reject(&self, kind: RejectionKind) -> AuthRejection {
        AuthRejection::new(kind, self.renderer.clone())
    }

    /// Reads and checks the key. `Ok(None)`: no credentials, and the layer is optional.
    fn parse(&self, headers: &HeaderMap) -> Result<Option<ApiKey>, AuthRejection> {
        match bearer_token(headers, self.format.max_len()) {
            Ok(token) => self.check_key(token).map(Some),
            Err(BearerError::Missing) if self.mode == Mode::Optional => Ok(None),
            Err(BearerError::Missing) => Err(self.reject(RejectionKind::MissingCredentials)),
            Err(BearerError::Multiple) => Err(self.reject(RejectionKind::InvalidRequest(
                "exactly one Authorization header is allowed",
            ))),
            Err(BearerError::Empty) => Err(self.reject(RejectionKind::InvalidRequest(
                "the Bearer scheme needs a token after it",
            ))),
            Err(BearerError::Malformed) => {
                tracing::debug!(reason = "malformed_bearer", "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    fn check_key(&self, token: &str) -> Result<ApiKey, AuthRejection> {
        match self.format.check(token) {
            Ok(()) => Ok(ApiKey::new(token)),
            Err(reason) => {
                tracing::debug!(reason = reason.as_str(), "API key rejected locally");
                Err(self.reject(RejectionKind::InvalidToken))
            }
        }
    }

    async fn validate<V: Validator + ?Sized>(
        &self,
        validator: &V,
        key: &ApiKey,
    ) -> Result<Authenticated, AuthRejection> {
        let answer = match validator.validate_now(key) {
            Some(answer) => answer,
            None => validator.validate(key).await,
        };
        self.verdict(answer, key)
    }

    /// Turns the validator's answer into the layer's, logging refusals by fingerprint.
    fn verdict(
        &self,
        answer: Result<Authenticated, ValidateError>,
        key: &ApiKey,
    ) -> Result<Authenticated, AuthRejection> {
        match answer {
            Ok(auth) => Ok(auth),
            Err(ValidateError::Invalid(reason)) => {
                tracing::debug!(fingerprint = %key.fingerprint(), %reason, "API key refused");
                Err(self.reject(RejectionKind::InvalidToken))
            }
            Err(ValidateError::Unavailable {
                message,
                retry_after,
            }) => {
                tracing::warn!(fingerprint = %key.fingerprint(), %message, "API key could not be validated");
                Err(self.reject(RejectionKind::Unavailable {
                    retry_after: retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                }))
            }
        }
    }
}

impl<S, V> Layer<S> for ApiKeyLayer<V> {
    type Service = ApiKeyService<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            validator: self.validator.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`ApiKeyLayer`].
pub struct ApiKeyService<S, V> {
    inner: S,
    validator: Arc<V>,
    shared: Arc<Shared>,
}

impl<S: Clone, V> Clone for ApiKeyService<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            validator: self.validator.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, V> fmt::Debug for ApiKeyService<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the layer leaves in the request extensions for the extractors: the outcome, and how to
/// render their rejections the way the layer would.
#[derive(Clone)]
pub(crate) struct AuthState {
    pub(crate) auth: Option<Authenticated>,
    pub(crate) renderer: Arc<Renderer>,
}

impl AuthState {
    pub(crate) fn reject(&self, kind: RejectionKind) -> AuthRejection {
        AuthRejection::new(kind, self.renderer.clone())
    }
}

impl Authenticated {
    /// The authentication the layer left in `extensions`, for tower middleware placed inside
    /// the layer (a rate limiter keyed by `token_id`, say). Handlers use the extractors.
    pub fn from_extensions(extensions: &Extensions) -> Option<&Authenticated> {
        extensions
            .get::<AuthState>()
            .and_then(|state| state.auth.as_ref())
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, V, B> Service<Request<B>> for ApiKeyService<S, V>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    V: Validator,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's alone: the validator's health is a per-request
        // matter (503), never a stalled service.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let key = match self.shared.parse(request.headers()) {
            Ok(Some(key)) => key,
            Ok(None) => {
                request.extensions_mut().insert(AuthState {
                    auth: None,
                    renderer: self.shared.renderer.clone(),
                });
                return ResponseFuture::inner(self.inner.call(request));
            }
            Err(rejection) => {
                return ResponseFuture::ready(rejection.into_response());
            }
        };
        if self.shared.strip_authorization {
            request.headers_mut().remove(AUTHORIZATION);
        }
        // The common case (a cache hit, an in-memory store) is answered on the spot: no boxed
        // future, no clone of the inner service.
        if let Some(answer) = self.validator.validate_now(&key) {
            return match self.shared.verdict(answer, &key) {
                Ok(auth) => {
                    drop(key);
                    request.extensions_mut().insert(AuthState {
                        auth: Some(auth),
                        renderer: self.shared.renderer.clone(),
                    });
                    ResponseFuture::inner(self.inner.call(request))
                }
                Err(rejection) => ResponseFuture::ready(rejection.into_response()),
            };
        }
        // The ready service is the one we were handed; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let validator = self.validator.clone();
        let shared = self.shared.clone();
        ResponseFuture::validating(Box::pin(async move {
            let answer = validator.validate(&key).await;
            match shared.verdict(answer, &key) {
                Ok(auth) => {
                    drop(key);
                    request.extensions_mut().insert(AuthState {
                        auth: Some(auth),
                        renderer: shared.renderer.clone(),
                    });
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        }))
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ApiKeyService`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        // Rejected before any validation.
        Ready { response: Option<Response> },
        // No credentials in optional mode: straight to the inner service.
        Inner { #[pin] future: F },
        // Validating, then calling the inner service.
        Validating { future: BoxFuture<Result<Response, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn ready(response: Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }
    fn validating(future: BoxFuture<Result<Response, E>>) -> Self {
        Self {
            state: State::Validating { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => {
                // Polled again after completion: answer with a 500 rather than panic.
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                })))
            }
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Validating { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
