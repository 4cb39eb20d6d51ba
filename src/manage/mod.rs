//! Self-service key management: a JSON API and an HTML page, as one [`Router`] to mount
//! (feature `manage`).
//!
//! ```
//! use axum::Router;
//! use axum_api_key::{ApiKeyLayer, InMemoryTokens};
//! use axum_api_key::manage::{ApiKeyManagers, KeyManagement, SessionManagers};
//!
//! let store = InMemoryTokens::new(); // or scalekit::ScalekitClient, or a CachedValidator of either
//! let sessions = SessionManagers::new(b"at least thirty-two bytes of secret!!").unwrap();
//! let keys = ApiKeyManagers::new(ApiKeyLayer::new(store.clone()));
//!
//! let app: Router = Router::new().nest(
//!     "/keys",
//!     KeyManagement::new(store, (sessions, keys)) // a cookie session, else an API key
//!         .allowed_claims(["environment"])
//!         .router(),
//! );
//! ```
//!
//! | Route (under the mount path) | What |
//! |---|---|
//! | `GET /` | the page: list, create (the new key shown once), rotate, revoke |
//! | `GET /api?page_size=&page_token=&user_id=` | `{"keys": [...], "next_page_token": ...}`, newest first |
//! | `POST /api` | create: `{"description", "user_id", "custom_claims", "expiry"}` → 201 with `token` |
//! | `GET /api/{token_id}` | one key |
//! | `POST /api/{token_id}/rotate` | `{"grace_seconds", "expiry"}` → 201 with the successor's `token` |
//! | `DELETE /api/{token_id}` | revoke → 204 (again: 204) |
//!
//! # Who may manage what
//!
//! The router asks a [`ManagerSource`] for the request's [`Manager`]: an organization admin
//! manages every key of its organization, a user only their own user-scoped keys, anyone else
//! gets 403; keys of another organization (or, for a user, of another user) are 404. Nobody
//! mints more power than they have: only admins set the admin claim or create keys for other
//! users, custom claims are limited to [`allowed_claims`](KeyManagement::allowed_claims), and
//! expiries are capped ([`max_lifetime`](KeyManagement::max_lifetime), and the manager's own
//! key's expiry). A user holds at most [`max_keys_per_user`](KeyManagement::max_keys_per_user)
//! active keys (100 by default). Every create, rotate and revoke is logged (target
//! `axum_api_key::manage`: token id and actor, never the key) and given to the
//! [`AuditListener`]s.
//!
//! # Rotation
//!
//! Rotate creates a successor with the same organization, user, claims and description, that
//! never outlives its predecessor (its expiry is capped as a new key's and by the old key's
//! expiry, and defaults to that cap); only admins rotate a key carrying the admin claim. The
//! old key is revoked at once, or, with `grace_seconds` (at most
//! [`max_grace`](KeyManagement::max_grace), 7 days by default), keeps working until a
//! deadline written into its own custom claims ([`REVOKE_AFTER_CLAIM`](crate::keys::REVOKE_AFTER_CLAIM)).
//! Because the deadline lives with the key in the store, it survives restarts and holds on
//! every instance: the embedded store, the Scalekit client and the cache judge keys by
//! [`TokenInfo::effective_expiry`](crate::TokenInfo::effective_expiry).
//!
//! # The page
//!
//! Server-rendered HTML ([maud](https://maud.lambda.xyz): every interpolated string is escaped),
//! no external assets, plain forms that work without JavaScript (one inline script, allowed by a
//! per-response CSP nonce, adds the copy button). Responses carry `Cache-Control: no-store`, a
//! strict `Content-Security-Policy`, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
//! Requests authenticated by a cookie (an *ambient* credential, [`Manager::with_csrf_token`])
//! must, when unsafe, carry the session's CSRF token (form field `csrf_token` or header
//! `x-csrf-token`) and come from the same origin (`Sec-Fetch-Site`, else `Origin`).

mod api;
mod audit;
mod error;
mod listing;
mod manager;
mod markup;
mod ops;
mod page;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use http::header::{
    CACHE_CONTROL, HOST, ORIGIN, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::request::Parts;
use http::{HeaderValue, Method};
use subtle::ConstantTimeEq;

pub use audit::{AuditAction, AuditEvent, AuditListener};
pub use error::ManageError;
pub use manager::{ApiKeyManagers, DEFAULT_ADMIN_CLAIM, Manager, ManagerRejection, ManagerSource};
pub use ops::{DEFAULT_LIST_SIZE, MAX_LIST_SIZE, MAX_STORE_PAGES};
pub use session::{MIN_SECRET_LEN, SecretTooShort, Session, SessionManagers};

use crate::keys::KeyStore;
use ops::{Core, Policy};

/// The longest key lifetime unless [`KeyManagement::max_lifetime`] says otherwise: 365 days.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// The longest rotation grace unless [`KeyManagement::max_grace`] says otherwise: 7 days.
pub const DEFAULT_MAX_GRACE: Duration = Duration::from_secs(7 * 86_400);
/// No grace is ever longer than this: 30 days.
pub const GRACE_LIMIT: Duration = Duration::from_secs(30 * 86_400);
/// No [`KeyManagement::max_lifetime`] is longer than this: 100 years (of 365 days). Longer
/// values are clamped to it; `None` is the way to say "keys may never expire".
pub const LIFETIME_LIMIT: Duration = Duration::from_secs(100 * 365 * 86_400);
/// How many active keys a non-admin manager may hold unless
/// [`KeyManagement::max_keys_per_user`] says otherwise: 100.
pub const DEFAULT_MAX_KEYS_PER_USER: u32 = 100;
/// No [`KeyManagement::max_keys_per_user`] is higher than this: 1 000 (counting stays within
/// the [`MAX_STORE_PAGES`] a listing reads).
pub const MAX_KEYS_PER_USER_LIMIT: u32 = 1_000;
/// Request bodies over this many bytes are refused.
const MAX_BODY: usize = 16 * 1024;

/// Builds the key-management [`Router`]; see the [module docs](self).
pub struct KeyManagement<S, M> {
    store: S,
    managers: M,
    policy: Policy,
    listeners: Vec<Arc<dyn AuditListener>>,
    allowed_origins: Vec<String>,
    title: String,
}

impl<S: KeyStore, M: ManagerSource> KeyManagement<S, M> {
    /// Key management over `store`, for the managers `managers` finds.
    pub fn new(store: S, managers: M) -> Self {
        Self {
            store,
            managers,
            policy: Policy {
                allowed_claims: Vec::new(),
                admin_claim: (
                    DEFAULT_ADMIN_CLAIM.0.to_owned(),
                    DEFAULT_ADMIN_CLAIM.1.to_owned(),
                ),
                max_lifetime: Some(DEFAULT_MAX_LIFETIME),
                max_grace: DEFAULT_MAX_GRACE,
                max_keys_per_user: DEFAULT_MAX_KEYS_PER_USER,
            },
            listeners: Vec::new(),
            allowed_origins: Vec::new(),
            title: "API keys".to_owned(),
        }
    }

    /// The custom claims managers may set (none by default). The admin claim is settable by
    /// admins only, whatever this says; `revoke_after` by nobody.
    #[must_use]
    pub fn allowed_claims<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.policy.allowed_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claim that makes a key an organization admin (default `role` = `key_admin`):
    /// only admins may set it. Use the same on [`ApiKeyManagers::admin_claim`].
    #[must_use]
    pub fn admin_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.policy.admin_claim = (name.into(), value.into());
        self
    }

    /// The longest lifetime of a minted key (default 365 days; `None`: keys may never expire),
    /// at most [`LIFETIME_LIMIT`] (100 years: longer values, `Duration::MAX` included, are
    /// clamped to it). A key created without an expiry gets this one.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.policy.max_lifetime = lifetime.map(|lifetime| lifetime.min(LIFETIME_LIMIT));
        self
    }

    /// How many active keys a manager without the admin grant (a user) may hold (default
    /// [`DEFAULT_MAX_KEYS_PER_USER`], 100; at most [`MAX_KEYS_PER_USER_LIMIT`]; `0`: users may
    /// not create keys). At the cap, creating a key, or rotating one with a grace (the old key
    /// lives on beside its successor), is refused with 422 `invalid_request`; rotating without
    /// grace replaces a key and is always allowed. Keys in a grace period count until it ends.
    /// Admins are not capped: they answer for their organization's keys. The count is one
    /// filtered listing of the user's keys, so two creates racing may both pass it.
    #[must_use]
    pub fn max_keys_per_user(mut self, max: u32) -> Self {
        self.policy.max_keys_per_user = max.min(MAX_KEYS_PER_USER_LIMIT);
        self
    }

    /// The longest rotation grace (default 7 days, at most [`GRACE_LIMIT`]).
    #[must_use]
    pub fn max_grace(mut self, grace: Duration) -> Self {
        self.policy.max_grace = grace.min(GRACE_LIMIT);
        self
    }

    /// Hands every audit event to `listener` too.
    #[must_use]
    pub fn audit(mut self, listener: impl AuditListener) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Another origin (`https://admin.example.com`) cookie-authenticated unsafe requests may
    /// come from, besides the request's own host.
    #[must_use]
    pub fn allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }

    /// The page's title (default "API keys").
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The router: nest it under any path (`Router::new().nest("/keys", ...)`).
    pub fn router(self) -> Router {
        let shared = Arc::new(Shared {
            core: Core::new(self.store, self.policy, self.listeners),
            managers: self.managers,
            allowed_origins: self.allowed_origins,
            title: self.title,
        });
        api::routes::<S, M>()
            .merge(page::routes::<S, M>())
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(axum::middleware::map_response(security_headers))
            .with_state(shared)
    }
}

/// What every handler shares.
struct Shared<S, M> {
    core: Core<S>,
    managers: M,
    allowed_origins: Vec<String>,
    title: String,
}

impl<S: KeyStore, M: ManagerSource> Shared<S, M> {
    /// The request's manager, with the CSRF checks for unsafe cookie-authenticated requests
    /// (`token`: what the request echoed, from a form field or the `x-csrf-token` header).
    async fn manager(&self, parts: &Parts, token: Option<&str>) -> Result<Manager, Refusal> {
        let manager = match self.managers.manager(parts).await {
            Ok(manager) => manager,
            Err(ManagerRejection::NoCredentials) => {
                return Err(Refusal::Manage(ManageError::Unauthenticated));
            }
            Err(ManagerRejection::Refused(response)) => return Err(Refusal::Response(response)),
        };
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let (true, Some(expected)) = (unsafe_method, manager.csrf_token()) {
            self.same_origin(parts).map_err(Refusal::Manage)?;
            let sent = token.or_else(|| {
                parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
            });
            let matches =
                sent.is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())));
            if !matches {
                return Err(Refusal::Manage(ManageError::Csrf(
                    "missing or wrong CSRF token",
                )));
            }
        }
        Ok(manager)
    }

    /// `Sec-Fetch-Site: same-origin` when the browser sends it; else an `Origin` naming this
    /// host (or an allowed origin); a request with neither relies on the token alone.
    fn same_origin(&self, parts: &Parts) -> Result<(), ManageError> {
        if let Some(site) = parts.headers.get("sec-fetch-site") {
            return if site.as_bytes() == b"same-origin" {
                Ok(())
            } else {
                Err(ManageError::Csrf("cross-site request refused"))
            };
        }
        let Some(origin) = parts.headers.get(ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let own = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host));
        if own || self.allowed_origins.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(ManageError::Csrf("cross-origin request refused"))
        }
    }
}

/// A refusal before any work: the crate's JSON shape, or a source's own response.
enum Refusal {
    Manage(ManageError),
    Response(Response),
}

/// `no-store` and the framing / sniffing / referrer headers on every answer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_clamps_what_could_overflow() {
        let sessions = SessionManagers::new(&[7; MIN_SECRET_LEN]).unwrap();
        let keys = KeyManagement::new(crate::InMemoryTokens::new(), sessions)
            .max_lifetime(Some(Duration::MAX))
            .max_keys_per_user(u32::MAX);
        assert_eq!(keys.policy.max_lifetime, Some(LIFETIME_LIMIT));
        assert_eq!(keys.policy.max_keys_per_user, MAX_KEYS_PER_USER_LIMIT);
        let keys = keys.max_lifetime(None).max_keys_per_user(0);
        assert_eq!(keys.policy.max_lifetime, None);
        assert_eq!(keys.policy.max_keys_per_user, 0);
    }
}
