//! [`ApiKeyLayer`] and [`ApiKeyService`]: tower's shape (layer, service, named response
//! future) around the [`Authenticator`] pipeline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request};
use tower::Layer;
use tower::Service;

use super::authenticator::{Authenticator, Mode, Step};
use super::key::KeyFormat;
use super::reject::{AuthRejection, RejectionHook, Renderer};
use super::state::AuthState;
#[cfg(feature = "ratelimit")]
use crate::ratelimit::FailedKeyThrottle;
use crate::token_info::Authenticated;
use crate::validator::contract::Validator;

/// A tower [`Layer`] that authenticates every request by its bearer API key.
///
/// For each request it reads `Authorization: Bearer <key>` (strictly, RFC 6750), rejects locally
/// what cannot be a key ([`KeyFormat`]), asks the [`Validator`], and on success inserts an
/// [`Authenticated`] extension that the extractors ([`TokenInfo`](crate::TokenInfo),
/// [`OrgScope`](crate::OrgScope), [`UserScope`](crate::UserScope), [`Claims`](crate::Claims))
/// read. Failures never reach the inner service; see
/// [`RejectionKind`](super::RejectionKind) for the statuses.
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
    shared: Arc<Authenticator>,
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
    /// A layer that requires a valid key on every request, with the validator's key format
    /// ([`Validator::key_format`]), realm [`DEFAULT_REALM`](super::DEFAULT_REALM), and the `Authorization` header
    /// removed before the inner service sees it.
    pub fn new(validator: V) -> Self {
        Self::from_arc(Arc::new(validator))
    }

    /// Like [`ApiKeyLayer::new`], for a validator that is shared elsewhere (to revoke keys, say).
    pub fn from_arc(validator: Arc<V>) -> Self {
        Self {
            validator: validator.clone(),
            shared: Arc::new(Authenticator {
                renderer: Renderer::default_shared(),
                mode: Mode::Required,
                strip_authorization: true,
                format: validator.key_format(),
                #[cfg(feature = "ratelimit")]
                throttle: Some(Arc::new(FailedKeyThrottle::default())),
                #[cfg(feature = "ratelimit")]
                limits: None,
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
        let hook = self.shared.renderer.hook().cloned();
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

    /// Overrides the local key rules (default: the validator's
    /// [`key_format`](Validator::key_format)).
    pub fn key_format(self, format: KeyFormat) -> Self {
        self.with(|shared| shared.format = format)
    }

    /// Sets the failed-key throttle (feature `ratelimit`). On by default, at
    /// [`FailedKeyThrottle::default`] (10 refused keys per minute per client, clients by their
    /// peer address: serve with `into_make_service_with_connect_info::<SocketAddr>()`, or
    /// give the throttle another [`ClientSource`](crate::ratelimit::ClientSource) behind a
    /// proxy). A client over its allowance gets 429 with `Retry-After` for keys that would need
    /// an upstream call, and no call is made; keys answered on the spot (cached as valid, or
    /// by an in-memory store) are not affected, and neither are other clients.
    #[cfg(feature = "ratelimit")]
    pub fn failed_key_throttle(self, throttle: FailedKeyThrottle) -> Self {
        let throttle = Arc::new(throttle);
        self.with(|shared| shared.throttle = Some(throttle))
    }

    /// Turns the failed-key throttle off (feature `ratelimit`).
    #[cfg(feature = "ratelimit")]
    pub fn without_failed_key_throttle(self) -> Self {
        self.with(|shared| shared.throttle = None)
    }

    /// Limits every authenticated request by `limits` (feature `ratelimit`), decided in this
    /// layer right after authentication: the same decisions, answers and
    /// [`RateLimitInfo`](crate::ratelimit::RateLimitInfo) as a
    /// [`RateLimitLayer`](crate::ratelimit::RateLimitLayer) placed inside it, without a service
    /// and a future of its own (the cheaper form when one policy covers every route of the
    /// layer; use separate `RateLimitLayer`s for per-route-group policies). Requests without
    /// credentials, under [`optional`](Self::optional), are not limited.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use axum_api_key::ratelimit::RateLimitLayer;
    /// use axum_api_key::{ApiKeyLayer, InMemoryTokens};
    ///
    /// let app: Router = Router::new()
    ///     .route("/search", get(|| async { "results" }))
    ///     .layer(ApiKeyLayer::new(InMemoryTokens::new())
    ///         .rate_limit(RateLimitLayer::new("100/min".parse().unwrap())));
    /// ```
    #[cfg(feature = "ratelimit")]
    pub fn rate_limit(self, limits: crate::ratelimit::RateLimitLayer) -> Self {
        self.with(|shared| shared.limits = Some(limits))
    }

    /// The failed-key throttle, for its [`stats`](FailedKeyThrottle::stats).
    #[cfg(feature = "ratelimit")]
    pub fn failed_keys(&self) -> Option<&FailedKeyThrottle> {
        self.shared.throttle.as_deref()
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

    fn with(mut self, change: impl FnOnce(&mut Authenticator)) -> Self {
        let mut shared = Authenticator::clone(&self.shared);
        change(&mut shared);
        self.shared = Arc::new(shared);
        self
    }

    /// Authenticates a request's headers as the layer does, for use outside a router (a
    /// WebSocket upgrade, a gRPC interceptor, a job queue). `Ok(None)` means no credentials in
    /// optional mode. With headers alone the failed-key throttle knows no client (unless its
    /// [`ClientSource`](crate::ratelimit::ClientSource) reads one from the headers) and is
    /// skipped: inside a handler, prefer [`authenticate_parts`](Self::authenticate_parts).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, AuthRejection> {
        self.authenticate_with(headers, &http::Extensions::new())
            .await
    }

    /// Authenticates a request exactly as the layer does, throttle included: the extensions
    /// carry the client (`ConnectInfo`) the failed-key throttle counts refusals by.
    ///
    /// ```
    /// use axum::http::request::Parts;
    /// use axum::response::{IntoResponse, Response};
    /// use axum_api_key::{ApiKeyLayer, InMemoryTokens};
    ///
    /// async fn upgrade(layer: ApiKeyLayer<InMemoryTokens>, parts: Parts) -> Response {
    ///     match layer.authenticate_parts(&parts).await {
    ///         Ok(Some(auth)) => format!("hello {}", auth.info().organization_id()).into_response(),
    ///         Ok(None) => "anonymous".into_response(),
    ///         Err(rejection) => rejection.into_response(),
    ///     }
    /// }
    /// ```
    pub async fn authenticate_parts(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<Authenticated>, AuthRejection> {
        self.authenticate_with(&parts.headers, &parts.extensions)
            .await
    }

    async fn authenticate_with(
        &self,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Option<Authenticated>, AuthRejection> {
        let step = self.shared.begin(&*self.validator, headers, extensions);
        self.shared.run(&*self.validator, step).await
    }

    /// Validates a bare key (no `Bearer` prefix) with the layer's local checks and validator.
    pub async fn validate_key(&self, key: &str) -> Result<Authenticated, AuthRejection> {
        let step = self.shared.begin_key(&*self.validator, key);
        match self.shared.run(&*self.validator, step).await {
            Ok(Some(auth)) => Ok(auth),
            // `begin_key` never answers "anonymous"; if it did, no key means no access.
            Ok(None) => Err(AuthRejection::new(
                super::RejectionKind::InvalidToken,
                self.shared.renderer.clone(),
            )),
            Err(rejection) => Err(rejection),
        }
    }
}

impl<S, V> Layer<S> for ApiKeyLayer<V> {
    type Service = ApiKeyService<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            core: Arc::new(ServiceCore {
                validator: self.validator.clone(),
                shared: Authenticator::clone(&self.shared),
            }),
        }
    }
}

/// The service made by [`ApiKeyLayer`].
pub struct ApiKeyService<S, V> {
    inner: S,
    core: Arc<ServiceCore<V>>,
}

/// What every clone of a service shares, behind one `Arc`: axum clones the route's service
/// for each request, so this is one reference count to bump instead of two.
struct ServiceCore<V> {
    validator: Arc<V>,
    shared: Authenticator,
}

impl<S, V> ApiKeyService<S, V> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The validator.
    pub fn validator(&self) -> &Arc<V> {
        &self.core.validator
    }
}

impl<S: Clone, V> Clone for ApiKeyService<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
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
        let core = &*self.core;
        let step = core
            .shared
            .begin(&*core.validator, request.headers(), request.extensions());
        let (key, ticket) = match step {
            Step::Anonymous => {
                let state = core.shared.state(None);
                request.extensions_mut().insert(state);
                return ResponseFuture::inner(self.inner.call(request), None);
            }
            Step::Decided(Err(rejection)) => {
                return ResponseFuture::ready(rejection.into_response());
            }
            Step::Decided(Ok(auth)) => return self.let_in(request, auth),
            Step::Validate(key, ticket) => (key, ticket),
        };
        let inner = take_ready(&mut self.inner);
        let core = self.core.clone();
        ResponseFuture::boxed(Box::pin(async move {
            match core.shared.finish(&*core.validator, key, ticket).await {
                Ok(auth) => core.shared.let_in_awaited(request, auth, inner).await,
                Err(rejection) => Ok(rejection.into_response()),
            }
        }))
    }
}

impl<S, V> ApiKeyService<S, V> {
    /// Lets in a request authenticated on the spot: the layer's own limit, if any, decides
    /// first (on the spot for local buckets and leased tokens, in a boxed future when Redis
    /// must answer).
    fn let_in<B>(
        &mut self,
        mut request: Request<B>,
        auth: Authenticated,
    ) -> ResponseFuture<S::Future, S::Error>
    where
        S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        V: Validator,
        B: Send + 'static,
    {
        let shared = &self.core.shared;
        #[cfg(feature = "ratelimit")]
        if let Some(limits) = &shared.limits {
            let Some((policy, outcome)) = limits.check_now(auth.info()) else {
                let inner = take_ready(&mut self.inner);
                let core = self.core.clone();
                return ResponseFuture::boxed(Box::pin(async move {
                    core.shared.let_in_awaited(request, auth, inner).await
                }));
            };
            return match shared.admit_limited(limits, &mut request, auth, policy, outcome) {
                Ok(headers) => ResponseFuture::inner(self.inner.call(request), headers),
                Err(response) => ResponseFuture::ready(*response),
            };
        }
        shared.admit(&mut request, auth);
        ResponseFuture::inner(self.inner.call(request), None)
    }
}

/// The ready service a response future takes along, leaving a fresh clone in its place (the
/// one `poll_ready` was called on is the one to call).
pub(crate) fn take_ready<S: Clone>(ready: &mut S) -> S {
    let clone = ready.clone();
    std::mem::replace(ready, clone)
}

impl Authenticator {
    /// Lets an authenticated request in: the key leaves the headers (unless configured
    /// otherwise) and the outcome enters the extensions.
    fn admit<B>(&self, request: &mut Request<B>, auth: Authenticated) {
        self.admit_state(request, self.state(Some(auth)));
    }

    /// [`admit`](Self::admit) with the state already made.
    fn admit_state<B>(&self, request: &mut Request<B>, state: AuthState) {
        if self.strip_authorization {
            request.headers_mut().remove(AUTHORIZATION);
        }
        request.extensions_mut().insert(state);
    }

    /// Lets in a request authenticated on an asynchronous path: the layer's own limit, if any,
    /// decides first (on Redis when it shares its buckets), then the inner service.
    async fn let_in_awaited<S, B>(
        &self,
        mut request: Request<B>,
        auth: Authenticated,
        mut inner: S,
    ) -> Result<Response, S::Error>
    where
        S: Service<Request<B>, Response = Response>,
    {
        #[cfg(feature = "ratelimit")]
        if let Some(limits) = &self.limits {
            let (policy, outcome) = limits.check(auth.info()).await;
            let settled = self.admit_limited(limits, &mut request, auth, policy, outcome);
            return crate::ratelimit::call_with_fields(inner, request, settled).await;
        }
        self.admit(&mut request, auth);
        inner.call(request).await
    }

    /// [`admit`](Self::admit) under the layer's own limit, given its decision: admitted, the
    /// state carries the quota (one extension insert, as without a limit) and the answer's
    /// fields come back; refused, the 429, rendered as the layer renders.
    #[cfg(feature = "ratelimit")]
    fn admit_limited<B>(
        &self,
        limits: &crate::ratelimit::RateLimitLayer,
        request: &mut Request<B>,
        auth: Authenticated,
        policy: crate::ratelimit::RatePolicy,
        outcome: crate::ratelimit::Outcome,
    ) -> Result<SuccessHeaders, crate::ratelimit::Refusal> {
        let mut state = self.state(Some(auth));
        let headers = limits.settle(&mut state.rate_limit, policy, outcome, |kind| {
            self.reject(kind)
        })?;
        self.admit_state(request, state);
        Ok(headers)
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ApiKeyService`] and of
    /// [`RateLimit`](crate::ratelimit::RateLimit).
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, E> {
        // Answered on the spot (a rejection).
        Ready { response: Option<Response> },
        // Let in (or no credentials in optional mode): the inner service, then the rate-limit
        // fields, if a limit prepared any.
        Inner { #[pin] future: F, headers: SuccessHeaders },
        // Awaiting a validation or a shared limit's decision, then the inner service.
        Boxed { future: BoxFuture<Result<Response, E>> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(crate) fn ready(response: Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
    pub(crate) fn inner(future: F, headers: SuccessHeaders) -> Self {
        Self {
            state: State::Inner { future, headers },
        }
    }
    pub(crate) fn boxed(future: BoxFuture<Result<Response, E>>) -> Self {
        Self {
            state: State::Boxed { future },
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
            StateProj::Inner { future, headers } => match future.poll(cx) {
                Poll::Ready(Ok(mut response)) => {
                    add_success_headers(&mut response, headers.take());
                    Poll::Ready(Ok(response))
                }
                other => other,
            },
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

/// What a limit of the layer's own adds to an admitted answer (nothing without the feature).
#[cfg(feature = "ratelimit")]
type SuccessHeaders = crate::ratelimit::SuccessHeaders;
#[cfg(not(feature = "ratelimit"))]
type SuccessHeaders = Option<std::convert::Infallible>;

#[cfg(feature = "ratelimit")]
fn add_success_headers(response: &mut Response, headers: SuccessHeaders) {
    crate::ratelimit::add_headers(response, headers);
}

#[cfg(not(feature = "ratelimit"))]
fn add_success_headers(_response: &mut Response, _headers: SuccessHeaders) {}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
