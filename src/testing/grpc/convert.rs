//! The fake's JSON (its REST answers) as protobuf messages, and back.

use std::collections::HashMap;

use prost::Message;
use serde_json::Value;

use crate::scalekit::grpc::convert::parse_timestamp;
use crate::scalekit::grpc::proto::tokens as pb;

pub(super) fn timestamp(value: Option<&Value>) -> Result<Option<prost_types::Timestamp>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_timestamp(text).map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

pub(super) fn string(value: Option<&Value>) -> Result<String, ()> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(()),
    }
}

pub(super) fn opt_string(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// The fake's protojson `Token` as the protobuf message.
pub(super) fn token(value: &Value) -> Result<pb::Token, ()> {
    let object = value.as_object().ok_or(())?;
    let claims = match object.get("custom_claims") {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or(())?.to_owned())))
            .collect::<Result<_, ()>>()?,
        Some(_) => return Err(()),
    };
    let roles = match object.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<_, ()>>()?,
        Some(_) => return Err(()),
    };
    Ok(pb::Token {
        token_id: string(object.get("token_id"))?,
        organization_id: string(object.get("organization_id"))?,
        organization_external_id: string(object.get("organization_external_id"))?,
        user_id: opt_string(object.get("user_id"))?,
        user_external_id: opt_string(object.get("user_external_id"))?,
        custom_claims: claims,
        expiry: timestamp(object.get("expiry"))?,
        created_at: timestamp(object.get("created_at"))?,
        description: opt_string(object.get("description"))?,
        token_suffix: string(object.get("token_suffix"))?,
        email: opt_string(object.get("email"))?,
        roles,
    })
}

pub(super) fn opt_token(value: Option<&Value>) -> Result<Option<pb::Token>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => token(v).map(Some),
    }
}

/// The protobuf answer of `method` from the REST answer's JSON; `None` if it does not fit.
pub(super) fn encode_answer(method: &str, json: &Value) -> Option<Vec<u8>> {
    let object = json.as_object()?;
    let encoded = match method {
        "CreateToken" => pb::CreateTokenResponse {
            token: string(object.get("token")).ok()?,
            token_id: string(object.get("token_id")).ok()?,
            token_info: opt_token(object.get("token_info")).ok()?,
        }
        .encode_to_vec(),
        "ValidateToken" => pb::ValidateTokenResponse {
            token_info: opt_token(object.get("token_info")).ok()?,
        }
        .encode_to_vec(),
        "UpdateToken" => pb::UpdateTokenResponse {
            token_info: opt_token(object.get("token_info")).ok()?,
        }
        .encode_to_vec(),
        "ListTokens" => pb::ListTokensResponse {
            tokens: match object.get("tokens") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => {
                    list.iter().map(token).collect::<Result<_, _>>().ok()?
                }
                Some(_) => return None,
            },
            total_count: object
                .get("total_count")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            next_page_token: string(object.get("next_page_token")).ok()?,
            prev_page_token: string(object.get("prev_page_token")).ok()?,
        }
        .encode_to_vec(),
        // google.protobuf.Empty
        "InvalidateToken" => Vec::new(),
        _ => return None,
    };
    Some(encoded)
}
