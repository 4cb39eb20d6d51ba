//! The API key as a secret value, its local format rules, and its keyed fingerprint.

use std::fmt;
use std::sync::LazyLock;

use siphasher::sip128::SipHasher24;
use zeroize::Zeroize;

use super::charset::{BASE62, BASE62_SEPARATORS, all_in};

/// A process-wide random key for [`Fingerprint`]s.
///
/// Fingerprints only need to be stable within one process (the cache and the logs of one
/// instance), so a fresh random key per process means a fingerprint seen in a log cannot be used
/// to test guesses of the key offline.
static FINGERPRINTER: LazyLock<SipHasher24> = LazyLock::new(|| {
    let mut key = [0u8; 16];
    rand::fill(&mut key);
    SipHasher24::new_with_key(&key)
});

/// An API key presented by a client.
///
/// The secret is never printed: `Debug` and `Display` show the [`Fingerprint`] only, and the
/// bytes are zeroed when the value is dropped. Use [`ApiKey::expose_secret`] where the plain key
/// must go over the wire (the validator's upstream call), and nowhere else.
///
/// ```
/// use axum_api_key::ApiKey;
///
/// let key = ApiKey::new("sk".repeat(40));
/// assert!(!format!("{key:?}").contains("sksk"));
/// assert_eq!(key.fingerprint(), ApiKey::new("sk".repeat(40)).fingerprint());
/// ```
pub struct ApiKey {
    secret: String,
    fingerprint: Fingerprint,
}

impl ApiKey {
    /// Wraps a key without checking its format (see [`KeyFormat::check`] for the checks the
    /// layer applies before this).
    pub fn new(secret: impl Into<String>) -> Self {
        let secret = secret.into();
        let fingerprint = Fingerprint::of(&secret);
        Self {
            secret,
            fingerprint,
        }
    }

    /// Wraps `secret` whose fingerprint is already known (the layer computes it from the
    /// request's header bytes, before any copy).
    pub(crate) fn with_fingerprint(secret: &str, fingerprint: Fingerprint) -> Self {
        Self {
            secret: secret.to_owned(),
            fingerprint,
        }
    }

    /// The plain key. Send it to the validator's upstream and nowhere else.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// The keyed fingerprint of this key: the cache key and the value to log.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The last four characters, as Scalekit reports them in `token_suffix`.
    ///
    /// Safe to log: four characters of a key of 61 or more Base62 characters leave well over 300
    /// bits unknown.
    pub fn suffix(&self) -> &str {
        let start = self
            .secret
            .char_indices()
            .rev()
            .nth(3)
            .map_or(0, |(index, _)| index);
        &self.secret[start..]
    }
}

impl Clone for ApiKey {
    fn clone(&self) -> Self {
        Self {
            secret: self.secret.clone(),
            fingerprint: self.fingerprint,
        }
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[api key {}]", self.fingerprint)
    }
}

/// A keyed hash of an API key: SipHash-2-4 with 128-bit output, under a key chosen at random
/// per process.
///
/// SipHash is a pseudo-random function built for exactly this: short inputs, a secret key, and
/// adversaries who choose the inputs. Without the process key nobody can link a fingerprint to a
/// key or craft two keys with the same fingerprint, so fingerprints are safe as cache keys and in
/// logs and metrics; an accidental collision among 128-bit outputs is out of reach (2^-64 at
/// 2^32 cached keys). It is also the cheapest keyed hash we measured on 77-byte keys: about
/// 0.6x the time of keyed BLAKE3 (`cargo bench --bench cache --features test-util`, group
/// `fingerprint`).
///
/// `Debug` and `Display` print the first 8 bytes in hex, enough to correlate log lines.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The fingerprint of `secret` under this process's fingerprint key.
    pub fn of(secret: &str) -> Self {
        Self(FINGERPRINTER.hash(secret.as_bytes()).as_bytes())
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A 64-bit prefix, already uniformly distributed: used to hash fingerprints cheaply.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))] // the cache's hasher
    pub(crate) fn prefix_u64(&self) -> u64 {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(prefix)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Which values may be API keys, checked locally before any validator is asked.
///
/// A validator says which format its keys have ([`Validator::key_format`](crate::Validator::key_format));
/// the layer uses it unless told otherwise. Every format refuses JWT-shaped values (any `.`:
/// an access token is not an API key) and values outside its length range; a format may also
/// name a prefix of the provider's public key ids, so an id presented as a key is refused by
/// name (Scalekit's validate call would accept one as if it were the key).
///
/// ```
/// use axum_api_key::request::{KeyFormat, KeyRejection};
///
/// let neutral = KeyFormat::neutral();
/// assert!(neutral.check("sk_live_0123456789abcdef").is_ok());
/// assert_eq!(neutral.check("eyJhbGciOi.eyJzdWIi.c2ln"), Err(KeyRejection::JwtShaped));
/// assert_eq!(neutral.check("short"), Err(KeyRejection::BadLength));
///
/// let mine = KeyFormat::base62().with_length(40, 40).refusing_ids("kid_");
/// assert_eq!(mine.check("kid_0123456789"), Err(KeyRejection::TokenId));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    alphabet: Alphabet,
    min_len: usize,
    max_len: usize,
    /// Values starting with this are the provider's key ids, never keys.
    id_prefix: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alphabet {
    /// `[0-9A-Za-z]`.
    Base62,
    /// `[0-9A-Za-z_-]`: room for a prefix such as `sk_live_`.
    Base62WithSeparators,
}

/// Why a value was refused by [`KeyFormat::check`]. Logged, never shown to the client: every
/// reason gets the same `invalid_token` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRejection {
    /// A key id of the provider (see [`KeyFormat::refusing_ids`]), not a key.
    TokenId,
    /// Contains `.`: a JWT (for example an OAuth access token), not an API key.
    JwtShaped,
    /// Shorter or longer than the format allows.
    BadLength,
    /// A character outside the format's alphabet.
    BadCharacter,
}

impl KeyRejection {
    /// A short, stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenId => "token_id",
            Self::JwtShaped => "jwt_shaped",
            Self::BadLength => "bad_length",
            Self::BadCharacter => "bad_character",
        }
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl KeyFormat {
    /// The default upper bound on a key's length: a guard against oversized headers.
    pub const DEFAULT_MAX_LEN: usize = 512;

    /// The default, for validators of your own: `[0-9A-Za-z_-]`, 16 to 512 characters.
    pub const fn neutral() -> Self {
        Self {
            alphabet: Alphabet::Base62WithSeparators,
            min_len: 16,
            max_len: Self::DEFAULT_MAX_LEN,
            id_prefix: None,
        }
    }

    /// `[0-9A-Za-z]` only, 16 to 512 characters.
    pub const fn base62() -> Self {
        Self {
            alphabet: Alphabet::Base62,
            ..Self::neutral()
        }
    }

    /// Sets the accepted length range (in bytes; every accepted character is one byte).
    ///
    /// `min` is raised to 1 if it is 0, and `max` to `min` if it is smaller.
    pub const fn with_length(mut self, min: usize, max: usize) -> Self {
        self.min_len = if min == 0 { 1 } else { min };
        self.max_len = if max < self.min_len {
            self.min_len
        } else {
            max
        };
        self
    }

    /// Refuses values that start with `prefix` as key ids (reported as
    /// [`KeyRejection::TokenId`]), whatever the rest of the format says.
    pub const fn refusing_ids(mut self, prefix: &'static str) -> Self {
        self.id_prefix = Some(prefix);
        self
    }

    /// The longest key accepted.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks `value` against the format.
    pub fn check(&self, value: &str) -> Result<(), KeyRejection> {
        self.check_bytes(value.as_bytes())
    }

    pub(crate) fn check_bytes(&self, value: &[u8]) -> Result<(), KeyRejection> {
        // An id or a JWT is named as such in the log even when it would also fail the length
        // or alphabet rule; the `.` search runs only on the way to a refusal.
        if let Some(prefix) = self.id_prefix
            && value.starts_with(prefix.as_bytes())
        {
            return Err(KeyRejection::TokenId);
        }
        let class = match self.alphabet {
            Alphabet::Base62 => BASE62,
            Alphabet::Base62WithSeparators => BASE62_SEPARATORS,
        };
        let length_ok = value.len() >= self.min_len && value.len() <= self.max_len;
        if length_ok && all_in(value, class) {
            return Ok(());
        }
        if value.contains(&b'.') {
            Err(KeyRejection::JwtShaped)
        } else if !length_ok {
            Err(KeyRejection::BadLength)
        } else {
            Err(KeyRejection::BadCharacter)
        }
    }
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self::neutral()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let key = ApiKey::new("Zq9".repeat(25));
        assert!(!format!("{key:?}").contains("Zq9"));
        assert!(!format!("{key}").contains("Zq9"));
        assert_eq!(key.suffix(), "9Zq9");
    }

    #[test]
    fn fingerprints_separate_keys() {
        assert_ne!(
            Fingerprint::of("a".repeat(70).as_str()),
            Fingerprint::of("b".repeat(70).as_str())
        );
    }

    #[test]
    fn neutral_accepts_prefixes_and_refuses_jwts_and_named_ids() {
        let neutral = KeyFormat::neutral();
        assert!(neutral.check("sk_live_abcdefghijklmnop").is_ok());
        assert!(neutral.check("kid_1234567890123456789").is_ok());
        assert_eq!(
            neutral
                .refusing_ids("kid_")
                .check("kid_1234567890123456789"),
            Err(KeyRejection::TokenId)
        );
        assert_eq!(
            neutral.check("aaaaaaaaaa.bbbbbbbbbb.cc"),
            Err(KeyRejection::JwtShaped)
        );
        assert_eq!(
            KeyFormat::base62()
                .check("sk_live_abcdefghijklmnop_abcdefghijklmnopabcdefghijklmnopabcdefghijkl"),
            Err(KeyRejection::BadCharacter)
        );
    }

    #[test]
    fn length_cap_is_configurable() {
        let format = KeyFormat::base62().with_length(61, 64);
        assert!(format.check(&"a".repeat(64)).is_ok());
        assert_eq!(format.check(&"a".repeat(65)), Err(KeyRejection::BadLength));
    }
}
