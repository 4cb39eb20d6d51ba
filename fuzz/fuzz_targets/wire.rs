//! Fuzzes the decoding of Scalekit's answers: validate, update, create, list, the access-token
//! answer, and error bodies under every status.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_wire_body(data);
});
