#!/usr/bin/env bash
# Fails when `rust-version` in Cargo.toml is older than what a locked dependency declares:
# the crate's MSRV must be what its dependency tree really needs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked --all-features | python3 -c '
import json, sys
meta = json.load(sys.stdin)
root = meta["resolve"]["root"]
used = {node["id"] for node in meta["resolve"]["nodes"]}
def version(text):
    return tuple(int(part) for part in text.split("."))
ours = next(p for p in meta["packages"] if p["id"] == root)
ours_text = ours["rust_version"]
declared = version(ours_text)
needs = sorted(
    (version(p["rust_version"]), p["name"], p["version"])
    for p in meta["packages"]
    if p.get("rust_version") and p["id"] in used and p["id"] != root
)
top = needs[-1]
print("rust-version %s; the newest a dependency needs: %s (%s %s)" % (ours_text, ".".join(map(str, top[0])), top[1], top[2]))
if declared[:2] < top[0][:2]:
    sys.exit("rust-version %s is older than %s %s needs" % (ours_text, top[1], top[2]))
'
