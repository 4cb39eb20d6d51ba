#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and keeps what it finds in the
# checked-in corpus. Not part of CI's default path: CI replays the corpus through
# tests/fuzz_corpus.rs instead.
#
#   bash scripts/fuzz.sh            # 60 s per target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh bearer
#
# Only the stable toolchain is available here; cargo fuzz passes nightly -Z flags to rustc, which
# RUSTC_BOOTSTRAP=1 allows on stable. AddressSanitizer works that way too: the stable toolchain
# ships its runtime (librustc-stable_rt.asan.a), so no `--sanitizer none` is needed.
#
# Hand-written seeds live in fuzz/seeds/<target> (read, never rewritten); what the fuzzer finds
# goes to fuzz/corpus/<target>, minimised to a set cover of the edges at the end so the
# repository stays small (a few hundred small files). tests/fuzz_corpus.rs replays both.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  echo "== fuzzing $target for ${seconds}s"
  # -max_len keeps inputs small; new interesting inputs are written to corpus/$target (the
  # first directory).
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10
done
# Shrink each corpus to a set cover of the edges (hit counts ignored), so the repository stays
# small.
for target in "${targets[@]}"; do
  cargo fuzz cmin "$target" "corpus/$target" -- -set_cover_merge=1 -use_counters=0 >/dev/null 2>&1 || true
  echo "== $target: $(ls "corpus/$target" | wc -l) corpus files, $(du -sb "corpus/$target" | cut -f1) bytes"
done
