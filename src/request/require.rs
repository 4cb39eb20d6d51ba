//! [`RequireLayer`]: a guard for route groups, checked after [`ApiKeyLayer`](crate::ApiKeyLayer).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::Request;
use tower::Layer;
use tower::Service;

use super::reject::{AuthRejection, RejectionKind};
use super::state::AuthState;
use crate::token_info::TokenInfo;

type Predicate = Arc<dyn Fn(&TokenInfo) -> bool + Send + Sync>;

/// Lets a request through only if its key satisfies a condition; otherwise 403
/// `insufficient_scope` (401 for an anonymous request under an optional layer, 500 if the
/// [`ApiKeyLayer`](crate::ApiKeyLayer) is missing).
///
/// Put it inside the auth layer, with `route_layer` so unmatched routes still give 404:
///
/// ```
/// use axum::{routing::post, Router};
/// use axum_api_key::{ApiKeyLayer, InMemoryTokens, RequireLayer};
///
/// let app: Router = Router::new()
///     .route("/deploy", post(|| async { "deploying" }))
///     .route_layer(RequireLayer::claim("environment", "production"))
///     .layer(ApiKeyLayer::new(InMemoryTokens::new()));
/// ```
#[derive(Clone)]
pub struct RequireLayer {
    predicate: Predicate,
    description: Cow<'static, str>,
}

impl RequireLayer {
    /// Requires `predicate`; `description` is the `error_description` of the 403.
    pub fn new<F>(description: impl Into<Cow<'static, str>>, predicate: F) -> Self
    where
        F: Fn(&TokenInfo) -> bool + Send + Sync + 'static,
    {
        Self {
            predicate: Arc::new(predicate),
            description: description.into(),
        }
    }

    /// Requires the role `role`.
    pub fn role(role: impl Into<String>) -> Self {
        let role = role.into();
        Self::new(format!("this route needs the role {role:?}"), move |info| {
            info.has_role(&role)
        })
    }

    /// Requires the custom claim `name` to equal `value`.
    pub fn claim(name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        Self::new(
            format!("this route needs the claim {name}={value:?}"),
            move |info| info.claim(&name) == Some(value.as_str()),
        )
    }

    /// Requires a user-scoped key.
    pub fn user_scoped() -> Self {
        Self::new(
            "this route needs a user-scoped API key",
            TokenInfo::is_user_scoped,
        )
    }
}

impl fmt::Debug for RequireLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireLayer")
            .field("description", &self.description)
            .finish()
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            guard: self.clone(),
        }
    }
}

/// The service made by [`RequireLayer`].
#[derive(Clone, Debug)]
pub struct Require<S> {
    inner: S,
    guard: RequireLayer,
}

impl<S, B> Service<Request<B>> for Require<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let verdict = match request.extensions().get::<AuthState>() {
            None => Err(AuthRejection::without_layer(RejectionKind::MissingLayer(
                "RequireLayer",
            ))),
            Some(AuthState { auth: None, .. }) => {
                let state = request.extensions().get::<AuthState>();
                Err(state.map_or_else(
                    || AuthRejection::without_layer(RejectionKind::MissingCredentials),
                    |s| s.reject(RejectionKind::MissingCredentials),
                ))
            }
            Some(
                state @ AuthState {
                    auth: Some(auth), ..
                },
            ) => {
                if (self.guard.predicate)(auth.info()) {
                    Ok(())
                } else {
                    Err(state.reject(RejectionKind::InsufficientScope(
                        self.guard.description.clone(),
                    )))
                }
            }
        };
        match verdict {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(rejection) => Either::Left(ready(Ok(rejection.into_response()))),
        }
    }
}
