#!/usr/bin/env bash
# Loopback load test of the quickstart (release build) with wrk, all cases in one run:
#   healthz                  no auth: the floor
#   ping/cached              the same tiny answer behind the key check (Scalekit mode, cache on):
#                            what authentication costs, and nothing else
#   resources/embedded       the embedded key store (validated in memory)
#   resources/cached         Scalekit mode against the fake Scalekit, cache on (CACHE_TTL_SECS=30)
#   resources/uncached       Scalekit mode, cache off: one loopback round trip per request
#   resources/cached+flood   cache on, half the requests carry random format-valid garbage keys
#
#   bash scripts/loadtest.sh                 # 10 s per case, 32 connections
#   LOAD_SECONDS=30 CONNECTIONS=64 bash scripts/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${LOAD_SECONDS:-10}"
connections="${CONNECTIONS:-32}"
if ! command -v wrk >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q --features test-util --example quickstart --example fake_scalekit

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Starts a process writing to $work/$1.out and waits until it prints a line starting with $2.
start() {
  local name=$1 ready=$2; shift 2
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q "^$ready" "$work/$name.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}
field() { grep "^$2" "$work/$1.out" | head -1 | sed "s/^$2//"; }

start fake "user key: " target/release/examples/fake_scalekit
export SCALEKIT_ENVIRONMENT_URL=$(field fake "SCALEKIT_ENVIRONMENT_URL=")
export SCALEKIT_CLIENT_ID=$(field fake "SCALEKIT_CLIENT_ID=")
export SCALEKIT_CLIENT_SECRET=$(field fake "SCALEKIT_CLIENT_SECRET=")
scalekit_key=$(field fake "org key: ")

RUST_LOG=error PORT=0 CACHE_TTL_SECS=30 start cached "listening on " target/release/examples/quickstart
RUST_LOG=error PORT=0 CACHE_TTL_SECS=0 start uncached "listening on " target/release/examples/quickstart
unset SCALEKIT_ENVIRONMENT_URL
RUST_LOG=error PORT=0 start embedded "listening on " target/release/examples/quickstart
embedded_key=$(field embedded "org key: ")

cat >"$work/flood.lua" <<'LUA'
-- Every other request carries a random 77-character Base62 key: unknown to Scalekit, so it
-- costs a validation (then a negative-cache entry) on the server.
local alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local valid = os.getenv("VALID_KEY")
local n = 0
math.randomseed(os.time())
statuses = {}
request = function()
  n = n + 1
  local key = valid
  if n % 2 == 0 then
    local t = {}
    for i = 1, 77 do local r = math.random(1, 62); t[i] = alphabet:sub(r, r) end
    key = table.concat(t)
  end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. key })
end
LUA

results="$work/results.txt"
run() {
  local name=$1 url=$2; shift 2
  local out="$work/wrk-${name//\//_}.txt"
  wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@" "$url" >"$out"
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$out")
  p50=$(awk '$1=="50%" {print $2}' "$out")
  p99=$(awk '$1=="99%" {print $2}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$out")
  printf "| %-24s | %10s | %8s | %8s | %8s |\n" "$name" "$rps" "$p50" "$p99" "${non2xx:-0}" | tee -a "$results"
}

echo "loopback load test: $(nproc) cores, ${seconds}s per case, $connections connections, wrk -t1"
printf "| %-24s | %10s | %8s | %8s | %8s |\n" case "req/s" p50 p99 non-2xx
printf "|%s|%s|%s|%s|%s|\n" "--------------------------" "------------" "----------" "----------" "----------"
base_cached=$(field cached "listening on ")
# healthz and ping alternate over two rounds (the better round of each is kept below), so a
# burst of noise on a shared machine does not decide the comparison.
for round in 1 2; do
  run healthz "$base_cached/healthz"
  run ping/cached "$base_cached/api/ping" -H "Authorization: Bearer $scalekit_key"
done
run resources/embedded "$(field embedded "listening on ")/api/resources" -H "Authorization: Bearer $embedded_key"
run resources/cached "$base_cached/api/resources" -H "Authorization: Bearer $scalekit_key"
run resources/uncached "$(field uncached "listening on ")/api/resources" -H "Authorization: Bearer $scalekit_key"
VALID_KEY=$scalekit_key run resources/cached+flood "$base_cached/api/resources" -s "$work/flood.lua"

best() { awk -F'|' -v name="$1" '{ n=$2; gsub(/ /,"",n); r=$3; gsub(/ /,"",r) } n==name && r+0 > best { best = r+0 } END { print best }' "$results"; }
awk -v p="$(best ping/cached)" -v c="$(best resources/cached)" -v h="$(best healthz)" 'BEGIN {
  printf "authenticated /api/ping (cached key) = %.1f%% of /healthz throughput\n", 100 * p / h
  printf "/api/resources (cached key)          = %.1f%% of /healthz throughput (a heavier handler)\n", 100 * c / h
}'
