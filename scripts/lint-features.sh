#!/usr/bin/env bash
# Lints every feature set a user builds (default, none, each feature alone, all), warnings
# denied: CI's `--all-features` run alone misses warnings that only show without a feature
# (an import only one feature uses, say).
set -euo pipefail
cd "$(dirname "$0")/.."

features=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; m=json.load(sys.stdin); print(" ".join(sorted(k for k in m["packages"][0]["features"] if k != "default")))')

run() {
  echo "== cargo clippy $*"
  cargo clippy --all-targets "$@" -- -D warnings
}

run
run --no-default-features
for feature in $features; do
  run --no-default-features --features "$feature"
done
run --all-features
