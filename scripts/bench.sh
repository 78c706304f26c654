#!/usr/bin/env bash
# The data-path benchmark: builds release, then runs `bridge-bench datapath` (the bridge and the zero-work
# relay as real processes on private mosquittos). Options go to bridge-bench, e.g.
#   scripts/bench.sh --runs 3            # median of 3 runs of every scenario (docs/PERFORMANCE.md's numbers)
#   scripts/bench.sh --quick             # smoke run, about a minute
#   scripts/bench.sh --scenario uplink-q1-max --runs 3
#   scripts/bench.sh --list              # the scenarios
#   scripts/bench.sh --scenario uplink-q1-1000 --scenario ws-uplink-q1-1000 --subject bridge --runs 3
#                                        # over Ditto's WebSocket binding next to its MQTT twin
# Results: a table per scenario on stdout and bench-results/datapath-<commit>-<time>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "bench: swift build -c release" >&2
swift build -c release --product ditto-mqtt-bridge >&2
swift build -c release --product mqtt-relay >&2
swift build -c release --product bridge-bench >&2

# bridge-bench stops the brokers and subjects it started itself (also on SIGINT/SIGTERM); pass signals on.
.build/release/bridge-bench datapath "$@" &
bench=$!
trap 'kill -TERM "$bench" 2>/dev/null || true; wait "$bench"' INT TERM
wait "$bench"
