//! The wire format of a revocation message: small, versioned JSON that names a key by its
//! token id, never by the key or its fingerprint.
//!
//! ```json
//! {"v":1,"type":"revoked","token_id":"apit_...","origin":"<instance id>","at":"2026-05-01T12:00:00Z"}
//! ```
//!
//! Readers ignore fields they do not know, so later versions may add some; a message with
//! another `v` or `type` is ignored (and counted), never guessed at.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Largest message worth parsing: a real one is about 150 bytes.
const MAX_MESSAGE_LEN: usize = 4096;

/// Longest token id accepted (Scalekit's are about 22 characters).
const MAX_TOKEN_ID_LEN: usize = 128;

/// A revocation, as published on the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationMessage {
    /// The revoked key's id (`apit_...`).
    pub token_id: String,
    /// Who published it: lets an instance skip its own messages.
    pub origin: String,
    /// When it was published (informational: for logs and lag measurements).
    pub at: OffsetDateTime,
}

/// Why a message was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not JSON, not an object of the expected shape, a bad token id, or too large.
    #[error("malformed revocation message: {0}")]
    Malformed(String),
    /// Well-formed, but of a version or type this crate does not know.
    #[error("unknown revocation message (v={version}, type={kind:?})")]
    Unknown {
        /// Its `v`.
        version: u32,
        /// Its `type`.
        kind: String,
    },
}

#[derive(Serialize)]
struct Outgoing<'a> {
    v: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    token_id: &'a str,
    origin: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

#[derive(Deserialize)]
struct Incoming {
    v: u32,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

impl RevocationMessage {
    /// A message published now.
    pub fn now(token_id: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            token_id: token_id.into(),
            origin: origin.into(),
            at: OffsetDateTime::now_utc(),
        }
    }

    /// The JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(&Outgoing {
            v: VERSION,
            kind: "revoked",
            token_id: &self.token_id,
            origin: &self.origin,
            at: self.at,
        })
        // A struct of strings and a timestamp always serialises.
        .unwrap_or_default()
    }

    /// Parses a message. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Rejected> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(Rejected::Malformed(format!("{} bytes", bytes.len())));
        }
        let incoming: Incoming = serde_json::from_slice(bytes)
            .map_err(|error| Rejected::Malformed(error.to_string()))?;
        if incoming.v != VERSION || incoming.kind != "revoked" {
            return Err(Rejected::Unknown {
                version: incoming.v,
                kind: incoming.kind.chars().take(32).collect(),
            });
        }
        let token_id = incoming
            .token_id
            .filter(|id| is_token_id(id))
            .ok_or_else(|| Rejected::Malformed("missing or invalid token_id".into()))?;
        let at = match incoming.at {
            Some(at) => OffsetDateTime::parse(&at, &Rfc3339)
                .map_err(|error| Rejected::Malformed(format!("at: {error}")))?,
            None => return Err(Rejected::Malformed("missing at".into())),
        };
        Ok(Self {
            token_id,
            origin: incoming.origin.unwrap_or_default(),
            at,
        })
    }
}

/// `apit_` and a few safe characters: anything else is not an id (and must not reach logs).
fn is_token_id(id: &str) -> bool {
    id.len() <= MAX_TOKEN_ID_LEN
        && id.len() > "apit_".len()
        && id.starts_with("apit_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let message = RevocationMessage::now("apit_123", "host-1");
        let text = message.encode();
        assert!(text.starts_with(
            r#"{"v":1,"type":"revoked","token_id":"apit_123","origin":"host-1","at":""#
        ));
        let decoded = RevocationMessage::decode(text.as_bytes()).unwrap();
        assert_eq!(decoded.token_id, "apit_123");
        assert_eq!(decoded.origin, "host-1");
        assert_eq!(decoded.at.unix_timestamp(), message.at.unix_timestamp());
    }

    #[test]
    fn ignores_extra_fields() {
        let text = r#"{"v":1,"type":"revoked","token_id":"apit_1","origin":"o","at":"2026-01-01T00:00:00Z","reason":"x"}"#;
        assert_eq!(
            RevocationMessage::decode(text.as_bytes()).unwrap().token_id,
            "apit_1"
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"not json",
            b"\xff\xfe",
            b"[]",
            b"{}",
            b"null",
            br#"{"v":"1","type":"revoked"}"#,
            br#"{"v":1,"type":"revoked","origin":"o","at":"2026-01-01T00:00:00Z"}"#,
            br#"{"v":1,"type":"revoked","token_id":"sk_live_secret","at":"2026-01-01T00:00:00Z"}"#,
            br#"{"v":1,"type":"revoked","token_id":"apit_1","at":"yesterday"}"#,
            br#"{"v":1,"type":"revoked","token_id":"apit_1 x","at":"2026-01-01T00:00:00Z"}"#,
        ] {
            assert!(
                matches!(RevocationMessage::decode(bad), Err(Rejected::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            RevocationMessage::decode(&vec![b' '; MAX_MESSAGE_LEN + 1]),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn unknown_versions_and_types_are_told_apart() {
        for text in [
            r#"{"v":2,"type":"revoked","token_id":"apit_1","at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"type":"created","token_id":"apit_1","at":"2026-01-01T00:00:00Z"}"#,
        ] {
            assert!(matches!(
                RevocationMessage::decode(text.as_bytes()),
                Err(Rejected::Unknown { .. })
            ));
        }
    }
}
