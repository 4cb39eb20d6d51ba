//! The values of the `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers).
//!
//! `RateLimit` goes on every admitted answer, so its value is remembered per thread: for a
//! given policy it depends only on the bucket's level, and most answers share a few levels (a
//! key well under its quota answers `r=<limit - 1>;t=<one interval>` request after request,
//! whichever key it is). A hit is a reference-count increment instead of an allocation, a
//! formatting and a validation of the bytes; a miss formats as before and takes the slot.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;

use super::RatePolicy;

/// Slots per thread: a few kilobytes, enough for the levels a busy thread sees at once.
const SLOTS: usize = 32;

/// One remembered value: the layer's name (held, so its address cannot be reused by another
/// name while the slot names it), the level it describes, the value.
struct Slot {
    name: Arc<str>,
    remaining: u32,
    reset_secs: u64,
    value: HeaderValue,
}

thread_local! {
    static RECENT: RefCell<[Option<Slot>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// `"name";r=<remaining>;t=<reset_secs>`.
pub(super) fn state_value(name: &Arc<str>, remaining: u32, reset_secs: u64) -> HeaderValue {
    let index = (remaining as usize ^ reset_secs as usize) % SLOTS;
    let remembered = RECENT.try_with(|recent| {
        // No re-entry is possible; `try_` keeps even that from panicking.
        let mut recent = recent.try_borrow_mut().ok()?;
        let slot = &mut recent[index];
        if let Some(hit) = slot.as_ref().filter(|slot| {
            slot.remaining == remaining
                && slot.reset_secs == reset_secs
                && Arc::ptr_eq(&slot.name, name)
        }) {
            return Some(hit.value.clone());
        }
        Some(remember(slot, name, remaining, reset_secs))
    });
    // A thread tearing down its locals formats without remembering.
    remembered
        .ok()
        .flatten()
        .unwrap_or_else(|| format_state(name, remaining, reset_secs))
}

/// A miss: formats the value and takes the slot. Out of line, so a hit stays a few
/// instructions.
#[cold]
#[inline(never)]
fn remember(
    slot: &mut Option<Slot>,
    name: &Arc<str>,
    remaining: u32,
    reset_secs: u64,
) -> HeaderValue {
    let value = format_state(name, remaining, reset_secs);
    *slot = Some(Slot {
        name: name.clone(),
        remaining,
        reset_secs,
        value: value.clone(),
    });
    value
}

/// One exact-size allocation (`itoa`, no `fmt` machinery), which `Bytes` then owns without
/// copying.
fn format_state(name: &str, remaining: u32, reset_secs: u64) -> HeaderValue {
    let mut remaining_digits = itoa::Buffer::new();
    let remaining = remaining_digits.format(remaining).as_bytes();
    let mut reset_digits = itoa::Buffer::new();
    let reset = reset_digits.format(reset_secs).as_bytes();
    let parts: [&[u8]; 6] = [b"\"", name.as_bytes(), b"\";r=", remaining, b";t=", reset];
    let mut value = Vec::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        value.extend_from_slice(part);
    }
    checked(Bytes::from(value))
}

/// `"name";q=<limit>;w=<window>`.
pub(super) fn policy_value(name: &str, policy: RatePolicy) -> HeaderValue {
    checked(Bytes::from(format!(
        "\"{name}\";q={};w={}",
        policy.limit(),
        policy.window().as_secs()
    )))
}

/// Every piece is ASCII from a sanitized name and numbers; the fallback is unreachable.
fn checked(bytes: Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes)
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_drafts_syntax() {
        let name: Arc<str> = "search".into();
        assert_eq!(state_value(&name, 7, 12), "\"search\";r=7;t=12");
        assert_eq!(
            policy_value("search", "100/min".parse().unwrap()),
            "\"search\";q=100;w=60"
        );
    }

    #[test]
    fn a_remembered_value_belongs_to_its_name_and_level() {
        let first: Arc<str> = "a".into();
        let second: Arc<str> = "b".into();
        assert_eq!(state_value(&first, 5, 1), "\"a\";r=5;t=1");
        // Same slot, another name or level: never the remembered value.
        assert_eq!(state_value(&second, 5, 1), "\"b\";r=5;t=1");
        assert_eq!(state_value(&first, 5, 1), "\"a\";r=5;t=1");
        assert_eq!(state_value(&first, 5 ^ 3, 3), "\"a\";r=6;t=3");
        assert_eq!(state_value(&first, 5, 1), "\"a\";r=5;t=1");
        // Equal names in different layers are equal values.
        let twin: Arc<str> = "a".into();
        assert_eq!(state_value(&twin, 5, 1), "\"a\";r=5;t=1");
    }
}
