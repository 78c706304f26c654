#!/usr/bin/env bash
# Runs the bridge on this machine: installs what is missing, builds, starts a private mosquitto on loopback
# when the configured brokers are local and nothing listens there, then runs the bridge in the foreground.
# Usage: scripts/run.sh [CONFIG] [extra `run` options, e.g. --log-level debug]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

config="${1:-Config/bridge.yaml}"
[ $# -gt 0 ] && shift

swift build -c release --product ditto-mqtt-bridge
bin="$(swift build -c release --show-bin-path)/ditto-mqtt-bridge"

"$bin" check --config "$config"

broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# `brokers` prints "host port" for each distinct broker the config uses.
while read -r host port; do
    case "$host" in 127.0.0.1|localhost|::1) ;; *) continue ;; esac
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "run: a broker already listens on $host:$port" >&2
        continue
    fi
    state="${XDG_RUNTIME_DIR:-/tmp}/ditto-mqtt-bridge-mosquitto-$port"
    mkdir -p "$state"
    cat >"$state/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
# Without it Nagle's algorithm and delayed ACKs add about 40 ms to every request/response hop.
set_tcp_nodelay true
# Persistent sessions queue what devices publish while the bridge restarts or applies back pressure.
max_queued_messages 100000
user $(id -un)
CONF
    echo "run: starting mosquitto on 127.0.0.1:$port (config $state/mosquitto.conf)" >&2
    mosquitto -c "$state/mosquitto.conf" >"$state/mosquitto.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done < <("$bin" brokers --config "$config")

"$bin" run --config "$config" "$@"
