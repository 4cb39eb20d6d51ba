//! Typed extractors over the layer's [`Authenticated`] extension.
//!
//! Each extractor has an `Option<_>` form for routes under [`ApiKeyLayer::optional`]: `None`
//! when the request carried no credentials. Used on a route the layer does not cover, every
//! extractor (both forms) answers 500 with a message naming the missing layer: that is a server
//! configuration error, never the client's fault.
//!
//! [`ApiKeyLayer::optional`]: crate::ApiKeyLayer::optional

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::reject::{AuthRejection, RejectionKind};
use super::state::AuthState;
use crate::token_info::{Authenticated, TokenInfo};

/// The layer's state, or the "missing layer" rejection.
fn state<'a>(parts: &'a Parts, extractor: &'static str) -> Result<&'a AuthState, AuthRejection> {
    parts
        .extensions
        .get::<AuthState>()
        .ok_or_else(|| AuthRejection::without_layer(RejectionKind::MissingLayer(extractor)))
}

/// `Some` on an authenticated request, `None` on an anonymous one under an optional layer.
fn optional<'a>(
    parts: &'a Parts,
    extractor: &'static str,
) -> Result<(&'a AuthState, Option<&'a Authenticated>), AuthRejection> {
    let state = state(parts, extractor)?;
    Ok((state, state.auth.as_ref()))
}

/// The authentication, or 401 for an anonymous request under an optional layer.
fn required<'a>(
    parts: &'a Parts,
    extractor: &'static str,
) -> Result<(&'a AuthState, &'a Authenticated), AuthRejection> {
    let state = state(parts, extractor)?;
    match &state.auth {
        Some(auth) => Ok((state, auth)),
        None => Err(state.reject(RejectionKind::MissingCredentials)),
    }
}

/// Implements both extractor traits from one `fn(&AuthState, &Authenticated) -> Result<Self, _>`.
macro_rules! extractor {
    ($ty:ty, $name:literal, $from:expr) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &S,
            ) -> Result<Self, Self::Rejection> {
                let (state, auth) = required(parts, $name)?;
                $from(state, auth)
            }
        }

        impl<S: Send + Sync> OptionalFromRequestParts<S> for $ty {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                match optional(parts, $name)? {
                    (state, Some(auth)) => optional_from($from(state, auth)),
                    (_, None) => Ok(None),
                }
            }
        }
    };
}

/// In the `Option<_>` form, a scope the key lacks is `None`, not 403: the route asked whether
/// the caller has it.
fn optional_from<T>(result: Result<T, AuthRejection>) -> Result<Option<T>, AuthRejection> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(rejection) if matches!(rejection.kind(), RejectionKind::InsufficientScope(_)) => {
            Ok(None)
        }
        Err(rejection) => Err(rejection),
    }
}

extractor!(
    Authenticated,
    "Authenticated",
    |_: &AuthState, auth: &Authenticated| Ok(auth.clone())
);

extractor!(
    TokenInfo,
    "TokenInfo",
    |_: &AuthState, auth: &Authenticated| Ok(auth.info().clone())
);

/// The caller's organization: works for every valid key.
///
/// ```
/// use axum_api_key::OrgScope;
///
/// async fn list_contacts(OrgScope { organization_id, .. }: OrgScope) -> String {
///     format!("contacts of {organization_id}")
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrgScope {
    /// The organization the key belongs to.
    pub organization_id: String,
    /// The organization's id in your own system, if set.
    pub organization_external_id: Option<String>,
    /// The key's id (safe to log).
    pub token_id: String,
    /// The user the key is scoped to, if it is user-scoped.
    pub user_id: Option<String>,
}

impl From<&TokenInfo> for OrgScope {
    fn from(info: &TokenInfo) -> Self {
        Self {
            organization_id: info.organization_id().to_owned(),
            organization_external_id: info.organization_external_id().map(str::to_owned),
            token_id: info.token_id().to_owned(),
            user_id: info.user_id().map(str::to_owned),
        }
    }
}

extractor!(
    OrgScope,
    "OrgScope",
    |_: &AuthState, auth: &Authenticated| Ok(OrgScope::from(auth.info()))
);

/// The caller's user: only user-scoped keys have one. An organization-scoped key gets 403
/// `insufficient_scope` (`Option<UserScope>` gives `None` instead).
///
/// ```
/// use axum_api_key::UserScope;
///
/// async fn list_tasks(UserScope { organization_id, user_id, .. }: UserScope) -> String {
///     format!("tasks of {user_id} in {organization_id}")
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserScope {
    /// The organization the key belongs to.
    pub organization_id: String,
    /// The user the key is scoped to.
    pub user_id: String,
    /// The user's id in your own system, if set.
    pub user_external_id: Option<String>,
    /// The user's email, if known.
    pub email: Option<String>,
    /// The key's id (safe to log).
    pub token_id: String,
}

impl UserScope {
    /// The user scope of `info`, if the key is user-scoped.
    pub fn from_info(info: &TokenInfo) -> Option<Self> {
        Some(Self {
            organization_id: info.organization_id().to_owned(),
            user_id: info.user_id().map(str::to_owned)?,
            user_external_id: info.user_external_id().map(str::to_owned),
            email: info.email().map(str::to_owned),
            token_id: info.token_id().to_owned(),
        })
    }
}

extractor!(
    UserScope,
    "UserScope",
    |state: &AuthState, auth: &Authenticated| {
        UserScope::from_info(auth.info()).ok_or_else(|| {
            state.reject(RejectionKind::InsufficientScope(
                "this route needs a user-scoped API key".into(),
            ))
        })
    }
);

/// A read-only view of the key's custom claims.
///
/// ```
/// use axum_api_key::Claims;
///
/// async fn deploy(claims: Claims) -> String {
///     match claims.get("environment") {
///         Some("production") => "deploying".into(),
///         _ => "not a production key".into(),
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Claims(Arc<TokenInfo>);

impl Claims {
    /// The value of claim `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.claim(name)
    }

    /// Every claim, copied into a map.
    pub fn as_map(&self) -> BTreeMap<String, String> {
        self.0.claims_map()
    }

    /// The claims, as `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.claims()
    }

    /// The key's roles.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.roles()
    }
}

extractor!(Claims, "Claims", |_: &AuthState, auth: &Authenticated| Ok(
    Claims(auth.info_arc().clone())
));

/// The custom claims deserialised into your own type. Claims are strings, so fields are
/// `String` (or enums of string variants); a claim map that does not fit `T` gets 403
/// `insufficient_scope`.
///
/// ```
/// use axum_api_key::TypedClaims;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Deploy { environment: String, team: Option<String> }
///
/// async fn deploy(TypedClaims(claims): TypedClaims<Deploy>) -> String {
///     claims.environment
/// }
/// ```
#[derive(Clone, Debug)]
pub struct TypedClaims<T>(pub T);

fn typed_claims<T: DeserializeOwned>(
    state: &AuthState,
    auth: &Authenticated,
) -> Result<TypedClaims<T>, AuthRejection> {
    let map = serde_json::Map::from_iter(
        auth.info()
            .claims()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned()))),
    );
    serde_json::from_value(serde_json::Value::Object(map))
        .map(TypedClaims)
        .map_err(|_| {
            state.reject(RejectionKind::InsufficientScope(
                "the API key's claims do not allow this route".into(),
            ))
        })
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for TypedClaims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (state, auth) = required(parts, "TypedClaims")?;
        typed_claims(state, auth)
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> OptionalFromRequestParts<S> for TypedClaims<T> {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match optional(parts, "TypedClaims")? {
            (state, Some(auth)) => optional_from(typed_claims(state, auth)),
            (_, None) => Ok(None),
        }
    }
}
