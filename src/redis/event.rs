//! The wire format of the feed's messages: small, versioned JSON that names a key by its
//! token id, never by the key or its fingerprint. Two types: a revocation, and an update (the
//! key's facts changed, its cached answers are stale; the key itself is still valid).
//!
//! ```json
//! {"v":1,"type":"revoked","token_id":"<token id>","origin":"<instance id>","at":"2026-05-01T12:00:00Z"}
//! {"v":1,"type":"updated","token_id":"<token id>","origin":"<instance id>","at":"2026-05-01T12:00:00Z"}
//! ```
//!
//! Readers ignore fields they do not know, so later versions may add some; a message with
//! another `v` or `type` is ignored (and counted), never guessed at. (Releases that predate
//! `updated` ignore it that way: they see updates within their cache TTL, as before.)

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The version this crate writes and reads.
pub const VERSION: u32 = 1;

/// Largest message worth parsing: a real one is about 150 bytes.
const MAX_MESSAGE_LEN: usize = 4096;

/// Longest token id accepted. Ids are short (Scalekit's are 22 characters) and keys are long
/// (Scalekit's are 61 or more): a longer "id" is more likely a key pasted into an event than an
/// id, and is refused so it never reaches a log.
const MAX_TOKEN_ID_LEN: usize = 40;

/// A revocation, as published on the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationMessage {
    /// The revoked key's id.
    pub token_id: String,
    /// Who published it: lets an instance skip its own messages.
    pub origin: String,
    /// When it was published (informational: for logs and lag measurements).
    pub at: OffsetDateTime,
}

/// Longest origin shown in logs: shorter than any Scalekit key (61 characters at least), so a
/// key pasted into `origin` is never logged whole.
pub(super) const MAX_ORIGIN_LEN: usize = 48;

/// Why a message was not applied.
///
/// Both variants are safe to log: they hold only text this crate wrote (a category, a
/// position, a length) or validated, never a value copied from the message, which may be
/// anything its publisher pasted, a key included.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not JSON, not an object of the expected shape, a bad token id, or too large. The text
    /// names what was wrong and where (`"syntax error at line 1, column 7"`), never a value.
    #[error("malformed revocation message: {0}")]
    Malformed(String),
    /// Well-formed, but of a version or type this crate does not know (or, from
    /// [`RevocationMessage::decode`], an update rather than a revocation).
    #[error("unknown revocation message (v={version}, type={kind})")]
    Unknown {
        /// Its `v`.
        version: u32,
        /// Its `type` when it is one this crate knows (`"revoked"`, `"updated"`), else
        /// `"<other>"`: a publisher's own words never reach a log.
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

/// What a message announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The key was revoked: refuse it.
    Revoked,
    /// The key's facts changed: forget its cached answers.
    Updated,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Revoked => "revoked",
            Kind::Updated => "updated",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Kind::Revoked, Kind::Updated]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
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
        self.encode_as(Kind::Revoked)
    }

    /// The JSON text of a message of `kind` about this key.
    pub(super) fn encode_as(&self, kind: Kind) -> String {
        serde_json::to_string(&Outgoing {
            v: VERSION,
            kind: kind.as_str(),
            token_id: &self.token_id,
            origin: &self.origin,
            at: self.at,
        })
        // A struct of strings and a timestamp always serialises.
        .unwrap_or_default()
    }

    /// Parses a revocation; an update is [`Rejected::Unknown`] here (the feed reads both with
    /// its own decoder). Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Rejected> {
        match Self::decode_any(bytes)? {
            (Kind::Revoked, message) => Ok(message),
            (kind, _) => Err(Rejected::Unknown {
                version: VERSION,
                kind: kind.as_str().to_owned(),
            }),
        }
    }

    /// Parses a message of either kind. Never panics, whatever the bytes.
    pub(super) fn decode_any(bytes: &[u8]) -> Result<(Kind, Self), Rejected> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(Rejected::Malformed(format!(
                "{} bytes (at most {MAX_MESSAGE_LEN})",
                bytes.len()
            )));
        }
        // serde_json's own message quotes the offending value: only its category and position
        // are kept.
        let incoming: Incoming =
            serde_json::from_slice(bytes).map_err(|error| Rejected::Malformed(describe(&error)))?;
        let known = Kind::parse(&incoming.kind);
        let kind = match known {
            Some(kind) if incoming.v == VERSION => kind,
            _ => {
                return Err(Rejected::Unknown {
                    version: incoming.v,
                    kind: known.map_or("<other>", Kind::as_str).to_owned(),
                });
            }
        };
        let token_id = incoming
            .token_id
            .filter(|id| is_token_id(id))
            .ok_or_else(|| Rejected::Malformed("missing or invalid token_id".into()))?;
        let at = match incoming.at {
            Some(at) => OffsetDateTime::parse(&at, &Rfc3339)
                .map_err(|_| Rejected::Malformed("at is not an RFC 3339 timestamp".into()))?,
            None => return Err(Rejected::Malformed("missing at".into())),
        };
        let message = Self {
            token_id,
            origin: incoming.origin.unwrap_or_default(),
            at,
        };
        Ok((kind, message))
    }
}

/// What a serde_json error says, without the value it quotes: the category and the position.
fn describe(error: &serde_json::Error) -> String {
    let category = match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong shape",
        serde_json::error::Category::Eof => "truncated",
    };
    format!(
        "{category} at line {}, column {}",
        error.line(),
        error.column()
    )
}

/// `origin` as it may be logged: itself when it is 1 to [`MAX_ORIGIN_LEN`] characters of
/// `[A-Za-z0-9._:-]` (what [`RedisRevocationsBuilder::origin`](super::RedisRevocationsBuilder::origin)
/// accepts), else `"<invalid>"`. No
/// newline, quote or control character of a publisher's making reaches a log line.
pub(super) fn loggable_origin(origin: &str) -> &str {
    if is_valid_origin(origin) {
        origin
    } else {
        "<invalid>"
    }
}

/// `true` for 1 to [`MAX_ORIGIN_LEN`] characters of `[A-Za-z0-9._:-]`.
pub(super) fn is_valid_origin(origin: &str) -> bool {
    (1..=MAX_ORIGIN_LEN).contains(&origin.len())
        && origin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 1 to [`MAX_TOKEN_ID_LEN`] letters, digits, `_` and `-`: anything else is not an id (and
/// must not reach logs). Ids are opaque here: what a store's ids look like is its own business.
pub(super) fn is_token_id(id: &str) -> bool {
    (1..=MAX_TOKEN_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let message = RevocationMessage::now("key_123", "host-1");
        let text = message.encode();
        assert!(text.starts_with(
            r#"{"v":1,"type":"revoked","token_id":"key_123","origin":"host-1","at":""#
        ));
        let decoded = RevocationMessage::decode(text.as_bytes()).unwrap();
        assert_eq!(decoded.token_id, "key_123");
        assert_eq!(decoded.origin, "host-1");
        assert_eq!(decoded.at.unix_timestamp(), message.at.unix_timestamp());
    }

    #[test]
    fn ignores_extra_fields() {
        let text = r#"{"v":1,"type":"revoked","token_id":"key_1","origin":"o","at":"2026-01-01T00:00:00Z","reason":"x"}"#;
        assert_eq!(
            RevocationMessage::decode(text.as_bytes()).unwrap().token_id,
            "key_1"
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
            br#"{"v":1,"type":"revoked","token_id":"sk_live_0123456789abcdef0123456789abcdef0123","at":"2026-01-01T00:00:00Z"}"#,
            br#"{"v":1,"type":"revoked","token_id":"key_1","at":"yesterday"}"#,
            br#"{"v":1,"type":"revoked","token_id":"key_1 x","at":"2026-01-01T00:00:00Z"}"#,
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

    /// A key-shaped secret (Scalekit keys are 61+ Base62 characters).
    const SECRET: &str = "sk9live9Zx8Yw7Vu6Ts5Rq4Po3Nm2Lk1Jh0GfEdCbA9z8y7x6w5v4u3t2s1r0q";

    #[test]
    fn a_rejection_never_repeats_what_the_message_said() {
        let at = "2026-01-01T00:00:00Z";
        let payloads = [
            SECRET.to_owned(),
            format!(r#"{{"v":"{SECRET}","type":"revoked"}}"#),
            format!(r#"{{"v":1,"type":"{SECRET}","token_id":"key_1","at":"{at}"}}"#),
            format!(r#"{{"v":2,"type":"{SECRET}","token_id":"key_1","at":"{at}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":"{SECRET}","at":"{at}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":"key_{SECRET}!","at":"{at}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":"key_1","at":"{SECRET}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":["{SECRET}"],"at":"{at}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":{SECRET},"at":"{at}"}}"#),
            format!(r#"{{"v":1,"type":"revoked","token_id":"key_1","origin":{{"{SECRET}":1}}}}"#),
            format!(r#"{{"v":1,"type":"revoked","{SECRET}":1}}"#),
            format!(
                r#"{{"v":1,"type":"revoked","token_id":"key_1","at":"{at}","origin":"{SECRET}""#
            ),
            format!(r#"{{"v":1,"type":"revoked","token_id":"key_1","at":"{at}","v":"{SECRET}"}}"#),
        ];
        for payload in &payloads {
            let rejected =
                RevocationMessage::decode(payload.as_bytes()).expect_err(payload.as_str());
            for shown in [rejected.to_string(), format!("{rejected:?}")] {
                // Any 12-character piece of the secret would be a leak.
                for piece in SECRET.as_bytes().windows(12) {
                    let piece = std::str::from_utf8(piece).unwrap();
                    assert!(!shown.contains(piece), "{payload} -> {shown}");
                }
            }
        }
    }

    #[test]
    fn malformed_says_what_and_where() {
        let rejected = RevocationMessage::decode(br#"{"v":1,"type":"revoked",}"#).unwrap_err();
        assert_eq!(
            rejected,
            Rejected::Malformed("syntax error at line 1, column 25".into())
        );
        let rejected = RevocationMessage::decode(br#"{"v":"one"}"#).unwrap_err();
        assert_eq!(
            rejected,
            Rejected::Malformed("wrong shape at line 1, column 10".into())
        );
    }

    #[test]
    fn only_plain_bounded_origins_are_loggable() {
        for good in [
            "host-1",
            "12345-0a1b2c3d",
            "pod.ns.svc:8080",
            &"a".repeat(MAX_ORIGIN_LEN),
        ] {
            assert_eq!(loggable_origin(good), good);
        }
        for bad in [
            "",
            "evil\nINFO forged line",
            "evil\r\n",
            "a b",
            "quote\"",
            "\u{1b}[31m",
            "ünïcode",
            &"a".repeat(MAX_ORIGIN_LEN + 1),
            &"x".repeat(4000),
            SECRET,
        ] {
            assert_eq!(loggable_origin(bad), "<invalid>", "{bad:?}");
        }
    }

    #[test]
    fn updates_round_trip_and_are_not_revocations() {
        let message = RevocationMessage::now("key_123", "host-1");
        let text = message.encode_as(Kind::Updated);
        assert!(text.starts_with(r#"{"v":1,"type":"updated","token_id":"key_123""#));
        let (kind, decoded) = RevocationMessage::decode_any(text.as_bytes()).unwrap();
        assert_eq!(
            (kind, decoded.token_id.as_str()),
            (Kind::Updated, "key_123")
        );
        // Read as a revocation, an update is refused, never taken for one.
        assert_eq!(
            RevocationMessage::decode(text.as_bytes()),
            Err(Rejected::Unknown {
                version: 1,
                kind: "updated".into()
            })
        );
        let (kind, _) = RevocationMessage::decode_any(message.encode().as_bytes()).unwrap();
        assert_eq!(kind, Kind::Revoked);
        // An update is held to the same rules as a revocation.
        let bad = br#"{"v":1,"type":"updated","token_id":"key_1 x","at":"2026-01-01T00:00:00Z"}"#;
        assert!(matches!(
            RevocationMessage::decode_any(bad),
            Err(Rejected::Malformed(_))
        ));
    }

    #[test]
    fn unknown_versions_and_types_are_told_apart() {
        for text in [
            r#"{"v":2,"type":"revoked","token_id":"key_1","at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":1,"type":"created","token_id":"key_1","at":"2026-01-01T00:00:00Z"}"#,
            r#"{"v":2,"type":"updated","token_id":"key_1","at":"2026-01-01T00:00:00Z"}"#,
        ] {
            assert!(matches!(
                RevocationMessage::decode(text.as_bytes()),
                Err(Rejected::Unknown { .. })
            ));
            assert!(matches!(
                RevocationMessage::decode_any(text.as_bytes()),
                Err(Rejected::Unknown { .. })
            ));
        }
    }
}
