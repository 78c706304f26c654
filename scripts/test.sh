#!/usr/bin/env bash
# The whole test suite: setup, then every test target (unit and real-broker integration tests), then
# DataPathTests (the bridge binary under kill -9, SIGTERM, broker restarts and outages) on their own, after
# the rest: each keeps both cores busy at 2,000 msg/s and would only measure the machine next to other tests.
#   scripts/test.sh               everything (what .ci/run runs)
#   scripts/test.sh --data-path   DataPathTests only
#   scripts/test.sh --fast        everything except DataPathTests
# Extra arguments go to `swift test` (e.g. --filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build --build-tests
case "${1:-}" in
--data-path)
    shift
    exec swift test --skip-build --filter DataPathTests "$@"
    ;;
--fast)
    shift
    exec swift test --skip-build --skip DataPathTests "$@"
    ;;
esac
swift test --skip-build --skip DataPathTests "$@"
swift test --skip-build --filter DataPathTests "$@"
