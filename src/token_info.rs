//! What a validator knows about a valid key: its scope, claims and lifetime.

use std::collections::BTreeMap;
use std::sync::Arc;

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
/// Every cached key holds one, so it is laid out compactly: boxed strings, the custom claims
/// as a sorted boxed slice (looked up by binary search), and the fields most keys leave unset
/// (external ids, email, description, creation time) in one optional box. Read it through its
/// accessors; its JSON form (serde) has the same field names and shapes as Scalekit's message
/// (`custom_claims` is an object, `roles` an array).
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
/// assert_eq!(info.token_id(), "key_123456789012345");
/// assert_eq!(info.claim("environment"), Some("production"));
/// assert_eq!(info.claims().collect::<Vec<_>>(), [("environment", "production")]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    token_id: Box<str>,
    organization_id: Box<str>,
    user_id: Option<Box<str>>,
    token_suffix: Option<Box<str>>,
    expiry: Option<OffsetDateTime>,
    /// Sorted by name, names unique.
    claims: Box<[(Box<str>, Box<str>)]>,
    roles: Box<[Box<str>]>,
    /// `None` when every field in it is unset (the common case).
    extra: Option<Box<Extra>>,
}

/// The fields most keys leave unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extra {
    organization_external_id: Option<Box<str>>,
    user_external_id: Option<Box<str>>,
    email: Option<Box<str>>,
    description: Option<Box<str>>,
    created_at: Option<OffsetDateTime>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl TokenInfo {
    /// Starts a [`TokenInfoBuilder`] for an organization-scoped key.
    pub fn builder(
        token_id: impl Into<String>,
        organization_id: impl Into<String>,
    ) -> TokenInfoBuilder {
        TokenInfoBuilder {
            token_id: token_id.into().into_boxed_str(),
            organization_id: organization_id.into().into_boxed_str(),
            user_id: None,
            token_suffix: None,
            expiry: None,
            claims: BTreeMap::new(),
            roles: Vec::new(),
            extra: Extra::default(),
        }
    }

    /// A builder holding this key's facts, to derive a changed copy.
    ///
    /// ```
    /// use axum_api_key::TokenInfo;
    ///
    /// let info = TokenInfo::builder("key_1", "org_1").claim("tier", "gold").build();
    /// let changed = info.to_builder().claim("tier", "silver").build();
    /// assert_eq!(changed.claim("tier"), Some("silver"));
    /// assert_eq!(changed.token_id(), "key_1");
    /// ```
    pub fn to_builder(&self) -> TokenInfoBuilder {
        let extra = self.extra.as_deref().cloned().unwrap_or_default();
        TokenInfoBuilder {
            token_id: self.token_id.clone(),
            organization_id: self.organization_id.clone(),
            user_id: self.user_id.clone(),
            token_suffix: self.token_suffix.clone(),
            expiry: self.expiry,
            claims: self.claims.iter().cloned().collect(),
            roles: self.roles.to_vec(),
            extra,
        }
    }

    /// The key's id: safe to log.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The organization the key belongs to (every key has one).
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }

    /// The organization's id in your own system, if set in Scalekit.
    pub fn organization_external_id(&self) -> Option<&str> {
        self.extra.as_ref()?.organization_external_id.as_deref()
    }

    /// The user the key is scoped to; `None` for organization-scoped keys.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The user's id in your own system, if set.
    pub fn user_external_id(&self) -> Option<&str> {
        self.extra.as_ref()?.user_external_id.as_deref()
    }

    /// The user's email, if Scalekit reports one.
    pub fn email(&self) -> Option<&str> {
        self.extra.as_ref()?.email.as_deref()
    }

    /// A human description of the key.
    pub fn description(&self) -> Option<&str> {
        self.extra.as_ref()?.description.as_deref()
    }

    /// The last characters of the key, for display: safe to log.
    pub fn token_suffix(&self) -> Option<&str> {
        self.token_suffix.as_deref()
    }

    /// When the key stops being valid; `None` means it does not expire. See also
    /// [`effective_expiry`](Self::effective_expiry).
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        self.expiry
    }

    /// When the key was created.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.extra.as_ref()?.created_at
    }

    /// `true` when the key is scoped to a user, not only to an organization.
    pub fn is_user_scoped(&self) -> bool {
        self.user_id.is_some()
    }

    /// The value of a custom claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims
            .binary_search_by(|(claim, _)| (**claim).cmp(name))
            .ok()
            .map(|at| &*self.claims[at].1)
    }

    /// The custom claims attached at creation (string to string), sorted by name.
    pub fn claims(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        self.claims.iter().map(|(name, value)| (&**name, &**value))
    }

    /// The custom claims, copied into a map (for APIs that take one).
    pub fn claims_map(&self) -> BTreeMap<String, String> {
        self.claims()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// The key's roles, in the order given.
    pub fn roles(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        self.roles.iter().map(|role| &**role)
    }

    /// `true` when the key carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| &**r == role)
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
        let value = self.claim(REVOKE_AFTER_CLAIM)?;
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
    /// let info = TokenInfo::builder("key_1", "org_1")
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
pub struct TokenInfoBuilder {
    token_id: Box<str>,
    organization_id: Box<str>,
    user_id: Option<Box<str>>,
    token_suffix: Option<Box<str>>,
    expiry: Option<OffsetDateTime>,
    claims: BTreeMap<Box<str>, Box<str>>,
    roles: Vec<Box<str>>,
    extra: Extra,
}

fn boxed(value: impl Into<String>) -> Box<str> {
    value.into().into_boxed_str()
}

impl TokenInfoBuilder {
    /// Scopes the key to a user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(boxed(user_id));
        self
    }
    /// Sets the user's external id.
    pub fn user_external_id(mut self, id: impl Into<String>) -> Self {
        self.extra.user_external_id = Some(boxed(id));
        self
    }
    /// Sets the organization's external id.
    pub fn organization_external_id(mut self, id: impl Into<String>) -> Self {
        self.extra.organization_external_id = Some(boxed(id));
        self
    }
    /// Sets the user's email.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.extra.email = Some(boxed(email));
        self
    }
    /// Adds a custom claim (replacing one of the same name).
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.claims.insert(boxed(name), boxed(value));
        self
    }
    /// Replaces every custom claim.
    pub fn claims<N, V>(mut self, claims: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        self.claims = claims
            .into_iter()
            .map(|(name, value)| (boxed(name), boxed(value)))
            .collect();
        self
    }
    /// Removes a custom claim.
    pub fn remove_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }
    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(boxed(role));
        self
    }
    /// Sets the expiry (`None`: the key does not expire).
    pub fn expiry(mut self, expiry: impl Into<Option<OffsetDateTime>>) -> Self {
        self.expiry = expiry.into();
        self
    }
    /// Sets the creation time.
    pub fn created_at(mut self, created_at: impl Into<Option<OffsetDateTime>>) -> Self {
        self.extra.created_at = created_at.into();
        self
    }
    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.extra.description = Some(boxed(description));
        self
    }
    /// Sets or clears the description.
    pub(crate) fn set_description(mut self, description: Option<String>) -> Self {
        self.extra.description = description.map(String::into_boxed_str);
        self
    }
    /// Sets the key suffix shown for display.
    pub fn token_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.token_suffix = Some(boxed(suffix));
        self
    }
    /// Finishes the [`TokenInfo`].
    pub fn build(self) -> TokenInfo {
        TokenInfo {
            token_id: self.token_id,
            organization_id: self.organization_id,
            user_id: self.user_id,
            token_suffix: self.token_suffix,
            expiry: self.expiry,
            // A BTreeMap iterates sorted by name, names unique: what `claim` searches.
            claims: self.claims.into_iter().collect(),
            roles: self.roles.into_boxed_slice(),
            extra: (!self.extra.is_empty()).then(|| Box::new(self.extra)),
        }
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

#[cfg(test)]
mod tests;
mod wire;
