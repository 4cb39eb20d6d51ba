//! What a validator knows about a valid key: its scope, claims and lifetime.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The reserved custom claim that carries a rotated key's grace deadline (unix seconds): once
/// it passes, the key is refused as if expired. See [`TokenInfo::effective_expiry`].
pub const REVOKE_AFTER_CLAIM: &str = "revoke_after";

/// The facts about a valid API key, as Scalekit's `Token` message carries them.
///
/// Inserted (behind an [`Arc`]) into the request extensions by [`ApiKeyLayer`](crate::ApiKeyLayer)
/// and read by handlers through the extractors ([`TokenInfo`] itself, [`OrgScope`](crate::OrgScope),
/// [`UserScope`](crate::UserScope), [`Claims`](crate::Claims)). It never holds the key itself.
///
/// Build one for handler unit tests with [`TokenInfo::builder`]:
///
/// ```
/// use axum_api_key::TokenInfo;
///
/// let info = TokenInfo::builder("key_123456789012345", "org_59615193906282635")
///     .user("usr_1")
///     .claim("environment", "production")
///     .role("admin")
///     .build();
/// assert!(info.is_user_scoped());
/// assert_eq!(info.claim("environment"), Some("production"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The key's id: safe to log.
    pub token_id: String,
    /// The organization the key belongs to (every key has one).
    pub organization_id: String,
    /// The organization's id in your own system, if set in Scalekit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_external_id: Option<String>,
    /// The user the key is scoped to; `None` for organization-scoped keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's id in your own system, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_external_id: Option<String>,
    /// The user's email, if Scalekit reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Custom claims attached at creation (string to string).
    #[serde(default)]
    pub custom_claims: BTreeMap<String, String>,
    /// Roles, if any.
    #[serde(default)]
    pub roles: Vec<String>,
    /// When the key stops being valid; `None` means it does not expire.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expiry: Option<OffsetDateTime>,
    /// When the key was created.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// A human description of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The last characters of the key, for display: safe to log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_suffix: Option<String>,
}

impl TokenInfo {
    /// Starts a [`TokenInfoBuilder`] for an organization-scoped key.
    pub fn builder(
        token_id: impl Into<String>,
        organization_id: impl Into<String>,
    ) -> TokenInfoBuilder {
        TokenInfoBuilder(TokenInfo {
            token_id: token_id.into(),
            organization_id: organization_id.into(),
            organization_external_id: None,
            user_id: None,
            user_external_id: None,
            email: None,
            custom_claims: BTreeMap::new(),
            roles: Vec::new(),
            expiry: None,
            created_at: None,
            description: None,
            token_suffix: None,
        })
    }

    /// `true` when the key is scoped to a user, not only to an organization.
    pub fn is_user_scoped(&self) -> bool {
        self.user_id.is_some()
    }

    /// The value of a custom claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.custom_claims.get(name).map(String::as_str)
    }

    /// `true` when the key carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `true` when the key's [effective expiry](Self::effective_expiry) is at or before `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.effective_expiry().is_some_and(|expiry| expiry <= now)
    }

    /// The deadline a rotation with a grace period wrote into the key's
    /// [`REVOKE_AFTER_CLAIM`] claim (unix seconds), if any.
    ///
    /// The claim is reserved: a value that is not a unix time in seconds reads as a deadline
    /// long past (fail closed), so a key carrying a garbled deadline is refused.
    pub fn revoke_after(&self) -> Option<OffsetDateTime> {
        let value = self.custom_claims.get(REVOKE_AFTER_CLAIM)?;
        Some(
            value
                .parse::<i64>()
                .ok()
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }

    /// When the key stops being accepted: the earlier of its [`expiry`](Self::expiry) and its
    /// [`revoke_after`](Self::revoke_after) deadline. The embedded store, the Scalekit client
    /// and the cache all judge keys by this, so a rotated key's grace ends on every instance
    /// and survives restarts (the deadline lives in the key's own claims).
    ///
    /// ```
    /// use axum_api_key::TokenInfo;
    /// use time::OffsetDateTime;
    ///
    /// let deadline = OffsetDateTime::now_utc().unix_timestamp() - 1;
    /// let info = TokenInfo::builder("apit_1", "org_1")
    ///     .claim("revoke_after", deadline.to_string())
    ///     .build();
    /// assert!(info.is_expired_at(OffsetDateTime::now_utc()));
    /// ```
    pub fn effective_expiry(&self) -> Option<OffsetDateTime> {
        match (self.expiry, self.revoke_after()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Builds a [`TokenInfo`]; see [`TokenInfo::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct TokenInfoBuilder(TokenInfo);

impl TokenInfoBuilder {
    /// Scopes the key to a user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.0.user_id = Some(user_id.into());
        self
    }
    /// Sets the user's external id.
    pub fn user_external_id(mut self, id: impl Into<String>) -> Self {
        self.0.user_external_id = Some(id.into());
        self
    }
    /// Sets the organization's external id.
    pub fn organization_external_id(mut self, id: impl Into<String>) -> Self {
        self.0.organization_external_id = Some(id.into());
        self
    }
    /// Sets the user's email.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.0.email = Some(email.into());
        self
    }
    /// Adds a custom claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.custom_claims.insert(name.into(), value.into());
        self
    }
    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.0.roles.push(role.into());
        self
    }
    /// Sets the expiry.
    pub fn expiry(mut self, expiry: OffsetDateTime) -> Self {
        self.0.expiry = Some(expiry);
        self
    }
    /// Sets the creation time.
    pub fn created_at(mut self, created_at: OffsetDateTime) -> Self {
        self.0.created_at = Some(created_at);
        self
    }
    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.0.description = Some(description.into());
        self
    }
    /// Sets the key suffix shown for display.
    pub fn token_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.0.token_suffix = Some(suffix.into());
        self
    }
    /// Finishes the [`TokenInfo`].
    pub fn build(self) -> TokenInfo {
        self.0
    }
}

/// A successful validation: the key's [`TokenInfo`] and how fresh the answer is.
///
/// This is the request extension the layer inserts; cloning it is cheap (one [`Arc`]).
#[derive(Clone, Debug)]
pub struct Authenticated {
    info: Arc<TokenInfo>,
    degraded: bool,
}

impl Authenticated {
    /// A fresh answer from the validator.
    pub fn new(info: impl Into<Arc<TokenInfo>>) -> Self {
        Self {
            info: info.into(),
            degraded: false,
        }
    }

    /// An answer served from a cache while the upstream could not be asked (stale-if-error).
    pub fn degraded(info: impl Into<Arc<TokenInfo>>) -> Self {
        Self {
            info: info.into(),
            degraded: true,
        }
    }

    /// The key's facts.
    pub fn info(&self) -> &TokenInfo {
        &self.info
    }

    /// The key's facts, shared.
    pub fn info_arc(&self) -> &Arc<TokenInfo> {
        &self.info
    }

    /// `true` when this answer came from a cache because the upstream could not tell.
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }
}

impl From<TokenInfo> for Authenticated {
    fn from(info: TokenInfo) -> Self {
        Self::new(info)
    }
}
