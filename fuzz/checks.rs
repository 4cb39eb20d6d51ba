//! The invariants the fuzz targets check, shared with `tests/fuzz_corpus.rs` so that CI replays
//! the checked-in corpus with the ordinary toolchain.

use axum_api_key::KeyFormat;
use axum_api_key::bearer::{BearerError, is_b64token, parse_credentials};

/// One `Authorization` value through the parser and the strict and lenient pre-checks: no
/// panic, and whatever is accepted obeys the grammar and the format.
pub fn check_authorization_value(value: &[u8]) {
    match parse_credentials(value, 512) {
        Ok(token) => {
            assert!(is_b64token(token.as_bytes()), "accepted a non-b64token");
            assert!(!token.is_empty() && token.len() <= 512);
            for format in [KeyFormat::strict(), KeyFormat::lenient()] {
                if format.check(token).is_ok() {
                    assert!(
                        !token.starts_with("apit_"),
                        "a token id passed the pre-checks"
                    );
                    assert!(
                        !token.contains('.'),
                        "a JWT-shaped value passed the pre-checks"
                    );
                    assert!(
                        token
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    );
                }
            }
        }
        Err(
            BearerError::Missing
            | BearerError::Multiple
            | BearerError::Empty
            | BearerError::Malformed,
        ) => {}
    }
}
