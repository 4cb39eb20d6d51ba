#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) and keeps what it finds in the
# checked-in corpus. Not part of CI's default path: CI replays the corpus through
# tests/fuzz_corpus.rs instead.
#
#   bash scripts/fuzz.sh            # 60 s per target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh bearer
#
# Only the stable toolchain is available here; cargo fuzz passes nightly -Z flags to rustc, which
# RUSTC_BOOTSTRAP=1 allows on stable.
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
  mkdir -p "corpus/$target"
  echo "== fuzzing $target for ${seconds}s"
  # -max_len keeps inputs header-sized; new interesting inputs are written to corpus/$target.
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4096 -timeout=10
done
# Shrink each corpus to the inputs that add coverage, so the repository stays small.
for target in "${targets[@]}"; do
  cargo fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
done
