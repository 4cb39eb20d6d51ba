//! Who is acting: the [`Manager`] the app extracts from its own authentication, and the
//! ready-made [`ApiKeyManagers`].

use std::future::Future;

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use time::OffsetDateTime;

use crate::request::RejectionKind;
use crate::request::layer::ApiKeyLayer;
use crate::validator::contract::Validator;

/// Longest actor label kept (logs and audit events are bounded).
pub(super) const MAX_ACTOR_LEN: usize = 128;

/// The claim that grants key administration unless [`ApiKeyManagers::admin_claim`] says otherwise.
pub const DEFAULT_ADMIN_CLAIM: (&str, &str) = ("role", "key_admin");

/// Who is managing keys, and what they may manage.
///
/// - an **organization admin** ([`Manager::admin`]) manages every key of its organization;
/// - a **user** ([`Manager::user`]) manages only their own user-scoped keys;
/// - a **member** ([`Manager::member`]: no user, no grant) manages nothing and gets 403.
///
/// Anything of another organization is 404 for everyone.
///
/// ```
/// use axum_api_key::manage::Manager;
///
/// let alice = Manager::user("org_acme", "usr_alice", "alice@acme.test");
/// assert!(!alice.is_admin());
/// assert_eq!(alice.user_id(), Some("usr_alice"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    organization_id: String,
    user_id: Option<String>,
    admin: bool,
    actor: String,
    csrf_token: Option<String>,
    credential_expiry: Option<OffsetDateTime>,
}

impl Manager {
    /// An administrator of `organization_id`'s keys. `actor` names them in logs and audit
    /// events (never put a secret there).
    pub fn admin(organization_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self::new(organization_id.into(), None, true, actor.into())
    }

    /// A user of `organization_id` who manages their own user-scoped keys.
    pub fn user(
        organization_id: impl Into<String>,
        user_id: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self::new(
            organization_id.into(),
            Some(user_id.into()),
            false,
            actor.into(),
        )
    }

    /// Someone of `organization_id` with no grant and no user: may manage nothing (403).
    pub fn member(organization_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self::new(organization_id.into(), None, false, actor.into())
    }

    pub(super) fn new(
        organization_id: String,
        user_id: Option<String>,
        admin: bool,
        actor: String,
    ) -> Self {
        Self {
            organization_id,
            user_id,
            admin,
            actor: bounded(actor),
            csrf_token: None,
            credential_expiry: None,
        }
    }

    /// Grants (or withdraws) the organization admin right, keeping the user.
    #[must_use]
    pub fn with_admin(mut self, admin: bool) -> Self {
        self.admin = admin;
        self
    }

    /// Marks the credential as *ambient* (a cookie the browser sends on its own) and gives the
    /// token its forms must echo: unsafe requests then pass the CSRF checks (token, plus
    /// `Sec-Fetch-Site` / `Origin`) or get 403.
    #[must_use]
    pub fn with_csrf_token(mut self, token: impl Into<String>) -> Self {
        self.csrf_token = Some(token.into());
        self
    }

    /// When the manager's own credential expires: keys it mints never outlive it.
    #[must_use]
    pub fn with_credential_expiry(mut self, expiry: Option<OffsetDateTime>) -> Self {
        self.credential_expiry = expiry;
        self
    }

    /// The organization.
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }
    /// The user, if any.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }
    /// `true` for an organization admin.
    pub fn is_admin(&self) -> bool {
        self.admin
    }
    /// The label of logs and audit events (at most 128 characters).
    pub fn actor(&self) -> &str {
        &self.actor
    }
    /// The CSRF token of an ambient (cookie) credential.
    pub fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
    /// When the manager's credential expires.
    pub fn credential_expiry(&self) -> Option<OffsetDateTime> {
        self.credential_expiry
    }
}

fn bounded(mut actor: String) -> String {
    if let Some((cut, _)) = actor.char_indices().nth(MAX_ACTOR_LEN) {
        actor.truncate(cut);
    }
    actor
}

/// Why no [`Manager`] came out of a request.
#[derive(Debug)]
pub enum ManagerRejection {
    /// The request carries none of this source's credentials: the next source is tried, and
    /// if none answers the router says 401.
    NoCredentials,
    /// The credentials are there and wrong (or cannot be checked now): this response is sent.
    Refused(Response),
}

/// Extracts the [`Manager`] of a request from the app's own authentication: a session
/// cookie, a JWT, one of this crate's API keys...
///
/// Ready-made: [`ApiKeyManagers`] and [`SessionManagers`](super::SessionManagers). A pair
/// `(A, B)` tries `A`, then `B` when `A` finds no credentials.
///
/// ```
/// use axum_api_key::manage::{Manager, ManagerRejection, ManagerSource};
/// use http::request::Parts;
///
/// /// Trusts a header set by an authenticating proxy in front of the app.
/// struct FromProxy;
///
/// impl ManagerSource for FromProxy {
///     async fn manager(&self, parts: &Parts) -> Result<Manager, ManagerRejection> {
///         let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
///         match user {
///             Some(user) => Ok(Manager::user("org_acme", user, user)),
///             None => Err(ManagerRejection::NoCredentials),
///         }
///     }
/// }
/// ```
pub trait ManagerSource: Send + Sync + 'static {
    /// The manager of this request.
    fn manager(
        &self,
        parts: &Parts,
    ) -> impl Future<Output = Result<Manager, ManagerRejection>> + Send;
}

impl<A: ManagerSource, B: ManagerSource> ManagerSource for (A, B) {
    async fn manager(&self, parts: &Parts) -> Result<Manager, ManagerRejection> {
        match self.0.manager(parts).await {
            Err(ManagerRejection::NoCredentials) => self.1.manager(parts).await,
            answer => answer,
        }
    }
}

/// Managers authenticated by this crate's own API keys (`Authorization: Bearer <key>`).
///
/// A key whose custom claim `role` is `key_admin` (see [`admin_claim`](Self::admin_claim))
/// administers its organization's keys; a user-scoped key without it manages its user's keys;
/// an organization key without it gets 403. Keys the key mints never outlive it.
///
/// ```
/// use axum_api_key::{ApiKeyLayer, InMemoryTokens};
/// use axum_api_key::manage::ApiKeyManagers;
///
/// let store = InMemoryTokens::new();
/// let managers = ApiKeyManagers::new(ApiKeyLayer::new(store.clone()).realm("keys"))
///     .admin_claim("permission", "keys:admin");
/// # let _ = managers;
/// ```
pub struct ApiKeyManagers<V> {
    layer: ApiKeyLayer<V>,
    claim: String,
    value: String,
}

impl<V> ApiKeyManagers<V> {
    /// Authenticates managers with `layer` (its validator, key format and realm).
    pub fn new(layer: ApiKeyLayer<V>) -> Self {
        Self {
            layer,
            claim: DEFAULT_ADMIN_CLAIM.0.to_owned(),
            value: DEFAULT_ADMIN_CLAIM.1.to_owned(),
        }
    }

    /// The custom claim (name and value) that grants key administration.
    #[must_use]
    pub fn admin_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.claim = name.into();
        self.value = value.into();
        self
    }
}

impl<V: Validator> ManagerSource for ApiKeyManagers<V> {
    async fn manager(&self, parts: &Parts) -> Result<Manager, ManagerRejection> {
        match self.layer.authenticate_parts(parts).await {
            Ok(Some(auth)) => {
                let info = auth.info();
                let admin = info.claim(&self.claim) == Some(self.value.as_str());
                let actor = format!("key:{}", info.token_id());
                let manager = Manager::new(
                    info.organization_id().to_owned(),
                    info.user_id().map(str::to_owned),
                    admin,
                    actor,
                );
                Ok(manager.with_credential_expiry(info.effective_expiry()))
            }
            Ok(None) => Err(ManagerRejection::NoCredentials),
            Err(rejection) if *rejection.kind() == RejectionKind::MissingCredentials => {
                Err(ManagerRejection::NoCredentials)
            }
            Err(rejection) => Err(ManagerRejection::Refused(rejection.into_response())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_bounded() {
        let long = "é".repeat(500);
        assert_eq!(
            Manager::admin("org_1", long).actor().chars().count(),
            MAX_ACTOR_LEN
        );
    }
}
