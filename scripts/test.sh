#!/usr/bin/env bash
# The whole test suite: setup, then every test target (unit and real-broker integration tests).
# DataPathTests (the bridge binary under kill -9, SIGTERM, broker restarts and outages) run separately:
# `scripts/test.sh --data-path`; see README "Delivery guarantees: what the tests prove" for their state.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build --build-tests
if [ "${1:-}" = "--data-path" ]; then
    shift
    exec swift test --skip-build --filter DataPathTests "$@"
fi
swift test --skip-build --skip DataPathTests "$@"
