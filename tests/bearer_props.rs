//! Property tests of the `Authorization` parser against the RFC 6750 / RFC 9110 grammar.

use axum_api_key::request::{BearerError, is_b64token, parse_credentials};
use proptest::prelude::*;

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn b64token() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9._~+/-]{1,80}", "={0,3}").prop_map(|(body, pad)| body + &pad)
}

/// "Bearer" in any case.
fn scheme() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

proptest! {
    #[test]
    fn every_grammatical_credential_parses_to_its_token(scheme in scheme(), spaces in 1usize..5, token in b64token()) {
        let value = format!("{scheme}{}{token}", " ".repeat(spaces));
        prop_assert_eq!(parse_credentials(value.as_bytes(), 512), Ok(token.as_str()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_only_grammatical_tokens_pass(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(token) = parse_credentials(&value, 512) {
            prop_assert!(is_b64token(token.as_bytes()));
            prop_assert!(token.len() <= 512);
            prop_assert!(value.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }

    #[test]
    fn other_schemes_are_missing_credentials(scheme in "[A-Za-z]{1,10}", token in b64token()) {
        prop_assume!(!scheme.to_ascii_lowercase().starts_with("bearer"));
        let value = format!("{scheme} {token}");
        prop_assert_eq!(parse_credentials(value.as_bytes(), 512), Err(BearerError::Missing));
    }

    #[test]
    fn a_token_with_any_non_grammar_byte_is_malformed(prefix in "[A-Za-z0-9]{1,20}", bad in any::<u8>(), suffix in "[A-Za-z0-9]{1,20}") {
        prop_assume!(!(bad.is_ascii_alphanumeric() || b"-._~+/= ".contains(&bad)));
        let value = [b"Bearer ".as_slice(), prefix.as_bytes(), &[bad], suffix.as_bytes()].concat();
        prop_assert_eq!(parse_credentials(&value, 512), Err(BearerError::Malformed));
    }

    #[test]
    fn tokens_over_the_cap_are_malformed(token in "[A-Za-z0-9]{20,60}", cap in 1usize..20) {
        let value = format!("Bearer {token}");
        prop_assert_eq!(parse_credentials(value.as_bytes(), cap), Err(BearerError::Malformed));
    }

    #[test]
    fn the_strict_format_is_exactly_base62_61_to_512(value in "[ -~]{0,600}") {
        let expected = value.len() >= 61 && value.len() <= 512 && value.bytes().all(|b| b.is_ascii_alphanumeric());
        prop_assert_eq!(axum_api_key::scalekit::shape::key_format().check(&value).is_ok(), expected);
    }
}
