//! What the layer leaves in a request for the extractors and guards inside it: the outcome of
//! authentication and the renderer of rejections. One small `Arc`-backed value, so the hot
//! path makes one extension insert.

use std::sync::Arc;

use http::Extensions;

use super::reject::{AuthRejection, RejectionKind, Renderer};
use crate::token_info::Authenticated;

/// The layer-to-extractor contract. Its absence from a request means the route is not
/// covered by the layer (a programming error, answered 500 by the extractors).
#[derive(Clone)]
pub(crate) struct AuthState {
    /// `None`: no credentials, on an optional layer.
    pub(crate) auth: Option<Authenticated>,
    /// `None`: the shared default renderer. Most layers use it, and a request that is let in
    /// then carries no reference count to bump and drop.
    pub(crate) renderer: Option<Arc<Renderer>>,
    /// What a [`RateLimitLayer`](crate::ratelimit::RateLimitLayer) inside decided, for the
    /// `RateLimitInfo` extractor. Kept here rather than as an extension of its own: a second
    /// insert grows the request's extension map (a rehash on every request).
    #[cfg(feature = "ratelimit")]
    pub(crate) rate_limit: Option<crate::ratelimit::RateLimitInfo>,
}

impl AuthState {
    /// A rejection rendered the way the layer renders its own.
    pub(crate) fn reject(&self, kind: RejectionKind) -> AuthRejection {
        let renderer = self
            .renderer
            .clone()
            .unwrap_or_else(Renderer::default_shared);
        AuthRejection::new(kind, renderer)
    }

    /// The state the layer left in `extensions`, if any.
    pub(crate) fn of(extensions: &Extensions) -> Option<&AuthState> {
        extensions.get::<AuthState>()
    }
}

// `Authenticated` lives with `TokenInfo`; reading it back out of a request is part of this
// module's contract, so that accessor lives here, next to the type it reads.
impl Authenticated {
    /// The authentication the layer left in `extensions`, for tower middleware placed inside
    /// the layer (a rate limiter keyed by `token_id`, say). Handlers use the extractors.
    pub fn from_extensions(extensions: &Extensions) -> Option<&Authenticated> {
        AuthState::of(extensions).and_then(|state| state.auth.as_ref())
    }
}
