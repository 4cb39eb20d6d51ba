//! Unit tests of `token_info`.

use super::*;

fn full() -> TokenInfo {
    TokenInfo::builder("key_1", "org_1")
        .organization_external_id("acme")
        .user("usr_1")
        .user_external_id("u-1")
        .email("a@example.com")
        .claim("tier", "gold")
        .claim("env", "prod")
        .claim("a", "1")
        .role("admin")
        .role("reader")
        .expiry(OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap())
        .created_at(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap())
        .description("ci")
        .token_suffix("abcd")
        .build()
}

#[test]
fn claims_are_sorted_and_found_by_name() {
    let info = full();
    assert_eq!(
        info.claims().collect::<Vec<_>>(),
        [("a", "1"), ("env", "prod"), ("tier", "gold")]
    );
    assert_eq!(info.claim("a"), Some("1"));
    assert_eq!(info.claim("env"), Some("prod"));
    assert_eq!(info.claim("tier"), Some("gold"));
    assert_eq!(info.claim("b"), None);
    assert_eq!(info.claim(""), None);
}

#[test]
fn json_keeps_the_wire_shape_and_round_trips() {
    let info = full();
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["custom_claims"]["tier"], "gold");
    assert!(json["custom_claims"].is_object());
    assert_eq!(json["roles"], serde_json::json!(["admin", "reader"]));
    assert_eq!(json["organization_external_id"], "acme");
    assert_eq!(json["expiry"], "2033-05-18T03:33:20Z");
    let back: TokenInfo = serde_json::from_value(json).unwrap();
    assert_eq!(back, info);
    // The optional fields are omitted when unset, and default when absent.
    let bare = TokenInfo::builder("key_2", "org_2").build();
    let json = serde_json::to_value(&bare).unwrap();
    assert!(json.get("email").is_none());
    let back: TokenInfo =
        serde_json::from_str(r#"{"token_id":"key_2","organization_id":"org_2"}"#).unwrap();
    assert_eq!(back, bare);
}

#[test]
fn to_builder_keeps_every_field() {
    let info = full();
    assert_eq!(info.to_builder().build(), info);
    let changed = info.to_builder().remove_claim("tier").build();
    assert_eq!(changed.claim("tier"), None);
    assert_eq!(changed.email(), Some("a@example.com"));
}
