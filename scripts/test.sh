#!/usr/bin/env bash
# The whole test suite: setup, then every test target (unit and real-broker integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
