#!/usr/bin/env bash
# The test command of the README: installs what the tests need beyond the Rust toolchain, then
# runs every test with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Redis tests start their own redis-server on a free loopback port; they need the binary.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian package) for the Redis revocation tests" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# tests/python_sdk.rs drives the fake with Scalekit's official Python SDK in a venv it makes
# under target/pysdk (pip installs the pinned scalekit-sdk-python from PyPI on the first run).
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  echo "installing python3-venv (Debian package) for the official-SDK test" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi

# The key-management browser test drives headless Chromium through WebDriver. It fails when
# they are missing, unless AXUM_API_KEY_SKIP_BROWSER_TESTS=1.
if [ "${AXUM_API_KEY_SKIP_BROWSER_TESTS:-}" != "1" ] && ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages) for the browser test" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo test --all-features "$@"
