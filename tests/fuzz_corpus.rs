//! Replays the checked-in fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets'
//! invariants, so CI exercises them with the stable toolchain and no fuzzer.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

#[test]
fn bearer_corpus_keeps_the_parser_invariants() {
    for input in corpus("bearer") {
        checks::check_authorization_value(&input);
    }
}

#[test]
fn wire_corpus_keeps_the_decoding_invariants() {
    for input in corpus("wire") {
        checks::check_wire_body(&input);
    }
}
