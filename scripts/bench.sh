#!/usr/bin/env bash
# The data-path benchmark: builds release, then runs the bridge as a real process against the zero-work relay
# (mqtt-relay) on private brokers, same run, same load. Not part of the test suite.
# Usage: scripts/bench.sh [--runs N] [--quick] [--scenario NAME] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product ditto-mqtt-bridge
swift build -c release --product mqtt-relay
swift build -c release --product bridge-bench
bin="$(swift build -c release --show-bin-path)"
"$bin/bridge-bench" datapath --bin "$bin" "$@"
