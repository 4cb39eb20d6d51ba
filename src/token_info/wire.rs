//! `TokenInfo` as JSON: Scalekit's field names and shapes, whatever the in-memory layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::{Extra, TokenInfo, TokenInfoBuilder};

/// `TokenInfo` as JSON: the same field names and shapes as before it was compacted.
#[derive(Serialize)]
struct WireOut<'a> {
    token_id: &'a str,
    organization_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization_external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_external_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    custom_claims: ClaimsOut<'a>,
    roles: &'a [Box<str>],
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    expiry: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    created_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_suffix: Option<&'a str>,
}

/// The claims as a JSON object.
struct ClaimsOut<'a>(&'a TokenInfo);

impl Serialize for ClaimsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.claims())
    }
}

#[derive(Deserialize)]
struct WireIn {
    token_id: Box<str>,
    organization_id: Box<str>,
    #[serde(default)]
    organization_external_id: Option<Box<str>>,
    #[serde(default)]
    user_id: Option<Box<str>>,
    #[serde(default)]
    user_external_id: Option<Box<str>>,
    #[serde(default)]
    email: Option<Box<str>>,
    #[serde(default)]
    custom_claims: BTreeMap<Box<str>, Box<str>>,
    #[serde(default)]
    roles: Vec<Box<str>>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expiry: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    #[serde(default)]
    description: Option<Box<str>>,
    #[serde(default)]
    token_suffix: Option<Box<str>>,
}

impl Serialize for TokenInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireOut {
            token_id: &self.token_id,
            organization_id: &self.organization_id,
            organization_external_id: self.organization_external_id(),
            user_id: self.user_id(),
            user_external_id: self.user_external_id(),
            email: self.email(),
            custom_claims: ClaimsOut(self),
            roles: &self.roles,
            expiry: self.expiry,
            created_at: self.created_at(),
            description: self.description(),
            token_suffix: self.token_suffix(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TokenInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireIn::deserialize(deserializer)?;
        Ok(TokenInfoBuilder {
            token_id: wire.token_id,
            organization_id: wire.organization_id,
            user_id: wire.user_id,
            token_suffix: wire.token_suffix,
            expiry: wire.expiry,
            claims: wire.custom_claims,
            roles: wire.roles,
            extra: Extra {
                organization_external_id: wire.organization_external_id,
                user_external_id: wire.user_external_id,
                email: wire.email,
                description: wire.description,
                created_at: wire.created_at,
            },
        }
        .build())
    }
}
