#!/usr/bin/env bash
# The whole test suite: setup, then every test target (unit and real-broker integration tests), then
# DeploymentTests (the Dockerfile's runtime stage as a debootstrap chroot, the systemd unit's command lines under
# its SystemCallFilter=, the compose nginx config in a real nginx; they build the release binary the image's way),
# then DataPathTests (the bridge binary under kill -9, SIGTERM, broker restarts and outages) on their own, after
# the rest: each keeps both cores busy at 2,000 msg/s and would only measure the machine next to other tests.
#   scripts/test.sh               everything (what .ci/run runs)
#   scripts/test.sh --deployment  DeploymentTests only
#   scripts/test.sh --data-path   DataPathTests only
#   scripts/test.sh --fast        everything except DeploymentTests and DataPathTests
# Extra arguments go to `swift test` (e.g. --filter).
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_FOR_TESTS=1 source scripts/setup.sh
swift build --build-tests
case "${1:-}" in
--deployment)
    shift
    exec swift test --skip-build --filter DeploymentTests "$@"
    ;;
--data-path)
    shift
    exec swift test --skip-build --filter DataPathTests "$@"
    ;;
--fast)
    shift
    exec swift test --skip-build --skip DataPathTests --skip DeploymentTests "$@"
    ;;
esac
swift test --skip-build --skip DataPathTests --skip DeploymentTests "$@"
swift test --skip-build --filter DeploymentTests "$@"
swift test --skip-build --filter DataPathTests "$@"
