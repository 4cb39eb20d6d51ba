//! JSON (the REST shapes `ops.rs` speaks) to protobuf requests, and protobuf answers back to
//! JSON.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::scalekit::ScalekitError;
use crate::scalekit::transport::Call;

use super::pb;

pub(super) fn str_field(body: &Value, name: &str) -> String {
    body.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn opt_str_field(body: &Value, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_owned)
}

pub(super) fn claims_field(body: &Value) -> std::collections::HashMap<String, String> {
    body.get("custom_claims")
        .and_then(Value::as_object)
        .map(|claims| {
            claims
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn create_request(body: &Value) -> Result<pb::CreateTokenRequest, ScalekitError> {
    let expiry = match opt_str_field(body, "expiry") {
        Some(text) => {
            Some(parse_timestamp(&text).ok_or_else(|| ScalekitError::Decode("bad expiry".into()))?)
        }
        None => None,
    };
    Ok(pb::CreateTokenRequest {
        token: Some(pb::CreateToken {
            organization_id: str_field(body, "organization_id"),
            user_id: str_field(body, "user_id"),
            custom_claims: claims_field(body),
            expiry,
            description: str_field(body, "description"),
        }),
    })
}

pub(super) fn list_request(call: &Call<'_>) -> pb::ListTokensRequest {
    let get = |name: &str| {
        call.query
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    };
    pb::ListTokensRequest {
        organization_id: get("organization_id").unwrap_or_default(),
        user_id: get("user_id"),
        page_size: get("page_size").and_then(|s| s.parse().ok()).unwrap_or(0),
        page_token: get("page_token").unwrap_or_default(),
    }
}

pub(super) fn update_request(body: &Value) -> pb::UpdateTokenRequest {
    pb::UpdateTokenRequest {
        token: str_field(body, "token"),
        description: opt_str_field(body, "description"),
        custom_claims: claims_field(body),
    }
}

pub(super) fn timestamp_json(at: &prost_types::Timestamp) -> Result<Value, ScalekitError> {
    format_timestamp(at)
        .map(Value::String)
        .ok_or_else(|| ScalekitError::Decode("timestamp out of range".into()))
}

/// RFC 3339 text (the REST shape) as a protobuf `Timestamp`; `None` when it is not RFC 3339.
pub(crate) fn parse_timestamp(text: &str) -> Option<prost_types::Timestamp> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: i32::try_from(at.nanosecond()).ok()?,
    })
}

/// A protobuf `Timestamp` as RFC 3339 text; `None` when it is out of range.
pub(crate) fn format_timestamp(at: &prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A `Token` as protojson (`UseProtoNames`) would write it.
pub(crate) fn token_json(token: pb::Token) -> Result<Value, ScalekitError> {
    let mut object = Map::new();
    object.insert("token_id".into(), token.token_id.into());
    object.insert("organization_id".into(), token.organization_id.into());
    object.insert(
        "organization_external_id".into(),
        token.organization_external_id.into(),
    );
    let optional = [
        ("user_id", token.user_id),
        ("user_external_id", token.user_external_id),
        ("description", token.description),
        ("email", token.email),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            object.insert(name.into(), value.into());
        }
    }
    let claims: Map<String, Value> = token
        .custom_claims
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    object.insert("custom_claims".into(), Value::Object(claims));
    if let Some(at) = &token.expiry {
        object.insert("expiry".into(), timestamp_json(at)?);
    }
    if let Some(at) = &token.created_at {
        object.insert("created_at".into(), timestamp_json(at)?);
    }
    object.insert("token_suffix".into(), token.token_suffix.into());
    object.insert("roles".into(), token.roles.into());
    Ok(Value::Object(object))
}

pub(super) fn info_json(info: Option<pb::Token>) -> Result<Value, ScalekitError> {
    Ok(match info {
        Some(token) => json!({ "token_info": token_json(token)? }),
        None => json!({}),
    })
}

pub(super) fn create_json(answer: pb::CreateTokenResponse) -> Result<Value, ScalekitError> {
    let mut object = Map::new();
    object.insert("token".into(), answer.token.into());
    object.insert("token_id".into(), answer.token_id.into());
    if let Some(info) = answer.token_info {
        object.insert("token_info".into(), token_json(info)?);
    }
    Ok(Value::Object(object))
}

pub(super) fn list_json(answer: pb::ListTokensResponse) -> Result<Value, ScalekitError> {
    let tokens = answer
        .tokens
        .into_iter()
        .map(token_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "tokens": tokens,
        "total_count": answer.total_count.max(0),
        "next_page_token": answer.next_page_token,
        "prev_page_token": answer.prev_page_token,
    }))
}
