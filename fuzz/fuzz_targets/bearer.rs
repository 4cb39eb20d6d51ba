//! Fuzzes the `Authorization` parser and the local key pre-checks.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_authorization_value(data);
});
