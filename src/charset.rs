//! Byte-class checks on the request path, written so the compiler can vectorise them.
//!
//! A key is checked twice per request (the `b64token` grammar, then the key format); with
//! `Iterator::all` and `u8::is_ascii_alphanumeric` that was a branch per byte. Here each check
//! is branch-free arithmetic folded with `&`, which LLVM turns into SIMD compares.

/// `true` when `predicate` holds for every byte. Does not stop early: inputs are at most a few
/// hundred bytes, and the absence of a branch is what lets the loop vectorise.
#[inline]
pub(crate) fn all_bytes(bytes: &[u8], predicate: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |all, &b| all & predicate(b))
}

/// `[0-9A-Za-z]`, branch-free.
#[inline]
pub(crate) fn is_alphanumeric(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 26)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_matches_std_for_every_byte() {
        for b in 0..=u8::MAX {
            assert_eq!(is_alphanumeric(b), b.is_ascii_alphanumeric(), "byte {b:#x}");
        }
    }
}
