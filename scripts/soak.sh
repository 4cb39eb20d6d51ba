#!/usr/bin/env bash
# A bounded loopback soak (examples/soak.rs): the cache over the Scalekit client over the fake
# Scalekit, random upstream faults, concurrent clients with valid, revoked, expired and garbage
# keys. Exits non-zero on any false accept, on memory growth after warm-up, or on a cache over
# capacity. Not part of CI's default path.
#
#   bash scripts/soak.sh                    # 180 s
#   SOAK_SECONDS=600 SOAK_CLIENTS=128 bash scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export SOAK_SECONDS="${SOAK_SECONDS:-180}"
# The dev profile by default (the test build's artifacts are reused); SOAK_PROFILE=release for
# higher request rates.
profile=()
[ "${SOAK_PROFILE:-dev}" = "release" ] && profile=(--release)
cargo build "${profile[@]}" --example soak --features test-util,cache
target_dir="${CARGO_TARGET_DIR:-target}"
dir=release
[ ${#profile[@]} -eq 0 ] && dir=debug
exec "$target_dir/$dir/examples/soak"
