//! What Scalekit's keys and ids look like: the one place that knows.
//!
//! Scalekit's validate call accepts a key **or its token id** (`apit_...`), and ids are public
//! (logs, lists, events): a layer in front of Scalekit must refuse them as keys, locally. Its
//! keys are Base62 Branca tokens, at least 61 characters (`scalekit-wire.md` §7).

use crate::request::KeyFormat;

/// The prefix of Scalekit's token ids.
pub const TOKEN_ID_PREFIX: &str = "apit_";

/// The longest token id believed (real ones have about 17 digits).
const MAX_TOKEN_ID_LEN: usize = 64;

/// The shortest Branca token in Base62 (45 bytes).
const MIN_KEY_LEN: usize = 61;

/// Scalekit's key shape: Base62, 61 to 512 characters, token ids refused by name.
///
/// ```
/// use axum_api_key::request::KeyRejection;
/// use axum_api_key::scalekit::shape;
///
/// let format = shape::key_format();
/// assert!(format.check(&"a1B2".repeat(20)).is_ok());
/// assert_eq!(format.check("apit_123456789012345"), Err(KeyRejection::TokenId));
/// assert_eq!(format.check(&format!("sk_live_{}", "a".repeat(60))), Err(KeyRejection::BadCharacter));
/// ```
pub const fn key_format() -> KeyFormat {
    KeyFormat::base62()
        .with_length(MIN_KEY_LEN, KeyFormat::DEFAULT_MAX_LEN)
        .refusing_ids(TOKEN_ID_PREFIX)
}

/// `true` for a well-formed token id: `apit_` and 1 to 59 ASCII letters or digits.
///
/// ```
/// use axum_api_key::scalekit::shape::is_token_id;
///
/// assert!(is_token_id("apit_71234567890123456"));
/// assert!(!is_token_id("apit_"));
/// assert!(!is_token_id("apit_1\nforged log line"));
/// ```
pub fn is_token_id(value: &str) -> bool {
    value.len() <= MAX_TOKEN_ID_LEN
        && value
            .strip_prefix(TOKEN_ID_PREFIX)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A new token id in Scalekit's shape (`apit_` and 17 digits), for the stores that emulate it.
pub(crate) fn new_token_id() -> String {
    let digits: u64 = rand::random_range(10_000_000_000_000_000..100_000_000_000_000_000);
    format!("{TOKEN_ID_PREFIX}{digits}")
}

/// How to print a key-or-id argument: token ids as they are, anything else (a key) as its
/// fingerprint.
#[cfg(feature = "scalekit")]
pub(crate) fn redacted_ref(key_or_id: &str) -> String {
    if is_token_id(key_or_id) {
        key_or_id.to_owned()
    } else {
        format!("[api key {}]", crate::request::Fingerprint::of(key_or_id))
    }
}
