//! Scalekit's REST JSON, as serde types.
//!
//! Requests are written snake_case, as Scalekit's REST clients do. Answers are read tolerantly
//! (scalekit-wire.md §3.2): every field is defaulted, camelCase names are accepted too, `""` and
//! `null` mean "absent", timestamps are RFC 3339 with any fraction, unknown fields are ignored.
//! A field of the wrong type is still an error: a `token_id` that is a number is not a token.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::keys::{CreateToken, UpdateToken};
use crate::token_info::TokenInfo;

/// The body of `POST /api/v1/tokens`: the inner `CreateToken` object (`body: "token"`), not a
/// `{"token": …}` wrapper, which the gateway would silently ignore.
#[derive(Debug, Serialize)]
pub(crate) struct CreateBody<'a> {
    organization_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    custom_claims: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

impl<'a> CreateBody<'a> {
    pub(crate) fn new(request: &'a CreateToken) -> Self {
        Self {
            organization_id: &request.organization_id,
            user_id: request.user_id.as_deref(),
            custom_claims: &request.custom_claims,
            expiry: request.expiry.map(format_utc),
            description: request.description.as_deref(),
        }
    }
}

/// RFC 3339 in UTC with a `Z`, whole seconds (what protobuf's Timestamp JSON expects).
pub(crate) fn format_utc(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// The body of validate and invalidate: `{"token": "<key or token id>"}`.
#[derive(Serialize)]
pub(crate) struct TokenBody<'a> {
    pub(crate) token: &'a str,
}

/// The body of `POST /api/v1/tokens:update`.
#[derive(Serialize)]
pub(crate) struct UpdateBody<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_claims: Option<&'a BTreeMap<String, String>>,
}

impl<'a> UpdateBody<'a> {
    pub(crate) fn new(request: &'a UpdateToken) -> Self {
        Self {
            token: &request.token,
            description: request.description.as_deref(),
            custom_claims: request.custom_claims.as_ref(),
        }
    }
}

/// Scalekit's `Token` message.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireToken {
    #[serde(alias = "tokenId", deserialize_with = "opt_string")]
    token_id: Option<String>,
    #[serde(alias = "organizationId", deserialize_with = "opt_string")]
    organization_id: Option<String>,
    #[serde(alias = "organizationExternalId", deserialize_with = "opt_string")]
    organization_external_id: Option<String>,
    #[serde(alias = "userId", deserialize_with = "opt_string")]
    user_id: Option<String>,
    #[serde(alias = "userExternalId", deserialize_with = "opt_string")]
    user_external_id: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    email: Option<String>,
    #[serde(alias = "customClaims", deserialize_with = "null_default")]
    custom_claims: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    roles: Vec<String>,
    #[serde(deserialize_with = "opt_timestamp")]
    expiry: Option<OffsetDateTime>,
    #[serde(alias = "createdAt", deserialize_with = "opt_timestamp")]
    created_at: Option<OffsetDateTime>,
    #[serde(deserialize_with = "opt_string")]
    description: Option<String>,
    #[serde(alias = "tokenSuffix", deserialize_with = "opt_string")]
    token_suffix: Option<String>,
}

impl WireToken {
    /// The crate's [`TokenInfo`]; `Err` when the two fields every token has are missing.
    pub(crate) fn into_info(self) -> Result<TokenInfo, &'static str> {
        let token_id = self.token_id.ok_or("token_info without token_id")?;
        let organization_id = self
            .organization_id
            .ok_or("token_info without organization_id")?;
        let mut builder = TokenInfo::builder(token_id, organization_id);
        if let Some(v) = self.organization_external_id {
            builder = builder.organization_external_id(v);
        }
        if let Some(v) = self.user_id {
            builder = builder.user(v);
        }
        if let Some(v) = self.user_external_id {
            builder = builder.user_external_id(v);
        }
        if let Some(v) = self.email {
            builder = builder.email(v);
        }
        for (name, value) in self.custom_claims {
            builder = builder.claim(name, value);
        }
        for role in self.roles {
            builder = builder.role(role);
        }
        if let Some(v) = self.expiry {
            builder = builder.expiry(v);
        }
        if let Some(v) = self.created_at {
            builder = builder.created_at(v);
        }
        if let Some(v) = self.description {
            builder = builder.description(v);
        }
        if let Some(v) = self.token_suffix {
            builder = builder.token_suffix(v);
        }
        Ok(builder.build())
    }
}

/// `{"token_info": {...}}`: the answer of validate and update.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TokenInfoResponse {
    #[serde(alias = "tokenInfo")]
    pub(crate) token_info: Option<WireToken>,
}

/// The answer of create.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct CreateResponse {
    #[serde(deserialize_with = "opt_string")]
    pub(crate) token: Option<String>,
    #[serde(alias = "tokenId", deserialize_with = "opt_string")]
    pub(crate) token_id: Option<String>,
    #[serde(alias = "tokenInfo")]
    pub(crate) token_info: Option<WireToken>,
}

/// The answer of list.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListResponse {
    #[serde(deserialize_with = "null_default")]
    pub(crate) tokens: Vec<WireToken>,
    #[serde(alias = "totalCount", deserialize_with = "lenient_u32")]
    pub(crate) total_count: u32,
    #[serde(alias = "nextPageToken", deserialize_with = "opt_string")]
    pub(crate) next_page_token: Option<String>,
    #[serde(alias = "prevPageToken", deserialize_with = "opt_string")]
    pub(crate) prev_page_token: Option<String>,
}

/// The answer of `POST /oauth/token`.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct AccessTokenResponse {
    #[serde(deserialize_with = "opt_string")]
    pub(crate) access_token: Option<String>,
    /// A number, or (Java's model) a numeric string.
    #[serde(deserialize_with = "lenient_seconds")]
    pub(crate) expires_in: Option<u64>,
}

/// An OAuth2 error body (`error`, `error_description`).
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct OAuthError {
    #[serde(deserialize_with = "opt_string")]
    pub(crate) error: Option<String>,
    #[serde(deserialize_with = "opt_string")]
    pub(crate) error_description: Option<String>,
}

/// A string where `null`, absence and `""` all mean `None` (protojson writes unset plain
/// strings as `""`).
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// A map or list where `null` means empty.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn opt_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("bad timestamp {text:?}: {e}"))),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    Float(f64),
    Text(String),
}

fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        None => None,
        Some(NumberOrString::Number(n)) => Some(n),
        // `as` saturates: a negative or absurd lifetime becomes 0 or u64::MAX, both handled
        // by the cache's clamping.
        Some(NumberOrString::Float(f)) => Some(f as u64),
        // A negative or fractional string is a lifetime too (0 for a negative one, which the
        // token cache handles); only a non-number means "not said".
        Some(NumberOrString::Text(text)) => {
            let text = text.trim();
            text.parse().ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as u64)
            })
        }
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(NumberOrString::Text(text)) => text.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protojson_token_decodes() {
        let json = r#"{"token_info":{"token_id":"apit_1","organization_id":"org_1",
            "organization_external_id":"","custom_claims":{"scope":"read"},
            "created_at":"2026-03-02T10:15:30.123Z","token_suffix":"wXyZ","roles":[],
            "unknown_field":{"x":1}}}"#;
        let info = serde_json::from_str::<TokenInfoResponse>(json)
            .unwrap()
            .token_info
            .unwrap()
            .into_info()
            .unwrap();
        assert_eq!(info.token_id(), "apit_1");
        assert_eq!(info.organization_external_id(), None);
        assert_eq!(info.claim("scope"), Some("read"));
        assert_eq!(info.created_at().unwrap().millisecond(), 123);
        assert_eq!(info.user_id(), None);
    }

    #[test]
    fn camel_case_nulls_and_fractions_decode() {
        let json = r#"{"tokenInfo":{"tokenId":"apit_2","organizationId":"org_2","userId":"usr_1",
            "customClaims":null,"roles":null,"expiry":"2030-01-01T00:00:00.123456789Z",
            "createdAt":null,"description":""}}"#;
        let info = serde_json::from_str::<TokenInfoResponse>(json)
            .unwrap()
            .token_info
            .unwrap()
            .into_info()
            .unwrap();
        assert_eq!(info.user_id(), Some("usr_1"));
        assert_eq!(info.expiry().unwrap().nanosecond(), 123_456_789);
        assert_eq!(info.created_at(), None);
        assert_eq!(info.description(), None);
    }

    #[test]
    fn wrong_types_and_missing_ids_fail() {
        assert!(
            serde_json::from_str::<TokenInfoResponse>(r#"{"token_info":{"token_id":5}}"#).is_err()
        );
        let empty = serde_json::from_str::<TokenInfoResponse>(r#"{"token_info":{}}"#).unwrap();
        assert!(empty.token_info.unwrap().into_info().is_err());
    }

    #[test]
    fn expires_in_is_lenient() {
        let parse = |json: &str| {
            serde_json::from_str::<AccessTokenResponse>(json)
                .unwrap()
                .expires_in
        };
        assert_eq!(parse(r#"{"expires_in":86399}"#), Some(86399));
        assert_eq!(parse(r#"{"expires_in":"3600"}"#), Some(3600));
        assert_eq!(parse(r#"{"expires_in":"0"}"#), Some(0));
        assert_eq!(parse(r#"{"expires_in":"-5"}"#), Some(0));
        assert_eq!(parse(r#"{"expires_in":-5}"#), Some(0));
        assert_eq!(parse(r#"{"expires_in":"soon"}"#), None);
        assert_eq!(parse(r#"{"expires_in":null}"#), None);
        assert_eq!(parse(r#"{}"#), None);
    }

    #[test]
    fn create_body_is_flat_snake_case_utc() {
        let at = time::macros::datetime!(2026-12-31 23:59:59.5 +02:00);
        let request = CreateToken::new("org_1").user("usr_1").expiry(at);
        let json = serde_json::to_value(CreateBody::new(&request)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"organization_id":"org_1","user_id":"usr_1","expiry":"2026-12-31T21:59:59Z"})
        );
    }
}
