//! The invariants the fuzz targets check, shared with `tests/fuzz_corpus.rs` so that CI replays
//! the checked-in corpus with the ordinary toolchain.

use axum_api_key::request::KeyFormat;
use axum_api_key::request::{BearerError, is_b64token, parse_credentials};

/// One `Authorization` value through the parser and Scalekit's and the neutral pre-checks: no
/// panic, and whatever is accepted obeys the grammar and the format.
pub fn check_authorization_value(value: &[u8]) {
    match parse_credentials(value, 512) {
        Ok(token) => {
            assert!(is_b64token(token.as_bytes()), "accepted a non-b64token");
            assert!(!token.is_empty() && token.len() <= 512);
            let scalekit = axum_api_key::scalekit::shape::key_format();
            if scalekit.check(token).is_ok() {
                assert!(
                    !token.starts_with(axum_api_key::scalekit::shape::TOKEN_ID_PREFIX),
                    "a Scalekit token id passed Scalekit's pre-checks"
                );
            }
            for format in [scalekit, KeyFormat::neutral()] {
                if format.check(token).is_ok() {
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

/// The key the wire checks play as "sent with the request": seeds echo it in error messages.
pub const WIRE_SECRET: &str =
    "4cXk0nQ7rS1b9WmT2yVfA8hLdE3jPuGz6oRiKq5NwYtH0aBcD1eF2gH3iJ4kL5mN6oP7qR8sT9uV0wXyZ";

/// One body through every decoder of Scalekit's answers: no panic, decoded tokens carry their
/// two ids, an error's class depends on the status alone, and the secret sent with the request
/// appears in no error (Display or Debug).
///
/// An input `secret\0body` plays `secret` (when it looks like a key) instead of [`WIRE_SECRET`].
pub fn check_wire_body(input: &[u8]) {
    use axum_api_key::scalekit::ScalekitError;
    use axum_api_key::scalekit::fuzz_decode;

    let (secret, body) = match input.iter().position(|b| *b == 0) {
        Some(at) => match std::str::from_utf8(&input[..at]) {
            // Base62 and long enough not to occur by chance in our own texts.
            Ok(s) if s.len() >= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                (s, &input[at + 1..])
            }
            _ => (WIRE_SECRET, input),
        },
        None => (WIRE_SECRET, input),
    };
    let out = fuzz_decode(body, secret);

    let check_info = |info: &axum_api_key::TokenInfo| {
        assert!(
            !info.token_id().is_empty(),
            "decoded a token without token_id"
        );
        assert!(
            !info.organization_id().is_empty(),
            "decoded a token without organization_id"
        );
    };
    if let Ok(info) = &out.validate {
        check_info(info);
        assert!(
            !info.is_expired_at(time::OffsetDateTime::now_utc()),
            "validate accepted an expired key"
        );
    }
    if let Ok(info) = &out.update {
        check_info(info);
    }
    if let Ok(created) = &out.create {
        check_info(&created.info);
        assert!(!created.token_id.is_empty());
        let key = created.key.expose_secret();
        assert!(!key.is_empty(), "created an empty key");
        if key.len() >= 16 {
            assert!(
                !format!("{:?}", created.key).contains(key),
                "Debug shows the key"
            );
            assert!(
                !created.key.to_string().contains(key),
                "Display shows the key"
            );
        }
    }
    if let Ok(page) = &out.list {
        page.tokens.iter().for_each(check_info);
        assert!(page.next_page_token.as_ref().is_none_or(|c| !c.is_empty()));
        assert!(page.prev_page_token.as_ref().is_none_or(|c| !c.is_empty()));
    }
    for result in &out.access_token {
        if let Err(error) = result {
            assert!(
                matches!(error, ScalekitError::UpstreamAuth { .. }),
                "a token endpoint failure must be UpstreamAuth: {error:?}"
            );
        }
    }
    // The body's gRPC code, read independently of the client's own parser.
    let body_code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.as_object()?.get("code")?.as_i64());
    for (status, error) in &out.errors {
        // A verdict on the key (400, 401, 403, 404) only with Scalekit's Status JSON carrying
        // the matching code: a proxy's page is an outage.
        let verdict = matches!(
            error,
            ScalekitError::NotFound
                | ScalekitError::Unauthorized
                | ScalekitError::Rejected {
                    status: 400 | 403,
                    ..
                }
        );
        if verdict {
            let expected: &[i64] = match status {
                404 => &[5],
                401 => &[16],
                403 => &[7],
                _ => &[3, 9, 11],
            };
            assert!(
                body_code.is_some_and(|code| expected.contains(&code)),
                "HTTP {status} with code {body_code:?} read as a verdict: {error:?}"
            );
        }
        // The status decides the class otherwise; the body only adds detail.
        let class_ok = match (status, error) {
            (404, ScalekitError::NotFound) | (401, ScalekitError::Unauthorized) => true,
            (429, ScalekitError::RateLimited { retry_after }) => {
                retry_after.is_none_or(|d| d.as_secs() <= 3600)
            }
            (
                400..=499,
                ScalekitError::Rejected {
                    status: s, message, ..
                },
            ) => s == status && message.chars().count() <= 301,
            (_, ScalekitError::Upstream { status: s }) => {
                s == status && (!(400..=499).contains(s) || matches!(s, 400 | 401 | 403 | 404))
            }
            _ => false,
        };
        assert!(class_ok, "HTTP {status} classified as {error:?}");
    }
    // Nothing derived from the answer shows the key sent.
    let mut rendered: Vec<String> = Vec::new();
    for (_, error) in &out.errors {
        rendered.push(error.to_string());
        rendered.push(format!("{error:?}"));
        rendered.push(format!("{:?}", error.to_validate_error()));
    }
    for error in [
        out.validate.as_ref().err(),
        out.update.as_ref().err(),
        out.create.as_ref().err(),
        out.list.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        rendered.push(error.to_string());
        rendered.push(format!("{error:?}"));
    }
    // Only errors are checked: the body may hold the secret in fields decoded on purpose (a
    // token's description, the key of a create answer), and the token endpoint (whose errors
    // quote its answer) never receives an API key.
    for text in &rendered {
        assert!(!text.contains(secret), "an error shows the key: {text}");
    }
}
