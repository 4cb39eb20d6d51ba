//! Byte-class checks on the request path, written so the compiler can vectorise them.
//!
//! A key is checked twice per request (the `b64token` grammar, then the key format); with
//! `Iterator::all` and `u8::is_ascii_alphanumeric` that was a branch per byte. Here each check
//! is a table load folded with `&`: no branch in the loop, one pass per check.

/// In RFC 6750's `b64token` body: `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
pub(crate) const B64TOKEN: u8 = 1;
/// `[0-9A-Za-z]`.
pub(crate) const BASE62: u8 = 2;
/// `[0-9A-Za-z_-]`.
pub(crate) const BASE62_SEPARATORS: u8 = 4;

/// The classes of every byte, so a check is one load and one `and` per byte.
static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() {
            class |= B64TOKEN | BASE62 | BASE62_SEPARATORS;
        }
        if b == b'-' || b == b'_' {
            class |= B64TOKEN | BASE62_SEPARATORS;
        }
        if b == b'.' || b == b'~' || b == b'+' || b == b'/' {
            class |= B64TOKEN;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// `true` when every byte is in `class` (one of the constants above).
#[inline]
pub(crate) fn all_in(bytes: &[u8], class: u8) -> bool {
    bytes
        .iter()
        .fold(class, |all, &b| all & CLASSES[usize::from(b)])
        == class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_their_definitions_for_every_byte() {
        for b in 0..=u8::MAX {
            let alnum = b.is_ascii_alphanumeric();
            assert_eq!(all_in(&[b], BASE62), alnum, "byte {b:#x}");
            assert_eq!(
                all_in(&[b], BASE62_SEPARATORS),
                alnum || b == b'_' || b == b'-'
            );
            assert_eq!(all_in(&[b], B64TOKEN), alnum || b"-._~+/".contains(&b));
        }
    }
}
