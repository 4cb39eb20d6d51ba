//! Requests and answers of the key lifecycle (create, list, update, invalidate), shared by
//! [`InMemoryTokens`](crate::InMemoryTokens) and the Scalekit client, with Scalekit's documented
//! limits checked before anything is stored or sent.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;

use crate::request::key::{ApiKey, Fingerprint};
use crate::token_info::TokenInfo;

/// At most this many custom claims per key.
pub const MAX_CLAIMS: usize = 20;
/// Claim names are 1 to this many characters.
pub const MAX_CLAIM_NAME_LEN: usize = 30;
/// Claim values are 1 to this many characters.
pub const MAX_CLAIM_VALUE_LEN: usize = 256;
/// Descriptions are at most this many characters.
pub const MAX_DESCRIPTION_LEN: usize = 255;
/// User ids are 1 to this many characters of [`is_user_id`]'s set.
pub const MAX_USER_ID_LEN: usize = 255;
/// Pages hold at most this many keys.
pub const MAX_PAGE_SIZE: u32 = 30;
/// The page size used when none is given.
pub const DEFAULT_PAGE_SIZE: u32 = 10;

/// A request that breaks one of Scalekit's documented limits, refused before any request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `organization_id` is empty.
    #[error("organization_id is required")]
    MissingOrganization,
    /// `organization_id` must start with `org_` and have at most 32 characters (for listing).
    #[error("organization_id must start with `org_` and be at most 32 characters")]
    BadOrganization,
    /// The token (key or id) to act on is empty.
    #[error("a key or token id is required")]
    MissingToken,
    /// More than [`MAX_CLAIMS`] claims.
    #[error("at most {MAX_CLAIMS} custom claims are allowed, got {0}")]
    TooManyClaims(usize),
    /// A claim name outside 1..=[`MAX_CLAIM_NAME_LEN`] characters.
    #[error("custom claim names must be 1 to {MAX_CLAIM_NAME_LEN} characters: {0:?}")]
    BadClaimName(String),
    /// A claim value outside 1..=[`MAX_CLAIM_VALUE_LEN`] characters.
    #[error("custom claim values must be 1 to {MAX_CLAIM_VALUE_LEN} characters (claim {0:?})")]
    BadClaimValue(String),
    /// A `user_id` that is not 1 to [`MAX_USER_ID_LEN`] printable ASCII characters other than
    /// quotes and backslashes (see [`is_user_id`]).
    #[error(
        "user_id must be 1 to {MAX_USER_ID_LEN} printable ASCII characters, without spaces, quotes or backslashes"
    )]
    BadUserId,
    /// A description over [`MAX_DESCRIPTION_LEN`] characters.
    #[error("descriptions are at most {MAX_DESCRIPTION_LEN} characters, got {0}")]
    DescriptionTooLong(usize),
    /// A page size over [`MAX_PAGE_SIZE`].
    #[error("page_size must be at most {MAX_PAGE_SIZE}, got {0}")]
    PageSizeTooLarge(u32),
    /// An expiry in the past.
    #[error("expiry must be in the future")]
    ExpiryInPast,
}

/// What to mint: an organization-scoped key, or a user-scoped one with [`CreateToken::user`].
///
/// ```
/// use axum_api_key::keys::CreateToken;
///
/// let request = CreateToken::new("org_59615193906282635")
///     .user("usr_63261492986167383")
///     .claim("environment", "production")
///     .description("deploy bot");
/// assert!(request.check().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[must_use]
pub struct CreateToken {
    /// The organization the key belongs to (required).
    pub organization_id: String,
    /// Scopes the key to this user of the organization.
    pub user_id: Option<String>,
    /// Custom claims returned on every validation.
    pub custom_claims: BTreeMap<String, String>,
    /// When the key stops working; `None`: never.
    pub expiry: Option<OffsetDateTime>,
    /// A human description.
    pub description: Option<String>,
}

impl CreateToken {
    /// The facts of the key this request mints, as a store answers them: `token_id`, the
    /// key's suffix, created now.
    pub(crate) fn info(&self, token_id: String, key: &ApiKey) -> TokenInfo {
        let mut builder = TokenInfo::builder(token_id, self.organization_id.clone())
            .claims(self.custom_claims.clone())
            .expiry(self.expiry)
            .created_at(OffsetDateTime::now_utc())
            .set_description(self.description.clone())
            .token_suffix(key.suffix());
        if let Some(user) = &self.user_id {
            builder = builder.user(user.clone());
        }
        builder.build()
    }

    /// An organization-scoped key for `organization_id`.
    pub fn new(organization_id: impl Into<String>) -> Self {
        Self {
            organization_id: organization_id.into(),
            ..Self::default()
        }
    }
    /// Scopes the key to a user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
    /// Adds a custom claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.custom_claims.insert(name.into(), value.into());
        self
    }
    /// Sets the expiry.
    pub fn expiry(mut self, expiry: OffsetDateTime) -> Self {
        self.expiry = Some(expiry);
        self
    }
    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Checks Scalekit's documented limits.
    pub fn check(&self) -> Result<(), LimitError> {
        if self.organization_id.trim().is_empty() {
            return Err(LimitError::MissingOrganization);
        }
        check_user(self.user_id.as_deref())?;
        check_claims(&self.custom_claims)?;
        check_description(self.description.as_deref())?;
        if self
            .expiry
            .is_some_and(|expiry| expiry <= OffsetDateTime::now_utc())
        {
            return Err(LimitError::ExpiryInPast);
        }
        Ok(())
    }
}

/// A freshly minted key. The plain key exists only here: show it to its owner once.
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedToken {
    /// The plain key (redacted in `Debug`).
    pub key: ApiKey,
    /// The key's id.
    pub token_id: String,
    /// The key's facts.
    pub info: TokenInfo,
}

impl CreatedToken {
    /// Assembles a created token.
    pub fn new(key: ApiKey, token_id: String, info: TokenInfo) -> Self {
        Self {
            key,
            token_id,
            info,
        }
    }
}

/// Which keys to list: the active keys of an organization, optionally of one user.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[must_use]
pub struct ListTokens {
    /// The organization (required, `org_...`).
    pub organization_id: String,
    /// Only this user's keys.
    pub user_id: Option<String>,
    /// Keys per page (1..=30; `None`: 10).
    pub page_size: Option<u32>,
    /// The cursor from a previous page.
    pub page_token: Option<String>,
}

impl ListTokens {
    /// The first page of `organization_id`'s keys.
    pub fn new(organization_id: impl Into<String>) -> Self {
        Self {
            organization_id: organization_id.into(),
            ..Self::default()
        }
    }
    /// Only this user's keys.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }
    /// Keys per page.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size);
        self
    }
    /// Continues after a previous page.
    pub fn page_token(mut self, page_token: impl Into<String>) -> Self {
        self.page_token = Some(page_token.into());
        self
    }

    /// Checks Scalekit's documented limits.
    pub fn check(&self) -> Result<(), LimitError> {
        if self.organization_id.is_empty() {
            return Err(LimitError::MissingOrganization);
        }
        if !self.organization_id.starts_with("org_") || self.organization_id.chars().count() > 32 {
            return Err(LimitError::BadOrganization);
        }
        check_user(self.user_id.as_deref())?;
        match self.page_size {
            Some(size) if size > MAX_PAGE_SIZE => Err(LimitError::PageSizeTooLarge(size)),
            _ => Ok(()),
        }
    }

    /// The page size to use.
    pub fn effective_page_size(&self) -> u32 {
        match self.page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(size) => size.min(MAX_PAGE_SIZE),
        }
    }
}

/// One page of keys.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TokenPage {
    /// The keys on this page (never the plain keys).
    pub tokens: Vec<TokenInfo>,
    /// How many keys match in all.
    pub total_count: u32,
    /// The cursor of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// The cursor of the previous page; `None` on the first page.
    pub prev_page_token: Option<String>,
}

impl TokenPage {
    /// Assembles a page.
    pub fn new(
        tokens: Vec<TokenInfo>,
        total_count: u32,
        next_page_token: Option<String>,
        prev_page_token: Option<String>,
    ) -> Self {
        Self {
            tokens,
            total_count,
            next_page_token,
            prev_page_token,
        }
    }
}

/// Changes to an active key. Claims sent replace the whole claim map (what Scalekit does, in
/// spite of its docs); an absent field leaves that part unchanged.
#[derive(Clone, PartialEq, Eq, Default)]
#[must_use]
pub struct UpdateToken {
    /// The key or its token id.
    pub token: String,
    /// `Some("")` clears the description; `None` leaves it.
    pub description: Option<String>,
    /// The new claim map; `None` leaves the claims.
    pub custom_claims: Option<BTreeMap<String, String>>,
}

impl fmt::Debug for UpdateToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `token` may be a plain key: never print it.
        f.debug_struct("UpdateToken")
            .field("token", &redacted_token_ref(&self.token))
            .field("description", &self.description)
            .field("custom_claims", &self.custom_claims)
            .finish()
    }
}

impl UpdateToken {
    /// Changes the key (or token id) `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            ..Self::default()
        }
    }
    /// Sets the description (`""` clears it).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
    /// Replaces the claims.
    pub fn custom_claims(mut self, claims: BTreeMap<String, String>) -> Self {
        self.custom_claims = Some(claims);
        self
    }

    /// Checks Scalekit's documented limits.
    pub fn check(&self) -> Result<(), LimitError> {
        if self.token.is_empty() {
            return Err(LimitError::MissingToken);
        }
        if let Some(claims) = &self.custom_claims {
            check_claims(claims)?;
        }
        check_description(self.description.as_deref())
    }
}

/// How to print a key-or-id argument: always as a fingerprint, since ids are opaque here and
/// the value may be a plain key.
fn redacted_token_ref(token: &str) -> String {
    format!("[key or id {}]", Fingerprint::of(token))
}

/// `true` for a plausible user id: 1 to [`MAX_USER_ID_LEN`] printable ASCII characters other
/// than `"`, `'`, `` ` `` and `\` (Scalekit's `usr_63261492986167383`, and the ids identity
/// providers give: `auth0|5f7c…`, `google-oauth2|1043…`, `ann+keys@example.com`). User ids
/// become rate-limit keys, Redis keys and log fields: no spaces, quotes, backslashes or control
/// characters.
///
/// ```
/// use axum_api_key::keys::is_user_id;
///
/// assert!(is_user_id("usr_63261492986167383"));
/// assert!(is_user_id("auth0|5f7c8ec7c33c6c004bbafe82"));
/// assert!(!is_user_id("usr_1\nforged"));
/// assert!(!is_user_id(""));
/// ```
pub fn is_user_id(user_id: &str) -> bool {
    (1..=MAX_USER_ID_LEN).contains(&user_id.len())
        && user_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"'`\\".contains(&b))
}

fn check_user(user_id: Option<&str>) -> Result<(), LimitError> {
    match user_id {
        Some(user_id) if !is_user_id(user_id) => Err(LimitError::BadUserId),
        _ => Ok(()),
    }
}

fn check_claims(claims: &BTreeMap<String, String>) -> Result<(), LimitError> {
    if claims.len() > MAX_CLAIMS {
        return Err(LimitError::TooManyClaims(claims.len()));
    }
    for (name, value) in claims {
        let name_len = name.chars().count();
        if name_len == 0 || name_len > MAX_CLAIM_NAME_LEN {
            return Err(LimitError::BadClaimName(name.clone()));
        }
        let value_len = value.chars().count();
        if value_len == 0 || value_len > MAX_CLAIM_VALUE_LEN {
            return Err(LimitError::BadClaimValue(name.clone()));
        }
    }
    Ok(())
}

fn check_description(description: Option<&str>) -> Result<(), LimitError> {
    match description.map(|d| d.chars().count()) {
        Some(len) if len > MAX_DESCRIPTION_LEN => Err(LimitError::DescriptionTooLong(len)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_plain() {
        for good in [
            "usr_63261492986167383",
            "usr_1",
            "a",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            "google-oauth2|104300000000000000001",
            "ann+keys@example.com",
            "samlp|acme|ann@example.com",
            &"u".repeat(MAX_USER_ID_LEN),
        ] {
            assert!(
                CreateToken::new("org_1").user(good).check().is_ok(),
                "{good}"
            );
            assert!(
                ListTokens::new("org_1").user(good).check().is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "usr_1\nINFO forged",
            "usr 1",
            "usr_\"1",
            "usr_'1",
            "usr_\\1",
            "usr_\t1",
            "usr_é",
            &"u".repeat(MAX_USER_ID_LEN + 1),
            &"u".repeat(16 * 1024),
        ] {
            assert_eq!(
                CreateToken::new("org_1").user(bad).check(),
                Err(LimitError::BadUserId),
                "{bad:?}"
            );
            assert_eq!(
                ListTokens::new("org_1").user(bad).check(),
                Err(LimitError::BadUserId),
                "{bad:?}"
            );
        }
        assert!(CreateToken::new("org_1").check().is_ok());
    }
}
