//! [`RateLimit`], the service of a [`RateLimitLayer`](super::RateLimitLayer): one decision per
//! request, then the inner service. Its response future is the auth layer's
//! [`ResponseFuture`], which has the same three states (answered, inner service then fields,
//! boxed).

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{HeaderValue, Request};
use tower::Service;

use super::RatePolicy;
use super::cells::Outcome;
use crate::request::ResponseFuture;
use crate::request::layer::take_ready;
use crate::request::reject::retry_after_secs;
use crate::request::reject::{AuthRejection, RejectionKind};
use crate::request::state::AuthState;
use crate::token_info::TokenInfo;

use super::layer::{
    RATELIMIT_NAME, RATELIMIT_POLICY_NAME, RateLimitInfo, RateLimitLayer, missing_layer,
};

/// The service made by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) layer: RateLimitLayer,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// The response future of [`RateLimit`]: the auth layer's, which has the same states.
pub type RateLimitFuture<F, E> = ResponseFuture<F, E>;

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let Some(state) = request.extensions_mut().get_mut::<AuthState>() else {
            return ResponseFuture::ready(missing_layer(None).into_response());
        };
        let Some(auth) = state.auth.as_ref() else {
            // Anonymous, under an optional auth layer: not ours to limit.
            return ResponseFuture::inner(self.inner.call(request), None);
        };

        let Some((policy, outcome)) = self.layer.check_now(auth.info()) else {
            let auth = auth.clone();
            let inner = take_ready(&mut self.inner);
            let layer = self.layer.clone();
            return ResponseFuture::boxed(Box::pin(async move {
                let (policy, outcome) = layer.check(auth.info()).await;
                let settled = match request.extensions_mut().get_mut::<AuthState>() {
                    Some(state) => layer.answer(state, policy, outcome),
                    // `call` found it, and nothing takes it out meanwhile.
                    None => Err(Box::new(missing_layer(None).into_response())),
                };
                call_with_fields(inner, request, settled).await
            }));
        };
        match self.layer.answer(state, policy, outcome) {
            Ok(headers) => ResponseFuture::inner(self.inner.call(request), headers),
            Err(response) => ResponseFuture::ready(*response),
        }
    }
}

/// The fields a [`RateLimitLayer`] adds to an admitted request's answer, if any.
pub(crate) type SuccessHeaders = Option<LimitFields>;

/// `RateLimit`, and `RateLimit-Policy` when the layer sends it on successes (or on a 429).
pub(crate) struct LimitFields {
    state: HeaderValue,
    /// Boxed: rare on successes, and every response future carries room for this struct.
    policy: Option<Box<HeaderValue>>,
}

impl RateLimitLayer {
    /// Whether decisions go through Redis (and so must be awaited).
    pub(crate) fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.config.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// Spends one request of `info`'s bucket when that needs no waiting: in this instance's
    /// buckets, or from a token leased from Redis (local-first mode). `None`: the decision
    /// needs Redis ([`check`](Self::check)).
    #[inline]
    pub(crate) fn check_now(&self, info: &TokenInfo) -> Option<(RatePolicy, Outcome)> {
        if !self.is_shared() {
            return Some(self.check_local(info));
        }
        self.check_leased(info)
    }

    /// Spends one request of `info`'s bucket in this instance's buckets.
    fn check_local(&self, info: &TokenInfo) -> (RatePolicy, Outcome) {
        let bucket = self.resolve(info);
        (bucket.policy, self.cells.check(&bucket, bucket.policy))
    }

    /// A token leased from Redis, in local-first mode.
    #[cfg(feature = "redis")]
    fn check_leased(&self, info: &TokenInfo) -> Option<(RatePolicy, Outcome)> {
        let redis = self.config.redis.as_ref()?;
        if !redis.is_local_first() {
            return None;
        }
        let bucket = self.resolve(info);
        let key = redis.key(&self.config.name, bucket);
        Some((bucket.policy, redis.check_leased(&key, bucket.policy)?))
    }

    #[cfg(not(feature = "redis"))]
    fn check_leased(&self, _info: &TokenInfo) -> Option<(RatePolicy, Outcome)> {
        None
    }

    /// Spends one request of `info`'s bucket: on Redis when the layer shares its buckets and
    /// Redis answers in time, else locally. (Leased tokens are tried by
    /// [`check_now`](Self::check_now) first; a request that reaches this after an awaited
    /// validation makes one round trip, which also leases for the next ones.)
    pub(crate) async fn check(&self, info: &TokenInfo) -> (RatePolicy, Outcome) {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.config.redis {
            let bucket = self.resolve(info);
            let key = redis.key(&self.config.name, bucket);
            if let Some(outcome) = redis.check(&key, bucket.policy).await {
                return (bucket.policy, outcome);
            }
            return (bucket.policy, self.cells.check(&bucket, bucket.policy));
        }
        self.check_local(info)
    }

    /// For the standalone layer: admitted, the quota goes into the auth layer's `state` and
    /// the fields to add (if any) come back; refused, the 429 (rendered by the auth layer's
    /// renderer).
    pub(crate) fn answer(
        &self,
        state: &mut AuthState,
        policy: RatePolicy,
        outcome: Outcome,
    ) -> Result<SuccessHeaders, Refusal> {
        let mut quota = None;
        let headers = self.settle(&mut quota, policy, outcome, |kind| state.reject(kind))?;
        state.rate_limit = quota;
        Ok(headers)
    }

    /// Turns a decision into the quota for handlers (written into `quota`, in place) and the
    /// fields for the answer, or the 429 (through `reject`, which renders as the auth layer
    /// does). The refusal is boxed and the quota written where it lives: the admitted path,
    /// which every request takes, then moves one small value.
    pub(crate) fn settle(
        &self,
        quota: &mut Option<RateLimitInfo>,
        policy: RatePolicy,
        outcome: Outcome,
        reject: impl FnOnce(RejectionKind) -> AuthRejection,
    ) -> Result<SuccessHeaders, Refusal> {
        match outcome {
            Outcome::Allowed { remaining, reset } => {
                crate::telemetry::rate_limit("key", "allowed");
                *quota = Some(RateLimitInfo {
                    policy,
                    remaining,
                    reset_after: reset,
                });
                let config = &self.config;
                Ok(config.headers_on_success.then(|| LimitFields {
                    state: self.state_header(remaining, reset),
                    policy: config
                        .policy_on_success
                        .then(|| Box::new(self.policy_value(policy))),
                }))
            }
            Outcome::Limited { retry_after } => Err(self.refuse(policy, retry_after, reject)),
        }
    }

    /// The 429 for a refused request: the renderer's answer, with `Retry-After` (unless the
    /// renderer set its own) and both fields.
    #[cold]
    fn refuse(
        &self,
        policy: RatePolicy,
        retry_after: Duration,
        reject: impl FnOnce(RejectionKind) -> AuthRejection,
    ) -> Refusal {
        crate::telemetry::rate_limit("key", "limited");
        crate::telemetry::request(crate::telemetry::Outcome::RateLimited);
        let rejection = reject(RejectionKind::RateLimited { retry_after });
        let mut response = rejection.into_response();
        if !response.headers().contains_key(RETRY_AFTER) {
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
        }
        let fields = LimitFields {
            state: self.state_header(0, retry_after),
            policy: Some(Box::new(self.policy_value(policy))),
        };
        add_headers(&mut response, Some(fields));
        Box::new(response)
    }
}

/// A refused request's answer (a 429), boxed so the admitted path's values stay small.
pub(crate) type Refusal = Box<Response>;

/// After an awaited decision: calls `inner` for an admitted request and adds the limit's fields
/// to its answer; a refusal is the answer.
pub(crate) async fn call_with_fields<S, B>(
    mut inner: S,
    request: Request<B>,
    settled: Result<SuccessHeaders, Refusal>,
) -> Result<Response, S::Error>
where
    S: Service<Request<B>, Response = Response>,
{
    match settled {
        Ok(headers) => {
            let mut response = inner.call(request).await?;
            add_headers(&mut response, headers);
            Ok(response)
        }
        Err(response) => Ok(*response),
    }
}

/// Adds what [`RateLimitLayer::answer`] prepared to an admitted request's answer.
pub(crate) fn add_headers(response: &mut Response, headers: SuccessHeaders) {
    if let Some(LimitFields { state, policy }) = headers {
        let map = response.headers_mut();
        if let Some(policy) = policy {
            map.insert(RATELIMIT_POLICY_NAME, *policy);
        }
        map.insert(RATELIMIT_NAME, state);
    }
}
