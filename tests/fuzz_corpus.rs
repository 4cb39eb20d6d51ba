//! Replays the checked-in fuzz inputs (the seeds in `fuzz/seeds/<target>/` and the minimised
//! corpus in `fuzz/corpus/<target>/`) through the fuzz targets' invariants, so CI exercises
//! them with the stable toolchain and no fuzzer.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = root.join(kind).join(target);
        let before = inputs.len();
        inputs.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
                .map(|entry| std::fs::read(entry.unwrap().path()).unwrap()),
        );
        assert!(inputs.len() > before, "empty {}", dir.display());
    }
    inputs.sort();
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
